//! No planted secret survives redaction: see `shadowdiff::event::planted` for the generator
//! and the property. A failing input lands in `fuzz/artifacts/redact/`; copy it into
//! `fuzz/corpus/redact/` so the stable replay in `tests/redaction.rs` keeps it fixed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(leak) = shadowdiff::event::planted::check(data) {
        panic!("{leak}");
    }
});
