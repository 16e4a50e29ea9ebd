//! plugtap's own standard input and output as line channels, for roles run
//! as a child whose parent speaks on its stdin and stdout (a mock prox
//! plugin: prox writes `configure` lines, the plugin answers on stdout).
//!
//! [`Stdin`] reads on a plain thread and hands the bytes over through a
//! channel. tokio's own stdin reads on the runtime's blocking pool, where a
//! read that never returns (the parent keeps stdin open) would keep the
//! runtime from shutting down on SIGTERM; a plain thread does not. Wrapped
//! in a [`super::Connection`] with a line codec, it reads like any socket.
//!
//! [`LineWriter`] serialises lines from many tasks onto stdout, one whole
//! line per write, flushed at once, so lines are never interleaved.

use std::io::{Read as _, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, oneshot};

/// The process's standard input as an [`AsyncRead`]; see the module docs.
#[derive(Debug)]
pub struct Stdin {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    pending: Bytes,
}

impl Stdin {
    /// Starts reading standard input on a thread of its own.
    pub fn spawn() -> Stdin {
        let (tx, rx) = mpsc::channel(16);
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut stdin = std::io::stdin().lock();
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let item = match stdin.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => Ok(Bytes::copy_from_slice(&buf[..n])),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => Err(e),
                    };
                    let failed = item.is_err();
                    if tx.blocking_send(item).is_err() || failed {
                        break;
                    }
                }
            })
            .map_or_else(
                |e| tracing::warn!("cannot start the stdin reader: {e}"),
                drop,
            );
        Stdin {
            rx,
            pending: Bytes::new(),
        }
    }
}

impl AsyncRead for Stdin {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_empty() {
            match this.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                // The thread ended: end of stream.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(Some(Ok(bytes))) => this.pending = bytes,
            }
        }
        let n = buf.remaining().min(this.pending.len());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// Writes whole lines to standard output from any task; see the module docs.
#[derive(Debug, Clone)]
pub struct LineWriter {
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

/// Completes when the writer thread has written every queued line.
#[derive(Debug)]
pub struct WriterDone(oneshot::Receiver<()>);

impl WriterDone {
    /// Waits until every line is written (once all [`LineWriter`] clones are
    /// dropped), at most `limit`. False when the time ran out.
    pub async fn wait(self, limit: Duration) -> bool {
        matches!(tokio::time::timeout(limit, self.0).await, Ok(Ok(())))
    }
}

impl LineWriter {
    /// Starts the writer thread. Like the reader, it is a plain thread: a
    /// write blocked on a parent that stops reading must not hold up the
    /// runtime's shutdown.
    pub fn spawn() -> (LineWriter, WriterDone) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let (done_tx, done_rx) = oneshot::channel();
        let started = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                let stdout = std::io::stdout();
                while let Some(line) = rx.blocking_recv() {
                    let mut out = stdout.lock();
                    if let Err(e) = out.write_all(&line).and_then(|()| out.flush()) {
                        tracing::warn!("cannot write to stdout: {e}; later lines are dropped");
                        break;
                    }
                }
                let _ = done_tx.send(());
            });
        if let Err(e) = started {
            tracing::warn!("cannot start the stdout writer: {e}");
        }
        (LineWriter { tx }, WriterDone(done_rx))
    }

    /// Queues one line (without its newline). False when the writer has
    /// stopped.
    pub fn send(&self, line: String) -> bool {
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        self.tx.send(bytes).is_ok()
    }

    /// Queues bytes written exactly as given (a relayed line keeps its own
    /// newline, or lack of one). False when the writer has stopped.
    pub fn send_raw(&self, bytes: Vec<u8>) -> bool {
        self.tx.send(bytes).is_ok()
    }
}
