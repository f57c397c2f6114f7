use super::*;

fn a(s: &str) -> Authority {
    Authority::parse(s).unwrap_or_else(|| panic!("{s:?} should parse"))
}

#[test]
fn constant_time_compare_is_equality() {
    let x = digest(b"0123456789abcdef");
    assert!(ct_eq(&x, &x));
    // A difference in any one byte, first to last, is seen (no early exit that skips the tail).
    for i in 0..32 {
        let mut y = x;
        y[i] ^= 0x01;
        assert!(!ct_eq(&x, &y), "difference at byte {i}");
        y[i] ^= 0x81;
        assert!(!ct_eq(&x, &y), "difference at byte {i}");
    }
}

#[test]
fn tokens_match_only_the_whole_token() {
    let want = digest(b"0123456789abcdef");
    assert!(tokens_match(&want, b"0123456789abcdef"));
    for wrong in [
        &b""[..],
        b"0123456789abcde",
        b"0123456789abcdef0",
        b"0123456789abcdeF",
        b"x123456789abcdef",
    ] {
        assert!(!tokens_match(&want, wrong), "{wrong:?}");
    }
}

#[test]
fn bearer_header_parsing() {
    let h = |v: &str| {
        let mut m = HeaderMap::new();
        m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        bearer(&m).map(|b| String::from_utf8(b.to_vec()).unwrap())
    };
    assert_eq!(h("Bearer abc").as_deref(), Some("abc"));
    assert_eq!(h("bearer   abc ").as_deref(), Some("abc"));
    assert_eq!(h("BEARER abc").as_deref(), Some("abc"));
    assert_eq!(h("Basic abc"), None);
    assert_eq!(h("Bearer"), None);
    assert_eq!(h("Bearer "), None);
    assert_eq!(h("Bearerabc"), None);
    assert_eq!(bearer(&HeaderMap::new()), None);
}

#[test]
fn authorities_parse() {
    assert_eq!(
        a("LocalHost:9901"),
        Authority {
            host: "localhost".into(),
            port: Some(9901)
        }
    );
    assert_eq!(a("admin.example").port, None);
    assert_eq!(a("10.1.2.3:80").host, "10.1.2.3");
    assert_eq!(
        a("[::1]:9901"),
        Authority {
            host: "::1".into(),
            port: Some(9901)
        }
    );
    assert_eq!(a("[fe80::1]").port, None);
    for bad in [
        "",
        ":80",
        "host:",
        "host:port",
        "host:99999",
        "::1",
        "[::1",
        "[::1]x",
        "[evil.example]:1",
        "user@host",
        "a b",
        "host:80:81",
        "evil.example/x",
    ] {
        assert_eq!(Authority::parse(bad), None, "{bad:?}");
    }
    assert_eq!(a("[::1]:9").to_string(), "[::1]:9");
    assert_eq!(a("X.example").to_string(), "x.example");
}

fn access(listen: &str, allowed: &[&str]) -> AdminAccess {
    AdminAccess {
        listen: Some(listen.parse().unwrap()),
        allowed_hosts: allowed.iter().map(|s| a(s)).collect(),
        ..AdminAccess::default()
    }
}

#[test]
fn loopback_names_pass_with_any_port() {
    let acc = access("127.0.0.1:9901", &[]);
    for ok in [
        "localhost",
        "localhost:9901",
        "localhost:8080",
        "127.0.0.1",
        "127.0.0.1:9901",
        "127.0.0.1:1234",
        "127.1.2.3:9901",
        "[::1]",
        "[::1]:9901",
        "[::ffff:127.0.0.1]:9901",
    ] {
        assert!(acc.host_allowed(&a(ok), None), "{ok}");
    }
}

#[test]
fn other_names_are_refused_unless_allowed() {
    let acc = access("127.0.0.1:9901", &["admin.example", "ops.example:8443"]);
    for bad in [
        "evil.example",
        "evil.example:9901",
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        "admin.example.evil",
        "ops.example",
        "ops.example:9901",
        "10.0.0.7:9901",
    ] {
        assert!(!acc.host_allowed(&a(bad), None), "{bad}");
    }
    for ok in [
        "admin.example",
        "ADMIN.example:9901",
        "admin.example:1",
        "ops.example:8443",
    ] {
        assert!(acc.host_allowed(&a(ok), None), "{ok}");
    }
    // An allowed name with a port matches a Host without one only on port 80.
    let acc80 = access("127.0.0.1:9901", &["svc.example:80"]);
    assert!(acc80.host_allowed(&a("svc.example"), None));
    assert!(!acc80.host_allowed(&a("svc.example:81"), None));
}

#[test]
fn the_address_the_connection_arrived_on_passes() {
    // Listening on 0.0.0.0: the configured address names no host, so a probe's
    // `Host: <pod IP>:<port>` is matched against the connection's local address.
    let acc = AdminAccess::from_config(&AdminConfig {
        listen: "0.0.0.0:9901".parse().unwrap(),
        token_file: None,
        allowed_hosts: vec![],
        acknowledgements: None,
    });
    assert!(acc.is_err(), "0.0.0.0 without a token is refused at start");
    let acc = AdminAccess::default();
    let local: SocketAddr = "10.1.2.3:9901".parse().unwrap();
    assert!(acc.host_allowed(&a("10.1.2.3:9901"), Some(local)));
    assert!(
        !acc.host_allowed(&a("10.1.2.3:9902"), Some(local)),
        "port differs"
    );
    assert!(
        !acc.host_allowed(&a("10.1.2.4:9901"), Some(local)),
        "ip differs"
    );
    assert!(
        !acc.host_allowed(&a("10.1.2.3"), Some(local)),
        "port 80 implied"
    );
    assert!(!acc.host_allowed(&a("10.1.2.3:9901"), None));
    // The configured listen address passes too (a router mounted without connection info).
    let acc = access("10.9.9.9:9901", &[]);
    assert!(acc.host_allowed(&a("10.9.9.9:9901"), None));
    let v6 = access("[fd00::5]:9901", &[]);
    assert!(v6.host_allowed(&a("[FD00::5]:9901"), None));
}

#[test]
fn the_token_is_checked_and_never_shown() {
    let t = AdminToken::new("0123456789abcdef").unwrap();
    let acc = AdminAccess::default().with_token(&t);
    assert!(acc.token_required());
    let with = |v: Option<&str>| {
        let mut m = HeaderMap::new();
        if let Some(v) = v {
            m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        acc.authorized(&m)
    };
    assert!(with(Some("Bearer 0123456789abcdef")).is_ok());
    assert!(matches!(with(None), Err(Refusal::NoToken)));
    assert!(matches!(with(Some("Basic x")), Err(Refusal::NoToken)));
    assert!(matches!(
        with(Some("Bearer 0123456789abcdeX")),
        Err(Refusal::BadToken)
    ));
    assert!(!format!("{acc:?}").contains("0123"), "{acc:?}");
    assert!(AdminAccess::default().authorized(&HeaderMap::new()).is_ok());
}
