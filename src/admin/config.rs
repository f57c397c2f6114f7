//! `admin:` in `shadowdiff.yaml` (DESIGN.md, "Config file"): where the admin server listens, the
//! bearer token that guards it, and the extra `Host` names it answers to.
//!
//! Written either as an address (`admin: 127.0.0.1:9901`) or as a mapping
//! (`admin: {listen: 0.0.0.0:9901, token_file: /run/secrets/admin-token, allowed_hosts: [..]}`).
//! A non-loopback `listen` without a `token_file` is refused: the admin API serves the mismatch
//! feed, bodies included, and must not be readable by whoever can reach the port.

use super::access::Authority;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The admin address when the config names none.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9901);

/// Tokens shorter than this are refused: the admin port may face a network, and a short token
/// is guessable there. `openssl rand -hex 32` gives 64 characters.
pub const MIN_TOKEN_LEN: usize = 16;

/// `admin:` — the admin server's address and access rules.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin API, `/metrics` and the UI. Default `127.0.0.1:9901`. `--admin ADDR`
    /// overrides it. A non-loopback address needs `token_file`.
    pub listen: SocketAddr,
    /// A file holding the bearer token (surrounding whitespace ignored; at least 16 visible
    /// ASCII characters). With it, every route except `/`, `/healthz` and `/readyz` wants
    /// `Authorization: Bearer <token>`. Relative to the config file's folder. Default none.
    pub token_file: Option<PathBuf>,
    /// `Host` names answered besides the address a connection arrived on and the loopback names
    /// (`localhost`, `127.0.0.1`, `[::1]`): `name` (any port) or `name:port`. Any other `Host` is
    /// refused with 421, against DNS rebinding. Default none.
    #[serde(deserialize_with = "allowed_hosts")]
    pub allowed_hosts: Vec<Authority>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            token_file: None,
            allowed_hosts: Vec::new(),
        }
    }
}

impl From<SocketAddr> for AdminConfig {
    fn from(listen: SocketAddr) -> Self {
        Self {
            listen,
            ..Self::default()
        }
    }
}

impl AdminConfig {
    /// Whether `listen` only accepts connections from this host.
    pub fn is_loopback(&self) -> bool {
        self.listen.ip().to_canonical().is_loopback()
    }

    /// Checks the exposure rule and reads the token; `Ok(None)` when no token is configured.
    /// This is the one place both `check-config` and start-up go through.
    pub fn token(&self) -> Result<Option<AdminToken>, AdminConfigError> {
        match &self.token_file {
            Some(p) => read_token_file(p).map(Some),
            None if self.is_loopback() => Ok(None),
            None => Err(AdminConfigError::Exposed { addr: self.listen }),
        }
    }

    /// Makes a relative `token_file` relative to `dir` (the config file's folder).
    pub fn resolve_paths(&mut self, dir: &Path) {
        if let Some(t) = &self.token_file
            && t.is_relative()
            && !dir.as_os_str().is_empty()
        {
            self.token_file = Some(dir.join(t));
        }
    }
}

/// `admin:` as an address or a mapping; `null` means no admin server settings (the default
/// address is used).
pub(crate) fn deserialize_admin<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<AdminConfig>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<AdminConfig>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                "an address such as 127.0.0.1:9901, or a mapping {listen, token_file, allowed_hosts}",
            )
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            s.trim()
                .parse::<SocketAddr>()
                .map(|a| Some(a.into()))
                .map_err(|_| E::custom(format!("invalid socket address {s:?} (write IP:PORT)")))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Self::Value, A::Error> {
            AdminConfig::deserialize(serde::de::value::MapAccessDeserializer::new(m)).map(Some)
        }
    }
    d.deserialize_any(V)
}

/// One `allowed_hosts` entry: `name` (any port) or `name:port`, checked as it is read.
pub(crate) fn allowed_hosts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Authority>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| allowed_host(s).map_err(D::Error::custom))
        .collect()
}

fn allowed_host(s: &str) -> Result<Authority, String> {
    let t = s.trim();
    if t.contains("://") || t.contains('/') || t.contains('@') {
        return Err(format!(
            "allowed_hosts: {s:?}: give a host name or address, optionally with :PORT, not a URL"
        ));
    }
    if t.contains('*') {
        return Err(format!(
            "allowed_hosts: {s:?}: wildcards are not supported; list each name"
        ));
    }
    Authority::parse(t).ok_or_else(|| {
        format!("allowed_hosts: {s:?}: not a host name or address (with an optional :PORT)")
    })
}

/// The bearer token. Its `Debug` never shows the value, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Checks a token's text: trimmed, non-empty, visible ASCII only (it travels in a header),
    /// at least [`MIN_TOKEN_LEN`] characters.
    pub fn new(text: &str) -> Result<AdminToken, TokenError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(TokenError::Empty);
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotPrintable);
        }
        if t.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort { len: t.len() });
        }
        Ok(AdminToken(t.to_string()))
    }

    /// The token's text, for the `Authorization` header of a client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// What is wrong with a token's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("is empty")]
    Empty,
    #[error("holds whitespace or non-ASCII characters inside the token")]
    NotPrintable,
    #[error("is {len} characters long; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)")]
    TooShort { len: usize },
}

/// Reads and checks a token file (server and `shadowdiff gate --token-file` alike).
pub fn read_token_file(path: &Path) -> Result<AdminToken, AdminConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| AdminConfigError::TokenUnreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    AdminToken::new(&text).map_err(|reason| AdminConfigError::TokenInvalid {
        path: path.to_path_buf(),
        reason,
    })
}

/// Why the admin settings cannot be used. [`AdminConfigError::key`] names the `admin.*` key at
/// fault, so the config validator can point at its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminConfigError {
    #[error(
        "admin.listen: {addr} is not a loopback address and admin.token_file is not set; the admin \
         API serves the mismatch feed to whoever reaches it. Set admin.token_file (a file holding a \
         bearer token) or listen on 127.0.0.1"
    )]
    Exposed { addr: SocketAddr },
    #[error("admin.token_file: cannot read {}: {reason}", path.display())]
    TokenUnreadable { path: PathBuf, reason: String },
    #[error("admin.token_file: the token in {} {reason}", path.display())]
    TokenInvalid { path: PathBuf, reason: TokenError },
}

impl AdminConfigError {
    /// The key under `admin:` the problem is about.
    pub fn key(&self) -> &'static str {
        match self {
            AdminConfigError::Exposed { .. } => "listen",
            AdminConfigError::TokenUnreadable { .. } | AdminConfigError::TokenInvalid { .. } => {
                "token_file"
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
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
}
