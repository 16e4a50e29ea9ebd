//! One proxied connection: two pumps forward bytes; the recording's
//! thread decodes.
//!
//! Each pump reads a chunk from one side, writes it to the other side
//! unchanged, and then queues it for the connection's [`Decoder`] (a chunk
//! the socket takes only part of at once is queued before the rest is
//! waited for), which
//! runs on the recording's thread as a [`Watch`] (see
//! [`crate::record::watch`]). Nothing else happens on the forwarding path:
//! the kernel wakes the reader of a Unix socket on the writer's CPU,
//! expecting the writer to sleep next, so any work done here after a write
//! (decoding took a few microseconds per 4 KiB frame) delays the peer
//! just woken. Decoding in this task made one connection's added latency
//! about a tenth higher than with bare forwarding (scripts/bench.sh).
//!
//! The two pumps are futures of one task, and a chunk is queued as soon as
//! any of it went out, with no await in between, so before the other pump
//! can read an answer to it: the notes are in read order across both
//! directions. The
//! queue is bounded (the recorder's channel): when the recording thread
//! falls behind, the pumps wait, and nothing is dropped. Waiting for room
//! must not let the answer overtake the note that waits (a pump given room
//! is polled later, and the other pump could take the room freed in the
//! meantime), so a note that finds no room goes to the connection's
//! [`Backlog`], later notes line up behind it, and whichever pump gets room
//! sends the oldest.
//!
//! End of stream on one side is passed on as a half-close. A read or write
//! error, `--strict` seeing undecodable bytes, or shutdown closes both
//! sides.
//!
//! In `replay` and `new` modes the upstream side is one end of a socket
//! pair whose other end the server role's connection loop serves
//! (`SpecSide`); pumps and decoder are the same.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use crate::conversation::Chunk;
use crate::message::Direction;
use crate::net::{ConnId, Connection, ReadHalf, WriteHalf};
use crate::record::{Entry, Note, RecordTx};

use super::proxy_backlog::Backlog;
use super::proxy_decode::{DecodeSettings, Decoder};
use super::proxy_modes::SpecSide;

/// What every connection of one proxy shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) upstream: PathBuf,
    pub(crate) settings: Arc<DecodeSettings>,
    /// The recording's thread, which also decodes; it runs even when
    /// nothing is recorded.
    pub(crate) record: RecordTx,
    /// `replay` and `new` modes: the spec that answers.
    pub(crate) spec_side: Option<SpecSide>,
}

impl Shared {
    pub(crate) async fn record(&self, entry: Entry) {
        self.record.send(entry).await;
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
    let conn_cancel = cancel.child_token();
    // `proxy::run` refuses protocols without a conversation before any
    // connection is accepted.
    if let Some(decoder) = Decoder::new(id, shared.settings.clone(), conn_cancel.clone()) {
        shared
            .record(Entry::Watch {
                conn: id,
                watch: Box::new(decoder),
            })
            .await;
    }
    let (down_r, down_w) = Connection::raw(down, id).into_split();
    let (up_r, up_w) = Connection::raw(up, id).into_split();
    let notes = Backlog::new(id, &shared.record);
    tokio::join!(
        pump(Direction::ToServer, down_r, up_w, &notes, &conn_cancel),
        pump(Direction::ToClient, up_r, down_w, &notes, &conn_cancel),
    );
    shared
        .record(Entry::Unwatch {
            conn: id,
            at: Instant::now(),
        })
        .await;
}

/// Forwards one direction until end of stream, an error or cancellation.
async fn pump(
    dir: Direction,
    src: ReadHalf<()>,
    dst: WriteHalf,
    notes: &Backlog<'_>,
    cancel: &CancellationToken,
) {
    if let Some(note) = forward(dir, src, dst, notes, cancel).await {
        notes.put(note).await;
    }
}

/// The pump's loop; returns the note that ended it, if any.
async fn forward(
    dir: Direction,
    mut src: ReadHalf<()>,
    mut dst: WriteHalf,
    notes: &Backlog<'_>,
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
            read = src.read_chunk() => read,
        };
        match read {
            Ok(Some(bytes)) => {
                let at = Instant::now();
                // Usually the socket takes the whole chunk at once, and it
                // is queued after. When it takes only part, the chunk is
                // queued before the rest is waited for: an answer to the
                // part may come back meanwhile.
                let sent = dst.try_write(&bytes);
                let chunk = Chunk {
                    dir,
                    bytes: bytes.clone(),
                    at,
                };
                notes.put(Note::Chunk(chunk)).await;
                let written = match sent {
                    Err(e) => Some(Err(e)),
                    Ok(n) if n == bytes.len() => Some(Ok(())),
                    Ok(n) => tokio::select! {
                        biased;
                        _ = &mut cancelled => None,
                        w = dst.write_all(&bytes[n..]) => Some(w),
                    },
                };
                match written {
                    None => return None,
                    Some(Ok(())) => {}
                    Some(Err(e)) => {
                        cancel.cancel();
                        return Some(Note::Error {
                            dir,
                            at: Instant::now(),
                            error: format!("writing to {}: {e}", dir.sink()),
                        });
                    }
                }
            }
            Ok(None) => {
                notes
                    .put(Note::Eof {
                        dir,
                        at: Instant::now(),
                    })
                    .await;
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
