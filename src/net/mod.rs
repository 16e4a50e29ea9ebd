//! Unix-socket plumbing shared by every role.
//!
//! [`socket`] owns the rules for socket *paths* (length limit, stale files,
//! refusing to clobber a live listener or a regular file, removal on exit,
//! waiting for a peer's socket to appear). [`connection`] is the one
//! connection type the roles use: a stream plus a read buffer plus a codec.
//! [`split`] splits one into halves that can be read and written from two
//! tasks, as the proxy does; a connection without a codec reads raw chunks.
//! [`stream`] is a Unix-or-TCP byte stream for protocols that run their own
//! framing state machine over the socket (HTTP/2 for go-plugin's gRPC).
//! [`stdio`] makes plugtap's own stdin and stdout line channels, for roles
//! run as a child process (a mock prox plugin).

pub mod connection;
pub mod socket;
pub mod split;
pub mod stdio;
pub mod stream;

pub use connection::{ConnId, Connection};
pub use socket::{BoundSocket, SocketError, bind, connect_when_ready};
pub use split::{ReadHalf, WriteHalf};
pub use stream::{Address, Listener, Stream};
