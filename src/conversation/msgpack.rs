//! `MsgPack:1` conversations: a streaming msgpack decoder per direction,
//! and requests paired with their responses by msgid *on this connection*.
//!
//! Undecodable bytes do not stop decoding: the codec resynchronises at the
//! next byte that can start a message (see [`MsgpackCodec::resync`]), and
//! the skipped bytes are reported with their offset.

use std::time::Instant;

use bytes::BytesMut;

use super::{Chunk, Conversation, Frame, Observed, Reply, Undecodable};
use crate::codec::{CodecError, Limits, MsgpackCodec};
use crate::message::msgpack_rpc::view_of;
use crate::message::msgpack_scan::scan;
use crate::message::msgpack_view::fast_view;
use crate::message::{Direction, Kind};
use crate::protocol::Protocol;

/// Requests kept waiting for a response; older ones are forgotten past
/// this (Kong has one call in flight per connection, so this only bounds
/// a misbehaving peer).
const MAX_PENDING: usize = 1024;

/// One direction's decoder.
#[derive(Debug, Default)]
struct Side {
    codec: MsgpackCodec,
    buf: BytesMut,
}

/// A request waiting for its response.
#[derive(Debug)]
struct Pending {
    msgid: u64,
    method: Option<String>,
    offset: u64,
    at: Instant,
}

/// See the module docs.
#[derive(Debug)]
pub struct MsgpackConversation {
    to_server: Side,
    to_client: Side,
    /// Requests per direction they travelled (Kong's go to the server;
    /// a misbehaving server may send some too).
    pending: Vec<(Direction, Pending)>,
    /// Containers a message may nest (the codec's checked limit).
    max_depth: usize,
    /// Leave out the values that can be written from the bytes
    /// ([`Conversation::scan_only`]).
    scan_only: bool,
}

impl MsgpackConversation {
    /// A conversation with the given decoding limits.
    pub fn new(limits: Limits) -> Self {
        let side = || Side {
            codec: MsgpackCodec::new(limits),
            buf: BytesMut::new(),
        };
        MsgpackConversation {
            to_server: side(),
            to_client: side(),
            pending: Vec::new(),
            max_depth: limits.max_depth.clamp(1, Limits::MAX_DEPTH_CEILING),
            scan_only: false,
        }
    }

    fn side(&mut self, dir: Direction) -> &mut Side {
        match dir {
            Direction::ToServer => &mut self.to_server,
            Direction::ToClient => &mut self.to_client,
        }
    }

    /// Pairs a response travelling in `dir` with a request that travelled
    /// the other way.
    fn pair(&mut self, dir: Direction, msgid: Option<u64>, at: Instant) -> Option<Reply> {
        let msgid = msgid?;
        let i = self
            .pending
            .iter()
            .position(|(d, p)| *d != dir && p.msgid == msgid)?;
        let (_, req) = self.pending.remove(i);
        Some(Reply {
            method: req.method,
            request_offset: req.offset,
            latency: at.saturating_duration_since(req.at),
        })
    }
}

impl Conversation for MsgpackConversation {
    fn protocol(&self) -> Protocol {
        Protocol::MsgPack1
    }

    fn scan_only(&mut self) {
        self.scan_only = true;
    }

    fn observe(&mut self, chunk: &Chunk, out: &mut Vec<Observed>) {
        let dir = chunk.dir;
        let (max_depth, scan_only) = (self.max_depth, self.scan_only);
        self.side(dir).buf.extend_from_slice(&chunk.bytes);
        loop {
            let side = self.side(dir);
            let before = side.codec.offset();
            let (offset, raw) = match side.codec.next_raw(&mut side.buf) {
                Ok(Some(next)) => next,
                Ok(None) => return,
                Err(e) => {
                    let raw = side.codec.resync(&mut side.buf);
                    out.push(Observed::Undecodable(Undecodable {
                        dir,
                        offset: before,
                        at: chunk.at,
                        raw,
                        error: e.to_string(),
                    }));
                    continue;
                }
            };
            // What Kong and the servers send takes the fast path (only
            // scanned when the value can wait); the rest is decoded into a
            // value first, the same view either way.
            let mut scanned = None;
            let fast = match scan_only.then(|| scan(&raw, max_depth)).flatten() {
                Some((view, s)) => {
                    scanned = Some(s);
                    Some(view)
                }
                None => fast_view(&raw, max_depth),
            };
            let mut view = match fast {
                Some(view) => view,
                None => match side.codec.value_of(offset, &raw) {
                    Ok(value) => view_of(&value),
                    Err(e) => {
                        out.push(Observed::Undecodable(Undecodable {
                            dir,
                            offset,
                            at: chunk.at,
                            raw,
                            error: e.to_string(),
                        }));
                        continue;
                    }
                },
            };
            let reply = match view.kind {
                Kind::Request => {
                    if self.pending.len() >= MAX_PENDING {
                        self.pending.remove(0);
                    }
                    self.pending.push((
                        dir,
                        Pending {
                            msgid: view.id.unwrap_or_default(),
                            method: view.method.clone(),
                            offset,
                            at: chunk.at,
                        },
                    ));
                    None
                }
                Kind::Response => {
                    let reply = self.pair(dir, view.id, chunk.at);
                    if reply.is_none() && view.problem.is_none() {
                        view.problem = Some(format!(
                            "unsolicited response: no request with msgid {} is waiting for it \
                             (Kong fails with \"unexpected RPC response ID\")",
                            view.id.unwrap_or_default()
                        ));
                    }
                    reply
                }
                _ => None,
            };
            out.push(Observed::Frame(Frame {
                dir,
                offset,
                at: chunk.at,
                raw,
                view,
                reply,
                scanned,
            }));
        }
    }

    fn unanswered(&mut self) -> Vec<(Direction, String)> {
        self.pending
            .drain(..)
            .map(|(dir, p)| {
                let who = match dir {
                    Direction::ToServer => "the server",
                    Direction::ToClient => "the client",
                };
                let text = format!(
                    "request #{} {} got no reply from {who} before the connection closed",
                    p.msgid,
                    p.method.as_deref().unwrap_or("?")
                );
                (dir, text)
            })
            .collect()
    }

    fn end(&mut self, dir: Direction, at: Instant, out: &mut Vec<Observed>) {
        let side = self.side(dir);
        if side.buf.is_empty() {
            return;
        }
        let offset = side.codec.offset();
        let raw = side.buf.split().freeze();
        let error = CodecError::Truncated {
            offset,
            pending: raw.len(),
        };
        out.push(Observed::Undecodable(Undecodable {
            dir,
            offset,
            at,
            raw,
            error: error.to_string(),
        }));
    }
}
