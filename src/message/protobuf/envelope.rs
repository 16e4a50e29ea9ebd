//! The `ProtoBuf:1` envelope: `RpcCall` (Kong -> server) and `RpcReturn`
//! (server -> Kong).
//!
//! ```text
//! RpcCall   {sequence, oneof call   {cmd_start_instance | cmd_close_instance | cmd_handle_event | ...}}
//! RpcReturn {sequence, oneof return {instance_status | plugin_info | plugin_names}}
//! ```
//!
//! The RpcCall's *command* is the name of the oneof member it sets
//! (`cmd_handle_event`); specs key the server's replies by it and name it as
//! a client step's `method`. The server echoes the sequence; an RpcReturn
//! ending an event sets no oneof member.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use serde_json::{Map, Value as Json};

use super::{DecodeError, Schema, decode, from_json, to_json};
use crate::message::{Kind, MessageView};

/// The command that carries an event and its PDK calls.
pub const HANDLE_EVENT: &str = "cmd_handle_event";
/// The command whose `config` is the plugin configuration as JSON text.
pub const START_INSTANCE: &str = "cmd_start_instance";

/// Which envelope message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeKind {
    /// `RpcCall`, Kong -> server.
    Call,
    /// `RpcReturn`, server -> Kong.
    Return,
}

impl EnvelopeKind {
    /// The message type.
    pub fn descriptor(self) -> &'static MessageDescriptor {
        match self {
            EnvelopeKind::Call => Schema::get().rpc_call(),
            EnvelopeKind::Return => Schema::get().rpc_return(),
        }
    }

    /// Names of the oneof members, e.g. `cmd_start_instance`.
    pub fn members(self) -> Vec<String> {
        self.descriptor()
            .fields()
            .filter(|f| f.containing_oneof().is_some())
            .map(|f| f.name().to_owned())
            .collect()
    }
}

/// An RpcCall or RpcReturn.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Which message it is.
    pub kind: EnvelopeKind,
    /// The message.
    pub message: DynamicMessage,
}

impl Envelope {
    /// Decodes a payload.
    pub fn decode(kind: EnvelopeKind, payload: &[u8]) -> Result<Envelope, DecodeError> {
        Ok(Envelope {
            kind,
            message: decode(kind.descriptor(), payload)?,
        })
    }

    /// Reads the JSON form.
    pub fn from_json(kind: EnvelopeKind, json: &Json) -> Result<Envelope, String> {
        Ok(Envelope {
            kind,
            message: from_json(kind.descriptor(), json)?,
        })
    }

    /// An RpcCall setting `command` (a oneof member name such as
    /// `cmd_handle_event`) to `params`, the command's JSON form.
    pub fn call(sequence: i64, command: &str, params: &Json) -> Result<Envelope, String> {
        let members = EnvelopeKind::Call.members();
        if !members.iter().any(|m| m == command) {
            return Err(format!(
                "`{command}` is not an RpcCall command (valid: {})",
                members.join(", ")
            ));
        }
        let mut obj = Map::new();
        obj.insert("sequence".into(), Json::from(sequence));
        obj.insert(command.into(), params.clone());
        Envelope::from_json(EnvelopeKind::Call, &Json::Object(obj))
    }

    /// The sequence number.
    pub fn sequence(&self) -> i64 {
        self.message
            .get_field_by_name("sequence")
            .and_then(|v| v.as_i64())
            .unwrap_or_default()
    }

    /// Sets the sequence number.
    pub fn set_sequence(&mut self, sequence: i64) {
        self.message
            .set_field_by_name("sequence", prost_reflect::Value::I64(sequence));
    }

    /// The oneof member set, by its proto name (`cmd_handle_event`,
    /// `instance_status`), if any.
    pub fn member(&self) -> Option<String> {
        self.message
            .fields()
            .find(|(f, _)| f.containing_oneof().is_some())
            .map(|(f, _)| f.name().to_owned())
    }

    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.message.encode_to_vec()
    }

    /// The canonical JSON form.
    pub fn to_json(&self) -> Result<Json, String> {
        to_json(&self.message)
    }

    /// The JSON form of the oneof member's content (a command's params).
    pub fn member_json(&self) -> Option<Json> {
        let json = self.to_json().ok()?;
        let field = self
            .message
            .fields()
            .find(|(f, _)| f.containing_oneof().is_some())?
            .0;
        json.get(field.json_name()).cloned()
    }

    /// The protocol-neutral view: an RpcCall is a request named by its
    /// command, an RpcReturn a response; both carry the sequence as id.
    pub fn view(&self) -> MessageView {
        let value = match self.to_json() {
            Ok(v) => v,
            Err(problem) => {
                return super::pdk::malformed_view(None, problem, &self.encode());
            }
        };
        let id = u64::try_from(self.sequence()).ok();
        match self.kind {
            EnvelopeKind::Call => match self.member() {
                Some(command) => MessageView {
                    kind: Kind::Request,
                    id,
                    method: Some(command),
                    problem: None,
                    error: None,
                    value,
                },
                None => MessageView {
                    kind: Kind::Malformed,
                    id,
                    method: None,
                    problem: Some("the RpcCall sets no command".into()),
                    error: None,
                    value,
                },
            },
            EnvelopeKind::Return => MessageView {
                kind: Kind::Response,
                id,
                method: None,
                problem: None,
                error: None,
                value,
            },
        }
    }
}

/// Lets specs write `cmd_start_instance`'s `config` as a JSON object: the
/// object becomes its JSON text (the bytes Kong sends), in base64 as the
/// canonical form of a `bytes` field wants. Anything else is left alone.
pub fn inline_config(command: &str, params: &Json) -> Json {
    let mut params = params.clone();
    if command == START_INSTANCE
        && let Some(config) = params.get_mut("config")
        && config.is_object()
    {
        *config = Json::String(B64.encode(config.to_string()));
    }
    params
}
