//! The properties the fuzz targets check, one module per target. Each module is also compiled
//! into `tests/fuzz_corpus.rs` (by `#[path]`), which replays the committed corpus on stable, so
//! CI checks exactly what the fuzzer checks.

pub mod compare;
pub mod wire;
