//! Fault injection in the server role: when a conditional entry applies,
//! and how a reply goes wrong on the wire.
//!
//! The spec side is [`crate::spec::faults`]. Each fault is logged as a
//! warning and recorded in the connection's conversation as
//! `{"fault": ...}`, so a test (or a user) can see what the server did on
//! purpose.

use serde_json::{Value as Json, json};

use super::server::{ServerOptions, send};
use crate::codec::{MsgpackCodec, hex, msgpack};
use crate::error::{Error, Result};
use crate::message::RpcMessage;
use crate::net::Connection;
use crate::spec::faults::{Faults, Truncate, When, WrongMsgid};

/// What the connection does after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep reading requests.
    Continue,
    /// Close the connection.
    Close,
}

/// True when a conditional entry applies to call number `call` of its
/// method. Probabilities draw from a hash of the seed, the method, the
/// entry and the call number, so the same calls fault in every run
/// whatever the timing.
pub(crate) fn applies(when: &When, seed: u64, method: &str, index: usize, call: u64) -> bool {
    if !when.calls.is_empty() && !when.calls.contains(&call) {
        return false;
    }
    match when.probability {
        None => true,
        Some(p) => draw(seed, method, index, call) < p,
    }
}

/// A number in [0, 1) determined by its inputs (splitmix64 mixing).
fn draw(seed: u64, method: &str, index: usize, call: u64) -> f64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let mut h = mix(seed);
    for b in method.bytes() {
        h = mix(h ^ u64::from(b));
    }
    h = mix(h ^ index as u64);
    h = mix(h ^ call);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Sends `reply` the way the entry's faults say.
pub(crate) async fn deliver(
    conn: &mut Connection<MsgpackCodec>,
    reply: RpcMessage,
    faults: &Faults,
    opts: &ServerOptions,
    log: &mut Vec<Json>,
) -> Result<Flow> {
    let id = conn.id();
    let RpcMessage::Response {
        msgid,
        error,
        result,
    } = reply
    else {
        send(conn, &reply, opts, log).await?;
        return Ok(Flow::Continue);
    };
    if faults.crash {
        tracing::error!("{id} fault crash: the server exits now, as a crashing server would");
        std::process::exit(crate::exit::ERROR.into());
    }
    if faults.close {
        tracing::warn!("{id} fault close: closing instead of replying to msgid {msgid}");
        log.push(json!({"fault": "close"}));
        return Ok(Flow::Close);
    }
    if faults.no_reply {
        tracing::warn!("{id} fault no_reply: never answering msgid {msgid}");
        log.push(json!({"fault": "no_reply"}));
        return Ok(Flow::Continue);
    }
    if let Some(g) = faults.garbage.as_ref().filter(|g| !g.after_reply) {
        raw(conn, &g.bytes, "garbage instead of the reply", log).await?;
        return Ok(Flow::Continue);
    }
    let used = match faults.wrong_msgid {
        None => msgid,
        Some(WrongMsgid::Next) => msgid.wrapping_add(1),
        Some(WrongMsgid::Fixed(m)) => m,
    };
    if used != msgid {
        tracing::warn!("{id} fault wrong_msgid: replying to msgid {msgid} with msgid {used}");
        log.push(json!({"fault": "wrong_msgid", "msgid": msgid, "sent": used}));
    }
    let reply = RpcMessage::Response {
        msgid: used,
        error,
        result,
    };
    if let Some(t) = faults.truncate {
        let bytes = msgpack::encode(&reply.to_value());
        let n = match t {
            Truncate::Half => (bytes.len() / 2).max(1),
            Truncate::Bytes(n) => n,
        }
        .min(bytes.len().saturating_sub(1));
        tracing::warn!(
            "{id} fault truncate: sending {n} of the reply's {} bytes, then closing",
            bytes.len()
        );
        log.push(json!({"fault": "truncate", "sent": hex(&bytes[..n]), "of": bytes.len()}));
        write(conn, &bytes[..n]).await?;
        return Ok(Flow::Close);
    }
    send(conn, &reply, opts, log).await?;
    if let Some(g) = faults.garbage.as_ref().filter(|g| g.after_reply) {
        raw(conn, &g.bytes, "garbage after the reply", log).await?;
    }
    Ok(Flow::Continue)
}

async fn raw(
    conn: &mut Connection<MsgpackCodec>,
    bytes: &[u8],
    what: &str,
    log: &mut Vec<Json>,
) -> Result<()> {
    tracing::warn!(
        "{} fault garbage: sending {what}: {}",
        conn.id(),
        hex(bytes)
    );
    log.push(json!({"fault": "garbage", "sent": hex(bytes)}));
    write(conn, bytes).await
}

async fn write(conn: &mut Connection<MsgpackCodec>, bytes: &[u8]) -> Result<()> {
    conn.write_all(bytes).await.map_err(|source| Error::Io {
        context: format!("{}: writing a faulty reply", conn.id()),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_spread() {
        let when = When {
            calls: vec![],
            probability: Some(0.3),
        };
        let hits: Vec<bool> = (1..=1000)
            .map(|c| applies(&when, 42, "plugin.Step", 0, c))
            .collect();
        let again: Vec<bool> = (1..=1000)
            .map(|c| applies(&when, 42, "plugin.Step", 0, c))
            .collect();
        assert_eq!(hits, again);
        let n = hits.iter().filter(|h| **h).count();
        assert!((250..350).contains(&n), "{n} of 1000");
        let other: Vec<bool> = (1..=1000)
            .map(|c| applies(&when, 43, "plugin.Step", 0, c))
            .collect();
        assert_ne!(hits, other);
    }

    #[test]
    fn call_numbers() {
        let when = When {
            calls: vec![3],
            probability: None,
        };
        assert!(!applies(&when, 0, "m", 0, 2));
        assert!(applies(&when, 0, "m", 0, 3));
    }
}
