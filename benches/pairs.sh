#!/usr/bin/env bash
# Max rps behind shadowdiff with a fast and a +200 ms candidate, alternating on fresh processes,
# so both candidates see the same machine weather (benches/load.sh measures every fast target
# before every slow one, minutes apart). Per process: wrk warm-up, then RUNS closed-loop runs;
# prints each run's rps, the proxy's CPU, its peak RSS, the comparison workers' wake-ups and
# what was skipped, then the median rps per candidate and slow ÷ fast.
#
# Needs: wrk, a release build (cargo build --release --example loadtool --bin shadowdiff).
# Usage: benches/pairs.sh [PAIRS=3] [SECONDS=5] [RUNS=3] [CONNECTIONS=32]
#   SHADOWDIFF_BIN=path/to/shadowdiff measures another build (e.g. an older commit) the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-3}
SECS=${2:-5}
RUNS=${3:-3}
CONNS=${4:-32}
. benches/load/common.sh pairs
# Voluntary context switches of the comparison threads: each is a wake-up.
worker_wakes() { local t=0; for s in /proc/"$1"/task/*; do grep -q shadowdiff-comp "$s/comm" && t=$((t + $(awk '/^voluntary_ctxt_switches/{print $2}' "$s/status"))); done; echo "$t"; }

backends 18081 18082 18083

url=http://127.0.0.1:18092/orders/12345
declare -A ALL=([fast]="" [slow]="")
for pair in $(seq 1 "$PAIRS"); do
  for cand in fast slow; do
    cport=18082; [ $cand = slow ] && cport=18083
    shadowdiff_config 127.0.0.1 "$cport"
    "${PROXY_CPU[@]}" $BIN proxy --config "$WORK/shadowdiff.yaml" 2>"$WORK/proxy.log" & SPID=$!; PIDS+=($SPID)
    wait_port 18092
    "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d2s "$url" >/dev/null
    c0=$(awk '{print $14+$15}' /proc/$SPID/stat); w0=$(worker_wakes $SPID)
    rps=()
    for _ in $(seq 1 "$RUNS"); do
      rps+=("$("${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" "$url" | awk '/Requests\/sec/{print $2}')")
    done
    c1=$(awk '{print $14+$15}' /proc/$SPID/stat); w1=$(worker_wakes $SPID)
    ALL[$cand]="${ALL[$cand]} ${rps[*]}"
    skips=$(curl -s http://127.0.0.1:18093/metrics | awk '/^shadowdiff_shadow_skipped_total/ && $NF > 0 { split($0, a, "\""); printf " %s=%d", a[2], $NF }')
    echo "pair $pair $cand: rps ${rps[*]}; cpu $(( (c1 - c0) * 1000 / $(getconf CLK_TCK) )) ms; worker wake-ups $((w1 - w0)); peak RSS $(awk '/VmHWM/{print $2}' /proc/$SPID/status) KiB; skipped:${skips:- none}"
    kill -TERM "$SPID"; wait "$SPID" 2>/dev/null || true
  done
done
median() { printf "%s\n" $1 | sort -n | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
f=$(median "${ALL[fast]}"); s=$(median "${ALL[slow]}")
echo "median rps: fast $f, slow $s; slow / fast = $(awk -v f="$f" -v s="$s" 'BEGIN{printf "%.3f", s/f}')"
