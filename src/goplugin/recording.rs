//! go-plugin traffic into a recording (`plugtap proxy --protocol go-plugin
//! --record FILE`), through the shared writer in [`crate::record`].
//!
//! What each line holds for go-plugin (README.md "Recordings" documents
//! it for users):
//!
//! * `handshake`: the plugin's line, the line the host was told instead,
//!   what a host would say about a refused line, why bytes are relayed
//!   undecoded;
//! * `open`: a connection, with its name (`4 broker#1`), who is the gRPC
//!   client and server (`host`/`plugin`) and where plugtap forwards it;
//! * `frame`: one [`Decoded`] event; `msg.id` is the HTTP/2 stream id,
//!   `msg.method` the `:path`, `offset` the position among the stream's
//!   DATA bytes in that direction, `raw` a message's payload (without the
//!   5-byte prefix; empty for headers, trailers and resets, which are
//!   HPACK-coded on the wire), `reply` on trailers (the call's path and
//!   duration);
//! * `broker`: an announcement and what the other side was told;
//! * `close` (DATA bytes each way) and `error`;
//! * `child` and `stderr`: the plugin process and its stderr lines.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::event::{BrokerNote, ConnLabel, Decoded};
use crate::conversation::{Frame, Observed, Reply};
use crate::error::{Error, Result};
use crate::message::{Direction, MessageView};
use crate::net::ConnId;
use crate::protocol::Protocol;
use crate::record::{
    BrokerEvent, Entry, HandshakeEvent, HeaderInfo, Line, Open, RecordTx, Recorder, StderrEvent,
};

/// A handle on the recording, shared by the wrapper's tasks.
#[derive(Debug, Clone)]
pub struct Recording {
    tx: RecordTx,
}

impl Recording {
    /// Records through `tx`.
    pub fn new(tx: RecordTx) -> Recording {
        Recording { tx }
    }

    async fn line(&self, line: Line, at: Instant) {
        self.tx.send(Entry::Line { line, at }).await;
    }

    /// The handshake: the plugin's line and what plugtap made of it.
    pub async fn handshake(
        &self,
        original: &str,
        rewritten: Option<String>,
        error: Option<String>,
        relay: Option<String>,
        at: Instant,
    ) {
        let line = Line::Handshake(HandshakeEvent {
            stamp: Default::default(),
            original: original.trim_end_matches(['\r', '\n']).to_owned(),
            rewritten,
            error,
            relay,
        });
        self.line(line, at).await;
    }

    /// A connection was accepted.
    pub async fn conn_open(&self, conn: &ConnLabel, at: Instant) {
        let line = Line::Open(Open {
            stamp: Default::default(),
            conn: conn.id.0,
            name: Some(conn.name.clone()),
            client: Some(conn.client.into()),
            server: Some(conn.server.into()),
            upstream: Some(conn.upstream.to_string()),
        });
        self.line(line, at).await;
    }

    /// A connection ended after `bytes` DATA bytes (to server, to client).
    pub async fn conn_close(
        &self,
        conn: &Arc<ConnLabel>,
        bytes: [u64; 2],
        error: Option<String>,
        at: Instant,
    ) {
        if let Some(error) = error {
            self.tx
                .send(Entry::Error {
                    conn: Some(conn.id),
                    dir: None,
                    error,
                    at,
                })
                .await;
        }
        self.tx
            .send(Entry::Close {
                conn: conn.id,
                to_server: bytes[0],
                to_client: bytes[1],
                at,
            })
            .await;
    }

    /// A broker announcement and what became of it.
    pub async fn broker(&self, conn: &ConnLabel, dir: Direction, note: &BrokerNote, at: Instant) {
        let line = Line::Broker(BrokerEvent {
            stamp: Default::default(),
            conn: conn.id.0,
            dir,
            service_id: note.service_id,
            announcer: note.announcer.into(),
            announced: note.announced.clone(),
            told: note.told.clone(),
            note: note.note.clone(),
        });
        self.line(line, at).await;
    }

    /// One decoded event; `redacted` drops its raw bytes.
    pub async fn decoded(&self, d: &Decoded, redacted: bool, latency: Option<Duration>) {
        let reply = latency.map(|latency| Reply {
            method: d.view.method.clone(),
            request_offset: 0,
            latency,
        });
        self.frame(
            d.conn.id,
            d.dir,
            d.offset,
            d.raw.clone(),
            d.view.clone(),
            reply,
            redacted,
            d.at,
        )
        .await;
    }

    /// A stream the recording ends in the middle of.
    pub async fn cut_short(&self, conn: ConnId, view: MessageView, at: Instant) {
        self.frame(conn, Direction::ToClient, 0, None, view, None, false, at)
            .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn frame(
        &self,
        conn: ConnId,
        dir: Direction,
        offset: u64,
        raw: Option<Bytes>,
        view: MessageView,
        reply: Option<Reply>,
        redacted: bool,
        at: Instant,
    ) {
        let frame = Frame {
            dir,
            offset,
            at,
            raw: raw.unwrap_or_default(),
            view,
            reply,
            scanned: None,
        };
        self.tx
            .send(Entry::Observed {
                conn,
                obs: Observed::Frame(frame),
                redacted,
            })
            .await;
    }

    /// Something that went wrong outside any connection.
    pub async fn error(&self, error: String, at: Instant) {
        self.tx
            .send(Entry::Error {
                conn: None,
                dir: None,
                error,
                at,
            })
            .await;
    }

    /// One line of the plugin's stderr.
    pub async fn stderr(&self, text: &[u8], at: Instant) {
        let text = String::from_utf8_lossy(text);
        let line = Line::Stderr(StderrEvent {
            stamp: Default::default(),
            text: text.trim_end_matches(['\r', '\n']).to_owned(),
        });
        self.line(line, at).await;
    }

    /// The plugin started or exited.
    pub async fn child(
        &self,
        event: &'static str,
        pid: Option<u32>,
        status: Option<String>,
        at: Instant,
    ) {
        self.tx
            .send(Entry::Child {
                event,
                pid,
                status,
                at,
            })
            .await;
    }
}

/// The wrapper's recording file: the writer and a handle on it.
#[derive(Debug)]
pub struct WrapperRecording {
    recorder: Recorder,
    /// What the wrapper's tasks record through.
    pub handle: Recording,
}

impl WrapperRecording {
    /// Creates the file and writes its header. `listen` is where the host
    /// connects, `upstream` where the plugin listens (empty when the
    /// plugin gave no usable handshake).
    pub fn create(
        path: &Path,
        listen: String,
        upstream: String,
        redact: Vec<String>,
        command: String,
        start: Instant,
    ) -> Result<WrapperRecording> {
        let recorder = Recorder::create(
            path,
            HeaderInfo {
                protocol: Protocol::GoPlugin,
                listen: listen.into(),
                upstream: upstream.into(),
                redact,
                command: Some(command),
                mode: None,
                keep_raw: true,
            },
            start,
        )
        .map_err(|source| Error::Io {
            context: "recording".into(),
            source,
        })?;
        let handle = Recording::new(recorder.tx());
        Ok(WrapperRecording { recorder, handle })
    }

    /// Writes what is queued and the `end` line with `reason`.
    pub async fn finish(self, reason: &str) -> Result<()> {
        drop(self.handle);
        self.recorder
            .finish(reason)
            .await
            .map_err(|source| Error::Io {
                context: "recording".into(),
                source,
            })?;
        Ok(())
    }
}
