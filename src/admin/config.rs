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
    /// The file acknowledged signatures are kept in (JSON, rewritten on each change). Relative
    /// to the config file's folder. Default: `acknowledgements.json` in the Kafka sink's
    /// `spool_dir`, else `shadowdiff-acknowledgements.json` beside the event file, else kept in
    /// memory only (lost at exit; logged).
    pub acknowledgements: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            token_file: None,
            allowed_hosts: Vec::new(),
            acknowledgements: None,
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
        if let Some(a) = &self.acknowledgements
            && a.is_relative()
            && !dir.as_os_str().is_empty()
        {
            self.acknowledgements = Some(dir.join(a));
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
mod tests;
