//! Framing for Kong's `ProtoBuf:1`: every frame is a 4-byte little-endian
//! length, then that many payload bytes.
//!
//! ```text
//!   0f 00 00 00 | 08 03 a2 02 0a 08 07 12 06 61 63 63 65 73 73   <- RpcCall, 15 bytes
//!   00 00 00 00 |                                                <- empty frame
//! ```
//!
//! A zero-length frame is a frame like any other (its meaning depends on
//! where the conversation is; see [`crate::conversation::protobuf`]). The
//! declared length is checked against [`Limits::max_message`] as soon as
//! the four length bytes are in, before any room is reserved for the
//! payload, so a hostile length costs nothing. The payload is not
//! interpreted here; [`Limits::max_depth`] is enforced by the protobuf
//! decoder's own recursion limit.

use bytes::{BufMut as _, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{CodecError, Limits};

/// Bytes of the length prefix.
pub const PREFIX: usize = 4;

/// One frame split off the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtobufFrame {
    /// Position of the frame's first length byte in the stream.
    pub offset: u64,
    /// The frame exactly as it arrived: length prefix and payload.
    pub raw: Bytes,
}

impl ProtobufFrame {
    /// A frame around `payload`, as if it had been read at `offset`.
    pub fn new(offset: u64, payload: &[u8]) -> Result<ProtobufFrame, CodecError> {
        Ok(ProtobufFrame {
            offset,
            raw: encode(payload)?,
        })
    }

    /// The payload, without the length prefix.
    pub fn payload(&self) -> Bytes {
        self.raw.slice(PREFIX..)
    }

    /// True for a zero-length frame.
    pub fn is_empty(&self) -> bool {
        self.raw.len() == PREFIX
    }
}

/// Splits a byte stream into length-prefixed frames; see the module docs.
#[derive(Debug, Default)]
pub struct ProtobufCodec {
    limits: Limits,
    /// Stream offset of the first byte currently in the caller's buffer.
    consumed: u64,
}

impl ProtobufCodec {
    /// A codec with the given limits.
    pub fn new(limits: Limits) -> Self {
        ProtobufCodec {
            limits,
            consumed: 0,
        }
    }

    /// Stream offset of the next byte the codec has not yet returned.
    pub fn offset(&self) -> u64 {
        self.consumed
    }
}

impl Decoder for ProtobufCodec {
    type Item = ProtobufFrame;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ProtobufFrame>, CodecError> {
        let Some(prefix) = buf.get(..PREFIX) else {
            return Ok(None);
        };
        let declared = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let len = u64::from(declared);
        if len > self.limits.max_message as u64 {
            return Err(CodecError::TooLarge {
                offset: self.consumed,
                size: len,
                limit: self.limits.max_message,
            });
        }
        // Within the limit, so it fits in usize.
        let total = PREFIX + declared as usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let offset = self.consumed;
        let raw = buf.split_to(total).freeze();
        self.consumed += total as u64;
        Ok(Some(ProtobufFrame { offset, raw }))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<ProtobufFrame>, CodecError> {
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

impl Encoder<&[u8]> for ProtobufCodec {
    type Error = CodecError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), CodecError> {
        let len = prefix_of(payload.len())?;
        dst.reserve(PREFIX + payload.len());
        dst.put_u32_le(len);
        dst.put_slice(payload);
        Ok(())
    }
}

/// One frame around `payload`: the length prefix, then the payload.
pub fn encode(payload: &[u8]) -> Result<Bytes, CodecError> {
    let mut buf = BytesMut::with_capacity(PREFIX + payload.len());
    ProtobufCodec::default().encode(payload, &mut buf)?;
    Ok(buf.freeze())
}

fn prefix_of(len: usize) -> Result<u32, CodecError> {
    u32::try_from(len).map_err(|_| {
        CodecError::Io(std::io::Error::other(format!(
            "a ProtoBuf:1 frame holds at most 4 GiB - 1 bytes, not {len}"
        )))
    })
}
