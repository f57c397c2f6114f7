#!/usr/bin/env bash
# Max rps behind shadowdiff with a fast, a +200 ms, a never-answering and a refusing candidate
# (CANDIDATES to choose), alternating on fresh processes, so every candidate sees the same
# machine weather (benches/load.sh measures every fast target
# before every slow one, minutes apart). Per process: wrk warm-up, then RUNS closed-loop runs;
# prints each run's rps, the proxy's CPU, its peak RSS, the comparison workers' wake-ups and
# what was skipped, then per candidate the median rps and CPU per request, each ÷ the fast one's.
#
# Needs: wrk, a release build (cargo build --release --example loadtool --bin shadowdiff).
# Usage: benches/pairs.sh [PAIRS=3] [SECONDS=5] [RUNS=3] [CONNECTIONS=32]
#   SHADOWDIFF_BIN=path/to/shadowdiff measures another build (e.g. an older commit) the same way.
#   CANDIDATES="fast slow never refused" (the default) chooses and orders the candidates.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-3}
SECS=${2:-5}
RUNS=${3:-3}
CONNS=${4:-32}
. benches/load/common.sh pairs
# Voluntary context switches of the comparison threads: each is a wake-up.
worker_wakes() { local t=0; for s in /proc/"$1"/task/*; do grep -q shadowdiff-comp "$s/comm" && t=$((t + $(awk '/^voluntary_ctxt_switches/{print $2}' "$s/status"))); done; echo "$t"; }

CANDIDATES=${CANDIDATES:-fast slow never refused}
backends 18081 18082 18083 18086

url=http://127.0.0.1:18092/orders/12345
declare -A ALL=() CPU=()
for pair in $(seq 1 "$PAIRS"); do
  for cand in $CANDIDATES; do
    cport=$(candidate_port "$cand")
    shadowdiff_config 127.0.0.1 "$cport"
    "${PROXY_CPU[@]}" $BIN proxy --config "$WORK/shadowdiff.yaml" 2>"$WORK/proxy.log" & SPID=$!; PIDS+=($SPID)
    wait_port 18092
    "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d2s "$url" >/dev/null
    c0=$(awk '{print $14+$15}' /proc/$SPID/stat); w0=$(worker_wakes $SPID)
    rps=(); reqs=0
    for _ in $(seq 1 "$RUNS"); do
      out=$("${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" "$url")
      rps+=("$(echo "$out" | awk '/Requests\/sec/{print $2}')")
      reqs=$((reqs + $(echo "$out" | awk '/requests in/{print $1}')))
    done
    c1=$(awk '{print $14+$15}' /proc/$SPID/stat); w1=$(worker_wakes $SPID)
    ALL[$cand]="${ALL[$cand]:-} ${rps[*]}"
    CPU[$cand]="${CPU[$cand]:-} $(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v n="$reqs" 'BEGIN{printf "%.2f", d/hz*1e6/n}')"
    skips=$(curl -s http://127.0.0.1:18093/metrics | awk '/^shadowdiff_shadow_skipped_total/ && $NF > 0 { split($0, a, "\""); printf " %s=%d", a[2], $NF }')
    echo "pair $pair $cand: rps ${rps[*]}; cpu $(( (c1 - c0) * 1000 / $(getconf CLK_TCK) )) ms ($(echo "${CPU[$cand]}" | awk '{print $NF}') µs/req); worker wake-ups $((w1 - w0)); peak RSS $(awk '/VmHWM/{print $2}' /proc/$SPID/status) KiB; skipped:${skips:- none}"
    kill -TERM "$SPID"; wait "$SPID" 2>/dev/null || true
  done
done
median() { printf "%s\n" $1 | sort -n | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
f=$(median "${ALL[fast]:-0}"); fc=$(median "${CPU[fast]:-0}")
for cand in $CANDIDATES; do
  r=$(median "${ALL[$cand]}"); c=$(median "${CPU[$cand]}")
  echo "$cand: median rps $r ($(awk -v f="$f" -v r="$r" 'BEGIN{printf "%.3f", f ? r/f : 0}')× fast), CPU $c µs/req ($(awk -v f="$fc" -v c="$c" 'BEGIN{printf "%.3f", f ? c/f : 0}')× fast)"
done
