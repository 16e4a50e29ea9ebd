//! Unix-socket plumbing shared by every role.
//!
//! [`socket`] owns the rules for socket *paths* (length limit, stale files,
//! refusing to clobber a live listener or a regular file, removal on exit,
//! waiting for a peer's socket to appear). [`connection`] is the one
//! connection type the roles use: a stream plus a read buffer plus a codec.
//! [`stdio`] makes plugtap's own stdin and stdout line channels, for roles
//! run as a child process (a mock prox plugin).

pub mod connection;
pub mod socket;
pub mod stdio;

pub use connection::{ConnId, Connection};
pub use socket::{BoundSocket, SocketError, bind, connect_when_ready};
