//! The comparator on arbitrary JSON pairs under several rule sets: see `fuzz/src/compare.rs`
//! for the generator and the properties. A failing input lands in `fuzz/artifacts/compare/`;
//! copy it into `fuzz/corpus/compare/` so the stable replay in `tests/fuzz_corpus.rs` keeps it
//! fixed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = shadowdiff_fuzz::compare::check(data) {
        panic!("{broken}");
    }
});
