//! `shadowdiff demo --exit` runs end to end and finds what the sample candidate got wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn demo_exit_finds_the_planted_regression() {
    let out = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .args(["demo", "--exit", "--admin", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every request was accounted for: 580 compared + 20 POSTs not mirrored.
    assert!(stdout.contains("== summary: 600 exchanges"), "{stdout}");
    assert!(stdout.contains("method_not_mirrored 20"), "{stdout}");
    // The rounding regression: tax and total differ on GET /orders/{id}, and only there.
    let orders = stdout
        .lines()
        .find(|l| l.starts_with("GET /orders/{id} "))
        .unwrap();
    assert!(
        orders.contains("/tax value") && orders.contains("/total value"),
        "{orders}"
    );
    // The additive field, the renamed field and the 5xx on the rare path.
    assert!(stdout.contains("/loyalty_points added"), "{stdout}");
    assert!(
        stdout.contains("/desc missing, /description added"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("candidate_error") && l.contains("GET /orders/{id}/invoice")),
        "{stdout}"
    );
    // The noise (timestamps, request ids) was normalised: the order list matches.
    let list = stdout
        .lines()
        .find(|l| l.starts_with("GET /orders "))
        .unwrap();
    assert!(list.contains("0.0%"), "{list}");
    assert!(
        stdout.contains("== gate") && stdout.contains("FAIL"),
        "{stdout}"
    );
}

#[test]
fn demo_learns_the_tags_order_noise_next_to_the_regression() {
    let out = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .args(["demo", "--exit", "--admin", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let learned = stdout
        .split("== learned noise")
        .nth(1)
        .unwrap_or_else(|| panic!("no learned noise section\n{stdout}"));
    assert!(
        learned.contains("GET /orders/{id}") && learned.contains("/tags"),
        "{learned}"
    );
    // The regression is never mistaken for noise: no secondary ever differs on /tax or /total.
    assert!(
        !learned.contains("/tax") && !learned.contains("/total"),
        "{learned}"
    );
}
