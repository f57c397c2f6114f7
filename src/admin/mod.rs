//! The admin HTTP server (DESIGN.md, "Admin HTTP API"): health, readiness, `/metrics`, the JSON
//! API over [`Stats`] and the review UI. It runs on its own listener (loopback by default), so a
//! slow scrape or a curious browser never shares a socket with client traffic.
//!
//! Every JSON shape is documented in `docs/api.md`. Query parameters are checked strictly: an
//! unknown or malformed one is a 400 naming it, never a silent default.
//!
//! Access ([`access`]): every request must name this server in `Host` (against DNS rebinding),
//! and with `admin.token_file` set every data route wants the bearer token ([`config`]); the
//! triage writes (`triage.rs`: acknowledging a signature) want it even on loopback.

pub mod access;
pub mod client;
pub mod config;
pub mod metrics;
mod triage;

pub use access::AdminAccess;
pub use config::{AdminConfig, AdminConfigError, AdminToken};
pub use metrics::{MetricFamily, MetricKind, MetricsSource};

use crate::compare::VerdictKind;
use crate::stats::{GateAsk, GateConfig, GateMethod, MinSamplesFor, MismatchQuery, Stats, Window};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Everything the admin server reads. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    pub stats: Arc<Stats>,
    /// `/readyz` answers 200 once this is set (the caller sets it when its listeners are up).
    pub ready: Arc<AtomicBool>,
    /// Extra gauges and counters reported at scrape time (in-flight, sink outcomes, ...).
    pub metrics_sources: Vec<Arc<dyn MetricsSource>>,
    /// The gate's defaults and per-endpoint thresholds (`gate:` in the config), used when a
    /// query does not say; a reload swaps them.
    pub gate: Arc<arc_swap::ArcSwap<GateConfig>>,
    /// Learned noise, when the sidecar has a secondary (`/api/v1/noise`, `/api/v1/noise/rules`).
    pub noise: Option<Arc<crate::stats::noise::NoiseModel>>,
    /// Who may ask: the `Host` allow-list and the bearer token. Default: loopback names and the
    /// connection's own address, no token.
    pub access: Arc<AdminAccess>,
    /// What a person types into the API (an acknowledgement's `by` and `reason`) is published,
    /// so it is redacted like traffic (`redact:`). A slot, not a copy: a reload swaps it with
    /// the events' redaction, so a value newly hidden is hidden here too.
    pub redaction: Arc<arc_swap::ArcSwap<crate::redact::Redaction>>,
}

impl AdminState {
    pub fn new(stats: Arc<Stats>, ready: Arc<AtomicBool>) -> Self {
        Self {
            stats,
            ready,
            metrics_sources: Vec::new(),
            gate: Arc::default(),
            noise: None,
            access: Arc::default(),
            redaction: Arc::default(),
        }
    }

    /// Sets the access rules (see [`AdminAccess::from_config`]).
    pub fn with_access(mut self, access: AdminAccess) -> Self {
        self.access = Arc::new(access);
        self
    }

    /// Registers a source of extra metrics (see [`MetricsSource`]).
    pub fn with_metrics_source(mut self, s: Arc<dyn MetricsSource>) -> Self {
        self.metrics_sources.push(s);
        self
    }

    fn default_window(&self) -> Window {
        Window::Last(self.stats.config().window)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin server: {0}")]
    Io(#[from] std::io::Error),
    /// The `admin:` settings cannot be used (a configuration problem: exit 64).
    #[error(transparent)]
    Config(#[from] AdminConfigError),
}

/// The router, for callers that mount it themselves (tests). The access rules of
/// `state.access` guard every route; mounted without [`serve`]'s per-connection address, the
/// `Host` rule knows only the configured listen address.
pub fn router(state: AdminState) -> Router {
    let access = state.access.clone();
    Router::new()
        .route("/", get(ui))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_route))
        .route("/api/v1/summary", get(summary))
        .route("/api/v1/charts", get(charts))
        .route("/api/v1/mismatches", get(mismatches))
        .route("/api/v1/mismatches/{id}", get(mismatch_by_id))
        .route("/api/v1/signatures", get(signatures))
        .route("/api/v1/gate", get(gate))
        .route("/api/v1/noise", get(noise))
        .route("/api/v1/noise/rules", get(noise_rules))
        .route(
            "/api/v1/acknowledgements",
            get(triage::list)
                .post(triage::acknowledge)
                .delete(triage::remove),
        )
        .route("/api/v1/suggested-rule", get(triage::suggested_rule))
        .with_state(state)
        // After the routes, so it wraps them all (and the 404 fallback).
        .layer(axum::middleware::from_fn_with_state(access, access::guard))
}

/// Serves the admin API on `listener` until `shutdown` completes. Bind port 0 in tests and read
/// the address from the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AdminError> {
    // Each connection's local address feeds the `Host` rule (see `access`).
    let app = router(state).into_make_service_with_connect_info::<access::LocalAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// A 400 naming the parameter at fault: `{"error": ..., "parameter": ...}`.
#[derive(Debug)]
pub struct BadParam {
    pub parameter: String,
    pub message: String,
    /// 400 unless said otherwise (404 for an unknown signature, ...).
    pub status: StatusCode,
}

impl IntoResponse for BadParam {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"error": self.message, "parameter": self.parameter})),
        )
            .into_response()
    }
}

fn bad(param: &str, message: impl std::fmt::Display) -> BadParam {
    BadParam {
        parameter: param.to_string(),
        message: message.to_string(),
        status: StatusCode::BAD_REQUEST,
    }
}

type Params = Query<HashMap<String, String>>;

/// Rejects parameters the route does not know (a typo must not silently fall back to a default).
fn only(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), BadParam> {
    let mut unknown: Vec<&String> = q
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .collect();
    unknown.sort();
    match unknown.first() {
        Some(k) => Err(bad(
            k,
            format!(
                "unknown parameter {k:?}; this route accepts: {}",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// A non-empty parameter value (an empty `endpoint=` means "not given").
fn opt<'a>(q: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    q.get(k).map(|s| s.as_str()).filter(|s| !s.is_empty())
}

fn window(st: &AdminState, q: &HashMap<String, String>) -> Result<Window, BadParam> {
    let w = match opt(q, "window") {
        None => st.default_window(),
        Some(s) => Window::parse(s).map_err(|e| bad("window", e))?,
    };
    st.stats.check_window(w).map_err(|e| bad("window", e))
}

async fn ui() -> Html<&'static str> {
    Html(UI.as_str())
}

async fn readyz(State(st): State<AdminState>) -> Response {
    if st.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics_route(State(st): State<AdminState>) -> Response {
    let mut sources = st.metrics_sources.clone();
    sources.push(st.access.clone());
    let body = metrics::render(&st.stats, st.default_window(), &sources);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn summary(State(st): State<AdminState>, Query(q): Params) -> Result<Response, BadParam> {
    only(&q, &["window", "top"])?;
    let w = window(&st, &q)?;
    let top = match opt(&q, "top").map(|s| s.parse::<usize>()) {
        None => 10,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return Err(bad("top", "top must be a whole number from 1 to 1000")),
    };
    Ok(axum::Json(st.stats.summary(w, top)).into_response())
}

/// The review UI: `ui.html` with the charts' script (`charts.js`, kept in its own file so the
/// page's other parts and the charts change without touching each other) put in its place.
static UI: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("ui.html").replace(
        "<!-- charts.js -->",
        concat!("<script>\n", include_str!("charts.js"), "</script>"),
    )
});

/// What the review UI's charts draw (`src/stats/charts.rs`).
async fn charts(State(st): State<AdminState>, Query(q): Params) -> Result<Response, BadParam> {
    only(&q, &["window", "endpoint"])?;
    let w = window(&st, &q)?;
    Ok(axum::Json(st.stats.charts(w, opt(&q, "endpoint"))).into_response())
}

async fn mismatches(State(st): State<AdminState>, Query(q): Params) -> Result<Response, BadParam> {
    only(
        &q,
        &[
            "endpoint",
            "signature",
            "field",
            "verdict",
            "limit",
            "before",
        ],
    )?;
    let limit = match opt(&q, "limit").map(|s| s.parse::<usize>()) {
        None => 50,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return Err(bad("limit", "limit must be a whole number from 1 to 1000")),
    };
    let verdict = match opt(&q, "verdict") {
        None => None,
        Some(v) => match [
            VerdictKind::Mismatch,
            VerdictKind::CandidateError,
            VerdictKind::Noise,
        ]
        .iter()
        .find(|k| k.as_str() == v)
        {
            Some(k) => Some(*k),
            None => {
                return Err(bad(
                    "verdict",
                    "verdict must be one of mismatch, candidate_error, noise",
                ));
            }
        },
    };
    let mq = MismatchQuery {
        endpoint: opt(&q, "endpoint").map(str::to_string),
        signature: opt(&q, "signature").map(str::to_string),
        field: opt(&q, "field").map(str::to_string),
        verdict,
        before: opt(&q, "before").map(str::to_string),
        limit,
    };
    let items = st.stats.mismatches(&mq);
    // A full page may have more behind it; a short page is the last.
    let next_before = (items.len() == limit)
        .then(|| items.last().map(|e| e.id.clone()))
        .flatten();
    let items: Vec<&crate::event::Event> = items.iter().map(|e| &**e).collect();
    Ok(axum::Json(json!({"mismatches": items, "next_before": next_before})).into_response())
}

async fn mismatch_by_id(
    State(st): State<AdminState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match st.stats.event(&id) {
        Some(e) => axum::Json(&*e).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"error": format!("no recent event with id {id:?}"), "parameter": "id"}),
            ),
        )
            .into_response(),
    }
}

/// Learned noise per endpoint: field, raw and noise counts, status.
async fn noise(State(st): State<AdminState>) -> Response {
    let endpoints = st.noise.as_ref().map(|n| n.snapshot()).unwrap_or_default();
    axum::Json(json!({"secondary": st.noise.is_some(), "endpoints": endpoints})).into_response()
}

/// A `diff-rules` YAML file suggesting rules for the learned noise, for review and commit.
async fn noise_rules(State(st): State<AdminState>) -> Response {
    let yaml = st
        .noise
        .as_ref()
        .map(|n| n.rules_yaml())
        .unwrap_or_else(|| "version: 1\nrules: []\n".into());
    (
        [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
        yaml,
    )
        .into_response()
}

async fn signatures(State(st): State<AdminState>, Query(q): Params) -> Result<Response, BadParam> {
    only(&q, &["endpoint"])?;
    Ok(axum::Json(json!({"signatures": st.stats.signatures(opt(&q, "endpoint"))})).into_response())
}

async fn gate(State(st): State<AdminState>, Query(q): Params) -> Result<Response, BadParam> {
    only(
        &q,
        &[
            "max_divergence",
            "min_samples",
            "min_samples_for",
            "method",
            "endpoint",
            "window",
        ],
    )?;
    // The confidence sequence's guarantee holds over a growing sample, so the gate's default
    // window is since start (docs/gate.md); a sliding window is judged only when asked for.
    let w = match opt(&q, "window") {
        None => Window::All,
        Some(_) => window(&st, &q)?,
    };
    let max_divergence = match opt(&q, "max_divergence").map(crate::units::parse_rate) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => return Err(bad("max_divergence", e)),
    };
    let min_samples = match opt(&q, "min_samples").map(|s| s.parse::<u64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return Err(bad("min_samples", "min_samples must be a whole number ≥ 0")),
    };
    let min_samples_for = opt(&q, "min_samples_for")
        .map(MinSamplesFor::parse)
        .transpose()
        .map_err(|e| bad("min_samples_for", e))?;
    let method = opt(&q, "method")
        .map(GateMethod::parse)
        .transpose()
        .map_err(|e| bad("method", e))?;
    let p = st.gate.load().params(GateAsk {
        max_divergence,
        min_samples,
        min_samples_for,
        method,
        endpoint: opt(&q, "endpoint").map(str::to_string),
    });
    Ok(axum::Json(st.stats.gate(w, &p)).into_response())
}
