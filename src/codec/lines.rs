//! Newline-delimited lines, as on a prox plugin's stdin and stdout (one JSON
//! object per line).
//!
//! ```text
//!   {"method":"configure","params":{"route_id":"web:0"}}\n
//!   {"result":"ok"}\n
//!   {"method":"ready","params":{"socket":"/tmp/prox-p-42.sock","hooks":["on_request"]}}\n
//! ```
//!
//! prox and its SDK read these with Go's `bufio.Scanner`, whose buffer
//! holds at most 64 KiB: a line that does not fit with its newline
//! (65,536 bytes of content or more) stops the reader for good. This codec
//! keeps reading past that, so the line can be shown, and marks it
//! ([`Line::over_prox_limit`]); only lines above its own hard limit (the
//! message limit of [`super::Limits`]) are an error, reported before they
//! are buffered further. Every line keeps its exact bytes, newline
//! included; a last line without a newline is still a line at the end of
//! the stream, as it is for Go's scanner.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use super::CodecError;

/// The size of prox's line buffer: a line and its newline must fit.
pub const PROX_MAX_LINE: usize = 64 * 1024;

/// One line split off the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Position of the line's first byte in the stream.
    pub offset: u64,
    /// The bytes exactly as they arrived, newline included when there was one.
    pub raw: Bytes,
}

impl Line {
    /// True when the line ended with a newline (false only for a last line
    /// cut off by the end of the stream).
    pub fn terminated(&self) -> bool {
        self.raw.last() == Some(&b'\n')
    }

    /// The content: without the newline and a carriage return before it
    /// (Go's scanner drops both).
    pub fn text(&self) -> &[u8] {
        let line = self.raw.strip_suffix(b"\n").unwrap_or(&self.raw);
        line.strip_suffix(b"\r").unwrap_or(line)
    }

    /// True when prox's 64 KiB line buffer cannot hold this line.
    pub fn over_prox_limit(&self) -> bool {
        let content = self.raw.strip_suffix(b"\n").unwrap_or(&self.raw);
        content.len() >= PROX_MAX_LINE
    }
}

/// Splits a byte stream into lines; see the module docs.
#[derive(Debug)]
pub struct LineCodec {
    max_line: usize,
    /// Stream offset of the first byte currently in the caller's buffer.
    consumed: u64,
    /// Bytes at the front of the buffer already searched for a newline.
    scanned: usize,
}

impl LineCodec {
    /// A codec refusing lines longer than `max_line` bytes (newline excluded).
    pub fn new(max_line: usize) -> Self {
        LineCodec {
            max_line,
            consumed: 0,
            scanned: 0,
        }
    }

    /// Stream offset of the next byte the codec has not yet returned.
    pub fn offset(&self) -> u64 {
        self.consumed
    }

    fn take(&mut self, buf: &mut BytesMut, len: usize) -> Line {
        let offset = self.consumed;
        let raw = buf.split_to(len).freeze();
        self.consumed += len as u64;
        self.scanned = 0;
        Line { offset, raw }
    }
}

impl Decoder for LineCodec {
    type Item = Line;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, CodecError> {
        let from = self.scanned.min(buf.len());
        if let Some(i) = buf[from..].iter().position(|b| *b == b'\n') {
            let end = from + i + 1;
            if end - 1 > self.max_line {
                return Err(self.too_large(end - 1));
            }
            return Ok(Some(self.take(buf, end)));
        }
        self.scanned = buf.len();
        if buf.len() > self.max_line {
            return Err(self.too_large(buf.len()));
        }
        Ok(None)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, CodecError> {
        if let Some(line) = self.decode(buf)? {
            return Ok(Some(line));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let len = buf.len();
        Ok(Some(self.take(buf, len)))
    }
}

impl LineCodec {
    fn too_large(&self, size: usize) -> CodecError {
        CodecError::TooLarge {
            offset: self.consumed,
            size: size as u64,
            limit: self.max_line,
        }
    }
}
