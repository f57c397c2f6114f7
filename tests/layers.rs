//! The module layers `lib.rs` states: a module uses only modules listed before it, so no two
//! modules import each other. Read from the source (code lines, not comments; unit tests
//! excluded), so a new `use` that breaks the order fails here, naming the file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

/// `lib.rs`'s order; modules on one level may not use each other either.
const LAYERS: &[&[&str]] = &[
    &["exchange"],
    &["yaml"],
    &["compare"],
    &["units"],
    &["redact"],
    &["event"],
    &["pipeline"],
    &["sink"],
    &["record"],
    &["stats"],
    &["ingest"],
    &["capture"],
    &["admin"],
    &["config"],
    &["aggregate"],
    &["app"],
    &["demo"],
    &["cli"],
];

fn level(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = Vec::new();
    for f in all {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .iter()
            .next()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".rs");
        if matches!(top, "lib" | "main")
            || rel.ends_with("tests.rs")
            || rel.iter().any(|c| c == "tests")
        {
            continue;
        }
        let Some(mine) = level(top) else {
            wrong.push(format!(
                "{}: module `{top}` is not in LAYERS",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&f).unwrap();
        // Inline unit tests may use anything.
        let code = match text.find("#[cfg(test)]\nmod tests {") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        for (n, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (i, _) in line.match_indices("crate::") {
                let used: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if used == top || used.is_empty() {
                    continue;
                }
                match level(&used) {
                    Some(l) if l < mine => {}
                    _ => wrong.push(format!(
                        "{}:{}: `{top}` uses `{used}`, which is not below it",
                        rel.display(),
                        n + 1
                    )),
                }
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}
