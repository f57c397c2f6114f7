#!/usr/bin/env bash
# The worked replay example (README, "Replay"): the committed recording
# sample-traffic/demo-recording.jsonl (148 exchanges of the demo's legacy service, recorded by
# the proxy's `record:` section) replayed against the demo's candidate build, with a legacy
# secondary for noise cancellation, and gated at 1%. Everything binds 127.0.0.1.
#
#   scripts/replay-example.sh            # or: make replay-example
#
# Exit code: the gate's (0 pass, 1 fail, 3 insufficient data). The candidate has planted
# regressions (tax rounding, a renamed field, an added field), so expect 1.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
bin=target/release/shadowdiff
legacy=127.0.0.1:${LEGACY_PORT:-18081}
candidate=127.0.0.1:${CANDIDATE_PORT:-18082}
. scripts/demo-services.sh
set +e
"$bin" replay --traffic sample-traffic/demo-recording.jsonl \
  --candidate "http://$candidate" --secondary "http://$legacy" \
  --config sample-traffic/replay-example.yaml \
  --summary-json target/replay-summary.json \
  --max-divergence 1% --min-samples 50
code=$?
set -e
echo "replay exit code: $code (summary JSON in target/replay-summary.json)"
exit "$code"
