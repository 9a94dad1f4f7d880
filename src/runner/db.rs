//! The runner's one database connection, owned by a dedicated thread.
//!
//! SQLite takes one writer at a time, and rusqlite's `Connection` is not
//! `Sync`: so every store call of the runner goes through this thread as a
//! message, never blocking the async runtime. Finishes that arrive together
//! are written in one transaction (group commit), which is what makes the
//! runner's database cost per job small.
//!
//! A database locked by another process is waited for, never reported as
//! an error ([`patiently`]): the runner does not exit because a bulk
//! queue holds the write lock, and no job fails for it.
//!
//! The thread ends when every [`Db`] handle is dropped.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use crate::job::JobStatus;
use crate::store::driver::Claim;
use crate::store::{Finish, Job, JobId, Store, StoreError};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Cmd {
    Claim {
        claim: Claim,
        reply: Reply<Vec<Job>>,
    },
    ClaimOne {
        claim: Claim,
        id: JobId,
        reply: Reply<Option<Job>>,
    },
    Finish {
        item: Finish,
        reply: Reply<Option<JobId>>,
    },
    Release {
        id: JobId,
        summary: String,
        reply: Reply<JobStatus>,
    },
    Progress {
        updates: Vec<(JobId, u8, Option<String>)>,
    },
    Heartbeat {
        reply: Reply<Vec<JobId>>,
    },
    Rescue {
        reply: Reply<Vec<Rescued>>,
    },
    CancelRequests {
        reply: Reply<Vec<(JobId, String)>>,
    },
    NextDue {
        reply: Reply<Option<String>>,
    },
    DataVersion {
        reply: Reply<i64>,
    },
    EnqueueTicks {
        reply: Reply<Vec<JobId>>,
    },
}

/// A row rescued from a runner that stopped responding.
#[derive(Debug)]
pub struct Rescued {
    pub id: JobId,
    /// Its retry, if the policy allows one, and when that is due (as
    /// stored): `--once` waits for it like for its own successors.
    pub successor: Option<(JobId, Option<String>)>,
}

/// A handle to the database thread. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    tx: mpsc::Sender<Cmd>,
    runner_id: String,
    lease: Duration,
}

/// The database thread is gone (it only stops when the runner does).
fn gone() -> StoreError {
    StoreError::Unavailable("the runner's database thread stopped".to_string())
}

/// Most commands handled (finishes written in one transaction) at once.
const MAX_GROUP: usize = 512;

impl Db {
    /// Start the thread with an open store.
    pub fn start(mut store: Store, runner_id: String, lease: Duration) -> std::io::Result<Db> {
        if let Err(e) = store.set_wait(BUSY_SLICE) {
            tracing::warn!("cannot set the database's busy timeout: {e}");
        }
        let (tx, rx) = mpsc::channel();
        let thread_id = runner_id.clone();
        std::thread::Builder::new()
            .name("cojobs-db".into())
            .spawn(move || serve(store, &thread_id, lease, rx))?;
        Ok(Db {
            tx,
            runner_id,
            lease,
        })
    }

    /// Send a command and wait for its answer.
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        // A failed send drops the reply sender: the answer is then `gone`.
        let _ = self.tx.send(make(reply));
        rx.await.map_err(|_| gone())?
    }

    /// A claim of up to `max` rows for this runner, started by the claim
    /// itself: the runner claims only jobs it starts at once or within
    /// [`super::START_PROMPTLY`], so no separate start write follows.
    fn started_claim(
        &self,
        max: usize,
        per_co: Option<usize>,
        due_by: Option<DateTime<Utc>>,
    ) -> Claim {
        Claim {
            per_co,
            due_by,
            start: true,
            ..Claim::new(&self.runner_id, max, self.lease)
        }
    }

    /// Claim and start up to `max` due rows (see [`Db::started_claim`]).
    pub async fn claim(
        &self,
        max: usize,
        per_co: Option<usize>,
        due_by: Option<DateTime<Utc>>,
    ) -> Result<Vec<Job>, StoreError> {
        let claim = self.started_claim(max, per_co, due_by);
        self.ask(|reply| Cmd::Claim { claim, reply }).await
    }

    /// Claim and start row `id` if it is due (a `--once` follow-up).
    pub async fn claim_one(
        &self,
        id: JobId,
        per_co: Option<usize>,
    ) -> Result<Option<Job>, StoreError> {
        let claim = self.started_claim(1, per_co, None);
        self.ask(|reply| Cmd::ClaimOne { claim, id, reply }).await
    }

    pub async fn finish(&self, item: Finish) -> Result<Option<JobId>, StoreError> {
        self.ask(|reply| Cmd::Finish { item, reply }).await
    }

    pub async fn release(&self, id: JobId, summary: String) -> Result<JobStatus, StoreError> {
        self.ask(|reply| Cmd::Release { id, summary, reply }).await
    }

    /// Fire and forget: progress is advisory, the next flush repeats it.
    pub fn progress(&self, updates: Vec<(JobId, u8, Option<String>)>) {
        let _ = self.tx.send(Cmd::Progress { updates });
    }

    /// Extend this runner's leases; the rows it still holds.
    pub async fn heartbeat(&self) -> Result<Vec<JobId>, StoreError> {
        self.ask(|reply| Cmd::Heartbeat { reply }).await
    }

    pub async fn rescue(&self) -> Result<Vec<Rescued>, StoreError> {
        self.ask(|reply| Cmd::Rescue { reply }).await
    }

    pub async fn cancel_requests(&self) -> Result<Vec<(JobId, String)>, StoreError> {
        self.ask(|reply| Cmd::CancelRequests { reply }).await
    }

    pub async fn next_due(&self) -> Result<Option<String>, StoreError> {
        self.ask(|reply| Cmd::NextDue { reply }).await
    }

    /// The schedule pass: queue due ticks (`docs/design.md#schedules`).
    pub async fn enqueue_due_ticks(&self) -> Result<Vec<JobId>, StoreError> {
        self.ask(|reply| Cmd::EnqueueTicks { reply }).await
    }

    /// SQLite's `data_version`: changes when another connection commits,
    /// so polling it is a cheap way to notice newly queued jobs.
    pub async fn data_version(&self) -> Result<i64, StoreError> {
        self.ask(|reply| Cmd::DataVersion { reply }).await
    }
}

/// How long one attempt waits in SQLite's busy handler for another
/// connection's write lock before [`patiently`] looks again.
const BUSY_SLICE: Duration = Duration::from_secs(2);
/// How often a wait for the lock is logged.
const BUSY_WARN_EVERY: Duration = Duration::from_secs(10);

/// Run `op` until the database lets it through. A database locked by
/// another process (a bulk `queue --from`, a backup, an operator's open
/// transaction) is not a failure of the runner nor of a job: the attempt
/// wrote nothing (a statement or transaction that meets `SQLITE_BUSY` is
/// rolled back whole), so it is tried again, however long that takes,
/// with a warning about every 10 s naming what waits. A group of
/// finishes is retried as one transaction: none is lost, none doubled.
fn patiently<T>(
    what: &str,
    mut op: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let start = Instant::now();
    let mut last_warning = start;
    let mut pause = Duration::from_millis(10);
    loop {
        match op() {
            Err(e) if e.is_busy() => {
                if last_warning.elapsed() >= BUSY_WARN_EVERY {
                    last_warning = Instant::now();
                    tracing::warn!(
                        "database locked by another connection: still waiting to {what} \
                         ({} s so far)",
                        start.elapsed().as_secs()
                    );
                }
                std::thread::sleep(pause);
                pause = pause.saturating_mul(2).min(Duration::from_millis(500));
            }
            done => {
                if last_warning != start {
                    tracing::info!(
                        "database free again: could {what} after {} s",
                        start.elapsed().as_secs()
                    );
                }
                return done;
            }
        }
    }
}

fn serve(mut store: Store, runner_id: &str, lease: Duration, rx: mpsc::Receiver<Cmd>) {
    let mut pending = Vec::new();
    while let Ok(first) = rx.recv() {
        // Everything already waiting is handled together: its finishes
        // share one commit. (Waiting a moment for more to arrive was
        // measured: 2 ms of linger cut throughput from 21,000 to 8,500
        // no-op jobs/s, as claims queued behind it.)
        pending.push(first);
        while pending.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(c) => pending.push(c),
                Err(_) => break,
            }
        }
        // A database file removed or replaced under us: every write would
        // go to a file nobody sees. Refuse everything; the runner stops.
        if let Err(e) = store.check_file() {
            let msg = e.to_string();
            for cmd in pending.drain(..) {
                refuse(cmd, &msg);
            }
            continue;
        }
        let mut finishes = Vec::new();
        let mut replies = Vec::new();
        for cmd in pending.drain(..) {
            match cmd {
                Cmd::Finish { item, reply } => {
                    finishes.push(item);
                    replies.push(reply);
                }
                other => handle(&mut store, runner_id, lease, other),
            }
        }
        if !finishes.is_empty() {
            record(&mut store, runner_id, &finishes, replies);
        }
    }
}

/// Write finishes in one commit and answer each.
fn record(
    store: &mut Store,
    runner_id: &str,
    finishes: &[Finish],
    replies: Vec<Reply<Option<JobId>>>,
) {
    match patiently("record job ends", || {
        store.finish_batch(runner_id, finishes)
    }) {
        Ok(results) => {
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
            }
        }
    }
}

/// Answer `cmd` with [`StoreError::Unavailable`]`(msg)` without running it.
fn refuse(cmd: Cmd, msg: &str) {
    let err = || StoreError::Unavailable(msg.to_string());
    match cmd {
        Cmd::Claim { reply, .. } => drop(reply.send(Err(err()))),
        Cmd::ClaimOne { reply, .. } => drop(reply.send(Err(err()))),
        Cmd::Finish { reply, .. } => drop(reply.send(Err(err()))),
        Cmd::Release { reply, .. } => drop(reply.send(Err(err()))),
        Cmd::Progress { .. } => {}
        Cmd::Heartbeat { reply } => drop(reply.send(Err(err()))),
        Cmd::Rescue { reply } => drop(reply.send(Err(err()))),
        Cmd::CancelRequests { reply } => drop(reply.send(Err(err()))),
        Cmd::NextDue { reply } => drop(reply.send(Err(err()))),
        Cmd::DataVersion { reply } => drop(reply.send(Err(err()))),
        Cmd::EnqueueTicks { reply } => drop(reply.send(Err(err()))),
    }
}

fn handle(store: &mut Store, runner_id: &str, lease: Duration, cmd: Cmd) {
    match cmd {
        Cmd::Claim { claim, reply } => {
            let _ = reply.send(patiently("claim jobs", || store.claim_capped(&claim)));
        }
        Cmd::ClaimOne { claim, id, reply } => {
            let _ = reply.send(patiently("claim a job", || store.claim_one(&claim, id)));
        }
        Cmd::Finish { item, reply } => {
            let r = patiently("record a job's end", || {
                store.finish_batch(runner_id, std::slice::from_ref(&item))
            })
            .and_then(|mut v| v.pop().unwrap_or(Err(StoreError::NoJob(item.id))));
            let _ = reply.send(r);
        }
        Cmd::Release { id, summary, reply } => {
            let _ = reply.send(patiently("return a job to the queue", || {
                store.release(id, runner_id, &summary)
            }));
        }
        Cmd::Progress { updates } => {
            for (id, percent, line) in updates {
                if let Err(e) = patiently("record progress", || {
                    store.set_progress(id, runner_id, i64::from(percent), line.as_deref())
                }) {
                    tracing::warn!(job = id.0, "could not record progress: {e}");
                }
            }
        }
        Cmd::Heartbeat { reply } => {
            let _ = reply.send(patiently("renew leases (heartbeat)", || {
                store.heartbeat(runner_id, lease)
            }));
        }
        Cmd::Rescue { reply } => {
            let rescued =
                patiently("rescue expired leases", || store.rescue_expired()).map(|rows| {
                    rows.into_iter()
                        .map(|(id, successor)| Rescued {
                            id,
                            successor: successor.map(|s| {
                                let due =
                                    store.get(s).ok().flatten().and_then(|j| j.start_after_time);
                                (s, due)
                            }),
                        })
                        .collect()
                });
            let _ = reply.send(rescued);
        }
        Cmd::CancelRequests { reply } => {
            let _ = reply.send(patiently("read cancel requests", || {
                store.cancel_requests(runner_id)
            }));
        }
        Cmd::NextDue { reply } => {
            let _ = reply.send(patiently("read the next due time", || store.next_due()));
        }
        Cmd::DataVersion { reply } => {
            let _ = reply.send(patiently("poll for new jobs", || store.data_version()));
        }
        Cmd::EnqueueTicks { reply } => {
            let _ = reply.send(patiently("queue due schedule ticks", || {
                store.enqueue_due_ticks()
            }));
        }
    }
}
