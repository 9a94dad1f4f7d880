//! Learning about new jobs: `LISTEN/NOTIFY` with a polling fallback.
//!
//! - Sending: a store that queued jobs calls [`Notifier::job_queued`]. It
//!   sends `NOTIFY cojobs_jobs` at most once per [`NOTIFY_EVERY`]; a call
//!   inside the window schedules one trailing notify at its end, so the
//!   last queue of a burst still wakes the runners (River's notify limiter,
//!   plus the trailing edge). Plain-SQL inserts (COmanage) notify through
//!   the statement-level trigger of the schema instead.
//! - Receiving: the first [`Notifier::wait`] starts a listener task on a
//!   connection of its own (outside the pool: it must stay on `LISTEN`).
//!   When that connection drops, `wait` says [`Wake::Poll`] at least every
//!   [`FALLBACK_POLL`] while the task reconnects with backoff;
//!   notifications sent while it was down are lost, so it wakes the waiter
//!   once when it is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::driver::Wake;

/// The channel every cojobs runner of a database listens on.
pub(crate) const CHANNEL: &str = "cojobs_jobs";
/// Most one NOTIFY per this long from one store.
pub const NOTIFY_EVERY: Duration = Duration::from_millis(100);
/// How often a waiter polls while the listener is down.
pub const FALLBACK_POLL: Duration = Duration::from_millis(250);
/// Longest wait between reconnection attempts of the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The sending and receiving sides of one store.
pub(super) struct Notifier {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    limiter: Arc<Limiter>,
    /// Started by the first `wait`; stopped when the store is dropped.
    listener: OnceLock<Arc<Listener>>,
}

/// The rate limiter's state.
#[derive(Default)]
struct Limiter {
    /// When the last NOTIFY was sent. A std mutex: held for a read and a
    /// write, never across an await.
    last: Mutex<Option<Instant>>,
    /// A trailing NOTIFY is scheduled.
    trailing: AtomicBool,
}

/// State shared between the listener task and the waiters.
#[derive(Default)]
struct Listener {
    /// Signalled on every notification and on every reconnection; a signal
    /// with no waiter is kept for the next one (`notify_one`).
    wake: Notify,
    /// The listener is connected and listening.
    up: AtomicBool,
    /// The store is gone: the task ends.
    stopped: AtomicBool,
    stop: Notify,
}

impl Notifier {
    pub(super) fn new(pool: Pool, config: tokio_postgres::Config, tls: MakeRustlsConnect) -> Self {
        Notifier {
            pool,
            config,
            tls,
            limiter: Arc::new(Limiter::default()),
            listener: OnceLock::new(),
        }
    }

    /// Jobs were queued (or returned to the queue): tell the runners,
    /// rate-limited. Never fails: a lost notify costs a runner one poll
    /// interval. The first NOTIFY of a window is sent before this returns
    /// (a command's runtime ends with the command: a task spawned there
    /// might never run); a trailing one is a task of its own.
    pub(super) async fn job_queued(&self) {
        let now = Instant::now();
        let due = {
            let mut last = self
                .limiter
                .last
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match *last {
                Some(t) if now.duration_since(t) < NOTIFY_EVERY => Some(t + NOTIFY_EVERY),
                _ => {
                    *last = Some(now);
                    None
                }
            }
        };
        let pool = self.pool.clone();
        match due {
            None => send(pool).await,
            Some(at) if !self.limiter.trailing.swap(true, Ordering::AcqRel) => {
                let limiter = Arc::clone(&self.limiter);
                tokio::spawn(async move {
                    let mut at = at;
                    loop {
                        tokio::time::sleep_until(at.into()).await;
                        let mut last = limiter.last.lock().unwrap_or_else(PoisonError::into_inner);
                        // A leading NOTIFY went out since this was planned
                        // (this task woke late): the window moves with it.
                        match *last {
                            Some(t) if t + NOTIFY_EVERY > at => at = t + NOTIFY_EVERY,
                            _ => {
                                *last = Some(Instant::now());
                                break;
                            }
                        }
                    }
                    limiter.trailing.store(false, Ordering::Release);
                    send(pool).await;
                });
            }
            Some(_) => {} // a trailing notify is already on its way
        }
    }

    /// Wait for a sign of new jobs, at most `timeout`.
    pub(super) async fn wait(&self, timeout: Duration) -> Wake {
        let listener = self.listener.get_or_init(|| {
            let l = Arc::new(Listener::default());
            tokio::spawn(listen(
                Arc::clone(&l),
                self.config.clone(),
                self.tls.clone(),
            ));
            l
        });
        if !listener.up.load(Ordering::Acquire) {
            let poll = timeout.min(FALLBACK_POLL);
            return match tokio::time::timeout(poll, listener.wake.notified()).await {
                Ok(()) => Wake::NewJobs,
                Err(_) if poll < timeout => Wake::Poll,
                Err(_) => Wake::Timeout,
            };
        }
        match tokio::time::timeout(timeout, listener.wake.notified()).await {
            Ok(()) => Wake::NewJobs,
            Err(_) => Wake::Timeout,
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some(l) = self.listener.get() {
            l.stopped.store(true, Ordering::Release);
            l.stop.notify_one();
        }
    }
}

/// Send one NOTIFY on a pooled connection; failures are logged.
async fn send(pool: Pool) {
    let result = match pool.get().await {
        Ok(client) => client
            .execute("SELECT pg_notify($1, '')", &[&CHANNEL])
            .await
            .map(drop)
            .map_err(|e| super::PgError(&e).to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = result {
        tracing::debug!("could not notify runners of new jobs: {e}");
    }
}

/// The listener task: connect, LISTEN, pass notifications on; reconnect
/// with backoff when the connection drops; end when the store is dropped.
async fn listen(shared: Arc<Listener>, config: tokio_postgres::Config, tls: MakeRustlsConnect) {
    let mut backoff = Duration::from_millis(100);
    while !shared.stopped.load(Ordering::Acquire) {
        match listen_once(&shared, &config, tls.clone()).await {
            Ok(()) => return, // stopped
            Err(e) => {
                let was_up = shared.up.swap(false, Ordering::AcqRel);
                if was_up {
                    tracing::warn!(
                        "lost the PostgreSQL listener connection ({e}); polling until it is back"
                    );
                    backoff = Duration::from_millis(100);
                } else {
                    tracing::debug!("cannot start the PostgreSQL listener: {e}");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shared.stop.notified() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One listener connection's life. `Ok` when the store stopped it, `Err`
/// with why when the connection failed.
async fn listen_once(
    shared: &Listener,
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
) -> Result<(), String> {
    let mut config = config.clone();
    config.application_name("cojobs listener");
    let (client, mut connection) = config
        .connect(tls)
        .await
        .map_err(|e| super::PgError(&e).to_string())?;
    // The connection must be polled for anything to happen, LISTEN
    // included; notifications arrive through the same poll.
    let drive = async {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => shared.wake.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return super::PgError(&e).to_string(),
                None => return "connection closed".to_string(),
            }
        }
    };
    tokio::pin!(drive);
    let listen = format!("LISTEN {CHANNEL}");
    tokio::select! {
        why = &mut drive => return Err(why),
        r = client.batch_execute(&listen) => {
            r.map_err(|e| super::PgError(&e).to_string())?;
        }
    }
    shared.up.store(true, Ordering::Release);
    // Jobs queued while we were not listening were not heard: look once.
    shared.wake.notify_one();
    tokio::select! {
        why = &mut drive => Err(why),
        _ = shared.stop.notified() => Ok(()),
    }
}
