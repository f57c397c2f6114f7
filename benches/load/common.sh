# Shared by benches/load.sh, benches/pairs.sh and benches/named.sh; sourced from the project
# root as `. benches/load/common.sh NAME`. Gives:
#   TOOL (LOADTOOL_BIN or the release build), BIN (SHADOWDIFF_BIN or the release build), WORK (a fresh /tmp/shadowdiff-NAME.*),
#   PIDS (killed on exit), PROXY_CPU / LOAD_CPU (taskset prefixes), wait_port PORT,
#   backends PORT... (18081 primary, 18082 fast candidate, 18083 +200 ms candidate, 18086 a
#   candidate that never answers; nothing listens on 18087: a candidate that refuses),
#   candidate_port NAME (fast|slow|never|refused → its port),
#   $WORK/rules.yaml, and shadowdiff_config HOST CANDIDATE_PORT [EXTRA_YAML].
TOOL=${LOADTOOL_BIN:-target/release/examples/loadtool}
BIN=${SHADOWDIFF_BIN:-target/release/shadowdiff}
WORK=$(mktemp -d "/tmp/shadowdiff-$1.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
# The proxy under test gets a core of its own; load generator and backends share the other
# (when the machine has at least two cores and taskset exists).
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PROXY_CPU=(taskset -c 1); LOAD_CPU=(taskset -c 0)
else
  PROXY_CPU=(); LOAD_CPU=()
fi

wait_port() { for _ in $(seq 1 500); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.01; done; echo "port $1 never opened" >&2; exit 1; }

# Backends: the primary (18081), a fast candidate (18082) and a slow, +200 ms one (18083), ~1 KB
# JSON each. Candidates differ from the primary only in /meta/generated_at, which the rules
# ignore — so every exchange is parsed and structurally diffed (bytes differ), and matches.
backends() {
  local p delay seed
  for p in "$@"; do
    case $p in
      18081) delay=0 seed=111 ;;
      18082) delay=0 seed=222 ;;
      18083) delay=200 seed=333 ;;
      18085) delay=2000 seed=333 ;;  # benches/tls.sh: 1,024 shadows in flight at ~600 rps
      18086) delay=86400000 seed=333 ;;  # accepts, reads the request, never answers (a day)
      *) echo "no backend on port $p" >&2; exit 1 ;;
    esac
    "${LOAD_CPU[@]}" $TOOL backend "$p" "$delay" "$seed" & PIDS+=($!)
  done
  for p in "$@"; do wait_port "$p"; done
}

candidate_port() {
  case $1 in fast) echo 18082 ;; slow) echo 18083 ;; never) echo 18086 ;; refused) echo 18087 ;;
    *) echo "unknown candidate $1" >&2; exit 1 ;; esac
}

cat >"$WORK/rules.yaml" <<'YAML'
version: 1
rules:
  - match: "*"
    ignore_headers: [date]
    ignore: ["/meta/generated_at"]
YAML

# $WORK/shadowdiff.yaml: listen 18092, admin 18093, primary HOST:18081, candidate
# HOST:CANDIDATE_PORT, diffing on with the rules above, plus EXTRA_YAML.
shadowdiff_config() {
  cat >"$WORK/shadowdiff.yaml" <<YAML
listen: 127.0.0.1:18092
primary: http://$1:18081
candidate: http://$1:$2
admin: 127.0.0.1:18093
rules: $WORK/rules.yaml
sinks: {file: {path: $WORK/events.jsonl}}
log: {level: warn}
${3:-}
YAML
}
