//! `shadowdiff diff`: two bodies (or two recorded responses) through the comparator, and the
//! human and JSON renderings of a verdict.
//!
//! What it prints is published as an event is: the two sides become an [`Exchange`] and the
//! differences, signature and notes are taken from [`Event::build`](crate::event::Event::build) under the redaction of
//! `--config`'s `redact:` and `publish:` sections (the defaults without one), so a diff pasted
//! into a ticket carries no more than the sidecar's event file would.

use super::DiffArgs;
use crate::compare::rules::RuleSet;
use crate::compare::{Comparator, CompareOptions, Difference, Verdict, VerdictKind};
use crate::config::Config;
use crate::exchange::{self, Exchange, Response};
use crate::redact::Redaction;
use anyhow::{Context, bail};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

pub(super) fn run(args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(p) => match Config::load(p) {
            Ok(c) => Some(c),
            Err(e) => {
                super::print_problems(&e);
                return Ok(ExitCode::from(2));
            }
        },
        None => None,
    };
    // The one rules loader (as `proxy` and `check-rules`): --rules, else the config's, else none.
    let rules = match (&args.rules, &config) {
        (Some(p), _) => RuleSet::load(p).map_err(|e| anyhow::anyhow!("{e}"))?,
        (None, Some(c)) => match c.load_rules() {
            Ok(r) => r,
            Err(e) => {
                super::print_problems(&e);
                return Ok(ExitCode::from(2));
            }
        },
        (None, None) => RuleSet::default(),
    };
    let redaction = match &config {
        Some(c) => Redaction::from_config(&c.redact, c.publish.max_body_bytes),
        None => Redaction::default(),
    };
    if let Some(e) = &args.endpoint {
        crate::compare::pattern::EndpointPattern::parse(e)
            .map_err(|err| anyhow::anyhow!("--endpoint: {err}"))?;
    }
    let cmp = Comparator::new(Arc::new(rules), CompareOptions::default());
    let left = std::fs::read(&args.left)
        .with_context(|| format!("cannot read {}", args.left.display()))?;
    let right = std::fs::read(&args.right)
        .with_context(|| format!("cannot read {}", args.right.display()))?;
    let (method, path) = args
        .endpoint
        .as_deref()
        .and_then(|e| e.split_once(' '))
        .unwrap_or(("GET", "/"));
    let request = exchange::Request {
        method: method.to_string(),
        path: path.trim().to_string(),
        ..Default::default()
    };
    let (primary, candidate, verdict) = match (
        parse_http_response(&left)?,
        parse_http_response(&right)?,
    ) {
        (Some(p), Some(c)) => {
            let v = cmp.compare_responses(&request, args.endpoint.as_deref(), &p, &c);
            (p, c, v)
        }
        (None, None) => {
            let v = cmp.compare_bodies(args.endpoint.as_deref(), &left, &right, None, None);
            (bare(left), bare(right), v)
        }
        _ => bail!(
            "one side is a raw HTTP response and the other a bare body; give two of the same form"
        ),
    };
    let ex = Exchange {
        id: String::new(),
        ts: std::time::SystemTime::UNIX_EPOCH,
        source: "diff",
        endpoint: args.endpoint.clone().unwrap_or_else(|| "*".into()),
        request,
        primary,
        candidate: Ok(candidate),
        secondary: None,
        sends: None,
    };
    let verdict = published(&ex, verdict, &redaction);
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = JsonOutput {
            verdict: verdict.kind,
            differences: &verdict.differences,
            signature: verdict.signature.as_deref(),
            notes: &verdict.notes,
            truncated: verdict.truncated,
        };
        let doc = serde_json::to_string(&doc)?;
        writeln!(out, "{doc}")?;
    } else {
        let color = match args.color.as_str() {
            "always" => true,
            "never" => false,
            _ => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        write!(out, "{}", render_human(&verdict, color))?;
    }
    Ok(match verdict.kind {
        VerdictKind::Match => ExitCode::SUCCESS,
        VerdictKind::Skipped => ExitCode::from(2),
        _ => ExitCode::from(1),
    })
}

/// A bare body as a response with no head.
fn bare(body: Vec<u8>) -> Response {
    Response {
        status: 200,
        headers: http::HeaderMap::new(),
        body: bytes::Bytes::from(body),
        latency: Default::default(),
    }
}

/// The verdict as the sidecar would publish it (the comparison workers' order: names, then the
/// event from the raw verdict): differences, signature and notes from the event.
fn published(ex: &Exchange, mut v: Verdict, r: &Redaction) -> Verdict {
    let mut raw = r.name_differences(&mut v);
    // The differences and notes exactly as `Event::build` publishes them; the rest of an event
    // (the redacted bodies: a parse and a re-serialisation of each) is not printed, so not built.
    let (differences, notes) = raw.with_raw(&mut v, |v| {
        (
            r.differences(ex, &v.differences),
            v.notes.iter().map(|n| r.quoted(n)).collect(),
        )
    });
    Verdict {
        differences,
        notes,
        ..v
    }
}

/// `diff --json` output. A struct rather than `json!`: serde_json (without `preserve_order`)
/// sorts map keys, and DESIGN.md shows `verdict` first, then `differences`.
#[derive(serde::Serialize)]
struct JsonOutput<'a> {
    verdict: VerdictKind,
    differences: &'a [Difference],
    signature: Option<&'a str>,
    notes: &'a [String],
    truncated: bool,
}

/// A raw HTTP/1.x response (status line, headers, body), or `None` if the bytes are a bare body.
fn parse_http_response(bytes: &[u8]) -> anyhow::Result<Option<Response>> {
    if !bytes.starts_with(b"HTTP/1.") {
        return Ok(None);
    }
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp
        .parse(bytes)
        .context("not a valid HTTP response head")?
    {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => bail!("HTTP response head is incomplete"),
    };
    let mut map = http::HeaderMap::new();
    for h in resp.headers.iter() {
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).context("bad header name")?;
        map.append(
            name,
            http::HeaderValue::from_bytes(h.value).context("bad header value")?,
        );
    }
    Ok(Some(Response {
        status: resp.code.unwrap_or(0),
        headers: map,
        body: bytes::Bytes::copy_from_slice(&bytes[n..]),
        latency: Default::default(),
    }))
}

/// The human listing: verdict line, then one line per difference, colour optional.
pub fn render_human(v: &Verdict, color: bool) -> String {
    let paint = |code: &str, s: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let mut s = String::new();
    let head = match v.kind {
        VerdictKind::Match => paint("32;1", "match"),
        VerdictKind::Skipped => paint(
            "33;1",
            &format!(
                "skipped ({})",
                v.skip_reason.map(|r| r.as_str()).unwrap_or("?")
            ),
        ),
        k => paint("31;1", k.as_str()),
    };
    s.push_str(&head);
    if !v.differences.is_empty() {
        s.push_str(&format!(": {} difference(s)", v.differences.len()));
        if let Some(sig) = &v.signature {
            s.push_str(&format!(", signature {sig}"));
        }
    }
    s.push('\n');
    for d in &v.differences {
        s.push_str(&render_difference(d, &paint));
    }
    if v.truncated {
        s.push_str("  … more differences not shown\n");
    }
    for n in &v.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s
}

fn render_difference(d: &Difference, paint: &dyn Fn(&str, &str) -> String) -> String {
    let path = if d.path.is_empty() {
        "(root)"
    } else {
        d.path.as_str()
    };
    let kind = paint("36", &format!("{:<8}", d.kind.as_str()));
    if let Some(detail) = d
        .detail
        .as_deref()
        .filter(|_| d.kind == crate::compare::DiffKind::Body)
    {
        let body: String = detail
            .lines()
            .map(|l| match l.chars().next() {
                Some('-') => format!("    {}\n", paint("31", l)),
                Some('+') => format!("    {}\n", paint("32", l)),
                _ => format!("    {l}\n"),
            })
            .collect();
        return format!("  {kind} {path}\n{body}");
    }
    format!(
        "  {kind} {path}: {} → {}\n",
        paint("31", &compact(&d.primary)),
        paint("32", &compact(&d.candidate))
    )
}

fn compact(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}
