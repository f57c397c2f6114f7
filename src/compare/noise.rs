//! Noise cancellation with a secondary (a second legacy instance). Per exchange:
//! raw = diff(primary, candidate) and noise = diff(primary, secondary). A candidate difference is
//! marked `noise` when, **in the same exchange**, primary and secondary also differ on the same
//! field with a compatible kind. Compatibility is what keeps noise from swallowing a real change:
//! a `value` jitter on `/tags` explains a candidate's `value`/`type` difference there, an `order`
//! difference explains an `order` difference, but neither explains the candidate dropping an
//! element (`missing` + `length`). Exchanges where primary and secondary agree on a field keep
//! every candidate difference on it — so a field that is only sometimes noisy but always changed
//! by the candidate is still reported on every exchange where the legacy instances agree, and the
//! learned-noise statistics ([`crate::stats::noise`]) compare the two rates before calling a field noisy.
//!
//! Text and binary bodies (`body` differences, all on the field `""`) are not judged here: a
//! whole-body field would let one noisy line explain any change. The comparator marks them line
//! by line against the secondary's body (`compare/text.rs`), and `mark` keeps those marks.

use super::{DiffKind, Difference};
use std::collections::HashSet;

fn compatible(noise: DiffKind, cand: DiffKind) -> bool {
    use DiffKind::*;
    match (noise, cand) {
        (a, b) if a == b => true,
        // A scalar that jitters may also change type (a number becoming a string is still the
        // same volatile field: an id that is sometimes numeric).
        (Value | Type, Value | Type) => true,
        _ => false,
    }
}

/// Marks the candidate differences explained by this exchange's primary-vs-secondary
/// differences (`body` differences keep the line-level marks the comparator gave them). Returns
/// true when there is at least one difference and all are noise.
pub fn mark(candidate: &mut [Difference], noise: &[Difference]) -> bool {
    if noise.is_empty() {
        return false;
    }
    // A `body` noise difference explains no field: `compatible` never pairs it with another kind.
    let by_field: HashSet<(&str, DiffKind)> =
        noise.iter().map(|n| (n.field.as_str(), n.kind)).collect();
    for d in candidate.iter_mut().filter(|d| d.kind != DiffKind::Body) {
        d.noise = by_field
            .iter()
            .any(|&(f, k)| f == d.field && compatible(k, d.kind));
    }
    !candidate.is_empty() && candidate.iter().all(|d| d.noise)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;

    /// A difference on `field` (its path: `*` as index 0); shared with the learned model's tests.
    pub(crate) fn d(field: &str, kind: DiffKind) -> Difference {
        Difference {
            path: field.replace('*', "0"),
            field: field.into(),
            kind,
            primary: Value::Null,
            candidate: Value::Null,
            noise: false,
            detail: None,
        }
    }

    #[test]
    fn same_field_and_kind_is_noise() {
        let mut c = vec![
            d("/generated_at", DiffKind::Value),
            d("/total", DiffKind::Value),
        ];
        let n = vec![d("/generated_at", DiffKind::Value)];
        assert!(!mark(&mut c, &n));
        assert!(c[0].noise);
        assert!(
            !c[1].noise,
            "a field the secondary agrees on is never noise"
        );
    }

    #[test]
    fn all_noise_is_reported_as_such() {
        let mut c = vec![d("/ts", DiffKind::Value), d("/ids/*", DiffKind::Type)];
        let n = vec![d("/ts", DiffKind::Value), d("/ids/*", DiffKind::Value)];
        assert!(mark(&mut c, &n));
        assert!(c.iter().all(|x| x.noise));
    }

    #[test]
    fn order_noise_does_not_explain_a_dropped_element() {
        let mut c = vec![
            d("/tags", DiffKind::Length),
            d("/tags/*", DiffKind::Missing),
        ];
        let n = vec![d("/tags", DiffKind::Order)];
        assert!(!mark(&mut c, &n));
        assert!(!c[0].noise && !c[1].noise);
    }

    #[test]
    fn no_secondary_differences_marks_nothing() {
        let mut c = vec![d("/a", DiffKind::Value)];
        assert!(!mark(&mut c, &[]));
        assert!(!c[0].noise);
        assert!(!mark(&mut [], &[d("/a", DiffKind::Value)]));
    }
}
