//! Store tests against a real SQLite file in a temporary directory.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use super::*;
use crate::job::{Outcome, RecordStatus, Retry};

const LEASE: Duration = Duration::from_secs(30);

/// A store whose clock only moves when told.
struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Store,
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        let mut store = Store::open(&path).unwrap();
        let now = Arc::new(Mutex::new(
            Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap(),
        ));
        let clock = now.clone();
        store.set_clock(Arc::new(move || *clock.lock().unwrap()));
        Fixture {
            _dir: dir,
            path,
            store,
            now,
        }
    }

    fn advance(&self, secs: i64) {
        let mut now = self.now.lock().unwrap();
        *now += TimeDelta::seconds(secs);
    }

    fn queue(&mut self, job: NewJob) -> JobId {
        self.store.queue(&job).unwrap()
    }

    fn sql(&self, sql: &str) {
        let conn = rusqlite::Connection::open(&self.path).unwrap();
        conn.execute_batch(sql).unwrap();
    }

    fn job(&self, id: JobId) -> Job {
        self.store.get(id).unwrap().unwrap()
    }
}

fn hello() -> NewJob {
    NewJob::new(1, "hello")
}

fn failed() -> Outcome {
    Outcome::Failed {
        summary: "boom".into(),
        retry: Retry::Policy,
    }
}

#[test]
fn open_creates_schema_and_default_co_and_reopens() {
    let f = Fixture::new();
    assert_eq!(
        f.store.schema_version().unwrap(),
        schema::MIGRATIONS.len() as i64
    );
    let cos = f.store.list_cos().unwrap();
    assert_eq!(cos.len(), 1);
    assert_eq!((cos[0].id, cos[0].name.as_str()), (1, "default"));
    drop(Store::open(&f.path).unwrap());
    assert_eq!(Store::open(&f.path).unwrap().list_cos().unwrap().len(), 1);
}

#[test]
fn newer_schema_is_refused() {
    let f = Fixture::new();
    f.sql("PRAGMA user_version = 99");
    let err = Store::open(&f.path).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
}

#[test]
fn queue_stores_every_field() {
    let mut f = Fixture::new();
    let start = Utc.with_ymd_and_hms(2030, 1, 2, 0, 0, 0).unwrap();
    let id = f.queue(NewJob {
        job_mode: Some("fast".into()),
        job_params: Some(r#"{ "b": 1, "a": "x" }"#.into()),
        requeue_interval: Some(3600),
        retry_interval: Some(60),
        max_retry: Some(3),
        start_after: Some(start),
        register_summary: Some("é".repeat(300)),
        fuel_limit: Some(1000),
        memory_limit_mib: Some(64),
        timeout_secs: Some(5),
        queued_by: Some("ada".into()),
        ..hello()
    });
    let j = f.job(id);
    assert_eq!(j.status, JobStatus::Queued);
    assert_eq!(j.job_params.as_deref(), Some(r#"{"a":"x","b":1}"#));
    assert_eq!(j.register_summary.unwrap().chars().count(), 256);
    assert_eq!(j.queue_time.as_deref(), Some("2030-01-01 12:00:00.000"));
    assert_eq!(
        j.start_after_time.as_deref(),
        Some("2030-01-02 00:00:00.000")
    );
    assert_eq!(j.max_retry_count, Some(0));
    assert_eq!(
        (j.fuel_limit, j.memory_limit_mib, j.timeout_secs),
        (Some(1000), Some(64), Some(5))
    );
    assert_eq!(j.queued_by.as_deref(), Some("ada"));
}

#[test]
fn bad_input_writes_nothing() {
    let mut f = Fixture::new();
    let cases: Vec<(NewJob, &str)> = vec![
        (NewJob::new(1, "../x"), "invalid job type"),
        (NewJob::new(1, ""), "invalid job type"),
        (NewJob::new(1, "a".repeat(65)), "invalid job type"),
        (NewJob::new(7, "hello"), "no CO 7"),
        (
            NewJob {
                job_params: Some("{".into()),
                ..hello()
            },
            "not valid JSON",
        ),
        (
            NewJob {
                job_params: Some("[1]".into()),
                ..hello()
            },
            "must be a JSON object, not an array",
        ),
        (
            NewJob {
                retry_interval: Some(-1),
                ..hello()
            },
            "retry interval must not be negative",
        ),
        (
            NewJob {
                requeue_interval: Some(-1),
                ..hello()
            },
            "requeue interval must not be negative",
        ),
        (
            NewJob {
                max_retry: Some(-1),
                ..hello()
            },
            "max retry must not be negative",
        ),
        (
            NewJob {
                job_mode: Some("m".repeat(17)),
                ..hello()
            },
            "longer than 16",
        ),
    ];
    for (job, want) in cases {
        let err = f.store.queue(&job).unwrap_err();
        assert!(err.to_string().contains(want), "{err} !~ {want}");
        assert!(err.is_input(), "{err}");
        let err = f.store.queue_unique(&job).unwrap_err();
        assert!(err.to_string().contains(want), "{err} !~ {want}");
    }
    assert_eq!(f.store.job_count().unwrap(), 0);
}

#[test]
fn queue_unique_finds_live_twin() {
    let mut f = Fixture::new();
    let job = NewJob {
        job_params: Some(r#"{"a":1,"b":2}"#.into()),
        ..hello()
    };
    let Queued::New(first) = f.store.queue_unique(&job).unwrap() else {
        panic!("not new")
    };
    let twin = NewJob {
        job_params: Some(r#"{ "b":2, "a":1 }"#.into()),
        ..hello()
    };
    assert_eq!(
        f.store.queue_unique(&twin).unwrap(),
        Queued::Existing(first, JobStatus::Queued)
    );
    // Other mode, params or CO: new rows.
    let other_mode = NewJob {
        job_mode: Some("m".into()),
        ..job.clone()
    };
    assert!(matches!(
        f.store.queue_unique(&other_mode).unwrap(),
        Queued::New(_)
    ));
    assert!(matches!(
        f.store.queue_unique(&hello()).unwrap(),
        Queued::New(_)
    ));
    assert_eq!(f.store.job_count().unwrap(), 3);
    // NULL params and {} are the same.
    assert!(matches!(
        f.store
            .queue_unique(&NewJob {
                job_params: Some("{}".into()),
                ..hello()
            })
            .unwrap(),
        Queued::Existing(..)
    ));
    // A GO twin counts; an ended one does not.
    let claimed = f.store.claim("r1", 10, LEASE).unwrap();
    assert_eq!(claimed.len(), 3);
    assert_eq!(
        f.store.queue_unique(&job).unwrap(),
        Queued::Existing(first, JobStatus::InProgress)
    );
    f.store
        .finish(
            first,
            "r1",
            &Outcome::Complete {
                summary: "ok".into(),
            },
            None,
            None,
        )
        .unwrap();
    assert!(matches!(
        f.store.queue_unique(&job).unwrap(),
        Queued::New(_)
    ));
}

#[test]
fn claim_and_finish_ok_with_requeue() {
    let mut f = Fixture::new();
    let id = f.queue(NewJob {
        requeue_interval: Some(3600),
        job_params: Some(r#"{"n":1}"#.into()),
        ..hello()
    });
    let claimed = f.store.claim("r1", 8, LEASE).unwrap();
    assert_eq!(claimed.len(), 1);
    let j = &claimed[0];
    assert_eq!(
        (j.id, j.status, j.runner_id.as_deref()),
        (id, JobStatus::InProgress, Some("r1"))
    );
    // Claimed is not started: the runner records the start when a worker
    // takes the job (so a rescue can tell the two apart).
    assert_eq!(j.start_time, None);
    assert_eq!(
        j.lease_expires_at.as_deref(),
        Some("2030-01-01 12:00:30.000")
    );
    // Issue 10 finding 4: a claimed row does not say it started.
    assert_eq!(
        j.start_summary.as_deref(),
        Some("claimed by runner r1, not started yet")
    );
    assert!(f.store.claim("r2", 8, LEASE).unwrap().is_empty());
    assert!(!f.store.start(id, "r2").unwrap(), "not r2's row");
    assert!(f.store.start(id, "r1").unwrap());
    let j = f.job(id);
    assert_eq!(j.start_summary.as_deref(), Some("started by runner r1"));
    assert_eq!(j.start_time.as_deref(), Some("2030-01-01 12:00:00.000"));

    assert!(f.store.set_progress(id, "r1", 250, Some("half")).unwrap());
    assert_eq!(f.job(id).percent_complete, Some(100));
    assert!(f.store.set_progress(id, "r1", -5, None).unwrap());
    let j = f.job(id);
    assert_eq!(
        (j.percent_complete, j.status_line.as_deref()),
        (Some(0), Some("half"))
    );
    assert!(!f.store.set_progress(id, "r2", 50, None).unwrap());

    f.advance(5);
    let next = f
        .store
        .finish(
            id,
            "r1",
            &Outcome::Complete {
                summary: "x".repeat(300),
            },
            Some(1234),
            Some("log"),
        )
        .unwrap()
        .unwrap();
    let j = f.job(id);
    assert_eq!(j.status, JobStatus::Complete);
    assert_eq!(j.percent_complete, Some(100));
    assert_eq!(j.finish_summary.unwrap().len(), 256);
    assert_eq!(j.complete_time.as_deref(), Some("2030-01-01 12:00:05.000"));
    assert_eq!(
        (j.fuel_used, j.job_log.as_deref()),
        (Some(1234), Some("log"))
    );
    let n = f.job(next);
    assert_eq!(n.status, JobStatus::Queued);
    assert_eq!(n.requeued_from_co_job_id, Some(id));
    assert_eq!(n.max_retry_count, Some(0));
    assert_eq!(n.job_params.as_deref(), Some(r#"{"n":1}"#));
    assert_eq!(n.queue_time.as_deref(), Some("2030-01-01 12:00:05.000"));
    assert_eq!(
        n.start_after_time.as_deref(),
        Some("2030-01-01 13:00:05.000")
    );
    // Not due yet; due an hour later.
    assert!(f.store.claim("r1", 8, LEASE).unwrap().is_empty());
    assert_eq!(
        f.store.next_due().unwrap().as_deref(),
        Some("2030-01-01 13:00:05.000")
    );
    f.advance(3600);
    assert_eq!(f.store.claim("r1", 8, LEASE).unwrap()[0].id, next);
}

#[test]
fn retry_chain_with_max_retry_two_is_three_rows() {
    let mut f = Fixture::new();
    let first = f.queue(NewJob {
        retry_interval: Some(1),
        max_retry: Some(2),
        ..hello()
    });
    let mut ids = vec![first];
    loop {
        let claimed = f.store.claim("r1", 8, LEASE).unwrap();
        if claimed.is_empty() {
            break;
        }
        assert_eq!(claimed.len(), 1);
        match f
            .store
            .finish(claimed[0].id, "r1", &failed(), None, None)
            .unwrap()
        {
            Some(next) => ids.push(next),
            None => break,
        }
        f.advance(1);
    }
    assert_eq!(ids.len(), 3);
    let chain = f.store.retry_chain(ids[1]).unwrap();
    assert_eq!(chain.iter().map(|j| j.id).collect::<Vec<_>>(), ids);
    assert_eq!(
        chain
            .iter()
            .map(|j| j.max_retry_count.unwrap())
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(chain[0].requeued_from_co_job_id, None);
    assert_eq!(chain[1].requeued_from_co_job_id, Some(ids[0]));
    assert_eq!(chain[2].requeued_from_co_job_id, Some(ids[1]));
    assert!(chain.iter().all(|j| j.status == JobStatus::Failed));
    assert_eq!(f.store.job_count().unwrap(), 3);
    assert_eq!(f.store.retry_chain(ids[2]).unwrap().len(), 3);
}

#[test]
fn discard_and_cancel_have_no_successor() {
    let mut f = Fixture::new();
    let policy = NewJob {
        retry_interval: Some(5),
        requeue_interval: Some(5),
        ..hello()
    };
    let a = f.queue(policy.clone());
    let b = f.queue(NewJob {
        job_mode: Some("b".into()),
        ..policy
    });
    f.store.claim("r1", 8, LEASE).unwrap();
    let discard = Outcome::Failed {
        summary: "bad".into(),
        retry: Retry::Never,
    };
    assert_eq!(f.store.finish(a, "r1", &discard, None, None).unwrap(), None);
    let cx = Outcome::Canceled {
        summary: "canceled by ada".into(),
    };
    assert_eq!(f.store.finish(b, "r1", &cx, None, None).unwrap(), None);
    assert_eq!(f.job(b).status, JobStatus::Canceled);
    assert_eq!(f.store.job_count().unwrap(), 2);
}

#[test]
fn finish_by_other_runner_or_after_cancel_writes_nothing() {
    let mut f = Fixture::new();
    let id = f.queue(NewJob {
        retry_interval: Some(1),
        ..hello()
    });
    f.store.claim("r1", 1, LEASE).unwrap();
    let before = f.job(id);
    let err = f
        .store
        .finish(id, "r2", &failed(), Some(1), Some("x"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotOurs {
                status: JobStatus::InProgress,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(f.job(id), before);
    assert!(matches!(
        f.store.release(id, "r2", "x"),
        Err(StoreError::NotOurs { .. })
    ));

    // Queued row canceled, then a late finish: still CX, nothing added.
    let q = f.queue(NewJob {
        retry_interval: Some(1),
        job_mode: Some("q".into()),
        ..hello()
    });
    assert_eq!(f.store.cancel(q, "ada").unwrap(), CancelResult::Canceled);
    let cx = f.job(q);
    assert_eq!(cx.status, JobStatus::Canceled);
    assert_eq!(cx.finish_summary.as_deref(), Some("canceled by ada"));
    assert!(cx.complete_time.is_some());
    let err = f.store.finish(q, "r1", &failed(), None, None).unwrap_err();
    assert!(matches!(
        err,
        StoreError::NotOurs {
            status: JobStatus::Canceled,
            ..
        }
    ));
    assert_eq!(f.job(q), cx);
    assert_eq!(f.store.job_count().unwrap(), 2);
    assert!(matches!(
        f.store.finish(JobId(99), "r1", &failed(), None, None),
        Err(StoreError::NoJob(_))
    ));
}

#[test]
fn cancel_of_running_row_requests_a_stop() {
    let mut f = Fixture::new();
    let id = f.queue(hello());
    f.store.claim("r1", 1, LEASE).unwrap();
    assert!(f.store.start(id, "r1").unwrap());
    assert!(!f.store.cancel_requested(id).unwrap());
    assert_eq!(
        f.store.cancel(id, "ada").unwrap(),
        CancelResult::StopRequested
    );
    assert_eq!(f.job(id).status, JobStatus::InProgress);
    assert!(f.store.cancel_requested(id).unwrap());
    assert_eq!(
        f.store.cancel_requests("r1").unwrap(),
        vec![(id, "ada".to_string())]
    );
    assert!(f.store.cancel_requests("r2").unwrap().is_empty());
    f.store
        .finish(
            id,
            "r1",
            &Outcome::Canceled {
                summary: "canceled by ada".into(),
            },
            None,
            None,
        )
        .unwrap();
    let err = f.store.cancel(id, "bob").unwrap_err();
    assert_eq!(err.to_string(), format!("job {id} already ended (CX)"));
    assert!(matches!(
        f.store.cancel(JobId(42), "x"),
        Err(StoreError::NoJob(JobId(42)))
    ));
}

#[test]
fn rescue_expired_fails_and_retries_and_lost_runner_cannot_finish() {
    let mut f = Fixture::new();
    let id = f.queue(NewJob {
        retry_interval: Some(10),
        ..hello()
    });
    let other = f.queue(NewJob {
        job_mode: Some("o".into()),
        ..hello()
    });
    f.store.claim("r1", 1, LEASE).unwrap();
    f.store.claim("r2", 1, LEASE).unwrap();
    let at = f.store.now();
    let _ = at;
    assert_eq!(f.store.record("r1", &[id], &[]).unwrap().0, vec![true]);
    f.advance(20);
    assert_eq!(f.store.heartbeat("r2", LEASE).unwrap(), vec![other]);
    assert!(f.store.rescue_expired().unwrap().is_empty());
    f.advance(11);
    let rescued = f.store.rescue_expired().unwrap();
    assert_eq!(rescued.len(), 1);
    let (row, Some(next)) = rescued[0] else {
        panic!("no successor: {rescued:?}")
    };
    assert_eq!(row, id);
    let j = f.job(id);
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(
        j.finish_summary.as_deref(),
        Some("runner r1 stopped responding")
    );
    assert_eq!(f.job(next).max_retry_count, Some(1));
    assert_eq!(f.job(other).status, JobStatus::InProgress);
    assert!(matches!(
        f.store.finish(
            id,
            "r1",
            &Outcome::Complete {
                summary: "late".into()
            },
            None,
            None
        ),
        Err(StoreError::NotOurs {
            status: JobStatus::Failed,
            ..
        })
    ));
    assert_eq!(f.job(id), j);
}

#[test]
fn release_puts_row_back() {
    let mut f = Fixture::new();
    let id = f.queue(hello());
    f.store.claim("r1", 1, LEASE).unwrap();
    f.store.set_progress(id, "r1", 40, Some("working")).unwrap();
    f.store
        .release(id, "r1", "returned to queue: runner r1 shut down")
        .unwrap();
    let j = f.job(id);
    assert_eq!(j.status, JobStatus::Queued);
    assert_eq!(
        (
            j.start_time,
            j.runner_id,
            j.lease_expires_at,
            j.percent_complete
        ),
        (None, None, None, None)
    );
    assert_eq!(
        j.start_summary.as_deref(),
        Some("returned to queue: runner r1 shut down")
    );
    assert_eq!(f.store.claim("r2", 1, LEASE).unwrap()[0].id, id);
}

#[test]
fn plain_sql_rows_are_claimable() {
    let mut f = Fixture::new();
    f.sql(
        "INSERT INTO cm_co_jobs (co_id, job_type, job_params, status, queue_time) \
           VALUES (1, 'hello', '{}', 'Q', datetime('now')); \
         INSERT INTO cm_co_jobs (co_id, job_type, job_params, status, queue_time) \
           VALUES (1, 'hello', NULL, 'Q', datetime('now')); \
         INSERT INTO cm_co_jobs (co_id, job_type, status) VALUES (1, 'bare', 'Q');",
    );
    // The fixture's clock is in 2030, after datetime('now').
    let claimed = f.store.claim("r1", 10, LEASE).unwrap();
    assert_eq!(claimed.len(), 3);
    for j in &claimed {
        assert!(j.params().unwrap().is_empty());
        assert_eq!(
            j.policy(),
            crate::job::Policy {
                id: j.id.0,
                ..crate::job::Policy::default()
            }
        );
    }
    let id = claimed[0].id;
    f.store.finish(id, "r1", &failed(), None, None).unwrap();
    assert_eq!(f.job(id).status, JobStatus::Failed);
}

#[test]
fn claim_is_atomic_across_connections() {
    let f = Fixture::new();
    let mut store = Store::open(&f.path).unwrap();
    for i in 0..400 {
        store
            .queue(&NewJob {
                job_mode: Some(format!("m{i}")),
                ..hello()
            })
            .unwrap();
    }
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let path = f.path.clone();
            std::thread::spawn(move || {
                let mut store = Store::open(&path).unwrap();
                let runner = format!("r{t}");
                let mut got = Vec::new();
                loop {
                    let batch = store.claim(&runner, 7, LEASE).unwrap();
                    if batch.is_empty() {
                        break;
                    }
                    got.extend(batch.into_iter().map(|j| j.id));
                }
                got
            })
        })
        .collect();
    let mut all: Vec<JobId> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n, "a row was claimed twice");
    assert_eq!(n, 400);
}

#[test]
fn claim_is_fair_between_cos() {
    let mut f = Fixture::new();
    let co2 = f.store.add_co("research", None).unwrap();
    // 5,000 due jobs of CO 1 queued before one job of CO 2.
    f.sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
         INSERT INTO cm_co_jobs (co_id, job_type, status, queue_time) \
         SELECT 1, 'bulk', 'Q', '2029-01-01 00:00:00' FROM n;",
    );
    let lone = f.queue(NewJob::new(co2, "lone"));
    let first = f.store.claim("r1", 4, LEASE).unwrap();
    assert_eq!(first.len(), 4);
    assert!(
        first.iter().any(|j| j.id == lone),
        "CO 2 starved: {:?}",
        first.iter().map(|j| j.id).collect::<Vec<_>>()
    );
    // With only one CO left, batches are full.
    assert_eq!(f.store.claim("r1", 64, LEASE).unwrap().len(), 64);
}

#[test]
fn not_due_rows_wait() {
    let mut f = Fixture::new();
    let later = f.queue(NewJob {
        start_after: Some(f.store.now() + TimeDelta::seconds(60)),
        ..hello()
    });
    let now = f.queue(NewJob {
        job_mode: Some("n".into()),
        ..hello()
    });
    let claimed = f.store.claim("r1", 10, LEASE).unwrap();
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![now]);
    f.advance(60);
    assert_eq!(f.store.claim("r1", 10, LEASE).unwrap()[0].id, later);
}

/// The claim's plan: every access to `cm_co_jobs` is a seek in the partial
/// claim index (per CO, per (CO, type), per (CO, type, priority) in due
/// order), in a small index of running rows or recent starts (the limits'
/// counts), or by primary key: never a scan of the table or of a full
/// index; the only sorts are over the bounded candidate set.
#[test]
fn claim_query_plan_uses_partial_index() {
    let mut f = Fixture::new();
    // Many rows not due, many ended: the plan must not care.
    f.sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
         INSERT INTO cm_co_jobs (co_id, job_type, status, queue_time, start_after_time) \
         SELECT 1, 'later', CASE WHEN i % 2 = 0 THEN 'Q' ELSE 'OK' END, '2030-01-01 00:00:00', \
                '2031-01-01 00:00:00' FROM n;",
    );
    // A limit of each kind, so the counts are in the plan.
    f.store
        .set_type_limits(
            "later",
            &crate::throttle::TypeLimits {
                concurrency: Some(2),
                rate: "10/min".parse().ok(),
            },
        )
        .unwrap();
    f.store.set_co_max_running(1, Some(5)).unwrap();
    let conn = rusqlite::Connection::open(&f.path).unwrap();
    let sql = format!("EXPLAIN QUERY PLAN {}", runner::claim_sql(16));
    let mut stmt = conn.prepare(&sql).unwrap();
    let now = "2030-01-01 12:00:00.000";
    let rows: Vec<(i64, i64, String)> = stmt
        .query_map(
            rusqlite::params![now, "r", "x", "s", 2, None::<String>, now],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(3)?)),
        )
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    // The plan as an indented tree, for failure messages.
    let depth = |mut id: i64| {
        let mut d = 0;
        while let Some((_, p, _)) = rows.iter().find(|(i, _, _)| *i == id) {
            id = *p;
            d += 1;
        }
        d
    };
    let plan = rows
        .iter()
        .map(|(i, _, d)| format!("{}{d}", "  ".repeat(depth(*i))))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("{plan}");
    let table_lines: Vec<&str> = rows
        .iter()
        .map(|(_, _, d)| d.as_str())
        .filter(|d| d.contains("cm_co_jobs"))
        .collect();
    assert!(!table_lines.is_empty(), "{plan}");
    // The only full scans are of the small CTEs and the limits tables
    // (a row per limited type or CO), never of the jobs table.
    for (_, _, d) in &rows {
        if let Some(what) = d.strip_prefix("SCAN ") {
            assert!(
                [
                    "cos", "types", "prio", "cand", "by_co", "ranked", "tl", "cl", "t", "c"
                ]
                .iter()
                .any(|cte| what == *cte || what.starts_with(&format!("{cte} ")))
                    || what.contains("CONSTANT ROW")
                    || what.starts_with("(subquery")
                    || what.starts_with("cojobs_type_limits")
                    || what.starts_with("cojobs_co_limits"),
                "scan `{d}` in:\n{plan}"
            );
        }
    }
    for line in &table_lines {
        assert!(
            [
                "INDEX cm_co_jobs_claim",
                "USING INTEGER PRIMARY KEY",
                "INDEX cm_co_jobs_running (runner_id=?)",
                "INDEX cm_co_jobs_running_type (job_type=?)",
                "INDEX cm_co_jobs_running_co (co_id=?)",
                "INDEX cm_co_jobs_started (job_type=? AND start_time>?)",
            ]
            .iter()
            .any(|ok| line.contains(ok)),
            "line `{line}` of the claim plan seeks none of the expected indexes:\n{plan}"
        );
        assert!(
            !line.starts_with("SCAN cm_co_jobs"),
            "full scan in:\n{plan}"
        );
    }
    let seek = "cm_co_jobs_claim (co_id=? AND job_type=? AND priority=? AND <expr><?)";
    assert!(plan.contains(seek), "{plan}");
    // The per-(CO, type, priority) candidate subquery reads the index in
    // order: no sort of its own. Find its node and check no sibling under
    // the same parent is a temp b-tree.
    let (id, parent, _) = rows.iter().find(|(_, _, d)| d.contains(seek)).unwrap();
    let siblings: Vec<&str> = rows
        .iter()
        .filter(|(i, p, _)| p == parent && i != id)
        .map(|(_, _, d)| d.as_str())
        .collect();
    assert!(
        siblings.iter().all(|d| !d.contains("TEMP B-TREE")),
        "{plan}"
    );
}

#[test]
fn history_records_and_prune() {
    let mut f = Fixture::new();
    let old = f.queue(hello());
    let live = f.queue(NewJob {
        job_mode: Some("l".into()),
        ..hello()
    });
    let rec = NewHistoryRecord {
        co_job_id: old,
        record_key: Some("k".repeat(300)),
        co_person_id: Some(7),
        org_identity_id: None,
        comment: "c".repeat(300),
        status: RecordStatus::Notice,
    };
    f.store.add_history(&rec).unwrap();
    let h = f.store.history(old).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].record_key.as_ref().unwrap().len(), 256);
    assert_eq!(h[0].comment.as_ref().unwrap().len(), 256);
    assert_eq!(
        (h[0].status.as_deref(), h[0].co_person_id),
        (Some("NT"), Some(7))
    );
    assert!(matches!(
        f.store.add_history(&NewHistoryRecord {
            co_job_id: JobId(99),
            ..rec.clone()
        }),
        Err(StoreError::NoJob(_))
    ));

    f.store.cancel(old, "ada").unwrap();
    f.advance(86_400 * 31);
    let cutoff = f.store.now() - TimeDelta::days(30);
    assert_eq!(f.store.prune(cutoff).unwrap(), 1);
    assert!(f.store.get(old).unwrap().is_none());
    assert!(f.store.history(old).unwrap().is_empty());
    assert!(f.store.get(live).unwrap().is_some());
    assert_eq!(f.store.prune(cutoff).unwrap(), 0);
}

#[test]
fn prune_keeps_successor_of_pruned_row() {
    let mut f = Fixture::new();
    let id = f.queue(NewJob {
        retry_interval: Some(1),
        ..hello()
    });
    f.store.claim("r1", 1, LEASE).unwrap();
    let next = f
        .store
        .finish(id, "r1", &failed(), None, None)
        .unwrap()
        .unwrap();
    f.advance(100);
    assert_eq!(f.store.prune(f.store.now()).unwrap(), 1);
    assert_eq!(f.job(next).requeued_from_co_job_id, None);
    assert_eq!(f.store.retry_chain(next).unwrap().len(), 1);
}

#[test]
fn list_filters_and_counts() {
    let mut f = Fixture::new();
    let co2 = f.store.add_co("research", Some("lab")).unwrap();
    assert!(matches!(
        f.store.add_co("research", None),
        Err(StoreError::CoExists(_))
    ));
    assert!(matches!(
        f.store.add_co("  ", None),
        Err(StoreError::EmptyCoName)
    ));
    f.queue(hello());
    f.queue(NewJob::new(co2, "other"));
    let c = f.queue(NewJob {
        job_mode: Some("c".into()),
        ..hello()
    });
    f.store.cancel(c, "x").unwrap();
    let all = f.store.list(&ListFilter::default()).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all[0].id > all[1].id);
    let q = ListFilter {
        status: Some(JobStatus::Queued),
        ..ListFilter::default()
    };
    assert_eq!(f.store.list(&q).unwrap().len(), 2);
    let t = ListFilter {
        job_type: Some("hello".into()),
        ..ListFilter::default()
    };
    assert_eq!(f.store.list(&t).unwrap().len(), 2);
    let co = ListFilter {
        co_id: Some(co2),
        ..ListFilter::default()
    };
    assert_eq!(f.store.list(&co).unwrap().len(), 1);
    let lim = ListFilter {
        limit: Some(1),
        ..ListFilter::default()
    };
    assert_eq!(f.store.list(&lim).unwrap().len(), 1);
    let counts = f.store.counts_by_status().unwrap();
    assert_eq!(counts.len(), 5);
    assert!(counts.contains(&(JobStatus::Queued, 2)));
    assert!(counts.contains(&(JobStatus::Canceled, 1)));
    assert!(counts.contains(&(JobStatus::Complete, 0)));
}

/// Not a pass/fail test (no test may depend on timing): prints the cost of
/// claim + finish at growing table sizes, with most rows ended or due
/// tomorrow. Run with `cargo test --lib claim_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn claim_cost_at_scale() {
    let mut f = Fixture::new();
    let co2 = f.store.add_co("other", None).unwrap();
    let mut total = 0;
    for size in [10_000, 100_000, 1_000_000] {
        let add = size - total;
        f.sql(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {add}) \
             INSERT INTO cm_co_jobs (co_id, job_type, status, queue_time, start_after_time) \
             SELECT 1 + (i % 2), 'bulk', CASE i % 3 WHEN 0 THEN 'OK' WHEN 1 THEN 'Q' ELSE 'X' END, \
                    '2029-01-01 00:00:00', CASE WHEN i % 6 = 1 THEN '2031-01-01 00:00:00' END \
             FROM n;"
        ));
        total = size;
        let start = std::time::Instant::now();
        let mut jobs = 0;
        for _ in 0..50 {
            let batch = f.store.claim("r1", 64, LEASE).unwrap();
            for j in &batch {
                f.store
                    .finish(
                        j.id,
                        "r1",
                        &Outcome::Complete {
                            summary: "ok".into(),
                        },
                        None,
                        None,
                    )
                    .unwrap();
            }
            jobs += batch.len();
        }
        let per_job = start.elapsed() / jobs.max(1) as u32;
        eprintln!(
            "{size:>9} rows: {jobs} jobs claimed+finished, {per_job:?} per job (COs 1 and {co2})"
        );
    }
}

/// A claim of up to 10 rows for `runner` with a per-CO cap and a due limit.
fn capped(
    runner: &str,
    per_co: Option<usize>,
    due_by: Option<chrono::DateTime<chrono::Utc>>,
) -> crate::store::driver::Claim {
    crate::store::driver::Claim {
        per_co,
        due_by,
        ..crate::store::driver::Claim::new(runner, 10, LEASE)
    }
}

#[test]
fn claim_capped_per_co() {
    let mut f = Fixture::new();
    let co2 = f.store.add_co("research", None).unwrap();
    let ones: Vec<JobId> = (0..5)
        .map(|i| {
            f.queue(NewJob {
                job_mode: Some(format!("m{i}")),
                ..hello()
            })
        })
        .collect();
    let two = f.queue(NewJob::new(co2, "hello"));
    let got = f.store.claim_capped(&capped("r1", Some(2), None)).unwrap();
    let mut ids: Vec<JobId> = got.iter().map(|j| j.id).collect();
    ids.sort();
    assert_eq!(ids, vec![ones[0], ones[1], two]);
    // CO 1 is at its cap for r1, not for r2.
    assert!(
        f.store
            .claim_capped(&capped("r1", Some(2), None))
            .unwrap()
            .is_empty()
    );
    f.store
        .finish(
            ones[0],
            "r1",
            &Outcome::Complete {
                summary: "ok".into(),
            },
            None,
            None,
        )
        .unwrap();
    let got = f.store.claim_capped(&capped("r1", Some(2), None)).unwrap();
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![ones[2]]);
    assert_eq!(
        f.store
            .claim_capped(&capped("r2", Some(1), None))
            .unwrap()
            .len(),
        1
    );
    assert!(
        f.store
            .claim_capped(&capped("r3", Some(0), None))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn rescue_puts_claimed_but_never_started_rows_back_without_a_retry() {
    let mut f = Fixture::new();
    let id = f.queue(NewJob {
        retry_interval: Some(10),
        max_retry: Some(1),
        ..hello()
    });
    f.store.claim("r1", 1, LEASE).unwrap();
    f.advance(31);
    let rescued = f.store.rescue_expired().unwrap();
    assert_eq!(rescued, vec![(id, Some(id))]);
    let j = f.job(id);
    assert_eq!(j.status, JobStatus::Queued);
    assert_eq!(
        (j.runner_id, j.start_time, j.max_retry_count),
        (None, None, Some(0))
    );
    assert!(
        j.start_summary
            .as_deref()
            .is_some_and(|s| s.contains("before the job started"))
    );
    assert_eq!(f.store.job_count().unwrap(), 1, "no retry row");
    // It is claimable again, by anyone.
    assert_eq!(f.store.claim("r2", 1, LEASE).unwrap().len(), 1);
}

/// The `EXPLAIN QUERY PLAN` detail lines of `sql` with `values`.
fn plan_of(f: &Fixture, sql: &str, values: &[rusqlite::types::Value]) -> Vec<String> {
    let conn = rusqlite::Connection::open(&f.path).unwrap();
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    stmt.query_map(rusqlite::params_from_iter(values), |r| {
        r.get::<_, String>(3)
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

/// Issue 10, finding 9: `list` by status, type or CO seeks an index in id
/// order; no filter combination scans the table or sorts it.
#[test]
fn list_plans_use_an_index_per_filter() {
    let f = Fixture::new();
    let cases = [
        (
            Some(JobStatus::Failed),
            None,
            None,
            "cm_co_jobs_status (status=?)",
        ),
        (
            None,
            Some("hello".to_string()),
            None,
            "cm_co_jobs_type (job_type=?)",
        ),
        (None, None, Some(1), "cm_co_jobs_co (co_id=?)"),
    ];
    for (status, job_type, co_id, index) in cases {
        let filter = ListFilter {
            status,
            job_type,
            co_id,
            schedule: None,
            limit: Some(100),
        };
        let (sql, values) = jobs::list_sql(&filter, None);
        let plan = plan_of(&f, &sql, &values).join("\n");
        assert!(plan.contains(index), "{filter:?}:\n{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{filter:?} sorts:\n{plan}");
    }
}

/// Issue 10, finding 9: the counts `watch` refreshes read ranges of the
/// status index (and the table's row count), never every row.
#[test]
fn counts_plan_reads_status_ranges() {
    let f = Fixture::new();
    let sql = "SELECT (SELECT count(*) FROM cm_co_jobs), \
               (SELECT count(*) FROM cm_co_jobs WHERE status = 'Q')";
    let plan = plan_of(&f, sql, &[]).join("\n");
    assert!(plan.contains("cm_co_jobs_status (status=?)"), "{plan}");
    // The statement the store runs has the same shape.
    let counts = f.store.counts_by_status().unwrap();
    assert_eq!(counts.len(), JobStatus::ALL.len());
}

/// Issue 10, finding 9: walking a retry chain seeks by primary key and by
/// `cm_co_jobs_requeued_from`; it never scans the table.
#[test]
fn chain_plan_seeks() {
    let f = Fixture::new();
    // ?1 the job, ?2 the window.
    let plan = plan_of(
        &f,
        jobs::CHAIN_MEMBERS_SQL,
        &[
            rusqlite::types::Value::Integer(1),
            rusqlite::types::Value::Integer(1000),
        ],
    );
    for line in &plan {
        assert!(
            !line.starts_with("SCAN cm_co_jobs") && !line.starts_with("SCAN j"),
            "{plan:#?}"
        );
    }
    assert!(
        plan.iter().any(|l| l.contains("cm_co_jobs_requeued_from")),
        "{plan:#?}"
    );
}

/// Issue 10, finding 9: a page of a chain has the whole chain's counts and
/// only the rows around the job.
#[test]
fn chain_page_counts_all_and_returns_a_neighbourhood() {
    let mut f = Fixture::new();
    let first = f.queue(hello());
    f.sql(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 99) \
         INSERT INTO cm_co_jobs (id, co_id, job_type, status, requeued_from_co_job_id) \
         SELECT {first} + i, 1, 'hello', 'OK', {first} + i - 1 FROM n;"
    ));
    let page = f.store.chain_page(JobId(first.0 + 50), 3).unwrap();
    assert_eq!(page.total, 100);
    assert_eq!(page.position, 50);
    assert_eq!(page.first, 47);
    assert_eq!(page.rows.len(), 7);
    assert!(page.counts.contains(&(JobStatus::Complete, 99)));
    assert!(page.counts.contains(&(JobStatus::Queued, 1)));
}

/// Issue 10, finding 7: times past year 9999 are written as its last
/// second, so they sort after every other time as text.
#[test]
fn far_times_are_clamped() {
    let far = Utc.with_ymd_and_hms(12000, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(format_time(far), "9999-12-31 23:59:59.000");
    assert!(format_time(far).as_str() > "2026-01-01 00:00:00.000");
}

/// Issue 10 finding 6: a row whose cancel was requested never goes back to
/// `Q` at shutdown: the release ends it `CX` in the same statement.
#[test]
fn release_of_a_row_with_a_cancel_request_ends_it_cx() {
    let mut f = Fixture::new();
    let id = f.queue(NewJob {
        retry_interval: Some(10),
        ..hello()
    });
    f.store.claim("r1", 1, LEASE).unwrap();
    assert!(f.store.start(id, "r1").unwrap());
    assert_eq!(
        f.store.cancel(id, "ada").unwrap(),
        CancelResult::StopRequested
    );
    assert_eq!(
        f.store.release(id, "r1", "returned to the queue").unwrap(),
        JobStatus::Canceled
    );
    let j = f.job(id);
    assert_eq!(j.status, JobStatus::Canceled);
    assert_eq!(j.finish_summary.as_deref(), Some("canceled by ada"));
    assert!(j.complete_time.is_some());
    assert_eq!(j.lease_expires_at, None);
    assert_eq!(f.store.job_count().unwrap(), 1, "no successor");
}

/// Issue 10 finding 4: a cancel of a claimed row that has not started ends
/// it `CX` at once, and its runner's start is then refused (it never runs).
#[test]
fn cancel_of_a_claimed_row_not_started_ends_it_at_once() {
    let mut f = Fixture::new();
    let id = f.queue(hello());
    f.store.claim("r1", 1, LEASE).unwrap();
    assert_eq!(f.store.cancel(id, "ada").unwrap(), CancelResult::Canceled);
    let j = f.job(id);
    assert_eq!(j.status, JobStatus::Canceled);
    assert_eq!(j.finish_summary.as_deref(), Some("canceled by ada"));
    assert!(!f.store.start(id, "r1").unwrap());
    assert!(f.store.heartbeat("r1", LEASE).unwrap().is_empty());
}

/// Issue 10 finding 3: `run --once` claims only what was due when it
/// started, and its follow-ups one by one.
#[test]
fn claim_due_by_and_claim_one() {
    let mut f = Fixture::new();
    let early = f.queue(hello());
    let start = f.store.now();
    f.advance(5);
    let late = f.queue(hello());
    let got = f
        .store
        .claim_capped(&capped("r1", None, Some(start)))
        .unwrap();
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![early]);
    assert!(
        f.store
            .claim_one(&capped("r1", None, None), early)
            .unwrap()
            .is_none()
    );
    let one = f.store.claim_one(&capped("r1", None, None), late).unwrap();
    assert_eq!(one.map(|j| j.id), Some(late));
}

/// Issue 10, finding 9: a chain longer than the window is counted within
/// it, and says that it goes on.
#[test]
fn chain_page_of_a_long_chain_stops_at_the_window() {
    let mut f = Fixture::new();
    let first = f.queue(hello());
    f.sql(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2999) \
         INSERT INTO cm_co_jobs (id, co_id, job_type, status, requeued_from_co_job_id) \
         SELECT {first} + i, 1, 'hello', 'OK', {first} + i - 1 FROM n;"
    ));
    let page = f.store.chain_page(JobId(first.0 + 1500), 10).unwrap();
    assert!(page.older_beyond && page.newer_beyond);
    assert_eq!(page.rows.len(), 21);
    assert!(page.total <= 2 * CHAIN_WINDOW + 3, "{}", page.total);
    let end = f.store.chain_page(JobId(first.0 + 2999), 10).unwrap();
    assert!(end.older_beyond && !end.newer_beyond);
    assert_eq!(end.rows.len(), 11);
}
