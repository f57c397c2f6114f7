//! Config and rules loading on any text: never a panic, every problem with a line, and a
//! pre-parse depth scan that the parser never out-nests (see `shadowdiff::config::fuzz`).
//! Run with a timeout so that slowness is a failure too:
//! `cargo +nightly fuzz run config -- -timeout=2 -max_len=65536`. A failing input lands in
//! `fuzz/artifacts/config/`; copy it into `fuzz/corpus/config/` so the stable replay in
//! `tests/validation.rs` keeps it fixed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = shadowdiff::config::fuzz::check(data) {
        panic!("{e}");
    }
});
