//! What both prox roles share: one socket connection with its conversation
//! (every frame read or written is observed and logged), log lines for
//! the stdio channel, and the limits prox applies.
//!
//! Log lines name the sides as prox does not have Kong's K/S:
//!
//! ```text
//! c1 prox→plugin request on_request {"t":1,"hook":"on_request","d":{...},"fields":{...}}
//! c1 plugin→prox response on_request {"hook":"on_request","result":{"ok":true},...}
//! stdout plugin→prox notify ready {"method":"ready","params":{...}}
//! ```

use tokio::net::UnixStream;

use crate::codec::{CodecError, Limits, ProxCodec, hex, prox};
use crate::conversation::prox::{Observation, ProxConversation};
use crate::error::{Error, Result};
use crate::message::{Direction, MessageView};
use crate::net::{ConnId, Connection};

/// The arrow for a direction on prox's channels.
pub(crate) fn arrow(dir: Direction) -> &'static str {
    match dir {
        Direction::ToServer => "prox→plugin",
        Direction::ToClient => "plugin→prox",
    }
}

/// Logs one message: where (`c3`, `stdin`, `stdout`), direction, summary.
/// Messages with a problem are warnings.
pub(crate) fn log(place: &str, dir: Direction, view: &MessageView, full: bool) {
    if view.problem.is_some() || view.kind == crate::message::Kind::Closed {
        tracing::warn!("{place} {} {}", arrow(dir), view.summary(full));
    } else {
        tracing::info!("{place} {} {}", arrow(dir), view.summary(full));
    }
}

/// A socket connection with its conversation.
#[derive(Debug)]
pub(crate) struct ProxConn {
    conn: Connection<ProxCodec>,
    conversation: ProxConversation,
    full_values: bool,
}

impl ProxConn {
    /// `limits.max_message` is the frame limit (prox's is 1 MiB).
    pub(crate) fn new(stream: UnixStream, limits: Limits, full_values: bool) -> ProxConn {
        ProxConn {
            conn: Connection::new(stream, ProxCodec::new(limits.max_message)),
            conversation: ProxConversation::new(limits),
            full_values,
        }
    }

    pub(crate) fn id(&self) -> ConnId {
        self.conn.id()
    }

    /// Reads the peer's next frame, travelling `dir`. `Ok(None)` when the
    /// peer closed (a reset counts); if a reply was due, that is logged.
    /// Cancel-safe: the read buffer lives in the connection.
    pub(crate) async fn read(&mut self, dir: Direction) -> Result<Option<Observation>> {
        match self.conn.read_frame().await {
            Ok(Some(frame)) => {
                let obs = self.conversation.observe_frame(dir, &frame);
                log(&self.id().to_string(), dir, &obs.view, self.full_values);
                Ok(Some(obs))
            }
            Err(CodecError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                tracing::debug!("{} connection reset by the peer", self.id());
                self.peer_closed(dir);
                Ok(None)
            }
            Ok(None) => {
                self.peer_closed(dir);
                Ok(None)
            }
            Err(e) => {
                let pending = self.conn.pending();
                let shown = hex(&pending[..pending.len().min(64)]);
                let what = match &e {
                    CodecError::TooLarge { size, .. } => {
                        format!("{e} (prox and its SDK refuse it: `frame too large: {size} bytes`)")
                    }
                    _ => e.to_string(),
                };
                tracing::warn!(
                    "{} {} undecodable bytes: {what}; raw {shown}",
                    self.id(),
                    arrow(dir)
                );
                Err(Error::Other(what))
            }
        }
    }

    fn peer_closed(&mut self, dir: Direction) {
        if let Some(view) = self.conversation.closed(dir) {
            log(&self.id().to_string(), dir, &view, self.full_values);
        }
    }

    /// Sends one frame around `payload`, travelling `dir`.
    pub(crate) async fn send(&mut self, dir: Direction, payload: &[u8]) -> Result<Observation> {
        let frame = prox::encode(payload)?;
        let obs = self.conversation.observe(dir, payload);
        log(&self.id().to_string(), dir, &obs.view, self.full_values);
        self.conn
            .write_all(&frame)
            .await
            .map_err(|source| Error::Io {
                context: format!("{}: writing {}", self.id(), obs.view.kind.label()),
                source,
            })?;
        Ok(obs)
    }
}
