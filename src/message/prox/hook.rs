//! prox's four hooks: their envelope byte, their name, the payload types
//! they carry and what the SDK and prox do around them.

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::schema::{self, Schema};

/// A hook prox calls on a plugin's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// `t = 1`: an L7 request, before it is routed; answered with a verdict.
    OnRequest,
    /// `t = 2`: the upstream response's headers; answered with changes.
    OnResponse,
    /// `t = 3`: an L4 (SNI pass-through) connection; answered with a verdict.
    OnConnect,
    /// `t = 4`: statistics after a request or connection ended; never answered.
    OnDisconnect,
}

impl Hook {
    /// Every hook, in the order the SDK lists them in `ready`.
    pub const ALL: [Hook; 4] = [
        Hook::OnRequest,
        Hook::OnResponse,
        Hook::OnConnect,
        Hook::OnDisconnect,
    ];

    /// The envelope's `t` byte.
    pub fn byte(self) -> u8 {
        match self {
            Hook::OnRequest => 1,
            Hook::OnResponse => 2,
            Hook::OnConnect => 3,
            Hook::OnDisconnect => 4,
        }
    }

    /// The hook an envelope's `t` names, if any.
    pub fn from_byte(t: u64) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| u64::from(h.byte()) == t)
    }

    /// The name used in `ready`, specs and logs.
    pub fn name(self) -> &'static str {
        match self {
            Hook::OnRequest => "on_request",
            Hook::OnResponse => "on_response",
            Hook::OnConnect => "on_connect",
            Hook::OnDisconnect => "on_disconnect",
        }
    }

    /// The hook of that name.
    pub fn named(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.name() == name)
    }

    /// The names of all hooks, comma-separated, for messages.
    pub fn names() -> String {
        Hook::ALL.map(Hook::name).join(", ")
    }

    /// False for `on_disconnect`, which prox sends fire-and-forget.
    pub fn expects_reply(self) -> bool {
        self != Hook::OnDisconnect
    }

    /// The type of the payload prox sends (inside the envelope's `d`).
    pub fn request(self) -> &'static Schema {
        match self {
            Hook::OnRequest => &schema::REQUEST_INFO,
            Hook::OnResponse => &schema::RESPONSE_PAIR,
            Hook::OnConnect => &schema::CONN_INFO,
            Hook::OnDisconnect => &schema::DISCONNECT_INFO,
        }
    }

    /// The type of the plugin's reply (a bare map, no envelope).
    pub fn result(self) -> Option<&'static Schema> {
        match self {
            Hook::OnRequest => Some(&schema::AUTHORIZE_RESULT),
            Hook::OnResponse => Some(&schema::RESPONSE_MOD),
            Hook::OnConnect => Some(&schema::CONN_RESULT),
            Hook::OnDisconnect => None,
        }
    }

    /// What the SDK answers when the plugin has no handler for the hook
    /// (or the handler returns nothing): allow, no change, allow.
    pub fn default_reply(self) -> Json {
        match self {
            Hook::OnRequest | Hook::OnConnect => json!({"ok": true}),
            Hook::OnResponse | Hook::OnDisconnect => json!({}),
        }
    }

    /// What the SDK answers when the payload in `d` does not decode.
    pub fn error_reply(self) -> Json {
        match self {
            Hook::OnRequest => json!({"ok": false, "s": 500, "b": "plugin error"}),
            Hook::OnConnect => json!({"ok": false}),
            Hook::OnResponse | Hook::OnDisconnect => json!({}),
        }
    }

    /// What prox does when a call of this hook fails (no reply in time, a
    /// closed connection, a reply it cannot decode).
    pub fn on_failure(self) -> &'static str {
        match self {
            Hook::OnRequest => "prox answers the HTTP request with 500 (it fails closed)",
            Hook::OnResponse => "prox passes the upstream response through unchanged",
            Hook::OnConnect => "prox closes the client's TCP connection",
            Hook::OnDisconnect => "prox drops the notification (it logs at debug)",
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
