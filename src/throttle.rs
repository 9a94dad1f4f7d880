//! Limits on starting jobs (issue 14): per job type a concurrency cap and a
//! rate (`concurrency = 3`, `rate = "100/min"` in `plugins/<type>.toml`),
//! per CO a cap on running jobs (`cojobs co set ID --max-running N`), and
//! pause of a type or a CO (`cojobs pause`).
//!
//! Pure code: the values and their parsing. The store keeps them in tables
//! of their own and the claim reads them there, in the same statement that
//! takes the rows, so they hold across runner processes and machines
//! (docs/design.md#limits-and-pause).

use std::fmt;
use std::str::FromStr;

use crate::bounds;

/// Most starts of a job type per window: `rate = "100/min"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Starts allowed per window ([`bounds::RATE_COUNT`]).
    pub max: i64,
    /// The window, seconds: 1, 60, 3600 or 86400.
    pub window_secs: i64,
}

/// Why a `rate` does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("rate '{0}' is not COUNT/UNIT (e.g. \"100/min\"; units: s, min, h, day)")]
    Shape(String),
    #[error(transparent)]
    Count(#[from] bounds::OutOfRange),
}

impl Rate {
    /// The window's unit as written back (`s`, `min`, `h`, `day`).
    fn unit(self) -> &'static str {
        match self.window_secs {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => "day",
        }
    }
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Rate, RateError> {
        let shape = || RateError::Shape(s.to_string());
        let (count, unit) = s.trim().split_once('/').ok_or_else(shape)?;
        let max: i64 = count.trim().parse().map_err(|_| shape())?;
        let window_secs = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => return Err(shape()),
        };
        Ok(Rate {
            max: bounds::RATE_COUNT.check(max)?,
            window_secs,
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.max, self.unit())
    }
}

/// A job type's limits from its side file; `None` = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TypeLimits {
    /// Most rows of the type `GO` at once, anywhere ([`bounds::CONCURRENCY`]).
    pub concurrency: Option<i64>,
    pub rate: Option<Rate>,
}

/// What `cojobs pause` / `resume` names: a job type or a CO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PauseTarget {
    Type(String),
    Co(i64),
}

impl fmt::Display for PauseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PauseTarget::Type(t) => write!(f, "job type '{t}'"),
            PauseTarget::Co(id) => write!(f, "CO {id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_and_print() {
        for (text, max, window, back) in [
            ("100/min", 100, 60, "100/min"),
            (" 5 / s ", 5, 1, "5/s"),
            ("1/hour", 1, 3600, "1/h"),
            ("7/day", 7, 86_400, "7/day"),
            ("2/d", 2, 86_400, "2/day"),
        ] {
            let r: Rate = text.parse().expect(text);
            assert_eq!((r.max, r.window_secs), (max, window), "{text}");
            assert_eq!(r.to_string(), back);
        }
    }

    #[test]
    fn bad_rates_say_why() {
        for bad in ["", "100", "100/", "/min", "x/min", "100/week", "1.5/s"] {
            let e = bad.parse::<Rate>().expect_err(bad);
            assert!(e.to_string().contains("COUNT/UNIT"), "{bad}: {e}");
        }
        let e = "0/min".parse::<Rate>().expect_err("zero");
        assert_eq!(
            e.to_string(),
            "rate 0 is out of range: 1 to 1000000000 starts per window"
        );
    }
}
