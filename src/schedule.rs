//! Cron schedules: when a schedule's ticks fall, and which due ticks a
//! runner's pass queues (`docs/design.md#schedules`).
//!
//! Pure code, like [`crate::job`]: no database. The store keeps each
//! schedule's `next_tick` (the earliest tick not yet queued) and asks
//! [`Schedule::plan`] what to queue when that tick is due.
//!
//! Cron syntax is croner's (5 fields, an optional leading seconds field,
//! `@hourly`, `@daily`...), read in the schedule's time zone (the tz
//! database, through chrono-tz). Daylight saving time is decided here, not
//! by croner, with one rule for every pattern: a tick is a wall-clock time
//! the pattern matches, at the first instant that wall-clock time happens.
//! So a wall-clock time that does not exist (the hour skipped in spring)
//! has no tick, and one that happens twice (the hour repeated in autumn)
//! has one tick, the first.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A tick at most this late when a runner first sees it is on time: it is
/// queued whatever the catch-up policy. An older one was missed (no runner
/// was up to queue it) and is queued only as `--catch-up` says.
pub const ON_TIME: TimeDelta = TimeDelta::seconds(10);

/// Most ticks one pass queues for one schedule (`--catch-up all` after a
/// long outage drains the rest in later passes, oldest first).
pub const MAX_TICKS_PER_PASS: usize = 1000;

/// How far ahead a next tick is looked for: a pattern with no tick in this
/// many years (`0 0 30 2 *`) is refused.
const HORIZON_YEARS: i32 = 10;

/// What a schedule does with ticks missed while no runner was up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CatchUp {
    /// Missed ticks are dropped.
    None,
    /// One job for all the missed ticks: the latest of them.
    #[default]
    Latest,
    /// A job for every missed tick (at most [`MAX_TICKS_PER_PASS`] a pass).
    All,
}

impl CatchUp {
    pub const ALL: [CatchUp; 3] = [CatchUp::None, CatchUp::Latest, CatchUp::All];

    /// The name stored and typed (`none`, `latest`, `all`).
    pub fn name(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
        }
    }
}

impl fmt::Display for CatchUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CatchUp {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CatchUp::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ScheduleError::CatchUp(s.to_string()))
    }
}

/// A schedule that cannot be used: the message says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression '{expr}': {reason}")]
    Cron { expr: String, reason: String },
    #[error("cron expression '{0}' has no time in the next {HORIZON_YEARS} years")]
    Never(String),
    #[error("unknown time zone '{0}' (use a tz database name such as UTC or Europe/Vienna)")]
    Zone(String),
    #[error("unknown catch-up policy '{0}' (expected none, latest or all)")]
    CatchUp(String),
    #[error(
        "invalid schedule name '{0}': use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
    )]
    Name(String),
}

/// Check a schedule name: the same shape as a job type.
pub fn validate_name(name: &str) -> Result<(), ScheduleError> {
    crate::job::validate_job_type(name).map_err(|_| ScheduleError::Name(name.to_string()))
}

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
}

/// What one pass queues for a due schedule ([`Schedule::plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The ticks to queue a job for, oldest first.
    pub ticks: Vec<DateTime<Utc>>,
    /// The schedule's new `next_tick`: the first tick not dealt with.
    pub next: Option<DateTime<Utc>>,
}

impl Schedule {
    /// Parse `expr` (5 fields, or 6 with seconds first, or `@hourly`...)
    /// in the zone named `zone` (`UTC`, `Europe/Vienna`...).
    pub fn parse(expr: &str, zone: &str) -> Result<Schedule, ScheduleError> {
        let zone = Tz::from_str(zone).map_err(|_| ScheduleError::Zone(zone.to_string()))?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError::Cron {
                expr: expr.to_string(),
                reason: e.to_string(),
            })?;
        let schedule = Schedule { cron, zone };
        // A pattern that never matches (30 February) is refused now, not
        // found out by a runner.
        let probe = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        schedule
            .next_after(probe)
            .ok_or_else(|| ScheduleError::Never(expr.to_string()))?;
        Ok(schedule)
    }

    /// The zone's name.
    pub fn zone(&self) -> &'static str {
        self.zone.name()
    }

    /// The first tick strictly after `after`, or `None` if there is none
    /// within [`HORIZON_YEARS`].
    ///
    /// Walks the wall-clock times the pattern matches, from `after`'s wall
    /// clock on, and takes each at the first instant it happens: a
    /// nonexistent one is skipped, a doubled one gives its first instant,
    /// which lies before `after` when `after` is in the repeated hour's
    /// second pass (then the walk goes on).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut wall: NaiveDateTime = after.with_timezone(&self.zone).naive_local();
        let limit = wall.checked_add_signed(TimeDelta::days(366 * i64::from(HORIZON_YEARS)))?;
        loop {
            wall = self.cron.find_next_occurrence(&wall, false).ok()?;
            if wall > limit {
                return None;
            }
            let instant = match self.zone.from_local_datetime(&wall) {
                LocalResult::Single(t) => t,
                LocalResult::Ambiguous(first, _) => first,
                LocalResult::None => continue,
            }
            .with_timezone(&Utc);
            if instant > after {
                return Some(instant);
            }
        }
    }

    /// The first `n` ticks after `after` (`schedule show`).
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut at = after;
        while out.len() < n {
            match self.next_after(at) {
                Some(t) => {
                    out.push(t);
                    at = t;
                }
                None => break,
            }
        }
        out
    }

    /// What to queue now for a schedule whose earliest unqueued tick is
    /// `next_tick` (at or before `now`): the on-time ticks (at most
    /// [`ON_TIME`] late), and of the missed ones what `catch_up` says.
    /// At most [`MAX_TICKS_PER_PASS`] ticks; the new `next_tick` follows
    /// the last tick dealt with.
    pub fn plan(&self, next_tick: DateTime<Utc>, now: DateTime<Utc>, catch_up: CatchUp) -> Plan {
        let missed_until = now - ON_TIME;
        let mut ticks = Vec::new();
        let mut at = Some(next_tick);
        if next_tick <= missed_until {
            // Ticks up to `missed_until` were missed.
            let first_on_time = self.next_after(missed_until);
            match catch_up {
                CatchUp::None => at = first_on_time,
                CatchUp::Latest => {
                    ticks.push(self.last_at_or_before(next_tick, missed_until));
                    at = first_on_time;
                }
                CatchUp::All => {}
            }
        }
        while let Some(t) = at {
            if t > now || ticks.len() >= MAX_TICKS_PER_PASS {
                break;
            }
            ticks.push(t);
            at = self.next_after(t);
        }
        Plan { ticks, next: at }
    }

    /// The last tick at or before `until`, given that `first` (a tick) is
    /// one: found by croner's backward search on the wall clock, then
    /// walked forward (a doubled hour can hide later ticks from it).
    fn last_at_or_before(&self, first: DateTime<Utc>, until: DateTime<Utc>) -> DateTime<Utc> {
        let wall = until.with_timezone(&self.zone).naive_local();
        let guess = self
            .cron
            .find_previous_occurrence(&wall, true)
            .ok()
            .and_then(|w| self.zone.from_local_datetime(&w).earliest())
            .map(|t| t.with_timezone(&Utc))
            .filter(|t| *t >= first && *t <= until)
            .unwrap_or(first);
        let mut last = guess;
        while let Some(t) = self.next_after(last).filter(|t| *t <= until) {
            last = t;
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .map(|t| t.and_utc())
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn s(expr: &str, zone: &str) -> Schedule {
        Schedule::parse(expr, zone).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn five_fields_seconds_and_nicknames() {
        let at = utc("2026-03-01 10:07:30");
        assert_eq!(
            s("*/5 * * * *", "UTC").next_after(at),
            Some(utc("2026-03-01 10:10:00"))
        );
        assert_eq!(
            s("*/20 * * * * *", "UTC").next_after(at),
            Some(utc("2026-03-01 10:07:40"))
        );
        assert_eq!(
            s("@hourly", "UTC").next_after(at),
            Some(utc("2026-03-01 11:00:00"))
        );
        assert_eq!(
            s("0 9 * * *", "Europe/Vienna").next_after(at),
            Some(utc("2026-03-02 08:00:00"))
        );
    }

    #[test]
    fn bad_input_is_refused() {
        for (expr, zone) in [
            ("not cron", "UTC"),
            ("* * *", "UTC"),
            ("61 * * * *", "UTC"),
            ("* * * * * * 2030", "UTC"),
            ("0 0 30 2 *", "UTC"),
            ("* * * * *", "Mars/Olympus"),
            ("", "UTC"),
        ] {
            assert!(Schedule::parse(expr, zone).is_err(), "{expr:?} {zone:?}");
        }
        assert!(validate_name("../x").is_err());
        assert!("sometimes".parse::<CatchUp>().is_err());
        assert_eq!("ALL".parse::<CatchUp>(), Ok(CatchUp::All));
    }

    #[test]
    fn a_nonexistent_wall_time_is_skipped() {
        // Vienna springs forward on 2026-03-29: 02:00 -> 03:00 local.
        let daily = s("30 2 * * *", "Europe/Vienna");
        let ticks = daily.upcoming(utc("2026-03-27 12:00:00"), 3);
        assert_eq!(
            ticks,
            vec![
                utc("2026-03-28 01:30:00"),
                // 29 March has no 02:30.
                utc("2026-03-30 00:30:00"),
                utc("2026-03-31 00:30:00"),
            ]
        );
    }

    #[test]
    fn a_doubled_wall_time_runs_once() {
        // Vienna falls back on 2026-10-25: 03:00 -> 02:00 local; 02:30
        // happens at 00:30 and 01:30 UTC.
        let daily = s("30 2 * * *", "Europe/Vienna");
        assert_eq!(
            daily.upcoming(utc("2026-10-24 12:00:00"), 2),
            vec![utc("2026-10-25 00:30:00"), utc("2026-10-26 01:30:00")]
        );
        // Every 30 minutes: the repeated hour's second pass has no ticks.
        let half = s("*/30 * * * *", "Europe/Vienna");
        assert_eq!(
            half.upcoming(utc("2026-10-24 23:45:00"), 4),
            vec![
                utc("2026-10-25 00:00:00"), // 02:00 first pass
                utc("2026-10-25 00:30:00"), // 02:30 first pass
                utc("2026-10-25 02:00:00"), // 03:00
                utc("2026-10-25 02:30:00"), // 03:30
            ]
        );
        // Asked from inside the second pass, the next tick is after it.
        assert_eq!(
            half.next_after(utc("2026-10-25 01:10:00")),
            Some(utc("2026-10-25 02:00:00"))
        );
    }

    #[test]
    fn catch_up_policies() {
        let every_min = s("* * * * *", "UTC");
        let next = utc("2026-01-01 10:00:00");
        let now = utc("2026-01-01 10:05:05");
        let none = every_min.plan(next, now, CatchUp::None);
        assert_eq!(none.ticks, vec![utc("2026-01-01 10:05:00")]);
        assert_eq!(none.next, Some(utc("2026-01-01 10:06:00")));
        let latest = every_min.plan(next, now, CatchUp::Latest);
        assert_eq!(
            latest.ticks,
            vec![utc("2026-01-01 10:04:00"), utc("2026-01-01 10:05:00")]
        );
        let all = every_min.plan(next, now, CatchUp::All);
        assert_eq!(all.ticks.len(), 6);
        assert_eq!(all.next, Some(utc("2026-01-01 10:06:00")));
        // On time: every policy queues it alone.
        let on_time = every_min.plan(next, utc("2026-01-01 10:00:03"), CatchUp::None);
        assert_eq!(on_time.ticks, vec![next]);
        // A per-second schedule down for a day: bounded.
        let every_sec = s("* * * * * *", "UTC");
        let long = every_sec.plan(next, utc("2026-01-02 10:00:00"), CatchUp::All);
        assert_eq!(long.ticks.len(), MAX_TICKS_PER_PASS);
        assert_eq!(long.next, Some(utc("2026-01-01 10:16:40")));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    const ZONES: [&str; 5] = [
        "UTC",
        "Europe/Vienna",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kathmandu",
    ];
    const EXPRS: [&str; 6] = [
        "* * * * *",
        "*/7 * * * *",
        "30 2 * * *",
        "0 */3 * * 1-5",
        "15,45 1-3 * * *",
        "*/13 * * * * *",
    ];

    proptest! {
        /// The next tick is after the instant asked about, its wall-clock
        /// time matches the pattern, it is that wall-clock time's first
        /// instant, and no tick lies between.
        #[test]
        fn next_tick_is_the_first_matching_instant(
            secs in 1_600_000_000i64..1_900_000_000,
            zone in 0usize..ZONES.len(),
            expr in 0usize..EXPRS.len(),
        ) {
            let sch = Schedule::parse(EXPRS[expr], ZONES[zone]).unwrap_or_else(|e| panic!("{e}"));
            let after = DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default();
            let next = sch.next_after(after).unwrap_or_else(|| panic!("no tick"));
            prop_assert!(next > after);
            let wall = next.with_timezone(&sch.zone).naive_local();
            prop_assert!(sch.cron.is_time_matching(&wall).unwrap_or(false));
            let first = sch.zone.from_local_datetime(&wall).earliest().map(|t| t.with_timezone(&Utc));
            prop_assert_eq!(first, Some(next));
            // Seconds between: none is a tick (checked by brute force over
            // gaps up to 3 hours; longer gaps are sampled every minute).
            let gap = (next - after).num_seconds();
            let step = if gap > 3 * 3600 { 60 } else { 1 };
            let mut t = after + TimeDelta::seconds(1);
            while t < next {
                let w = t.with_timezone(&sch.zone).naive_local();
                let is_first = sch.zone.from_local_datetime(&w).earliest().map(|e| e.with_timezone(&Utc)) == Some(t);
                prop_assert!(!(is_first && sch.cron.is_time_matching(&w).unwrap_or(false)), "missed tick {t}");
                t += TimeDelta::seconds(step);
            }
        }

        /// A plan queues ticks in order, never one after now, never twice
        /// (its `next` is after all of them), and on-time ticks always.
        #[test]
        fn plans_are_ordered_and_keep_on_time_ticks(
            secs in 1_600_000_000i64..1_900_000_000,
            late in 0i64..20_000,
            zone in 0usize..ZONES.len(),
            expr in 0usize..EXPRS.len(),
            policy in 0usize..3,
        ) {
            let sch = Schedule::parse(EXPRS[expr], ZONES[zone]).unwrap_or_else(|e| panic!("{e}"));
            let start = DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default();
            let next_tick = sch.next_after(start).unwrap_or_else(|| panic!("no tick"));
            let now = next_tick + TimeDelta::seconds(late);
            let plan = sch.plan(next_tick, now, CatchUp::ALL[policy]);
            // Only `none` may queue nothing (every due tick was missed).
            prop_assert!(!plan.ticks.is_empty() || CatchUp::ALL[policy] == CatchUp::None);
            prop_assert!(plan.ticks.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(plan.ticks.iter().all(|t| *t >= next_tick && *t <= now));
            if let Some(n) = plan.next {
                prop_assert!(plan.ticks.iter().all(|t| *t < n));
                if plan.ticks.len() < MAX_TICKS_PER_PASS {
                    prop_assert!(n > now);
                }
            }
            let on_time: Vec<_> = sch.upcoming(now - ON_TIME, 50).into_iter().filter(|t| *t <= now && *t >= next_tick).collect();
            for t in on_time {
                prop_assert!(plan.ticks.contains(&t) || plan.ticks.len() == MAX_TICKS_PER_PASS);
            }
        }
    }
}
