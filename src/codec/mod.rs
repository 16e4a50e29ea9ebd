//! Codecs: bytes in, frames out. No I/O happens here.
//!
//! A codec splits a byte stream into frames and keeps each frame's exact
//! wire bytes. It implements [`tokio_util::codec::Decoder`], so it can be
//! fed from a socket ([`crate::net::Connection`]) or from a copy of the
//! bytes a proxy forwards. "Need more bytes" is `Ok(None)`, never an error;
//! a clean end of stream (no bytes pending) is distinct from an end of
//! stream in the middle of a frame ([`CodecError::Truncated`]).
//!
//! Every codec enforces [`Limits`] against hostile input: a frame's declared
//! size is checked against the limit *before* anything is buffered for it.

pub mod kong_style;
pub mod lines;
pub mod msgpack;
pub mod protobuf;
pub mod prox;

use std::fmt;

pub use kong_style::Style;
pub use lines::{Line, LineCodec};
pub use msgpack::{MsgpackCodec, MsgpackFrame};
pub use protobuf::{ProtobufCodec, ProtobufFrame};
pub use prox::{ProxCodec, ProxFrame};

/// Limits applied while decoding untrusted bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted message or frame, in bytes, headers included.
    pub max_message: usize,
    /// Deepest accepted nesting of arrays and maps (msgpack).
    pub max_depth: usize,
}

impl Limits {
    /// Default maximum message size: 16 MiB. Kong's messages are small, but
    /// raw request and response bodies travel inside them.
    pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;
    /// Default maximum nesting depth. Real PDK values nest a handful of levels.
    pub const DEFAULT_MAX_DEPTH: usize = 128;
    /// Hard ceiling on nesting: the value decoder recurses once per level.
    pub const MAX_DEPTH_CEILING: usize = 1000;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: Self::DEFAULT_MAX_MESSAGE,
            max_depth: Self::DEFAULT_MAX_DEPTH,
        }
    }
}

/// A byte stream could not be split into frames.
///
/// `offset` is the position in the stream (bytes since the codec was
/// created) where the offending message starts.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not a valid encoding.
    #[error("invalid data at stream offset {offset}: {reason}")]
    Invalid { offset: u64, reason: String },
    /// A message declares or reaches a size above [`Limits::max_message`].
    #[error(
        "message at stream offset {offset} is too large: {size} bytes declared or buffered, limit {limit}"
    )]
    TooLarge {
        offset: u64,
        size: u64,
        limit: usize,
    },
    /// A message nests deeper than [`Limits::max_depth`].
    #[error("message at stream offset {offset} nests deeper than the limit of {limit}")]
    TooDeep { offset: u64, limit: usize },
    /// The stream ended in the middle of a message.
    #[error("stream ended in the middle of a message at offset {offset} ({pending} bytes pending)")]
    Truncated { offset: u64, pending: usize },
    /// Reading from the transport failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl CodecError {
    /// Stream offset the error refers to, when it refers to one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            CodecError::Invalid { offset, .. }
            | CodecError::TooLarge { offset, .. }
            | CodecError::TooDeep { offset, .. }
            | CodecError::Truncated { offset, .. } => Some(*offset),
            CodecError::Io(_) => None,
        }
    }
}

/// Lower-case hex of some bytes, for logs and error texts.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
