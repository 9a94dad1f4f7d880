//! The store conformance suite: one body per behaviour, run against every
//! driver (River's `riverdrivertest`). A driver's test file supplies a
//! [`Harness`] (a fresh database, a second store on it, raw SQL) and
//! instantiates every body with [`conformance_tests!`].
//!
//! The bodies use only the [`JobStore`] interface, plus plain SQL that
//! both SQLite and PostgreSQL accept (for rows COmanage would insert).
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cojobs::job::{JobStatus, Outcome, RecordStatus, Retry};
use cojobs::schedule::CatchUp;
use cojobs::store::driver::{Claim, ErrorKind, JobStore, Progress, Released, Rescued, Wake};
use cojobs::store::{
    Activity, CancelResult, Finish, JobId, JobQuery, ListFilter, NewChild, NewHistoryRecord,
    NewJob, NewSchedule, NewToken, PluginRun, Queued, Role, RunnerRecord,
};
use cojobs::throttle::{PauseTarget, Rate, TypeLimits};

/// What a driver gives the suite.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The store under test, on a fresh, migrated database.
    fn store(&self) -> Arc<dyn JobStore>;
    /// Another store on the same database, as another runner process would
    /// open it (its own connections).
    async fn another(&self) -> Arc<dyn JobStore>;
    /// Run plain SQL statements on the database, as COmanage would.
    async fn sql(&self, sql: &str);
}

/// Instantiate every body for a driver: `conformance_tests!(make)` where
/// `make()` is an async fn returning a `Harness`.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@each $make,
            transitions_only_from_the_expected_state,
            bad_input_writes_nothing,
            claim_is_atomic_across_eight_claimers,
            co_round_robin,
            per_co_cap,
            chains_retry_and_requeue,
            chain_page_walks_a_window,
            rescue_only_expired_leases,
            release_returns_or_cancels,
            cancel_of_a_claimed_row_not_started_ends_it,
            progress_heartbeat_and_cancel_requests,
            plain_sql_rows_run,
            list_cursor_counts_prune_history,
            unique_queue,
            wait_hears_new_jobs,
            next_due_counts_from_the_database_clock,
            claim_due_by_and_claim_one,
            concurrent_starts_and_finishes_each_get_their_answer,
            a_starting_claim_writes_the_start_and_keeps_due_by,
            // `cojobs serve` (issue 12)
            search_filters_times_text_and_cursor,
            count_groups_by_co_type_status,
            retry_now_links_and_records_who,
            tokens_add_list_revoke,
            // schedules (issue 14)
            schedules_add_list_pause_remove_and_refuse_bad_input,
            schedule_ticks_are_queued_once_by_racing_passes,
            schedule_catch_up_policies,
            exponential_backoff_chain_stays_within_bounds,
            // contract 0.2 (issue 13)
            an_ok_end_commits_result_children_and_component,
            a_failed_or_lost_end_queues_no_children_and_stores_no_result,
            retry_after_sets_the_retry_delay_within_the_policy,
            plugin_text_with_nul_is_stored,
            // priorities, limits and pause (issue 14)
            priority_order_over_two_cos_and_three_priorities,
            type_concurrency_and_rate_hold_across_stores,
            type_concurrency_holds_under_racing_claimers,
            co_max_running_holds_across_stores,
            pause_and_resume_types_and_cos,
            limits_refuse_bad_input,
            // runners and activity (issue 12)
            runners_recorded_listed_and_removed,
            activity_counts_recent_ends_and_latencies,
        );
    };
    (@each $make:path, $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let h = $make().await;
                $crate::conformance::$name(&h).await;
            }
        )*
    };
}

const LONG: Duration = Duration::from_secs(3600);

fn claim(runner: &str, max: usize) -> Claim {
    Claim::new(runner, max, LONG)
}

fn ok(summary: &str) -> Outcome {
    Outcome::Complete {
        summary: summary.to_string(),
    }
}

fn failed(summary: &str) -> Outcome {
    Outcome::Failed {
        summary: summary.to_string(),
        retry: Retry::Policy,
    }
}

fn finish(id: JobId, outcome: Outcome) -> Finish {
    Finish {
        fuel_used: Some(7),
        ..Finish::new(id, outcome)
    }
}

async fn one_finish(
    s: &dyn JobStore,
    runner: &str,
    item: Finish,
) -> Result<Option<cojobs::store::driver::Successor>, cojobs::store::driver::Error> {
    let mut results = s.finish(runner, &[item]).await.expect("finish transaction");
    assert_eq!(results.len(), 1);
    results.remove(0)
}

async fn status(s: &dyn JobStore, id: JobId) -> JobStatus {
    s.get(id).await.expect("get").expect("row exists").status
}

pub async fn transitions_only_from_the_expected_state(h: &impl Harness) {
    let s = h.store();
    let id = s.queue(&NewJob::new(1, "hello")).await.expect("queue");
    assert_eq!(status(&*s, id).await, JobStatus::Queued);
    // Finishing a row never claimed: a conflict, nothing written.
    let e = one_finish(&*s, "r1", finish(id, ok("done")))
        .await
        .expect_err("not claimed");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(status(&*s, id).await, JobStatus::Queued);

    let got = s.claim(&claim("r1", 10)).await.expect("claim");
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(got[0].status, JobStatus::InProgress);
    assert_eq!(got[0].runner_id.as_deref(), Some("r1"));
    assert!(got[0].start_time.is_none(), "claimed, not started");
    // Another runner's finish and release are refused.
    let e = one_finish(&*s, "r2", finish(id, ok("stolen")))
        .await
        .expect_err("not r2's");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let e = s.release("r2", id, "x").await.expect_err("not r2's");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    // A second claim finds nothing.
    assert!(s.claim(&claim("r2", 10)).await.expect("claim").is_empty());

    let started = s
        .start("r1", &[(id, chrono::Utc::now())])
        .await
        .expect("start");
    assert_eq!(started, vec![id]);
    assert!(
        s.get(id)
            .await
            .expect("get")
            .expect("row")
            .start_time
            .is_some()
    );
    assert_eq!(
        one_finish(&*s, "r1", finish(id, ok("done")))
            .await
            .expect("finish"),
        None
    );
    let row = s.get(id).await.expect("get").expect("row");
    assert_eq!(row.status, JobStatus::Complete);
    assert_eq!(row.finish_summary.as_deref(), Some("done"));
    assert_eq!(row.percent_complete, Some(100));
    assert_eq!(row.fuel_used, Some(7));
    assert!(row.complete_time.is_some());
    assert!(row.lease_expires_at.is_none());
    // An ended row: a second finish conflicts, a cancel conflicts.
    let e = one_finish(&*s, "r1", finish(id, failed("late")))
        .await
        .expect_err("ended");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(status(&*s, id).await, JobStatus::Complete);
    let e = s.cancel(id, "ada").await.expect_err("ended");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("already ended"), "{e}");
    // A canceled queued row is never claimed; a late finish keeps CX.
    let q = s.queue(&NewJob::new(1, "hello")).await.expect("queue");
    assert_eq!(
        s.cancel(q, "ada").await.expect("cancel"),
        CancelResult::Canceled
    );
    let row = s.get(q).await.expect("get").expect("row");
    assert_eq!(row.status, JobStatus::Canceled);
    assert_eq!(row.finish_summary.as_deref(), Some("canceled by ada"));
    assert!(s.claim(&claim("r1", 10)).await.expect("claim").is_empty());
}

pub async fn bad_input_writes_nothing(h: &impl Harness) {
    let s = h.store();
    let e = s
        .queue(&NewJob::new(99, "hello"))
        .await
        .expect_err("no CO 99");
    assert!(e.is_input(), "{e}");
    assert!(e.to_string().contains("no CO 99"), "{e}");
    let mut bad = NewJob::new(1, "hello");
    bad.job_params = Some("[1]".into());
    let e = s.queue(&bad).await.expect_err("params");
    assert!(e.is_input());
    let e = s.queue(&NewJob::new(1, "../etc")).await.expect_err("type");
    assert!(e.is_input());
    let batch = vec![
        NewJob::new(1, "a"),
        NewJob::new(1, "b"),
        NewJob::new(42, "c"),
    ];
    let e = s.queue_many(&batch).await.expect_err("third is bad");
    assert!(e.is_input());
    assert!(e.to_string().contains("job 3 of the batch"), "{e}");
    assert!(e.to_string().contains("no CO 42"), "{e}");
    let e = s.cancel(JobId(12345), "ada").await.expect_err("no job");
    assert!(e.is_input());
    assert!(e.to_string().contains("no job 12345"), "{e}");
    let e = s.add_co("  ", None).await.expect_err("empty");
    assert!(e.is_input());
    let total: i64 = s
        .counts_by_status()
        .await
        .expect("counts")
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(total, 0, "nothing was written");
}

pub async fn claim_is_atomic_across_eight_claimers(h: &impl Harness) {
    const JOBS: usize = 2000;
    let s = h.store();
    let jobs: Vec<NewJob> = (0..JOBS).map(|_| NewJob::new(1, "hello")).collect();
    let ids = s.queue_many(&jobs).await.expect("queue");
    assert_eq!(ids.len(), JOBS);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8 {
        let store = h.another().await;
        tasks.spawn(async move {
            let runner = format!("runner-{n}");
            let mut mine = Vec::new();
            loop {
                let got = store.claim(&claim(&runner, 16)).await.expect("claim");
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|j| j.id));
            }
        });
    }
    let mut seen = HashSet::new();
    let mut claimers_with_rows = 0;
    while let Some(r) = tasks.join_next().await {
        let mine = r.expect("task");
        claimers_with_rows += usize::from(!mine.is_empty());
        for id in mine {
            assert!(seen.insert(id), "job {id} claimed twice");
        }
    }
    assert_eq!(seen.len(), JOBS, "every job claimed exactly once");
    assert!(claimers_with_rows > 1, "the claimers ran side by side");
    let counts = s.counts_by_status().await.expect("counts");
    assert!(
        counts.contains(&(JobStatus::InProgress, JOBS as i64)),
        "{counts:?}"
    );
}

pub async fn co_round_robin(h: &impl Harness) {
    let s = h.store();
    let co2 = s.add_co("second", Some("CO 2")).await.expect("co");
    let many: Vec<NewJob> = (0..5000).map(|_| NewJob::new(1, "hello")).collect();
    s.queue_many(&many).await.expect("queue");
    let lone = s.queue(&NewJob::new(co2, "hello")).await.expect("queue");
    // One batch of two: the oldest due row first, then CO 2's only job
    // (round-robin within a claim; consecutive claims keep no memory).
    let two = s.claim(&claim("r", 2)).await.expect("claim");
    assert_eq!(two.len(), 2);
    assert_eq!(two[0].co_id, 1, "the oldest due row first");
    assert_eq!(two[1].id, lone, "CO 2's only job is claimed 2nd");
    // In one batch: the 1st of each CO, then the 2nd of each...
    let co3 = s.add_co("third", None).await.expect("co");
    let c3: Vec<NewJob> = (0..3).map(|_| NewJob::new(co3, "hello")).collect();
    s.queue_many(&c3).await.expect("queue");
    let batch = s.claim(&claim("r", 4)).await.expect("claim");
    let cos: Vec<i64> = batch.iter().map(|j| j.co_id).collect();
    assert_eq!(cos, vec![1, co3, 1, co3]);
}

pub async fn per_co_cap(h: &impl Harness) {
    let s = h.store();
    let co2 = s.add_co("second", None).await.expect("co");
    let mut jobs: Vec<NewJob> = (0..5).map(|_| NewJob::new(1, "hello")).collect();
    jobs.extend((0..5).map(|_| NewJob::new(co2, "hello")));
    s.queue_many(&jobs).await.expect("queue");
    let mut c = claim("r", 10);
    c.per_co = Some(2);
    let got = s.claim(&c).await.expect("claim");
    assert_eq!(got.len(), 4, "two of each CO");
    // The rows it holds count: nothing more until one ends.
    assert!(s.claim(&c).await.expect("claim").is_empty());
    one_finish(&*s, "r", finish(got[0].id, ok("done")))
        .await
        .expect("finish");
    let more = s.claim(&c).await.expect("claim");
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].co_id, got[0].co_id);
    // Another runner has its own cap.
    let mut other = c.clone();
    other.runner_id = "r2".into();
    assert_eq!(s.claim(&other).await.expect("claim").len(), 4);
}

pub async fn chains_retry_and_requeue(h: &impl Harness) {
    let s = h.store();
    let mut job = NewJob::new(1, "hello");
    job.retry_interval = Some(60);
    job.max_retry = Some(1);
    job.job_params = Some(r#"{"b": 1, "a": "x"}"#.into());
    job.register_summary = Some("r".repeat(300));
    job.queued_by = Some("ada".into());
    let root = s.queue(&job).await.expect("queue");
    let before = chrono::Utc::now();
    s.claim(&claim("r", 1)).await.expect("claim");
    let retry = one_finish(&*s, "r", finish(root, failed("boom")))
        .await
        .expect("finish")
        .expect("a retry");
    assert!(
        retry.due > before + chrono::TimeDelta::seconds(50),
        "{retry:?}"
    );
    let row = s.get(retry.id).await.expect("get").expect("row");
    assert_eq!(row.status, JobStatus::Queued);
    assert_eq!(row.max_retry_count, Some(1));
    assert_eq!(row.requeued_from_co_job_id, Some(root));
    assert_eq!(row.job_params.as_deref(), Some(r#"{"a":"x","b":1}"#));
    assert_eq!(
        row.register_summary.as_deref().map(|s| s.chars().count()),
        Some(256)
    );
    assert_eq!(row.queued_by.as_deref(), Some("ada"));
    assert_eq!(status(&*s, root).await, JobStatus::Failed);
    // Not due for a minute: nothing to claim.
    assert!(s.claim(&claim("r", 1)).await.expect("claim").is_empty());
    // Make it due, fail it again: max_retry = 1 is used up.
    h.sql(&format!(
        "UPDATE cm_co_jobs SET start_after_time = NULL WHERE id = {}",
        retry.id
    ))
    .await;
    assert_eq!(
        s.claim(&claim("r", 1)).await.expect("claim")[0].id,
        retry.id
    );
    assert_eq!(
        one_finish(&*s, "r", finish(retry.id, failed("boom again")))
            .await
            .expect("finish"),
        None
    );
    // A requeue: OK with requeue_interval, count back to 0.
    let mut every = NewJob::new(1, "tick");
    every.requeue_interval = Some(3600);
    let tick = s.queue(&every).await.expect("queue");
    s.claim(&claim("r", 1)).await.expect("claim");
    let next = one_finish(&*s, "r", finish(tick, ok("tock")))
        .await
        .expect("finish")
        .expect("a requeue");
    let row = s.get(next.id).await.expect("get").expect("row");
    assert_eq!(row.max_retry_count, Some(0));
    assert_eq!(row.requeued_from_co_job_id, Some(tick));
    // A discarded failure has no successor whatever the policy.
    let d = s.queue(&job).await.expect("queue");
    s.claim(&claim("r", 1)).await.expect("claim");
    let discard = Outcome::Failed {
        summary: "bad input".into(),
        retry: Retry::Never,
    };
    assert_eq!(
        one_finish(&*s, "r", finish(d, discard))
            .await
            .expect("finish"),
        None
    );
    // The chain, from any member, oldest first, paged.
    let chain = s.retry_chain(retry.id, None, 10).await.expect("chain");
    assert_eq!(
        chain.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![root, retry.id]
    );
    let page = s.retry_chain(root, Some(root), 10).await.expect("chain");
    assert_eq!(
        page.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![retry.id]
    );
    assert_eq!(s.retry_chain(root, None, 1).await.expect("chain").len(), 1);
}

/// `show`'s chain page: a window either side of the job, whole rows for
/// the page only, and whether the chain goes on.
pub async fn chain_page_walks_a_window(h: &impl Harness) {
    use cojobs::store::CHAIN_WINDOW;
    let s = h.store();
    let n = CHAIN_WINDOW + 10;
    let ids = s
        .queue_many(&vec![NewJob::new(1, "tick"); n])
        .await
        .expect("queue");
    let first = ids[0];
    // One chain, oldest first: each row requeued from the one before.
    h.sql(&format!(
        "UPDATE cm_co_jobs SET requeued_from_co_job_id = id - 1 WHERE id > {first}"
    ))
    .await;
    let mid = ids[500];
    let page = s.chain_page(mid, 2).await.expect("page");
    assert_eq!(page.total, n);
    assert_eq!(page.position, 500);
    assert!(!page.older_beyond && !page.newer_beyond, "{page:?}");
    assert_eq!(
        page.rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids[498..=502].to_vec()
    );
    let head = s.chain_page(first, 1).await.expect("page");
    assert_eq!(head.position, 0);
    assert!(head.newer_beyond && !head.older_beyond, "{head:?}");
    assert_eq!(
        head.total,
        CHAIN_WINDOW + 2,
        "the window and one row past it"
    );
    assert_eq!(
        head.rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids[0..=1].to_vec()
    );
}

pub async fn rescue_only_expired_leases(h: &impl Harness) {
    let s = h.store();
    let other = h.another().await;
    let mut job = NewJob::new(1, "hello");
    job.retry_interval = Some(30);
    let ids = s
        .queue_many(&[job.clone(), job.clone(), job])
        .await
        .expect("queue");
    // A live runner: a lease of an hour. A dead one: a lease already over.
    let live = s.claim(&claim("live", 1)).await.expect("claim");
    let mut dead_claim = claim("dead", 2);
    dead_claim.lease = Duration::ZERO;
    let dead = s.claim(&dead_claim).await.expect("claim");
    assert_eq!(dead.len(), 2);
    s.start("dead", &[(dead[0].id, chrono::Utc::now())])
        .await
        .expect("start");
    // A zero lease ends at the claim's own instant: let the clock pass it
    // (times are stored to the millisecond).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut rescued = other.rescue().await.expect("rescue");
    rescued.sort_by_key(Rescued::id);
    assert_eq!(rescued.len(), 2, "{rescued:?}");
    // Started: ended X with a retry. Claimed only: back to Q, no retry spent.
    match &rescued[0] {
        Rescued::Ended {
            id,
            status,
            successor,
        } => {
            assert_eq!(*id, dead[0].id);
            assert_eq!(*status, JobStatus::Failed);
            assert!(successor.is_some());
        }
        r => panic!("expected the started row to end: {r:?}"),
    }
    assert_eq!(rescued[1], Rescued::Requeued(dead[1].id));
    let row = s.get(dead[0].id).await.expect("get").expect("row");
    assert_eq!(
        row.finish_summary.as_deref(),
        Some("runner dead stopped responding")
    );
    let row = s.get(dead[1].id).await.expect("get").expect("row");
    assert_eq!(row.status, JobStatus::Queued);
    assert_eq!(row.max_retry_count, Some(0));
    assert!(row.runner_id.is_none());
    // The live runner's row is untouched; the dead one holds nothing now,
    // and its late finish is refused.
    assert_eq!(status(&*s, live[0].id).await, JobStatus::InProgress);
    assert_eq!(
        s.heartbeat("live", LONG).await.expect("hb"),
        vec![live[0].id]
    );
    assert!(s.heartbeat("dead", LONG).await.expect("hb").is_empty());
    let e = one_finish(&*s, "dead", finish(dead[0].id, ok("late")))
        .await
        .expect_err("lost");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(other.rescue().await.expect("rescue").is_empty());
    assert!(ids.contains(&live[0].id));
    // A heartbeat renews a lease before it runs out: no rescue.
    let again = s.claim(&dead_claim).await.expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(
        s.heartbeat("dead", LONG).await.expect("hb"),
        vec![again[0].id]
    );
    assert!(other.rescue().await.expect("rescue").is_empty());
}

/// Two jobs (types `a`, `b`) queued and claimed by runner `r`.
async fn two_claimed(s: &dyn JobStore) -> Vec<JobId> {
    let ids = s
        .queue_many(&[NewJob::new(1, "a"), NewJob::new(1, "b")])
        .await
        .expect("queue");
    s.claim(&claim("r", 2)).await.expect("claim");
    ids
}

/// Record that runs of `ids` began under `runner`.
async fn started(s: &dyn JobStore, runner: &str, ids: &[JobId]) {
    let now = chrono::Utc::now();
    let all: Vec<(JobId, chrono::DateTime<chrono::Utc>)> =
        ids.iter().map(|id| (*id, now)).collect();
    assert_eq!(s.start(runner, &all).await.expect("start"), ids);
}

/// Issue 10, finding 4: a cancel of a claimed row that has not started
/// ends it `CX` at once, and its runner's start is refused (it never runs);
/// a started row gets a stop request.
pub async fn cancel_of_a_claimed_row_not_started_ends_it(h: &impl Harness) {
    let s = h.store();
    let ids = two_claimed(&*s).await;
    started(&*s, "r", &ids[..1]).await;
    assert_eq!(
        s.cancel(ids[1], "ada").await.expect("cancel"),
        CancelResult::Canceled
    );
    assert_eq!(status(&*s, ids[1]).await, JobStatus::Canceled);
    let refused = s
        .start("r", &[(ids[1], chrono::Utc::now())])
        .await
        .expect("start");
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(
        s.cancel(ids[0], "ada").await.expect("cancel"),
        CancelResult::StopRequested
    );
    assert_eq!(status(&*s, ids[0]).await, JobStatus::InProgress);
}

pub async fn release_returns_or_cancels(h: &impl Harness) {
    let s = h.store();
    let mut job = NewJob::new(1, "hello");
    job.retry_interval = Some(10);
    let ids = s.queue_many(&[job.clone(), job]).await.expect("queue");
    let got = s.claim(&claim("r", 2)).await.expect("claim");
    assert_eq!(got.len(), 2);
    started(&*s, "r", &ids).await;
    assert_eq!(
        s.cancel(ids[1], "bob").await.expect("cancel"),
        CancelResult::StopRequested
    );
    assert_eq!(
        s.release("r", ids[0], "runner shut down")
            .await
            .expect("release"),
        Released::Queued
    );
    assert_eq!(
        s.release("r", ids[1], "runner shut down")
            .await
            .expect("release"),
        Released::Canceled
    );
    let back = s.get(ids[0]).await.expect("get").expect("row");
    assert_eq!(back.status, JobStatus::Queued);
    assert_eq!(back.start_summary.as_deref(), Some("runner shut down"));
    assert!(back.runner_id.is_none() && back.start_time.is_none());
    let cx = s.get(ids[1]).await.expect("get").expect("row");
    assert_eq!(cx.status, JobStatus::Canceled);
    assert_eq!(cx.finish_summary.as_deref(), Some("canceled by bob"));
    let counts = s.counts_by_status().await.expect("counts");
    assert!(
        counts.contains(&(JobStatus::Queued, 1)),
        "no retry of a cancel: {counts:?}"
    );
    let e = s.release("r", ids[1], "again").await.expect_err("ended");
    assert_eq!(e.kind(), ErrorKind::Conflict);
}

pub async fn progress_heartbeat_and_cancel_requests(h: &impl Harness) {
    let s = h.store();
    let ids = two_claimed(&*s).await;
    started(&*s, "r", &ids).await;
    s.progress(
        "r",
        &[
            Progress {
                id: ids[0],
                percent: 150,
                status_line: Some("é".repeat(300)),
                plugin: Some(plugin_run()),
            },
            Progress {
                id: ids[1],
                percent: 40,
                status_line: None,
                plugin: None,
            },
        ],
    )
    .await
    .expect("progress");
    // Another runner's progress writes nothing.
    s.progress(
        "other",
        &[Progress {
            id: ids[1],
            percent: 99,
            status_line: Some("no".into()),
            plugin: Some(plugin_run()),
        }],
    )
    .await
    .expect("progress");
    let a = s.get(ids[0]).await.expect("get").expect("row");
    assert_eq!(a.percent_complete, Some(100));
    assert_eq!(a.status_line.map(|l| l.chars().count()), Some(256));
    // The component a run began with is on the row while it runs.
    assert_eq!(a.plugin_sha256.as_deref(), Some(SHA));
    assert_eq!(a.plugin_contract.as_deref(), Some("0.2.0"));
    let b = s.get(ids[1]).await.expect("get").expect("row");
    assert_eq!(b.percent_complete, Some(40));
    assert_eq!(b.status_line, None);
    assert_eq!(b.plugin_sha256, None, "another runner's write is refused");
    assert_eq!(s.heartbeat("r", LONG).await.expect("hb"), ids);
    assert!(s.cancel_requests("r").await.expect("requests").is_empty());
    s.cancel(ids[1], "ada").await.expect("cancel");
    s.cancel(ids[1], "bob").await.expect("cancel again");
    assert_eq!(
        s.cancel_requests("r").await.expect("requests"),
        vec![(ids[1], "ada".to_string())],
        "the first asker is kept"
    );
}

pub async fn plain_sql_rows_run(h: &impl Harness) {
    let s = h.store();
    // As COmanage inserts: its own timestamp text, NULL params, no
    // cojobs columns, no max_retry_count.
    h.sql(
        "INSERT INTO cm_co_jobs (co_id, job_type, job_mode, job_params, status, register_summary, \
            queue_time, start_after_time, retry_interval, max_retry) \
         VALUES (1, 'hello', 'full', NULL, 'Q', 'from COmanage', '2024-03-01 10:00:00', NULL, 60, 1)",
    )
    .await;
    h.sql("INSERT INTO cm_co_jobs (co_id, job_type, status) VALUES (1, 'bare', 'Q')")
        .await;
    h.sql(
        "INSERT INTO cm_co_jobs (co_id, job_type, status, queue_time, start_after_time) \
         VALUES (1, 'later', 'Q', '2024-03-01 10:00:00', '2999-01-01 00:00:00')",
    )
    .await;
    let got = s.claim(&claim("r", 10)).await.expect("claim");
    let types: Vec<&str> = got.iter().map(|j| j.job_type.as_str()).collect();
    assert_eq!(types, vec!["bare", "hello"], "due rows, oldest due first");
    let hello = &got[1];
    // The same instant, whatever fraction digits the driver keeps.
    assert!(
        hello
            .queue_time
            .as_deref()
            .is_some_and(|t| t.starts_with("2024-03-01 10:00:00")),
        "{:?}",
        hello.queue_time
    );
    assert_eq!(hello.job_mode.as_deref(), Some("full"));
    assert!(
        hello.params().expect("params").is_empty(),
        "NULL params = {{}}"
    );
    assert_eq!(hello.policy().max_retry_count, 0);
    let retry = one_finish(&*s, "r", finish(hello.id, failed("boom")))
        .await
        .expect("finish")
        .expect("the seed's retry rule");
    let row = s.get(retry.id).await.expect("get").expect("row");
    assert_eq!(row.max_retry_count, Some(1));
    assert_eq!(row.job_mode.as_deref(), Some("full"));
    assert_eq!(row.register_summary.as_deref(), Some("from COmanage"));
    let next = s.next_due().await.expect("next due").expect("queued rows");
    assert!(next > Duration::from_secs(50), "{next:?}");
}

pub async fn list_cursor_counts_prune_history(h: &impl Harness) {
    let s = h.store();
    let co2 = s.add_co("two", None).await.expect("co");
    let e = s.add_co("two", None).await.expect_err("duplicate");
    assert!(e.is_input(), "{e}");
    let names: Vec<String> = s
        .list_cos()
        .await
        .expect("cos")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["default", "two"]);
    let mut jobs: Vec<NewJob> = (0..5).map(|_| NewJob::new(1, "a")).collect();
    jobs.push(NewJob::new(co2, "b"));
    let ids = s.queue_many(&jobs).await.expect("queue");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ids in input order");
    let filter = ListFilter {
        job_type: Some("a".into()),
        limit: Some(2),
        ..ListFilter::default()
    };
    let page1 = s.list(&filter, None).await.expect("list");
    assert_eq!(
        page1.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    let page2 = s.list(&filter, Some(ids[3])).await.expect("list");
    assert_eq!(
        page2.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]]
    );
    let by_co = ListFilter {
        co_id: Some(co2),
        ..ListFilter::default()
    };
    assert_eq!(s.list(&by_co, None).await.expect("list").len(), 1);
    // History, then prune: ended rows with their history go, successors stay.
    let rec = NewHistoryRecord {
        co_job_id: ids[0],
        record_key: Some("k".repeat(300)),
        co_person_id: Some(5),
        org_identity_id: None,
        comment: "hi".into(),
        status: RecordStatus::Notice,
    };
    s.add_history(&rec).await.expect("history");
    let hist = s.history(ids[0]).await.expect("history");
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].status.as_deref(), Some("NT"));
    assert_eq!(hist[0].record_key.as_deref().map(|k| k.len()), Some(256));
    let mut bad = rec.clone();
    bad.co_job_id = JobId(999_999);
    assert!(s.add_history(&bad).await.expect_err("no job").is_input());
    s.cancel(ids[0], "ada").await.expect("cancel");
    assert_eq!(
        s.prune(chrono::Utc::now() - chrono::TimeDelta::hours(1))
            .await
            .expect("prune"),
        0
    );
    assert_eq!(
        s.prune(chrono::Utc::now() + chrono::TimeDelta::hours(1))
            .await
            .expect("prune"),
        1
    );
    assert!(s.get(ids[0]).await.expect("get").is_none());
    assert!(s.history(ids[0]).await.expect("history").is_empty());
    let counts = s.counts_by_status().await.expect("counts");
    assert_eq!(counts.len(), 5);
    assert!(counts.contains(&(JobStatus::Queued, 5)), "{counts:?}");
}

pub async fn unique_queue(h: &impl Harness) {
    let s = h.store();
    let mut job = NewJob::new(1, "sync");
    job.job_params = Some(r#"{"a":1,"b":2}"#.into());
    let Queued::New(first) = s.queue_unique(&job).await.expect("queue") else {
        panic!("first is new");
    };
    let mut same = job.clone();
    same.job_params = Some(r#"{ "b": 2, "a": 1 }"#.into());
    assert_eq!(
        s.queue_unique(&same).await.expect("queue"),
        Queued::Existing(first, JobStatus::Queued)
    );
    let mut other = job.clone();
    other.job_mode = Some("full".into());
    assert!(matches!(
        s.queue_unique(&other).await.expect("queue"),
        Queued::New(_)
    ));
    s.cancel(first, "ada").await.expect("cancel");
    assert!(matches!(
        s.queue_unique(&job).await.expect("queue"),
        Queued::New(_)
    ));
}

pub async fn wait_hears_new_jobs(h: &impl Harness) {
    let s = h.store();
    // Drain any sign left from setting up, then wait while another
    // store (another process) queues and while COmanage inserts by SQL.
    while s
        .wait_for_jobs(Duration::from_millis(300))
        .await
        .expect("wait")
        != Wake::Timeout
    {}
    let other = h.another().await;
    let waiter = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.wait_for_jobs(Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    other.queue(&NewJob::new(1, "hello")).await.expect("queue");
    assert_eq!(waiter.await.expect("task").expect("wait"), Wake::NewJobs);
    while s
        .wait_for_jobs(Duration::from_millis(300))
        .await
        .expect("wait")
        != Wake::Timeout
    {}
    let waiter = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.wait_for_jobs(Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.sql("INSERT INTO cm_co_jobs (co_id, job_type, status) VALUES (1, 'bare', 'Q')")
        .await;
    assert_eq!(waiter.await.expect("task").expect("wait"), Wake::NewJobs);
}

pub async fn next_due_counts_from_the_database_clock(h: &impl Harness) {
    let s = h.store();
    assert_eq!(s.next_due().await.expect("next due"), None);
    let mut later = NewJob::new(1, "hello");
    later.start_after = Some(chrono::Utc::now() + chrono::TimeDelta::hours(2));
    s.queue(&later).await.expect("queue");
    let due = s.next_due().await.expect("next due").expect("one queued");
    assert!(
        due > Duration::from_secs(3600) && due <= Duration::from_secs(7200),
        "{due:?}"
    );
    s.queue(&NewJob::new(1, "now")).await.expect("queue");
    assert_eq!(s.next_due().await.expect("next due"), Some(Duration::ZERO));
}

/// `run --once` claims only rows due by when it started (`due_by`), and
/// follows a retry by its id alone (`claim_one`), under the same rules as
/// a claim: queued, due, within the per-CO cap.
pub async fn claim_due_by_and_claim_one(h: &impl Harness) {
    use chrono::{TimeDelta, Utc};
    let s = h.store();
    let at = |mins: i64| {
        let mut j = NewJob::new(1, "hello");
        j.start_after = Some(Utc::now() + TimeDelta::minutes(mins));
        j
    };
    let early = s.queue(&at(-10)).await.expect("queue");
    let late = s.queue(&at(-1)).await.expect("queue");
    let future = s.queue(&at(60)).await.expect("queue");
    let mut c = claim("once", 10);
    c.due_by = Some(Utc::now() - TimeDelta::minutes(5));
    let got = s.claim(&c).await.expect("claim");
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![early]);
    // Not due yet: not claimable by id either.
    assert!(s.claim_one(&c, future).await.expect("claim_one").is_none());
    let one = s.claim_one(&c, late).await.expect("claim_one");
    let one = one.expect("the due row is claimed");
    assert_eq!((one.id, one.status), (late, JobStatus::InProgress));
    assert_eq!(one.runner_id.as_deref(), Some("once"));
    assert!(one.start_time.is_none(), "claimed, not started");
    // Taken: a second claim of it finds nothing.
    assert!(s.claim_one(&c, late).await.expect("claim_one").is_none());
    // Over the per-CO cap (the runner holds two rows of CO 1): nothing.
    let more = s.queue(&at(-1)).await.expect("queue");
    c.per_co = Some(2);
    assert!(s.claim_one(&c, more).await.expect("claim_one").is_none());
    c.per_co = Some(3);
    assert!(s.claim_one(&c, more).await.expect("claim_one").is_some());
    // An unknown id: nothing, not an error.
    assert!(
        s.claim_one(&c, JobId(999_999))
            .await
            .expect("claim_one")
            .is_none()
    );
}

/// Many job tasks start and finish at once, as a runner's workers do (the
/// SQLite driver writes what arrives together in one transaction): each
/// gets its own answer, a row that is not the caller's is refused alone,
/// and every other row ends as asked.
pub async fn concurrent_starts_and_finishes_each_get_their_answer(h: &impl Harness) {
    const JOBS: usize = 64;
    let s = h.store();
    let jobs: Vec<NewJob> = (0..JOBS).map(|_| NewJob::new(1, "hello")).collect();
    s.queue_many(&jobs).await.expect("queue");
    let got = s.claim(&claim("r", JOBS)).await.expect("claim");
    assert_eq!(got.len(), JOBS);
    let mut tasks = tokio::task::JoinSet::new();
    for (n, job) in got.iter().enumerate() {
        let (s, id) = (Arc::clone(&s), job.id);
        // Every 8th task writes as another runner: refused, alone.
        let runner = if n % 8 == 3 { "intruder" } else { "r" };
        tasks.spawn(async move {
            let started = s
                .start(runner, &[(id, chrono::Utc::now())])
                .await
                .expect("start");
            let ended = one_finish(&*s, runner, finish(id, ok("done"))).await;
            (id, runner, started, ended)
        });
    }
    let mut ok_rows = 0;
    while let Some(r) = tasks.join_next().await {
        let (id, runner, started, ended) = r.expect("task");
        if runner == "r" {
            assert_eq!(started, vec![id], "its own start only");
            assert_eq!(ended.expect("finish"), None, "no successor");
            assert_eq!(status(&*s, id).await, JobStatus::Complete);
            ok_rows += 1;
        } else {
            assert!(started.is_empty(), "another runner's start is refused");
            let e = ended.expect_err("another runner's finish is refused");
            assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
            assert_eq!(status(&*s, id).await, JobStatus::InProgress);
        }
    }
    assert_eq!(ok_rows, JOBS - JOBS / 8);
}

/// The runner's claim (`Claim::start`) writes each row's start in the
/// claim itself; `due_by` leaves rows due later for a later claim.
pub async fn a_starting_claim_writes_the_start_and_keeps_due_by(h: &impl Harness) {
    let s = h.store();
    let first = s.queue(&NewJob::new(1, "a")).await.expect("queue");
    let cutoff = chrono::Utc::now() - chrono::TimeDelta::seconds(3600);
    // Nothing was due an hour ago.
    let mut c = Claim {
        start: true,
        due_by: Some(cutoff),
        ..claim("r", 10)
    };
    assert!(s.claim(&c).await.expect("claim").is_empty());
    c.due_by = None;
    let got = s.claim(&c).await.expect("claim");
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![first]);
    let row = s.get(first).await.expect("get").expect("row");
    assert_eq!(row.status, JobStatus::InProgress);
    assert!(row.start_time.is_some(), "started by the claim");
    assert_eq!(row.start_summary.as_deref(), Some("started by runner r"));
    // A started row ends normally.
    assert!(
        one_finish(&*s, "r", finish(first, ok("done")))
            .await
            .is_ok()
    );
    assert_eq!(status(&*s, first).await, JobStatus::Complete);
}

// ---- `cojobs serve` (issue 12) ----

fn query(limit: i64) -> JobQuery {
    JobQuery {
        limit,
        ..JobQuery::default()
    }
}

fn ids_of(jobs: &[cojobs::store::Job]) -> Vec<JobId> {
    jobs.iter().map(|j| j.id).collect()
}

pub async fn search_filters_times_text_and_cursor(h: &impl Harness) {
    let s = h.store();
    let co2 = s.add_co("two", None).await.expect("co");
    let mut a = NewJob::new(1, "alpha");
    a.register_summary = Some("Nightly 100%_sync of <b>".into());
    let a = s.queue(&a).await.expect("queue");
    let b = s.queue(&NewJob::new(co2, "beta")).await.expect("queue");
    let c = s.queue(&NewJob::new(1, "alpha")).await.expect("queue");
    s.cancel(c, "ada").await.expect("cancel");

    // Newest first, bounded, with a cursor; no logs in a search.
    let all = s.search(&query(2)).await.expect("search");
    assert_eq!(ids_of(&all), vec![c, b]);
    assert!(all.iter().all(|j| j.job_log.is_none()));
    let rest = s
        .search(&JobQuery {
            before: Some(b),
            ..query(2)
        })
        .await
        .expect("search");
    assert_eq!(ids_of(&rest), vec![a]);
    // Each filter.
    let by = |q: JobQuery| {
        let s = s.clone();
        async move { ids_of(&s.search(&q).await.expect("search")) }
    };
    assert_eq!(
        by(JobQuery {
            job_type: Some("alpha".into()),
            ..query(10)
        })
        .await,
        vec![c, a]
    );
    assert_eq!(
        by(JobQuery {
            co_id: Some(co2),
            ..query(10)
        })
        .await,
        vec![b]
    );
    assert_eq!(
        by(JobQuery {
            status: Some(JobStatus::Canceled),
            ..query(10)
        })
        .await,
        vec![c]
    );
    // Text: a substring, case-insensitive, wildcards taken literally.
    for (text, want) in [
        ("nightly", vec![a]),
        ("100%_s", vec![a]),
        ("100%x", vec![]),
        ("canceled BY ada", vec![c]),
        ("<b>", vec![a]),
    ] {
        let got = by(JobQuery {
            text: Some(text.into()),
            ..query(10)
        })
        .await;
        assert_eq!(got, want, "text {text:?}");
    }
    // Time ranges: queued, finished.
    let now = chrono::Utc::now();
    let hour = chrono::TimeDelta::hours(1);
    assert_eq!(
        by(JobQuery {
            queued_after: Some(now - hour),
            queued_before: Some(now + hour),
            ..query(10)
        })
        .await,
        vec![c, b, a]
    );
    assert!(
        by(JobQuery {
            queued_after: Some(now + hour),
            ..query(10)
        })
        .await
        .is_empty()
    );
    assert_eq!(
        by(JobQuery {
            finished_after: Some(now - hour),
            ..query(10)
        })
        .await,
        vec![c]
    );
    assert!(
        by(JobQuery {
            finished_before: Some(now - hour),
            ..query(10)
        })
        .await
        .is_empty()
    );
}

pub async fn count_groups_by_co_type_status(h: &impl Harness) {
    let s = h.store();
    let co2 = s.add_co("two", None).await.expect("co");
    s.queue_many(&[
        NewJob::new(1, "a"),
        NewJob::new(1, "a"),
        NewJob::new(1, "b"),
        NewJob::new(co2, "a"),
    ])
    .await
    .expect("queue");
    let ids = s
        .search(&JobQuery {
            co_id: Some(1),
            job_type: Some("b".into()),
            ..query(1)
        })
        .await
        .expect("search");
    s.cancel(ids[0].id, "ada").await.expect("cancel");
    let mut all: Vec<(i64, String, &str, i64)> = s
        .count_groups(None)
        .await
        .expect("counts")
        .into_iter()
        .map(|g| (g.co_id, g.job_type, g.status.code(), g.count))
        .collect();
    all.sort();
    assert_eq!(
        all,
        vec![
            (1, "a".to_string(), "Q", 2),
            (1, "b".to_string(), "CX", 1),
            (co2, "a".to_string(), "Q", 1),
        ]
    );
    let two = s.count_groups(Some(co2)).await.expect("counts");
    assert_eq!(two.len(), 1);
    assert_eq!((two[0].co_id, two[0].count), (co2, 1));
}

pub async fn retry_now_links_and_records_who(h: &impl Harness) {
    let s = h.store();
    let mut job = NewJob::new(1, "hello");
    job.job_params = Some(r#"{"n":1}"#.into());
    job.retry_interval = Some(60);
    job.max_retry = Some(0);
    job.fuel_limit = Some(5000);
    let id = s.queue(&job).await.expect("queue");
    // A queued job cannot be retried: a conflict, nothing written.
    let e = s.retry_now(id, "ops").await.expect_err("queued");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let e = s.retry_now(JobId(999_999), "ops").await.expect_err("none");
    assert!(e.is_input(), "{e}");
    // Failed (its policy allows no retry): retried by hand.
    s.claim(&claim("r1", 1)).await.expect("claim");
    s.start("r1", &[(id, chrono::Utc::now())])
        .await
        .expect("start");
    assert_eq!(
        one_finish(&*s, "r1", finish(id, failed("boom")))
            .await
            .expect("finish"),
        None
    );
    let new = s.retry_now(id, "ops").await.expect("retry");
    let old = s.get(id).await.expect("get").expect("row");
    assert_eq!(old.status, JobStatus::Failed, "the row retried stays X");
    assert_eq!(old.retried_by.as_deref(), Some("ops"));
    let row = s.get(new).await.expect("get").expect("row");
    assert_eq!(row.status, JobStatus::Queued);
    assert_eq!(row.requeued_from_co_job_id, Some(id));
    assert_eq!(row.max_retry_count, Some(1));
    assert_eq!(row.queued_by.as_deref(), Some("ops"));
    assert_eq!(row.retried_by, None);
    assert_eq!(
        (row.co_id, row.job_type.as_str(), row.fuel_limit),
        (1, "hello", Some(5000))
    );
    assert_eq!(row.params().expect("params"), old.params().expect("params"));
    // It is due now, and in the chain.
    assert_eq!(
        ids_of(&s.claim(&claim("r1", 5)).await.expect("claim")),
        vec![new]
    );
    assert_eq!(
        ids_of(&s.retry_chain(id, None, 10).await.expect("chain")),
        vec![id, new]
    );
    // Canceled rows may be retried too.
    let q = s.queue(&NewJob::new(1, "hello")).await.expect("queue");
    s.cancel(q, "ada").await.expect("cancel");
    s.retry_now(q, "ops").await.expect("retry canceled");
}

pub async fn tokens_add_list_revoke(h: &impl Harness) {
    let s = h.store();
    let token = |name: &str, role, co, hash: &str| NewToken {
        name: name.into(),
        role,
        co_id: co,
        hash: hash.into(),
    };
    s.add_token(&token("ops", Role::Operator, None, "h1"))
        .await
        .expect("add");
    s.add_token(&token("co1-admin", Role::Admin, Some(1), "h2"))
        .await
        .expect("add");
    // Bad input writes nothing.
    for bad in [
        token("ops", Role::Viewer, None, "h3"),
        token("bad name", Role::Viewer, None, "h4"),
        token("ghost", Role::Viewer, Some(999), "h5"),
    ] {
        let e = s.add_token(&bad).await.expect_err("refused");
        assert!(e.is_input(), "{e}");
    }
    let listed = s.list_tokens().await.expect("list");
    let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["ops", "co1-admin"]);
    assert_eq!(listed[1].co_id, Some(1));
    let found = s.token_by_hash("h2").await.expect("find").expect("live");
    assert_eq!(
        (found.name.as_str(), found.role),
        ("co1-admin", Role::Admin)
    );
    assert!(s.token_by_hash("nope").await.expect("find").is_none());
    // Revoked: not found any more, listed with when; the name is free again.
    s.revoke_token("ops").await.expect("revoke");
    assert!(s.token_by_hash("h1").await.expect("find").is_none());
    assert!(s.revoke_token("ops").await.expect_err("gone").is_input());
    let listed = s.list_tokens().await.expect("list");
    assert!(listed[0].revoked.is_some());
    s.add_token(&token("ops", Role::Viewer, None, "h6"))
        .await
        .expect("name reusable");
}

// ---- schedules (issue 14) ----

fn schedule(name: &str, cron: &str, catch_up: CatchUp) -> NewSchedule {
    let mut job = NewJob::new(1, "hello");
    job.job_params = Some(r#"{"name": "tick"}"#.into());
    job.queued_by = Some("ada".into());
    NewSchedule {
        name: name.to_string(),
        cron: cron.to_string(),
        timezone: "UTC".to_string(),
        catch_up,
        job,
    }
}

/// A time as plain SQL takes it on both databases.
fn sql_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The ticks of the rows `name` queued, oldest first.
async fn ticks_of(s: &dyn JobStore, name: &str) -> Vec<String> {
    let filter = ListFilter {
        schedule: Some(name.to_string()),
        ..ListFilter::default()
    };
    let mut ticks: Vec<String> = s
        .list(&filter, None)
        .await
        .expect("list")
        .into_iter()
        .map(|j| {
            assert_eq!(j.schedule_name.as_deref(), Some(name));
            assert_eq!(j.start_after_time, j.schedule_tick, "due at its tick");
            j.schedule_tick.expect("tick")
        })
        .collect();
    ticks.sort();
    ticks
}

pub async fn schedules_add_list_pause_remove_and_refuse_bad_input(h: &impl Harness) {
    let s = h.store();
    let id = s
        .add_schedule(&schedule("nightly", "30 2 * * *", CatchUp::Latest))
        .await
        .expect("add");
    assert!(id > 0);
    let mut vienna = schedule("vienna", "@hourly", CatchUp::None);
    vienna.timezone = "Europe/Vienna".into();
    s.add_schedule(&vienna).await.expect("add in a zone");
    let mut bad_co = schedule("x1", "* * * * *", CatchUp::All);
    bad_co.job.co_id = 99;
    let mut bad_params = schedule("x2", "* * * * *", CatchUp::All);
    bad_params.job.job_params = Some("[1]".into());
    let mut bad_zone = schedule("x3", "* * * * *", CatchUp::All);
    bad_zone.timezone = "Mars/Olympus".into();
    for (bad, says) in [
        (
            schedule("nightly", "* * * * *", CatchUp::All),
            "already exists",
        ),
        (schedule("x4", "61 * * * *", CatchUp::All), "invalid cron"),
        (schedule("x5", "0 0 30 2 *", CatchUp::All), "no time"),
        (
            schedule("../x", "* * * * *", CatchUp::All),
            "invalid schedule name",
        ),
        (bad_co, "no CO 99"),
        (bad_params, "JSON object"),
        (bad_zone, "unknown time zone"),
    ] {
        let e = s.add_schedule(&bad).await.expect_err(&bad.name);
        assert!(e.is_input(), "{e}");
        assert!(e.to_string().contains(says), "{e} should say {says}");
    }
    let all = s.schedules().await.expect("list");
    let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["nightly", "vienna"], "nothing written by bad input");
    let nightly = s.schedule("nightly").await.expect("get").expect("there");
    assert_eq!(nightly.cron, "30 2 * * *");
    assert_eq!(nightly.timezone, "UTC");
    assert_eq!(nightly.catch_up, CatchUp::Latest);
    assert_eq!(nightly.job_params.as_deref(), Some(r#"{"name":"tick"}"#));
    assert_eq!(nightly.created_by.as_deref(), Some("ada"));
    assert!(
        nightly
            .next_tick
            .as_deref()
            .expect("next")
            .ends_with("02:30:00.000")
    );
    assert_eq!(
        s.schedule("vienna")
            .await
            .expect("get")
            .expect("there")
            .timezone,
        "Europe/Vienna"
    );
    s.set_schedule_paused("nightly", true).await.expect("pause");
    assert!(
        s.schedule("nightly")
            .await
            .expect("get")
            .expect("there")
            .paused
    );
    s.set_schedule_paused("nightly", false)
        .await
        .expect("resume");
    assert!(
        !s.schedule("nightly")
            .await
            .expect("get")
            .expect("there")
            .paused
    );
    s.remove_schedule("nightly").await.expect("remove");
    assert!(s.schedule("nightly").await.expect("get").is_none());
    for e in [
        s.remove_schedule("nightly").await.expect_err("gone"),
        s.set_schedule_paused("nope", true).await.expect_err("none"),
    ] {
        assert!(e.is_input(), "{e}");
        assert!(e.to_string().contains("no schedule named"), "{e}");
    }
}

pub async fn schedule_ticks_are_queued_once_by_racing_passes(h: &impl Harness) {
    let s = h.store();
    s.add_schedule(&schedule("every-second", "* * * * * *", CatchUp::All))
        .await
        .expect("add");
    // Paused meanwhile: nothing is queued.
    s.set_schedule_paused("every-second", true)
        .await
        .expect("pause");
    let first = chrono::Utc::now() - chrono::TimeDelta::seconds(8);
    h.sql(&format!(
        "UPDATE cojobs_schedules SET next_tick = '{}'",
        sql_time(first)
    ))
    .await;
    assert!(s.enqueue_due_ticks().await.expect("pass").is_empty());
    // Unpaused by plain SQL (resume would move the next tick to now).
    h.sql("UPDATE cojobs_schedules SET paused = (1 = 0)").await;
    // Eight passes race (eight runner processes).
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = h.another().await;
        tasks.spawn(async move { store.enqueue_due_ticks().await.expect("pass") });
    }
    let mut seen = HashSet::new();
    while let Some(r) = tasks.join_next().await {
        for id in r.expect("task") {
            assert!(seen.insert(id), "job {id} reported twice");
        }
    }
    let ticks = ticks_of(&*s, "every-second").await;
    assert_eq!(ticks.len(), seen.len());
    assert!(ticks.len() >= 8, "{ticks:?}");
    assert!(ticks[0].starts_with(&sql_time(first)), "{ticks:?}");
    let unique: HashSet<&String> = ticks.iter().collect();
    assert_eq!(unique.len(), ticks.len(), "a tick queued twice: {ticks:?}");
    // Consecutive seconds: none missed.
    let parse =
        |t: &str| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").expect("time");
    for w in ticks.windows(2) {
        assert_eq!((parse(&w[1]) - parse(&w[0])).num_seconds(), 1, "{ticks:?}");
    }
    // The next tick is after the last queued one; a pass now adds at most
    // the ticks that fell due since.
    let next = s
        .schedule("every-second")
        .await
        .expect("get")
        .expect("there")
        .next_tick
        .expect("next");
    assert!(next > ticks[ticks.len() - 1]);
    // Removing the schedule keeps its jobs.
    s.remove_schedule("every-second").await.expect("remove");
    assert_eq!(ticks_of(&*s, "every-second").await.len(), ticks.len());
}

pub async fn schedule_catch_up_policies(h: &impl Harness) {
    let s = h.store();
    for (name, policy) in [
        ("none", CatchUp::None),
        ("latest", CatchUp::Latest),
        ("all", CatchUp::All),
    ] {
        s.add_schedule(&schedule(name, "* * * * *", policy))
            .await
            .expect("add");
    }
    // Down for ten minutes: every schedule's next tick was 10 minutes ago.
    let before = chrono::Utc::now();
    let ten_ago = before - chrono::TimeDelta::minutes(10);
    let first = ten_ago.format("%Y-%m-%d %H:%M:00").to_string();
    h.sql(&format!(
        "UPDATE cojobs_schedules SET next_tick = '{first}'"
    ))
    .await;
    s.enqueue_due_ticks().await.expect("pass");
    // Ticks surely missed (more than ON_TIME late when the pass ran).
    let missed_until = sql_time(before - cojobs::schedule::ON_TIME - chrono::TimeDelta::seconds(1));
    let missed = |ticks: &[String]| ticks.iter().filter(|t| **t < missed_until).count();
    let none = ticks_of(&*s, "none").await;
    let latest = ticks_of(&*s, "latest").await;
    let all = ticks_of(&*s, "all").await;
    assert_eq!(missed(&none), 0, "{none:?}");
    assert_eq!(missed(&latest), 1, "{latest:?}");
    assert!(missed(&all) >= 9, "{all:?}");
    assert!(all[0].starts_with(&first), "{all:?}");
    // latest's one job is for the latest missed tick, then the on-time
    // ones: both it and none are what all queued, less older ticks.
    assert!(all.ends_with(&latest), "{latest:?} {all:?}");
    assert!(all.ends_with(&none), "{none:?} {all:?}");
    // A second pass queues nothing more: each next tick moved past now.
    assert!(s.enqueue_due_ticks().await.expect("pass").is_empty());
}

// ---- backoff (issue 14) ----

pub async fn exponential_backoff_chain_stays_within_bounds(h: &impl Harness) {
    let s = h.store();
    let mut job = NewJob::new(1, "hello");
    job.retry_interval = Some(100);
    job.max_retry = Some(6);
    job.backoff = Some(cojobs::job::Backoff::Exponential);
    job.backoff_max = Some(1000);
    let mut id = s.queue(&job).await.expect("queue");
    let mut delays = Vec::new();
    for n in 0..6u32 {
        s.claim(&claim("r", 1)).await.expect("claim");
        let before = chrono::Utc::now();
        let next = one_finish(&*s, "r", finish(id, failed("boom")))
            .await
            .expect("finish")
            .expect("a retry");
        let after = chrono::Utc::now();
        let row = s.get(next.id).await.expect("get").expect("row");
        assert_eq!(row.backoff.as_deref(), Some("exponential"), "copied");
        assert_eq!(row.backoff_max, Some(1000), "copied");
        // The delay chosen: start_after_time - queue_time, within
        // [0, min(1000, 100 * 2^n)] (full jitter), give or take the
        // clocks' second.
        let ceiling = (100i64 << n).min(1000);
        let lo = before - chrono::TimeDelta::seconds(2);
        let hi = after + chrono::TimeDelta::seconds(ceiling + 2);
        assert!(
            next.due >= lo && next.due <= hi,
            "retry {n}: {next:?} not in {lo}..{hi}"
        );
        delays.push((next.due - before).num_seconds());
        h.sql(&format!(
            "UPDATE cm_co_jobs SET start_after_time = NULL WHERE id = {}",
            next.id
        ))
        .await;
        id = next.id;
    }
    // Jitter: not the fixed rule's 100 every time.
    assert!(delays.iter().any(|d| (*d - 100).abs() > 3), "{delays:?}");
    // max_retry = 6 is used up.
    s.claim(&claim("r", 1)).await.expect("claim");
    assert_eq!(
        one_finish(&*s, "r", finish(id, failed("boom")))
            .await
            .expect("finish"),
        None
    );
}

// ---- contract 0.2 (issue 13) ----

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn plugin_run() -> PluginRun {
    PluginRun {
        sha256: SHA.to_string(),
        contract: "0.2.0".to_string(),
    }
}

fn child(job_type: &str, n: i64, delay_secs: i64) -> NewChild {
    NewChild {
        job_type: job_type.to_string(),
        job_params: format!(r#"{{"n":{n}}}"#),
        job_mode: Some("fast".to_string()),
        delay_secs,
        max_retry: Some(2),
        retry_interval: Some(30),
    }
}

/// An `OK` end with a result, children and the component that ran.
fn complete_with(id: JobId, children: Vec<NewChild>) -> Finish {
    Finish {
        result: Some(r#"{"count":2,"items":["a","b"]}"#.to_string()),
        children,
        plugin: Some(plugin_run()),
        ..finish(id, ok("done"))
    }
}

pub async fn an_ok_end_commits_result_children_and_component(h: &impl Harness) {
    let s = h.store();
    let co = s.add_co("children", None).await.expect("co");
    let mut job = NewJob::new(co, "contract");
    job.queued_by = Some("ada".into());
    let parent = s.queue(&job).await.expect("queue");
    s.claim(&claim("r", 1)).await.expect("claim");
    let before = chrono::Utc::now() - chrono::TimeDelta::seconds(5);
    let item = complete_with(parent, vec![child("hello", 1, 0), child("later", 2, 3600)]);
    assert_eq!(one_finish(&*s, "r", item).await.expect("finish"), None);
    let row = s.get(parent).await.expect("get").expect("row");
    assert_eq!(row.status, JobStatus::Complete);
    assert_eq!(
        row.result.as_deref(),
        Some(r#"{"count":2,"items":["a","b"]}"#)
    );
    assert_eq!(row.plugin_sha256.as_deref(), Some(SHA));
    assert_eq!(row.plugin_contract.as_deref(), Some("0.2.0"));
    assert_eq!(row.parent_co_job_id, None);
    let kids = s.children(parent, None, 10).await.expect("children");
    assert_eq!(kids.len(), 2, "{kids:?}");
    for (k, (ty, n)) in kids.iter().zip([("hello", 1), ("later", 2)]) {
        assert_eq!(k.parent_co_job_id, Some(parent));
        assert_eq!(k.job_type, ty);
        assert_eq!(k.co_id, co, "a child is its parent's CO's");
        assert_eq!(k.status, JobStatus::Queued);
        let params: serde_json::Value =
            serde_json::from_str(k.job_params.as_deref().expect("params")).expect("json");
        assert_eq!(params, serde_json::json!({ "n": n }));
        assert_eq!(k.job_mode.as_deref(), Some("fast"));
        assert_eq!((k.max_retry, k.retry_interval), (Some(2), Some(30)));
        assert_eq!(k.max_retry_count, Some(0));
        assert_eq!(k.requeued_from_co_job_id, None, "a child is no retry");
        assert_eq!(k.queued_by.as_deref(), Some("ada"));
        assert_eq!(
            k.register_summary.as_deref(),
            Some(format!("queued by job {parent}").as_str())
        );
        assert_eq!(k.result, None);
    }
    // The first is due now, the second in an hour.
    let due = |j: &cojobs::store::Job| {
        chrono::NaiveDateTime::parse_from_str(
            j.start_after_time.as_deref().expect("start_after_time"),
            "%Y-%m-%d %H:%M:%S%.f",
        )
        .expect("a time")
        .and_utc()
    };
    assert!(due(&kids[0]) < before + chrono::TimeDelta::seconds(60));
    assert!(due(&kids[1]) > before + chrono::TimeDelta::seconds(3000));
    let claimed = s.claim(&claim("r2", 5)).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![kids[0].id],
        "the due child is claimable"
    );
    // Paged; none for a job without children or an unknown one.
    let page = s
        .children(parent, Some(kids[0].id), 10)
        .await
        .expect("page");
    assert_eq!(
        page.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![kids[1].id]
    );
    assert_eq!(s.children(parent, None, 1).await.expect("one").len(), 1);
    assert!(
        s.children(kids[0].id, None, 10)
            .await
            .expect("none")
            .is_empty()
    );
    assert!(
        s.children(JobId(999_999), None, 10)
            .await
            .expect("none")
            .is_empty()
    );
    // Pruning the parent keeps the children, unlinked.
    let pruned = s
        .prune(chrono::Utc::now() + chrono::TimeDelta::days(1))
        .await
        .expect("prune");
    assert!(pruned >= 1);
    assert!(s.get(parent).await.expect("get").is_none());
    let orphan = s.get(kids[1].id).await.expect("get").expect("kept");
    assert_eq!(orphan.parent_co_job_id, None);
}

pub async fn a_failed_or_lost_end_queues_no_children_and_stores_no_result(h: &impl Harness) {
    let s = h.store();
    let mut job = NewJob::new(1, "contract");
    job.retry_interval = Some(1);
    let parent = s.queue(&job).await.expect("queue");
    s.claim(&claim("r", 1)).await.expect("claim");
    let item = Finish {
        outcome: failed("boom"),
        ..complete_with(parent, vec![child("hello", 1, 0)])
    };
    let retry = one_finish(&*s, "r", item)
        .await
        .expect("finish")
        .expect("a retry");
    let row = s.get(parent).await.expect("get").expect("row");
    assert_eq!(row.status, JobStatus::Failed);
    assert_eq!(row.result, None, "a result is stored with an OK end only");
    assert_eq!(
        row.plugin_sha256.as_deref(),
        Some(SHA),
        "which code ran, whatever the end"
    );
    assert!(
        s.children(parent, None, 10)
            .await
            .expect("children")
            .is_empty()
    );
    assert_eq!(
        s.list(&ListFilter::default(), None)
            .await
            .expect("list")
            .len(),
        2,
        "the parent and its retry, no child"
    );
    // The retry ends OK: its children, once, linked to it.
    h.sql(&format!(
        "UPDATE cm_co_jobs SET start_after_time = NULL WHERE id = {}",
        retry.id
    ))
    .await;
    assert_eq!(
        s.claim(&claim("r", 1)).await.expect("claim")[0].id,
        retry.id
    );
    let done = complete_with(retry.id, vec![child("hello", 1, 0)]);
    one_finish(&*s, "r", done.clone()).await.expect("finish");
    // A late repeat of the same end (not ours any more) writes nothing.
    let again = one_finish(&*s, "r", done).await.expect_err("not ours");
    assert_eq!(again.kind(), ErrorKind::Conflict);
    let kids = s.children(retry.id, None, 10).await.expect("children");
    assert_eq!(kids.len(), 1, "{kids:?}");
    // A canceled run's children are not queued either.
    let c = s.queue(&NewJob::new(1, "contract")).await.expect("queue");
    let claimed = s.claim(&claim("r", 5)).await.expect("claim");
    assert!(claimed.iter().any(|j| j.id == c));
    let cx = Finish {
        outcome: Outcome::Canceled {
            summary: "canceled by ada".into(),
        },
        ..complete_with(c, vec![child("hello", 1, 0)])
    };
    one_finish(&*s, "r", cx).await.expect("finish");
    assert!(s.children(c, None, 10).await.expect("children").is_empty());
    assert_eq!(s.get(c).await.expect("get").expect("row").result, None);
}

pub async fn retry_after_sets_the_retry_delay_within_the_policy(h: &impl Harness) {
    let s = h.store();
    let after = |secs| Outcome::Failed {
        summary: "rate limited".into(),
        retry: Retry::After(secs),
    };
    // The plugin's delay, not the hour of retry_interval nor the backoff.
    for backoff in [None, Some(cojobs::job::Backoff::Exponential)] {
        let mut job = NewJob::new(1, "api");
        job.retry_interval = Some(3600);
        job.max_retry = Some(1);
        job.backoff = backoff;
        let id = s.queue(&job).await.expect("queue");
        let claimed = s.claim(&claim("r", 10)).await.expect("claim");
        assert!(claimed.iter().any(|j| j.id == id));
        let start = chrono::Utc::now();
        let retry = one_finish(&*s, "r", finish(id, after(120)))
            .await
            .expect("finish")
            .expect("a retry");
        let delay = (retry.due - start).num_seconds();
        assert!(
            (100..=130).contains(&delay),
            "{backoff:?}: due in {delay} s"
        );
        let row = s.get(retry.id).await.expect("get").expect("row");
        assert_eq!(row.max_retry_count, Some(1));
        assert_eq!(row.requeued_from_co_job_id, Some(id));
        // max_retry = 1 is used up: the next retry-after queues nothing.
        h.sql(&format!(
            "UPDATE cm_co_jobs SET start_after_time = NULL WHERE id = {}",
            retry.id
        ))
        .await;
        let claimed = s.claim(&claim("r", 10)).await.expect("claim");
        assert!(claimed.iter().any(|j| j.id == retry.id));
        assert_eq!(
            one_finish(&*s, "r", finish(retry.id, after(5)))
                .await
                .expect("finish"),
            None
        );
    }
    // No retry interval: the policy allows no retry, whatever the plugin asks.
    let id = s.queue(&NewJob::new(1, "api")).await.expect("queue");
    s.claim(&claim("r", 10)).await.expect("claim");
    assert_eq!(
        one_finish(&*s, "r", finish(id, after(5)))
            .await
            .expect("finish"),
        None
    );
    // An absurd delay is bounded (10 years), never an overflow.
    let mut job = NewJob::new(1, "api");
    job.retry_interval = Some(60);
    let id = s.queue(&job).await.expect("queue");
    s.claim(&claim("r", 10)).await.expect("claim");
    let retry = one_finish(&*s, "r", finish(id, after(i64::MAX)))
        .await
        .expect("finish")
        .expect("a retry");
    let years = (retry.due - chrono::Utc::now()).num_days() / 365;
    assert!((9..=10).contains(&years), "due in {years} years");
}

// ---- priorities, limits and pause (issue 14) ----

/// A plugin's texts may hold NUL, which PostgreSQL refuses in `text`: the
/// status line, the finish summary, the log, history keys and comments and
/// a release summary are stored all the same, and the job ends. PostgreSQL
/// escapes each NUL as `\0` (SQLite keeps it): the body reads both in the
/// escaped form. (A result is JSON, where NUL can only be the escape
/// `\u0000`, stored as written.)
pub async fn plugin_text_with_nul_is_stored(h: &impl Harness) {
    let s = h.store();
    let ids = two_claimed(&*s).await;
    started(&*s, "r", &ids).await;
    let esc = |t: Option<String>| t.map(|t| t.replace('\0', "\\0"));
    let line = Progress {
        id: ids[0],
        percent: 50,
        status_line: Some("half\0way".into()),
        plugin: None,
    };
    s.progress("r", &[line]).await.expect("progress");
    let row = s.get(ids[0]).await.expect("get").expect("row");
    assert_eq!(esc(row.status_line).as_deref(), Some("half\\0way"));
    let item = Finish {
        log: Some("line\0one\n".into()),
        result: Some(r#"{"text":"a\u0000b"}"#.into()),
        history: vec![NewHistoryRecord {
            co_job_id: ids[0],
            record_key: Some("k\0".into()),
            co_person_id: None,
            org_identity_id: None,
            comment: "c\0d".into(),
            status: RecordStatus::Ok,
        }],
        ..finish(ids[0], ok("done\0now"))
    };
    assert_eq!(one_finish(&*s, "r", item).await.expect("finish"), None);
    let row = s.get(ids[0]).await.expect("get").expect("row");
    assert_eq!(row.status, JobStatus::Complete);
    assert_eq!(esc(row.finish_summary).as_deref(), Some("done\\0now"));
    assert_eq!(esc(row.job_log).as_deref(), Some("line\\0one\n"));
    assert_eq!(row.result.as_deref(), Some(r#"{"text":"a\u0000b"}"#));
    let history = s.history(ids[0]).await.expect("history");
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(esc(history[0].record_key.clone()).as_deref(), Some("k\\0"));
    assert_eq!(esc(history[0].comment.clone()).as_deref(), Some("c\\0d"));
    // A release summary carries the plugin's message; escaping happens
    // before the cut to 256 characters, so a long one still fits.
    let summary = format!("asked to retry: {}", "\0".repeat(300));
    let released = s.release("r", ids[1], &summary).await.expect("release");
    assert!(matches!(released, Released::Queued), "{released:?}");
    let row = s.get(ids[1]).await.expect("get").expect("row");
    assert_eq!(row.status, JobStatus::Queued);
    let start = esc(row.start_summary).unwrap_or_default();
    assert!(start.starts_with("asked to retry: \\0\\0"), "{start:?}");
}

fn with_priority(co: i64, job_type: &str, priority: i64) -> NewJob {
    NewJob {
        priority: Some(priority),
        ..NewJob::new(co, job_type)
    }
}

/// Issue 14: within a CO the highest priority (smallest number) first, then
/// the oldest; across COs round-robin (the 1st of every CO, then the
/// 2nd...), a rank's rows by priority. A plain-SQL row is priority 5.
pub async fn priority_order_over_two_cos_and_three_priorities(h: &impl Harness) {
    let s = h.store();
    let co2 = s.add_co("second", None).await.expect("co");
    // Queued one at a time, oldest first; two types so that the order is
    // over types too.
    let mut ids = Vec::new();
    for (co, ty, p) in [
        (1, "hello", 9),
        (1, "other", 5),
        (co2, "hello", 5),
        (1, "hello", 1),
        (co2, "other", 9),
        (1, "other", 5),
        (co2, "hello", 1),
        (1, "hello", 9),
    ] {
        ids.push(s.queue(&with_priority(co, ty, p)).await.expect("queue"));
    }
    h.sql("INSERT INTO cm_co_jobs (co_id, job_type, status) VALUES (1, 'plain', 'Q')")
        .await;
    let plain = s
        .list(
            &ListFilter {
                job_type: Some("plain".into()),
                ..ListFilter::default()
            },
            None,
        )
        .await
        .expect("list");
    assert_eq!(plain[0].priority, 5, "a plain-SQL row gets the default");
    let got = s.claim(&claim("r", 20)).await.expect("claim");
    let order: Vec<(i64, i64)> = got.iter().map(|j| (j.co_id, j.priority)).collect();
    // By (priority, due, id) within a CO; the plain row has no queue time,
    // so it is due first among the 5s. CO 1 = [p1 #4, p5 plain (due ''), p5 #2, p5 #6, p9 #1,
    // p9 #8]; CO 2 = [p1 #7, p5 #3, p9 #5]. Round-robin by rank, a rank's
    // rows by priority, due, id.
    assert_eq!(
        order,
        vec![
            (1, 1),
            (co2, 1),
            (1, 5),
            (co2, 5),
            (1, 5),
            (co2, 9),
            (1, 5),
            (1, 9),
            (1, 9),
        ],
        "{got:#?}"
    );
    let want_ids = vec![
        ids[3],
        ids[6],
        plain[0].id,
        ids[2],
        ids[1],
        ids[4],
        ids[5],
        ids[0],
        ids[7],
    ];
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), want_ids);
    // One at a time, the same rule: the best head of any CO.
    for (co, ty, p) in [(1, "a", 5), (co2, "a", 3), (1, "b", 2)] {
        s.queue(&with_priority(co, ty, p)).await.expect("queue");
    }
    let mut one_by_one = Vec::new();
    for _ in 0..3 {
        let got = s.claim(&claim("r", 1)).await.expect("claim");
        one_by_one.extend(got.into_iter().map(|j| (j.co_id, j.priority)));
    }
    assert_eq!(one_by_one, vec![(1, 2), (co2, 3), (1, 5)]);
    // Successors keep the priority.
    let id = s
        .queue(&NewJob {
            retry_interval: Some(1),
            ..with_priority(1, "retried", 2)
        })
        .await
        .expect("queue");
    let got = s.claim(&claim("r", 1)).await.expect("claim");
    assert_eq!(got[0].id, id);
    let next = one_finish(&*s, "r", finish(id, failed("boom")))
        .await
        .expect("finish")
        .expect("a retry");
    assert_eq!(s.get(next.id).await.expect("get").expect("row").priority, 2);
}

async fn claimed_ids(s: &dyn JobStore, runner: &str, max: usize) -> Vec<JobId> {
    s.claim(&claim(runner, max))
        .await
        .expect("claim")
        .into_iter()
        .map(|j| j.id)
        .collect()
}

async fn running_of(s: &dyn JobStore, job_type: &str) -> usize {
    s.list(
        &ListFilter {
            status: Some(JobStatus::InProgress),
            job_type: Some(job_type.into()),
            ..ListFilter::default()
        },
        None,
    )
    .await
    .expect("list")
    .len()
}

/// Issue 14: `concurrency` caps the `GO` rows of a type whoever claims
/// them; `rate` caps starts per window; other types are not held back.
pub async fn type_concurrency_and_rate_hold_across_stores(h: &impl Harness) {
    let s = h.store();
    let other_runner = h.another().await;
    let limits = TypeLimits {
        concurrency: Some(2),
        rate: None,
    };
    s.set_type_limits("capped", &limits).await.expect("limits");
    let jobs: Vec<NewJob> = (0..5).map(|_| NewJob::new(1, "capped")).collect();
    let capped = s.queue_many(&jobs).await.expect("queue");
    let free = s.queue(&NewJob::new(1, "free")).await.expect("queue");
    let a = claimed_ids(&*s, "a", 10).await;
    assert_eq!(a.len(), 3, "two capped and the free one: {a:?}");
    assert!(a.contains(&free));
    assert!(
        claimed_ids(&*other_runner, "b", 10).await.is_empty(),
        "at the cap"
    );
    assert!(
        other_runner
            .claim_one(&claim("b", 1), capped[4])
            .await
            .expect("claim one")
            .is_none(),
        "claim_one obeys the cap too"
    );
    one_finish(&*s, "a", finish(a[0], ok("done")))
        .await
        .expect("finish");
    let b = claimed_ids(&*other_runner, "b", 10).await;
    assert_eq!(b.len(), 1, "room for one again");
    assert_eq!(running_of(&*s, "capped").await, 2);
    // Lifting the limit frees the rest.
    s.set_type_limits("capped", &TypeLimits::default())
        .await
        .expect("limits");
    assert_eq!(claimed_ids(&*other_runner, "b", 10).await.len(), 2);

    // Rate: 3 starts per minute, ended or not.
    let rate = TypeLimits {
        concurrency: None,
        rate: Some(Rate {
            max: 3,
            window_secs: 60,
        }),
    };
    s.set_type_limits("rated", &rate).await.expect("limits");
    let jobs: Vec<NewJob> = (0..5).map(|_| NewJob::new(1, "rated")).collect();
    s.queue_many(&jobs).await.expect("queue");
    // Claimed without starting: each counts as a start already.
    let first = claimed_ids(&*s, "a", 2).await;
    assert_eq!(first.len(), 2);
    let mut starting = claim("b", 10);
    starting.start = true;
    let second = other_runner.claim(&starting).await.expect("claim");
    assert_eq!(second.len(), 1, "3 per minute");
    started(&*s, "a", &first).await;
    for id in &first {
        one_finish(&*s, "a", finish(*id, ok("done")))
            .await
            .expect("finish");
    }
    one_finish(&*other_runner, "b", finish(second[0].id, ok("done")))
        .await
        .expect("finish");
    assert!(
        claimed_ids(&*s, "a", 10).await.is_empty(),
        "ended runs still count within the window"
    );
    let t = s.throttles().await.expect("throttles");
    let rated = t
        .types
        .iter()
        .find(|t| t.job_type == "rated")
        .expect("rated");
    assert_eq!(rated.rate.as_deref(), Some("3/min"));
    let capped = t
        .types
        .iter()
        .find(|t| t.job_type == "capped")
        .expect("capped");
    assert_eq!((capped.concurrency, capped.rate.as_deref()), (None, None));
}

/// Issue 14: eight claimers racing on separate connections never hold more
/// than `concurrency` rows of a type between them.
pub async fn type_concurrency_holds_under_racing_claimers(h: &impl Harness) {
    const CAP: usize = 3;
    let s = h.store();
    s.set_type_limits(
        "capped",
        &TypeLimits {
            concurrency: Some(CAP as i64),
            rate: None,
        },
    )
    .await
    .expect("limits");
    let jobs: Vec<NewJob> = (0..60).map(|_| NewJob::new(1, "capped")).collect();
    s.queue_many(&jobs).await.expect("queue");
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8 {
        let store = h.another().await;
        tasks.spawn(async move {
            let runner = format!("runner-{n}");
            let (mut done, mut most) = (0, 0);
            // Claim, look how many run, end them; until every row has run.
            for _ in 0..2000 {
                let got = store.claim(&claim(&runner, 4)).await.expect("claim");
                if !got.is_empty() {
                    most = most.max(running_of(&*store, "capped").await);
                }
                for j in got {
                    one_finish(&*store, &runner, finish(j.id, ok("done")))
                        .await
                        .expect("finish");
                    done += 1;
                }
                let left = store
                    .counts_by_status()
                    .await
                    .expect("counts")
                    .into_iter()
                    .any(|(st, n)| st == JobStatus::Queued && n > 0);
                if !left {
                    break;
                }
            }
            (done, most)
        });
    }
    let (mut total, mut most) = (0, 0);
    let mut claimers_with_rows = 0;
    while let Some(r) = tasks.join_next().await {
        let (done, m) = r.expect("task");
        total += done;
        most = most.max(m);
        claimers_with_rows += usize::from(done > 0);
    }
    assert_eq!(total, 60, "every row ran once");
    assert!(most <= CAP, "{most} running at once, cap {CAP}");
    assert!(claimers_with_rows > 1, "the claimers ran side by side");
}

/// Issue 14: `max_running` caps the `GO` rows of a CO over all runners.
pub async fn co_max_running_holds_across_stores(h: &impl Harness) {
    let s = h.store();
    let b = h.another().await;
    let co2 = s.add_co("second", None).await.expect("co");
    s.set_co_max_running(co2, Some(2)).await.expect("set");
    let mut jobs: Vec<NewJob> = (0..4).map(|_| NewJob::new(co2, "hello")).collect();
    jobs.extend((0..3).map(|_| NewJob::new(1, "hello")));
    s.queue_many(&jobs).await.expect("queue");
    // CO 2's rows are older (lower ids, same queue time): first in a rank.
    let got = s.claim(&claim("a", 2)).await.expect("claim");
    let cos: Vec<i64> = got.iter().map(|j| j.co_id).collect();
    assert_eq!(cos, vec![co2, 1], "round-robin");
    let more = b.claim(&claim("b", 10)).await.expect("claim");
    assert_eq!(more.len(), 3, "{more:#?}");
    assert_eq!(
        more.iter().filter(|j| j.co_id == co2).count(),
        1,
        "CO {co2} had room for one more"
    );
    assert!(b.claim(&claim("b", 10)).await.expect("claim").is_empty());
    s.set_co_max_running(co2, None).await.expect("clear");
    assert_eq!(b.claim(&claim("b", 10)).await.expect("claim").len(), 2);
    let t = s.throttles().await.expect("throttles");
    assert_eq!(t.cos.len(), 1);
    assert_eq!(t.cos[0].max_running, None);
}

/// Issue 14: a paused type or CO keeps its queued rows out of claims
/// (claim and claim_one), running rows end normally, resume frees them.
pub async fn pause_and_resume_types_and_cos(h: &impl Harness) {
    let s = h.store();
    let co2 = s.add_co("second", None).await.expect("co");
    let running = s.queue(&NewJob::new(1, "paused")).await.expect("queue");
    assert_eq!(claimed_ids(&*s, "r", 1).await, vec![running]);
    let t = PauseTarget::Type("paused".into());
    assert!(s.pause(&t, "ada").await.expect("pause"));
    assert!(
        !s.pause(&t, "bob").await.expect("pause again"),
        "already paused"
    );
    // Many paused rows ahead of another type: it is not held back.
    let jobs: Vec<NewJob> = (0..50).map(|_| NewJob::new(1, "paused")).collect();
    let paused_ids = s.queue_many(&jobs).await.expect("queue");
    let other = s.queue(&NewJob::new(1, "other")).await.expect("queue");
    assert_eq!(claimed_ids(&*s, "r", 10).await, vec![other]);
    assert!(
        s.claim_one(&claim("r", 1), paused_ids[0])
            .await
            .expect("one")
            .is_none()
    );
    // The running row of the paused type ends as usual.
    one_finish(&*s, "r", finish(running, ok("done")))
        .await
        .expect("finish");
    let throttles = s.throttles().await.expect("throttles");
    assert_eq!(throttles.paused_types(), vec!["paused"]);
    assert_eq!(throttles.types[0].paused_by.as_deref(), Some("ada"));
    assert_eq!(
        throttles.paused_line().as_deref(),
        Some("paused: job types paused")
    );
    // A paused CO.
    let c = PauseTarget::Co(co2);
    assert!(s.pause(&c, "ada").await.expect("pause co"));
    s.queue(&NewJob::new(co2, "other")).await.expect("queue");
    assert!(claimed_ids(&*s, "r", 10).await.is_empty());
    assert_eq!(
        s.throttles()
            .await
            .expect("throttles")
            .paused_line()
            .as_deref(),
        Some(format!("paused: job types paused; COs {co2}").as_str())
    );
    assert!(s.resume(&c).await.expect("resume"));
    assert!(!s.resume(&c).await.expect("resume again"), "not paused");
    assert_eq!(claimed_ids(&*s, "r", 10).await.len(), 1);
    assert!(s.resume(&t).await.expect("resume"));
    assert_eq!(claimed_ids(&*s, "r", 100).await.len(), 50);
    assert_eq!(s.throttles().await.expect("throttles").paused_line(), None);
}

/// Issue 14: bad input to the limit operations is [`ErrorKind::Input`]
/// and writes nothing.
pub async fn limits_refuse_bad_input(h: &impl Harness) {
    fn kind<T: std::fmt::Debug>(r: Result<T, cojobs::store::driver::Error>) -> ErrorKind {
        r.expect_err("refused").kind()
    }
    let s = h.store();
    assert_eq!(
        kind(s.set_co_max_running(99, Some(2)).await),
        ErrorKind::Input
    );
    assert_eq!(
        kind(s.set_co_max_running(1, Some(0)).await),
        ErrorKind::Input
    );
    assert_eq!(
        kind(s.pause(&PauseTarget::Co(99), "x").await),
        ErrorKind::Input
    );
    assert_eq!(kind(s.resume(&PauseTarget::Co(99)).await), ErrorKind::Input);
    assert_eq!(
        kind(s.pause(&PauseTarget::Type("../x".into()), "x").await),
        ErrorKind::Input
    );
    assert_eq!(
        kind(s.set_type_limits("a b", &TypeLimits::default()).await),
        ErrorKind::Input
    );
    assert_eq!(
        kind(s.queue(&with_priority(1, "hello", 0)).await),
        ErrorKind::Input
    );
    assert_eq!(
        kind(s.queue(&with_priority(1, "hello", 10)).await),
        ErrorKind::Input
    );
    assert_eq!(s.throttles().await.expect("throttles"), Default::default());
    assert!(
        s.list(&ListFilter::default(), None)
            .await
            .expect("list")
            .is_empty(),
        "nothing queued"
    );
}

fn runner_record(id: &str) -> RunnerRecord {
    RunnerRecord {
        id: id.to_string(),
        host: "box".to_string(),
        pid: 42,
        workers: 4,
        running: 0,
        lease_secs: 30,
    }
}

/// Issue 12: a runner's row is written at start, refreshed at each
/// heartbeat (its start kept), listed with the age of its heartbeat on the
/// database's clock, taken for dead past its lease, forgotten after an
/// hour, and removed at a clean exit.
pub async fn runners_recorded_listed_and_removed(h: &impl Harness) {
    let s = h.store();
    assert!(s.list_runners().await.expect("list").is_empty());
    let mut r = runner_record("box-1");
    s.record_runner(&r).await.expect("record");
    let first = s.list_runners().await.expect("list");
    assert_eq!(first.len(), 1, "{first:?}");
    let one = &first[0];
    assert_eq!(
        (
            one.id.as_str(),
            one.host.as_str(),
            one.pid,
            one.workers,
            one.running,
            one.lease_secs
        ),
        ("box-1", "box", 42, 4, 0, 30)
    );
    assert!(one.alive && one.heartbeat_age_secs <= 5, "{one:?}");
    assert_eq!(one.started, one.heartbeat);
    tokio::time::sleep(Duration::from_millis(30)).await;
    r.running = 3;
    s.record_runner(&r).await.expect("heartbeat");
    let again = s.list_runners().await.expect("list");
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!((again[0].running, &again[0].started), (3, &one.started));
    assert!(again[0].heartbeat > one.heartbeat, "{again:?}");

    // Another process's runner, whose lease (0 s) its heartbeat outlives.
    let other = h.another().await;
    other
        .record_runner(&RunnerRecord {
            lease_secs: 0,
            ..runner_record("box-2")
        })
        .await
        .expect("record another");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let both = s.list_runners().await.expect("list");
    let states: Vec<(&str, bool)> = both.iter().map(|r| (r.id.as_str(), r.alive)).collect();
    assert_eq!(states, vec![("box-1", true), ("box-2", false)]);

    // Silent for over an hour: forgotten at the next runner's record.
    h.sql("UPDATE cojobs_runners SET heartbeat = '2000-01-01 00:00:00' WHERE id = 'box-2'")
        .await;
    s.record_runner(&r).await.expect("heartbeat");
    let left: Vec<String> = s
        .list_runners()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, vec!["box-1".to_string()]);
    s.remove_runner("box-1").await.expect("remove");
    s.remove_runner("box-1")
        .await
        .expect("removing twice is no error");
    assert!(s.list_runners().await.expect("list").is_empty());
}

/// (ok, failed, canceled) over the window.
fn ends(a: &Activity) -> (i64, i64, i64) {
    a.per_minute.iter().fold((0, 0, 0), |(o, f, c), m| {
        (o + m.ok, f + m.failed, c + m.canceled)
    })
}

/// Issue 12: the last hour's ends per minute and queue latencies, of one
/// CO or all, on the database's clock; older ends and live rows are not
/// counted.
pub async fn activity_counts_recent_ends_and_latencies(h: &impl Harness) {
    let s = h.store();
    let co2 = s.add_co("two", None).await.expect("co");
    let empty = s.activity(None, 60).await.expect("activity");
    assert_eq!(empty.per_minute.len(), 60);
    assert_eq!((ends(&empty), empty.latencies.len()), ((0, 0, 0), 0));
    s.queue_many(&[
        NewJob::new(1, "a"),
        NewJob::new(1, "a"),
        NewJob::new(1, "a"),
        NewJob::new(co2, "a"),
        NewJob::new(1, "still-queued"),
    ])
    .await
    .expect("queue");
    let spec = Claim {
        start: true,
        ..claim("r1", 4)
    };
    let claimed = s.claim(&spec).await.expect("claim");
    assert_eq!(claimed.len(), 4);
    let outcomes: Vec<Outcome> = claimed
        .iter()
        .map(|j| match j.co_id {
            1 if j.id == claimed[0].id => failed("boom"),
            1 => ok("fine"),
            _ => Outcome::Canceled {
                summary: "canceled by ada".into(),
            },
        })
        .collect();
    let items: Vec<Finish> = claimed
        .iter()
        .zip(outcomes)
        .map(|(j, o)| finish(j.id, o))
        .collect();
    for r in s.finish("r1", &items).await.expect("finish") {
        r.expect("each finish");
    }
    let a = s.activity(None, 60).await.expect("activity");
    assert_eq!(a.per_minute.len(), 60);
    let co1_failed = i64::from(claimed[0].co_id == 1);
    assert_eq!(ends(&a), (3 - co1_failed, co1_failed, 1), "{a:?}");
    assert_eq!(a.latencies.len(), 4, "{a:?}");
    assert!(a.latencies.iter().all(|l| (0.0..60.0).contains(l)), "{a:?}");
    let last = a.per_minute.last().expect("a minute");
    assert_eq!(last.minute, cojobs::store::activity::minute_of(a.now));

    let two = s.activity(Some(co2), 60).await.expect("activity");
    assert_eq!((ends(&two), two.latencies.len()), ((0, 0, 1), 1));
    // An end older than the window is not counted.
    h.sql(&format!(
        "UPDATE cm_co_jobs SET complete_time = '2000-01-01 00:00:00' WHERE co_id = {co2}"
    ))
    .await;
    let old = s.activity(Some(co2), 60).await.expect("activity");
    assert_eq!((ends(&old), old.latencies.len()), ((0, 0, 0), 0));
    assert!(
        s.activity(None, 0)
            .await
            .expect("activity")
            .per_minute
            .is_empty()
    );
}
