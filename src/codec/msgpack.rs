//! Streaming codec for a bare stream of msgpack values (Kong's `MsgPack:1`).
//!
//! There is no length prefix and no delimiter: a message ends where its
//! msgpack value ends. The codec walks the value's headers to find that end
//! *without allocating*, remembering how far it got, so a message that
//! arrives in many small reads is scanned once, not once per read. Declared
//! string, binary, ext and container sizes are checked against
//! [`Limits::max_message`] as soon as their header is seen, before any of
//! the payload is waited for; nesting is checked against
//! [`Limits::max_depth`]. Only a complete, checked message is decoded into
//! an [`rmpv::Value`].
//!
//! ```text
//!   94 00 01 b4 "plugin.StartInstance" 91 82 a4 "Name" ...   <- one request
//!   ^ fixarray(4)                      ^ fixarray(1)
//! ```

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use rmpv::Value;
use tokio_util::codec::{Decoder, Encoder};

use super::{CodecError, Limits};

/// One msgpack value split off the stream: its exact wire bytes and the
/// decoded value.
#[derive(Debug, Clone, PartialEq)]
pub struct MsgpackFrame {
    /// Position of the first byte in the stream.
    pub offset: u64,
    /// The value's bytes exactly as they arrived.
    pub raw: Bytes,
    /// The decoded value.
    pub value: Value,
}

/// Splits a byte stream into msgpack values; see the module docs.
#[derive(Debug, Default)]
pub struct MsgpackCodec {
    limits: Limits,
    /// Stream offset of the first byte currently in the caller's buffer.
    consumed: u64,
    /// Bytes of the buffer already scanned for the current message.
    pos: usize,
    /// Items still expected by each open array or map, innermost last.
    open: Vec<u64>,
}

impl MsgpackCodec {
    /// A codec with the given limits (the depth is capped at
    /// [`Limits::MAX_DEPTH_CEILING`]).
    pub fn new(mut limits: Limits) -> Self {
        limits.max_depth = limits.max_depth.clamp(1, Limits::MAX_DEPTH_CEILING);
        MsgpackCodec {
            limits,
            ..Default::default()
        }
    }

    /// Stream offset of the next byte the codec has not yet returned.
    pub fn offset(&self) -> u64 {
        self.consumed
    }

    /// Recovers after [`CodecError::Invalid`], `TooLarge` or `TooDeep`: drops
    /// bytes from the front of `buf` up to the next byte that can start an
    /// RPC message (`0x93` or `0x94`, a 3- or 4-element array) and returns
    /// them. At least one byte is dropped, so repeated calls make progress.
    pub fn resync(&mut self, buf: &mut BytesMut) -> Bytes {
        let skip = buf
            .iter()
            .skip(1)
            .position(|b| matches!(b, 0x93 | 0x94))
            .map_or(buf.len(), |i| i + 1);
        self.reset_scan();
        self.consumed += skip as u64;
        buf.split_to(skip).freeze()
    }

    /// Goes on recovering where [`MsgpackCodec::resync`] ran out of bytes:
    /// drops the bytes in front of the first one that can start an RPC
    /// message (none, if `buf` starts with one) and returns them, and
    /// whether such a byte was found.
    pub fn skip_to_start(&mut self, buf: &mut BytesMut) -> (Bytes, bool) {
        let (skip, found) = match buf.iter().position(|b| matches!(b, 0x93 | 0x94)) {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        self.reset_scan();
        self.consumed += skip as u64;
        (buf.split_to(skip).freeze(), found)
    }

    /// Splits the next complete message off `buf` without decoding it:
    /// its stream offset and exact bytes. Sizes and nesting are checked as
    /// in [`Decoder::decode`]; on an error nothing is removed from `buf`.
    pub fn next_raw(&mut self, buf: &mut BytesMut) -> Result<Option<(u64, Bytes)>, CodecError> {
        let Some(len) = self.scan(buf)? else {
            return Ok(None);
        };
        let offset = self.consumed;
        let raw = buf.split_to(len).freeze();
        self.reset_scan();
        self.consumed += len as u64;
        Ok(Some((offset, raw)))
    }

    /// [`MsgpackCodec::next_raw`] on bytes already frozen: the message is
    /// sliced off `buf` without a copy. Nothing is removed on `Ok(None)` or
    /// an error; after `Ok(None)` the scan so far stays valid for a buffer
    /// that starts with what is left of `buf`, after an error it starts
    /// again.
    pub fn next_raw_frozen(&mut self, buf: &mut Bytes) -> Result<Option<(u64, Bytes)>, CodecError> {
        let len = match self.scan(buf) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(e) => {
                // The buffered path that takes over scans from the start.
                self.reset_scan();
                return Err(e);
            }
        };
        let offset = self.consumed;
        let raw = buf.split_to(len);
        self.reset_scan();
        self.consumed += len as u64;
        Ok(Some((offset, raw)))
    }

    /// Decodes the bytes of one message that [`MsgpackCodec::next_raw`]
    /// returned.
    pub fn value_of(&self, offset: u64, raw: &Bytes) -> Result<Value, CodecError> {
        let mut reader = raw.clone().reader();
        // The scan enforced the depth limit; rmpv counts each container twice
        // (value, then its body) plus the leaf, so give it room for that.
        rmpv::decode::read_value_with_max_depth(&mut reader, 2 * self.limits.max_depth + 4).map_err(
            |e| CodecError::Invalid {
                offset,
                reason: e.to_string(),
            },
        )
    }

    fn reset_scan(&mut self) {
        self.pos = 0;
        self.open.clear();
    }

    /// Advances the scan; returns the message length once one is complete.
    fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, CodecError> {
        loop {
            let pos = self.pos;
            let Some(&marker) = buf.get(pos) else {
                return Ok(None);
            };
            let head = Head::of(marker).ok_or_else(|| CodecError::Invalid {
                offset: self.consumed,
                reason: format!("reserved msgpack marker 0xc1 at byte {pos} of the message"),
            })?;
            let Some(header) = buf.get(pos..pos + head.header) else {
                return Ok(None);
            };
            let declared = head.declared(header);
            let end_of_header = (pos + head.header) as u64;
            if head.children == 0 {
                let end = end_of_header + declared;
                self.check_size(end)?;
                if (buf.len() as u64) < end {
                    return Ok(None);
                }
                self.pos = end as usize;
                if self.complete_item() {
                    return Ok(Some(self.pos));
                }
            } else {
                let items = declared * head.children;
                // Every item takes at least one byte.
                self.check_size(end_of_header + items)?;
                // Checked before the scan moves on, so an error leaves the
                // scan where it was (a caller may scan the same bytes again).
                if items != 0 && self.open.len() >= self.limits.max_depth {
                    return Err(CodecError::TooDeep {
                        offset: self.consumed,
                        limit: self.limits.max_depth,
                    });
                }
                self.pos = end_of_header as usize;
                if items == 0 {
                    if self.complete_item() {
                        return Ok(Some(self.pos));
                    }
                } else {
                    self.open.push(items);
                }
            }
        }
    }

    fn check_size(&self, size: u64) -> Result<(), CodecError> {
        if size > self.limits.max_message as u64 {
            return Err(CodecError::TooLarge {
                offset: self.consumed,
                size,
                limit: self.limits.max_message,
            });
        }
        Ok(())
    }

    /// Marks one item finished; true when that finished the whole message.
    fn complete_item(&mut self) -> bool {
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return false;
            }
            self.open.pop();
        }
        true
    }
}

/// What a marker byte says about the item it starts.
struct Head {
    /// Bytes of header, marker included, before the payload or children.
    header: usize,
    /// Where the size sits in the header: `Fixed(n)` for sizes the marker
    /// itself implies, `Be(k)` for a k-byte big-endian field after the marker.
    size: Size,
    /// 0 for scalars; items per declared unit for containers (2 for maps).
    children: u64,
}

enum Size {
    Fixed(u64),
    Be(usize),
}

impl Head {
    fn of(m: u8) -> Option<Head> {
        let scalar = |header, size| Head {
            header,
            size,
            children: 0,
        };
        let container = |header, size, children| Head {
            header,
            size,
            children,
        };
        Some(match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => scalar(1, Size::Fixed(0)),
            0x80..=0x8f => container(1, Size::Fixed(u64::from(m & 0x0f)), 2),
            0x90..=0x9f => container(1, Size::Fixed(u64::from(m & 0x0f)), 1),
            0xa0..=0xbf => scalar(1, Size::Fixed(u64::from(m & 0x1f))),
            0xc1 => return None,
            0xc4 | 0xd9 => scalar(2, Size::Be(1)),
            0xc5 | 0xda => scalar(3, Size::Be(2)),
            0xc6 | 0xdb => scalar(5, Size::Be(4)),
            // ext: the type byte follows the length and is part of the header.
            0xc7 => scalar(3, Size::Be(1)),
            0xc8 => scalar(4, Size::Be(2)),
            0xc9 => scalar(6, Size::Be(4)),
            0xca => scalar(1, Size::Fixed(4)),
            0xcb => scalar(1, Size::Fixed(8)),
            0xcc | 0xd0 => scalar(1, Size::Fixed(1)),
            0xcd | 0xd1 => scalar(1, Size::Fixed(2)),
            0xce | 0xd2 => scalar(1, Size::Fixed(4)),
            0xcf | 0xd3 => scalar(1, Size::Fixed(8)),
            0xd4 => scalar(2, Size::Fixed(1)),
            0xd5 => scalar(2, Size::Fixed(2)),
            0xd6 => scalar(2, Size::Fixed(4)),
            0xd7 => scalar(2, Size::Fixed(8)),
            0xd8 => scalar(2, Size::Fixed(16)),
            0xdc => container(3, Size::Be(2), 1),
            0xdd => container(5, Size::Be(4), 1),
            0xde => container(3, Size::Be(2), 2),
            0xdf => container(5, Size::Be(4), 2),
        })
    }

    /// The payload length (scalars) or declared element count (containers).
    fn declared(&self, header: &[u8]) -> u64 {
        match self.size {
            Size::Fixed(n) => n,
            Size::Be(k) => header[1..=k]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        }
    }
}

impl Decoder for MsgpackCodec {
    type Item = MsgpackFrame;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<MsgpackFrame>, CodecError> {
        let Some((offset, raw)) = self.next_raw(buf)? else {
            return Ok(None);
        };
        let value = self.value_of(offset, &raw)?;
        Ok(Some(MsgpackFrame { offset, raw, value }))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<MsgpackFrame>, CodecError> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        if buf.is_empty() {
            Ok(None)
        } else {
            Err(CodecError::Truncated {
                offset: self.consumed,
                pending: buf.len(),
            })
        }
    }
}

impl Encoder<&Value> for MsgpackCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Value, dst: &mut BytesMut) -> Result<(), CodecError> {
        write(&mut dst.writer(), item).map_err(CodecError::Io)
    }
}

/// Encodes one value into a fresh buffer.
pub fn encode(value: &Value) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    // Writing into memory cannot fail.
    let _ = write(&mut (&mut buf).writer(), value);
    buf.freeze()
}

/// Writes a value in the smallest encoding for each item. Unlike
/// `rmpv::encode::write_value`, a str holding invalid UTF-8 stays a str
/// (rmpv writes it as bin), so decoded values re-encode faithfully.
pub fn write<W: std::io::Write>(wr: &mut W, value: &Value) -> std::io::Result<()> {
    use rmp::encode as e;
    let io = |err: e::ValueWriteError| match err {
        e::ValueWriteError::InvalidMarkerWrite(io) | e::ValueWriteError::InvalidDataWrite(io) => io,
    };
    match value {
        Value::Nil => e::write_nil(wr)?,
        Value::Boolean(b) => e::write_bool(wr, *b)?,
        Value::Integer(i) => match i.as_u64() {
            Some(u) => drop(e::write_uint(wr, u).map_err(io)?),
            // Not a u64, so a negative i64.
            None => drop(e::write_sint(wr, i.as_i64().unwrap_or_default()).map_err(io)?),
        },
        Value::F32(f) => e::write_f32(wr, *f).map_err(io)?,
        Value::F64(f) => e::write_f64(wr, *f).map_err(io)?,
        Value::String(s) => {
            let bytes = s.as_bytes();
            e::write_str_len(wr, len32(bytes.len())?).map_err(io)?;
            wr.write_all(bytes)?;
        }
        Value::Binary(b) => e::write_bin(wr, b).map_err(io)?,
        Value::Array(items) => {
            e::write_array_len(wr, len32(items.len())?).map_err(io)?;
            for item in items {
                write(wr, item)?;
            }
        }
        Value::Map(pairs) => {
            e::write_map_len(wr, len32(pairs.len())?).map_err(io)?;
            for (k, v) in pairs {
                write(wr, k)?;
                write(wr, v)?;
            }
        }
        Value::Ext(t, data) => {
            e::write_ext_meta(wr, len32(data.len())?, *t).map_err(io)?;
            wr.write_all(data)?;
        }
    }
    Ok(())
}

pub(crate) fn len32(n: usize) -> std::io::Result<u32> {
    u32::try_from(n)
        .map_err(|_| std::io::Error::other("msgpack cannot hold more than 2^32-1 items or bytes"))
}
