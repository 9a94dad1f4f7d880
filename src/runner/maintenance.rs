//! The runner's housekeeping loop: heartbeat, rescue, progress, cancels.
//!
//! Every [`TICK`]: write the progress that changed (so a plugin calling
//! `progress` a million times costs at most one write per job per tick)
//! and look for cancel requests on this runner's jobs. A cancel first makes
//! the plugin's `cancel-requested` true; a plugin still running
//! [`CANCEL_GRACE`] later is interrupted. Every third of the lease: extend
//! this runner's leases, stop at once any run whose row is no longer this
//! runner's (a runner stalled past its lease, SIGSTOP or swap, finds its
//! rows rescued and retried elsewhere: its copy must not run on beside the
//! retry), rescue rows whose runner stopped responding, and refresh this
//! runner's row in the store (what `cojobs serve` lists as runners). Every
//! tick too, the schedule pass: queue the due ticks of cron schedules
//! (every runner makes it; the store queues each tick once,
//! `docs/design.md#schedules`). Every [`LIMITS_EVERY`]: copy the side
//! files' `concurrency` and `rate` to the database when they changed
//! (`docs/design.md#limits-and-pause`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{CANCEL_PREFIX, LEASE_LOST, Runner};
use crate::store::JobId;
use crate::store::driver::{Progress, Rescued};
use crate::throttle::TypeLimits;

/// How often progress is written and cancel requests are read.
pub const TICK: Duration = Duration::from_millis(500);
/// How often the side files' limits are read again.
pub const LIMITS_EVERY: Duration = Duration::from_secs(5);
/// How long a canceled plugin may take to stop by itself.
pub const CANCEL_GRACE: Duration = Duration::from_secs(3);

pub(super) async fn run(runner: Arc<Runner>, mut stop: watch::Receiver<bool>) {
    let lease_every = (runner.config.lease / 3).max(Duration::from_millis(200));
    let mut last_lease = Instant::now();
    let mut last_limits = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        flush_progress(&runner).await;
        schedule_pass(&runner).await;
        if last_limits.elapsed() >= LIMITS_EVERY {
            last_limits = Instant::now();
            sync_type_limits(&runner).await;
        }
        if let Err(e) = cancels(&runner).await {
            tracing::warn!("cannot read cancel requests: {e}");
        }
        if last_lease.elapsed() >= lease_every {
            last_lease = Instant::now();
            heartbeat(&runner).await;
            runner.record_self().await;
            match runner.store.rescue().await {
                Ok(rescued) if !rescued.is_empty() => {
                    runner.note_rescued(&rescued);
                    for r in rescued {
                        let successor = match &r {
                            Rescued::Ended { successor, .. } => successor.map(|s| s.id.0),
                            Rescued::Requeued(_) => None,
                        };
                        tracing::warn!(
                            job = r.id().0,
                            successor,
                            "rescued a job whose runner stopped responding"
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("rescue failed: {e}"),
            }
        }
    }
}

/// Queue the due ticks of cron schedules.
async fn schedule_pass(runner: &Runner) {
    match runner.store.enqueue_due_ticks().await {
        Ok(ids) if !ids.is_empty() => {
            tracing::info!(jobs = ids.len(), "queued due schedule ticks");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("schedule pass failed: {e}"),
    }
}

/// Copy the `concurrency` and `rate` of every plugin's side file to the
/// database when they differ from what this runner last wrote (so after a
/// side file changes, and at start). A side file that does not read is
/// logged and its type's limits left as they are; jobs of that type fail
/// with the same message when their plugin loads.
pub(super) async fn sync_type_limits(runner: &Runner) {
    let sandbox = Arc::clone(&runner.sandbox);
    let read = tokio::task::spawn_blocking(move || sandbox.type_limits()).await;
    let found = match read {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::warn!("cannot read the plugins directory for limits: {e}");
            return;
        }
        Err(e) => {
            tracing::warn!("reading the side files' limits stopped: {e}");
            return;
        }
    };
    for (job_type, limits) in found {
        let limits = match limits {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(job_type = %job_type, "limits not updated: {e}");
                continue;
            }
        };
        let known = runner
            .type_limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&job_type)
            .copied();
        // At start every type is written once: a limit since removed
        // from its side file is cleared.
        if known == Some(limits) {
            continue;
        }
        if let Err(e) = runner.store.set_type_limits(&job_type, &limits).await {
            tracing::warn!(job_type = %job_type, "cannot record limits: {e}");
            continue;
        }
        if limits != TypeLimits::default() {
            tracing::info!(
                job_type = %job_type,
                concurrency = ?limits.concurrency,
                rate = ?limits.rate.map(|r| r.to_string()),
                "job type limits recorded"
            );
        }
        runner
            .type_limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(job_type, limits);
    }
}

/// Extend our leases; interrupt the runs whose row is no longer ours.
async fn heartbeat(runner: &Runner) {
    // Runs listed before the heartbeat: each had its start recorded (so its
    // row was ours) before the heartbeat's statement ran.
    let before: Vec<JobId> = runner.running().keys().copied().collect();
    let me = &runner.config.runner_id;
    let held: HashSet<JobId> = match runner.store.heartbeat(me, runner.config.lease).await {
        Ok(held) => held.into_iter().collect(),
        Err(e) => {
            tracing::warn!("heartbeat failed: {e}");
            return;
        }
    };
    let running = runner.running();
    for id in before.iter().filter(|id| !held.contains(id)) {
        // Still running (one that ended meanwhile may have ended its row).
        if let Some(r) = running.get(id) {
            tracing::warn!(
                job = id.0,
                "lease lost: the row is no longer this runner's (rescued while this runner \
                 was stalled?); stopping its run now"
            );
            r.interrupt.fire(LEASE_LOST);
        }
    }
}

/// Write the progress that changed since the last tick. Advisory: a
/// failed write is logged, and the next change is written again.
async fn flush_progress(runner: &Runner) {
    let updates: Vec<Progress> = runner
        .running()
        .iter()
        .filter_map(|(id, r)| {
            r.shared.take_progress().map(|(p, l, plugin)| Progress {
                id: *id,
                percent: i64::from(p),
                status_line: l,
                plugin,
            })
        })
        .collect();
    if updates.is_empty() {
        return;
    }
    if let Err(e) = runner
        .store
        .progress(&runner.config.runner_id, &updates)
        .await
    {
        tracing::warn!("could not record progress: {e}");
    }
}

async fn cancels(runner: &Runner) -> Result<(), crate::store::driver::Error> {
    if runner.running().is_empty() {
        return Ok(());
    }
    let requests = runner
        .store
        .cancel_requests(&runner.config.runner_id)
        .await?;
    let running = runner.running();
    for (id, who) in requests {
        let Some(r) = running.get(&id) else { continue };
        let mut seen = r
            .cancel_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*seen {
            None => {
                *r.shared
                    .cancel_by
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(who.clone());
                r.shared.cancel.store(true, Ordering::Relaxed);
                tracing::info!(
                    job = id.0,
                    "cancel requested by {who}: asking the plugin to stop"
                );
                *seen = Some((Instant::now(), who));
            }
            Some((at, who)) if at.elapsed() >= CANCEL_GRACE => {
                tracing::info!(
                    job = id.0,
                    "plugin did not stop within {CANCEL_GRACE:?}: interrupting it"
                );
                r.interrupt.fire(format!("{CANCEL_PREFIX}{who}"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}
