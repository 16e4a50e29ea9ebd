//! The PDK calls a mock `ProtoBuf:1` plugin makes during an event: the
//! `pdk` list of a `cmd_handle_event` entry in the server role.
//!
//! ```json
//! {"pdk": [
//!   {"method": "kong.request.get_header", "args": {"v": "host"}, "capture": {"host": "v"}},
//!   {"method": "kong.response.set_header", "args": {"k": "x-hello", "v": "hi ${host}"},
//!    "expect": {}}
//! ]}
//! ```
//!
//! `args` is the method's input type in protobuf's JSON form (`null` or
//! absent: an empty message); `${name}` takes a value captured from an
//! earlier reply of the same event. `expect` is a partial match on Kong's
//! reply, `capture` names paths into it. `no_reply` says not to wait for a
//! reply; it defaults to true only for `kong.response.exit`, which Kong
//! never answers.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value as Json;

/// One PDK call of a mock plugin.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PdkStep {
    /// Kong's name of the method, e.g. `kong.request.get_header`.
    pub method: String,
    /// The arguments as JSON of the method's input type.
    #[serde(default)]
    pub args: Json,
    /// Partial match on Kong's reply.
    #[serde(default)]
    pub expect: Option<Json>,
    /// Values to remember from the reply: name -> path (e.g. `"v"`).
    #[serde(default)]
    pub capture: IndexMap<String, String>,
    /// Do not wait for a reply (default: only for `kong.response.exit`).
    #[serde(default)]
    pub no_reply: Option<bool>,
}
