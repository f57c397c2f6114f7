//! Triage over real sockets (issue 16): a whole sidecar (`app::Sidecar`, as `shadowdiff proxy`
//! starts it) in front of two sample backends; QA acknowledges a signature through the API with
//! the admin token; it is then counted as expected (beside the raw figures) and left out of the
//! gate; its suggested rule is a loadable `diff-rules` snippet pre-checked on the recent events;
//! the acknowledgement survives a restart; and the write route wants the token even on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{SidecarRun, backend, eventually, full, get, h1_client, send};
use serde_json::{Value, json};
use std::net::SocketAddr;

const TOKEN: &str = "triage-token-0123456789abcdef";
/// A token and an e-mail address typed into an acknowledgement: never kept, never served.
const SECRET_TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJxYSJ9.c2lnbmF0dXJlc2lnbmF0dXJl";
const SECRET_MAIL: &str = "alice.qa@example.com";

/// The primary and the candidate: `/orders/*` differ in `/total` (by 0.5) and in
/// `/meta/build`; `/users/*` differ in `/name` (another signature).
async fn backends() -> (common::Backend, common::Backend) {
    let answer = |candidate: bool| {
        move |r: common::Recorded| async move {
            let body = match (r.uri.starts_with("/orders"), candidate) {
                (true, false) => r#"{"id":1,"total":9.99,"meta":{"build":"a"}}"#,
                (true, true) => r#"{"id":1,"total":10.49,"meta":{"build":"b"}}"#,
                (false, false) => r#"{"name":"ann"}"#,
                (false, true) => r#"{"name":"bob"}"#,
            };
            http::Response::builder()
                .header("content-type", "application/json")
                .body(full(body))
                .unwrap()
        }
    };
    (backend(answer(false)).await, backend(answer(true)).await)
}

fn yaml(p: &common::Backend, c: &common::Backend, dir: &std::path::Path, token: bool) -> String {
    let admin = if token {
        let f = dir.join("admin-token");
        std::fs::write(&f, TOKEN).unwrap();
        format!(
            "admin: {{listen: 127.0.0.1:0, token_file: {}, acknowledgements: {}}}\n",
            f.display(),
            dir.join("acks.json").display()
        )
    } else {
        "admin: 127.0.0.1:0\n".to_string()
    };
    format!(
        "listen: 127.0.0.1:0\nprimary: {}\ncandidate: {}\nsinks:\n  file: {{path: {}}}\n{admin}",
        p.upstream(),
        c.upstream(),
        dir.join("events.jsonl").display()
    )
}

/// One admin request over a real socket: (status, JSON body).
async fn call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            full(b.to_string())
        }
        None => full(""),
    };
    let (parts, bytes) = send(&h1_client(), req.body(body).unwrap()).await;
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status.as_u16(), v)
}

/// Sends `n` GETs to `prefix{i}` through the proxy and waits until the admin API counted them.
async fn drive(s: &SidecarRun, prefix: &str, n: usize, total: u64) {
    let client = h1_client();
    for i in 0..n {
        let (parts, _) = get(&client, &format!("http://{}{prefix}{i}", s.proxy_addr())).await;
        assert_eq!(parts.status, 200);
    }
    let stats = s.stats().clone();
    eventually("every exchange counted", || {
        stats
            .summary(shadowdiff::stats::Window::All, 1)
            .totals
            .exchanges
            == total
    })
    .await;
}

async fn orders_signature(admin: SocketAddr, token: Option<&str>) -> String {
    let (st, v) = call(admin, "GET", "/api/v1/signatures", token, None).await;
    assert_eq!(st, 200, "{v}");
    v["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["endpoint"].as_str().unwrap().contains("/orders"))
        .unwrap_or_else(|| panic!("no /orders cluster in {v}"))["signature"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_signatures_are_expected_get_a_checked_rule_and_survive_a_restart() {
    let (p, c) = backends().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = yaml(&p, &c, dir.path(), true);
    let s = SidecarRun::from_yaml(&cfg).await;
    let admin = s.admin_addr();
    let t = Some(TOKEN);
    drive(&s, "/orders/", 20, 20).await;
    drive(&s, "/users/", 5, 25).await;
    let sig = orders_signature(admin, t).await;

    // The write route wants the token like every data route.
    let ack = json!({
        "signature": sig,
        "by": format!("qa {SECRET_MAIL}"),
        "reason": format!("new rounding, agreed\nin ticket (token Bearer {SECRET_TOKEN})"),
        "exclude_from_gate": true,
    });
    let (st, _) = call(
        admin,
        "POST",
        "/api/v1/acknowledgements",
        None,
        Some(ack.clone()),
    )
    .await;
    assert_eq!(st, 401, "acknowledging without the token");
    let (st, v) = call(admin, "POST", "/api/v1/acknowledgements", t, Some(ack)).await;
    assert_eq!(st, 201, "{v}");
    let text = v.to_string();
    assert!(
        !text.contains(SECRET_MAIL) && !text.contains(SECRET_TOKEN),
        "a secret typed into the acknowledgement was served: {text}"
    );
    assert_eq!(v["acknowledgement"]["exclude_from_gate"], true);
    assert!(
        v["acknowledgement"]["by"]
            .as_str()
            .unwrap()
            .starts_with("qa ")
    );

    // The suggested rule: an ignore for the string, a tolerance for the number, loadable, and
    // pre-checked with the comparator on the 25 recent events.
    let rule = &v["suggested_rule"];
    let yaml_text = rule["yaml"].as_str().unwrap_or_else(|| panic!("{rule}"));
    assert!(
        yaml_text.contains("ignore: [\"/meta/build\"]"),
        "{yaml_text}"
    );
    assert!(yaml_text.contains("\"/total\": {abs: 0.5"), "{yaml_text}");
    let loaded = shadowdiff::compare::rules::RuleSet::from_yaml(yaml_text);
    assert!(
        loaded.is_ok(),
        "the snippet must load: {loaded:?}\n{yaml_text}"
    );
    assert_eq!(
        rule["precheck"]["summary"], "absorbs 20 of 20 events of this signature, and 0 others",
        "{rule}"
    );
    assert_eq!(rule["precheck"]["others"], 5);
    assert_eq!(rule["precheck"]["method"], "comparator");
    let (st, again) = call(
        admin,
        "GET",
        &format!("/api/v1/suggested-rule?signature={sig}"),
        t,
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(again["yaml"], rule["yaml"]);

    // Expected: counted beside the raw figures, and out of the gate's divergence.
    let (_, sum) = call(admin, "GET", "/api/v1/summary?window=all", t, None).await;
    assert_eq!(
        sum["totals"]["divergence"]["divergent"], 25,
        "raw figures stay"
    );
    assert_eq!(
        sum["totals"]["expected"]["exchanges"], 20,
        "{}",
        sum["totals"]
    );
    assert_eq!(sum["totals"]["expected"]["excluded_from_gate"], 20);
    let (_, gate) = call(
        admin,
        "GET",
        "/api/v1/gate?max_divergence=0.5&min_samples=1",
        t,
        None,
    )
    .await;
    assert_eq!(gate["divergent"], 5, "{gate}");
    assert_eq!(gate["samples"], 25);
    assert_eq!(gate["expected"]["excluded_from_gate"], 20);
    let (_, sigs) = call(admin, "GET", "/api/v1/signatures", t, None).await;
    let acked: Vec<&Value> = sigs["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["acknowledgement"].is_null())
        .collect();
    assert_eq!(acked.len(), 1, "{sigs}");
    assert_eq!(acked[0]["signature"], sig.as_str());

    // Kept in the file (redacted), and across a restart.
    let kept = std::fs::read_to_string(dir.path().join("acks.json")).unwrap();
    assert!(kept.contains(&sig) && !kept.contains(SECRET_MAIL) && !kept.contains(SECRET_TOKEN));
    s.stop().await;
    let s = SidecarRun::from_yaml(&cfg).await;
    let admin = s.admin_addr();
    let (st, list) = call(admin, "GET", "/api/v1/acknowledgements", t, None).await;
    assert_eq!(st, 200);
    assert_eq!(
        list["acknowledgements"].as_array().unwrap().len(),
        1,
        "{list}"
    );
    assert_eq!(list["acknowledgements"][0]["signature"], sig.as_str());
    assert_eq!(list["persisted"], true);
    drive(&s, "/orders/", 3, 3).await;
    let (_, gate) = call(admin, "GET", "/api/v1/gate?min_samples=1", t, None).await;
    assert_eq!(gate["expected"]["excluded_from_gate"], 3, "{gate}");
    assert_eq!(gate["divergent"], 0, "{gate}");

    // Removing it counts the signature again.
    let (st, _) = call(
        admin,
        "DELETE",
        &format!("/api/v1/acknowledgements?signature={sig}"),
        t,
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (_, gate) = call(admin, "GET", "/api/v1/gate?min_samples=1", t, None).await;
    assert_eq!(gate["divergent"], 3, "{gate}");
    s.stop().await;
}

/// A page in the operator's browser can `POST` cross-site to a loopback admin server (its `Host`
/// is a loopback name), but never with an `Authorization` header: without a configured token,
/// acknowledging is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledging_needs_a_configured_token_even_on_loopback() {
    let (p, c) = backends().await;
    let dir = tempfile::tempdir().unwrap();
    let s = SidecarRun::from_yaml(&yaml(&p, &c, dir.path(), false)).await;
    let admin = s.admin_addr();
    drive(&s, "/orders/", 2, 2).await;
    let sig = orders_signature(admin, None).await;
    let body = json!({"signature": sig, "by": "qa", "exclude_from_gate": true});
    let (st, v) = call(admin, "POST", "/api/v1/acknowledgements", None, Some(body)).await;
    assert_eq!(st, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("token_file"), "{v}");
    let (st, _) = call(
        admin,
        "DELETE",
        &format!("/api/v1/acknowledgements?signature={sig}"),
        None,
        None,
    )
    .await;
    assert_eq!(st, 403);
    let (st, list) = call(admin, "GET", "/api/v1/acknowledgements", None, None).await;
    assert_eq!(st, 200, "reading stays open on loopback");
    assert_eq!(list["acknowledgements"], json!([]));
    let (_, gate) = call(admin, "GET", "/api/v1/gate?min_samples=1", None, None).await;
    assert_eq!(gate["divergent"], 2, "nothing left the gate");
    s.stop().await;
}
