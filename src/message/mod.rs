//! Messages: frames given meaning.
//!
//! Each protocol has its own typed message module (for `MsgPack:1`,
//! [`msgpack_rpc`]; for `ProtoBuf:1`, [`protobuf`]; for `prox`, [`prox`]). Logs, recordings and export do not care which protocol
//! a frame came from, so every typed message can also be shown as a
//! protocol-neutral [`MessageView`]: its kind, id, method and the whole
//! decoded message as JSON (in the lossless mapping of
//! [`crate::value_json`] for msgpack).

pub(crate) mod msgpack_bytes;
pub mod msgpack_rpc;
pub mod msgpack_scan;
pub mod msgpack_view;
pub mod protobuf;
pub mod prox;

use serde::{Deserialize, Serialize};

pub use msgpack_rpc::RpcMessage;

/// Which way a message travels. Kong (or whatever drives the server) is
/// the client side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Kong -> server.
    ToServer,
    /// Server -> Kong.
    ToClient,
}

impl Direction {
    /// The other direction.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }

    /// Arrow label for log lines.
    pub fn arrow(self) -> &'static str {
        match self {
            Direction::ToServer => "K→S",
            Direction::ToClient => "S→K",
        }
    }
}

/// What a frame is, across protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A call that expects a reply (`[0, msgid, method, params]`; a
    /// ProtoBuf:1 `RpcCall`, named by its command).
    Request,
    /// The reply to a call (`[1, msgid, error, result]`; a ProtoBuf:1
    /// `RpcReturn`).
    Response,
    /// A one-way message (`[2, method, params]`).
    Notification,
    /// Well-formed bytes that do not have the shape of any message.
    Malformed,
    /// ProtoBuf:1: the server names the PDK method it calls (`method`).
    PdkCall,
    /// ProtoBuf:1: the arguments of that PDK call.
    PdkArgs,
    /// ProtoBuf:1: Kong's reply to that PDK call.
    PdkReply,
    /// ProtoBuf:1: the empty frame ending an event's PDK calls.
    PdkEnd,
    /// Not a frame: the peer closed the connection where a frame was due.
    /// ProtoBuf:1 servers signal errors this way (`error` says what was due).
    Closed,
    /// gRPC (go-plugin): a stream opened, with its request headers.
    GrpcOpen,
    /// gRPC (go-plugin): one length-prefixed message on a stream.
    GrpcMessage,
    /// gRPC (go-plugin): response headers.
    GrpcHeaders,
    /// gRPC (go-plugin): trailers, with the call's status.
    GrpcTrailers,
    /// gRPC (go-plugin): a stream reset or cut short.
    GrpcReset,
}

impl Kind {
    /// Short fixed-width label for log lines.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Response => "response",
            Kind::Notification => "notify",
            Kind::Malformed => "MALFORMED",
            Kind::PdkCall => "pdk-call",
            Kind::PdkArgs => "pdk-args",
            Kind::PdkReply => "pdk-reply",
            Kind::PdkEnd => "pdk-end",
            Kind::Closed => "CLOSED",
            Kind::GrpcOpen => "open",
            Kind::GrpcMessage => "message",
            Kind::GrpcHeaders => "headers",
            Kind::GrpcTrailers => "trailers",
            Kind::GrpcReset => "RESET",
        }
    }
}

/// A decoded frame as logs, recordings and export see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageView {
    /// What the frame is.
    pub kind: Kind,
    /// msgid (MsgPack:1) or sequence (ProtoBuf:1), when the frame has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Method or notification name, when the frame carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Why the frame is malformed, for [`Kind::Malformed`]; or what is wrong
    /// with an otherwise well-formed message (a sequence that does not echo
    /// the call's, a PDK method Kong does not know).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The error a response carries, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The whole message as JSON.
    pub value: serde_json::Value,
}

impl MessageView {
    /// The interesting part of the value: for an array-shaped message (the
    /// msgpack-rpc ones) its last element (params or result), else all of it.
    pub fn payload(&self) -> &serde_json::Value {
        match &self.value {
            serde_json::Value::Array(items) if self.kind != Kind::Malformed => {
                items.last().unwrap_or(&self.value)
            }
            other => other,
        }
    }

    /// ProtoBuf:1: the protobuf type a PDK call's arguments or Kong's reply
    /// were decoded as (`String`, `KV`, `Value`, ...), from the method.
    pub fn pdk_type(&self) -> Option<&'static str> {
        let method = protobuf::PdkMethod::named(self.method.as_deref()?)?;
        match self.kind {
            Kind::PdkArgs => Some(method.input.name()),
            Kind::PdkReply => Some(method.output.name()),
            _ => None,
        }
    }

    /// One-line summary: kind, id, method and the shortened payload (or the
    /// error). With `full`, nothing is shortened.
    pub fn summary(&self, full: bool) -> String {
        self.summary_with(full, None)
    }

    /// [`summary`](Self::summary) with the payload's JSON text given, for a
    /// view whose value was left out.
    pub fn summary_with(&self, full: bool, payload: Option<&str>) -> String {
        let mut s = String::from(self.kind.label());
        if let Some(id) = self.id {
            s.push_str(&format!(" #{id}"));
        }
        if let Some(m) = &self.method {
            s.push(' ');
            s.push_str(m);
        }
        if let Some(t) = self.pdk_type() {
            s.push(' ');
            s.push_str(t);
        }
        if let Some(p) = &self.problem {
            s.push_str(&format!(" ({p})"));
        }
        let max = if full { usize::MAX } else { 160 };
        // A method-name frame is all method; the end frame has no value.
        if matches!(self.kind, Kind::PdkCall | Kind::PdkEnd) && self.error.is_none() {
            return s;
        }
        match &self.error {
            Some(e) => s.push_str(&format!(" error: {}", shorten(e, max))),
            None => {
                s.push(' ');
                match payload {
                    Some(text) => s.push_str(&shorten(text, max)),
                    None => s.push_str(&shorten(&self.payload().to_string(), max)),
                }
            }
        }
        s
    }
}

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
