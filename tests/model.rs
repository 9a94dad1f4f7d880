//! Bad input and the state machine, property-based:
//!
//! - random sequences of queue, claim, finish (ok / retryable failure /
//!   discard / cancel), cancel, lease expiry (the store's clock moved on)
//!   and rescue against a real store, checking the invariants of
//!   `docs/design.md#the-state-machine` against a small model after every step;
//! - random `queue` input through the library and through the binary:
//!   exactly one new row, or a clear input error and no row; never a panic.

mod util;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use cojobs::job::{self, JobStatus, Outcome, Retry};
use cojobs::store::{Job, NewJob, Store, StoreError};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Queue {
        retry: Option<i64>,
        max_retry: Option<i64>,
        requeue: Option<i64>,
    },
    Claim {
        runner: usize,
        n: usize,
    },
    /// Finish the `pick`-th GO row (by id) as its runner: 0 ok, 1 retryable
    /// failure, 2 discard, 3 canceled.
    Finish {
        pick: usize,
        how: u8,
    },
    /// A finish by the wrong runner: must change nothing.
    StaleFinish {
        pick: usize,
    },
    Cancel {
        pick: usize,
    },
    Advance {
        secs: i64,
    },
    Rescue,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (
            prop::option::of(0i64..3),
            prop::option::of(0i64..3),
            prop::option::of(0i64..3)
        )
            .prop_map(|(retry, max_retry, requeue)| Op::Queue { retry, max_retry, requeue }),
        3 => (0usize..2, 1usize..4).prop_map(|(runner, n)| Op::Claim { runner, n }),
        3 => (0usize..8, 0u8..4).prop_map(|(pick, how)| Op::Finish { pick, how }),
        1 => (0usize..8).prop_map(|pick| Op::StaleFinish { pick }),
        1 => (0usize..16).prop_map(|pick| Op::Cancel { pick }),
        2 => (0i64..25).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Rescue),
    ]
}

const RUNNERS: [&str; 2] = ["r1", "r2"];
const LEASE: Duration = Duration::from_secs(10);

/// What the model expects of the table.
#[derive(Default)]
struct Model {
    /// Ended rows as first seen: (status, complete_time, finish_summary).
    ended: HashMap<i64, (String, Option<String>, Option<String>)>,
    /// Rows ended with a non-retryable failure (discard).
    discarded: Vec<i64>,
    /// Rows queued by the test (the rest are successors).
    queued: usize,
}

fn all_rows(store: &Store) -> Vec<Job> {
    let mut rows = store
        .list(&cojobs::store::ListFilter::default())
        .expect("list");
    rows.sort_by_key(|j| j.id.0);
    rows
}

/// Check the invariants of `docs/design.md#the-state-machine` after a step.
fn check(store: &Store, model: &mut Model) {
    let rows = all_rows(store);
    let by_id: HashMap<i64, &Job> = rows.iter().map(|j| (j.id.0, j)).collect();
    let mut successors: HashMap<i64, Vec<i64>> = HashMap::new();
    for j in &rows {
        if let Some(p) = j.requeued_from_co_job_id {
            successors.entry(p.0).or_default().push(j.id.0);
        }
    }
    for j in &rows {
        let status = j.status.code().to_string();
        match status.as_str() {
            // No row GO without a runner and a lease.
            "GO" => assert!(
                j.runner_id.is_some() && j.lease_expires_at.is_some(),
                "GO without a runner: {j:?}"
            ),
            "Q" => {}
            _ => {
                assert!(
                    j.complete_time.is_some(),
                    "ended without complete_time: {j:?}"
                );
                let now = (
                    status.clone(),
                    j.complete_time.clone(),
                    j.finish_summary.clone(),
                );
                // Terminal rows never change.
                let first = model.ended.entry(j.id.0).or_insert_with(|| now.clone());
                assert_eq!(*first, now, "terminal row {} changed", j.id.0);
            }
        }
        // A successor exists iff the policy says so, and there is one at most.
        let kids = successors.get(&j.id.0).map_or(0, Vec::len);
        let expected = match status.as_str() {
            "X" if model.discarded.contains(&j.id.0) => None,
            "X" => job::successor(
                &j.policy(),
                &Outcome::Failed {
                    summary: String::new(),
                    retry: Retry::Policy,
                },
            ),
            "OK" => job::successor(
                &j.policy(),
                &Outcome::Complete {
                    summary: String::new(),
                },
            ),
            _ => None,
        };
        assert_eq!(kids, usize::from(expected.is_some()), "successors of {j:?}");
        if let Some(p) = j.requeued_from_co_job_id {
            let parent = by_id[&p.0];
            let want = if parent.status.code() == "X" {
                parent.max_retry_count.unwrap_or(0) + 1
            } else {
                0
            };
            assert_eq!(j.max_retry_count.unwrap_or(0), want, "count of {j:?}");
            assert_eq!(j.job_type, parent.job_type);
        }
    }
    // Counts add up.
    let succ: usize = successors.values().map(Vec::len).sum();
    assert_eq!(rows.len(), model.queued + succ);
}

fn nth_with_status(store: &Store, status: &str, pick: usize) -> Option<Job> {
    let rows: Vec<Job> = all_rows(store)
        .into_iter()
        .filter(|j| j.status.code() == status)
        .collect();
    if rows.is_empty() {
        None
    } else {
        Some(rows[pick % rows.len()].clone())
    }
}

fn step(store: &mut Store, clock: &AtomicI64, model: &mut Model, op: &Op) {
    match op {
        Op::Queue {
            retry,
            max_retry,
            requeue,
        } => {
            let mut j = NewJob::new(1, "noop");
            j.retry_interval = *retry;
            j.max_retry = *max_retry;
            j.requeue_interval = *requeue;
            store.queue(&j).expect("queue");
            model.queued += 1;
        }
        Op::Claim { runner, n } => {
            for j in store.claim(RUNNERS[*runner], *n, LEASE).expect("claim") {
                assert_eq!(j.status.code(), "GO");
            }
        }
        Op::Finish { pick, how } => {
            let Some(j) = nth_with_status(store, "GO", *pick) else {
                return;
            };
            let runner = j.runner_id.clone().expect("runner");
            let summary = "s".to_string();
            let outcome = match how {
                0 => Outcome::Complete { summary },
                1 => Outcome::Failed {
                    summary,
                    retry: Retry::Policy,
                },
                2 => Outcome::Failed {
                    summary,
                    retry: Retry::Never,
                },
                _ => Outcome::Canceled { summary },
            };
            store
                .finish(j.id, &runner, &outcome, None, None)
                .expect("finish of our own GO row");
            if *how == 2 {
                model.discarded.push(j.id.0);
            }
        }
        Op::StaleFinish { pick } => {
            let Some(j) = nth_with_status(store, "GO", *pick) else {
                return;
            };
            let other = if j.runner_id.as_deref() == Some("r1") {
                "r2"
            } else {
                "r1"
            };
            let outcome = Outcome::Complete {
                summary: "late".into(),
            };
            let r = store.finish(j.id, other, &outcome, None, None);
            assert!(matches!(r, Err(StoreError::NotOurs { .. })), "{r:?}");
        }
        Op::Cancel { pick } => {
            let rows = all_rows(store);
            if rows.is_empty() {
                return;
            }
            let j = &rows[pick % rows.len()];
            let r = store.cancel(j.id, "tester");
            if j.status.is_terminal() {
                assert!(r.is_err(), "cancel of an ended row: {r:?}");
            } else {
                r.expect("cancel of a live row");
            }
        }
        Op::Advance { secs } => {
            clock.fetch_add(*secs, Ordering::SeqCst);
        }
        Op::Rescue => {
            let now = store.now();
            for (id, successor) in store.rescue_expired().expect("rescue") {
                let j = store.require(id).expect("row");
                // A row that was claimed but never started goes back to Q
                // (its own "successor"); a started one ends.
                if successor == Some(id) {
                    assert_eq!(j.status, JobStatus::Queued);
                    assert_eq!(j.start_time, None);
                } else {
                    assert!(j.status.is_terminal());
                }
                let _ = now;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random runs of the state machine keep the invariants of
    /// `docs/design.md#the-state-machine`.
    #[test]
    fn state_machine_keeps_its_invariants(ops in prop::collection::vec(op(), 1..50)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path().join("m.db")).expect("open");
        let offset = Arc::new(AtomicI64::new(0));
        let base = Utc::now();
        let o = Arc::clone(&offset);
        store.set_clock(Arc::new(move || base + TimeDelta::seconds(o.load(Ordering::SeqCst))));
        let mut model = Model::default();
        for op in &ops {
            step(&mut store, &offset, &mut model, op);
            check(&store, &mut model);
        }
    }

    /// Any queue input through the library: one new row, or an input error
    /// and no row.
    #[test]
    fn library_queue_is_all_or_nothing(
        job_type in prop_oneof!["[A-Za-z0-9][A-Za-z0-9_.-]{0,70}", ".{0,20}", Just("../etc/passwd".to_string())],
        mode in prop::option::of(".{0,20}"),
        params in prop::option::of(prop_oneof![
            Just("{}".to_string()), Just("[]".to_string()), Just("null".to_string()),
            "\\{\"[a-z]{1,5}\":[0-9]{1,30}\\}", ".{0,40}",
        ]),
        retry in prop::option::of(-5i64..5),
        max_retry in prop::option::of(-5i64..5),
        summary in prop::option::of(".{0,400}"),
        co in prop_oneof![Just(1i64), -3i64..5],
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path().join("q.db")).expect("open");
        let mut j = NewJob::new(co, job_type);
        j.job_mode = mode;
        j.job_params = params;
        j.retry_interval = retry;
        j.max_retry = max_retry;
        j.register_summary = summary;
        let before = store.job_count().expect("count");
        match store.queue(&j) {
            Ok(id) => {
                prop_assert_eq!(store.job_count().expect("count"), before + 1);
                let row = store.require(id).expect("row");
                prop_assert!(row.register_summary.map_or(0, |s| s.chars().count()) <= 256);
            }
            Err(e) => {
                prop_assert!(e.is_input(), "not an input error: {e}");
                prop_assert_eq!(store.job_count().expect("count"), before);
            }
        }
    }
}

/// Random `cojobs queue` command lines against the `hello` plugin (one
/// optional text parameter, `name`): exit 0 and one new row, or exit 2,
/// a message, and no new row. Never a panic (exit 101).
#[test]
fn binary_queue_is_all_or_nothing() {
    let plugins = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
    assert!(
        plugins.join("hello.wasm").is_file(),
        "run scripts/build-plugins.sh"
    );
    let env = util::Env::new();
    let plugins = plugins.to_str().expect("utf-8").to_string();
    let strategy = (
        prop_oneof![
            Just("{}".to_string()),
            "\\{\"(name|[a-z]{1,6})\":(\"[a-z]{0,5}\"|[0-9]{1,25}|true|null|\\[\\])\\}",
            "[^\\x00]{0,30}",
        ],
        prop::option::of(prop_oneof!["-?[0-9]{1,22}", "[^\\x00]{0,6}"]),
        prop::option::of("[^\\x00]{0,20}"),
        prop::sample::select(vec![
            "--retry-interval",
            "--max-retry",
            "--co",
            "--fuel",
            "--timeout",
            "--delay",
        ]),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let (ok, refused) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    runner
        .run(&strategy, |(params, number, mode, flag)| {
            let before = if env.db.exists() { env.job_count() } else { 0 };
            let mut args = vec!["--plugins", &plugins, "queue", "hello", "--params", &params];
            if let Some(n) = &number {
                args.push(flag);
                args.push(n);
            }
            if let Some(m) = &mode {
                args.push("--mode");
                args.push(m);
            }
            let run = env.run(&args);
            let after = if env.db.exists() { env.job_count() } else { 0 };
            match run.code {
                0 => {
                    prop_assert_eq!(after, before + 1, "{:?}", run);
                    ok.set(ok.get() + 1);
                }
                2 => {
                    prop_assert!(!run.stderr.trim().is_empty(), "{:?}", run);
                    prop_assert_eq!(after, before, "{:?}", run);
                    refused.set(refused.get() + 1);
                }
                _ => prop_assert!(false, "exit {}: {:?}", run.code, run),
            }
            Ok(())
        })
        .expect("queue property");
    eprintln!(
        "binary queue: {} accepted, {} refused",
        ok.get(),
        refused.get()
    );
}
