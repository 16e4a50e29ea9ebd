//! Messages of Kong's `ProtoBuf:1`: the RpcCall/RpcReturn envelope and the
//! PDK arguments and replies exchanged during an event.
//!
//! * [`schema`]: the descriptor pool compiled from `proto/pluginsocket.proto`
//!   and Kong's PDK method names derived from `service Kong`.
//! * [`envelope`]: RpcCall and RpcReturn.
//! * [`pdk`]: PDK method-name frames, arguments and replies.
//!
//! Decoded messages are shown in protobuf's canonical JSON form
//! (lowerCamelCase field names, 64-bit integers as strings, bytes as
//! base64, well-known types such as `google.protobuf.Value` as plain JSON),
//! and specs write them the same way; the proto field names
//! (`instance_id`) are accepted too when reading. Decoding is strict: a
//! payload with fields its type does not define is refused, since on this
//! protocol that means the peer used another type.

pub mod envelope;
pub mod pdk;
pub mod schema;

use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor, ReflectMessage as _};
use serde_json::Value as Json;

pub use envelope::{Envelope, EnvelopeKind};
pub use pdk::PdkMethod;
pub use schema::{Schema, kong_method_name};

/// A payload that is not a valid message of the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {type_name}: {reason}")]
pub struct DecodeError {
    /// Full name of the expected type.
    pub type_name: String,
    /// What is wrong.
    pub reason: String,
}

/// Decodes `payload` as a `desc`, refusing fields the type does not define.
pub fn decode(desc: &MessageDescriptor, payload: &[u8]) -> Result<DynamicMessage, DecodeError> {
    let fail = |reason: String| DecodeError {
        type_name: desc.full_name().to_owned(),
        reason,
    };
    let msg = DynamicMessage::decode(desc.clone(), payload).map_err(|e| fail(e.to_string()))?;
    let mut unknown = Vec::new();
    collect_unknown(&msg, "", &mut unknown);
    if !unknown.is_empty() {
        return Err(fail(format!(
            "it has fields the type does not define: {}",
            unknown.join(", ")
        )));
    }
    Ok(msg)
}

/// Unknown fields anywhere in `msg`, as `path#number`.
fn collect_unknown(msg: &DynamicMessage, path: &str, out: &mut Vec<String>) {
    for field in msg.unknown_fields() {
        out.push(format!("{path}#{}", field.number()));
    }
    for (field, value) in msg.fields() {
        let at = if path.is_empty() {
            field.name().to_owned()
        } else {
            format!("{path}.{}", field.name())
        };
        visit_messages(value, &mut |m| collect_unknown(m, &at, out));
    }
}

fn visit_messages(value: &prost_reflect::Value, f: &mut impl FnMut(&DynamicMessage)) {
    use prost_reflect::Value as V;
    match value {
        V::Message(m) => f(m),
        V::List(items) => items.iter().for_each(|v| visit_messages(v, f)),
        V::Map(entries) => entries.values().for_each(|v| visit_messages(v, f)),
        _ => {}
    }
}

/// A message in canonical JSON.
pub fn to_json(msg: &DynamicMessage) -> Result<Json, String> {
    serde_json::to_value(msg).map_err(|e| {
        format!(
            "{} cannot be written as JSON: {e}",
            msg.descriptor().full_name()
        )
    })
}

/// A message of type `desc` from its JSON form (canonical, or with proto
/// field names).
pub fn from_json(desc: &MessageDescriptor, json: &Json) -> Result<DynamicMessage, String> {
    DynamicMessage::deserialize(desc.clone(), json)
        .map_err(|e| format!("not a valid {} in JSON: {e}", desc.full_name()))
}

/// The wire bytes of a message of type `desc` written as JSON.
pub fn encode_json(desc: &MessageDescriptor, json: &Json) -> Result<Vec<u8>, String> {
    Ok(from_json(desc, json)?.encode_to_vec())
}
