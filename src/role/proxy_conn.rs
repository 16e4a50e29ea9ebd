//! One proxied connection: two pumps forward bytes, a decoder watches.
//!
//! Each pump reads a chunk from one side, hands a copy (a cheap `Bytes`
//! clone) to the connection's decoder through a bounded queue, then writes
//! the chunk to the other side unchanged. Handing over *before* writing
//! means the decoder sees chunks in read order across both directions: a
//! reply can only be read after the request was written onward, so it is
//! always queued after it. The decoder runs the [`Conversation`], redacts,
//! logs one line per frame and queues recording entries; forwarding never
//! waits for it beyond its bounded queue.
//!
//! The two pumps and the decoder are three futures of one task: handing a
//! chunk over then wakes nothing on another thread, which made the proxy
//! about a third faster under load than a separate decoder task
//! (scripts/bench.sh); connections still spread over all cores.
//!
//! End of stream on one side is passed on as a half-close. A read or write
//! error, `--strict` seeing undecodable bytes, or shutdown closes both
//! sides.
//!
//! In `replay` and `new` modes the upstream side is one end of a socket
//! pair whose other end the server role's connection loop serves
//! (`SpecSide`); pumps and decoder are the same.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::codec::{Limits, hex};
use crate::conversation::{self, Chunk, Observed};
use crate::message::{Direction, MessageView};
use crate::net::{ConnId, Connection, ReadHalf, WriteHalf};
use crate::protocol::Protocol;
use crate::record::redact::Redactor;
use crate::record::{Entry, RecordTx};

use super::proxy_modes::SpecSide;

/// Chunks queued for one connection's decoder before the pumps wait.
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

/// What the pumps tell the decoder.
enum Note {
    Chunk(Chunk),
    Eof {
        dir: Direction,
        at: Instant,
    },
    Error {
        dir: Direction,
        at: Instant,
        error: String,
    },
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
    let (tx, rx) = mpsc::channel(QUEUE);
    let conn_cancel = cancel.child_token();
    // Biased: on every wake-up both pumps forward what is readable before
    // the decoder starts on the queue, so decoding never delays a chunk
    // that is already there.
    tokio::join!(
        biased;
        pump(Direction::ToServer, down_r, up_w, tx.clone(), &conn_cancel),
        pump(Direction::ToClient, up_r, down_w, tx, &conn_cancel),
        decode(id, rx, shared.clone(), conn_cancel.clone()),
    );
}

/// Forwards one direction until end of stream, an error or cancellation.
async fn pump(
    dir: Direction,
    mut src: ReadHalf<()>,
    mut dst: WriteHalf,
    tx: mpsc::Sender<Note>,
    cancel: &CancellationToken,
) {
    // One waiter for the whole pump: making a new one for every select
    // registers and unregisters it with the token each time.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        let read = tokio::select! {
            biased;
            _ = &mut cancelled => return,
            read = src.read_chunk() => read,
        };
        match read {
            Ok(Some(bytes)) => {
                let copy: Bytes = bytes.clone();
                let chunk = Chunk {
                    dir,
                    bytes: copy,
                    at: Instant::now(),
                };
                if tx.send(Note::Chunk(chunk)).await.is_err() {
                    return;
                }
                let written = tokio::select! {
                    biased;
                    _ = &mut cancelled => return,
                    w = dst.write_all(&bytes) => w,
                };
                if let Err(e) = written {
                    let error = format!("writing to {}: {e}", dir.sink());
                    let _ = tx
                        .send(Note::Error {
                            dir,
                            at: Instant::now(),
                            error,
                        })
                        .await;
                    cancel.cancel();
                    return;
                }
            }
            Ok(None) => {
                let _ = tx
                    .send(Note::Eof {
                        dir,
                        at: Instant::now(),
                    })
                    .await;
                // Pass the half-close on; the other direction keeps going.
                let _ = dst.shutdown_write().await;
                return;
            }
            Err(e) => {
                let error = format!("reading from {}: {e}", dir.source());
                let _ = tx
                    .send(Note::Error {
                        dir,
                        at: Instant::now(),
                        error,
                    })
                    .await;
                cancel.cancel();
                return;
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

/// Decodes, logs and records one connection's chunks in read order.
async fn decode(
    id: ConnId,
    mut rx: mpsc::Receiver<Note>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    // `proxy::run` refuses protocols without a conversation before any
    // connection is accepted.
    let Some(mut conv) = conversation::for_protocol(shared.protocol, shared.limits) else {
        return;
    };
    let mut out = Vec::new();
    let (mut to_server, mut to_client) = (0u64, 0u64);
    let mut last = Instant::now();
    while let Some(note) = rx.recv().await {
        let mut after = None;
        match note {
            Note::Chunk(chunk) => {
                match chunk.dir {
                    Direction::ToServer => to_server += chunk.bytes.len() as u64,
                    Direction::ToClient => to_client += chunk.bytes.len() as u64,
                }
                last = chunk.at;
                conv.observe(&chunk, &mut out);
            }
            Note::Eof { dir, at } => {
                last = at;
                conv.end(dir, at, &mut out);
                let offset = match dir {
                    Direction::ToServer => to_server,
                    Direction::ToClient => to_client,
                };
                tracing::debug!("{id} {} end of stream after {offset} bytes", dir.arrow());
                after = Some(Entry::Eof {
                    conn: id,
                    dir,
                    offset,
                    at,
                });
            }
            Note::Error { dir, at, error } => {
                last = at;
                tracing::warn!("{id} {error}; closing both sides");
                after = Some(Entry::Error {
                    conn: Some(id),
                    dir: Some(dir),
                    error,
                    at,
                });
            }
        }
        for mut obs in out.drain(..) {
            let redacted = match &mut obs {
                Observed::Frame(f) => {
                    let redacted =
                        !shared.redactor.is_empty() && shared.redactor.apply(&mut f.view);
                    if tracing::enabled!(tracing::Level::INFO) {
                        log_frame(id, f, &shared);
                    }
                    if let Some(problem) = &f.view.problem {
                        tracing::warn!("{id} {} {problem}", f.dir.arrow());
                    }
                    redacted
                }
                Observed::Undecodable(u) => {
                    tracing::warn!(
                        "{id} {} undecodable bytes at offset {} ({}): {}{}",
                        paint(
                            crate::show::arrow(shared.protocol, u.dir),
                            RED,
                            shared.colour
                        ),
                        u.offset,
                        u.error,
                        hex(&u.raw[..u.raw.len().min(64)]),
                        if u.raw.len() > 64 { "…" } else { "" }
                    );
                    if shared.strict && !cancel.is_cancelled() {
                        tracing::warn!("{id} --strict: closing the connection");
                        cancel.cancel();
                    }
                    false
                }
            };
            shared
                .record(Entry::Observed {
                    conn: id,
                    obs,
                    redacted,
                })
                .await;
        }
        if let Some(entry) = after {
            shared.record(entry).await;
        }
    }
    // Both pumps are gone: end of both streams, whatever the reason.
    for dir in [Direction::ToServer, Direction::ToClient] {
        conv.end(dir, last, &mut out);
    }
    for obs in out.drain(..) {
        shared
            .record(Entry::Observed {
                conn: id,
                obs,
                redacted: false,
            })
            .await;
    }
    for (dir, error) in conv.unanswered() {
        tracing::warn!("{id} {error}");
        shared
            .record(Entry::Error {
                conn: Some(id),
                dir: Some(dir),
                error,
                at: last,
            })
            .await;
    }
    tracing::debug!("{id} closed ({to_server} bytes K→S, {to_client} bytes S→K)");
    shared
        .record(Entry::Close {
            conn: id,
            to_server,
            to_client,
            at: Instant::now(),
        })
        .await;
}

const CYAN: &str = "36";
const MAGENTA: &str = "35";
const RED: &str = "31";

fn paint(text: &str, colour: &str, on: bool) -> String {
    if on {
        format!("\x1b[{colour}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// One line per frame: connection, direction, kind, msgid, method (for a
/// reply, the request's method and latency) and a summary.
fn log_frame(id: ConnId, f: &conversation::Frame, shared: &Shared) {
    let colour = match f.dir {
        Direction::ToServer => CYAN,
        Direction::ToClient => MAGENTA,
    };
    let arrow = paint(
        crate::show::arrow(shared.protocol, f.dir),
        colour,
        shared.colour,
    );
    let summary = summary(&f.view, f.reply.as_ref(), shared.full_values);
    tracing::info!("{id} {arrow} {summary}");
}

fn summary(view: &MessageView, reply: Option<&conversation::Reply>, full: bool) -> String {
    let Some(reply) = reply else {
        return view.summary(full);
    };
    let mut view = view.clone();
    let label = format!(
        "{} {:.2}ms",
        reply.method.as_deref().unwrap_or("?"),
        reply.latency.as_secs_f64() * 1000.0
    );
    view.method = Some(label);
    view.summary(full)
}
