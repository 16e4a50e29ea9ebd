//! [`Connection`]: a Unix stream, its read buffer and a codec.
//!
//! Every role reads and writes through this type. The stream is a Unix
//! socket unless said otherwise: a prox plugin's stdout pipe, or plugtap's
//! own stdin ([`super::stdio`]), is read the same way. The read buffer lives in
//! the connection, so [`Connection::read_frame`] is cancel-safe: dropping
//! the future (say, in a `select!` against shutdown) loses no bytes.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tokio_util::codec::Decoder;

/// Identifies one connection in logs and recordings. Ids are unique within
/// a process and start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl ConnId {
    /// The next unused id.
    pub fn next() -> ConnId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ConnId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// A stream (a Unix socket unless `S` says otherwise) with a codec on its
/// read side.
#[derive(Debug)]
pub struct Connection<C, S = UnixStream> {
    pub(super) id: ConnId,
    pub(super) stream: S,
    pub(super) buf: BytesMut,
    pub(super) codec: C,
}

impl<C: Decoder, S: AsyncRead + Unpin> Connection<C, S>
where
    C::Error: From<std::io::Error>,
{
    /// Wraps a connected stream.
    pub fn new(stream: S, codec: C) -> Self {
        Connection {
            id: ConnId::next(),
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
            codec,
        }
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Reads the next frame. `Ok(None)` is a clean end of stream; an end of
    /// stream in the middle of a frame is the codec's error.
    pub async fn read_frame(&mut self) -> Result<Option<C::Item>, C::Error> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            let n = self.stream.read_buf(&mut self.buf).await?;
            if n == 0 {
                return self.codec.decode_eof(&mut self.buf);
            }
        }
    }

    /// Bytes received but not yet returned as a frame.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// The codec, for recovery after an error.
    pub fn codec_and_buffer(&mut self) -> (&mut C, &mut BytesMut) {
        (&mut self.codec, &mut self.buf)
    }
}

impl<C, S: AsyncWrite + Unpin> Connection<C, S> {
    /// Writes bytes as they are, in one call to the socket where possible.
    pub async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Closes the write half; the peer sees end of stream.
    pub async fn shutdown_write(&mut self) -> std::io::Result<()> {
        self.stream.shutdown().await
    }
}
