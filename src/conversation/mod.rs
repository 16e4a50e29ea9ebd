//! Conversations: what a proxy sees on one connection, in both directions.
//!
//! A proxy forwards bytes as they arrive and hands a copy of every chunk,
//! with its direction and the time it was read, to the connection's
//! [`Conversation`]. Chunks are fed in *read order across both
//! directions*, so a reply is never observed before the request that
//! caused it. The conversation owns both directions' codecs and any state
//! that spans them, and turns chunks into [`Observed`] events:
//!
//! * a [`Frame`]: direction, stream offset, exact raw bytes and the
//!   protocol-neutral [`MessageView`], plus, for a reply, what it answers
//!   ([`Reply`]: the request's method and the latency);
//! * an [`Undecodable`] chunk: direction, offset, raw bytes and why.
//!
//! Nothing is lost: every byte fed in comes back out in exactly one frame
//! or undecodable chunk, or is still pending at the end of the stream,
//! which [`Conversation::end`] reports as undecodable.
//!
//! Each protocol implements the trait in its own file ([`msgpack`] for
//! `MsgPack:1`, [`protobuf`] for `ProtoBuf:1`); [`for_protocol`] picks one.
//! [`prox`] follows a prox plugin socket connection, where a reply is
//! decoded with the hook of the call before it; [`prox_stream`] feeds it
//! chunks for prox's wrapper. A protocol whose frames only
//! make sense in context (ProtoBuf:1's PDK frames, typed by the method-name
//! frame before them) keeps that context inside its implementation.

pub mod msgpack;
pub mod protobuf;
mod protobuf_decode;
mod protobuf_stream;
pub mod prox;
pub mod prox_stream;

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::Limits;
use crate::message::msgpack_scan::Scanned;
use crate::message::{Direction, MessageView};
use crate::protocol::Protocol;

pub use msgpack::MsgpackConversation;
pub use protobuf_stream::ProtobufStream;
pub use prox_stream::ProxStream;

/// A chunk of bytes as a proxy read it.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Which way the bytes travel.
    pub dir: Direction,
    /// The bytes, exactly as read.
    pub bytes: Bytes,
    /// When they were read.
    pub at: Instant,
}

/// What a conversation makes of the bytes fed to it.
#[derive(Debug, Clone)]
pub enum Observed {
    /// A complete frame.
    Frame(Frame),
    /// Bytes that could not be decoded.
    Undecodable(Undecodable),
}

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Which way it travelled.
    pub dir: Direction,
    /// Position of its first byte in its direction's stream.
    pub offset: u64,
    /// When the chunk that completed it was read.
    pub at: Instant,
    /// Its exact bytes.
    pub raw: Bytes,
    /// The decoded message.
    pub view: MessageView,
    /// For a reply: the request it answers.
    pub reply: Option<Reply>,
    /// Set when `view.value` was not built (it is `null`): the frame was
    /// only scanned (MsgPack:1, [`Conversation::scan_only`]), and its value
    /// is in `raw`. [`Frame::build_value`] builds it.
    pub scanned: Option<Scanned>,
}

impl Frame {
    /// Builds `view.value` of a frame that was only scanned.
    pub fn build_value(&mut self) {
        if let Some(scanned) = self.scanned.take() {
            match scanned.build(&self.raw) {
                Some(value) => self.view.value = value,
                // The scan takes only what the fast view takes (tested
                // there); should that ever fail, the log says so.
                None => self.view.problem = Some("the decoded value was lost".into()),
            }
        }
    }
}

/// What a reply answers, correlated on its own connection (msgids repeat
/// across Kong workers, so they are never matched across connections).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The request's method.
    pub method: Option<String>,
    /// The request's offset in the other direction's stream.
    pub request_offset: u64,
    /// Time from reading the request to reading the reply.
    pub latency: Duration,
}

/// The one call awaiting its reply on a connection whose protocol has one
/// call at a time (ProtoBuf:1, prox), so a reply pairs with it for its
/// latency.
#[derive(Debug, Default)]
pub(crate) struct InFlight(Option<(Option<String>, u64, Instant)>);

impl InFlight {
    /// A call named `method` was read at `offset`, `at`.
    pub(crate) fn start(&mut self, method: Option<String>, offset: u64, at: Instant) {
        self.0 = Some((method, offset, at));
    }

    /// Nothing is awaited any more.
    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }

    /// A reply read `at`: the call it answers, if one was awaited.
    pub(crate) fn reply(&mut self, at: Instant) -> Option<Reply> {
        self.0.take().map(|(method, request_offset, since)| Reply {
            method,
            request_offset,
            latency: at.saturating_duration_since(since),
        })
    }
}

/// Bytes that are not a valid frame.
#[derive(Debug, Clone)]
pub struct Undecodable {
    /// Which way they travelled.
    pub dir: Direction,
    /// Position of the first byte in its direction's stream.
    pub offset: u64,
    /// When the chunk holding them was read (or the stream ended).
    pub at: Instant,
    /// The bytes.
    pub raw: Bytes,
    /// Why they could not be decoded.
    pub error: String,
}

/// Per-connection decoding of both directions; see the module docs.
pub trait Conversation: Send {
    /// The protocol decoded.
    fn protocol(&self) -> Protocol;

    /// From now on, leave out the value of each frame that can be written
    /// straight from its bytes ([`Frame::scanned`]); a no-op for protocols
    /// without such frames.
    fn scan_only(&mut self) {}

    /// Feeds a chunk; appends what it completes to `out`, in stream order.
    fn observe(&mut self, chunk: &Chunk, out: &mut Vec<Observed>);

    /// The stream in `dir` ended; bytes still pending there become an
    /// [`Undecodable`] (a frame cut short).
    fn end(&mut self, dir: Direction, at: Instant, out: &mut Vec<Observed>);

    /// Called once both streams ended: the requests that never got a
    /// reply, described in words (a server that never answered, or closed
    /// the connection instead), each with the direction it travelled.
    /// Forgets them.
    fn unanswered(&mut self) -> Vec<(Direction, String)> {
        Vec::new()
    }
}

/// A conversation decoding `protocol`, for the protocols a byte-level
/// proxy can decode (go-plugin runs its own HTTP/2 proxy instead; prox's
/// socket connections are proxied by its wrapper, `role::prox_proxy`).
pub fn for_protocol(protocol: Protocol, limits: Limits) -> Option<Box<dyn Conversation>> {
    match protocol {
        Protocol::MsgPack1 => Some(Box::new(MsgpackConversation::new(limits))),
        Protocol::ProtoBuf1 => Some(Box::new(ProtobufStream::new(limits))),
        Protocol::Prox => Some(Box::new(ProxStream::new(limits))),
        Protocol::GoPlugin => None,
    }
}
