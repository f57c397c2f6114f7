//! The shadow client's answer reader on any byte stream, in any reads: see
//! `fuzz/src/wire.rs` for the generator and the properties. A failing input lands in
//! `fuzz/artifacts/wire/`; copy it into `fuzz/corpus/wire/` so the stable replay in
//! `tests/fuzz_corpus.rs` keeps it fixed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = shadowdiff_fuzz::wire::check(data) {
        panic!("{broken}");
    }
});
