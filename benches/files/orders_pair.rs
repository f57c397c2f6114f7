#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Writes a pair of order documents for `benches/compare_files.sh`: a primary page of at least
//! `MB` megabytes from a fixed seed (`benches/support/orders.rs`, the payload of
//! `benches/compare.rs`) and a candidate with 5 values changed (re-serialised, keys sorted).
//!
//! Usage: `cargo run --release --example orders_pair -- MB SEED PRIMARY_OUT CANDIDATE_OUT`

#[path = "../support/orders.rs"]
mod orders;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mb, seed, p_out, c_out] = args.as_slice() else {
        eprintln!("usage: orders_pair MB SEED PRIMARY_OUT CANDIDATE_OUT");
        std::process::exit(64);
    };
    let mb: f64 = mb.parse().expect("MB: a number");
    let seed: u64 = seed.parse().expect("SEED: an integer");
    let p = orders::primary_body((mb * 1e6) as usize, seed);
    let c = orders::candidate_body(&p);
    std::fs::write(p_out, &p).unwrap();
    std::fs::write(c_out, &c).unwrap();
    println!("{} {}", p.len(), c.len());
}
