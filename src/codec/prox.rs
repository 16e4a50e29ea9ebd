//! Framing for prox's plugin socket: every frame is a 4-byte big-endian
//! length, then that many payload bytes (a msgpack value).
//!
//! ```text
//!   00 00 00 2c | 82 a1 74 cc 03 a1 64 c4 23 <35 bytes>   <- on_connect envelope, 44 bytes
//!   00 00 00 05 | 81 a2 6f 6b c3                           <- reply {ok: true}
//! ```
//!
//! prox and its SDK refuse frames longer than 1 MiB ("frame too large: N
//! bytes") and so does this codec, by default ([`MAX_FRAME`]). The declared
//! length is checked as soon as the four length bytes are in, before any
//! room is reserved for the payload, so a hostile length costs nothing.
//! The payload is not interpreted here (see [`crate::message::prox`]).

use bytes::{BufMut as _, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::CodecError;

/// Bytes of the length prefix.
pub const PREFIX: usize = 4;

/// prox's frame limit (`1 << 20`), applied by prox's caller and the SDK's
/// reader alike; writers do not check it.
pub const MAX_FRAME: usize = 1 << 20;

/// One frame split off the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxFrame {
    /// Position of the frame's first length byte in the stream.
    pub offset: u64,
    /// The frame exactly as it arrived: length prefix and payload.
    pub raw: Bytes,
}

impl ProxFrame {
    /// The payload, without the length prefix.
    pub fn payload(&self) -> Bytes {
        self.raw.slice(PREFIX..)
    }
}

/// Splits a byte stream into length-prefixed frames; see the module docs.
#[derive(Debug)]
pub struct ProxCodec {
    max_frame: usize,
    /// Stream offset of the first byte currently in the caller's buffer.
    consumed: u64,
}

impl Default for ProxCodec {
    fn default() -> Self {
        ProxCodec::new(MAX_FRAME)
    }
}

impl ProxCodec {
    /// A codec refusing payloads longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        ProxCodec {
            max_frame,
            consumed: 0,
        }
    }

    /// The payload limit.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Stream offset of the next byte the codec has not yet returned.
    pub fn offset(&self) -> u64 {
        self.consumed
    }
}

impl Decoder for ProxCodec {
    type Item = ProxFrame;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ProxFrame>, CodecError> {
        let Some(prefix) = buf.get(..PREFIX) else {
            return Ok(None);
        };
        let declared = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if u64::from(declared) > self.max_frame as u64 {
            return Err(CodecError::TooLarge {
                offset: self.consumed,
                size: u64::from(declared),
                limit: self.max_frame,
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
        Ok(Some(ProxFrame { offset, raw }))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<ProxFrame>, CodecError> {
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

impl Encoder<&[u8]> for ProxCodec {
    type Error = CodecError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), CodecError> {
        let len = u32::try_from(payload.len()).map_err(|_| {
            CodecError::Io(std::io::Error::other(format!(
                "a prox frame holds at most 4 GiB - 1 bytes, not {}",
                payload.len()
            )))
        })?;
        dst.reserve(PREFIX + payload.len());
        dst.put_u32(len);
        dst.put_slice(payload);
        Ok(())
    }
}

/// One frame around `payload`: the big-endian length, then the payload.
/// Like prox's writers, it does not apply the read limit.
pub fn encode(payload: &[u8]) -> Result<Bytes, CodecError> {
    let mut buf = BytesMut::with_capacity(PREFIX + payload.len());
    ProxCodec::new(usize::MAX).encode(payload, &mut buf)?;
    Ok(buf.freeze())
}
