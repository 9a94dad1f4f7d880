//! Bounded capture of a plugin's stdout and stderr.
//!
//! A plugin that prints without end must not grow the runner's memory or the
//! database: the capture keeps the first `capacity` bytes of what the guest
//! writes and counts the rest, while telling the guest every write
//! succeeded (a closed stream would make a Rust guest's `println!` panic,
//! turning "too chatty" into a misleading "plugin panicked"). The last few
//! KiB of stderr are kept apart, so a panic message printed after a flood of
//! output still reaches the finish summary.
//!
//! Secrets are redacted before anything is cut: each buffer keeps the
//! longest secret's length (less one) beyond its cap, so a secret the cap
//! cuts in half is still seen whole and replaced by `[redacted]`, never
//! shown up to the cut.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::config::Secrets;

/// How much of stderr's end is kept for the finish summary.
const STDERR_TAIL: usize = 4096;

#[derive(Debug, Default)]
struct Buffer {
    /// The head of the job's log: log lines and output, in order; the
    /// first `capacity` bytes are shown, the overhang after them only
    /// decides what a cut secret was.
    head: Vec<u8>,
    /// Bytes that did not fit into `head`.
    dropped: u64,
    /// The last bytes written to stderr (and the overhang before them).
    stderr_tail: Vec<u8>,
}

/// The job's log: a bounded buffer shared by stdout, stderr and `log` calls.
/// What leaves it ([`Capture::text`], [`Capture::stderr_tail`]) has the
/// plugin's secrets replaced by `[redacted]`.
#[derive(Debug, Clone)]
pub struct Capture {
    capacity: usize,
    /// Bytes kept past each cut ([`Secrets::overhang`]).
    overhang: usize,
    buf: Arc<Mutex<Buffer>>,
    secrets: Secrets,
}

impl Capture {
    pub fn new(capacity: usize) -> Self {
        Self::redacting(capacity, Secrets::default())
    }

    /// A capture that hides `secrets` in what it gives back.
    pub fn redacting(capacity: usize, secrets: Secrets) -> Self {
        Capture {
            capacity,
            overhang: secrets.overhang(),
            buf: Arc::new(Mutex::new(Buffer::default())),
            secrets,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        // The buffer holds plain bytes: a panic elsewhere cannot leave it
        // in a state worth refusing to read.
        self.buf.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Append bytes to the log, keeping at most `capacity` of them (and
    /// the overhang).
    pub fn append(&self, bytes: &[u8]) {
        let mut b = self.lock();
        let keep = self.capacity.saturating_add(self.overhang);
        let room = keep.saturating_sub(b.head.len());
        let take = room.min(bytes.len());
        b.head.extend_from_slice(&bytes[..take]);
        b.dropped += (bytes.len() - take) as u64;
    }

    fn append_stderr(&self, bytes: &[u8]) {
        self.append(bytes);
        let mut b = self.lock();
        b.stderr_tail.extend_from_slice(bytes);
        let len = b.stderr_tail.len();
        let keep = STDERR_TAIL.saturating_add(self.overhang);
        if len > keep {
            b.stderr_tail.drain(..len - keep);
        }
    }

    /// The captured log as text, with a closing line saying how much was
    /// left out when the cap was reached.
    pub fn text(&self) -> String {
        let b = self.lock();
        let shown = b.head.len().min(self.capacity);
        let mut s = self.secrets.redact_window(&b.head, 0..shown);
        let dropped = b.dropped.saturating_add((b.head.len() - shown) as u64);
        if dropped > 0 {
            if !s.ends_with('\n') && !s.is_empty() {
                s.push('\n');
            }
            s.push_str(&format!(
                "[cojobs: log capped at {} bytes, {} more bytes dropped]\n",
                self.capacity, dropped
            ));
        }
        s
    }

    /// The end of what the guest wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let b = self.lock();
        let len = b.stderr_tail.len();
        self.secrets
            .redact_window(&b.stderr_tail, len.saturating_sub(STDERR_TAIL)..len)
    }

    /// A WASI stdout or stderr stream writing into this capture.
    pub fn stream(&self, stderr: bool) -> CaptureStream {
        CaptureStream {
            capture: self.clone(),
            stderr,
        }
    }
}

/// One of the guest's two output streams.
#[derive(Debug, Clone)]
pub struct CaptureStream {
    capture: Capture,
    stderr: bool,
}

impl CaptureStream {
    fn write_bytes(&self, bytes: &[u8]) {
        if self.stderr {
            self.capture.append_stderr(bytes);
        } else {
            self.capture.append(bytes);
        }
    }
}

/// Largest write the guest is offered at once.
const WRITE_PERMIT: usize = 64 * 1024;

#[wasmtime_wasi::async_trait]
impl Pollable for CaptureStream {
    async fn ready(&mut self) {}
}

impl OutputStream for CaptureStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl tokio::io::AsyncWrite for CaptureStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CaptureStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CaptureStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_head_and_counts_the_rest() {
        let c = Capture::new(10);
        c.append(b"0123456789abc");
        let t = c.text();
        assert!(t.starts_with("0123456789\n"), "{t}");
        assert!(t.contains("3 more bytes dropped"), "{t}");
    }

    #[test]
    fn stderr_tail_survives_a_full_log() {
        let c = Capture::new(4);
        let s = c.stream(true);
        s.write_bytes(&vec![b'x'; 10_000]);
        s.write_bytes(b"panicked: boom\n");
        assert!(c.stderr_tail().ends_with("panicked: boom\n"));
        assert_eq!(c.stderr_tail().len(), STDERR_TAIL);
    }

    fn one_secret(value: &str) -> Secrets {
        Secrets::from_pairs([("token".to_string(), value.to_string())])
    }

    /// Issue 13: the 64 KiB cap cut a secret in half, and the half before
    /// the cut was not redacted. Every cut position through the secret.
    #[test]
    fn the_cap_never_shows_part_of_a_secret() {
        let secret = "hunter2-very-secret";
        for cap in 1..40 {
            let c = Capture::redacting(cap, one_secret(secret));
            let s = c.stream(false);
            // Written in pieces, the secret split across writes too.
            s.write_bytes(b"0123456789");
            s.write_bytes(&secret.as_bytes()[..5]);
            s.write_bytes(&secret.as_bytes()[5..]);
            s.write_bytes(b" and more after it");
            let t = c.text();
            assert!(!t.contains("hunte"), "cap {cap}: {t}");
            if cap > 10 {
                assert!(t.contains("[redacted]"), "cap {cap}: {t}");
            }
            let shown = t.lines().next().unwrap_or("");
            assert!(shown.len() <= cap.max(10 + "[redacted]".len()), "{t}");
            assert!(t.contains("more bytes dropped"), "cap {cap}: {t}");
        }
        // Nothing dropped when it all fits: no note.
        let c = Capture::redacting(1000, one_secret(secret));
        c.append(format!("a {secret} b").as_bytes());
        assert_eq!(c.text(), "a [redacted] b");
    }

    #[test]
    fn the_stderr_tail_never_shows_the_end_of_a_secret() {
        let secret = "tail-secret-value";
        for pad in 0..secret.len() {
            let c = Capture::redacting(16, one_secret(secret));
            let s = c.stream(true);
            s.write_bytes(secret.as_bytes());
            s.write_bytes(&vec![b'x'; STDERR_TAIL - pad]);
            let tail = c.stderr_tail();
            assert!(!tail.contains("value"), "pad {pad}: {tail}");
            assert!(!tail.contains("-secret"), "pad {pad}: {tail}");
        }
    }
}
