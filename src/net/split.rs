//! A [`Connection`] split into a read half and a write half, so two tasks
//! can use one connection at once (the proxy pumps each direction on its
//! own), and connections without a codec that read raw chunks.
//!
//! The read half keeps the connection's buffer and codec, so bytes already
//! buffered are never lost by splitting. Dropping or shutting down the
//! write half sends end of stream to the peer (a half-close); the read
//! half keeps working until the peer closes its side.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::Decoder;

use super::connection::{ConnId, Connection};

/// Bytes kept free in the read buffer before each raw read. A read takes
/// whatever the socket has, up to this much.
const CHUNK: usize = 16 * 1024;

impl Connection<()> {
    /// A connection without a codec: it reads raw chunks
    /// ([`ReadHalf::read_chunk`]) and never splits frames itself. `id` lets
    /// two sockets (a proxy's downstream and upstream) share one id.
    pub fn raw(stream: UnixStream, id: ConnId) -> Connection<()> {
        Connection {
            id,
            stream,
            buf: BytesMut::new(),
            codec: (),
        }
    }
}

impl<C> Connection<C> {
    /// Splits the connection into halves usable from different tasks.
    pub fn into_split(self) -> (ReadHalf<C>, WriteHalf) {
        let (read, write) = self.stream.into_split();
        (
            ReadHalf {
                id: self.id,
                read,
                buf: self.buf,
                codec: self.codec,
            },
            WriteHalf { id: self.id, write },
        )
    }
}

/// The reading side of a split [`Connection`].
#[derive(Debug)]
pub struct ReadHalf<C> {
    id: ConnId,
    read: OwnedReadHalf,
    buf: BytesMut,
    codec: C,
}

impl<C> ReadHalf<C> {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Reads the next chunk of bytes exactly as the socket delivers them:
    /// bytes still buffered first, then one read. `Ok(None)` is end of
    /// stream. Cancel-safe: a dropped call loses no bytes.
    pub async fn read_chunk(&mut self) -> std::io::Result<Option<Bytes>> {
        if self.buf.is_empty() {
            if self.buf.capacity() < CHUNK / 4 {
                self.buf.reserve(CHUNK);
            }
            if self.read.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
        Ok(Some(self.buf.split().freeze()))
    }
}

impl<C: Decoder> ReadHalf<C>
where
    C::Error: From<std::io::Error>,
{
    /// Reads the next frame, like [`Connection::read_frame`].
    pub async fn read_frame(&mut self) -> Result<Option<C::Item>, C::Error> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.read.read_buf(&mut self.buf).await? == 0 {
                return self.codec.decode_eof(&mut self.buf);
            }
        }
    }
}

/// The writing side of a split [`Connection`].
#[derive(Debug)]
pub struct WriteHalf {
    id: ConnId,
    write: OwnedWriteHalf,
}

impl WriteHalf {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Writes what the socket takes now, without waiting: how many bytes
    /// went out (0 when it would have to wait).
    pub fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self.write.try_write(bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }

    /// Writes bytes as they are.
    pub async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write.write_all(bytes).await
    }

    /// Closes the write direction; the peer reads end of stream while this
    /// side can still read.
    pub async fn shutdown_write(&mut self) -> std::io::Result<()> {
        self.write.shutdown().await
    }
}
