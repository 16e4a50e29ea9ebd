//! go-plugin specs: what the mock plugin answers and what the stand-in
//! host calls. JSON with comments and trailing commas allowed, errors with
//! `file:line:column`, unknown keys reported as warnings.
//!
//! ```json
//! {
//!   "protocol": "go-plugin",
//!   "role": "server",
//!   "handshake": {"magic_cookie_key": "BASIC_PLUGIN", "magic_cookie_value": "hello", "app_versions": [1]},
//!   "schema": {"proto": ["kv.proto"]},
//!   "services": {"proto.KV": {"Get": [{"match": {"key": "a"}, "response": {"value": "aGk="}},
//!                                     {"status": "NOT_FOUND", "message": "no such key"}]}}
//! }
//! ```
//!
//! Messages are written as protobuf JSON when a schema knows the method
//! (`response`, `request`), or as raw fields in the form
//! [`super::wire`] prints (`response_raw`, `request_raw`), or as hex
//! (`response_hex`, `request_hex`). Paths in `schema` are relative to the
//! spec file.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value as Json;

use super::schema::Schemas;
use crate::spec::{Role, StartCmd};

/// A loaded go-plugin spec.
#[derive(Debug, Clone)]
pub struct GoSpec {
    /// Where it came from.
    pub source: String,
    /// The role it names.
    pub role: Option<Role>,
    /// Handshake settings.
    pub handshake: HandshakeSpec,
    /// Schemas from the spec's `schema` section (plus the built-ins).
    pub schemas: Schemas,
    /// Socket path for the mock (default: a fresh `plugin<digits>` in the
    /// socket dir).
    pub socket: Option<PathBuf>,
    /// Mock replies: service -> method -> entries.
    pub services: IndexMap<String, IndexMap<String, Vec<Entry>>>,
    /// What the mock sends on `GRPCStdio/StreamStdio`.
    pub stdio: Vec<StdioLine>,
    /// Broker service ids the mock announces (each on a socket of its own
    /// serving the same services).
    pub brokered: Vec<u64>,
    /// The plugin the host starts.
    pub start_cmd: Option<StartCmd>,
    /// The host's calls.
    pub calls: Vec<Call>,
    /// Check Health ("plugin" must be SERVING) after connecting.
    pub health: bool,
    /// Fetch schemas by server reflection for calls that need one.
    pub reflection: bool,
    /// Warnings (unknown keys).
    pub warnings: Vec<String>,
}

/// The `handshake` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HandshakeSpec {
    /// Magic cookie name; empty means none.
    pub magic_cookie_key: String,
    /// Magic cookie value.
    pub magic_cookie_value: String,
    /// App protocol versions (mock: offered; host: supported).
    pub app_versions: Vec<i64>,
    /// Protocols the host accepts.
    pub allowed_protocols: Vec<String>,
    /// The host asks for broker multiplexing.
    pub multiplex: bool,
    /// Seconds the host waits for the handshake.
    pub start_timeout_s: f64,
}

impl Default for HandshakeSpec {
    fn default() -> Self {
        HandshakeSpec {
            magic_cookie_key: String::new(),
            magic_cookie_value: String::new(),
            app_versions: vec![1],
            allowed_protocols: vec!["grpc".into()],
            multiplex: false,
            start_timeout_s: 60.0,
        }
    }
}

/// A message as a spec writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Protobuf JSON; needs the schema.
    Json(Json),
    /// Raw fields ([`super::wire`] form).
    Raw(Json),
    /// Exact bytes.
    Hex(Vec<u8>),
}

/// One scripted reply of the mock.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Partial deep match on the decoded request.
    pub matcher: Option<Json>,
    /// Response messages (several for server streaming).
    pub responses: Vec<Body>,
    /// Status code.
    pub status: u32,
    /// Status message.
    pub message: String,
    /// Pause before answering.
    pub delay_ms: u64,
}

/// A line the mock writes on the stdio stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StdioLine {
    /// `stdout` or `stderr`.
    pub channel: String,
    /// The text.
    pub data: String,
}

/// One call of the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Label for the report.
    pub name: Option<String>,
    /// Service.
    pub service: String,
    /// Method.
    pub method: String,
    /// Request messages (several for client streaming).
    pub requests: Vec<Body>,
    /// Stop after this many responses.
    pub take: Option<usize>,
    /// Make the call on the brokered connection the plugin announced with
    /// this service id (instead of the main connection).
    pub broker: Option<u64>,
    /// Seconds to wait for the call.
    pub timeout_s: f64,
    /// Expectations.
    pub expect: CallExpect,
}

/// Expectations on a call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallExpect {
    /// Status code (default: OK).
    pub status: Option<u32>,
    /// Text the status message must contain.
    pub message: Option<String>,
    /// Partial match on the first response.
    pub response: Option<Json>,
    /// Partial matches on the responses, in order (same count).
    pub responses: Option<Vec<Json>>,
}

impl Call {
    /// `/service/method`.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.service, self.method)
    }
}

/// True when the spec text names `"protocol": "go-plugin"`.
pub fn is_go_plugin(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Peek {
        protocol: Option<Json>,
    }
    serde_json_lenient::from_str::<Peek>(text)
        .ok()
        .and_then(|p| p.protocol)
        .is_some_and(|p| {
            p.as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("go-plugin"))
        })
}

pub use super::spec_load::{load_file, load_str};
