//! Group commit of job ends (docs/design.md, "The store interface"): ends
//! that arrive while one transaction commits go together in the next, so
//! many jobs share one round of statements and one WAL flush — what the
//! SQLite driver's connection thread does for its file. Without it every
//! job's end is its own transaction, and a runner on PostgreSQL moves
//! about as many jobs per second as the server can flush its WAL.

use tokio::sync::{mpsc, oneshot};

use super::runner;
use crate::store::Finish;
use crate::store::driver::{Error, ErrorKind, Result, Successor};

/// One item's answer, as [`crate::store::driver::JobStore::finish`] gives it.
pub(super) type Ends = Vec<Result<Option<Successor>>>;

/// Most callers' ends one transaction takes (the rest go in the next).
const MOST_CALLS: usize = 256;

/// One caller's ends, waiting for the next transaction.
struct Call {
    runner_id: String,
    items: Vec<Finish>,
    reply: oneshot::Sender<Result<Ends>>,
}

/// The handle callers send their ends through; the task behind it ends
/// when the store is dropped.
#[derive(Debug)]
pub(super) struct GroupCommit {
    calls: mpsc::UnboundedSender<Call>,
}

/// The pool and the server's name (`host:port/dbname`) for messages.
struct Server {
    pool: deadpool_postgres::Pool,
    target: String,
}

impl GroupCommit {
    /// Start the committing task on the current tokio runtime.
    pub(super) fn spawn(pool: deadpool_postgres::Pool, target: String) -> GroupCommit {
        let (calls, rx) = mpsc::unbounded_channel();
        tokio::spawn(serve(Server { pool, target }, rx));
        GroupCommit { calls }
    }

    /// Write `items` (ends of `runner_id`'s runs) in the next group.
    pub(super) async fn finish(&self, runner_id: &str, items: &[Finish]) -> Result<Ends> {
        let (reply, answer) = oneshot::channel();
        let call = Call {
            runner_id: runner_id.to_string(),
            items: items.to_vec(),
            reply,
        };
        let stopped = || Error::Transient("the PostgreSQL group-commit task stopped".into());
        self.calls.send(call).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Take every call waiting (up to [`MOST_CALLS`]) and commit them
/// together, one transaction per runner id among them.
async fn serve(server: Server, mut rx: mpsc::UnboundedReceiver<Call>) {
    while let Some(first) = rx.recv().await {
        let mut calls = vec![first];
        while calls.len() < MOST_CALLS {
            match rx.try_recv() {
                Ok(call) => calls.push(call),
                Err(_) => break,
            }
        }
        // Almost always one runner id (a store serves one runner).
        while !calls.is_empty() {
            let runner_id = calls[0].runner_id.clone();
            let (mine, rest): (Vec<Call>, Vec<Call>) =
                calls.into_iter().partition(|c| c.runner_id == runner_id);
            commit_group(&server, &runner_id, mine).await;
            calls = rest;
        }
    }
}

/// Commit `calls` in one transaction and answer each. When the group
/// fails other than transiently, each call is tried alone, so one bad end
/// cannot fail the others.
async fn commit_group(server: &Server, runner_id: &str, calls: Vec<Call>) {
    let items: Vec<Finish> = calls.iter().flat_map(|c| c.items.iter().cloned()).collect();
    match commit(server, runner_id, &items).await {
        Ok(mut ends) => {
            for call in calls {
                let rest = ends.split_off(call.items.len().min(ends.len()));
                let _ = call.reply.send(Ok(ends));
                ends = rest;
            }
        }
        Err(e) if calls.len() == 1 || e.kind() == ErrorKind::Transient => {
            for call in calls {
                let _ = call.reply.send(Err(copy(&e)));
            }
        }
        Err(_) => {
            for call in calls {
                let alone = commit(server, runner_id, &call.items).await;
                let _ = call.reply.send(alone);
            }
        }
    }
}

async fn commit(server: &Server, runner_id: &str, items: &[Finish]) -> Result<Ends> {
    let mut client = server
        .pool
        .get()
        .await
        .map_err(|e| super::pool_error(&server.target, e))?;
    runner::finish(&mut client, runner_id, items).await
}

/// The same error for another waiter of a failed group.
fn copy(e: &Error) -> Error {
    match e {
        Error::Transient(m) => Error::Transient(m.clone()),
        Error::Other(m) => Error::Other(m.clone()),
        other => Error::Other(other.to_string()),
    }
}
