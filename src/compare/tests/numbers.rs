use super::*;

/// Issue 12: `1e99999999999999999999` equalled `1e99999999999999999998` (saturated exponents).
#[test]
fn huge_exponents_differ_when_they_differ() {
    let v = diff_json(
        "",
        None,
        r#"{"n":1e99999999999999999999,"m":-1e-99999999999999999999}"#,
        r#"{"n":1e99999999999999999998,"m":-1e-99999999999999999998}"#,
    );
    assert_eq!(v.kind, VerdictKind::Mismatch);
    let paths: Vec<&str> = v.differences.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["/m", "/n"], "{:?}", v.differences);
    // The published values keep their exact value (serde_json writes the exponent's sign).
    let n = v.differences.iter().find(|d| d.path == "/n").unwrap();
    assert_eq!(n.primary.to_string(), "1e+99999999999999999999");
    assert_eq!(n.candidate.to_string(), "1e+99999999999999999998");
    assert_match(&diff_json(
        "",
        None,
        r#"{"n":1e99999999999999999999,"z":-0,"h":1E+2,"t":1.500}"#,
        r#"{"n":10E+99999999999999999998,"z":0e99999999999999999999,"h":100,"t":1.5}"#,
    ));
}

/// `unordered` pairs numbers by their canonical hash: the same value in two forms pairs, two
/// values with nearby huge exponents do not.
#[test]
fn unordered_arrays_pair_huge_exponents_exactly() {
    let y = rules("  - match: \"*\"\n    unordered: [\"/a\"]\n");
    assert_match(&diff_json(
        &y,
        None,
        r#"{"a":[1e99999999999999999999, 2]}"#,
        r#"{"a":[2, 0.1e100000000000000000000]}"#,
    ));
    let v = diff_json(
        &y,
        None,
        r#"{"a":[1e99999999999999999999, 2]}"#,
        r#"{"a":[2, 1e99999999999999999998]}"#,
    );
    assert_eq!(v.kind, VerdictKind::Mismatch, "{:?}", v.differences);
}

/// A tolerance compares through f64, so it applies only where f64 holds both numbers: beyond
/// (`1e400` is infinite, `1e-400` is zero there) the comparison is exact. Before, two infinite
/// values were never within `abs`, and two values below f64's range were always within `rel`.
#[test]
fn tolerances_apply_within_f64_and_exactness_beyond() {
    let y =
        rules("  - match: \"*\"\n    tolerance: {\"/abs\": {abs: 0.01}, \"/rel\": {rel: 0.001}}\n");
    assert_match(&diff_json(
        &y,
        None,
        r#"{"abs":1.004,"rel":1e300}"#,
        r#"{"abs":1.0,"rel":1.0005e300}"#,
    ));
    // Out of f64's range: different values are reported, equal ones match.
    let v = diff_json(
        &y,
        None,
        r#"{"abs":1e-400,"rel":1e-400}"#,
        r#"{"abs":2e-400,"rel":9e-400}"#,
    );
    let paths: Vec<&str> = v.differences.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["/abs", "/rel"], "{:?}", v.differences);
    let v = diff_json(&y, None, r#"{"rel":1e400}"#, r#"{"rel":1.00001e400}"#);
    assert_eq!(v.differences.len(), 1, "{:?}", v.differences);
    assert_match(&diff_json(
        &y,
        None,
        r#"{"abs":1e99999999999999999999,"rel":-1e-400}"#,
        r#"{"abs":1.0e99999999999999999999,"rel":-10e-401}"#,
    ));
}
