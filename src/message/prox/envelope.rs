//! The envelope around every frame prox sends on a plugin's socket: a
//! msgpack map `{"t": hook byte, "d": bin}` whose `d` holds the hook's own
//! msgpack payload (encoded first, then wrapped: two levels).
//!
//! ```text
//!   82                      map of 2
//!   a1 74  cc 03            "t": uint8 3 (on_connect), written as prox's Go encoder does
//!   a1 64  c4 23 <35 bytes> "d": bin8 holding the ConnInfo map
//! ```
//!
//! Decoding follows the SDK's Go decoder: a missing `t` reads as 0 and a
//! missing `d` as no bytes (both are noted); a `t` or `d` of the wrong type,
//! or something that is not a map at all, fails, and the SDK then closes
//! the connection.

use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::Value as Json;

use super::decode_value;
use super::payload::Encoding;
use crate::codec::Limits;
use crate::value_json;

/// An envelope as read from a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `t` as sent; `None` when absent (Go reads 0).
    pub t: Option<u64>,
    /// `d` as sent; `None` when absent or nil (Go reads no bytes).
    pub data: Option<Bytes>,
    /// The whole envelope in the lossless JSON mapping.
    pub value: Json,
    /// Things a reader should know: absent keys, keys Go skips.
    pub notes: Vec<String>,
}

impl Envelope {
    /// `t` as the SDK reads it.
    pub fn hook_byte(&self) -> u64 {
        self.t.unwrap_or(0)
    }
}

/// Decodes a frame's payload as an envelope; the error says why the SDK's
/// decoder would fail on it.
pub fn decode(payload: &[u8], limits: Limits) -> Result<Envelope, String> {
    let value = decode_value(payload, limits)?;
    let mut env = Envelope {
        t: None,
        data: None,
        value: value_json::to_json(&value),
        notes: Vec::new(),
    };
    let (t, d) = match &value {
        Mp::Map(pairs) => {
            let (mut t, mut d) = (None, None);
            for (k, v) in pairs {
                match k.as_str() {
                    Some("t") => t = Some(v),
                    Some("d") => d = Some(v),
                    _ => env.notes.push(format!(
                        "the envelope key {} is not `t` or `d`; prox's decoder skips it",
                        value_json::to_json(k)
                    )),
                }
            }
            (t, d)
        }
        Mp::Array(items) if items.len() == 2 => {
            env.notes.push(
                "the envelope is an array of 2, not a map; Go's decoder accepts it as (t, d)"
                    .into(),
            );
            (Some(&items[0]), Some(&items[1]))
        }
        other => {
            return Err(format!(
                "the envelope is {}, not a map with `t` and `d`",
                shape(other)
            ));
        }
    };
    match t {
        None => env
            .notes
            .push("the envelope has no `t`: the SDK reads hook type 0".into()),
        Some(Mp::Nil) => env.notes.push("`t` is nil: the SDK reads 0".into()),
        Some(Mp::Integer(i)) => match i.as_u64().filter(|t| *t <= 255) {
            Some(t) => env.t = Some(t),
            None => {
                return Err(format!(
                    "`t` is {i}, which does not fit the hook byte (0 to 255)"
                ));
            }
        },
        Some(other) => {
            return Err(format!("`t` is {}, not an integer", shape(other)));
        }
    }
    match d {
        None => env
            .notes
            .push("the envelope has no `d`: the hook's payload is empty".into()),
        Some(Mp::Nil) => env
            .notes
            .push("`d` is nil: the hook's payload is empty".into()),
        Some(Mp::Binary(b)) => env.data = Some(Bytes::copy_from_slice(b)),
        Some(Mp::String(s)) => {
            env.notes
                .push("`d` is a str, not bin; Go's decoder accepts it".into());
            env.data = Some(Bytes::copy_from_slice(s.as_bytes()));
        }
        Some(other) => {
            return Err(format!(
                "`d` is {}, not bin (Go's decoder takes only bin or str for []byte)",
                shape(other)
            ));
        }
    }
    Ok(env)
}

/// The envelope around `inner` (the hook payload's msgpack bytes) for hook
/// byte `t`, keys in prox's order.
pub fn encode(t: u8, inner: &[u8], enc: Encoding) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len() + 12);
    out.extend_from_slice(&[0x82, 0xa1, b't']);
    match enc {
        Encoding::Go => out.extend_from_slice(&[0xcc, t]),
        Encoding::Compact => {
            // Writing into a Vec cannot fail.
            let _ = rmp::encode::write_uint(&mut out, u64::from(t));
        }
    }
    out.extend_from_slice(&[0xa1, b'd']);
    // A payload too long for bin32 cannot be framed anyway (4-byte length).
    let _ = rmp::encode::write_bin_len(&mut out, u32::try_from(inner.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(inner);
    out
}

/// A short description of a value's shape for messages.
pub(super) fn shape(v: &Mp) -> String {
    match v {
        Mp::Nil => "nil".into(),
        Mp::Boolean(b) => format!("the bool {b}"),
        Mp::Integer(i) => format!("the integer {i}"),
        Mp::F32(_) | Mp::F64(_) => "a float".into(),
        Mp::String(_) => "a str".into(),
        Mp::Binary(_) => "bin".into(),
        Mp::Array(items) => format!("an array of {}", items.len()),
        Mp::Map(pairs) => format!("a map of {}", pairs.len()),
        Mp::Ext(..) => "an ext value".into(),
    }
}
