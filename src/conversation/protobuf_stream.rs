//! `ProtoBuf:1` for the proxy: chunks of bytes in, frames with meaning out.
//!
//! Each direction has its own length-prefixed codec; complete frames go,
//! in read order across both directions, to the connection's
//! [`ProtobufConversation`], which knows what each frame is from the ones
//! before it. An RpcReturn is paired with the RpcCall it answers (there is
//! one call at a time per connection). A length prefix above the limit
//! leaves nothing to resynchronise on, so the rest of that direction is
//! reported as undecodable. When the server closes while a reply was due,
//! that close is `ProtoBuf:1`'s error signal and is reported as a
//! [`Kind::Closed`](crate::message::Kind::Closed) frame with no bytes.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder as _;

use super::protobuf::ProtobufConversation;
use super::{Chunk, Conversation, Frame, InFlight, Observed, Undecodable};
use crate::codec::Limits;
use crate::codec::protobuf::ProtobufCodec;
use crate::message::{Direction, Kind};
use crate::protocol::Protocol;

#[derive(Debug, Default)]
struct Side {
    codec: ProtobufCodec,
    buf: BytesMut,
    /// Set after an unrecoverable error: everything else is undecodable.
    broken: bool,
}

/// See the module docs.
#[derive(Debug)]
pub struct ProtobufStream {
    to_server: Side,
    to_client: Side,
    state: ProtobufConversation,
    /// The RpcCall waiting for its RpcReturn: method, offset, time.
    call: InFlight,
}

impl ProtobufStream {
    /// A conversation with the given decoding limits.
    pub fn new(limits: Limits) -> Self {
        let side = || Side {
            codec: ProtobufCodec::new(limits),
            ..Side::default()
        };
        ProtobufStream {
            to_server: side(),
            to_client: side(),
            state: ProtobufConversation::new(),
            call: InFlight::default(),
        }
    }

    fn side(&mut self, dir: Direction) -> &mut Side {
        match dir {
            Direction::ToServer => &mut self.to_server,
            Direction::ToClient => &mut self.to_client,
        }
    }
}

impl Conversation for ProtobufStream {
    fn protocol(&self) -> Protocol {
        Protocol::ProtoBuf1
    }

    fn observe(&mut self, chunk: &Chunk, out: &mut Vec<Observed>) {
        let dir = chunk.dir;
        let side = self.side(dir);
        if side.broken {
            let offset = side.codec.offset();
            out.push(Observed::Undecodable(Undecodable {
                dir,
                offset,
                at: chunk.at,
                raw: chunk.bytes.clone(),
                error: "after an earlier framing error in this direction".into(),
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
                    let offset = side.codec.offset();
                    let raw = side.buf.split().freeze();
                    out.push(Observed::Undecodable(Undecodable {
                        dir,
                        offset,
                        at: chunk.at,
                        raw,
                        error: e.to_string(),
                    }));
                    return;
                }
            };
            let obs = self.state.observe(dir, &frame.payload());
            let reply = match obs.view.kind {
                Kind::Request => {
                    self.call
                        .start(obs.view.method.clone(), frame.offset, chunk.at);
                    None
                }
                Kind::Response => self.call.reply(chunk.at),
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
        let offset = side.codec.offset();
        if !side.buf.is_empty() && !side.broken {
            let raw = side.buf.split().freeze();
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
            out.push(Observed::Frame(Frame {
                dir,
                offset,
                at,
                raw: Bytes::new(),
                view,
                reply: None,
                scanned: None,
            }));
        }
    }
}
