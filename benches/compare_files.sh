#!/usr/bin/env bash
# The comparator on files against other tools, in one run: `shadowdiff diff` on order-document
# pairs (4.75 MB and 24 MB per side by default), V8's JSON.parse of both files, jsondiffpatch
# (parse + diff) and deepdiff (parse + diff). Wall time and peak RSS of each process from
# /usr/bin/time -v; V8's parse is also timed inside node (without node's start-up).
#
# The pairs come from a fixed seed (benches/files/orders_pair.rs: the payload of
# benches/compare.rs, 5 values changed in the candidate). jsondiffpatch comes from npm into
# target/compare-files/, deepdiff from PyPI into a venv there, both pinned; both are installed
# only when missing.
#
# Usage: benches/compare_files.sh [MB ...]      (env RUNS=3: repetitions; DEEPDIFF=0 skips it)
# Prints one TSV row per (run, size, tool) and, per size, the ratios of the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

JSONDIFFPATCH_VERSION=0.6.0
DEEPDIFF_VERSION=9.1.0
RUNS=${RUNS:-1}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(4.75 24)
T=target/compare-files
mkdir -p "$T"

for tool in /usr/bin/time node npm python3; do
  command -v "$tool" >/dev/null || { echo "compare_files.sh: $tool is required" >&2; exit 1; }
done

cargo build --release --locked --quiet --bin shadowdiff --example orders_pair
BIN=${CARGO_TARGET_DIR:-target}/release/shadowdiff
GEN=${CARGO_TARGET_DIR:-target}/release/examples/orders_pair

if [ "$(cat "$T/node_modules/jsondiffpatch/package.json" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])' 2>/dev/null)" != "$JSONDIFFPATCH_VERSION" ]; then
  npm install --prefix "$T" --no-save --no-audit --no-fund --silent "jsondiffpatch@$JSONDIFFPATCH_VERSION" >&2
fi
if [ "${DEEPDIFF:-1}" = 1 ] && ! "$T/venv/bin/python" -c "import deepdiff, sys; sys.exit(deepdiff.__version__ != '$DEEPDIFF_VERSION')" 2>/dev/null; then
  python3 -m venv "$T/venv"
  "$T/venv/bin/pip" install --quiet "deepdiff==$DEEPDIFF_VERSION" >&2
fi

cat > "$T/parse.mjs" <<'EOF'
import { readFileSync } from 'node:fs';
const [a, b] = [readFileSync(process.argv[2], 'utf8'), readFileSync(process.argv[3], 'utf8')];
const t0 = performance.now();
const x = JSON.parse(a), y = JSON.parse(b);
const t1 = performance.now();
console.log(`parse_s=${((t1 - t0) / 1000).toFixed(4)} ${typeof x}${typeof y}`);
EOF
cat > "$T/jsondiffpatch.mjs" <<'EOF'
import { readFileSync } from 'node:fs';
import * as jsondiffpatch from 'jsondiffpatch';
const x = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const y = JSON.parse(readFileSync(process.argv[3], 'utf8'));
const delta = jsondiffpatch.diff(x, y);
console.log(`changed=${delta !== undefined}`);
EOF
cat > "$T/deepdiff_run.py" <<'EOF'
import json, sys
from deepdiff import DeepDiff
with open(sys.argv[1]) as f: a = json.load(f)
with open(sys.argv[2]) as f: b = json.load(f)
d = DeepDiff(a, b)
print("changes=%d" % sum(len(v) for v in d.values()))
EOF

# Runs a command under /usr/bin/time -v; prints "wall_s rss_mb" and keeps its stdout in $T/out.
measure() {
  # shadowdiff diff exits 1 on a mismatch: the status is not the measure, the output is.
  /usr/bin/time -v -o "$T/time.txt" "$@" > "$T/out" 2>"$T/err" || true
  [ -s "$T/out" ] || { cat "$T/err" >&2; return 1; }
  awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; w = s }
              /Maximum resident set size/ { r = $2 / 1024 }
              END { printf "%.3f %.1f", w, r }' "$T/time.txt"
}

printf 'run\tsize_mb\tinput_mb\ttool\twall_s\tpeak_rss_mb\tnote\n'
for run in $(seq 1 "$RUNS"); do
  for mb in "${SIZES[@]}"; do
    p="$T/orders-$mb-primary.json" c="$T/orders-$mb-candidate.json"
    [ -s "$p" ] && [ -s "$c" ] || "$GEN" "$mb" 20261123 "$p" "$c" >/dev/null
    input=$(( $(stat -c %s "$p") + $(stat -c %s "$c") ))
    input_mb=$(awk -v b="$input" 'BEGIN { printf "%.2f", b / 1048576 }')
    declare -A wall=() rss=()
    row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$mb" "$input_mb" "$1" "$2" "$3" "$4"; }

    read -r w r < <(measure "$BIN" diff --json "$p" "$c"; echo)
    verdict=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["verdict"], len(d["differences"]))' "$T/out")
    wall[shadowdiff]=$w rss[shadowdiff]=$r; row "shadowdiff diff" "$w" "$r" "$verdict"

    read -r w r < <(measure node "$T/parse.mjs" "$p" "$c"; echo)
    v8=$(sed -n 's/^parse_s=\([0-9.]*\).*/\1/p' "$T/out")
    wall[node]=$w wall[v8]=$v8; row "node JSON.parse x2 (process)" "$w" "$r" "in-process parse ${v8}s"

    read -r w r < <(measure node "$T/jsondiffpatch.mjs" "$p" "$c"; echo)
    wall[jdp]=$w; row "jsondiffpatch $JSONDIFFPATCH_VERSION" "$w" "$r" "$(cat "$T/out")"

    if [ "${DEEPDIFF:-1}" = 1 ]; then
      read -r w r < <(measure "$T/venv/bin/python" "$T/deepdiff_run.py" "$p" "$c"; echo)
      wall[dd]=$w; row "deepdiff $DEEPDIFF_VERSION" "$w" "$r" "$(cat "$T/out")"
    fi

    awk -v s="${wall[shadowdiff]}" -v v8="${wall[v8]}" -v node="${wall[node]}" -v jdp="${wall[jdp]}" \
        -v dd="${wall[dd]:-0}" -v rss="${rss[shadowdiff]}" -v in_mb="$input_mb" -v mb="$mb" -v run="$run" 'BEGIN {
      printf "# run %s, %s MB: shadowdiff/V8-parse %.2f (<= 1.0), shadowdiff/node-parse-process %.2f, peak RSS/input %.2f (<= 3), jsondiffpatch/shadowdiff %.1f (>= 5)",
        run, mb, s / v8, s / node, rss / in_mb, jdp / s
      if (dd > 0) printf ", deepdiff/shadowdiff %.0f (>= 50)", dd / s
      printf "\n"
    }'
  done
done
