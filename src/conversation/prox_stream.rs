//! prox's plugin socket for the proxy: chunks of bytes in, frames with
//! meaning out.
//!
//! Each direction has its own length-prefixed codec ([`ProxCodec`], 1 MiB
//! by default, prox's limit); complete frames go, in read order across both
//! directions, to the connection's [`ProxConversation`], which decodes a
//! call's envelope and inner payload and a reply with the hook of the call
//! it answers. prox has one call outstanding per connection, so a reply is
//! paired with the call before it for its latency; `on_disconnect` frames
//! are notifications and wait for nothing.
//!
//! A length prefix above the limit is what prox and its SDK refuse
//! ("frame too large: N bytes") before closing the connection; it leaves
//! nothing to resynchronise on, so the rest of that direction is reported
//! as undecodable. When the plugin closes while a reply is due (it crashed
//! mid-call, or refused the frame), that is reported as a
//! [`Kind::Closed`] frame with no bytes,
//! saying what prox does about it.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder as _;

use super::prox::ProxConversation;
use super::{Chunk, Conversation, Frame, InFlight, Observed, Undecodable};
use crate::codec::{CodecError, Limits, ProxCodec};
use crate::message::{Direction, Kind};
use crate::protocol::Protocol;

#[derive(Debug)]
struct Side {
    codec: ProxCodec,
    buf: BytesMut,
    /// Set after a framing error: everything else is undecodable.
    broken: bool,
    /// Bytes reported as undecodable after the codec's offset.
    lost: u64,
}

impl Side {
    fn offset(&self) -> u64 {
        self.codec.offset() + self.lost
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct ProxStream {
    to_server: Side,
    to_client: Side,
    state: ProxConversation,
    /// The call waiting for its reply: hook name, offset, time read.
    call: InFlight,
}

impl ProxStream {
    /// A conversation with the given limits (`max_message` is the frame limit).
    pub fn new(limits: Limits) -> Self {
        let side = || Side {
            codec: ProxCodec::new(limits.max_message),
            buf: BytesMut::new(),
            broken: false,
            lost: 0,
        };
        ProxStream {
            to_server: side(),
            to_client: side(),
            state: ProxConversation::new(limits),
            call: InFlight::default(),
        }
    }

    fn side(&mut self, dir: Direction) -> &mut Side {
        match dir {
            Direction::ToServer => &mut self.to_server,
            Direction::ToClient => &mut self.to_client,
        }
    }

    /// What a refused frame means, by who sent it.
    fn too_large(&self, dir: Direction, size: u64, limit: usize) -> String {
        let refused = match dir {
            Direction::ToServer => {
                "the plugin's SDK refuses it (`frame too large`) and closes the connection"
                    .to_owned()
            }
            Direction::ToClient => {
                let failure = self
                    .state
                    .awaiting()
                    .map(|h| format!("; {}", h.on_failure()))
                    .unwrap_or_default();
                format!(
                    "prox refuses it (`frame too large: {size} bytes`) and closes the connection{failure}"
                )
            }
        };
        format!(
            "a frame of {size} bytes declared, above the limit of {limit} bytes: {refused}; \
             the rest of this direction cannot be framed"
        )
    }
}

impl Conversation for ProxStream {
    fn protocol(&self) -> Protocol {
        Protocol::Prox
    }

    fn observe(&mut self, chunk: &Chunk, out: &mut Vec<Observed>) {
        let dir = chunk.dir;
        let side = self.side(dir);
        if side.broken {
            let offset = side.offset();
            side.lost += chunk.bytes.len() as u64;
            out.push(Observed::Undecodable(Undecodable {
                dir,
                offset,
                at: chunk.at,
                raw: chunk.bytes.clone(),
                error: "after a frame too large in this direction".into(),
            }));
            return;
        }
        side.buf.extend_from_slice(&chunk.bytes);
        loop {
            let side = self.side(dir);
            let frame = match side.codec.decode(&mut side.buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(e) => {
                    side.broken = true;
                    let offset = side.offset();
                    let raw = side.buf.split().freeze();
                    side.lost += raw.len() as u64;
                    let error = match e {
                        CodecError::TooLarge { size, limit, .. } => {
                            self.too_large(dir, size, limit)
                        }
                        e => e.to_string(),
                    };
                    out.push(Observed::Undecodable(Undecodable {
                        dir,
                        offset,
                        at: chunk.at,
                        raw,
                        error,
                    }));
                    return;
                }
            };
            let obs = self.state.observe_frame(dir, &frame);
            let reply = match (dir, obs.view.kind) {
                (Direction::ToServer, Kind::Request) => {
                    match obs.view.method.clone() {
                        Some(hook) => self.call.start(Some(hook), frame.offset, chunk.at),
                        None => self.call.clear(),
                    }
                    None
                }
                (Direction::ToClient, Kind::Response | Kind::Malformed) => {
                    self.call.reply(chunk.at)
                }
                _ => None,
            };
            out.push(Observed::Frame(Frame {
                dir,
                offset: frame.offset,
                at: chunk.at,
                raw: frame.raw,
                view: obs.view,
                reply,
                scanned: None,
            }));
        }
    }

    fn end(&mut self, dir: Direction, at: Instant, out: &mut Vec<Observed>) {
        let side = self.side(dir);
        let offset = side.offset();
        if !side.buf.is_empty() && !side.broken {
            let raw: Bytes = side.buf.split().freeze();
            side.lost += raw.len() as u64;
            out.push(Observed::Undecodable(Undecodable {
                dir,
                offset,
                at,
                error: format!(
                    "stream ended in the middle of a frame at offset {offset} ({} bytes pending)",
                    raw.len()
                ),
                raw,
            }));
        }
        if let Some(view) = self.state.closed(dir) {
            self.call.clear();
            out.push(Observed::Frame(Frame {
                dir,
                offset: self.side(dir).offset(),
                at,
                raw: Bytes::new(),
                view,
                reply: None,
                scanned: None,
            }));
        }
    }
}
