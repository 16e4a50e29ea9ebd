//! Messages of prox's plugin protocol.
//!
//! A prox plugin has two channels:
//!
//! * [`stdio`]: JSON lines. prox writes `configure` on the plugin's stdin;
//!   the plugin answers on stdout with an acknowledgement and `ready`
//!   (naming its socket and hooks), and pushes `set_targets`, `set_speed`
//!   and `log` whenever it likes.
//! * the socket: length-prefixed msgpack frames
//!   ([`crate::codec::prox`]). prox sends an [`envelope`] `{t, d}` whose
//!   `t` names the [`Hook`] and whose `d` (bin) holds the hook's own msgpack
//!   map with short keys ([`schema`]); the plugin answers with the bare
//!   result map, except for `on_disconnect`, which gets no answer.
//!
//! [`decode_request`] and [`decode_reply`] give a socket frame its meaning
//! at both levels. Views name the hook (`method`) and carry the short-key
//! map and, next to it, the same fields under readable names:
//!
//! ```json
//! {"t": 1, "hook": "on_request", "d": {"r": "web:0", "m": "GET", "p": "/admin", ...},
//!  "fields": {"route_id": "web:0", "method": "GET", "path": "/admin", ...}}
//! {"hook": "on_request", "result": {"ok": false, "s": 403}, "fields": {"allow": false, "status": 403}}
//! ```
//!
//! A reply has no envelope and no id: its hook is the one of the request
//! it answers on the same connection (see [`crate::conversation::prox`]).

pub mod envelope;
mod hook;
pub mod payload;
pub mod schema;
pub mod stdio;

use bytes::BytesMut;
use rmpv::Value as Mp;
use serde_json::{Value as Json, json};
use tokio_util::codec::Decoder as _;

pub use envelope::Envelope;
pub use hook::Hook;
pub use payload::Encoding;
pub use schema::Schema;

use crate::codec::{CodecError, Limits, MsgpackCodec, hex};
use crate::message::{Kind, MessageView};
use crate::value_json;

/// A frame prox sent on a plugin's socket, decoded at both levels.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The hook its `t` names, if it names one.
    pub hook: Option<Hook>,
    /// `t` as the SDK reads it (0 when absent); `None` when the envelope
    /// itself does not decode.
    pub t: Option<u64>,
    /// The hook's payload (short keys, lossless JSON), when `d` decodes.
    pub payload: Option<Json>,
    /// True when the SDK can read the payload as the hook's type.
    pub readable: bool,
    /// The protocol-neutral view.
    pub view: MessageView,
}

/// Decodes a frame prox sent (its payload, without the length prefix).
pub fn decode_request(frame: &[u8], limits: Limits) -> Request {
    let env = match envelope::decode(frame, limits) {
        Ok(env) => env,
        Err(e) => {
            let problem = format!(
                "{e}; the SDK cannot read the envelope (`unmarshal envelope`) and closes the connection"
            );
            return Request {
                hook: None,
                t: None,
                payload: None,
                readable: false,
                view: malformed(None, problem, frame, limits),
            };
        }
    };
    let t = env.hook_byte();
    let data = env.data.clone().unwrap_or_default();
    let inner = decode_value(&data, limits);
    let d = match &inner {
        Ok(v) => value_json::to_json(v),
        Err(_) => value_json::to_json(&Mp::Binary(data.to_vec())),
    };
    let mut notes = env.notes.clone();
    let Some(hook) = Hook::from_byte(t) else {
        notes.push(format!(
            "unknown hook type {t}: the SDK logs `unknown hook type: {t}` and sends no reply, so prox times out"
        ));
        return Request {
            hook: None,
            t: Some(t),
            payload: inner.ok().map(|v| value_json::to_json(&v)),
            readable: false,
            view: MessageView {
                kind: Kind::Malformed,
                id: None,
                method: None,
                problem: Some(notes.join("; ")),
                error: None,
                value: json!({"t": t, "d": d}),
            },
        };
    };
    let schema = hook.request();
    let readable = match &inner {
        Ok(v) => {
            let check = payload::check(schema, v);
            if !check.ignored.is_empty() {
                notes.push(format!(
                    "keys the SDK's decoder skips: {}",
                    check.ignored.join(", ")
                ));
            }
            if check.errors.is_empty() {
                true
            } else {
                notes.push(format!(
                    "the SDK cannot read `d` as {}: {}; it answers {}",
                    schema.name,
                    check.errors.join("; "),
                    hook.error_reply()
                ));
                false
            }
        }
        Err(e) => {
            let what = if data.is_empty() {
                "is empty".to_owned()
            } else {
                format!("does not decode ({e})")
            };
            notes.push(format!(
                "the payload in `d` {what}; the SDK answers {}",
                hook.error_reply()
            ));
            false
        }
    };
    let kind = if hook.expects_reply() {
        Kind::Request
    } else {
        Kind::Notification
    };
    let fields = schema.readable(&d);
    Request {
        hook: Some(hook),
        t: Some(t),
        payload: inner.is_ok().then(|| d.clone()),
        readable,
        view: MessageView {
            kind,
            id: None,
            method: Some(hook.name().to_owned()),
            problem: (!notes.is_empty()).then(|| notes.join("; ")),
            error: None,
            value: json!({"t": t, "hook": hook.name(), "d": d, "fields": fields}),
        },
    }
}

/// A plugin's reply to a hook call, decoded with the hook's result type.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The hook it answers.
    pub hook: Hook,
    /// The result map (short keys, lossless JSON), when it is msgpack.
    pub result: Option<Json>,
    /// True when prox can read it as the hook's result type.
    pub usable: bool,
    /// The protocol-neutral view.
    pub view: MessageView,
}

/// Decodes a plugin's reply (a frame's payload) to a call of `hook`.
pub fn decode_reply(hook: Hook, frame: &[u8], limits: Limits) -> Reply {
    let Some(schema) = hook.result() else {
        let problem = format!(
            "a reply to {hook}, which prox sends fire-and-forget and never reads a reply to; \
             prox would take it as the reply to its next call on this connection"
        );
        return Reply {
            hook,
            result: None,
            usable: false,
            view: malformed(Some(hook), problem, frame, limits),
        };
    };
    let value = match decode_value(frame, limits) {
        Ok(v) => v,
        Err(e) => {
            let problem = format!(
                "the reply to {hook} is not msgpack ({e}); {}",
                hook.on_failure()
            );
            return Reply {
                hook,
                result: None,
                usable: false,
                view: malformed(Some(hook), problem, frame, limits),
            };
        }
    };
    let result = value_json::to_json(&value);
    let check = payload::check(schema, &value);
    let mut notes = Vec::new();
    if !check.errors.is_empty() {
        notes.push(format!(
            "prox cannot decode it as {}: {}; {}",
            schema.name,
            check.errors.join("; "),
            hook.on_failure()
        ));
    }
    if !check.ignored.is_empty() {
        notes.push(format!("keys prox skips: {}", check.ignored.join(", ")));
    }
    if check.errors.is_empty()
        && schema.by_key("ok").is_some()
        && result.get("ok").is_none_or(Json::is_null)
    {
        notes.push("no `ok`: prox reads it as false (deny)".into());
    }
    let usable = check.errors.is_empty();
    Reply {
        hook,
        view: MessageView {
            kind: Kind::Response,
            id: None,
            method: Some(hook.name().to_owned()),
            problem: (!notes.is_empty()).then(|| notes.join("; ")),
            error: None,
            value: json!({"hook": hook.name(), "result": result, "fields": schema.readable(&result)}),
        },
        result: Some(result),
        usable,
    }
}

/// Decodes exactly one msgpack value filling `bytes`, within `limits`.
pub fn decode_value(bytes: &[u8], limits: Limits) -> Result<Mp, String> {
    if bytes.is_empty() {
        return Err("no bytes".into());
    }
    let mut codec = MsgpackCodec::new(limits);
    let mut buf = BytesMut::from(bytes);
    match codec.decode_eof(&mut buf) {
        Ok(Some(frame)) if buf.is_empty() => Ok(frame.value),
        Ok(Some(_)) => Err(format!("{} bytes follow the msgpack value", buf.len())),
        Ok(None) => Err("no bytes".into()),
        Err(CodecError::Truncated { pending, .. }) => Err(format!(
            "the msgpack value is cut short ({pending} bytes, more were declared)"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// The view of a frame that could not be given meaning: its value when it
/// is msgpack at all, else its bytes in hex.
fn malformed(hook: Option<Hook>, problem: String, frame: &[u8], limits: Limits) -> MessageView {
    let value = match decode_value(frame, limits) {
        Ok(v) => value_json::to_json(&v),
        Err(_) => json!({"hex": hex(&frame[..frame.len().min(4096)]), "len": frame.len()}),
    };
    MessageView {
        kind: Kind::Malformed,
        id: None,
        method: hook.map(|h| h.name().to_owned()),
        problem: Some(problem),
        error: None,
        value,
    }
}
