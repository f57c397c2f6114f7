#!/usr/bin/env bash
# The worked capture comparison (README, "shadowdiff capture"): the demo's traffic as tcpdump saw
# it on lo (sample-traffic/capture/demo-lo.pcap, answered by the demo's legacy build) compared
# with the demo's candidate build, with a legacy secondary for noise cancellation; every exchange
# is recorded on the way (target/captured.jsonl), then that recording is replayed against the
# candidate and gated at 1%. No root needed (a file, not an interface); everything binds
# 127.0.0.1.
#
#   scripts/capture-compare-example.sh       # or: make capture-compare-example
#
# Exit code: the replay gate's (0 pass, 1 fail, 3 insufficient data). The candidate has planted
# regressions (tax rounding, a renamed field, an added field), so expect 1.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SHADOWDIFF_BIN:-target/release/shadowdiff}
if [ -z "${SHADOWDIFF_BIN:-}" ]; then
  scripts/install-build-deps.sh
  cargo build --release --locked --quiet
fi
legacy=127.0.0.1:${LEGACY_PORT:-18081}
candidate=127.0.0.1:${CANDIDATE_PORT:-18082}
. scripts/demo-services.sh
mkdir -p target
rm -f target/captured.jsonl
"$bin" capture --pcap sample-traffic/capture/demo-lo.pcap --port 45003 \
  --candidate "http://$candidate" --secondary "http://$legacy" \
  --config sample-traffic/replay-example.yaml \
  --record target/captured.jsonl \
  --summary-json target/capture-summary.json
echo "capture summary JSON (completeness under \"capture\") in target/capture-summary.json"
echo "recorded $(wc -l < target/captured.jsonl) exchanges in target/captured.jsonl; replaying them:"
set +e
"$bin" replay --traffic target/captured.jsonl \
  --candidate "http://$candidate" --secondary "http://$legacy" \
  --config sample-traffic/replay-example.yaml \
  --max-divergence 1% --min-samples 50
code=$?
set -e
echo "replay exit code: $code"
exit "$code"
