//! The planted world of the redaction tests (issue 12, item 3), shared by the in-process test
//! (`tests/redaction.rs`), the real binary's (`tests/hostile_pii.rs`), Kafka's
//! (`tests/kafka.rs`) and the review UI's (`tests/ui.rs`): upstreams whose answers carry secrets
//! in every corner, requests that carry more (URL path, query, headers, a form body), the
//! `redact:` settings that name some of them, and the checks — no secret in any byte of a
//! surface, and the events still say what differed, and where.
//!
//! The upstreams are plain threads on 127.0.0.1 speaking HTTP/1.1 by hand, so one of them can
//! also answer what no HTTP library would write (a chunk-size line holding an e-mail address,
//! which the shadow client's error then quotes).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use crate::common::{Proc, free_port, http_get};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

// Under `redact.paths`.
pub const CARD_NUMBER: &str = "4000-0566-5566-5556"; // under /card/number; the parent goes missing
pub const ACCOUNT_SECRET: &str = "acct-SECRET-7731"; // under /account/secret; /account changes type
pub const SESSION_TOKEN_A: &str = "sess-TOKEN-AAA"; // /**/token in an array of objects
pub const SESSION_TOKEN_B: &str = "sess-TOKEN-BBB"; // ... in the element the candidate drops
pub const TEXT_TOKEN: &str = "prof-TOKEN-CCC"; // /**/token in JSON answered by text
pub const TEXT_CARD: &str = "4000-0000-0000-0077"; // /card/number in JSON answered by text
// Query strings.
pub const ACCESS_TOKEN: &str = "qry-ACCESS-TOKEN-DDD";
pub const QUERY_EMAIL: &str = "ann.query@example.com";
// Headers.
pub const BEARER_TOKEN: &str = "auth-BEARER-EEE";
pub const COOKIE: &str = "cookie-FFF";
pub const HEADER_EMAIL: &str = "ann.header@example.com";
pub const JWT_REQUEST: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyZXEifQ.cmVxLXNpZ25hdHVyZQ";
pub const JWT_PRIMARY: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwcmkifQ.cHJpLXNpZ25hdHVyZQ";
pub const JWT_CANDIDATE: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW4ifQ.Y2FuLXNpZ25hdHVyZQ";
pub const OAUTH_CODE_P: &str = "oauth-CODE-PPP"; // `?code=` in a link header that differs
pub const OAUTH_CODE_C: &str = "oauth-CODE-CCC";
pub const TRACE_COOKIE: &str = "trace-COOKIE-GGG"; // a Cookie line in a text diff of headers
// Detectors, in body strings, in JSON keys and in the URL path.
pub const BODY_EMAIL_P: &str = "ann.body@example.com";
pub const BODY_EMAIL_C: &str = "ann.cand@example.com";
pub const BODY_CARD_P: &str = "5555 5555 5555 4444";
pub const BODY_CARD_C: &str = "4242-4242-4242-4242";
pub const KEY_EMAIL: &str = "ann.key@example.com";
pub const KEY_CARD: &str = "4012888888881881";
pub const NUMBER_CARD: &str = "378282246310005"; // a card written as a JSON number
pub const QUERY_EMAIL_ENCODED: &str = "bob.enc%40example.com";
// In the URL path itself: templating keeps these segments, the redaction must not.
pub const PATH_EMAIL: &str = "ann.path@example.com";
pub const PATH_CARD: &str = "5105105105105100"; // digits only: templated to {id}
pub const PATH_CARD_DASHED: &str = "6011-1111-1111-1117"; // not an identifier: kept by templating
pub const PATH_EMAIL_ENCODED: &str = "ann.penc%40example.com";
pub const PATH_JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwYXRoIn0.cGF0aC1zaWduYXR1cmU";
pub const MATRIX_TOKEN: &str = "mtx-TOKEN-JJJ"; // `;access_token=` in a path segment
// A form body (POST is mirrored in this world).
pub const FORM_PASSWORD: &str = "form-PASSWORD-KKK";
// A candidate answering broken JSON that holds a redacted key's value.
pub const BROKEN_TOKEN: &str = "brk-TOKEN-HHH";
// A key below a redacted node (/vault): part of its value.
pub const VAULT_KEY: &str = "vk-KEYNAME-III";
// Chunk-size lines the shadow client cannot parse and quotes in its error: one with an e-mail
// address, one with a redacted key's value (the whole error is withheld then).
pub const CHUNK_EMAIL: &str = "ann.chunk@example.com";
pub const CHUNK_TOKEN: &str = "chk-TOKEN-LLL";

/// 200,000 digits: published whole, it would bypass `publish.max_body_bytes`.
pub static BIG: LazyLock<String> = LazyLock::new(|| "1234567890".repeat(20_000));

pub const SECRETS: &[&str] = &[
    CARD_NUMBER,
    "4000056655665556",
    ACCOUNT_SECRET,
    SESSION_TOKEN_A,
    SESSION_TOKEN_B,
    TEXT_TOKEN,
    TEXT_CARD,
    "4000000000000077",
    ACCESS_TOKEN,
    QUERY_EMAIL,
    "ann.query%40example.com",
    BEARER_TOKEN,
    COOKIE,
    HEADER_EMAIL,
    JWT_REQUEST,
    JWT_PRIMARY,
    JWT_CANDIDATE,
    PATH_JWT,
    // The parts of a JWT are secrets on their own (the payload above all).
    "eyJzdWIiOiJyZXEifQ",
    "eyJzdWIiOiJwcmkifQ",
    "eyJzdWIiOiJjYW4ifQ",
    "eyJzdWIiOiJwYXRoIn0",
    OAUTH_CODE_P,
    OAUTH_CODE_C,
    TRACE_COOKIE,
    BODY_EMAIL_P,
    BODY_EMAIL_C,
    BODY_CARD_P,
    "5555555555554444",
    BODY_CARD_C,
    "4242424242424242",
    KEY_EMAIL,
    KEY_CARD,
    PATH_EMAIL,
    PATH_CARD,
    PATH_CARD_DASHED,
    "6011111111111117",
    "ann.penc",
    MATRIX_TOKEN,
    FORM_PASSWORD,
    NUMBER_CARD,
    "bob.enc",
    BROKEN_TOKEN,
    VAULT_KEY,
    CHUNK_EMAIL,
    CHUNK_TOKEN,
];

/// The config text of this world, after `listen`, `admin`, the upstreams and the sinks:
/// POST mirrored (for the form body), values capped at 4 KiB, the redacted paths.
pub const CONFIG: &str = "shadow: {methods: [GET, POST]}\n\
     publish: {max_body_bytes: 4KiB}\n\
     redact:\n  paths: [/card/number, /account/secret, /**/token, /vault]\n";

/// A config for this world: upstreams started on 127.0.0.1 (a secondary too when asked),
/// `sinks` the YAML lines under `sinks:` (indented), then [`CONFIG`].
pub fn config_text(listen: &str, admin: &str, sinks: &str, secondary: bool) -> String {
    let (p, c) = (upstream(true), upstream(false));
    let secondary = if secondary {
        format!("secondary: http://{}\n", upstream(true))
    } else {
        String::new()
    };
    format!(
        "listen: {listen}\nadmin: {admin}\nprimary: http://{p}\ncandidate: http://{c}\n\
         {secondary}sinks:\n{sinks}{CONFIG}"
    )
}

/// The real binary, `shadowdiff proxy`, in front of this world.
pub struct RealProxy {
    pub proc: Proc,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

impl RealProxy {
    /// Writes [`config_text`] to `dir` and starts the proxy there with `env`; ready when
    /// `/readyz` answers.
    pub fn start(dir: &Path, sinks: &str, secondary: bool, env: &[(&str, &str)]) -> RealProxy {
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let cfg = dir.join("shadowdiff.yaml");
        let text = config_text(&listen.to_string(), &admin.to_string(), sinks, secondary);
        std::fs::write(&cfg, text).unwrap();
        let mut proc = Proc::spawn(
            "proxy",
            dir,
            &["proxy", "--config", cfg.to_str().unwrap()],
            env,
        );
        proc.wait_http_ok(admin, "/readyz");
        RealProxy {
            proc,
            listen,
            admin,
        }
    }

    /// Sends [`requests`] and waits until the summary has counted every exchange.
    pub fn drive_and_wait(&self) {
        drive(self.listen);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, body)) = http_get(self.admin, "/api/v1/summary?window=all&top=1") {
                let v: Value = serde_json::from_slice(&body).unwrap();
                if v["totals"]["exchanges"].as_u64() >= Some(exchanges()) {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not every exchange compared in 30 s\n{}",
                self.proc.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The requests this world sends, as (method, target, extra header lines, body); each gives
/// one published event (a mismatch, or a candidate error for `/chunk`).
pub fn requests() -> Vec<(&'static str, String, Vec<String>, String)> {
    let get = |target: String| ("GET", target, Vec::new(), String::new());
    vec![
        (
            "GET",
            format!(
                "/profile/1?access_token={ACCESS_TOKEN}&email={QUERY_EMAIL}&page=2&e2={QUERY_EMAIL_ENCODED}"
            ),
            vec![
                format!("Authorization: Bearer {BEARER_TOKEN}"),
                format!("Cookie: sid={COOKIE}"),
                format!("X-Client-Assertion: {JWT_REQUEST}"),
                format!("X-User: {HEADER_EMAIL}"),
            ],
            String::new(),
        ),
        get("/text".into()),
        get("/broken".into()),
        get("/trace".into()),
        get("/big".into()),
        get(format!("/users/{PATH_EMAIL}/cards/{PATH_CARD}")),
        get(format!(
            "/users/{PATH_EMAIL_ENCODED}/cards/{PATH_CARD_DASHED}"
        )),
        get(format!("/sessions/jwt={PATH_JWT}")),
        get(format!("/files;access_token={MATRIX_TOKEN}")),
        get("/chunk".into()),
        get("/chunk-token".into()),
        (
            "POST",
            "/login".into(),
            vec!["Content-Type: application/x-www-form-urlencoded".into()],
            format!("user=ann&password={FORM_PASSWORD}"),
        ),
    ]
}

/// The published events of [`requests`].
pub fn exchanges() -> u64 {
    requests().len() as u64
}

fn profile(primary: bool) -> String {
    let mut v = json!({
        "name": "Ann",
        "contact": if primary { BODY_EMAIL_P } else { BODY_EMAIL_C },
        "note": format!("paid with {}", if primary { BODY_CARD_P } else { BODY_CARD_C }),
        "by_email": {KEY_EMAIL: {"visits": if primary { 1 } else { 2 }}},
        "by_card": {KEY_CARD: {"limit": if primary { 100 } else { 200 }}},
        "vault": {VAULT_KEY: if primary { 1 } else { 2 }},
    });
    if primary {
        v["card"] = json!({"number": CARD_NUMBER, "brand": "visa"});
        v["account"] = json!({"secret": ACCOUNT_SECRET, "tier": "gold"});
        v["sessions"] =
            json!([{"id": 1, "token": SESSION_TOKEN_A}, {"id": 2, "token": SESSION_TOKEN_B}]);
        v["pan"] = serde_json::from_str(NUMBER_CARD).unwrap();
    } else {
        v["pan"] = json!(0);
        v["account"] = json!("closed");
        v["sessions"] = json!([{"id": 1, "token": SESSION_TOKEN_A}]);
    }
    v.to_string()
}

/// What an upstream answers to `path` (no query): content type and body. The secondary
/// answers as the primary.
pub fn answer(primary: bool, path: &str) -> (&'static str, String) {
    match path {
        "/profile/1" => ("application/json", profile(primary)),
        "/text" if primary => (
            "application/json",
            json!({"name": "Ann", "card": {"number": TEXT_CARD}, "profile": {"token": TEXT_TOKEN}})
                .to_string(),
        ),
        "/text" => ("text/plain", "Service temporarily unavailable\n".into()),
        "/broken" if primary => ("application/json", json!({"user": {"id": 7}}).to_string()),
        "/broken" => (
            "application/json",
            format!(r#"{{"user": {{"id": 7, "token": "{BROKEN_TOKEN}""#),
        ),
        "/trace" => (
            "message/http",
            format!(
                "GET /trace HTTP/1.1\nHost: svc\nCookie: sid={TRACE_COOKIE}\nX-Hop: {}\n",
                if primary { 1 } else { 2 }
            ),
        ),
        "/big" if primary => ("application/json", format!(r#"{{"n":{}}}"#, &*BIG)),
        "/big" => ("application/json", r#"{"n":1}"#.into()),
        _ => (
            "application/json",
            format!(r#"{{"v":{}}}"#, if primary { 1 } else { 2 }),
        ),
    }
}

/// Headers every answer carries, differing between the sides: a JWT and a link with `?code=`.
pub fn answer_headers(primary: bool) -> Vec<(&'static str, String)> {
    let (jwt, code) = if primary {
        (JWT_PRIMARY, OAUTH_CODE_P)
    } else {
        (JWT_CANDIDATE, OAUTH_CODE_C)
    };
    vec![
        ("x-session", jwt.to_string()),
        (
            "x-link",
            format!("https://idp.example/cb?state=1&code={code}"),
        ),
    ]
}

/// The path of a request target (no query; absolute-form tolerated).
pub fn path_of(target: &str) -> String {
    let p = target.split('?').next().unwrap_or("");
    match p.find("://") {
        Some(i) => p[i + 3..]
            .find('/')
            .map(|j| p[i + 3 + j..].to_string())
            .unwrap_or_default(),
        None => p.to_string(),
    }
}

/// An upstream of this world on 127.0.0.1 (primary or secondary when `primary`, else the
/// candidate), HTTP/1.1 with keep-alive, one thread per connection for the test's life.
pub fn upstream(primary: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            std::thread::spawn(move || serve(primary, s));
        }
    });
    addr
}

fn serve(primary: bool, mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let (target, body_len, head_len) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hs);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                let len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(0usize);
                break (req.path.unwrap_or("/").to_string(), len, n);
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        while buf.len() < head_len + body_len {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_len + body_len);
        let path = path_of(&target);
        let bad_chunk = match path.as_str() {
            "/chunk" => Some(format!("zz {CHUNK_EMAIL}")),
            "/chunk-token" => Some(format!(r#"{{"token": "{CHUNK_TOKEN}"}}"#)),
            _ => None,
        };
        if let Some(line) = bad_chunk.filter(|_| !primary) {
            // Not a chunk size: the shadow client gives up and quotes the line in its error.
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                 transfer-encoding: chunked\r\nconnection: close\r\n\r\n{line}\r\n{{}}\r\n0\r\n\r\n"
            );
            return;
        }
        let (ct, body) = answer(primary, &path);
        let mut head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (name, value) in answer_headers(primary) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        if s.write_all(head.as_bytes()).is_err() || s.write_all(body.as_bytes()).is_err() {
            return;
        }
    }
}

/// Sends every request of [`requests`] through the proxy at `proxy`, each on its own
/// connection, and checks the client got the primary's answer.
pub fn drive(proxy: SocketAddr) {
    for (method, target, headers, body) in requests() {
        let mut s = TcpStream::connect(proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {proxy}\r\n");
        for h in &headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        s.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{method} {target}: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
        );
    }
}

/// No planted secret in any byte of `bytes` (what `what` names), and the 200,000-digit number
/// nowhere past the cap.
#[track_caller]
pub fn assert_no_secret(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{secret:?} leaked into {what}:\n…{}…",
            excerpt_around(&text, secret)
        );
    }
    assert!(
        !text.contains(&BIG[..5000]),
        "the big number was published past the cap in {what}"
    );
}

fn excerpt_around(text: &str, needle: &str) -> String {
    let i = text.find(needle).unwrap_or(0);
    let from = text.floor_char_boundary(i.saturating_sub(300));
    let to = text.floor_char_boundary((i + needle.len() + 300).min(text.len()));
    text[from..to].to_string()
}

/// The JSONL event file of a run of [`requests`]: no secret in it, and its events useful.
#[track_caller]
pub fn assert_event_file(file: &[u8]) {
    assert_no_secret("the event file", file);
    let events: Vec<Value> = String::from_utf8_lossy(file)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_events_say_what_differed(&events);
}

/// The published events of [`requests`] still say what differed, and where.
#[track_caller]
pub fn assert_events_say_what_differed(events: &[Value]) {
    assert_eq!(events.len() as u64, exchanges(), "one event per request");
    let by_path = |p: &str| -> &Value {
        events
            .iter()
            .find(|e| e["request"]["path"] == p)
            .unwrap_or_else(|| {
                let paths: Vec<&Value> = events.iter().map(|e| &e["request"]["path"]).collect();
                panic!("no event for {p} among {paths:?}")
            })
    };
    let kinds = |e: &Value| -> Vec<(String, String)> {
        e["differences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["path"].as_str().unwrap().to_string(),
                    d["kind"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let diff = |e: &Value, path: &str| -> Value {
        e["differences"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("no difference at {path}: {:#?}", kinds(e)))
    };

    let profile = by_path("/profile/1");
    let k = kinds(profile);
    for (path, kind) in [
        ("/card", "missing"),
        ("/account", "type"),
        ("/sessions/1", "missing"),
        ("/sessions", "length"),
        ("/contact", "value"),
        ("/note", "value"),
        ("/by_email/<redacted:email>/visits", "value"),
        ("/by_card/<redacted:card>/limit", "value"),
        ("@headers/x-session", "header"),
        ("@headers/x-link", "header"),
        ("/pan", "value"),
        ("/vault/<redacted>", "value"),
    ] {
        assert!(
            k.contains(&(path.to_string(), kind.to_string())),
            "{path} {kind} missing from {k:#?}"
        );
    }
    assert_eq!(
        diff(profile, "/card")["primary"],
        json!({"number": "<redacted>", "brand": "visa"})
    );
    assert_eq!(
        diff(profile, "/account")["primary"],
        json!({"secret": "<redacted>", "tier": "gold"})
    );
    assert_eq!(
        diff(profile, "/sessions/1")["primary"],
        json!({"id": 2, "token": "<redacted>"})
    );
    assert_eq!(
        diff(profile, "/contact")["primary"],
        json!("<redacted:email>")
    );
    assert_eq!(
        diff(profile, "/note")["candidate"],
        json!("paid with <redacted:card>")
    );
    assert_eq!(
        diff(profile, "@headers/x-session")["primary"],
        json!("<redacted:bearer>")
    );
    assert_eq!(
        diff(profile, "@headers/x-link")["candidate"],
        json!("https://idp.example/cb?state=1&code=<redacted>")
    );
    assert_eq!(
        profile["request"]["query"],
        json!("access_token=<redacted>&email=<redacted:email>&page=2&e2=<redacted:email>")
    );
    let headers = &profile["request"]["headers"];
    assert_eq!(headers["authorization"], json!("<redacted>"));
    assert_eq!(headers["cookie"], json!("<redacted>"));
    assert_eq!(headers["x-client-assertion"], json!("<redacted:bearer>"));
    assert_eq!(headers["x-user"], json!("<redacted:email>"));

    // JSON answered by text: one root body difference whose excerpt shows the redacted JSON.
    let text = by_path("/text");
    assert!(kinds(text).contains(&(String::new(), "body".to_string())));
    let detail = diff(text, "")["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("-  \"name\": \"Ann\""), "{detail}");
    assert!(detail.contains("\"token\": \"<redacted>\""), "{detail}");
    assert!(
        detail.contains("+Service temporarily unavailable"),
        "{detail}"
    );

    // Broken JSON mentioning a redacted key is withheld whole; the difference stays.
    let broken = by_path("/broken");
    assert!(
        broken["candidate"]["body"]
            .as_str()
            .unwrap()
            .starts_with("<withheld:"),
        "{broken:#}"
    );
    assert!(kinds(broken).contains(&(String::new(), "body".to_string())));

    // A text diff of headers keeps the header names and the lines that differ.
    let trace = by_path("/trace");
    let detail = diff(trace, "")["detail"].as_str().unwrap().to_string();
    assert!(detail.contains(" Cookie: <redacted>"), "{detail}");
    assert!(detail.contains("+X-Hop: 2"), "{detail}");

    let big = by_path("/big");
    let n = diff(big, "/n");
    assert_eq!(n["kind"], "value");
    assert_eq!(n["candidate"], json!(1));

    // Secrets in the URL path: the path and the endpoint name are redacted, the difference kept.
    for (path, endpoint) in [
        (
            "/users/<redacted:email>/cards/<redacted:card>",
            "GET /users/<redacted:email>/cards/{id}",
        ),
        (
            "/users/<redacted:email>/cards/<redacted:card>",
            "GET /users/<redacted:email>/cards/<redacted:card>",
        ),
        (
            "/sessions/jwt=<redacted:bearer>",
            "GET /sessions/jwt=<redacted:bearer>",
        ),
        (
            "/files;access_token=<redacted>",
            "GET /files;access_token=<redacted>",
        ),
    ] {
        let e = events
            .iter()
            .find(|e| e["request"]["path"] == path && e["endpoint"] == endpoint)
            .unwrap_or_else(|| panic!("no event for {endpoint} at {path}"));
        assert!(kinds(e).contains(&("/v".to_string(), "value".to_string())));
    }

    // The candidate's unparseable answer: a candidate error whose message is redacted.
    let chunk = by_path("/chunk");
    assert_eq!(chunk["verdict"], "candidate_error");
    let error = chunk["candidate"]["error"].as_str().unwrap();
    assert!(
        error.contains("chunk size") && error.contains("<redacted:email>"),
        "{error}"
    );

    // ... and one that quotes a redacted key's value: withheld whole.
    let error = by_path("/chunk-token")["candidate"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.starts_with("<withheld:"), "{error}");

    // The form body: the password's value hidden, the rest shown.
    let login = by_path("/login");
    assert_eq!(
        login["request"]["body"],
        json!("user=ann&password=<redacted>")
    );
}

/// `/api/v1/summary?window=all&top=100`: counts by the redacted names — the endpoints with
/// personal data in their path, and the fields holding it or lying below a redacted node.
#[track_caller]
pub fn assert_summary_counts_by_redacted_names(summary: &Value) {
    assert_eq!(summary["totals"]["exchanges"].as_u64(), Some(exchanges()));
    let endpoints: Vec<&str> = summary["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap())
        .collect();
    for e in [
        "GET /users/<redacted:email>/cards/{id}",
        "GET /users/<redacted:email>/cards/<redacted:card>",
        "GET /sessions/jwt=<redacted:bearer>",
        "GET /files;access_token=<redacted>",
    ] {
        assert!(endpoints.contains(&e), "{e} not among {endpoints:#?}");
    }
    let fields: Vec<&str> = summary["totals"]["top_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for f in [
        "/by_email/<redacted:email>/visits",
        "/by_card/<redacted:card>/limit",
        "/vault/<redacted>",
    ] {
        assert!(fields.contains(&f), "{f} not among {fields:#?}");
    }
}
