use super::*;

#[derive(Deserialize)]
struct Doc {
    #[serde(deserialize_with = "deserialize_admin")]
    admin: Option<AdminConfig>,
}

fn admin(yaml: &str) -> Result<Option<AdminConfig>, String> {
    serde_yaml_ng::from_str::<Doc>(yaml)
        .map(|d| d.admin)
        .map_err(|e| e.to_string())
}

#[test]
fn an_address_or_a_mapping() {
    assert_eq!(
        admin("admin: 127.0.0.1:9901").unwrap(),
        Some(AdminConfig::default())
    );
    assert_eq!(admin("admin: null").unwrap(), None);
    let a = admin(
        "admin: {listen: 0.0.0.0:9902, token_file: t, allowed_hosts: [Admin.Example, 'x.example:81', '[::1]:9']}",
    )
    .unwrap()
    .unwrap();
    assert_eq!(a.listen.to_string(), "0.0.0.0:9902");
    assert_eq!(a.token_file.as_deref(), Some(Path::new("t")));
    let hosts: Vec<String> = a.allowed_hosts.iter().map(|h| h.to_string()).collect();
    assert_eq!(hosts, ["admin.example", "x.example:81", "[::1]:9"]);
    // Keys left out take their defaults.
    assert_eq!(
        admin("admin: {token_file: t}").unwrap().unwrap().listen,
        DEFAULT_LISTEN
    );
}

#[test]
fn bad_values_are_named() {
    let e = admin("admin: nowhere").unwrap_err();
    assert!(e.contains("invalid socket address"), "{e}");
    let e = admin("admin: {listen: 127.0.0.1:1, tokenfile: t}").unwrap_err();
    assert!(e.contains("unknown field `tokenfile`"), "{e}");
    for bad in [
        "http://x.example",
        "x.example/",
        "*.example",
        "a b",
        "x:99999",
    ] {
        let e = admin(&format!("admin: {{allowed_hosts: ['{bad}']}}")).unwrap_err();
        assert!(e.contains("allowed") || e.contains(bad), "{bad}: {e}");
    }
}

#[test]
fn a_non_loopback_address_needs_a_token() {
    let open: AdminConfig = "0.0.0.0:9901".parse::<SocketAddr>().unwrap().into();
    assert_eq!(
        open.token().unwrap_err(),
        AdminConfigError::Exposed { addr: open.listen }
    );
    assert_eq!(open.token().unwrap_err().key(), "listen");
    for lo in [
        "127.0.0.1:1",
        "127.3.2.1:1",
        "[::1]:1",
        "[::ffff:127.0.0.1]:1",
    ] {
        let c: AdminConfig = lo.parse::<SocketAddr>().unwrap().into();
        assert_eq!(c.token().unwrap(), None, "{lo}");
    }
}

#[test]
fn the_token_file_is_read_trimmed_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let cfg = AdminConfig {
        listen: "0.0.0.0:9901".parse().unwrap(),
        token_file: Some(file.clone()),
        ..AdminConfig::default()
    };
    let e = cfg.token().unwrap_err();
    assert!(matches!(e, AdminConfigError::TokenUnreadable { .. }), "{e}");
    assert_eq!(e.key(), "token_file");
    std::fs::write(&file, " \n").unwrap();
    assert!(matches!(
        cfg.token().unwrap_err(),
        AdminConfigError::TokenInvalid {
            reason: TokenError::Empty,
            ..
        }
    ));
    std::fs::write(&file, "short\n").unwrap();
    assert!(cfg.token().unwrap_err().to_string().contains("at least 16"));
    std::fs::write(&file, "two words-0123456789\n").unwrap();
    assert!(matches!(
        cfg.token().unwrap_err(),
        AdminConfigError::TokenInvalid {
            reason: TokenError::NotPrintable,
            ..
        }
    ));
    std::fs::write(&file, "  0123456789abcdef0123\r\n").unwrap();
    let t = cfg.token().unwrap().unwrap();
    assert_eq!(t.expose(), "0123456789abcdef0123");
    assert!(!format!("{t:?}").contains("0123"), "Debug hides the token");
}

/// `admin:` problems as `check-config` reports them: (line, reason).
fn problems(yaml: &str) -> Vec<(Option<usize>, String)> {
    crate::config::Config::from_yaml(Path::new("shadowdiff.yaml"), yaml)
        .map(|_| Vec::new())
        .unwrap_or_else(|e| e.0.into_iter().map(|p| (p.line, p.reason)).collect())
}

#[test]
fn config_problems_point_at_their_lines() {
    let got = problems("listen: 127.0.0.1:8080\nadmin: 0.0.0.0:9901\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, Some(2));
    assert!(
        got[0]
            .1
            .contains("admin.listen: 0.0.0.0:9901 is not a loopback address")
    );

    let got = problems("admin:\n  allowed_hosts: [x.example]\n  listen: '[::]:9901'\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, Some(3), "{got:?}");
    assert!(got[0].1.contains("token_file is not set"), "{got:?}");

    // Each bad key at its own line, all at once.
    let got = problems(
        "admin:\n  listen: nowhere\n  allowed_hosts: ['http://x.example']\n  colour: blue\n",
    );
    let lines: Vec<Option<usize>> = got.iter().map(|p| p.0).collect();
    assert_eq!(lines, [Some(2), Some(3), Some(4)], "{got:?}");
    assert!(got[0].1.starts_with("admin.listen:"), "{got:?}");
    assert!(got[1].1.contains("not a URL"), "{got:?}");
    assert!(got[2].1.contains("unknown field `colour`"), "{got:?}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let got = problems(&format!(
        "admin:\n  listen: 0.0.0.0:9901\n  token_file: {}\n",
        missing.display()
    ));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, Some(3));
    assert!(
        got[0].1.contains("admin.token_file: cannot read"),
        "{got:?}"
    );

    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let got = problems(&format!("admin: {{token_file: {}}}\n", empty.display()));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, Some(1));
    assert!(got[0].1.contains("is empty"), "{got:?}");

    let good = dir.path().join("good");
    std::fs::write(&good, "0123456789abcdef0123\n").unwrap();
    assert_eq!(
        problems(&format!(
            "admin:\n  listen: 0.0.0.0:9901\n  token_file: {}\n",
            good.display()
        )),
        []
    );
}

#[test]
fn relative_token_files_follow_the_config_file() {
    let mut c = AdminConfig {
        token_file: Some("secrets/t".into()),
        ..AdminConfig::default()
    };
    c.resolve_paths(Path::new(""));
    assert_eq!(c.token_file.as_deref(), Some(Path::new("secrets/t")));
    c.resolve_paths(Path::new("/etc/shadowdiff"));
    assert_eq!(
        c.token_file.as_deref(),
        Some(Path::new("/etc/shadowdiff/secrets/t"))
    );
    c.resolve_paths(Path::new("/elsewhere"));
    assert_eq!(
        c.token_file.as_deref(),
        Some(Path::new("/etc/shadowdiff/secrets/t"))
    );
}
