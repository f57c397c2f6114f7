//! The payload of `benches/compare.rs`: a page of an orders API, generated from a seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Number, Value};

// Serialised in field order, as a real service would.
#[derive(Serialize)]
struct Page {
    meta: Meta,
    orders: Vec<Order>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct Meta {
    generated_at: String,
    request_id: String,
    trace_id: String,
    page: u32,
    page_size: u32,
    total: u64,
    api_version: &'static str,
}

#[derive(Serialize)]
struct Order {
    /// Snowflake-style id above 2^53: only exact comparison tells neighbours apart.
    id: u64,
    number: String,
    status: &'static str,
    created_at: String,
    updated_at: String,
    currency: &'static str,
    customer: Customer,
    shipping_address: Address,
    billing_address: Option<Address>,
    items: Vec<Item>,
    totals: Totals,
    tags: Vec<&'static str>,
    /// An integer wider than u64 (a ledger sequence), kept exact by arbitrary_precision.
    ledger_seq: Number,
    notes: Option<String>,
    trace_id: String,
    fulfilment: Fulfilment,
}

#[derive(Serialize)]
struct Customer {
    id: u64,
    name: String,
    email: String,
    loyalty_tier: &'static str,
    marketing_opt_in: bool,
}

#[derive(Serialize)]
struct Address {
    line1: String,
    line2: Option<String>,
    city: &'static str,
    postal_code: String,
    country: &'static str,
    geo: Geo,
}

#[derive(Serialize)]
struct Geo {
    lat: Number,
    lon: Number,
}

#[derive(Serialize)]
struct Item {
    sku: String,
    name: String,
    quantity: u32,
    unit_price: Number,
    discount: Number,
    weight_kg: Number,
    attributes: Vec<Attr>,
}

#[derive(Serialize)]
struct Attr {
    name: &'static str,
    value: String,
}

#[derive(Serialize)]
struct Totals {
    subtotal: Number,
    tax: Number,
    shipping: Number,
    grand_total: Number,
}

#[derive(Serialize)]
struct Fulfilment {
    carrier: &'static str,
    tracking: Option<String>,
    events: Vec<Event>,
}

#[derive(Serialize)]
struct Event {
    at: String,
    kind: &'static str,
    location: &'static str,
    trace_id: String,
}

const FIRST: &[&str] = &[
    "Zoë",
    "Jürgen",
    "Søren",
    "Amélie",
    "José",
    "Łukasz",
    "さくら",
    "Олег",
    "Αθηνά",
    "Ngozi",
    "Siobhán",
    "明",
    "Priya",
    "Mateus",
];
const LAST: &[&str] = &[
    "Ångström",
    "Müller",
    "Nørgaard",
    "Dubois",
    "García",
    "Wiśniewski",
    "渡辺",
    "Иванов",
    "Παπαδοπούλου",
    "Okafor",
    "O'Brien",
    "王",
    "Iyer",
    "Conceição",
];
const CITIES: &[(&str, &str)] = &[
    ("Zürich", "CH"),
    ("København", "DK"),
    ("Kraków", "PL"),
    ("São Paulo", "BR"),
    ("東京", "JP"),
    ("Москва", "RU"),
    ("Αθήνα", "GR"),
    ("Lagos", "NG"),
    ("Dublin", "IE"),
    ("Bengaluru", "IN"),
];
const STREETS: &[&str] = &[
    "Bahnhofstrasse",
    "Nørrebrogade",
    "ul. Floriańska",
    "Rua Augusta",
    "銀座通り",
    "Тверская улица",
    "Οδός Ερμού",
    "Allen Avenue",
    "Grafton Street",
    "MG Road",
];
const PRODUCTS: &[&str] = &[
    "Café crème beans 1 kg",
    "Grüner Tee – Sencha",
    "Crème brûlée torch",
    "Teeglas «Nordlicht»",
    "抹茶ラテ粉末",
    "Самовар электрический",
    "Ελαιόλαδο extra virgin",
    "Jollof spice mix 🌶",
    "Aran wool scarf",
    "Masala chai kit ☕",
];
const TAGS: &[&str] = &[
    "gift",
    "priority",
    "b2b",
    "fragile",
    "repeat-customer",
    "promo-spring",
    "eco-packaging",
    "international",
    "split-shipment",
    "vip",
];
const STATUS: &[&str] = &["pending", "paid", "packed", "shipped", "delivered"];
const TIERS: &[&str] = &["none", "silver", "gold", "platinum"];
const CARRIERS: &[&str] = &["DHL", "PostNord", "InPost", "Correios", "Yamato", "UPS"];
const EVENT_KINDS: &[&str] = &[
    "label_created",
    "picked_up",
    "in_transit",
    "out_for_delivery",
    "delivered",
];
const ATTRS: &[&str] = &["colour", "size", "origin", "roast", "material"];
const CURRENCIES: &[&str] = &["EUR", "DKK", "PLN", "BRL", "JPY", "CHF"];

fn hex(rng: &mut StdRng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

fn timestamp(rng: &mut StdRng) -> String {
    format!(
        "2025-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        rng.random_range(1..=12),
        rng.random_range(1..=28),
        rng.random_range(0..24),
        rng.random_range(0..60),
        rng.random_range(0..60),
        rng.random_range(0..1000)
    )
}

/// A decimal with exactly `places` digits after the point, as the number text a service writes.
fn decimal(cents: u64, places: u32) -> Number {
    let p = 10u64.pow(places);
    Number::from_string_unchecked(format!(
        "{}.{:0width$}",
        cents / p,
        cents % p,
        width = places as usize
    ))
}

fn pick<T: Copy>(rng: &mut StdRng, xs: &[T]) -> T {
    xs[rng.random_range(0..xs.len())]
}

fn address(rng: &mut StdRng) -> Address {
    let (city, country) = pick(rng, CITIES);
    Address {
        line1: format!("{} {}", pick(rng, STREETS), rng.random_range(1..300)),
        line2: rng
            .random_bool(0.3)
            .then(|| format!("Apt. {}", rng.random_range(1..80))),
        city,
        postal_code: format!("{:05}", rng.random_range(1000..99999)),
        country,
        geo: Geo {
            lat: Number::from_string_unchecked(format!("{:.6}", rng.random_range(-60.0..70.0f64))),
            lon: Number::from_string_unchecked(format!(
                "{:.6}",
                rng.random_range(-170.0..170.0f64)
            )),
        },
    }
}

fn order(rng: &mut StdRng, i: u64) -> Order {
    let items: Vec<Item> = (0..rng.random_range(1..=5))
        .map(|_| Item {
            sku: format!("SKU-{:06}", rng.random_range(0..1_000_000)),
            name: pick(rng, PRODUCTS).to_string(),
            quantity: rng.random_range(1..10),
            unit_price: decimal(rng.random_range(99..50_000), 2),
            discount: decimal(rng.random_range(0..500), 2),
            weight_kg: decimal(rng.random_range(50..20_000), 3),
            attributes: (0..rng.random_range(0..3))
                .map(|_| Attr {
                    name: pick(rng, ATTRS),
                    value: hex(rng, 3),
                })
                .collect(),
        })
        .collect();
    let subtotal: u64 = rng.random_range(1_000..500_000);
    let tax = subtotal / 5;
    let shipping = rng.random_range(0..2_000);
    let first = pick(rng, FIRST);
    let last = pick(rng, LAST);
    let mut tags: Vec<&str> = (0..rng.random_range(0..4))
        .map(|_| pick(rng, TAGS))
        .collect();
    tags.dedup();
    Order {
        id: 1_790_000_000_000_000_000 + i * 4_194_304 + rng.random_range(0..4_194_304),
        number: format!("ORD-2025-{:07}", 1_000_000 + i),
        status: pick(rng, STATUS),
        created_at: timestamp(rng),
        updated_at: timestamp(rng),
        currency: pick(rng, CURRENCIES),
        customer: Customer {
            id: rng.random_range(10_000_000_000..99_999_999_999),
            name: format!("{first} {last}"),
            email: format!("customer{}@example.com", rng.random_range(0..1_000_000)),
            loyalty_tier: pick(rng, TIERS),
            marketing_opt_in: rng.random_bool(0.4),
        },
        shipping_address: address(rng),
        billing_address: rng.random_bool(0.5).then(|| address(rng)),
        items,
        totals: Totals {
            subtotal: decimal(subtotal, 2),
            tax: decimal(tax, 2),
            shipping: decimal(shipping, 2),
            grand_total: decimal(subtotal + tax + shipping, 2),
        },
        tags,
        ledger_seq: Number::from_string_unchecked(format!(
            "{}{:012}",
            18_446_744_073_709_551_615u64,
            rng.random_range(0..1_000_000_000_000u64)
        )),
        notes: rng.random_bool(0.25).then(|| {
            format!(
                "Bitte \"vorsichtig\" behandeln\nLeave at door — {}",
                pick(rng, FIRST)
            )
        }),
        trace_id: hex(rng, 16),
        fulfilment: Fulfilment {
            carrier: pick(rng, CARRIERS),
            tracking: rng
                .random_bool(0.7)
                .then(|| format!("1Z{}", hex(rng, 8).to_uppercase())),
            events: (0..rng.random_range(0..4))
                .map(|k| Event {
                    at: timestamp(rng),
                    kind: EVENT_KINDS[k],
                    location: pick(rng, CITIES).0,
                    trace_id: hex(rng, 16),
                })
                .collect(),
        },
    }
}

/// A page whose serialisation is at least `target` bytes (one order at minimum).
pub fn primary_body(target: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut page = Page {
        meta: Meta {
            generated_at: timestamp(&mut rng),
            request_id: hex(&mut rng, 8),
            trace_id: hex(&mut rng, 16),
            page: 3,
            page_size: 0,
            total: 48_213,
            api_version: "2025-06-01",
        },
        orders: Vec::new(),
        next_cursor: Some(hex(&mut rng, 24)),
    };
    let mut size = 300;
    while size < target || page.orders.is_empty() {
        let o = order(&mut rng, page.orders.len() as u64);
        size += serde_json::to_vec(&o).unwrap().len() + 1;
        page.orders.push(o);
    }
    page.meta.page_size = page.orders.len() as u32;
    serde_json::to_vec(&page).unwrap()
}

/// The primary re-serialised (keys now in sorted order, so the bytes differ throughout) with 5
/// values changed that no rule excuses.
pub fn candidate_body(primary: &[u8]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(primary).unwrap();
    let orders = v["orders"].as_array_mut().unwrap();
    let n = orders.len();
    let at = |k: usize| k * n / 5;
    orders[at(0)]["status"] = Value::from("cancelled");
    let q = orders[at(1)]["items"][0]["quantity"].as_u64().unwrap();
    orders[at(1)]["items"][0]["quantity"] = Value::from(q + 1);
    let name = orders[at(2)]["customer"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    orders[at(2)]["customer"]["name"] = Value::from(format!("{name} Jr."));
    orders[at(3)]["totals"]["grand_total"] =
        Value::Number(Number::from_string_unchecked("0.00".into()));
    // Off by one beyond 2^53: equal as f64, different as integers.
    let id = orders[at(4)]["id"].as_u64().unwrap();
    orders[at(4)]["id"] = Value::from(id + 1);
    serde_json::to_vec(&v).unwrap()
}

/// The primary with only its volatile values changed, as a second healthy instance would answer
/// (same serialiser, so the same key order): `generated_at`, `request_id` and every `trace_id`,
/// all ignored by the bench's rules. Bytes differ, the verdict is `match`.
#[allow(dead_code)] // not every includer uses every body
pub fn volatile_body(primary: &[u8]) -> Vec<u8> {
    let mut out = primary.to_vec();
    for field in [
        &b"\"trace_id\":\""[..],
        b"\"request_id\":\"",
        b"\"generated_at\":\"",
    ] {
        let mut at = 0;
        while let Some(i) = out[at..].windows(field.len()).position(|w| w == field) {
            let v = at + i + field.len();
            // The value's first character, changed (hex digits and years both stay valid).
            out[v] = if out[v] == b'1' { b'2' } else { b'1' };
            at = v;
        }
    }
    out
}

/// The primary re-serialised (keys sorted) with three values changed in every order: a
/// heavily different candidate, truncated at 1,000 differences on large pages.
#[allow(dead_code)]
pub fn heavy_body(primary: &[u8]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(primary).unwrap();
    for o in v["orders"].as_array_mut().unwrap() {
        o["status"] = Value::from("cancelled");
        let q = o["items"][0]["quantity"].as_u64().unwrap();
        o["items"][0]["quantity"] = Value::from(q + 1);
        o["totals"]["grand_total"] = Value::Number(Number::from_string_unchecked("0.00".into()));
    }
    serde_json::to_vec(&v).unwrap()
}
