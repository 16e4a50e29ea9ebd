//! The `prox` section of a spec: settings only prox's plugin protocol has.
//!
//! ```json
//! {"protocol": "prox",
//!  "prox": {
//!    "hooks": ["on_request", "on_disconnect"],          // server: announced in `ready`
//!    "ack": true,                                       // server: {"result":"ok"} first
//!    "pushes": [{"after_ms": 50, "method": "set_targets",
//!                "params": {"route_id": "*", "targets": ["10.0.0.1:80"]}}],
//!    "configure": [{"route_id": "web:0", "match": {"domain": "a.example"}}],  // client
//!    "connections": 2,                                  // client
//!    "linger_ms": 200                                   // client
//!  }}
//! ```

use serde::Deserialize;
use serde_json::Value as Json;

/// Settings for `"protocol": "prox"`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ProxSpec {
    /// Server: the hooks announced in `ready` (default: the `on_methods`
    /// keys, in the SDK's order).
    #[serde(default)]
    pub hooks: Option<Vec<String>>,
    /// Server: answer each `configure` with `{"result":"ok"}` before
    /// `ready`, as the SDK does (default true).
    #[serde(default)]
    pub ack: Option<bool>,
    /// Server: lines pushed on stdout, timed from the first `ready`.
    #[serde(default)]
    pub pushes: Vec<Push>,
    /// Client: the `configure` params sent on the plugin's stdin, one line
    /// each (default: one `{"route_id": ""}`, what prox sends a plugin with
    /// no routes).
    #[serde(default)]
    pub configure: Option<Vec<Json>>,
    /// Client: how many socket connections the steps are spread over
    /// (step `i` goes to connection `i % connections`; connections run at
    /// the same time, each one call at a time). Default 1.
    #[serde(default)]
    pub connections: Option<usize>,
    /// Client: how long to keep reading pushes after the last step before
    /// closing the plugin's stdin, in milliseconds.
    #[serde(default)]
    pub linger_ms: u64,
}

/// A line the mock plugin writes on stdout by itself.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Push {
    /// Milliseconds after the first `ready`.
    #[serde(default)]
    pub after_ms: u64,
    /// `set_targets`, `set_speed`, `log` (or anything else, to see what
    /// prox does with it).
    pub method: String,
    /// The params object.
    #[serde(default)]
    pub params: Json,
}
