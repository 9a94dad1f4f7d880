//! The log's writer: `tracing` lines go to stderr through a buffer that a
//! thread of its own writes out, so a job's thread never waits on the
//! terminal, the pipe or the journal behind stderr, and a busy runner makes
//! one `write` per batch of lines instead of one per line.
//!
//! - A line is appended to the buffer under a mutex (no system call). The
//!   first line into an empty buffer wakes the writer thread, which waits
//!   [`BATCH_DELAY`] for more, then writes the whole buffer at once.
//! - No line is dropped: past [`HIGH_WATER`] bytes waiting, a logging
//!   thread waits for the writer to catch up (stderr slower than the
//!   log for a while means waiting on it, as a blocking writer would).
//! - [`LogGuard`], held by the command for as long as it runs, writes out
//!   what is left when the command ends; lines logged after it (or if the
//!   thread could not start) are written directly.
//!
//! A process killed outright loses at most the last [`BATCH_DELAY`] of
//! lines.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer waits after the first line of a batch for more.
const BATCH_DELAY: Duration = Duration::from_millis(10);
/// Bytes waiting past which a logging thread waits for the writer.
const HIGH_WATER: usize = 1 << 20;

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    /// The guard is gone: write directly.
    closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Lines arrived in an empty buffer, or the log closed.
    wake: Condvar,
    /// The writer took the buffer.
    drained: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, line: &[u8]) {
        let mut state = self.lock();
        while state.lines.len() >= HIGH_WATER && !state.closed {
            self.wake.notify_one();
            state = self
                .drained
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.closed {
            drop(state);
            let _ = std::io::stderr().write_all(line);
            return;
        }
        if state.lines.is_empty() {
            self.wake.notify_one();
        }
        state.lines.extend_from_slice(line);
    }

    /// The writer thread: wait for lines, let a batch gather, write it.
    fn write_out(&self) {
        let mut stderr = std::io::stderr();
        let mut batch = Vec::new();
        loop {
            let mut state = self.lock();
            while state.lines.is_empty() && !state.closed {
                state = self
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if !state.closed && state.lines.len() < HIGH_WATER {
                drop(state);
                std::thread::sleep(BATCH_DELAY);
                state = self.lock();
            }
            std::mem::swap(&mut batch, &mut state.lines);
            let closed = state.closed;
            drop(state);
            self.drained.notify_all();
            let _ = stderr.write_all(&batch);
            let _ = stderr.flush();
            batch.clear();
            if closed && self.lock().lines.is_empty() {
                return;
            }
        }
    }
}

/// The `MakeWriter` of the log: each event's line goes to the buffer.
#[derive(Clone)]
pub(crate) struct LogWriter {
    shared: Arc<Shared>,
}

/// One event's writer.
pub(crate) struct Line<'a> {
    shared: &'a Shared,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.shared.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            shared: &self.shared,
        }
    }
}

/// Writes out what the log holds when dropped; then lines go directly.
#[must_use = "the log is written out when the guard is dropped"]
pub(crate) struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        self.shared.drained.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer and its guard, with the writer thread started (if it cannot
/// start, lines are written directly).
pub(crate) fn non_blocking() -> (LogWriter, LogGuard) {
    let shared = Arc::new(Shared::default());
    let thread = std::thread::Builder::new()
        .name("cojobs-log".into())
        .spawn({
            let shared = Arc::clone(&shared);
            move || shared.write_out()
        })
        .ok();
    if thread.is_none() {
        shared.lock().closed = true;
    }
    (
        LogWriter {
            shared: Arc::clone(&shared),
        },
        LogGuard { shared, thread },
    )
}
