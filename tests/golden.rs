#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Golden cases: every folder of `sample-traffic/golden/` (format in its README.md) is compared
//! and its verdict and differences must be exactly the expected ones.

use serde::Deserialize;
use serde_json::Value;
use shadowdiff::compare::rules::RuleSet;
use shadowdiff::compare::{Comparator, CompareOptions, Difference, VerdictKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    #[serde(default)]
    endpoint: Option<String>,
    verdict: VerdictKind,
    differences: Vec<ExpectedDiff>,
}

#[derive(Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct ExpectedDiff {
    path: String,
    field: String,
    kind: String,
    primary: Value,
    candidate: Value,
}

impl ExpectedDiff {
    fn from_actual(d: &Difference) -> Self {
        Self {
            path: d.path.clone(),
            field: d.field.clone(),
            kind: d.kind.as_str().to_string(),
            primary: d.primary.clone(),
            candidate: d.candidate.clone(),
        }
    }

    fn line(&self) -> String {
        format!(
            "{} path={:?} field={:?} primary={} candidate={}",
            self.kind, self.path, self.field, self.primary, self.candidate
        )
    }
}

/// The body file of one side (`primary.json` or `primary.txt`) and the media type it implies.
fn side(dir: &Path, name: &str) -> Result<(Vec<u8>, &'static str), String> {
    for (ext, media) in [("json", "application/json"), ("txt", "text/plain")] {
        let p = dir.join(format!("{name}.{ext}"));
        if p.exists() {
            return std::fs::read(&p)
                .map(|b| (b, media))
                .map_err(|e| format!("{}: {e}", p.display()));
        }
    }
    Err(format!("no {name}.json or {name}.txt"))
}

/// Runs one case; `Err` is a readable explanation of what differs.
fn run_case(dir: &Path) -> Result<(), String> {
    let expected_text = std::fs::read_to_string(dir.join("expected.json"))
        .map_err(|e| format!("expected.json: {e}"))?;
    let expected: Expected =
        serde_json::from_str(&expected_text).map_err(|e| format!("expected.json: {e}"))?;
    let rules_path = dir.join("rules.yaml");
    let rules = if rules_path.exists() {
        RuleSet::load(&rules_path).map_err(|e| e.to_string())?
    } else {
        RuleSet::default()
    };
    let (p, pm) = side(dir, "primary")?;
    let (c, cm) = side(dir, "candidate")?;
    let cmp = Comparator::new(Arc::new(rules), CompareOptions::default());
    let v = cmp.compare_bodies(expected.endpoint.as_deref(), &p, &c, Some(pm), Some(cm));
    let mut want: Vec<String> = expected
        .differences
        .iter()
        .map(ExpectedDiff::line)
        .collect();
    let mut got: Vec<String> = v
        .differences
        .iter()
        .map(|d| ExpectedDiff::from_actual(d).line())
        .collect();
    want.sort();
    got.sort();
    if v.kind == expected.verdict && want == got {
        return Ok(());
    }
    let mut msg = format!(
        "verdict: expected {}, got {}\n",
        expected.verdict.as_str(),
        v.kind.as_str()
    );
    for w in &want {
        if !got.contains(w) {
            msg.push_str(&format!("  - expected, not reported: {w}\n"));
        }
    }
    for g in &got {
        if !want.contains(g) {
            msg.push_str(&format!("  + reported, not expected: {g}\n"));
        }
    }
    for n in &v.notes {
        msg.push_str(&format!("  note: {n}\n"));
    }
    Err(msg)
}

#[test]
fn golden_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-traffic/golden");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut failures = Vec::new();
    for dir in &dirs {
        if let Err(e) = run_case(dir) {
            failures.push(format!(
                "case {}:\n{e}",
                dir.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        dirs.len() >= 12,
        "expected at least 12 golden cases in {}, found {}",
        root.display(),
        dirs.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} golden case(s) failed:\n\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
    eprintln!("{} golden cases checked", dirs.len());
}
