//! TLS to upstreams: `https://` URLs and the `tls:` section (DESIGN.md, "Config file").
//!
//! One [`TlsClient`] is built per upstream at start, from the upstream's URL and its
//! `tls.<side>` block: the roots it trusts (the system's, through rustls-native-certs, or
//! `ca_file`), the name it sends as SNI and verifies (`server_name`, else the URL's host), the
//! client certificate for mTLS (`client_cert`/`client_key`) and the ALPN protocols the caller
//! asks for. [`TlsClient::wrap`] turns a connected TCP stream into a TLS stream; the shadow
//! client and the primary's connector ([`TlsHttpConnector`]) both go through it, as a protocol
//! that wants `h2` would. Certificates are always verified: there is no switch to turn that off.
//!
//! Sessions are resumed: the `ClientConfig` (and with it rustls's in-memory session cache, 256
//! entries) lives as long as the upstream's client, so a new connection to a known server
//! skips the full handshake. Connections are pooled by their callers as before (a TLS
//! connection is the socket plus rustls's state, see [`Conn`]).
//!
//! rustls with the `ring` provider: it builds with only a C compiler (aws-lc-rs wants cmake).

mod conn;

pub use conn::{Conn, TlsHttpConnector};

use crate::exchange::UpstreamError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// `tls:` — per upstream, for `https://` URLs. Each block is optional: an `https://` upstream
/// without one trusts the system roots, sends its URL's host as SNI and presents no client
/// certificate. Paths are relative to the config file's folder. Default `{}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    pub primary: Option<TlsConfig>,
    pub candidate: Option<TlsConfig>,
    pub secondary: Option<TlsConfig>,
}

/// One upstream's `tls:` block.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file of the CA certificates this upstream's certificate must chain to, instead of
    /// the system roots. Default none: the system roots.
    pub ca_file: Option<PathBuf>,
    /// The name sent as SNI and checked against the certificate. Default the URL's host.
    pub server_name: Option<String>,
    /// PEM file of the client certificate (chain, leaf first) presented for mTLS; needs
    /// `client_key`. Default none.
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1). Default none.
    pub client_key: Option<PathBuf>,
}

/// The upstreams a `tls:` block may name, in the config's order.
pub const SIDES: [&str; 3] = ["primary", "candidate", "secondary"];

impl TlsSection {
    /// The block for `side` (`primary`, `candidate`, `secondary`).
    pub fn get(&self, side: &str) -> Option<&TlsConfig> {
        match side {
            "primary" => self.primary.as_ref(),
            "candidate" => self.candidate.as_ref(),
            "secondary" => self.secondary.as_ref(),
            _ => None,
        }
    }

    /// Makes relative file names relative to `dir` (the config file's folder).
    pub fn resolve_paths(&mut self, dir: &Path) {
        for c in [&mut self.primary, &mut self.candidate, &mut self.secondary]
            .into_iter()
            .flatten()
        {
            for p in [&mut c.ca_file, &mut c.client_cert, &mut c.client_key]
                .into_iter()
                .flatten()
            {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
    }

    /// Every problem with the blocks, given each side's URL (`None`: not in the file, perhaps
    /// given by a flag): a block for an `http://` upstream, a bad `server_name`, files that
    /// cannot be read or parsed, a key that does not go with its certificate.
    pub fn check(&self, urls: [Option<&crate::units::de::Upstream>; 3]) -> Vec<TlsError> {
        let mut problems = Vec::new();
        for (side, url) in SIDES.into_iter().zip(urls) {
            let Some(block) = self.get(side) else {
                continue;
            };
            if url.is_some_and(|u| !u.is_tls()) {
                problems.push(TlsError {
                    side,
                    key: None,
                    reason: format!(
                        "the {side} is an http:// upstream; TLS settings apply to https:// URLs only"
                    ),
                });
                continue;
            }
            let host = url.map_or("localhost", |u| u.host());
            problems.extend(server_name(side, host, block).err());
            if let Some(f) = &block.ca_file {
                problems.extend(
                    roots_from(f)
                        .err()
                        .map(|r| TlsError::at(side, "ca_file", r)),
                );
            }
            problems.extend(client_auth(side, block).err());
        }
        problems
    }
}

/// Why an upstream's TLS settings cannot be used: which block, which key, and why.
#[derive(Debug, Clone, thiserror::Error)]
pub struct TlsError {
    pub side: &'static str,
    /// The key at fault (`ca_file`, `client_cert`, ...); `None` for the block as a whole.
    pub key: Option<&'static str>,
    pub reason: String,
}

impl TlsError {
    fn at(side: &'static str, key: &'static str, reason: String) -> Self {
        TlsError {
            side,
            key: Some(key),
            reason,
        }
    }

    /// The key path in the config file, for the line of a problem.
    pub fn path(&self) -> Vec<&'static str> {
        let mut p = vec!["tls", self.side];
        p.extend(self.key);
        p
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path().join("."), self.reason)
    }
}

/// What one upstream's connections are wrapped with (see the module docs).
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// The client for the upstream `side` at `host` (the URL's, without brackets), with its
    /// `tls:` block if any, offering `alpn` (e.g. `[b"http/1.1"]`; empty: no ALPN).
    pub fn new(
        side: &'static str,
        host: &str,
        cfg: Option<&TlsConfig>,
        alpn: &[&[u8]],
    ) -> Result<TlsClient, TlsError> {
        let none = TlsConfig::default();
        let cfg = cfg.unwrap_or(&none);
        let name = server_name(side, host, cfg)?;
        let roots = match &cfg.ca_file {
            Some(f) => roots_from(f),
            None => system_roots(),
        }
        .map_err(|r| TlsError::at(side, "ca_file", r))?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::at(side, "ca_file", e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match client_auth(side, cfg)? {
            None => builder.with_no_client_auth(),
            Some(key) => builder
                .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key))),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// The TLS handshake over a connected stream. A failure (an unknown issuer, an expired
    /// certificate, a name that does not match, a refused client certificate) is the
    /// upstream's, with the reason rustls gives.
    pub async fn wrap(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, UpstreamError> {
        self.connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| {
                let msg = format!("TLS handshake with {} failed: {e}", self.server_name());
                // A peer that hangs up mid-handshake is a reset, as on a plain connection.
                UpstreamError::from_io_kind(e.kind(), msg.clone())
                    .unwrap_or(UpstreamError::Other(msg))
            })
    }

    /// The name sent as SNI and verified.
    pub fn server_name(&self) -> String {
        self.name.to_str().into_owned()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `server_name`, else the URL's host: a DNS name or an IP address.
fn server_name(
    side: &'static str,
    host: &str,
    cfg: &TlsConfig,
) -> Result<ServerName<'static>, TlsError> {
    let text = cfg.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(text.to_string())
        .map_err(|e| TlsError::at(side, "server_name", format!("{text:?}: {e}")))
}

/// The client certificate and its key, read and matched (rustls compares the key's public
/// half with the certificate's); `None` without `client_cert`/`client_key`.
fn client_auth(
    side: &'static str,
    cfg: &TlsConfig,
) -> Result<Option<rustls::sign::CertifiedKey>, TlsError> {
    let (c, k) = match (&cfg.client_cert, &cfg.client_key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        (Some(_), None) => {
            return Err(TlsError::at(
                side,
                "client_key",
                "required with client_cert".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(TlsError::at(
                side,
                "client_cert",
                "required with client_key".into(),
            ));
        }
    };
    let chain = certificates(c).map_err(|r| TlsError::at(side, "client_cert", r))?;
    let key = private_key(k).map_err(|r| TlsError::at(side, "client_key", r))?;
    rustls::sign::CertifiedKey::from_der(chain, key, &provider())
        .map(Some)
        .map_err(|e| {
            TlsError::at(
                side,
                "client_key",
                format!("{}: does not go with client_cert: {e}", k.display()),
            )
        })
}

fn roots_from(file: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in certificates(file)? {
        roots
            .add(c)
            .map_err(|e| format!("{}: not a CA certificate: {e}", file.display()))?;
    }
    Ok(roots)
}

/// The system's trusted roots (rustls-native-certs: `SSL_CERT_FILE`/`SSL_CERT_DIR`, else the
/// distribution's bundle). Unparsable entries are skipped, as every TLS client does.
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(format!(
            "no system root certificates found{why}; install ca-certificates or give ca_file"
        ));
    }
    Ok(roots)
}

/// Every certificate of a PEM file; at least one.
fn certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = read(file)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", file.display()));
    }
    Ok(certs)
}

fn private_key(file: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let text = read(file)?;
    PrivateKeyDer::from_pem_slice(&text)
        .map_err(|e| format!("{}: no private key: {e}", file.display()))
}

fn read(file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))
}

#[cfg(test)]
mod tests;
