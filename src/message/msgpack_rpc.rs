//! MessagePack-RPC messages as Kong's `MsgPack:1` uses them.
//!
//! ```text
//! Request       [0, msgid, method, params]   Kong -> server
//! Response      [1, msgid, error, result]    server -> Kong
//! Notification  [2, method, params]          server -> Kong (serverPid)
//! ```
//!
//! `msgid` is an unsigned 32-bit integer and `method` a string. Anything
//! else that is valid msgpack is [`Malformed`], and keeps its value so it
//! can be logged and recorded.

use rmpv::Value;

use super::{Kind, MessageView};
use crate::value_json;

/// A well-formed MessagePack-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcMessage {
    /// `[0, msgid, method, params]`.
    Request {
        msgid: u32,
        method: String,
        params: Value,
    },
    /// `[1, msgid, error, result]`; `error` is nil on success.
    Response {
        msgid: u32,
        error: Value,
        result: Value,
    },
    /// `[2, method, params]`.
    Notification { method: String, params: Value },
}

/// Valid msgpack that is not a MessagePack-RPC message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct Malformed {
    /// What is wrong with the shape.
    pub reason: String,
}

impl RpcMessage {
    /// Checks the shape of a decoded value.
    pub fn from_value(value: &Value) -> Result<RpcMessage, Malformed> {
        let bad = |reason: String| Err(Malformed { reason });
        let Value::Array(items) = value else {
            return bad(format!("expected an array, got {}", type_name(value)));
        };
        let Some(kind) = items.first().and_then(Value::as_u64) else {
            return bad("the first element must be the message type 0, 1 or 2".into());
        };
        let expected_len = if kind == 2 { 3 } else { 4 };
        if kind <= 2 && items.len() != expected_len {
            return bad(format!(
                "a message of type {kind} has {expected_len} elements, this one has {}",
                items.len()
            ));
        }
        match kind {
            0 => Ok(RpcMessage::Request {
                msgid: msgid(&items[1])?,
                method: method(&items[2])?,
                params: items[3].clone(),
            }),
            1 => Ok(RpcMessage::Response {
                msgid: msgid(&items[1])?,
                error: items[2].clone(),
                result: items[3].clone(),
            }),
            2 => Ok(RpcMessage::Notification {
                method: method(&items[1])?,
                params: items[2].clone(),
            }),
            other => bad(format!("unknown message type {other} (expected 0, 1 or 2)")),
        }
    }

    /// The message as a msgpack value, ready to encode.
    pub fn to_value(&self) -> Value {
        match self {
            RpcMessage::Request {
                msgid,
                method,
                params,
            } => Value::Array(vec![
                0.into(),
                (*msgid).into(),
                method.as_str().into(),
                params.clone(),
            ]),
            RpcMessage::Response {
                msgid,
                error,
                result,
            } => Value::Array(vec![
                1.into(),
                (*msgid).into(),
                error.clone(),
                result.clone(),
            ]),
            RpcMessage::Notification { method, params } => {
                Value::Array(vec![2.into(), method.as_str().into(), params.clone()])
            }
        }
    }

    /// The message kind.
    pub fn kind(&self) -> Kind {
        match self {
            RpcMessage::Request { .. } => Kind::Request,
            RpcMessage::Response { .. } => Kind::Response,
            RpcMessage::Notification { .. } => Kind::Notification,
        }
    }

    /// The protocol-neutral view.
    pub fn view(&self) -> MessageView {
        let (id, method, error) = match self {
            RpcMessage::Request { msgid, method, .. } => (Some(*msgid), Some(method.clone()), None),
            RpcMessage::Response { msgid, error, .. } => (Some(*msgid), None, error_text(error)),
            RpcMessage::Notification { method, .. } => (None, Some(method.clone()), None),
        };
        MessageView {
            kind: self.kind(),
            id: id.map(u64::from),
            method,
            problem: None,
            error,
            value: value_json::to_json(&self.to_value()),
        }
    }
}

/// The view of any decoded msgpack value: a message, or a malformed one.
///
/// Equal to `RpcMessage::from_value(value)?.view()` for a message, but
/// reads the value in place instead of copying it twice (the proxy builds
/// one view per frame).
pub fn view_of(value: &Value) -> MessageView {
    let shape = match value {
        Value::Array(items) => match (items.first().and_then(Value::as_u64), items.len()) {
            (Some(0), 4) => msgid(&items[1])
                .and_then(|id| Ok((Kind::Request, Some(id), Some(method(&items[2])?), None))),
            (Some(1), 4) => {
                msgid(&items[1]).map(|id| (Kind::Response, Some(id), None, error_text(&items[2])))
            }
            (Some(2), 3) => method(&items[1]).map(|m| (Kind::Notification, None, Some(m), None)),
            _ => Err(Malformed {
                reason: String::new(),
            }),
        },
        _ => Err(Malformed {
            reason: String::new(),
        }),
    };
    if let Ok((kind, id, method, error)) = shape {
        return MessageView {
            kind,
            id: id.map(u64::from),
            method,
            problem: None,
            error,
            value: value_json::to_json(value),
        };
    }
    // The slow path words the problem.
    match RpcMessage::from_value(value) {
        Ok(msg) => msg.view(),
        Err(m) => MessageView {
            kind: Kind::Malformed,
            id: None,
            method: None,
            problem: Some(m.reason),
            error: None,
            value: value_json::to_json(value),
        },
    }
}

/// The error of a response as text, the way Kong reads it (it calls
/// `:lower()` on it, so only strings make sense).
pub fn error_text(error: &Value) -> Option<String> {
    match error {
        Value::Nil => None,
        Value::String(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        other => Some(value_json::to_json(other).to_string()),
    }
}

fn msgid(v: &Value) -> Result<u32, Malformed> {
    v.as_u64()
        .and_then(|id| u32::try_from(id).ok())
        .ok_or_else(|| Malformed {
            reason: format!("msgid must be an unsigned 32-bit integer, got {}", short(v)),
        })
}

fn method(v: &Value) -> Result<String, Malformed> {
    match v {
        Value::String(s) => match s.as_str() {
            Some(text) => Ok(text.to_owned()),
            None => Err(Malformed {
                reason: "method name is not valid UTF-8".into(),
            }),
        },
        other => Err(Malformed {
            reason: format!("method must be a string, got {}", short(other)),
        }),
    }
}

fn short(v: &Value) -> String {
    super::shorten(&value_json::to_json(v).to_string(), 40)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "a boolean",
        Value::Integer(_) => "an integer",
        Value::F32(_) | Value::F64(_) => "a float",
        Value::String(_) => "a string",
        Value::Binary(_) => "binary data",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        Value::Ext(..) => "an ext value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(items: Vec<Value>) -> Value {
        Value::Array(items)
    }

    #[test]
    fn shapes() {
        let req = arr(vec![0.into(), 1.into(), "plugin.Step".into(), arr(vec![])]);
        assert!(matches!(
            RpcMessage::from_value(&req),
            Ok(RpcMessage::Request { msgid: 1, .. })
        ));
        let resp = arr(vec![
            1.into(),
            7.into(),
            "no plugin instance #0".into(),
            Value::Nil,
        ]);
        let msg = RpcMessage::from_value(&resp).unwrap();
        assert_eq!(msg.to_value(), resp);
        let note = arr(vec![2.into(), "serverPid".into(), 42.into()]);
        assert_eq!(
            RpcMessage::from_value(&note).unwrap().kind(),
            Kind::Notification
        );
    }

    #[test]
    fn view_of_equals_the_message_view() {
        let msgs = [
            arr(vec![
                0.into(),
                1.into(),
                "plugin.Step".into(),
                arr(vec![1.into()]),
            ]),
            arr(vec![
                1.into(),
                7.into(),
                "no plugin instance #0".into(),
                Value::Nil,
            ]),
            arr(vec![1.into(), 8.into(), Value::Nil, arr(vec![])]),
            arr(vec![1.into(), 9.into(), 5.into(), Value::Nil]),
            arr(vec![2.into(), "serverPid".into(), 42.into()]),
        ];
        for v in msgs {
            assert_eq!(
                view_of(&v),
                RpcMessage::from_value(&v).unwrap().view(),
                "{v:?}"
            );
        }
    }

    #[test]
    fn malformed_reasons() {
        let cases = [
            (Value::from(5), "expected an array"),
            (arr(vec![]), "message type"),
            (
                arr(vec![3.into(), 1.into(), "m".into(), Value::Nil]),
                "unknown message type 3",
            ),
            (
                arr(vec![0.into(), 1.into(), "m".into()]),
                "has 4 elements, this one has 3",
            ),
            (
                arr(vec![2.into(), "m".into(), 1.into(), 2.into()]),
                "has 3 elements",
            ),
            (
                arr(vec![0.into(), (-1).into(), "m".into(), Value::Nil]),
                "msgid",
            ),
            (
                arr(vec![0.into(), (1u64 << 32).into(), "m".into(), Value::Nil]),
                "msgid",
            ),
            (
                arr(vec![0.into(), 1.into(), 5.into(), Value::Nil]),
                "method must be a string",
            ),
        ];
        for (value, expected) in cases {
            let err = RpcMessage::from_value(&value).unwrap_err();
            assert!(err.reason.contains(expected), "{value:?}: {}", err.reason);
            let view = view_of(&value);
            assert_eq!(view.kind, Kind::Malformed);
        }
    }
}
