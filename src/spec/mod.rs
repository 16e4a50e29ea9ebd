//! Spec files: what a role should do, written by hand or exported.
//!
//! The format is the one of Kong's `test_pluginserver_protocol` tool (keys
//! `protocol`, `socket`, `role`, `on_methods`, `try_methods`, `start_cmd`),
//! extended; its example files load unchanged. Comments (`//`, `/* */`) and
//! trailing commas are accepted. Values inside specs (params, results,
//! match patterns) are JSON in the lossless mapping of
//! [`crate::value_json`].
//!
//! The spec's shape is the API boundary between users, export and the
//! roles: [`load_file`] and [`load_str`] turn text into a [`Spec`] or an error naming
//! `file:line:column`, and collects warnings for keys it does not know.

mod entries;
pub mod faults;
pub mod kong;
mod load;
pub mod matcher;
pub mod pdk;
pub mod prox;
pub mod template;

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value as Json;

pub use load::{SpecError, load_file, load_reader, load_str};
pub use pdk::PdkStep;
pub use prox::ProxSpec;

use crate::protocol::Protocol;

/// What a spec asks plugtap to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A mock pluginserver (stands in for a real server).
    Server,
    /// A stand-in for Kong driving a real server.
    Client,
    /// A man in the middle between Kong and a real server.
    Proxy,
}

impl Role {
    /// The name used in specs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
            Role::Proxy => "proxy",
        }
    }
}

/// A loaded, validated spec.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// Where the spec came from, for messages (`<stdin>` for standard input).
    pub source: String,
    /// Spec format version; only 1 exists.
    pub version: u32,
    /// Wire protocol; `MsgPack:1` when absent.
    pub protocol: Protocol,
    /// Socket path, absolute or relative to the current directory.
    pub socket: Option<PathBuf>,
    /// The role, when the spec names one.
    pub role: Option<Role>,
    /// Server-role settings.
    pub server: ServerSpec,
    /// Client-role settings.
    pub client: ClientSpec,
    /// Proxy-role settings (`socket` is where the proxy listens).
    pub proxy: ProxySpec,
    /// Settings of the `prox` protocol (the `prox` key).
    pub prox: ProxSpec,
    /// Things worth telling the user that are not errors (unknown keys).
    pub warnings: Vec<String>,
}

/// How a server picks among the entries listed for one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cycle {
    /// Each connection walks the list on its own (the original tool's
    /// behaviour).
    #[default]
    PerConnection,
    /// One position per method shared by all connections. Kong pools
    /// connections, so one event's calls can arrive on different ones.
    Global,
}

/// Server-role part of a spec.
#[derive(Debug, Clone, Default)]
pub struct ServerSpec {
    /// Replies per method name, tried in order (see [`Cycle`]).
    pub on_methods: IndexMap<String, Vec<Entry>>,
    /// Notifications sent on every new connection before anything else
    /// (Go servers send `["serverPid", pid]`).
    pub on_connect: Vec<Notification>,
    /// How replies cycle.
    pub cycle: Cycle,
    /// Seed for entries with a `probability` (reproducible chaos).
    pub seed: u64,
}

/// One scripted reply of the server role.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    /// Partial deep match on the request params; the entry applies only to
    /// requests it matches. `None` matches everything.
    pub matcher: Option<Json>,
    /// `match` must equal the params (objects with the same keys, arrays
    /// element by element), not just match them partially.
    pub exact: bool,
    /// The reply's error (null for success).
    pub error: Json,
    /// The reply's result.
    pub result: Json,
    /// Notifications sent before the reply.
    pub notify: Vec<Notification>,
    /// Pause before replying.
    pub delay_ms: u64,
    /// ProtoBuf:1, `cmd_handle_event`: the PDK calls the mock plugin makes
    /// before it returns.
    pub pdk: Vec<PdkStep>,
    /// What goes wrong instead of (or besides) a normal reply.
    pub faults: faults::Faults,
    /// When the entry applies (call numbers, probability).
    pub when: faults::When,
}

/// A notification `[2, method, params]` the server sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Notification name, e.g. `serverPid`.
    pub method: String,
    /// Its argument.
    pub params: Json,
}

/// Client-role part of a spec.
#[derive(Debug, Clone, Default)]
pub struct ClientSpec {
    /// The calls to make, in order.
    pub try_methods: Vec<Step>,
    /// Command that starts the server under test.
    pub start_cmd: Option<StartCmd>,
    /// ProtoBuf:1: Kong's canned answers to PDK calls, per method name
    /// (`result` is the reply; `match` filters on the arguments).
    pub on_pdk: IndexMap<String, Vec<Entry>>,
    /// Kong emulation: run requests through a plugin as Kong would.
    pub kong: Option<kong::KongSpec>,
    /// Run each connection's steps (`conn` labels) at the same time, as
    /// the recording ran them; a step waits for the captures it uses.
    pub concurrent: bool,
}

/// Where the proxy's answers come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyMode {
    /// Everything goes to the real server (the default).
    #[default]
    Record,
    /// No real server: the server spec answers.
    Replay,
    /// The spec answers what it can; the rest goes to the real server.
    New,
}

impl ProxyMode {
    /// The name used on the command line and in recordings.
    pub fn name(self) -> &'static str {
        match self {
            ProxyMode::Record => "record",
            ProxyMode::Replay => "replay",
            ProxyMode::New => "new",
        }
    }
}

/// Proxy-role part of a spec.
#[derive(Debug, Clone, Default)]
pub struct ProxySpec {
    /// The real server's socket.
    pub upstream: Option<PathBuf>,
    /// Recording file.
    pub record: Option<PathBuf>,
    /// `--redact` rules.
    pub redact: Vec<String>,
    /// Close connections whose bytes cannot be decoded.
    pub strict: bool,
    /// Write every frame's raw bytes into the recording (`keep_raw`).
    pub keep_raw: bool,
    /// The real server's command (wrapper mode); the spec's `start_cmd`.
    pub start_cmd: Option<StartCmd>,
    /// Where answers come from (`mode`); in `replay` and `new` modes the
    /// spec's `on_methods` answer.
    pub mode: ProxyMode,
}

/// One call the client makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Optional label for reports.
    pub name: Option<String>,
    /// RPC method, e.g. `plugin.StartInstance`.
    pub method: String,
    /// Params exactly as sent (Kong sends a one-element array); may contain
    /// `${name}` references to captured values.
    pub params: Json,
    /// What the reply must look like.
    pub expect: Option<Expect>,
    /// Values to remember from the result: name -> path (e.g. `"Id"`).
    pub capture: IndexMap<String, String>,
    /// The connection to make the call on (any label; each distinct one
    /// is its own connection, opened on first use). `None`: the first.
    pub conn: Option<u64>,
}

/// Expectations on a reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    /// What the error must be, when given.
    pub error: Option<ExpectError>,
    /// Partial deep match on the result, when given.
    pub result: Option<Json>,
}

/// Expectation on a reply's error.
#[derive(Debug, Clone, PartialEq)]
pub enum ExpectError {
    /// `"error": null`: the call must succeed.
    None,
    /// `"error": true`: the call must fail, with any error.
    Any,
    /// `"error": "text"`: the call must fail with an error containing `text`.
    Contains(String),
}

/// A command that starts a process, as the spec writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum StartCmd {
    /// A string, run through `sh -c`.
    Shell(String),
    /// An argument vector, run directly.
    Argv(Vec<String>),
}

impl StartCmd {
    /// A short human-readable form.
    pub fn display(&self) -> String {
        match self {
            StartCmd::Shell(s) => s.clone(),
            StartCmd::Argv(v) => v.join(" "),
        }
    }
}
