#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `shadowdiff diff` through the real binary: exit codes, `--json` schema and key order, scoped
//! rules with `--endpoint`, raw HTTP response files.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, content).unwrap();
        p
    }
}

fn shadowdiff(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shadowdiff"));
    cmd.arg("diff");
    for a in args {
        cmd.arg(a);
    }
    cmd.env("NO_COLOR", "1");
    cmd.output().unwrap()
}

#[track_caller]
fn code(o: &Output) -> i32 {
    o.status.code().expect("killed by a signal")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn exit_0_when_equal_and_1_when_different() {
    let f = Files::new();
    let a = f.write("a.json", r#"{"id":1,"tags":["x"]}"#);
    let b = f.write("b.json", r#"{ "tags": ["x"], "id": 1.0 }"#);
    let c = f.write("c.json", r#"{"id":2,"tags":["x"]}"#);
    let o = shadowdiff(&[&a, &b]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).starts_with("match"), "{}", stdout(&o));
    let o = shadowdiff(&[&a, &c]);
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("/id: 1 → 2"), "{}", stdout(&o));
}

#[test]
fn exit_2_on_missing_file_and_bad_rules_naming_the_file() {
    let f = Files::new();
    let a = f.write("a.json", "{}");
    let missing = f.dir.path().join("nope.json");
    let o = shadowdiff(&[&a, &missing]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("nope.json"), "{}", stderr(&o));

    let bad = f.write(
        "bad-rules.yaml",
        "version: 1\nrules:\n  - match: \"*\"\n    ignore: [\"x\"]\n",
    );
    let o = shadowdiff(&[&a, &a, &"--rules", &bad]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("bad-rules.yaml:4"), "{err}");
    assert!(err.contains("rule 1"), "{err}");

    let o = shadowdiff(&[&a, &a, &"--rules", &f.dir.path().join("absent.yaml")]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("absent.yaml"), "{}", stderr(&o));

    let o = shadowdiff(&[&a, &a, &"--endpoint", &"orders"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--endpoint"), "{}", stderr(&o));
}

#[test]
fn json_output_schema_and_key_order() {
    let f = Files::new();
    let a = f.write("a.json", r#"{"items":[{"price":9.99}],"gone":1}"#);
    let b = f.write("b.json", r#"{"items":[{"price":10.99}]}"#);
    let o = shadowdiff(&[&a, &b, &"--json"]);
    assert_eq!(code(&o), 1);
    let text = stdout(&o);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["verdict"], "mismatch");
    let diffs = doc["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 2, "{text}");
    let price = diffs
        .iter()
        .find(|d| d["path"] == "/items/0/price")
        .expect("price difference");
    assert_eq!(price["field"], "/items/*/price");
    assert_eq!(price["kind"], "value");
    assert_eq!(price["primary"].to_string(), "9.99");
    assert_eq!(price["candidate"].to_string(), "10.99");
    assert_eq!(price["noise"], false);
    let gone = diffs
        .iter()
        .find(|d| d["path"] == "/gone")
        .expect("gone difference");
    assert_eq!(gone["kind"], "missing");
    // Key order as DESIGN.md shows it: verdict, then differences; each difference path, field,
    // kind, primary, candidate, noise.
    assert!(
        text.starts_with(r#"{"verdict":"mismatch","differences":["#),
        "{text}"
    );
    assert!(text.contains(r#"{"path":"/items/0/price","field":"/items/*/price","kind":"value","primary":9.99,"candidate":10.99,"noise":false}"#), "{text}");

    let o = shadowdiff(&[&a, &a, &"--json"]);
    assert_eq!(code(&o), 0);
    assert!(
        stdout(&o).starts_with(r#"{"verdict":"match","differences":[]"#),
        "{}",
        stdout(&o)
    );
}

#[test]
fn scoped_rules_apply_with_endpoint() {
    let f = Files::new();
    // A copy of the shipped defaults plus a rule scoped to one endpoint, in a `diff-rules/` folder.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("diff-rules/default.yaml");
    f.write("diff-rules/default.yaml", std::fs::read(shipped).unwrap());
    let rules_dir = f.dir.path().join("diff-rules");
    f.write(
        "diff-rules/orders.yaml",
        "version: 1\nrules:\n  - match: \"GET /orders/{id}\"\n    unordered: [\"/tags\"]\n    tolerance: {\"/total\": {abs: 0.01}}\n",
    );
    let a = f.write("a.json", r#"{"total":10.00,"tags":["a","b"]}"#);
    let b = f.write("b.json", r#"{"total":10.01,"tags":["b","a"]}"#);
    let o = shadowdiff(&[
        &a,
        &b,
        &"--rules",
        &rules_dir,
        &"--endpoint",
        &"GET /orders/{id}",
    ]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    // Other endpoint, or none: the scoped rule does not apply.
    for extra in [&["--endpoint", "GET /customers/{id}"][..], &[][..]] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&a, &b, &"--rules", &rules_dir, &"--json"];
        for e in extra {
            args.push(e);
        }
        let o = shadowdiff(&args);
        assert_eq!(code(&o), 1, "{extra:?}: {}", stdout(&o));
        let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
        let kinds: Vec<&str> = doc["differences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, vec!["order", "value"], "{extra:?}");
    }
}

#[test]
fn raw_http_responses_compare_status_headers_and_body() {
    let f = Files::new();
    let p = f.write(
        "p.http",
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 20\r\nX-Api: 1\r\n\r\n{\"id\":1,\"name\":\"a\"}\n",
    );
    let same = f.write(
        "same.http",
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ndate: Tue, 02 Jan 2024 00:00:00 GMT\r\nx-api: 1\r\n\r\n{\"name\":\"a\",\"id\":1}",
    );
    let c = f.write("c.http", "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nX-Api: 2\r\n\r\n{\"id\":1,\"name\":\"b\"}");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("diff-rules");
    let o = shadowdiff(&[&p, &same, &"--rules", &rules]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    // Without the default rules the Date header differs.
    let o = shadowdiff(&[&p, &same, &"--json"]);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains(r#""path":"@headers/date""#),
        "{}",
        stdout(&o)
    );

    let o = shadowdiff(&[&p, &c, &"--rules", &rules, &"--json"]);
    assert_eq!(code(&o), 1);
    let doc: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let got: Vec<(String, String)> = doc["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_string(),
                d["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("@status", "status"),
        ("@headers/x-api", "header"),
        ("/name", "value"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);

    // Mixing a raw response and a bare body is an error.
    let bare = f.write("bare.json", "{}");
    assert_eq!(code(&shadowdiff(&[&p, &bare])), 2);
}
