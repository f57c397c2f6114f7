use super::*;

/// Counts observations per endpoint, as the statistics do.
fn bump(m: &EndpointMap<u64>, endpoint: &str) {
    m.with_endpoint(endpoint, || 0, |n| *n += 1);
}

fn contents(m: &EndpointMap<u64>) -> Vec<(String, u64)> {
    let mut v = Vec::new();
    m.for_each(|k, n| v.push((k.to_string(), *n)));
    v.sort();
    v
}

#[test]
fn the_cap_is_honoured_and_later_endpoints_fold_into_other() {
    let m = EndpointMap::new(3);
    for i in 0..10 {
        bump(&m, &format!("GET /e{i}"));
    }
    // Known endpoints keep their own entry after the cap is reached.
    bump(&m, "GET /e0");
    assert_eq!(
        contents(&m),
        [
            ("GET /e0".to_string(), 2),
            ("GET /e1".to_string(), 1),
            ("GET /e2".to_string(), 1),
            (OTHER_ENDPOINT.to_string(), 7),
        ]
    );
    assert_eq!((m.named(), m.len()), (3, 4));
}

#[test]
fn other_does_not_count_against_the_cap() {
    let m = EndpointMap::new(2);
    // The grouping's own overflow arrives first: it must not take a named slot.
    bump(&m, OTHER_ENDPOINT);
    bump(&m, "GET /a");
    bump(&m, "GET /b");
    bump(&m, "GET /c");
    assert_eq!(
        contents(&m),
        [
            ("GET /a".to_string(), 1),
            ("GET /b".to_string(), 1),
            (OTHER_ENDPOINT.to_string(), 2),
        ]
    );
    assert_eq!(m.named(), 2);
}

#[test]
fn a_cap_of_zero_folds_everything_into_other() {
    let m = EndpointMap::new(0);
    bump(&m, "GET /a");
    bump(&m, "GET /b");
    assert_eq!(contents(&m), [(OTHER_ENDPOINT.to_string(), 2)]);
}

#[test]
fn take_empties_the_map_and_frees_the_slots() {
    let m = EndpointMap::new(2);
    for e in ["GET /a", "GET /b", "GET /c"] {
        bump(&m, e);
    }
    let taken: Vec<(String, u64)> = m
        .take()
        .into_iter()
        .map(|(k, n)| (k.to_string(), n))
        .collect();
    assert_eq!(
        taken,
        [
            ("GET /a".to_string(), 1),
            ("GET /b".to_string(), 1),
            (OTHER_ENDPOINT.to_string(), 1),
        ]
    );
    assert!(m.is_empty());
    assert_eq!(m.named(), 0);
    // A new interval admits new names again.
    bump(&m, "GET /c");
    bump(&m, "GET /d");
    bump(&m, "GET /e");
    assert_eq!(
        contents(&m),
        [
            ("GET /c".to_string(), 1),
            ("GET /d".to_string(), 1),
            (OTHER_ENDPOINT.to_string(), 1),
        ]
    );
}

#[test]
fn concurrent_admission_takes_exactly_the_cap() {
    // Eight threads race to admit the same 100 endpoints in different orders: exactly 40 get a
    // slot (no slot lost to a race, none taken twice), and nothing is lost.
    let m = EndpointMap::new(40);
    std::thread::scope(|s| {
        for t in 0..8 {
            let m = &m;
            s.spawn(move || {
                for i in 0..1000 {
                    bump(m, &format!("GET /e{}", (i * 7 + t * 13) % 100));
                }
            });
        }
    });
    let c = contents(&m);
    assert_eq!(m.named(), 40);
    assert_eq!(c.len(), 41);
    assert!(c.iter().any(|(k, _)| k == OTHER_ENDPOINT));
    assert_eq!(c.iter().map(|(_, n)| n).sum::<u64>(), 8000);
}
