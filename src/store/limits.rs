//! Limits and pause in the database (`cojobs_type_limits`,
//! `cojobs_co_limits`): what the claim reads to decide how many more rows
//! of a job type or a CO may start (docs/design.md#limits-and-pause).
//!
//! A type's `concurrency` and `rate` come from its side file, copied here
//! by every runner ([`Store::set_type_limits`]); pause and a CO's
//! `max_running` are set by the CLI. The values' parsing and ranges are
//! [`crate::throttle`]'s.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use super::{Result, Store, StoreError};
use crate::throttle::{PauseTarget, Rate, TypeLimits};

/// A `cojobs_type_limits` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypeThrottle {
    pub job_type: String,
    pub concurrency: Option<i64>,
    /// `rate` as written (`100/min`).
    pub rate: Option<String>,
    pub paused_by: Option<String>,
    pub paused_at: Option<String>,
}

/// A `cojobs_co_limits` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoThrottle {
    pub co_id: i64,
    pub max_running: Option<i64>,
    pub paused_by: Option<String>,
    pub paused_at: Option<String>,
}

/// Every limit and pause in force ([`Store::throttles`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Throttles {
    pub types: Vec<TypeThrottle>,
    pub cos: Vec<CoThrottle>,
}

impl Throttles {
    /// The paused job types, by name.
    pub fn paused_types(&self) -> Vec<&str> {
        self.types
            .iter()
            .filter(|t| t.paused_by.is_some())
            .map(|t| t.job_type.as_str())
            .collect()
    }

    /// The paused COs, by id.
    pub fn paused_cos(&self) -> Vec<i64> {
        self.cos
            .iter()
            .filter(|c| c.paused_by.is_some())
            .map(|c| c.co_id)
            .collect()
    }

    /// One line naming what is paused, `None` when nothing is.
    pub fn paused_line(&self) -> Option<String> {
        let types = self.paused_types();
        let cos = self.paused_cos();
        let mut parts = Vec::new();
        if !types.is_empty() {
            parts.push(format!("job types {}", types.join(", ")));
        }
        if !cos.is_empty() {
            let cos: Vec<String> = cos.iter().map(i64::to_string).collect();
            parts.push(format!("COs {}", cos.join(", ")));
        }
        (!parts.is_empty()).then(|| format!("paused: {}", parts.join("; ")))
    }
}

/// A stored rate as written, from its two columns.
pub(crate) fn rate_text(max: Option<i64>, window_secs: Option<i64>) -> Option<String> {
    Some(
        Rate {
            max: max?,
            window_secs: window_secs?,
        }
        .to_string(),
    )
}

impl Store {
    /// Record the side-file limits of `job_type` (its pause is kept).
    pub fn set_type_limits(&mut self, job_type: &str, limits: &TypeLimits) -> Result<()> {
        crate::job::validate_job_type(job_type)?;
        let now = self.now_text();
        self.conn
            .prepare_cached(
                "INSERT INTO cojobs_type_limits \
                   (job_type, concurrency, rate_max, rate_window_secs, modified) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (job_type) DO UPDATE SET concurrency = excluded.concurrency, \
                   rate_max = excluded.rate_max, rate_window_secs = excluded.rate_window_secs, \
                   modified = excluded.modified",
            )?
            .execute(params![
                job_type,
                limits.concurrency,
                limits.rate.map(|r| r.max),
                limits.rate.map(|r| r.window_secs),
                now
            ])?;
        Ok(())
    }

    /// Set (or with `None` clear) the most running jobs of CO `co_id`.
    pub fn set_co_max_running(&mut self, co_id: i64, max: Option<i64>) -> Result<()> {
        crate::bounds::MAX_RUNNING.check_opt(max)?;
        let now = self.now_text();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        super::jobs::require_co(&tx, co_id)?;
        tx.prepare_cached(
            "INSERT INTO cojobs_co_limits (co_id, max_running, modified) VALUES (?1, ?2, ?3) \
             ON CONFLICT (co_id) DO UPDATE SET max_running = excluded.max_running, \
               modified = excluded.modified",
        )?
        .execute(params![co_id, max, now])?;
        tx.commit()?;
        Ok(())
    }

    /// Pause `target` for `who`: its queued rows are not claimed until
    /// [`Store::resume`]. False when it was paused already (kept as it was).
    pub fn pause(&mut self, target: &PauseTarget, who: &str) -> Result<bool> {
        let now = self.now_text();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = match target {
            PauseTarget::Type(t) => {
                crate::job::validate_job_type(t)?;
                tx.prepare_cached(
                    "INSERT INTO cojobs_type_limits (job_type, paused_by, paused_at, modified) \
                     VALUES (?1, ?2, ?3, ?3) \
                     ON CONFLICT (job_type) DO UPDATE SET paused_by = excluded.paused_by, \
                       paused_at = excluded.paused_at, modified = excluded.modified \
                     WHERE cojobs_type_limits.paused_by IS NULL",
                )?
                .execute(params![t, who, now])?
            }
            PauseTarget::Co(id) => {
                super::jobs::require_co(&tx, *id)?;
                tx.prepare_cached(
                    "INSERT INTO cojobs_co_limits (co_id, paused_by, paused_at, modified) \
                     VALUES (?1, ?2, ?3, ?3) \
                     ON CONFLICT (co_id) DO UPDATE SET paused_by = excluded.paused_by, \
                       paused_at = excluded.paused_at, modified = excluded.modified \
                     WHERE cojobs_co_limits.paused_by IS NULL",
                )?
                .execute(params![id, who, now])?
            }
        };
        tx.commit()?;
        Ok(n == 1)
    }

    /// Resume `target`. False when it was not paused.
    pub fn resume(&mut self, target: &PauseTarget) -> Result<bool> {
        let now = self.now_text();
        let n = match target {
            PauseTarget::Type(t) => {
                crate::job::validate_job_type(t)?;
                self.conn
                    .prepare_cached(
                        "UPDATE cojobs_type_limits SET paused_by = NULL, paused_at = NULL, \
                           modified = ?2 \
                         WHERE job_type = ?1 AND paused_by IS NOT NULL",
                    )?
                    .execute(params![t, now])?
            }
            PauseTarget::Co(id) => {
                let known: Option<i64> = self
                    .conn
                    .prepare_cached("SELECT id FROM cm_cos WHERE id = ?1")?
                    .query_row([id], |r| r.get(0))
                    .optional()?;
                if known.is_none() {
                    return Err(StoreError::NoCo(*id));
                }
                self.conn
                    .prepare_cached(
                        "UPDATE cojobs_co_limits SET paused_by = NULL, paused_at = NULL, \
                           modified = ?2 \
                         WHERE co_id = ?1 AND paused_by IS NOT NULL",
                    )?
                    .execute(params![id, now])?
            }
        };
        Ok(n == 1)
    }

    /// Every limit and pause recorded.
    pub fn throttles(&self) -> Result<Throttles> {
        let types = self
            .conn
            .prepare_cached(
                "SELECT job_type, concurrency, rate_max, rate_window_secs, paused_by, paused_at \
                 FROM cojobs_type_limits ORDER BY job_type",
            )?
            .query_map([], |r| {
                Ok(TypeThrottle {
                    job_type: r.get(0)?,
                    concurrency: r.get(1)?,
                    rate: rate_text(r.get(2)?, r.get(3)?),
                    paused_by: r.get(4)?,
                    paused_at: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let cos = self
            .conn
            .prepare_cached(
                "SELECT co_id, max_running, paused_by, paused_at FROM cojobs_co_limits \
                 ORDER BY co_id",
            )?
            .query_map([], |r| {
                Ok(CoThrottle {
                    co_id: r.get(0)?,
                    max_running: r.get(1)?,
                    paused_by: r.get(2)?,
                    paused_at: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Throttles { types, cos })
    }
}
