//! Reassembly plus HTTP parsing: see `shadowdiff::capture::fuzzing` for the two properties (a
//! lossless reordered capture gives back exactly the exchanges sent; arbitrary segments never
//! panic, stay within the memory bounds and are all counted). A failing input lands in
//! `fuzz/artifacts/capture/`; copy it into `fuzz/corpus/capture/` so the stable replay in
//! `tests/capture.rs` keeps it fixed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = shadowdiff::capture::fuzzing::check(data) {
        panic!("{e}");
    }
});
