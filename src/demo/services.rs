//! The demo's sample services: an orders/customers/products API in two builds, the legacy one
//! (primary, and secondary when noise cancellation is shown) and the candidate. Data is generated
//! from the id, so every instance agrees on it; what differs is exactly what a migration gets
//! wrong, plus the natural noise any two instances have:
//!
//! - noise (both builds): `generated_at` timestamps and `request_id`s in bodies, `x-request-id`
//!   and `date` headers — normalised away by the shipped `diff-rules/` — and `GET /orders/{id}`
//!   tags in random order, which the secondary lets shadowdiff learn as noise;
//! - regression (candidate): `GET /orders/{id}` rounds the 7.5% tax down instead of half-up, so
//!   about half the orders show `tax` and `total` 0.01 lower;
//! - additive field (candidate): `GET /customers/{id}` gains `loyalty_points`;
//! - renamed field (candidate): `GET /products/{sku}` says `description` where legacy says `desc`;
//! - server error (candidate): `GET /orders/{id}/invoice` answers 500 for ids divisible by 7.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::SystemTime;

/// Which build a sample service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    Legacy,
    Candidate,
}

/// The router for one build.
pub fn router(build: Build) -> Router {
    Router::new()
        .route("/customers/{id}", get(customer))
        .route("/orders", get(orders_list).post(create_order))
        .route("/orders/{id}", get(order))
        .route("/orders/{id}/invoice", get(invoice))
        .route("/products/{sku}", get(product))
        .route("/health", get(|| async { "ok" }))
        .with_state(build)
}

/// A deterministic pseudo-random stream seeded by an id (SplitMix64): every instance of every
/// build generates the same data for the same id.
struct Gen(u64);

impl Gen {
    fn new(seed: u64) -> Self {
        Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Niklaus",
    "Zoë", "José",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton",
    "Wirth", "Müller", "Núñez",
];
const PRODUCTS: &[(&str, &str, u64)] = &[
    ("KB-101", "Mechanical keyboard, brown switches", 8999),
    ("MS-202", "Wireless mouse", 2495),
    ("MN-303", "27\" monitor, 1440p", 27900),
    ("CB-404", "USB-C cable, 2 m", 1249),
    ("HD-505", "Noise-cancelling headphones", 19950),
    ("DK-606", "Standing desk", 45000),
    ("LP-707", "Laptop stand — aluminium", 3975),
    ("WC-808", "Webcam 1080p", 5490),
];
const TAGS: &[&str] = &["gift", "express", "b2b", "fragile", "priority", "eco"];

fn money(cents: u64) -> Value {
    // Two decimals as a JSON number, written from integer cents so no float noise creeps in.
    serde_json::from_str(&format!("{}.{:02}", cents / 100, cents % 100)).unwrap_or(Value::Null)
}

fn noise() -> (String, String) {
    let ts = crate::event::format_ts(SystemTime::now());
    let rid = format!("{:016x}", rand::random::<u64>());
    (ts, rid)
}

fn with_noise(body: Value) -> Response {
    let (ts, rid) = noise();
    let mut body = body;
    if let Value::Object(m) = &mut body {
        m.insert("generated_at".into(), Value::String(ts));
        m.insert("request_id".into(), Value::String(rid.clone()));
    }
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&rid) {
        headers.insert("x-request-id", v);
    }
    (headers, axum::Json(body)).into_response()
}

async fn customer(State(build): State<Build>, Path(id): Path<u64>) -> Response {
    let mut g = Gen::new(id);
    let (first, last) = (g.pick(FIRST), g.pick(LAST));
    let mut c = json!({
        "id": id,
        "name": format!("{first} {last}"),
        "email": format!("{}.{}@example.com", first.to_lowercase(), last.to_lowercase()),
        "tier": g.pick(&["basic", "silver", "gold"]),
        "address": {"city": g.pick(&["Lisboa", "Zürich", "Kraków", "Dublin"]), "zip": format!("{:05}", g.below(99999))},
        "since": 2010 + g.below(15),
    });
    if build == Build::Candidate {
        c["loyalty_points"] = json!(g.below(5000));
    }
    with_noise(c)
}

/// Line items and money for an order; `round_down` is the candidate's (wrong) tax rounding.
fn order_body(id: u64, round_down: bool) -> Value {
    let mut g = Gen::new(id ^ 0xA5A5);
    let n = 1 + g.below(4);
    let mut items = Vec::new();
    let mut subtotal = 0u64;
    for _ in 0..n {
        let (sku, _, price) = PRODUCTS[g.below(PRODUCTS.len() as u64) as usize];
        let qty = 1 + g.below(3);
        subtotal += price * qty;
        items.push(json!({"sku": sku, "qty": qty, "unit_price": money(price)}));
    }
    // Tax at 7.5%, in thousandths of a cent, then rounded to cents: here the two builds part.
    let tax_milli = subtotal * 75;
    let (whole, rem) = (tax_milli / 1000, tax_milli % 1000);
    let tax = if !round_down && rem >= 500 {
        whole + 1
    } else {
        whole
    };
    let mut tags: Vec<&str> = (0..g.below(3)).map(|_| g.pick(TAGS)).collect();
    tags.dedup();
    json!({
        "id": id,
        "customer_id": 1 + g.below(200),
        "status": g.pick(&["placed", "paid", "shipped", "delivered"]),
        "currency": "EUR",
        "items": items,
        "subtotal": money(subtotal),
        "tax": money(tax),
        "total": money(subtotal + tax),
        "tags": tags,
    })
}

async fn order(State(build): State<Build>, Path(id): Path<u64>) -> Response {
    let mut body = order_body(id, build == Build::Candidate);
    // Natural noise no shipped rule covers: every instance lists an order's tags in whatever
    // order its hash set yields. With a secondary, shadowdiff learns that `/tags` order is noise.
    if let Some(tags) = body["tags"].as_array_mut()
        && rand::random::<bool>()
    {
        tags.reverse();
    }
    with_noise(body)
}

async fn orders_list(
    State(build): State<Build>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let customer: u64 = q.get("customer").and_then(|c| c.parse().ok()).unwrap_or(1);
    let page: u64 = q.get("page").and_then(|c| c.parse().ok()).unwrap_or(1);
    let ids: Vec<u64> = (0..5)
        .map(|i| customer * 1000 + (page - 1) * 5 + i)
        .collect();
    // Summaries only carry ids and status, so the rounding regression does not leak here.
    let orders: Vec<Value> = ids
        .iter()
        .map(|&id| {
            let o = order_body(id, build == Build::Candidate);
            json!({"id": id, "status": o["status"], "href": format!("/orders/{id}")})
        })
        .collect();
    with_noise(
        json!({"customer": customer, "page": page, "orders": orders, "next": format!("/orders?customer={customer}&page={}", page + 1)}),
    )
}

async fn create_order(body: axum::body::Bytes) -> Response {
    let id = 900_000 + u64::from(body.len() as u32);
    (
        StatusCode::CREATED,
        axum::Json(json!({"id": id, "status": "placed"})),
    )
        .into_response()
}

async fn invoice(State(build): State<Build>, Path(id): Path<u64>) -> Response {
    if build == Build::Candidate && id % 7 == 0 {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": "invoice renderer failed"})),
        )
            .into_response();
    }
    let o = order_body(id, false);
    with_noise(
        json!({"order_id": id, "number": format!("INV-{id:06}"), "amount": o["total"], "currency": "EUR"}),
    )
}

async fn product(State(build): State<Build>, Path(sku): Path<String>) -> Response {
    let Some((sku, desc, price)) = PRODUCTS.iter().find(|p| p.0 == sku) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "no such product", "sku": sku})),
        )
            .into_response();
    };
    let desc_key = if build == Build::Candidate {
        "description"
    } else {
        "desc"
    };
    with_noise(json!({"sku": sku, desc_key: desc, "price": money(*price), "in_stock": true}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_regression_hits_a_good_share_of_orders() {
        let mut differing = 0;
        for id in 1..=500 {
            let (l, c) = (order_body(id, false), order_body(id, true));
            assert_eq!(l["items"], c["items"]);
            if l["total"] != c["total"] {
                differing += 1;
            }
        }
        // Visible in a short demo run, yet not every order: QA must find it by field, not by eye.
        assert!(
            differing > 100 && differing < 400,
            "{differing} of 500 differ"
        );
    }
}
