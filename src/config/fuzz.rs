//! The property of the `config` fuzz target (`fuzz/fuzz_targets/config.rs`), shared with the
//! stable replay of its corpus in `tests/validation.rs`: any text, loaded as a config file and
//! as a rules file,
//!
//! - never panics (and returns quickly: the fuzzer runs with `-timeout=`);
//! - is accepted, or refused with problems that each carry a line (except those about the file
//!   as a whole: too large, or the note that checking stopped);
//! - is never nested deeper, as the parser reads it, than twice what the pre-parse scan
//!   counted ([`crate::yaml::scanned_depth`]): a text that could fool the scan into letting a
//!   deep file through to the (quadratic) parser is a failure even when it is small.

use crate::compare::rules::RuleSet;
use crate::config::Config;
use crate::yaml::{self, Problem};
use serde_yaml_ng::Value as Yaml;
use std::path::Path;

/// What one input exercised, summed over a corpus to show the replay is not vacuous.
#[derive(Debug, Default, Clone, Copy)]
pub struct Exercised {
    pub configs_accepted: usize,
    pub configs_refused: usize,
    pub rules_accepted: usize,
    pub rules_refused: usize,
    /// Inputs the parser read, whose depth was compared with the scan's.
    pub depth_compared: usize,
    /// Inputs the scan refused as too deep.
    pub too_deep: usize,
}

impl std::ops::AddAssign for Exercised {
    fn add_assign(&mut self, o: Self) {
        self.configs_accepted += o.configs_accepted;
        self.configs_refused += o.configs_refused;
        self.rules_accepted += o.rules_accepted;
        self.rules_refused += o.rules_refused;
        self.depth_compared += o.depth_compared;
        self.too_deep += o.too_deep;
    }
}

/// Problems about the file as a whole, which have no line.
fn whole_file(p: &Problem) -> bool {
    p.reason.starts_with("larger than") || p.reason.starts_with("more problems not listed")
}

fn lines(what: &str, problems: &[Problem]) -> Result<(), String> {
    match problems.iter().find(|p| p.line.is_none() && !whole_file(p)) {
        Some(p) => Err(format!("{what}: a problem without a line: {p}")),
        None => Ok(()),
    }
}

/// Checks the property on one input; `Err` describes the failure.
pub fn check(data: &[u8]) -> Result<Exercised, String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(Exercised::default());
    };
    let mut ex = Exercised::default();
    match Config::from_yaml(Path::new("fuzz.yaml"), text) {
        Ok(_) => ex.configs_accepted += 1,
        Err(e) => {
            ex.configs_refused += 1;
            lines("config", &e.0)?;
        }
    }
    match RuleSet::from_sources(&[(Path::new("fuzz-rules.yaml"), text)]) {
        Ok(_) => ex.rules_accepted += 1,
        Err(e) => {
            ex.rules_refused += 1;
            lines("rules", &e.0)?;
        }
    }
    // An alias nests what it names without nesting the text: only texts without one compare.
    match yaml::scanned_depth(text) {
        Err(_) => ex.too_deep += 1,
        Ok(scanned) if !text.contains('*') && text.len() <= yaml::MAX_FILE_BYTES => {
            match serde_yaml_ng::from_str::<Yaml>(text) {
                Ok(v) => {
                    ex.depth_compared += 1;
                    let real = yaml::nesting(&v);
                    if scanned < real.div_ceil(2) {
                        return Err(format!(
                            "the scan counted {scanned} levels where the parser nests {real}"
                        ));
                    }
                }
                Err(e) if e.to_string().contains("recursion limit") => {
                    return Err(format!(
                        "the scan counted {scanned} levels where the parser passed 128: {e}"
                    ));
                }
                Err(_) => {}
            }
        }
        Ok(_) => {}
    }
    Ok(ex)
}
