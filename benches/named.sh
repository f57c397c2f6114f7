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
BIN=${SHADOWDIFF_BIN:-target/release/shadowdiff}
TOOL=target/release/examples/loadtool
WORK=$(mktemp -d /tmp/shadowdiff-named.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PROXY_CPU=(taskset -c 1); LOAD_CPU=(taskset -c 0)
else
  PROXY_CPU=(); LOAD_CPU=()
fi
wait_port() { for _ in $(seq 1 500); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.01; done; echo "port $1 never opened" >&2; exit 1; }

"${LOAD_CPU[@]}" $TOOL backend 18081 0 111 & PIDS+=($!)
"${LOAD_CPU[@]}" $TOOL backend 18083 200 333 & PIDS+=($!)
for p in 18081 18083; do wait_port $p; done
cat >"$WORK/rules.yaml" <<'YAML'
version: 1
rules:
  - match: "*"
    ignore_headers: [date]
    ignore: ["/meta/generated_at"]
YAML

for host in "$NAME" 127.0.0.1; do
  cat >"$WORK/shadowdiff.yaml" <<YAML
listen: 127.0.0.1:18092
primary: http://$host:18081
candidate: http://$host:18083
admin: 127.0.0.1:18093
rules: $WORK/rules.yaml
sinks: {file: {path: $WORK/events.jsonl}}
log: {level: warn}
YAML
  "${PROXY_CPU[@]}" $BIN proxy --config "$WORK/shadowdiff.yaml" 2>"$WORK/proxy.log" & SPID=$!; PIDS+=($SPID)
  wait_port 18092
  # Most threads of the proxy while the load runs (each name lookup takes a blocking-pool thread).
  ( most=0; while kill -0 "$SPID" 2>/dev/null; do n=$(ls /proc/"$SPID"/task 2>/dev/null | wc -l); [ "$n" -gt "$most" ] && echo "$n" >"$WORK/threads"; [ "$n" -gt "$most" ] && most=$n; sleep 0.05; done ) &
  WATCH=$!
  out=$("${LOAD_CPU[@]}" $TOOL open http://127.0.0.1:18092/orders/12345 "$RATE" "$SECS")
  echo "upstreams http://$host:…: most threads $(cat "$WORK/threads"); peak RSS $(awk '/VmHWM/{print $2}' /proc/$SPID/status) KiB; client $(echo "$out" | sed 's/.*"p50_us":\([0-9]*\).*"p99_us":\([0-9]*\).*"max_us":\([0-9]*\).*/p50 \1 µs, p99 \2 µs, max \3 µs/')"
  kill -TERM "$SPID"; wait "$SPID" 2>/dev/null || true
  kill "$WATCH" 2>/dev/null || true; wait "$WATCH" 2>/dev/null || true
done
