//! gRPC message framing inside HTTP/2 DATA: the 5-byte prefix.
//!
//! ```text
//! +------------+---------------------------+------------------------+
//! | flag: u8   | length: u32, big-endian   | length bytes: protobuf |
//! | 0 plain    |                           |                        |
//! | 1 compressed (algorithm in grpc-encoding)                       |
//! +------------+---------------------------+------------------------+
//! ```
//!
//! Messages can span DATA frames and one DATA frame can hold several, so
//! [`MessageDecoder`] reassembles per stream and direction. It does no I/O
//! and never panics: a message longer than the limit is reported as
//! [`Framed::Oversized`] and skipped (the proxy still forwards its bytes),
//! an unknown flag byte is an error, and an end of stream inside a message
//! is [`FrameError::Truncated`].

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// The prefix length.
pub const PREFIX: usize = 5;

/// One framed gRPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The compressed flag.
    pub compressed: bool,
    /// The message bytes (without the prefix).
    pub payload: Bytes,
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// A whole message.
    Message(Message),
    /// A message longer than the limit; its bytes are skipped.
    Oversized {
        /// Declared length.
        len: u64,
        /// The limit.
        max: usize,
    },
}

/// Bytes that are not gRPC framing.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The flag byte is neither 0 nor 1.
    #[error("bad gRPC compressed-flag byte 0x{0:02x} (expected 0 or 1)")]
    BadFlag(u8),
    /// The stream ended inside a message.
    #[error("stream ended inside a gRPC message: {have} of {need} bytes")]
    Truncated {
        /// Bytes present.
        have: usize,
        /// Bytes the prefix announced (plus the prefix).
        need: u64,
    },
    /// I/O, for `Decoder`.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reassembles gRPC messages from a stream's DATA payloads.
#[derive(Debug, Clone)]
pub struct MessageDecoder {
    max: usize,
    skipping: u64,
}

impl MessageDecoder {
    /// A decoder accepting messages up to `max` bytes.
    pub fn new(max: usize) -> Self {
        MessageDecoder { max, skipping: 0 }
    }
}

impl Decoder for MessageDecoder {
    type Item = Framed;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Framed>, FrameError> {
        if self.skipping > 0 {
            let n = (self.skipping).min(buf.len() as u64) as usize;
            buf.advance(n);
            self.skipping -= n as u64;
            if self.skipping > 0 {
                return Ok(None);
            }
        }
        if buf.len() < PREFIX {
            return Ok(None);
        }
        let flag = buf[0];
        if flag > 1 {
            return Err(FrameError::BadFlag(flag));
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as u64;
        if len > self.max as u64 {
            buf.advance(PREFIX);
            self.skipping = len;
            let n = (len).min(buf.len() as u64) as usize;
            buf.advance(n);
            self.skipping -= n as u64;
            return Ok(Some(Framed::Oversized { len, max: self.max }));
        }
        let total = PREFIX + len as usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut whole = buf.split_to(total);
        whole.advance(PREFIX);
        Ok(Some(Framed::Message(Message {
            compressed: flag == 1,
            payload: whole.freeze(),
        })))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Framed>, FrameError> {
        if let Some(f) = self.decode(buf)? {
            return Ok(Some(f));
        }
        if self.skipping > 0 {
            let need = self.skipping;
            self.skipping = 0;
            return Err(FrameError::Truncated { have: 0, need });
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let need = if buf.len() >= PREFIX {
            PREFIX as u64 + u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as u64
        } else {
            PREFIX as u64
        };
        let have = buf.len();
        buf.clear();
        Err(FrameError::Truncated { have, need })
    }
}

/// Frames one uncompressed message.
pub fn encode(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX + payload.len());
    out.put_u8(0);
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.freeze()
}
