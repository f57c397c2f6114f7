//! Durations (`250ms`, `5s`, `15m`, `1h`), sizes (`64KiB`, `4MiB`) and rates (`0.01`, `1%`), as
//! written in config files and flags (DESIGN.md, "Command line").

/// Serde value parsers for config files (units, URLs, methods, header names, patterns): every
/// component's config section uses them, so they live below all of them.
pub(crate) mod de;

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("invalid duration {0:?}: write a number and a unit: 250ms, 5s, 15m, 1h")]
    Duration(String),
    #[error("duration {0:?} is longer than a year (365d), the longest accepted")]
    DurationTooLong(String),
    #[error("invalid size {0:?}: write a number and a unit: 512B, 64KiB, 4MiB, 1GiB (or KB/MB/GB)")]
    Size(String),
    #[error("invalid rate {0:?}: write a fraction (0.01) or a percentage (1%) between 0 and 1")]
    Rate(String),
}

fn split_number(s: &str) -> (&str, &str) {
    let s = s.trim();
    let i = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..i], s[i..].trim())
}

/// The longest duration accepted. Longer ones are typos, and they overflow clock arithmetic: a
/// circuit cooldown of `106751991167301d` made `Instant::now() + cooldown` panic.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86400);

pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let err = || UnitError::Duration(s.to_string());
    let (n, unit) = split_number(s);
    let n: f64 = n.parse().map_err(|_| err())?;
    let secs = match unit {
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(err()),
    };
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(UnitError::DurationTooLong(s.to_string()));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| err())
}

pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let err = || UnitError::Size(s.to_string());
    let (n, unit) = split_number(s);
    let n: f64 = n.parse().map_err(|_| err())?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(err()),
    };
    let v = n * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(err());
    }
    Ok(v as u64)
}

pub fn parse_rate(s: &str) -> Result<f64, UnitError> {
    let err = || UnitError::Rate(s.to_string());
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| err())? / 100.0,
        None => t.parse::<f64>().map_err(|_| err())?,
    };
    if !(0.0..=1.0).contains(&v) {
        return Err(err());
    }
    Ok(v)
}

/// `1.5MiB`-style rendering for messages.
pub fn format_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("five s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_duration("365d").unwrap(), MAX_DURATION);
        assert_eq!(
            parse_duration("106751991167301d"),
            Err(UnitError::DurationTooLong("106751991167301d".into()))
        );
        assert!(parse_duration("366d").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("4MiB").unwrap(), 4 << 20);
        assert_eq!(parse_size("100MiB").unwrap(), 100 << 20);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
        assert!(parse_size("4 lots").is_err());
        assert_eq!(format_size(4 << 20), "4MiB");
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("0.01").unwrap(), 0.01);
        assert_eq!(parse_rate("1%").unwrap(), 0.01);
        assert_eq!(parse_rate("100%").unwrap(), 1.0);
        assert!(parse_rate("1.5").is_err());
        assert!(parse_rate("-1%").is_err());
    }
}
