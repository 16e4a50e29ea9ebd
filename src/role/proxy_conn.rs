//! One proxied connection: two pumps forward bytes, a decoder watches.
//!
//! Each pump reads a chunk from one side, leaves a copy (a cheap `Bytes`
//! clone) in the connection's [`Inbox`], then writes the chunk to the other
//! side unchanged. Leaving it *before* writing means the decoder sees
//! chunks in read order across both directions: a reply can only be read
//! after the request was written onward, so it is always queued after it.
//! The decoder runs the [`Conversation`], redacts, logs one line per frame
//! and queues recording entries; forwarding never waits for it beyond a
//! bounded inbox.
//!
//! The two pumps and the decoder are three futures of one task, joined in
//! a fixed order (pumps first, decoder last), so every time the task runs
//! the decoder runs after the pumps and finds what they left. It needs no
//! wake-up of its own: waking a future of the running task makes tokio
//! reschedule the whole task as a yield and wake an idle worker thread to
//! steal it, a futex call and a thread switch per chunk. With a channel in
//! between, that made one connection's added latency a third higher than
//! socat's and cost a fifth of the throughput at 16 connections
//! (scripts/bench.sh). Connections still spread over all cores.
//!
//! End of stream on one side is passed on as a half-close. A read or write
//! error, `--strict` seeing undecodable bytes, or shutdown closes both
//! sides.
//!
//! In `replay` and `new` modes the upstream side is one end of a socket
//! pair whose other end the server role's connection loop serves
//! (`SpecSide`); pumps and decoder are the same.

use std::collections::VecDeque;
use std::future::Future;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::net::UnixStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::codec::Limits;
use crate::conversation::Chunk;
use crate::message::Direction;
use crate::net::{ConnId, Connection, ReadHalf, WriteHalf};
use crate::protocol::Protocol;
use crate::record::redact::Redactor;
use crate::record::{Entry, RecordTx};

use super::proxy_decode::{Decoder, Note};
use super::proxy_modes::SpecSide;

/// Notes left for one connection's decoder before the pumps wait.
const QUEUE: usize = 256;

/// What every connection of one proxy shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) upstream: PathBuf,
    pub(crate) protocol: Protocol,
    pub(crate) limits: Limits,
    pub(crate) redactor: Redactor,
    pub(crate) record: Option<RecordTx>,
    pub(crate) strict: bool,
    pub(crate) full_values: bool,
    pub(crate) colour: bool,
    /// `replay` and `new` modes: the spec that answers.
    pub(crate) spec_side: Option<SpecSide>,
}

impl Shared {
    pub(crate) fn colour_default() -> bool {
        std::io::stderr().is_terminal()
    }

    pub(crate) async fn record(&self, entry: Entry) {
        if let Some(tx) = &self.record {
            tx.send(entry).await;
        }
    }

    /// The connection that stands for the real server: the real one, or
    /// in `replay`/`new` modes a socket pair served from the spec.
    async fn open_upstream(
        &self,
        id: ConnId,
        cancel: &CancellationToken,
    ) -> std::io::Result<UnixStream> {
        match &self.spec_side {
            None => UnixStream::connect(&self.upstream).await,
            Some(side) => side.connect(&self.upstream, id, cancel).await,
        }
    }
}

/// What the pumps leave for the decoder, in the order they read it.
struct Inbox {
    notes: Mutex<Notes>,
    /// Signalled when the decoder took notes out of a full inbox.
    space: Notify,
}

struct Notes {
    queue: VecDeque<Note>,
    /// Pumps still running; the decoder stops once none is and the queue
    /// is empty.
    pumps: u8,
}

impl Inbox {
    fn new() -> Inbox {
        Inbox {
            notes: Mutex::new(Notes {
                queue: VecDeque::new(),
                pumps: 2,
            }),
            space: Notify::new(),
        }
    }

    /// The lock is only ever held for a push or a swap, never across an
    /// await, and the three futures run on one task: it is never contended.
    fn lock(&self) -> std::sync::MutexGuard<'_, Notes> {
        self.notes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, note: Note) {
        self.lock().queue.push_back(note);
    }

    /// A pump is done; `last` is its final note, if any.
    fn finish(&self, last: Option<Note>) {
        let mut notes = self.lock();
        notes.queue.extend(last);
        notes.pumps -= 1;
    }

    /// Waits while the decoder is `QUEUE` notes behind.
    async fn room(&self) {
        loop {
            let notified = self.space.notified();
            if self.lock().queue.len() < QUEUE {
                return;
            }
            notified.await;
        }
    }
}

/// Pending once, without asking to be woken: the decoder's way of letting
/// the pumps run. The task is polled again when a pump's socket is ready,
/// and the decoder, joined last, then runs after it.
struct NextPoll(bool);

impl Future for NextPoll {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

/// Serves one accepted connection until both sides are done.
pub(crate) async fn serve(down: UnixStream, shared: Arc<Shared>, cancel: CancellationToken) {
    let id = ConnId::next();
    shared
        .record(Entry::Open {
            conn: id,
            at: Instant::now(),
        })
        .await;
    let up = match shared.open_upstream(id, &cancel).await {
        Ok(up) => up,
        Err(e) => {
            let error = format!(
                "cannot connect to upstream {}: {e}; closing the connection",
                shared.upstream.display()
            );
            tracing::warn!("{id} {error}");
            let at = Instant::now();
            shared
                .record(Entry::Error {
                    conn: Some(id),
                    dir: None,
                    error,
                    at,
                })
                .await;
            shared
                .record(Entry::Close {
                    conn: id,
                    to_server: 0,
                    to_client: 0,
                    at,
                })
                .await;
            return;
        }
    };
    tracing::debug!("{id} open");
    let (down_r, down_w) = Connection::raw(down, id).into_split();
    let (up_r, up_w) = Connection::raw(up, id).into_split();
    let inbox = Inbox::new();
    let conn_cancel = cancel.child_token();
    // Biased: on every wake-up both pumps forward what is readable before
    // the decoder starts on the inbox, so decoding never delays a chunk
    // that is already there, and the decoder always runs after the pumps
    // (see the module docs: it is never woken on its own).
    tokio::join!(
        biased;
        pump(Direction::ToServer, down_r, up_w, &inbox, &conn_cancel),
        pump(Direction::ToClient, up_r, down_w, &inbox, &conn_cancel),
        decode(id, &inbox, shared.clone(), conn_cancel.clone()),
    );
}

/// Forwards one direction until end of stream, an error or cancellation.
async fn pump(
    dir: Direction,
    src: ReadHalf<()>,
    dst: WriteHalf,
    inbox: &Inbox,
    cancel: &CancellationToken,
) {
    let last = forward(dir, src, dst, inbox, cancel).await;
    inbox.finish(last);
}

/// The pump's loop; returns the note that ended it, if any.
async fn forward(
    dir: Direction,
    mut src: ReadHalf<()>,
    mut dst: WriteHalf,
    inbox: &Inbox,
    cancel: &CancellationToken,
) -> Option<Note> {
    // One waiter for the whole pump: making a new one for every select
    // registers and unregisters it with the token each time.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        let read = tokio::select! {
            biased;
            _ = &mut cancelled => return None,
            read = async {
                inbox.room().await;
                src.read_chunk().await
            } => read,
        };
        match read {
            Ok(Some(bytes)) => {
                inbox.push(Note::Chunk(Chunk {
                    dir,
                    bytes: bytes.clone(),
                    at: Instant::now(),
                }));
                let written = tokio::select! {
                    biased;
                    _ = &mut cancelled => return None,
                    w = dst.write_all(&bytes) => w,
                };
                if let Err(e) = written {
                    cancel.cancel();
                    return Some(Note::Error {
                        dir,
                        at: Instant::now(),
                        error: format!("writing to {}: {e}", dir.sink()),
                    });
                }
            }
            Ok(None) => {
                inbox.push(Note::Eof {
                    dir,
                    at: Instant::now(),
                });
                // Pass the half-close on; the other direction keeps going.
                let _ = dst.shutdown_write().await;
                return None;
            }
            Err(e) => {
                cancel.cancel();
                return Some(Note::Error {
                    dir,
                    at: Instant::now(),
                    error: format!("reading from {}: {e}", dir.source()),
                });
            }
        }
    }
}

trait Sides {
    fn source(self) -> &'static str;
    fn sink(self) -> &'static str;
}

impl Sides for Direction {
    fn source(self) -> &'static str {
        match self {
            Direction::ToServer => "the client (Kong)",
            Direction::ToClient => "the server",
        }
    }
    fn sink(self) -> &'static str {
        match self {
            Direction::ToServer => "the server",
            Direction::ToClient => "the client (Kong)",
        }
    }
}

/// Hands the inbox's notes to the connection's [`Decoder`] in the order
/// the pumps left them, until both pumps are done and the inbox is empty.
async fn decode(id: ConnId, inbox: &Inbox, shared: Arc<Shared>, cancel: CancellationToken) {
    // `proxy::run` refuses protocols without a conversation before any
    // connection is accepted.
    let Some(mut decoder) = Decoder::new(id, shared, cancel) else {
        return;
    };
    let mut notes = VecDeque::new();
    loop {
        let pumps = {
            let mut inbox_notes = inbox.lock();
            std::mem::swap(&mut notes, &mut inbox_notes.queue);
            inbox_notes.pumps
        };
        if notes.is_empty() {
            if pumps == 0 {
                break;
            }
            NextPoll(false).await;
            continue;
        }
        inbox.space.notify_waiters();
        for note in notes.drain(..) {
            decoder.note(note).await;
        }
    }
    decoder.finish().await;
}
