#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for FUZZ_SECONDS each (default 60), one after another
# (one fuzzer at a time), each growing its working corpus in fuzz/corpus/<target>-work (not
# committed) from the committed seeds in fuzz/corpus/<target>. FUZZ_TARGETS="a b" picks some.
# Needs a nightly toolchain and cargo-fuzz: `rustup toolchain install nightly` and
# `cargo install cargo-fuzz`, once. A failing input is written to fuzz/artifacts/<target>/ and
# stops the run: see README, "Fuzzing".
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
for t in $targets; do
    mkdir -p "corpus/$t-work" "corpus/$t"
    echo "== fuzz $t for ${seconds}s"
    cargo +nightly fuzz run "$t" "corpus/$t-work" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1
done
