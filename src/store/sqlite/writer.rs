//! The SQLite driver's one connection, owned by a thread of its own.
//!
//! SQLite takes one writer at a time, and rusqlite's `Connection` is not
//! `Sync`: so every operation travels to this thread as a message, and the
//! async runtime never blocks. Starts and finishes that arrive together,
//! from every job task of a runner, are written in ONE transaction (group
//! commit), which is what keeps the database cost per job small; nothing
//! waits for more to arrive (2 ms of linger was measured to cut a no-op
//! throughput from 21,000 to 8,500 jobs/s, as claims queued behind it).
//!
//! Before each group the file is checked to be the one opened
//! ([`Store::check_file`]): a database removed or replaced under a
//! long-running process would otherwise take every write into a file
//! nobody sees. Each group is refused then, with an error that is not
//! transient.
//!
//! A database locked by another process is, for a runner
//! ([`Patience::Wait`]), waited for however long it takes ([`patiently`]);
//! for a command ([`Patience::GiveUp`]), SQLite's busy timeout (`--wait`)
//! is all it waits.
//!
//! The thread ends when every sender is dropped.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::store::{Finish, JobId, Store, StoreError};

/// How long one attempt waits in SQLite's busy handler for another
/// connection's write lock before [`patiently`] looks again.
pub(super) const BUSY_SLICE: Duration = Duration::from_secs(2);
/// How often a wait for the lock is logged.
const BUSY_WARN_EVERY: Duration = Duration::from_secs(10);
/// Most messages handled (starts and finishes written in one transaction)
/// at once.
const MAX_GROUP: usize = 512;

/// An operation to run on the thread: given the store, or the message why
/// the file cannot be used.
pub(super) type Call = Box<dyn FnOnce(Result<&mut Store, &str>) + Send>;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Per-item results of a group of finishes: the successor's id, if any.
pub(super) type Finished = Vec<Result<Option<JobId>, StoreError>>;

/// What the thread is asked to do.
pub(super) enum Msg {
    /// Any operation, run in arrival order.
    Call(Call),
    /// Record that the runs of claimed rows began (group-committed).
    Start {
        runner_id: String,
        ids: Vec<JobId>,
        reply: Reply<Vec<bool>>,
    },
    /// Record how runs ended (group-committed).
    Finish {
        runner_id: String,
        items: Vec<Finish>,
        reply: Reply<Finished>,
    },
}

/// What a busy database means for the connection's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Wait it out, however long, warning every ~10 s (the runner: a bulk
    /// queue holding the lock is no reason to exit, nor to fail a job).
    Wait,
    /// Give up after the connection's busy timeout (a command: `--wait`).
    GiveUp,
}

/// Start the thread over `store`; the sender is its only handle.
pub(super) fn spawn(mut store: Store, patience: Patience) -> std::io::Result<mpsc::Sender<Msg>> {
    if patience == Patience::Wait
        && let Err(e) = store.set_wait(BUSY_SLICE)
    {
        tracing::warn!("cannot set the database's busy timeout: {e}");
    }
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("cojobs-sqlite".into())
        .spawn(move || serve(store, patience, rx))?;
    Ok(tx)
}

/// Run `op` until the database lets it through ([`Patience::Wait`]), or
/// once ([`Patience::GiveUp`]). A database locked by another process (a
/// bulk `queue --from`, a backup, an operator's open transaction) is not a
/// failure of the runner nor of a job: the attempt wrote nothing (a
/// statement or transaction that meets `SQLITE_BUSY` is rolled back whole),
/// so it is tried again, with a warning about every 10 s naming what
/// waits. A group of finishes is retried as one transaction: none is lost,
/// none doubled.
pub(super) fn patiently<T>(
    patience: Patience,
    what: &str,
    mut op: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if patience == Patience::GiveUp {
        return op();
    }
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

fn serve(mut store: Store, patience: Patience, rx: mpsc::Receiver<Msg>) {
    let mut pending = Vec::new();
    while let Ok(first) = rx.recv() {
        // Everything already waiting is handled together.
        pending.push(first);
        while pending.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(m) => pending.push(m),
                Err(_) => break,
            }
        }
        if let Err(e) = store.check_file() {
            let msg = e.to_string();
            for m in pending.drain(..) {
                refuse(m, &msg);
            }
            continue;
        }
        let mut groups: Vec<Group> = Vec::new();
        for m in pending.drain(..) {
            match m {
                Msg::Call(call) => call(Ok(&mut store)),
                Msg::Start {
                    runner_id,
                    ids,
                    reply,
                } => {
                    let g = group(&mut groups, runner_id);
                    g.start_replies.push((reply, ids.len()));
                    g.starts.extend(ids);
                }
                Msg::Finish {
                    runner_id,
                    items,
                    reply,
                } => {
                    let g = group(&mut groups, runner_id);
                    g.finish_replies.push((reply, items.len()));
                    g.finishes.extend(items);
                }
            }
        }
        for g in groups {
            g.write(&mut store, patience);
        }
    }
}

/// Answer `m` with [`StoreError::FileGone`]`(msg)` without running it.
fn refuse(m: Msg, msg: &str) {
    let gone = || StoreError::FileGone(msg.to_string());
    match m {
        Msg::Call(call) => call(Err(msg)),
        Msg::Start { reply, .. } => drop(reply.send(Err(gone()))),
        Msg::Finish { reply, .. } => drop(reply.send(Err(gone()))),
    }
}

/// The starts and finishes of one runner that arrived together.
struct Group {
    runner_id: String,
    starts: Vec<JobId>,
    /// Each asker, with how many of `starts` are its.
    start_replies: Vec<(Reply<Vec<bool>>, usize)>,
    finishes: Vec<Finish>,
    finish_replies: Vec<(Reply<Finished>, usize)>,
}

fn group(groups: &mut Vec<Group>, runner_id: String) -> &mut Group {
    let at = match groups.iter().position(|g| g.runner_id == runner_id) {
        Some(at) => at,
        None => {
            groups.push(Group {
                runner_id,
                starts: Vec::new(),
                start_replies: Vec::new(),
                finishes: Vec::new(),
                finish_replies: Vec::new(),
            });
            groups.len() - 1
        }
    };
    &mut groups[at]
}

impl Group {
    /// Write the group in one commit and answer each asker its share.
    fn write(self, store: &mut Store, patience: Patience) {
        let written = patiently(patience, "record job starts and ends", || {
            store.record(&self.runner_id, &self.starts, &self.finishes)
        });
        match written {
            Ok((starts, finishes)) => {
                let mut starts = starts.into_iter();
                for (reply, n) in self.start_replies {
                    let _ = reply.send(Ok(starts.by_ref().take(n).collect()));
                }
                let mut finishes = finishes.into_iter();
                for (reply, n) in self.finish_replies {
                    let _ = reply.send(Ok(finishes.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                // Every asker gets the batch's error, kept in its class.
                let again = |e: &StoreError| match e {
                    e if e.is_busy() => StoreError::Unavailable(e.to_string()),
                    e => StoreError::Failed(e.to_string()),
                };
                for (reply, _) in self.start_replies {
                    let _ = reply.send(Err(again(&e)));
                }
                for (reply, _) in self.finish_replies {
                    let _ = reply.send(Err(again(&e)));
                }
            }
        }
    }
}
