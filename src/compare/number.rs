//! Exact numeric equality on JSON number text: `1` = `1.0` = `1e0`, `-0.0` = `0`, and integers of
//! any size compare digit by digit, never through floating point.
//!
//! Exponents are exact too, at any size: `1e99999999999999999999` and `1e99999999999999999998`
//! differ (they used to be equal, both saturated to the same exponent). An exponent that fits
//! in an `i64` once normalised is kept as one; a larger one as its decimal digits, so equal
//! values still have one canonical form (and one hash, for `unordered`). Tolerances are the
//! one place numbers go through `f64`, and only where `f64` holds them faithfully
//! ([`to_f64`]): beyond about 1e±308 a tolerance does not apply and the comparison is exact.

/// A JSON number in canonical form: value = (-1)^neg × 0.DIGITS × 10^exp, DIGITS without leading
/// or trailing zeros. Zero is `digits == ""` with `neg == false` and `exp == 0`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Canon<'a> {
    neg: bool,
    digits: DigitRun<'a>,
    exp: Exp,
}

/// A normalised exponent: `Small` whenever it fits in an `i64`, so that each value has one form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Exp {
    Small(i64),
    /// Sign and decimal digits (no leading zeros) of an exponent beyond `i64`.
    Big {
        neg: bool,
        digits: String,
    },
}

impl Exp {
    /// `written + adjust`, exactly. `written` is the exponent as written (sign, digits without
    /// leading zeros); `adjust` is the shift from moving the decimal point (bounded by the
    /// text's length).
    fn new(neg: bool, digits: &str, adjust: i64) -> Exp {
        if digits.len() <= 18 {
            // Fewer than 19 digits: below 10^18, so the sum fits in an i128 and usually an i64.
            let v = digits
                .bytes()
                .fold(0i128, |a, b| a * 10 + i128::from(b - b'0'));
            let v = if neg { -v } else { v } + i128::from(adjust);
            return match i64::try_from(v) {
                Ok(v) => Exp::Small(v),
                Err(_) => Exp::Big {
                    neg: v < 0,
                    digits: v.unsigned_abs().to_string(),
                },
            };
        }
        let (neg, digits) = add(neg, digits, adjust);
        // The sum of a 19+-digit exponent and a shift bounded by the text's length can come back
        // into the i64 range: keep the form canonical.
        if digits.len() <= 19
            && let Ok(v) = digits.parse::<i128>()
            && let Ok(v) = i64::try_from(if neg { -v } else { v })
        {
            return Exp::Small(v);
        }
        Exp::Big { neg, digits }
    }
}

/// `(-1)^neg × digits + b`, as a sign and decimal digits without leading zeros ("0" for zero,
/// never negative).
fn add(neg: bool, digits: &str, b: i64) -> (bool, String) {
    let a: Vec<u8> = digits.bytes().rev().map(|d| d - b'0').collect();
    let bm: Vec<u8> = b
        .unsigned_abs()
        .to_string()
        .bytes()
        .rev()
        .map(|d| d - b'0')
        .collect();
    let (sign, mag) = if neg == (b < 0) || b == 0 {
        (neg, add_mag(&a, &bm))
    } else if cmp_mag(&a, &bm) != std::cmp::Ordering::Less {
        (neg, sub_mag(&a, &bm))
    } else {
        (!neg, sub_mag(&bm, &a))
    };
    let mut s: String = mag.iter().rev().map(|d| char::from(b'0' + d)).collect();
    let trimmed = s.trim_start_matches('0').len();
    s.drain(..s.len() - trimmed);
    if s.is_empty() {
        return (false, "0".into());
    }
    (sign, s)
}

/// Magnitudes as little-endian decimal digits.
fn add_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
    let mut carry = 0;
    for i in 0..a.len().max(b.len()) {
        let d = a.get(i).copied().unwrap_or(0) + b.get(i).copied().unwrap_or(0) + carry;
        out.push(d % 10);
        carry = d / 10;
    }
    if carry > 0 {
        out.push(carry);
    }
    out
}

/// `a - b` for `a >= b`.
fn sub_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len());
    let mut borrow = 0;
    for (i, &d) in a.iter().enumerate() {
        let s = b.get(i).copied().unwrap_or(0) + borrow;
        if d >= s {
            out.push(d - s);
            borrow = 0;
        } else {
            out.push(d + 10 - s);
            borrow = 1;
        }
    }
    out
}

fn cmp_mag(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let len = |x: &[u8]| x.len() - x.iter().rev().take_while(|&&d| d == 0).count();
    len(a)
        .cmp(&len(b))
        .then_with(|| a[..len(a)].iter().rev().cmp(b[..len(b)].iter().rev()))
}

/// The significant digits, possibly split around a decimal point (kept borrowed: no allocation).
#[derive(Debug, Clone, Copy)]
pub struct DigitRun<'a> {
    int: &'a str,
    frac: &'a str,
}

impl DigitRun<'_> {
    fn is_empty(&self) -> bool {
        self.int.is_empty() && self.frac.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        self.int.bytes().chain(self.frac.bytes())
    }
}

impl PartialEq for DigitRun<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.int.len() + self.frac.len() == other.int.len() + other.frac.len()
            && self.iter().eq(other.iter())
    }
}
impl Eq for DigitRun<'_> {}

impl std::hash::Hash for DigitRun<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for b in self.iter() {
            state.write_u8(b);
        }
        state.write_u8(0xff);
    }
}

/// Parses JSON number text into canonical form; `None` if it is not a JSON number.
pub fn canon(text: &str) -> Option<Canon<'_>> {
    let (neg, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exp_text) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // The exponent as written: sign and digits without leading zeros.
    let (eneg, edigits) = match exp_text {
        None => (false, ""),
        Some(e) => {
            let (eneg, digits) = match e.as_bytes().first() {
                Some(b'-') => (true, &e[1..]),
                Some(b'+') => (false, &e[1..]),
                _ => (false, e),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (eneg, digits.trim_start_matches('0'))
        }
    };
    // The shift from moving the point: bounded by the text's length, so it fits an i64.
    let mut adjust: i64 = 0;
    // Strip leading zeros of the integer part; if it becomes empty, strip leading zeros of the
    // fraction (each shifts the exponent down by one).
    let int_trim = int.trim_start_matches('0');
    adjust += int_trim.len() as i64;
    let (int_part, mut frac_part) = (int_trim, frac);
    if int_part.is_empty() {
        let f = frac_part.trim_start_matches('0');
        adjust -= (frac_part.len() - f.len()) as i64;
        frac_part = f;
    }
    // Strip trailing zeros of the whole digit run.
    let (int_part, frac_part) = if frac_part.trim_end_matches('0').is_empty() {
        (int_part.trim_end_matches('0'), "")
    } else {
        (int_part, frac_part.trim_end_matches('0'))
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Some(Canon {
            neg: false,
            digits: DigitRun { int: "", frac: "" },
            exp: Exp::Small(0),
        });
    }
    Some(Canon {
        neg,
        digits: DigitRun {
            int: int_part,
            frac: frac_part,
        },
        exp: Exp::new(eneg, edigits, adjust),
    })
}

/// Exact equality of two JSON number texts.
pub fn eq(a: &str, b: &str) -> bool {
    a == b || matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

/// The value as f64, for tolerances (where approximation is the point); `None` where f64
/// cannot hold it: beyond its range (it would be infinite, and every two such numbers "within
/// tolerance" or never) or below it (a non-zero number read as 0, so that `rel` would accept
/// any pair).
pub fn to_f64(text: &str) -> Option<f64> {
    let v = text.parse::<f64>().ok()?;
    if !v.is_finite() {
        return None;
    }
    if v == 0.0 && canon(text).is_some_and(|c| !c.digits.is_empty()) {
        return None;
    }
    Some(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn equal_by_value() {
        assert!(eq("1", "1.0"));
        assert!(eq("1", "1.000"));
        assert!(eq("100", "1e2"));
        assert!(eq("100", "1E+2"));
        assert!(eq("0.01", "1e-2"));
        assert!(eq("-0.0", "0"));
        assert!(eq("-0", "0.0e10"));
        assert!(eq("0.5", "5e-1"));
        assert!(eq("120.50", "1.205e2"));
        assert!(!eq("1", "-1"));
        assert!(!eq("1", "10"));
        assert!(!eq("0.1", "0.01"));
        assert!(!eq("1.5", "15"));
    }

    #[test]
    fn big_integers_are_exact() {
        // Equal as f64, different as integers.
        assert!(!eq("9007199254740993", "9007199254740992"));
        assert!(!eq(
            "123456789012345678901234567890",
            "123456789012345678901234567891"
        ));
        assert!(eq(
            "123456789012345678901234567890",
            "1.2345678901234567890123456789e29"
        ));
        assert!(!eq("18446744073709551616", "18446744073709551617"));
    }

    /// Issue 12: the exponents used to saturate, making these equal.
    #[test]
    fn huge_exponents_are_exact() {
        assert!(!eq("1e99999999999999999999", "1e99999999999999999998"));
        assert!(eq("1e99999999999999999999", "1E+99999999999999999999"));
        assert!(eq("1e99999999999999999999", "10e99999999999999999998"));
        assert!(eq("1e99999999999999999999", "0.1e100000000000000000000"));
        assert!(eq("1e99999999999999999999", "1.000e0099999999999999999999"));
        assert!(!eq("1e99999999999999999999", "-1e99999999999999999999"));
        assert!(!eq("1e-99999999999999999999", "1e-99999999999999999998"));
        assert!(eq("1e-99999999999999999999", "0.001e-99999999999999999996"));
        assert!(eq("100e-99999999999999999999", "1e-99999999999999999997"));
        // Beyond i64 either way, and crossing back into it.
        assert!(!eq("1e9223372036854775807", "1e9223372036854775808"));
        assert!(eq("1e9223372036854775808", "10e9223372036854775807"));
        assert!(eq("0.01e9223372036854775809", "1e9223372036854775807"));
        assert!(eq("1e-9223372036854775809", "0.1e-9223372036854775808"));
        assert!(!eq("1e-9223372036854775809", "1e-9223372036854775808"));
        // Zero is zero at any exponent and any sign.
        assert!(eq("0e99999999999999999999", "-0.000e-99999999999999999999"));
        assert!(eq("-0", "0"));
        // Trailing zeros and written forms.
        assert!(eq("1E+2", "100"));
        assert!(eq("1.2300e3", "1230"));
        assert!(!eq("1.23e3", "1231"));
    }

    /// Equal values hash alike (for `unordered`), whatever form their exponent takes.
    #[test]
    fn the_canonical_form_is_unique() {
        use std::hash::{BuildHasher, RandomState};
        let h = RandomState::new();
        for (a, b) in [
            ("1e9223372036854775808", "10e9223372036854775807"),
            ("0.01e9223372036854775809", "1e9223372036854775807"),
            ("1e99999999999999999999", "10e99999999999999999998"),
            ("-5e-99999999999999999999", "-0.5e-99999999999999999998"),
        ] {
            assert_eq!(canon(a), canon(b), "{a} {b}");
            assert_eq!(h.hash_one(canon(a)), h.hash_one(canon(b)), "{a} {b}");
        }
        assert_eq!(canon("1e0").unwrap().exp, Exp::Small(1));
        assert!(matches!(
            canon("1e99999999999999999999").unwrap().exp,
            Exp::Big { .. }
        ));
    }

    #[test]
    fn exponent_arithmetic() {
        assert_eq!(
            add(false, "99999999999999999999", 1),
            (false, "100000000000000000000".into())
        );
        assert_eq!(
            add(true, "100000000000000000000", 1),
            (true, "99999999999999999999".into())
        );
        assert_eq!(
            add(false, "10000000000000000000", i64::MIN),
            (false, "776627963145224192".into())
        );
        assert_eq!(add(false, "5", -5), (false, "0".into()));
        assert_eq!(add(false, "3", -5), (true, "2".into()));
    }

    /// Tolerances use f64 only where it holds the value: never infinity, never a non-zero
    /// number read as zero.
    #[test]
    fn f64_only_within_its_range() {
        assert_eq!(to_f64("1.5"), Some(1.5));
        assert_eq!(to_f64("-0"), Some(-0.0));
        assert_eq!(to_f64("0e99999999999999999999"), Some(0.0));
        assert_eq!(to_f64("1e400"), None);
        assert_eq!(to_f64("-1e99999999999999999999"), None);
        assert_eq!(to_f64("1e-400"), None);
        assert!(to_f64("1e-310").is_some_and(|v| v > 0.0)); // subnormal, still itself
    }

    #[test]
    fn rejects_non_numbers() {
        assert!(canon("abc").is_none());
        assert!(canon("1e").is_none());
        assert!(canon("").is_none());
        assert!(canon("1.2.3").is_none());
    }
}
