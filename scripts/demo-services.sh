# Sourced by the worked examples (scripts/replay-example.sh, scripts/capture-compare-example.sh):
# starts the demo's legacy and candidate services on $legacy and $candidate with "$bin", waits
# until both answer /health, and stops them when the calling script exits.
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
"$bin" demo --service legacy --listen "$legacy" & pids+=($!)
"$bin" demo --service candidate --listen "$candidate" & pids+=($!)
for addr in "$legacy" "$candidate"; do
  for _ in $(seq 100); do
    curl -fsS "http://$addr/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
done
