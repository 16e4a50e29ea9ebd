//! `MsgPack:1` conversations: a streaming msgpack decoder per direction,
//! and requests paired with their responses by msgid *on this connection*.
//!
//! Undecodable bytes do not stop decoding: the codec resynchronises at the
//! next byte that can start a message (see [`MsgpackCodec::resync`]), and
//! the skipped bytes are reported with their offset. If that byte has not
//! arrived yet, the bytes that arrive next are skipped up to it, so the
//! frames found never depend on how the stream was cut into chunks (tested
//! below, cut at every byte).

use std::time::Instant;

use bytes::{Bytes, BytesMut};

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
    /// Recovering from undecodable bytes ran out of bytes before a message
    /// could start: what arrives next is skipped up to such a byte, as if
    /// it had arrived with the bad bytes (so the chunking does not matter).
    lost: bool,
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
            lost: false,
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

    /// Decodes one complete message and pairs it; appends the frame (or,
    /// for bytes the general decoder refuses, an undecodable chunk).
    fn frame(
        &mut self,
        dir: Direction,
        offset: u64,
        raw: Bytes,
        at: Instant,
        out: &mut Vec<Observed>,
    ) {
        let (max_depth, scan_only) = (self.max_depth, self.scan_only);
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
            None => match self.side(dir).codec.value_of(offset, &raw) {
                Ok(value) => view_of(&value),
                Err(e) => {
                    out.push(Observed::Undecodable(Undecodable {
                        dir,
                        offset,
                        at,
                        raw,
                        error: e.to_string(),
                    }));
                    return;
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
                        at,
                    },
                ));
                None
            }
            Kind::Response => {
                let reply = self.pair(dir, view.id, at);
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
            at,
            raw,
            view,
            reply,
            scanned,
        }));
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
        let side = self.side(dir);
        if side.lost {
            side.buf.extend_from_slice(&chunk.bytes);
            let offset = side.codec.offset();
            let (raw, found) = side.codec.skip_to_start(&mut side.buf);
            side.lost = !found;
            if !raw.is_empty() {
                out.push(Observed::Undecodable(Undecodable {
                    dir,
                    offset,
                    at: chunk.at,
                    raw,
                    error: "skipped while looking for the start of a message after undecodable \
                            bytes"
                        .into(),
                }));
            }
        } else if side.buf.is_empty() {
            // Whole messages are sliced off the chunk itself; only what is
            // left (a message cut short, or bytes that do not decode) is
            // copied, and taken by the loop below.
            let mut rest = chunk.bytes.clone();
            while let Ok(Some((offset, raw))) = self.side(dir).codec.next_raw_frozen(&mut rest) {
                self.frame(dir, offset, raw, chunk.at, out);
            }
            self.side(dir).buf.extend_from_slice(&rest);
        } else {
            side.buf.extend_from_slice(&chunk.bytes);
        }
        loop {
            let side = self.side(dir);
            let before = side.codec.offset();
            let (offset, raw) = match side.codec.next_raw(&mut side.buf) {
                Ok(Some(next)) => next,
                Ok(None) => return,
                Err(e) => {
                    let raw = side.codec.resync(&mut side.buf);
                    side.lost = side.buf.is_empty();
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
            self.frame(dir, offset, raw, chunk.at, out);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageView;

    /// Two requests, bytes that are not msgpack, a response, and a
    /// request cut short at the end.
    fn stream() -> Vec<u8> {
        let mut bytes = Vec::new();
        for v in [
            rmpv::Value::Array(vec![
                0.into(),
                1.into(),
                "a".into(),
                vec![rmpv::Value::from("x".repeat(40))].into(),
            ]),
            rmpv::Value::Array(vec![0.into(), 2.into(), "b".into(), rmpv::Value::Nil]),
        ] {
            rmpv::encode::write_value(&mut bytes, &v).unwrap();
        }
        bytes.extend_from_slice(&[0xc1, 0x00, 0xff]);
        rmpv::encode::write_value(
            &mut bytes,
            &rmpv::Value::Array(vec![1.into(), 9.into(), rmpv::Value::Nil, 1.into()]),
        )
        .unwrap();
        bytes.extend_from_slice(&[0x94, 0x00, 0x03]);
        bytes
    }

    /// What a conversation makes of `bytes` sent to the server in chunks
    /// cut at `cuts`: each event's offset, bytes and view (if a frame).
    fn observe(
        bytes: &[u8],
        cuts: &[usize],
        scan_only: bool,
    ) -> Vec<(u64, Vec<u8>, Option<MessageView>)> {
        observe_with(Limits::default(), bytes, cuts, scan_only)
    }

    fn observe_with(
        limits: Limits,
        bytes: &[u8],
        cuts: &[usize],
        scan_only: bool,
    ) -> Vec<(u64, Vec<u8>, Option<MessageView>)> {
        let mut conv = MsgpackConversation::new(limits);
        if scan_only {
            conv.scan_only();
        }
        let at = Instant::now();
        let mut out = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain([&bytes.len()]) {
            let chunk = Chunk {
                dir: Direction::ToServer,
                bytes: Bytes::copy_from_slice(&bytes[start..end]),
                at,
            };
            conv.observe(&chunk, &mut out);
            start = end;
        }
        conv.end(Direction::ToServer, at, &mut out);
        // Where undecodable bytes are cut into pieces depends on what had
        // arrived when the codec resynchronised: adjacent pieces are joined.
        let mut events: Vec<(u64, Vec<u8>, Option<MessageView>)> = Vec::new();
        for obs in out {
            match obs {
                Observed::Frame(mut f) => {
                    f.build_value();
                    events.push((f.offset, f.raw.to_vec(), Some(f.view)));
                }
                Observed::Undecodable(u) => match events.last_mut() {
                    Some((offset, raw, None)) if *offset + raw.len() as u64 == u.offset => {
                        raw.extend_from_slice(&u.raw);
                    }
                    _ => events.push((u.offset, u.raw.to_vec(), None)),
                },
            }
        }
        events
    }

    #[test]
    fn any_chunking_gives_the_same_frames() {
        let bytes = stream();
        let whole = observe(&bytes, &[], false);
        assert_eq!(whole.iter().filter(|e| e.2.is_some()).count(), 3);
        // Every byte comes out once, in order.
        assert_eq!(
            whole.iter().flat_map(|e| e.1.clone()).collect::<Vec<_>>(),
            bytes
        );
        let ones: Vec<usize> = (1..bytes.len()).collect();
        for scan_only in [false, true] {
            assert_eq!(observe(&bytes, &ones, scan_only), whole);
            for cut in 0..=bytes.len() {
                assert_eq!(observe(&bytes, &[cut], scan_only), whole, "cut at {cut}");
            }
        }
    }

    /// Messages nested deeper than the limit are undecodable however the
    /// bytes arrive (a too-deep container once left the codec's scan
    /// half-moved, and the bytes after it were framed differently).
    #[test]
    fn too_deep_is_too_deep_in_any_chunking() {
        let limits = Limits {
            max_depth: 2,
            ..Limits::default()
        };
        let bytes = [
            0x91, 0x91, 0x91, 0x01, 0x93, 0x02, 0xa1, b'n', 0x01, 0x91, 0x91, 0x92, 0x01, 0x01,
            0x01, 0x93, 0x02, 0xa1, b'n', 0x01,
        ];
        let whole = observe_with(limits, &bytes, &[], true);
        let frames: Vec<u64> = whole
            .iter()
            .filter(|e| e.2.is_some())
            .map(|e| e.0)
            .collect();
        assert_eq!(frames, [4, 15], "{whole:?}");
        for scan_only in [false, true] {
            for cut in 0..=bytes.len() {
                assert_eq!(
                    observe_with(limits, &bytes, &[cut], scan_only),
                    whole,
                    "cut at {cut}"
                );
            }
        }
    }
}
