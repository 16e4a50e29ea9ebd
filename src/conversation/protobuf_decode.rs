//! Decoding one `ProtoBuf:1` frame whose position in the conversation is
//! known: an RpcCall, an RpcReturn, a PDK method name, arguments or reply.
//! [`super::protobuf`] decides the position; this module turns the payload
//! into an [`Observation`], or a malformed one saying why it does not fit.

use serde_json::Value as Json;

use super::protobuf::{Observation, Observed};
use crate::message::Kind;
use crate::message::protobuf::pdk;
use crate::message::protobuf::{Envelope, EnvelopeKind, PdkMethod};

pub(super) fn malformed(method: Option<&str>, problem: String, payload: &[u8]) -> Observation {
    Observation {
        view: pdk::malformed_view(method, problem, payload),
        what: Observed::Malformed,
    }
}

/// Kong's RpcCall.
pub(super) fn call(payload: &[u8]) -> Observation {
    let env = match Envelope::decode(EnvelopeKind::Call, payload) {
        Ok(env) => env,
        Err(e) => return malformed(None, e.to_string(), payload),
    };
    let view = env.view();
    let what = if view.kind == Kind::Malformed {
        Observed::Malformed
    } else {
        Observed::Call {
            sequence: env.sequence(),
            command: env.member(),
            params: env.member_json().unwrap_or(Json::Null),
        }
    };
    Observation { view, what }
}

/// The server's RpcReturn for the call with `expected` sequence.
pub(super) fn ret(payload: &[u8], expected: Option<i64>, command: Option<&str>) -> Observation {
    let env = match Envelope::decode(EnvelopeKind::Return, payload) {
        Ok(env) => env,
        Err(e) => return malformed(None, e.to_string(), payload),
    };
    let mut view = env.view();
    let sequence = env.sequence();
    if let Some(expected) = expected.filter(|e| *e != sequence) {
        let what = if payload.is_empty() {
            format!(
                "an empty frame instead of an RpcReturn (go-pdk's answer to {}, which it does not implement)",
                command.unwrap_or("a command")
            )
        } else {
            format!("sequence {sequence}")
        };
        view.problem = Some(format!(
            "{what} does not echo the call's sequence {expected}; Kong fails its check"
        ));
    }
    let what = match view.kind {
        Kind::Response => Observed::Return {
            sequence,
            value: view.value.clone(),
        },
        _ => Observed::Malformed,
    };
    Observation { view, what }
}

/// A method-name frame, or the empty frame ending the PDK calls.
pub(super) fn name(payload: &[u8]) -> Observation {
    if payload.is_empty() {
        return Observation {
            view: pdk::end_view(),
            what: Observed::PdkEnd,
        };
    }
    let Ok(method) = std::str::from_utf8(payload) else {
        let problem = "a PDK method name that is not UTF-8".to_owned();
        return malformed(None, problem, payload);
    };
    let known = PdkMethod::named(method).is_some();
    let problem = (!known).then(|| {
        format!(
            "not a method of service Kong; Kong fails the event with \
             `method \"{method}\" not found` and never replies"
        )
    });
    Observation {
        view: pdk::call_view(method, problem),
        what: Observed::PdkCall {
            method: method.to_owned(),
            known,
        },
    }
}

pub(super) fn args(method: Option<&str>, payload: &[u8]) -> Observation {
    let Some(name) = method else {
        return malformed(
            None,
            "arguments of an unreadable PDK method name".into(),
            payload,
        );
    };
    let Some(pdk) = PdkMethod::named(name) else {
        return malformed(
            Some(name),
            format!("arguments of {name}, which service Kong does not have; not decoded"),
            payload,
        );
    };
    match pdk.decode_args(payload) {
        Ok(args) => Observation {
            view: pdk::args_view(name, args.clone()),
            what: Observed::PdkArgs {
                method: name.to_owned(),
                args,
            },
        },
        Err(e) => malformed(
            Some(name),
            format!("arguments of {name} do not decode: {e}"),
            payload,
        ),
    }
}

pub(super) fn reply(method: &str, payload: &[u8]) -> Observation {
    let Some(pdk) = PdkMethod::named(method) else {
        return malformed(
            Some(method),
            format!("reply to {method}, which service Kong does not have; not decoded"),
            payload,
        );
    };
    match pdk.decode_reply(payload) {
        Ok(reply) => Observation {
            view: pdk::reply_view(method, reply.clone()),
            what: Observed::PdkReply {
                method: method.to_owned(),
                reply,
            },
        },
        Err(e) => malformed(
            Some(method),
            format!("reply to {method} does not decode: {e}"),
            payload,
        ),
    }
}
