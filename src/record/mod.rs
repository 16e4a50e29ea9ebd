//! Recordings: what a proxy saw, as JSON Lines. This module owns the file.
//!
//! The first line is a [`Header`]; every later line is one event, each with
//! a `type`, a per-recording sequence number `seq`, the monotonic time
//! since the start `t_us` (microseconds), the wall-clock time `at` (RFC
//! 3339, microseconds, UTC) and, for connection events, the connection id
//! `conn`:
//!
//! ```text
//! {"type":"header","format":"plugtap-recording","version":1,...}
//! {"type":"open","seq":1,"t_us":812,"at":"2026-...Z","conn":1}
//! {"type":"frame","seq":2,...,"conn":1,"dir":"to_server","offset":0,"len":54,"raw":"lAAB...","msg":{...}}
//! {"type":"frame","seq":3,...,"dir":"to_client",...,"reply":{"method":"plugin.StartInstance","request_offset":0,"latency_us":410}}
//! {"type":"eof","seq":4,...,"conn":1,"dir":"to_server","offset":1234}
//! {"type":"close","seq":5,...,"conn":1,"to_server":1234,"to_client":987}
//! {"type":"end","seq":6,...,"events":5,"frames":2,"reason":"SIGTERM received"}
//! ```
//!
//! README.md documents every field. [`writer`] is the one writer (a
//! thread fed by a bounded channel, which also runs the proxy's decoding,
//! see [`watch`]); [`reader`] reads line by line, so
//! recordings of any length stream through in constant memory;
//! [`redact`] applies `--redact` rules before anything is logged or
//! written.

mod base64_out;
mod clock;
mod entry;
mod json_out;
pub(crate) mod msgpack_text;
pub mod reader;
pub mod redact;
mod reencode;
#[cfg(test)]
pub(crate) use reencode::msgpack_reencodes;
pub mod watch;
pub mod writer;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::message::{Direction, MessageView};
use crate::protocol::Protocol;

pub use entry::{Entry, RecordTx};
pub use reader::{ReadError, Reader};
pub use watch::{Note, Watch};
pub use writer::{HeaderInfo, Recorder, Stats};

/// `format` of the header line.
pub const FORMAT: &str = "plugtap-recording";
/// The recording format version this build writes. Version 2 added
/// `reencodes` (a frame's `raw` left out); version 1 files still read.
pub const VERSION: u32 = 2;
/// The oldest version this build reads.
pub const OLDEST_VERSION: u32 = 1;

/// One line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// The first line.
    Header(Header),
    /// A connection was accepted (and its upstream connection opened).
    Open(Open),
    /// A decoded frame.
    Frame(FrameEvent),
    /// Bytes that could not be decoded.
    Undecodable(UndecodableEvent),
    /// One direction reached end of stream (a half-close, passed on).
    Eof(Eof),
    /// A connection ended.
    Close(Close),
    /// Something went wrong (upstream refused, a write failed, ...).
    Error(ErrorEvent),
    /// The wrapped pluginserver started or exited.
    Child(ChildEvent),
    /// A line on a prox plugin's stdin or stdout, as the prox wrapper
    /// relayed it.
    Stdio(StdioEvent),
    /// go-plugin: the plugin's handshake line and what the host was told.
    Handshake(HandshakeEvent),
    /// go-plugin: a `plugin.GRPCBroker` announcement and its rewrite.
    Broker(BrokerEvent),
    /// go-plugin: one line the plugin wrote on stderr (passed on unchanged).
    Stderr(StderrEvent),
    /// The last line of a complete recording.
    End(End),
}

/// The header line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version, [`VERSION`].
    pub version: u32,
    /// The plugtap version that wrote it.
    pub plugtap: String,
    /// The protocol decoded.
    pub protocol: Protocol,
    /// The socket the proxy listened on (where Kong connects).
    pub listen: PathBuf,
    /// The real server's socket (`replay` mode: the server spec).
    pub upstream: PathBuf,
    /// When recording started (RFC 3339, UTC).
    pub started_at: String,
    /// The `--redact` rules in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
    /// The wrapped server's command, in wrapper mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The proxy's mode when not `record`: `replay` (answers came from the
    /// server spec named in `upstream`) or `new` (from the spec when it
    /// had an answer, else from the real server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// Fields every event line has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    /// Position in the recording, from 1.
    pub seq: u64,
    /// Microseconds since recording started (monotonic clock).
    pub t_us: u64,
    /// Wall-clock time (RFC 3339, microseconds, UTC).
    pub at: String,
}

/// `open`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Open {
    #[serde(flatten)]
    pub stamp: Stamp,
    /// Connection id.
    pub conn: u64,
    /// go-plugin: how logs name it (`3`, `4 broker#1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// go-plugin: who opened it (`host` or `plugin`; the gRPC client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// go-plugin: who serves it (`plugin` or `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// go-plugin: where plugtap forwards it (`unix:/path`, `tcp:host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

/// `frame`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameEvent {
    #[serde(flatten)]
    pub stamp: Stamp,
    /// Connection id.
    pub conn: u64,
    /// Which way it travelled.
    pub dir: Direction,
    /// Offset of its first byte in its direction's stream.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Its exact bytes, base64; absent when redacted or when `reencodes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// True when `raw` was left out because `msg.value`, encoded again,
    /// gives exactly the frame's bytes ([`FrameEvent::raw_bytes`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reencodes: bool,
    /// True when `--redact` changed the decoded form (and `raw` was dropped).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
    /// The decoded message.
    pub msg: MessageView,
    /// For a reply, what it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<ReplyInfo>,
}

/// What a reply answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyInfo {
    /// The request's method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The request's offset in the other direction.
    pub request_offset: u64,
    /// Microseconds from reading the request to reading the reply.
    pub latency_us: u64,
}

/// `undecodable`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UndecodableEvent {
    #[serde(flatten)]
    pub stamp: Stamp,
    /// Connection id.
    pub conn: u64,
    /// Which way the bytes travelled.
    pub dir: Direction,
    /// Offset of the first byte.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
    /// The bytes, base64.
    pub raw: String,
    /// Why they could not be decoded.
    pub error: String,
}

/// `eof`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eof {
    #[serde(flatten)]
    pub stamp: Stamp,
    /// Connection id.
    pub conn: u64,
    /// The direction that ended.
    pub dir: Direction,
    /// Bytes forwarded in that direction.
    pub offset: u64,
}

/// `close`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Close {
    #[serde(flatten)]
    pub stamp: Stamp,
    /// Connection id.
    pub conn: u64,
    /// Bytes forwarded Kong → server.
    pub to_server: u64,
    /// Bytes forwarded server → Kong.
    pub to_client: u64,
}

/// `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    #[serde(flatten)]
    pub stamp: Stamp,
    /// Connection id, for a connection's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<u64>,
    /// The direction concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<Direction>,
    /// What happened.
    pub error: String,
}

/// `child`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildEvent {
    #[serde(flatten)]
    pub stamp: Stamp,
    /// `started` or `exited`.
    pub event: String,
    /// Process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// How it exited (`exit code 0`, `signal SIGTERM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `stdio`: one line on a prox plugin's stdin (`to_server`, prox → plugin)
/// or stdout (`to_client`, plugin → prox).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StdioEvent {
    #[serde(flatten)]
    pub stamp: Stamp,
    /// `stdin` or `stdout`.
    pub stream: String,
    /// Which way it travelled.
    pub dir: Direction,
    /// Offset of its first byte in that stream.
    pub offset: u64,
    /// Its length in bytes, newline included.
    pub len: u64,
    /// The line exactly as it arrived, base64; absent when redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// True when `--redact` changed the decoded form (and `raw` was dropped).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
    /// The decoded line.
    pub msg: MessageView,
    /// For a `ready`: the socket prox was told instead of the plugin's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten_socket: Option<String>,
}

/// `handshake` (go-plugin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandshakeEvent {
    #[serde(flatten)]
    pub stamp: Stamp,
    /// The line the plugin printed (without its newline).
    pub original: String,
    /// The line plugtap printed to the host instead; absent when the
    /// plugin's line was passed on unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten: Option<String>,
    /// What a go-plugin host says about the original, when it refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the traffic is relayed undecoded (AutoMTLS, net/rpc, yamux).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
}

/// `broker` (go-plugin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerEvent {
    #[serde(flatten)]
    pub stamp: Stamp,
    /// The connection whose broker stream carried it.
    pub conn: u64,
    /// Which way it travelled.
    pub dir: Direction,
    /// Broker service id.
    pub service_id: u64,
    /// Who announced it: `host` or `plugin`.
    pub announcer: String,
    /// The announced address (`unix:/path`, `tcp:host:port`).
    pub announced: String,
    /// What the other side was told instead; absent when unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub told: Option<String>,
    /// Why it was left unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `stderr` (go-plugin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StderrEvent {
    #[serde(flatten)]
    pub stamp: Stamp,
    /// The line, without its newline (invalid UTF-8 replaced).
    pub text: String,
}

/// `end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct End {
    #[serde(flatten)]
    pub stamp: Stamp,
    /// Event lines before this one.
    pub events: u64,
    /// `frame` lines among them.
    pub frames: u64,
    /// Why recording stopped.
    pub reason: String,
}

impl Line {
    /// The event's stamp (`None` for the header).
    pub fn stamp(&self) -> Option<&Stamp> {
        Some(match self {
            Line::Header(_) => return None,
            Line::Open(e) => &e.stamp,
            Line::Frame(e) => &e.stamp,
            Line::Undecodable(e) => &e.stamp,
            Line::Eof(e) => &e.stamp,
            Line::Close(e) => &e.stamp,
            Line::Error(e) => &e.stamp,
            Line::Child(e) => &e.stamp,
            Line::Stdio(e) => &e.stamp,
            Line::Handshake(e) => &e.stamp,
            Line::Broker(e) => &e.stamp,
            Line::Stderr(e) => &e.stamp,
            Line::End(e) => &e.stamp,
        })
    }

    /// The event's stamp, to set (`None` for the header).
    pub fn stamp_mut(&mut self) -> Option<&mut Stamp> {
        Some(match self {
            Line::Header(_) => return None,
            Line::Open(e) => &mut e.stamp,
            Line::Frame(e) => &mut e.stamp,
            Line::Undecodable(e) => &mut e.stamp,
            Line::Eof(e) => &mut e.stamp,
            Line::Close(e) => &mut e.stamp,
            Line::Error(e) => &mut e.stamp,
            Line::Child(e) => &mut e.stamp,
            Line::Handshake(e) => &mut e.stamp,
            Line::Broker(e) => &mut e.stamp,
            Line::Stderr(e) => &mut e.stamp,
            Line::Stdio(e) => &mut e.stamp,
            Line::End(e) => &mut e.stamp,
        })
    }

    /// The connection the event belongs to.
    pub fn conn(&self) -> Option<u64> {
        match self {
            Line::Open(e) => Some(e.conn),
            Line::Frame(e) => Some(e.conn),
            Line::Undecodable(e) => Some(e.conn),
            Line::Eof(e) => Some(e.conn),
            Line::Close(e) => Some(e.conn),
            Line::Error(e) => e.conn,
            Line::Broker(e) => Some(e.conn),
            Line::Header(_)
            | Line::Child(_)
            | Line::Handshake(_)
            | Line::Stderr(_)
            | Line::Stdio(_)
            | Line::End(_) => None,
        }
    }
}
