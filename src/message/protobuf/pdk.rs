//! PDK calls during a `ProtoBuf:1` event.
//!
//! While Kong waits for the RpcReturn of a `cmd_handle_event`, the server
//! makes PDK calls on the same connection:
//!
//! ```text
//! S→K  "kong.request.get_header"      method name: raw UTF-8, not protobuf
//! S→K  String{v: "host"}              arguments: the method's input type
//! K→S  String{v: "example.test"}      reply: the method's output type
//! ...
//! S→K  (empty frame)                  no more PDK calls
//! ```
//!
//! Any of these payloads may be empty: an `Empty` message, a nil result, a
//! scalar wrapper holding its default value.

use prost_reflect::MessageDescriptor;
use serde_json::{Value as Json, json};

use super::{DecodeError, Schema, decode, encode_json, to_json};
use crate::codec::hex;
use crate::message::{Kind, MessageView};

/// The name Kong gives the method that ends a request; Kong never replies to it.
pub const EXIT: &str = "kong.response.exit";

/// One method of `service Kong`.
#[derive(Debug, Clone)]
pub struct PdkMethod {
    /// Kong's name, as in method-name frames: `kong.request.get_header`.
    pub name: String,
    /// The rpc's full name: `kong_plugin_protocol.Kong.Request_GetHeader`.
    pub rpc: String,
    /// Type of the arguments the server sends.
    pub input: MessageDescriptor,
    /// Type of the reply Kong sends.
    pub output: MessageDescriptor,
}

impl PdkMethod {
    /// Looks a method up by Kong's name.
    pub fn named(name: &str) -> Option<&'static PdkMethod> {
        Schema::get().method(name)
    }

    /// True when Kong answers this method (everything but `kong.response.exit`).
    pub fn expects_reply(&self) -> bool {
        self.name != EXIT
    }

    /// Decodes an arguments frame as JSON.
    pub fn decode_args(&self, payload: &[u8]) -> Result<Json, DecodeError> {
        decode_to_json(&self.input, payload)
    }

    /// Decodes a reply frame as JSON.
    pub fn decode_reply(&self, payload: &[u8]) -> Result<Json, DecodeError> {
        decode_to_json(&self.output, payload)
    }

    /// Encodes arguments written as JSON.
    pub fn encode_args(&self, args: &Json) -> Result<Vec<u8>, String> {
        encode_json(&self.input, args)
    }

    /// Encodes a reply written as JSON, the way Kong would send it: `null`
    /// is a nil result, an empty frame, except for `google.protobuf.Value`
    /// replies, where Kong sends `null_value = 1` (the bytes `08 01`).
    pub fn encode_reply(&self, reply: &Json) -> Result<Vec<u8>, String> {
        if reply.is_null() {
            return Ok(if self.output.full_name() == "google.protobuf.Value" {
                vec![0x08, 0x01]
            } else {
                Vec::new()
            });
        }
        encode_json(&self.output, reply)
    }
}

fn decode_to_json(desc: &MessageDescriptor, payload: &[u8]) -> Result<Json, DecodeError> {
    let msg = decode(desc, payload)?;
    to_json(&msg).map_err(|reason| DecodeError {
        type_name: desc.full_name().to_owned(),
        reason,
    })
}

/// The view of a method-name frame.
pub fn call_view(method: &str, problem: Option<String>) -> MessageView {
    MessageView {
        kind: Kind::PdkCall,
        id: None,
        method: Some(method.to_owned()),
        problem,
        error: None,
        value: Json::String(method.to_owned()),
    }
}

/// The view of decoded arguments.
pub fn args_view(method: &str, args: Json) -> MessageView {
    MessageView {
        kind: Kind::PdkArgs,
        id: None,
        method: Some(method.to_owned()),
        problem: None,
        error: None,
        value: args,
    }
}

/// The view of a decoded reply.
pub fn reply_view(method: &str, reply: Json) -> MessageView {
    MessageView {
        kind: Kind::PdkReply,
        id: None,
        method: Some(method.to_owned()),
        problem: None,
        error: None,
        value: reply,
    }
}

/// The view of the empty frame that ends the PDK calls of an event.
pub fn end_view() -> MessageView {
    MessageView {
        kind: Kind::PdkEnd,
        id: None,
        method: None,
        problem: None,
        error: None,
        value: Json::Null,
    }
}

/// The view of a payload that could not be given meaning: its bytes in hex.
pub fn malformed_view(method: Option<&str>, problem: String, payload: &[u8]) -> MessageView {
    MessageView {
        kind: Kind::Malformed,
        id: None,
        method: method.map(str::to_owned),
        problem: Some(problem),
        error: None,
        value: json!({"hex": hex(payload)}),
    }
}
