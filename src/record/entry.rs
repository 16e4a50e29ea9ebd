//! What the roles hand the recording's writer (`writer.rs`): an [`Entry`]
//! per event, queued through a [`RecordTx`], and how each becomes a
//! recording [`Line`] once the writer has stamped it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::time::Instant;
use tokio::sync::mpsc;

use super::watch::{Note, Watch};
use super::{
    ChildEvent, Close, Eof, ErrorEvent, FrameEvent, Line, Open, ReplyInfo, Stamp, StdioEvent,
    UndecodableEvent,
};
use crate::conversation::Observed;
use crate::message::msgpack_scan::Scanned;
use crate::message::{Direction, MessageView};
use crate::net::ConnId;

/// Something to record, as the proxy sends it; the writer adds the
/// sequence number and the times.
// Nearly every entry is a frame, so boxing the big variant would only add
// an allocation per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Entry {
    /// A connection opened.
    Open { conn: ConnId, at: Instant },
    /// A frame or undecodable bytes; `redacted` when rules changed it.
    Observed {
        conn: ConnId,
        obs: Observed,
        redacted: bool,
    },
    /// One direction ended after `offset` bytes.
    Eof {
        conn: ConnId,
        dir: Direction,
        offset: u64,
        at: Instant,
    },
    /// A connection ended.
    Close {
        conn: ConnId,
        to_server: u64,
        to_client: u64,
        at: Instant,
    },
    /// An error.
    Error {
        conn: Option<ConnId>,
        dir: Option<Direction>,
        error: String,
        at: Instant,
    },
    /// The wrapped server started or exited.
    Child {
        event: &'static str,
        pid: Option<u32>,
        status: Option<String>,
        at: Instant,
    },
    /// A line on a prox plugin's stdin or stdout.
    Stdio {
        stream: &'static str,
        dir: Direction,
        offset: u64,
        raw: bytes::Bytes,
        msg: MessageView,
        /// `--redact` changed `msg`: `raw` is left out.
        redacted: bool,
        rewritten_socket: Option<String>,
        at: Instant,
    },
    /// Any other line, made by the caller; the writer sets its stamp
    /// (go-plugin's `open` with names, `handshake`, `broker`, `stderr`).
    Line { line: Line, at: Instant },
    /// Start decoding a connection on the recording's thread.
    Watch { conn: ConnId, watch: Box<dyn Watch> },
    /// What a proxy saw on a watched connection.
    Note { conn: ConnId, note: Note },
    /// A watched connection is done: its watch finishes.
    Unwatch { conn: ConnId, at: Instant },
    /// Stop: write the `end` line with this reason.
    Finish { reason: String },
}

/// A cheap, cloneable handle that queues entries.
#[derive(Debug, Clone)]
pub struct RecordTx(pub(super) mpsc::Sender<Entry>);

impl RecordTx {
    /// A channel of `capacity` entries and its receiving end, for tests
    /// of what queues entries.
    #[cfg(test)]
    pub(crate) fn channel(capacity: usize) -> (RecordTx, mpsc::Receiver<Entry>) {
        let (tx, rx) = mpsc::channel(capacity);
        (RecordTx(tx), rx)
    }

    /// Queues an entry, waiting while the queue is full.
    pub async fn send(&self, entry: Entry) {
        // Fails only once the writer has stopped, at the very end.
        let _ = self.0.send(entry).await;
    }

    /// Queues an entry if there is room now; gives it back if not.
    // Handing the entry back is the point; boxing it would cost an
    // allocation on the path that finds room.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, entry: Entry) -> Result<(), Entry> {
        match self.0.try_send(entry) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Full(entry)) => Err(entry),
        }
    }

    /// Waits for room for one entry; `None` once the writer has stopped.
    pub async fn reserve(&self) -> Option<mpsc::Permit<'_, Entry>> {
        self.0.reserve().await.ok()
    }
}

/// An entry made ready to write.
pub(super) enum Converted {
    /// A frame: written by hand on the hot path, its raw bytes (none when
    /// redacted) base64-encoded straight into the buffer.
    Frame {
        event: FrameEvent,
        raw: Option<bytes::Bytes>,
        /// Set when `event.msg.value` was left out: it is written from
        /// `raw` (which a scanned frame always has: it is never redacted).
        scanned: Option<Scanned>,
    },
    /// Any other line, serialised with serde.
    Line(Line),
    /// Nothing to write (`Finish`, a second header).
    Nothing,
}

impl Entry {
    /// The line for this entry; `stamp` numbers and times it.
    pub(super) fn into_line(self, stamp: &mut dyn FnMut(Instant) -> Stamp) -> Converted {
        let line = match self {
            Entry::Open { conn, at } => Line::Open(Open {
                stamp: stamp(at),
                conn: conn.0,
                name: None,
                client: None,
                server: None,
                upstream: None,
            }),
            Entry::Observed {
                conn,
                obs: Observed::Frame(f),
                redacted,
            } => {
                let event = FrameEvent {
                    stamp: stamp(f.at),
                    conn: conn.0,
                    dir: f.dir,
                    offset: f.offset,
                    len: f.raw.len() as u64,
                    raw: None,
                    reencodes: false,
                    redacted,
                    msg: f.view,
                    reply: f.reply.map(|r| ReplyInfo {
                        method: r.method,
                        request_offset: r.request_offset,
                        latency_us: r.latency.as_micros() as u64,
                    }),
                };
                return Converted::Frame {
                    event,
                    raw: (!redacted).then_some(f.raw),
                    scanned: f.scanned,
                };
            }
            Entry::Observed {
                conn,
                obs: Observed::Undecodable(u),
                ..
            } => Line::Undecodable(UndecodableEvent {
                stamp: stamp(u.at),
                conn: conn.0,
                dir: u.dir,
                offset: u.offset,
                len: u.raw.len() as u64,
                raw: B64.encode(&u.raw),
                error: u.error,
            }),
            Entry::Eof {
                conn,
                dir,
                offset,
                at,
            } => Line::Eof(Eof {
                stamp: stamp(at),
                conn: conn.0,
                dir,
                offset,
            }),
            Entry::Close {
                conn,
                to_server,
                to_client,
                at,
            } => Line::Close(Close {
                stamp: stamp(at),
                conn: conn.0,
                to_server,
                to_client,
            }),
            Entry::Error {
                conn,
                dir,
                error,
                at,
            } => Line::Error(ErrorEvent {
                stamp: stamp(at),
                conn: conn.map(|c| c.0),
                dir,
                error,
            }),
            Entry::Child {
                event,
                pid,
                status,
                at,
            } => Line::Child(ChildEvent {
                stamp: stamp(at),
                event: event.into(),
                pid,
                status,
            }),
            Entry::Stdio {
                stream,
                dir,
                offset,
                raw,
                msg,
                redacted,
                rewritten_socket,
                at,
            } => Line::Stdio(StdioEvent {
                stamp: stamp(at),
                stream: stream.into(),
                dir,
                offset,
                len: raw.len() as u64,
                raw: (!redacted).then(|| B64.encode(&raw)),
                redacted,
                msg,
                rewritten_socket,
            }),
            Entry::Line { mut line, at } => {
                // A second header is not an event line.
                if line.stamp_mut().is_none() {
                    return Converted::Nothing;
                }
                let stamp = stamp(at);
                if let Some(s) = line.stamp_mut() {
                    *s = stamp;
                }
                line
            }
            // The writer handles these itself.
            Entry::Finish { .. }
            | Entry::Watch { .. }
            | Entry::Note { .. }
            | Entry::Unwatch { .. } => return Converted::Nothing,
        };
        Converted::Line(line)
    }
}
