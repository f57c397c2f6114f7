#!/usr/bin/env bash
# The whole test suite: installs what it needs, then format, lints and every test.
# README's test command and .ci/run both call this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings (all targets: lib, bin, tests, benches)"
cargo clippy --locked --all-targets -- -D warnings
echo "== deploy/: render, kubernetes-validate, check-config"
cargo build --locked --quiet --bin shadowdiff
target/pyenv/bin/python scripts/validate-deploy.py "${CARGO_TARGET_DIR:-target}/debug/shadowdiff"
echo "== cargo test"
# The install step above put Chromium and playwright-core in place: the review UI browser test
# (tests/ui.rs) must run here, not skip.
export SHADOWDIFF_REQUIRE_BROWSER=1
mkdir -p target
# pipefail: cargo's exit status decides; tee keeps a copy to total the results from.
cargo test --locked --no-fail-fast 2>&1 | tee target/test-output.txt
passed=$(grep -oE '^test result: ok\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
echo "tests: ${passed} passed, 0 failed"
