//! Triage routes (issue 16; docs/api.md, "Triage"): acknowledging a signature, listing and
//! removing acknowledgements, and the suggested rule for a signature.
//!
//! `POST` and `DELETE` change what the gate judges, so they are the admin server's only
//! state-changing routes, and [`super::access`] lets them through only with the bearer token
//! (`admin.token_file`), even on loopback: a page in the operator's browser can send a
//! cross-site `POST` to 127.0.0.1 (no `Host` rule catches it), but it can never attach an
//! `Authorization` header.

use super::{AdminState, BadParam, Params, bad, only, opt};
use crate::stats::ack::{AckError, AckRequest};
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// `GET /api/v1/acknowledgements`.
pub(super) async fn list(State(st): State<AdminState>, q: Params) -> Result<Response, BadParam> {
    only(&q, &[])?;
    let acks = st.stats.acknowledgements();
    Ok(axum::Json(json!({
        "acknowledgements": acks.list(),
        "persisted": acks.path().is_some(),
    }))
    .into_response())
}

/// `POST /api/v1/acknowledgements` with an [`AckRequest`]: 201 with the acknowledgement and the
/// suggested rule.
pub(super) async fn acknowledge(
    State(st): State<AdminState>,
    body: Result<axum::Json<AckRequest>, JsonRejection>,
) -> Result<Response, BadParam> {
    let axum::Json(req) = body.map_err(|e| bad("body", e.body_text()))?;
    let endpoint = endpoint_of(&st, &req.signature, req.endpoint.as_deref())?;
    let now = std::time::SystemTime::now();
    let ack = st
        .stats
        .acknowledgements()
        .acknowledge(&req, &endpoint, &st.redaction.load(), now)
        .map_err(ack_error)?;
    tracing::info!(
        signature = %ack.signature,
        endpoint = %ack.endpoint,
        exclude_from_gate = ack.exclude_from_gate,
        "signature acknowledged"
    );
    let suggested = suggestion(&st, &endpoint, &req.signature).await;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"acknowledgement": ack, "suggested_rule": suggested})),
    )
        .into_response())
}

/// `DELETE /api/v1/acknowledgements?signature=&endpoint=`.
pub(super) async fn remove(State(st): State<AdminState>, q: Params) -> Result<Response, BadParam> {
    only(&q, &["signature", "endpoint"])?;
    let sig = opt(&q, "signature").ok_or_else(|| bad("signature", "signature is required"))?;
    let acks = st.stats.acknowledgements();
    let endpoint = match opt(&q, "endpoint") {
        Some(e) => e.to_string(),
        None => {
            let on: Vec<String> = acks
                .list()
                .into_iter()
                .filter(|a| a.signature == sig)
                .map(|a| a.endpoint)
                .collect();
            one_endpoint(sig, on)?
        }
    };
    match acks.remove(&endpoint, sig).map_err(ack_error)? {
        Some(a) => Ok(axum::Json(json!({"removed": a})).into_response()),
        None => Err(not_found(sig)),
    }
}

/// `GET /api/v1/suggested-rule?signature=&endpoint=`.
pub(super) async fn suggested_rule(
    State(st): State<AdminState>,
    q: Params,
) -> Result<Response, BadParam> {
    only(&q, &["signature", "endpoint"])?;
    let sig = opt(&q, "signature").ok_or_else(|| bad("signature", "signature is required"))?;
    let endpoint = endpoint_of(&st, sig, opt(&q, "endpoint"))?;
    match suggestion(&st, &endpoint, sig).await {
        Some(s) => Ok(axum::Json(s).into_response()),
        None => Err(not_found(sig)),
    }
}

/// The suggested rule, computed off the async workers (it re-compares up to
/// [`crate::stats::triage::PRECHECK_EVENTS`] events).
async fn suggestion(
    st: &AdminState,
    endpoint: &str,
    sig: &str,
) -> Option<crate::stats::triage::SuggestedRule> {
    let (stats, e, s) = (st.stats.clone(), endpoint.to_string(), sig.to_string());
    tokio::task::spawn_blocking(move || stats.suggest_rule(&e, &s))
        .await
        .ok()
        .flatten()
}

/// The endpoint a known signature is acknowledged on: the one asked for, or the only one it is
/// seen on. Only signatures with a cluster can be acknowledged, so every name kept is one the
/// statistics published already.
fn endpoint_of(st: &AdminState, sig: &str, asked: Option<&str>) -> Result<String, BadParam> {
    let on = st.stats.signature_endpoints(sig);
    match asked {
        Some(e) if on.iter().any(|x| x == e) => Ok(e.to_string()),
        Some(_) => Err(bad(
            "endpoint",
            "this signature has not been seen on that endpoint",
        )),
        None => one_endpoint(sig, on),
    }
}

fn one_endpoint(sig: &str, mut on: Vec<String>) -> Result<String, BadParam> {
    match on.len() {
        0 => Err(not_found(sig)),
        1 => Ok(on.remove(0)),
        _ => Err(bad(
            "endpoint",
            format!(
                "the signature is seen on {} endpoints; say which ({})",
                on.len(),
                on.join(", ")
            ),
        )),
    }
}

fn not_found(sig: &str) -> BadParam {
    BadParam {
        parameter: "signature".into(),
        message: format!("no signature {sig:?} is known here"),
        status: StatusCode::NOT_FOUND,
    }
}

fn ack_error(e: AckError) -> BadParam {
    match e {
        AckError::Invalid(m) => bad("by", m),
        AckError::Full => BadParam {
            parameter: "signature".into(),
            message: e.to_string(),
            status: StatusCode::CONFLICT,
        },
        AckError::File { .. } => {
            tracing::error!(error = %e, "acknowledgement not kept");
            BadParam {
                parameter: "signature".into(),
                message: "the acknowledgement could not be written to its file; nothing changed"
                    .into(),
                status: StatusCode::INTERNAL_SERVER_ERROR,
            }
        }
    }
}
