//! Fault injection in the `ProtoBuf:1` server role: the same spec keys as
//! for `MsgPack:1` ([`crate::spec::faults`]), applied to go-pdk's framing.
//!
//! | key | what the mock does |
//! |-----|--------------------|
//! | `close` | closes the connection instead of answering (before an event's PDK calls) |
//! | `no_reply` | sends nothing for this call (before an event's PDK calls) and reads the next one |
//! | `crash` | the whole process exits, as a go-pdk server does when a plugin panics |
//! | `garbage` | writes these bytes *as they are* (no length prefix is added, so framing can be broken too) instead of the RpcReturn, or after it with `after_reply` |
//! | `truncate` | writes part of the RpcReturn frame (prefix included), then closes |
//! | `wrong_msgid` | echoes the wrong `sequence` (the call's + 1, or the number given) |
//!
//! For `cmd_handle_event`, `garbage`, `truncate` and `wrong_msgid` take
//! the place of the RpcReturn: the PDK calls and the empty frame come
//! first, as the plugin ran. Each fault is logged as a warning and kept in
//! the connection's conversation as `{"fault": ...}`.

use serde_json::json;

use super::pb_wire::PbConn;
use crate::codec::{hex, protobuf};
use crate::error::Result;
use crate::message::Direction;
use crate::message::protobuf::{Envelope, EnvelopeKind};
use crate::spec::Entry;
use crate::spec::faults::{Truncate, WrongMsgid};

/// What the connection does after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep reading calls.
    Continue,
    /// Close the connection.
    Close,
}

/// Faults that replace the whole answer, checked before an event's PDK
/// calls are played. `None` when the call is answered (perhaps faultily,
/// by [`send_return`]).
pub(crate) fn before_reply(conn: &mut PbConn, entry: &Entry, sequence: i64) -> Option<Flow> {
    let id = conn.id();
    let faults = &entry.faults;
    if faults.crash {
        tracing::error!(
            "{id} fault crash: the server exits now, as a go-pdk server does when a plugin panics"
        );
        std::process::exit(crate::exit::ERROR.into());
    }
    if faults.close {
        conn.fault(json!({"fault": "close", "sequence": sequence}));
        conn.closing(
            &format!("fault close: closing instead of answering RpcCall #{sequence}"),
            Direction::ToClient,
        );
        return Some(Flow::Close);
    }
    if faults.no_reply {
        tracing::warn!("{id} fault no_reply: never answering RpcCall #{sequence}");
        conn.fault(json!({"fault": "no_reply", "sequence": sequence}));
        conn.abandon_call();
        return Some(Flow::Continue);
    }
    None
}

/// Sends the RpcReturn for `entry` (an empty frame for a `null` result),
/// the way its faults say.
pub(crate) async fn send_return(conn: &mut PbConn, entry: &Entry, sequence: i64) -> Result<Flow> {
    let id = conn.id();
    let faults = &entry.faults;
    if let Some(g) = faults.garbage.as_ref().filter(|g| !g.after_reply) {
        tracing::warn!(
            "{id} fault garbage: sending {} instead of the RpcReturn #{sequence}",
            hex(&g.bytes)
        );
        conn.fault(json!({"fault": "garbage", "sent": hex(&g.bytes)}));
        conn.write_raw(&g.bytes).await?;
        conn.abandon_call();
        return Ok(Flow::Continue);
    }
    let payload = if entry.result.is_null() {
        Vec::new()
    } else {
        let mut ret = Envelope::from_json(EnvelopeKind::Return, &entry.result)
            .map_err(crate::error::Error::Other)?;
        let echoed = entry
            .result
            .get("sequence")
            .and_then(|s| s.as_str().and_then(|t| t.parse().ok()).or(s.as_i64()))
            .unwrap_or(sequence);
        let used = match faults.wrong_msgid {
            None => echoed,
            Some(WrongMsgid::Next) => sequence.wrapping_add(1),
            Some(WrongMsgid::Fixed(m)) => i64::from(m),
        };
        if used != echoed {
            tracing::warn!(
                "{id} fault wrong_msgid: answering RpcCall #{sequence} with sequence {used}"
            );
            conn.fault(json!({"fault": "wrong_msgid", "sequence": sequence, "sent": used}));
        }
        ret.set_sequence(used);
        ret.encode()
    };
    if let Some(t) = faults.truncate {
        let frame = protobuf::encode(&payload)?;
        let n = match t {
            Truncate::Half => (frame.len() / 2).max(1),
            Truncate::Bytes(n) => n,
        }
        .min(frame.len().saturating_sub(1));
        tracing::warn!(
            "{id} fault truncate: sending {n} of the RpcReturn's {} bytes, then closing",
            frame.len()
        );
        conn.fault(json!({"fault": "truncate", "sent": hex(&frame[..n]), "of": frame.len()}));
        conn.write_raw(&frame[..n]).await?;
        return Ok(Flow::Close);
    }
    conn.send(Direction::ToClient, &payload).await?;
    if let Some(g) = faults.garbage.as_ref().filter(|g| g.after_reply) {
        tracing::warn!(
            "{id} fault garbage: sending {} after the RpcReturn",
            hex(&g.bytes)
        );
        conn.fault(json!({"fault": "garbage", "sent": hex(&g.bytes), "after_reply": true}));
        conn.write_raw(&g.bytes).await?;
    }
    Ok(Flow::Continue)
}
