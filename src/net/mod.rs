//! Unix-socket plumbing shared by every role.
//!
//! [`socket`] owns the rules for socket *paths* (length limit, stale files,
//! refusing to clobber a live listener or a regular file, removal on exit,
//! waiting for a peer's socket to appear). [`connection`] is the one
//! connection type the roles use: a stream plus a read buffer plus a codec.
//! [`stream`] is a Unix-or-TCP byte stream for protocols that run their own
//! framing state machine over the socket (HTTP/2 for go-plugin's gRPC).

pub mod connection;
pub mod socket;
pub mod stream;

pub use connection::{ConnId, Connection};
pub use socket::{BoundSocket, SocketError, bind, connect_when_ready};
pub use stream::{Address, Listener, Stream};
