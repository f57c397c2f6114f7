#!/usr/bin/env bash
# Hostile candidates against a fast one, same run (issue 12, "Shadow answers bounded before they
# cost anything"). For each candidate — fast (the baseline), endless chunked, endless
# close-delimited, a 200 MiB content-length, a slow drip (1 byte every 5 ms) — on a fresh
# shadowdiff pinned to core 1 with its defaults:
#   idle RSS (VmRSS once listening), an open loop at RATE for OPEN_SECONDS (client p50/p99/max
#   from each request's scheduled time), then RUNS closed-loop wrk runs of SECONDS (median rps),
#   peak RSS (VmHWM) over idle, and what became of the shadows (verdicts and skips, /metrics).
# Then each hostile candidate's figures against the fast run's, and the goals:
#   client p99 ≤ max(2 × fast, fast + 2 ms); rps ≥ 0.8 × fast; peak RSS ≤ 64 MiB over idle.
# Mode post-3mib is the fast candidate again, with every request a mirrored 3 MiB POST (wrk
# only: no open loop): the peak RSS of copies that big.
#
# Needs: wrk, a release build (cargo build --release --example loadtool --bin shadowdiff).
# Usage: benches/hostile.sh [RATE=6500] [OPEN_SECONDS=10] [SECONDS=5] [RUNS=3] [CONNECTIONS=32]
#   SHADOWDIFF_BIN / LOADTOOL_BIN measure other builds the same way; MODES="fast huge" runs some;
#   SHADOW_YAML='{max_buffered_bytes: 32MiB}' sets more of the shadow: section.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-6500}
OPEN_SECS=${2:-10}
SECS=${3:-5}
RUNS=${4:-3}
CONNS=${5:-32}
MODES=${MODES:-fast endless-chunked endless-close huge slow-drip post-3mib}
. benches/load/common.sh hostile

backends 18081 18082
url=http://127.0.0.1:18092/orders/12345
median() { printf "%s\n" "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
field() { echo "$2" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

ROWS="$WORK/hostile.tsv"
printf "candidate\tp50_us\tp99_us\tmax_us\topen_errors\tmax_rps\trps_runs\tidle_rss_kib\tpeak_rss_kib\tover_idle_kib\tverdicts\tskipped\n" >"$ROWS"
for mode in $MODES; do
  cport=18082
  if [ "$mode" != fast ] && [ "$mode" != post-3mib ]; then
    cport=18084
    # Niced: the hostile candidate must not take core 0 from the primary and the generator.
    "${LOAD_CPU[@]}" nice -n 19 $TOOL hostile "$cport" "$mode" & HPID=$!; PIDS+=($HPID)
    wait_port "$cport"
  fi
  extra="shadow: ${SHADOW_YAML:-{\}}"; wrk_post=()
  if [ "$mode" = post-3mib ]; then
    extra="shadow: {methods: [GET, POST]$(echo "${SHADOW_YAML:-}" | sed 's/^{\(.*\)}$/, \1/')}"
    printf 'wrk.method = "POST"\nwrk.body = string.rep("x", 3 * 1024 * 1024)\nwrk.headers["Content-Type"] = "application/octet-stream"\n' >"$WORK/post.lua"
    wrk_post=(-s "$WORK/post.lua")
  fi
  shadowdiff_config 127.0.0.1 "$cport" "$extra"
  "${PROXY_CPU[@]}" $BIN proxy --config "$WORK/shadowdiff.yaml" 2>"$WORK/proxy-$mode.log" & SPID=$!; PIDS+=($SPID)
  wait_port 18092
  idle=$(awk '/VmRSS/{print $2}' /proc/$SPID/status)
  open='{}'
  if [ "$mode" != post-3mib ]; then
    "${LOAD_CPU[@]}" $TOOL open "$url" "$RATE" 2 >/dev/null
    open=$("${LOAD_CPU[@]}" $TOOL open "$url" "$RATE" "$OPEN_SECS")
  fi
  "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" "${wrk_post[@]}" -d2s "$url" >/dev/null
  rps=()
  for _ in $(seq 1 "$RUNS"); do
    rps+=("$("${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" "${wrk_post[@]}" -d"${SECS}s" "$url" | awk '/Requests\/sec/{print $2}')")
  done
  peak=$(awk '/VmHWM/{print $2}' /proc/$SPID/status)
  metrics=$(curl -s http://127.0.0.1:18093/metrics)
  verdicts=$(echo "$metrics" | awk '/^shadowdiff_exchanges_total/ { match($0, /verdict="[a-z_]*"/); v = substr($0, RSTART + 9, RLENGTH - 10); n[v] += $NF } END { for (v in n) if (n[v] > 0) printf "%s%s=%d", (s++ ? "," : ""), v, n[v] }')
  skips=$(echo "$metrics" | awk '/^shadowdiff_shadow_skipped_total/ && $NF > 0 { split($0, a, "\""); printf "%s%s=%d", (s++ ? "," : ""), a[2], $NF }')
  kill -TERM "$SPID"; wait "$SPID" 2>/dev/null || true
  if [ "$cport" = 18084 ]; then kill "$HPID"; wait "$HPID" 2>/dev/null || true; fi
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$mode" "$(field p50_us "$open")" "$(field p99_us "$open")" \
    "$(field max_us "$open")" "$(field errors "$open")" "$(median "${rps[@]}")" "$(IFS=/; echo "${rps[*]}")" \
    "$idle" "$peak" $((peak - idle)) "${verdicts:-none}" "${skips:-none}" | tee -a "$ROWS"
done

echo
echo "against the fast run (goals: p99 ≤ max(2× fast, fast + 2 ms); rps ≥ 0.8× fast; peak RSS ≤ 64 MiB over idle):"
awk -F'\t' 'NR == 1 { next }
  $1 == "fast" { fp99 = $3; frps = $6 }
  $1 == "post-3mib" { printf "%-16s 3 MiB POSTs, fast candidate: rps %6.0f; RSS +%5.1f MiB over idle (%s)\n", $1, $6, $10 / 1024, ($10 <= 65536 ? "met" : "MISSED"); next }
  fp99 != "" && $1 != "fast" {
    limit = (2 * fp99 > fp99 + 2000) ? 2 * fp99 : fp99 + 2000
    printf "%-16s p99 %6.2f ms = %5.2f× fast (limit %.2f ms: %s); rps %6.0f = %4.2f× fast (%s); RSS +%5.1f MiB over idle (%s)\n",
      $1, $3 / 1000, $3 / fp99, limit / 1000, ($3 <= limit ? "met" : "MISSED"), $6, $6 / frps,
      ($6 >= 0.8 * frps ? "met" : "MISSED"), $10 / 1024, ($10 <= 65536 ? "met" : "MISSED")
  }' "$ROWS"
echo "rows: $ROWS"
