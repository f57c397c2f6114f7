#!/usr/bin/env bash
# A candidate given by host name against the same candidate given by address: 1,024 shadows to
# a +200 ms candidate keep opening connections, so every new connection's name lookup shows.
# Per case: an open loop at RATE for SECONDS (benches/load/loadtool.rs), the proxy's most
# threads seen, its peak RSS and the client-side latency.
#
# Needs: a release build (cargo build --release --example loadtool --bin shadowdiff).
# Usage: benches/named.sh [RATE=6500] [SECONDS=8] [NAME=localhost]
#   SHADOWDIFF_BIN=path/to/shadowdiff measures another build (e.g. an older commit) the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-6500}
SECS=${2:-8}
NAME=${3:-localhost}
. benches/load/common.sh named
backends 18081 18083

for host in "$NAME" 127.0.0.1; do
  shadowdiff_config "$host" 18083
  "${PROXY_CPU[@]}" $BIN proxy --config "$WORK/shadowdiff.yaml" 2>"$WORK/proxy.log" & SPID=$!; PIDS+=($SPID)
  wait_port 18092
  # Most threads of the proxy while the load runs (each name lookup takes a blocking-pool thread).
  ( most=0; while kill -0 "$SPID" 2>/dev/null; do
      n=$(ls /proc/"$SPID"/task 2>/dev/null | wc -l)
      if [ "$n" -gt "$most" ]; then most=$n; echo "$n" >"$WORK/threads"; fi
      sleep 0.05
    done ) &
  WATCH=$!
  out=$("${LOAD_CPU[@]}" $TOOL open http://127.0.0.1:18092/orders/12345 "$RATE" "$SECS")
  echo "upstreams http://$host:…: most threads $(cat "$WORK/threads"); peak RSS $(awk '/VmHWM/{print $2}' /proc/$SPID/status) KiB; client $(echo "$out" | sed 's/.*"p50_us":\([0-9]*\).*"p99_us":\([0-9]*\).*"max_us":\([0-9]*\).*/p50 \1 µs, p99 \2 µs, max \3 µs/')"
  kill -TERM "$SPID"; wait "$SPID" 2>/dev/null || true
  kill "$WATCH" 2>/dev/null || true; wait "$WATCH" 2>/dev/null || true
done
