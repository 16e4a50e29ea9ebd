//! Socket paths: binding safely, cleaning up, and waiting for a peer.

use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::time::Instant;

/// Longest socket path Linux accepts: `sun_path` is 108 bytes including the
/// terminating NUL.
pub const MAX_PATH_BYTES: usize = 107;

/// Why a socket could not be bound or reached.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The path does not fit in `sun_path`.
    #[error(
        "socket path {path} is {len} bytes long; Unix sockets allow at most {max} (use a shorter or relative path)"
    )]
    PathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },
    /// Something is already listening on the path.
    #[error("{path} is in use: another process is listening on it (stop it or pick another path)")]
    InUse { path: PathBuf },
    /// The path exists and is not a socket; it is never deleted.
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    /// The directory for the socket does not exist.
    #[error("cannot create socket {path}: directory {dir} does not exist")]
    NoDirectory { path: PathBuf, dir: PathBuf },
    /// Waiting for a peer's socket ran out of time.
    #[error(
        "timed out after {waited:?} waiting for {path} to accept connections (last error: {last})"
    )]
    NotReady {
        path: PathBuf,
        waited: Duration,
        last: io::Error,
    },
    /// Any other I/O failure.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// A listening socket that removes its file when dropped, provided the file
/// is still the one it created.
#[derive(Debug)]
pub struct BoundSocket {
    listener: UnixListener,
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl BoundSocket {
    /// The listener.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// The path it listens on.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        let current = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if current.is_some() && current == self.identity {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!("could not remove socket {}: {e}", self.path.display());
            } else {
                tracing::debug!("removed socket {}", self.path.display());
            }
        }
    }
}

/// Checks that a socket path fits the OS limit.
pub fn check_path(path: &Path) -> Result<(), SocketError> {
    let len = path.as_os_str().len();
    if len > MAX_PATH_BYTES {
        return Err(SocketError::PathTooLong {
            path: path.to_owned(),
            len,
            max: MAX_PATH_BYTES,
        });
    }
    Ok(())
}

/// Binds a listening socket at `path`.
///
/// A stale socket file (nothing accepts on it) is replaced. A live listener
/// or a file that is not a socket is refused and left alone.
pub fn bind(path: &Path) -> Result<BoundSocket, SocketError> {
    check_path(path)?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(SocketError::InUse { path: path.into() }),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!("replacing stale socket {}", path.display());
                    std::fs::remove_file(path).map_err(|source| SocketError::Io {
                        what: "cannot remove stale socket",
                        path: path.into(),
                        source,
                    })?;
                }
                Err(source) => {
                    return Err(SocketError::Io {
                        what: "cannot check existing socket",
                        path: path.into(),
                        source,
                    });
                }
            }
        }
        Ok(_) => return Err(SocketError::NotASocket { path: path.into() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(SocketError::Io {
                what: "cannot inspect",
                path: path.into(),
                source,
            });
        }
    }
    let listener = UnixListener::bind(path).map_err(|source| {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        match dir {
            Some(dir) if source.kind() == io::ErrorKind::NotFound && !dir.exists() => {
                SocketError::NoDirectory {
                    path: path.into(),
                    dir: dir.into(),
                }
            }
            _ => SocketError::Io {
                what: "cannot listen on",
                path: path.into(),
                source,
            },
        }
    })?;
    let identity = std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    Ok(BoundSocket {
        listener,
        path: path.to_owned(),
        identity,
    })
}

/// Connects to `path`, retrying while the socket does not exist yet or
/// refuses connections, for up to `wait`.
pub async fn connect_when_ready(path: &Path, wait: Duration) -> Result<UnixStream, SocketError> {
    check_path(path)?;
    let start = Instant::now();
    loop {
        match UnixStream::connect(path).await {
            Ok(stream) => return Ok(stream),
            Err(e)
                if matches!(
                    e.kind(),
                    // WouldBlock: the listener's backlog is full for now.
                    io::ErrorKind::NotFound
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::WouldBlock
                ) =>
            {
                if start.elapsed() >= wait {
                    return Err(SocketError::NotReady {
                        path: path.into(),
                        waited: wait,
                        last: e,
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(source) => {
                return Err(SocketError::Io {
                    what: "cannot connect to",
                    path: path.into(),
                    source,
                });
            }
        }
    }
}
