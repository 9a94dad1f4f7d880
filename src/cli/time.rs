//! Parsing the command line's times (`--start-after`) and durations
//! (`--older-than`, `--delay`).

use chrono::{DateTime, Utc};

use super::Error;

/// RFC 3339 (`2030-01-02T03:04:05Z`, any offset) or `YYYY-MM-DD HH:MM:SS`
/// (with optional fraction, also with a `T`), taken as UTC.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, Error> {
    crate::submit::parse_time(s).map_err(Error::Input)
}

/// A duration: a whole number with a unit `s`, `m`, `h` or `d` (a bare
/// number is seconds). Returns seconds.
pub fn parse_duration(s: &str) -> Result<i64, Error> {
    let bad = || {
        Error::Input(format!(
            "invalid duration '{s}': use a whole number with a unit s, m, h or d, e.g. 30d"
        ))
    };
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        None => return Err(bad()),
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(bad()),
            };
            (&t[..i], mult)
        }
        Some(_) => (t, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    num.parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times() {
        let want = Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(parse_time("2030-01-02T03:04:05Z").unwrap(), want);
        assert_eq!(parse_time("2030-01-02T05:04:05+02:00").unwrap(), want);
        assert_eq!(parse_time("2030-01-02 03:04:05").unwrap(), want);
        assert_eq!(parse_time("2030-01-02T03:04:05").unwrap(), want);
        assert!(parse_time("2030-01-02 03:04:05.250").is_ok());
        for bad in ["", "tomorrow", "2030-13-01 00:00:00", "2030-01-02"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_duration("2h").unwrap(), 7200);
        assert_eq!(parse_duration("5m").unwrap(), 300);
        assert_eq!(parse_duration("7s").unwrap(), 7);
        assert_eq!(parse_duration("90").unwrap(), 90);
        for bad in [
            "",
            "d",
            "-1d",
            "1.5h",
            "3w",
            "x",
            "1 d",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
