//! Exact numeric equality on JSON number text: `1` = `1.0` = `1e0`, `-0.0` = `0`, and integers of
//! any size compare digit by digit, never through floating point.

/// A JSON number in canonical form: value = (-1)^neg × 0.DIGITS × 10^exp, DIGITS without leading
/// or trailing zeros. Zero is `digits == ""` with `neg == false`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Canon<'a> {
    neg: bool,
    digits: DigitRun<'a>,
    exp: i64,
}

/// The significant digits, possibly split around a decimal point (kept borrowed: no allocation).
#[derive(Debug, Clone, Copy)]
pub struct DigitRun<'a> {
    int: &'a str,
    frac: &'a str,
}

impl DigitRun<'_> {
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
    let mut exp: i64 = match exp_text {
        None => 0,
        Some(e) => {
            let (eneg, digits) = match e.as_bytes().first() {
                Some(b'-') => (true, &e[1..]),
                Some(b'+') => (false, &e[1..]),
                _ => (false, e),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Saturate: exponents beyond ±10^15 are not distinguishable in any real payload.
            let v = digits
                .bytes()
                .try_fold(0i64, |a, b| {
                    a.checked_mul(10)?.checked_add(i64::from(b - b'0'))
                })
                .unwrap_or(i64::MAX / 4)
                .min(i64::MAX / 4);
            if eneg { -v } else { v }
        }
    };
    // Strip leading zeros of the integer part; if it becomes empty, strip leading zeros of the
    // fraction (each shifts the exponent down by one).
    let int_trim = int.trim_start_matches('0');
    exp += int_trim.len() as i64;
    let (int_part, mut frac_part) = (int_trim, frac);
    if int_part.is_empty() {
        let f = frac_part.trim_start_matches('0');
        exp -= (frac_part.len() - f.len()) as i64;
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
            exp: 0,
        });
    }
    Some(Canon {
        neg,
        digits: DigitRun {
            int: int_part,
            frac: frac_part,
        },
        exp,
    })
}

/// Exact equality of two JSON number texts.
pub fn eq(a: &str, b: &str) -> bool {
    a == b || matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

/// The value as f64, for tolerances (where approximation is the point).
pub fn to_f64(text: &str) -> Option<f64> {
    text.parse::<f64>().ok()
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

    #[test]
    fn rejects_non_numbers() {
        assert!(canon("abc").is_none());
        assert!(canon("1e").is_none());
        assert!(canon("").is_none());
        assert!(canon("1.2.3").is_none());
    }
}
