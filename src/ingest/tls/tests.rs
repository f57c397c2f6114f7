//! What `check-config` says about `tls:` blocks without certificates at hand; the handshakes
//! themselves are tested against nginx (`tests/tls.rs`), with certificates made there.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::units::de::Upstream;

fn block(yaml: &str) -> TlsSection {
    serde_yaml_ng::from_str(yaml).unwrap()
}

fn reasons(s: &TlsSection, candidate: &str) -> Vec<String> {
    let c = Upstream::parse(candidate).unwrap();
    s.check([None, Some(&c), None])
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn missing_files_and_half_a_client_pair_are_each_reported_at_their_key() {
    let s = block("candidate: {ca_file: /nonexistent/ca.pem, client_cert: /nonexistent/c.pem}");
    let r = reasons(&s, "https://c:8443");
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(
        r[0].starts_with("tls.candidate.ca_file: /nonexistent/ca.pem: "),
        "{r:?}"
    );
    assert_eq!(r[1], "tls.candidate.client_key: required with client_cert");
}

#[test]
fn a_file_without_a_certificate_or_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("empty.pem");
    std::fs::write(&f, "not pem\n").unwrap();
    let s = TlsSection {
        candidate: Some(TlsConfig {
            ca_file: Some(f.clone()),
            client_cert: Some(f.clone()),
            client_key: Some(f.clone()),
            ..TlsConfig::default()
        }),
        ..TlsSection::default()
    };
    let r = reasons(&s, "https://c");
    assert!(
        r[0].contains("ca_file") && r[0].contains("no PEM certificate"),
        "{r:?}"
    );
    assert!(
        r[1].contains("client_cert") && r[1].contains("no PEM certificate"),
        "{r:?}"
    );
}

#[test]
fn a_block_for_an_http_upstream_and_a_bad_server_name_are_refused() {
    let r = reasons(&block("candidate: {}"), "http://c:80");
    assert_eq!(
        r,
        [
            "tls.candidate: the candidate is an http:// upstream; TLS settings apply to https:// URLs only"
        ]
    );
    let r = reasons(&block("candidate: {server_name: 'a b'}"), "https://c");
    assert!(
        r[0].starts_with("tls.candidate.server_name: \"a b\""),
        "{r:?}"
    );
}

#[test]
fn relative_paths_are_relative_to_the_config_folder() {
    let mut s = block("primary: {ca_file: ca.pem, client_cert: /abs/c.pem}");
    s.resolve_paths(Path::new("/etc/shadowdiff"));
    let p = s.primary.unwrap();
    assert_eq!(p.ca_file.unwrap(), Path::new("/etc/shadowdiff/ca.pem"));
    assert_eq!(p.client_cert.unwrap(), Path::new("/abs/c.pem"));
}
