#![allow(clippy::unwrap_used)]

use super::*;

fn rw(yaml: &str) -> UpstreamRewrite {
    serde_yaml_ng::from_str(yaml).unwrap()
}

fn refused(yaml: &str) -> String {
    serde_yaml_ng::from_str::<UpstreamRewrite>(yaml)
        .unwrap_err()
        .to_string()
}

#[test]
fn rules_run_in_order_then_the_prefix() {
    let r = rw(r#"
path_prefix: /v2/
rewrite:
  - {in: path, regex: "^/orders/(\\d+)$", replace: "/order/$1"}
  - {in: query, regex: "(^|&)debug=[^&]*", replace: ""}
  - {in: query, regex: "^expand=", replace: "include="}
"#);
    assert_eq!(
        r.path_and_query("/orders/42?debug=1&expand=items"),
        "/v2/order/42?&expand=items"
    );
    assert_eq!(
        r.path_and_query("/orders/42?expand=items"),
        "/v2/order/42?include=items"
    );
    // An emptied query sends no `?`; an untouched path only gets the prefix.
    assert_eq!(r.path_and_query("/x?debug=1"), "/v2/x");
    assert_eq!(r.path_and_query("/"), "/v2/");
    assert_eq!(rw("{}").path_and_query("/a?b"), "/a?b");
}

#[test]
fn header_values_are_rewritten_every_one_and_others_untouched() {
    let r = rw(
        r#"rewrite: [{in: header, name: X-Tenant, regex: "^acme(-.*)?$", replace: "acme-staging${1}"}]"#,
    );
    let mut h = HeaderMap::new();
    h.append("x-tenant", HeaderValue::from_static("acme"));
    h.append("x-tenant", HeaderValue::from_static("acme-eu"));
    h.append("x-tenant", HeaderValue::from_static("other"));
    h.append("x-other", HeaderValue::from_static("acme"));
    r.headers(&mut h);
    let got: Vec<_> = h
        .get_all("x-tenant")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(got, ["acme-staging", "acme-staging-eu", "other"]);
    assert_eq!(h["x-other"], "acme");
    assert_eq!(r.path_and_query("/p"), "/p");
}

#[test]
fn bad_rules_are_refused_with_the_reason() {
    for (yaml, reason) in [
        (
            "rewrite: [{in: header, regex: a, replace: b}]",
            "name: required with `in: header`",
        ),
        (
            "rewrite: [{in: path, name: x, regex: a, replace: b}]",
            "name: only with `in: header`",
        ),
        (
            "rewrite: [{in: body, regex: a, replace: b}]",
            "unknown variant `body`",
        ),
        (
            "rewrite: [{in: path, regex: '(', replace: b}]",
            "regex: regex parse error",
        ),
        (
            "rewrite: [{in: path, regex: '(a)', replace: '/$1a'}]",
            "replace: $1a names no group",
        ),
        (
            "rewrite: [{in: path, regex: '(a)', replace: '/$2'}]",
            "replace: $2 names no group",
        ),
        (
            "rewrite: [{in: path, regex: a, replace: '/a b'}]",
            "not allowed in a path",
        ),
        (
            "rewrite: [{in: path, regex: a, replace: '/a?b'}]",
            "not allowed in a path",
        ),
        (
            "rewrite: [{in: query, regex: a, replace: 'a#b'}]",
            "not allowed in a query",
        ),
        (
            "rewrite: [{in: header, name: x, regex: a, replace: \"a\\nb\"}]",
            "not allowed in a header value",
        ),
        ("path_prefix: v2", "expected a path such as /v2"),
        ("path_prefix: /v2?x", "expected a path such as /v2"),
        ("rewrite: [{in: path, regex: a}]", "missing field `replace`"),
    ] {
        let e = refused(yaml);
        assert!(e.contains(reason), "{yaml}: {e}");
    }
    // Named groups and `$$` are fine.
    let r = rw(r#"rewrite: [{in: path, regex: "/(?P<id>\\d+)", replace: "/$${id}/${id}"}]"#);
    assert_eq!(r.path_and_query("/7"), "/${id}/7");
}
