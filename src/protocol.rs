//! The wire protocols plugtap speaks, by the names Kong uses for them
//! (and `prox`, the prox reverse proxy's plugin protocol).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A plugin protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Protocol {
    /// MessagePack-RPC over a bare msgpack stream (Python and JS servers,
    /// go-pluginserver, go-pdk up to 0.6). Kong's default.
    #[default]
    #[serde(rename = "MsgPack:1")]
    MsgPack1,
    /// Length-prefixed protobuf frames (go-pdk 0.7 and later embedded
    /// servers); PDK calls run on the event's connection.
    #[serde(rename = "ProtoBuf:1")]
    ProtoBuf1,
    /// HashiCorp go-plugin: a handshake line on stdout, then gRPC over
    /// HTTP/2 (Terraform, Vault, Packer, Nomad plugins).
    #[serde(rename = "go-plugin")]
    GoPlugin,
    /// The prox reverse proxy's plugins: JSON lines on stdin/stdout, hooks
    /// as length-prefixed msgpack frames on a Unix socket the plugin names.
    #[serde(rename = "prox")]
    Prox,
}

impl Protocol {
    /// Every protocol, in the order help texts list them.
    pub const ALL: &'static [Protocol] = &[
        Protocol::MsgPack1,
        Protocol::ProtoBuf1,
        Protocol::GoPlugin,
        Protocol::Prox,
    ];

    /// The name used in specs, recordings and Kong's query output.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::MsgPack1 => "MsgPack:1",
            Protocol::ProtoBuf1 => "ProtoBuf:1",
            Protocol::GoPlugin => "go-plugin",
            Protocol::Prox => "prox",
        }
    }

    /// The valid names, comma-separated, for error messages.
    pub fn valid_names() -> String {
        Self::ALL
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown protocol `{s}` (valid: {})", Self::valid_names()))
    }
}
