//! Byte streams that are either a Unix socket or TCP, for protocols whose
//! peers announce either kind of address (go-plugin's handshake names
//! `unix` or `tcp`).
//!
//! [`Address`] is a network plus an address as a handshake writes them;
//! [`Stream`] is a connected stream of either kind and implements tokio's
//! `AsyncRead`/`AsyncWrite`, so HTTP/2 (which owns its I/O) can run over
//! it; [`Listener`] accepts either kind.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixStream};

use super::socket::{self, BoundSocket, SocketError};

/// Where a peer listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A Unix stream socket path.
    Unix(PathBuf),
    /// A TCP `host:port`.
    Tcp(String),
}

impl Address {
    /// The network name (`unix` or `tcp`).
    pub fn network(&self) -> &'static str {
        match self {
            Address::Unix(_) => "unix",
            Address::Tcp(_) => "tcp",
        }
    }

    /// The address as a handshake writes it.
    pub fn addr_text(&self) -> String {
        match self {
            Address::Unix(p) => p.display().to_string(),
            Address::Tcp(a) => a.clone(),
        }
    }

    /// Connects once.
    pub async fn connect(&self) -> io::Result<Stream> {
        match self {
            Address::Unix(p) => {
                socket::check_path(p)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                UnixStream::connect(p).await.map(Stream::Unix)
            }
            Address::Tcp(a) => {
                let s = TcpStream::connect(a.as_str()).await?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.network(), self.addr_text())
    }
}

/// A connected stream of either kind.
#[derive(Debug)]
pub enum Stream {
    /// Unix socket.
    Unix(UnixStream),
    /// TCP.
    Tcp(TcpStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A listener of either kind. A Unix listener removes its socket file
/// when dropped (see [`BoundSocket`]).
#[derive(Debug)]
pub enum Listener {
    /// Unix socket.
    Unix(BoundSocket),
    /// TCP.
    Tcp(TcpListener, String),
}

impl Listener {
    /// Listens on a Unix socket path (stale files replaced, live ones refused).
    pub fn unix(path: &Path) -> Result<Listener, SocketError> {
        socket::bind(path).map(Listener::Unix)
    }

    /// Listens on TCP (`127.0.0.1:0` picks a free port). Must be called
    /// inside a tokio runtime.
    pub fn tcp(addr: &str) -> io::Result<Listener> {
        let std = std::net::TcpListener::bind(addr)?;
        std.set_nonblocking(true)?;
        let l = TcpListener::from_std(std)?;
        let local = l.local_addr()?.to_string();
        Ok(Listener::Tcp(l, local))
    }

    /// The address peers connect to.
    pub fn address(&self) -> Address {
        match self {
            Listener::Unix(b) => Address::Unix(b.path().to_owned()),
            Listener::Tcp(_, a) => Address::Tcp(a.clone()),
        }
    }

    /// Accepts one connection. Cancel-safe.
    pub async fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(b) => b.listener().accept().await.map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l, _) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
        }
    }
}
