//! Bounded capture of a plugin's stdout and stderr.
//!
//! A plugin that prints without end must not grow the runner's memory or the
//! database: the capture keeps the first `capacity` bytes of what the guest
//! writes and counts the rest, while telling the guest every write
//! succeeded (a closed stream would make a Rust guest's `println!` panic,
//! turning "too chatty" into a misleading "plugin panicked"). The last few
//! KiB of stderr are kept apart, so a panic message printed after a flood of
//! output still reaches the finish summary.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::config::Secrets;

/// How much of stderr's end is kept for the finish summary.
const STDERR_TAIL: usize = 4096;

#[derive(Debug, Default)]
struct Buffer {
    /// The head of the job's log: log lines and output, in order.
    head: Vec<u8>,
    /// Bytes that did not fit into `head`.
    dropped: u64,
    /// The last bytes written to stderr.
    stderr_tail: Vec<u8>,
}

/// The job's log: a bounded buffer shared by stdout, stderr and `log` calls.
/// What leaves it ([`Capture::text`], [`Capture::stderr_tail`]) has the
/// plugin's secrets replaced by `[redacted]`.
#[derive(Debug, Clone)]
pub struct Capture {
    capacity: usize,
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
            buf: Arc::new(Mutex::new(Buffer::default())),
            secrets,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        // The buffer holds plain bytes: a panic elsewhere cannot leave it
        // in a state worth refusing to read.
        self.buf.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Append bytes to the log, keeping at most `capacity` of them.
    pub fn append(&self, bytes: &[u8]) {
        let mut b = self.lock();
        let room = self.capacity.saturating_sub(b.head.len());
        let take = room.min(bytes.len());
        b.head.extend_from_slice(&bytes[..take]);
        b.dropped += (bytes.len() - take) as u64;
    }

    fn append_stderr(&self, bytes: &[u8]) {
        self.append(bytes);
        let mut b = self.lock();
        b.stderr_tail.extend_from_slice(bytes);
        let len = b.stderr_tail.len();
        if len > STDERR_TAIL {
            b.stderr_tail.drain(..len - STDERR_TAIL);
        }
    }

    /// The captured log as text, with a closing line saying how much was
    /// left out when the cap was reached.
    pub fn text(&self) -> String {
        let b = self.lock();
        let mut s = self.secrets.redact(&String::from_utf8_lossy(&b.head));
        if b.dropped > 0 {
            if !s.ends_with('\n') && !s.is_empty() {
                s.push('\n');
            }
            s.push_str(&format!(
                "[cojobs: log capped at {} bytes, {} more bytes dropped]\n",
                self.capacity, b.dropped
            ));
        }
        s
    }

    /// The end of what the guest wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.secrets
            .redact(&String::from_utf8_lossy(&self.lock().stderr_tail))
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
}
