//! One `ProtoBuf:1` connection as both roles use it: frames read and
//! written through [`Connection`], each one given its meaning by the
//! connection's [`ProtobufConversation`], logged, and kept for the
//! conversation record.

use serde_json::{Value as Json, json};
use tokio::net::UnixStream;

use super::log_message;
use crate::codec::{CodecError, Limits, ProtobufCodec, hex, protobuf};
use crate::conversation::protobuf::{Observation, ProtobufConversation};
use crate::error::{Error, Result};
use crate::message::{Direction, MessageView};
use crate::net::{ConnId, Connection};

/// A connection with its conversation state and record.
#[derive(Debug)]
pub(crate) struct PbConn {
    conn: Connection<ProtobufCodec>,
    conversation: ProtobufConversation,
    record: Vec<Json>,
    full_values: bool,
}

impl PbConn {
    pub(crate) fn new(stream: UnixStream, limits: Limits, full_values: bool) -> PbConn {
        PbConn {
            conn: Connection::new(stream, ProtobufCodec::new(limits)),
            conversation: ProtobufConversation::new(),
            record: Vec::new(),
            full_values,
        }
    }

    pub(crate) fn id(&self) -> ConnId {
        self.conn.id()
    }

    /// Reads the peer's next frame, travelling `dir`. `Ok(None)` when the
    /// peer closed; if a frame was due, that is logged and recorded.
    /// Cancel-safe: the read buffer lives in the connection.
    pub(crate) async fn read(&mut self, dir: Direction) -> Result<Option<Observation>> {
        match self.conn.read_frame().await {
            Ok(Some(frame)) => {
                let obs = self.conversation.observe(dir, &frame.payload());
                self.note(dir, &obs.view);
                Ok(Some(obs))
            }
            // A reset is the peer closing too (it had unread data or left abruptly).
            Err(CodecError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                tracing::debug!("{} connection reset by the peer", self.id());
                self.peer_closed(dir);
                Ok(None)
            }
            Ok(None) => {
                self.peer_closed(dir);
                Ok(None)
            }
            Err(e) => Err(self.undecodable(dir, e)),
        }
    }

    fn peer_closed(&mut self, dir: Direction) {
        if let Some(view) = self.conversation.closed(dir) {
            self.note(dir, &view);
        }
    }

    /// Sends one frame around `payload`, travelling `dir`.
    pub(crate) async fn send(&mut self, dir: Direction, payload: &[u8]) -> Result<()> {
        let frame = protobuf::encode(payload)?;
        let obs = self.conversation.observe(dir, payload);
        self.note(dir, &obs.view);
        self.conn
            .write_all(&frame)
            .await
            .map_err(|source| Error::Io {
                context: format!("{}: writing {}", self.id(), obs.view.kind.label()),
                source,
            })
    }

    /// Writes bytes as they are, outside any frame and unobserved (fault
    /// injection).
    pub(crate) async fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.conn
            .write_all(bytes)
            .await
            .map_err(|source| Error::Io {
                context: format!("{}: writing a faulty reply", self.id()),
                source,
            })
    }

    /// Keeps a note of an injected fault in the conversation record.
    pub(crate) fn fault(&mut self, note: Json) {
        self.record.push(note);
    }

    /// Forgets the call in progress: this side will not answer it, and the
    /// next frame starts a new call.
    pub(crate) fn abandon_call(&mut self) {
        self.conversation.abandon();
    }

    /// Records that this side closes the connection now, and why.
    pub(crate) fn closing(&mut self, why: &str, dir: Direction) {
        tracing::warn!("{} {why}", self.id());
        if let Some(mut view) = self.conversation.closed(dir) {
            view.problem = Some(why.to_owned());
            self.record.push(json!({"direction": dir, "view": view}));
        }
    }

    /// The conversation so far: every frame's direction and view.
    pub(crate) fn into_record(self) -> Vec<Json> {
        self.record
    }

    fn note(&mut self, dir: Direction, view: &MessageView) {
        log_message(self.id(), dir, view, self.full_values);
        self.record.push(json!({"direction": dir, "view": view}));
    }

    fn undecodable(&mut self, dir: Direction, e: CodecError) -> Error {
        let pending = self.conn.pending();
        tracing::warn!(
            "{} {} undecodable bytes: {e}; raw {}",
            self.id(),
            dir.arrow(),
            hex(&pending[..pending.len().min(256)])
        );
        self.record.push(json!({
            "direction": dir,
            "undecodable": hex(&pending[..pending.len().min(4096)]),
            "error": e.to_string(),
        }));
        Error::Codec(e)
    }
}
