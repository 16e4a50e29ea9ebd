//! The library's error type: one enum at the boundary between the roles
//! and the binary, wrapping each layer's own error.

use crate::codec::CodecError;
use crate::net::SocketError;
use crate::process::SpawnError;
use crate::spec::SpecError;

/// Anything that stops a role from running (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is unusable.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A socket could not be bound or reached.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// A child process could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// Bytes could not be decoded where that is fatal.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// An I/O failure with context.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A failure described in words.
    #[error("{0}")]
    Other(String),
}

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
