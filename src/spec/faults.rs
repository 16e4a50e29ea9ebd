//! Fault injection keys of server entries, and when an entry applies.
//!
//! ```json
//! {"on_methods": {"plugin.HandleEvent": [
//!    {"calls": [3], "close": true},
//!    {"probability": 0.1, "garbage": "c1c1"},
//!    {"result": {"EventId": 0, "Data": "ret"}}
//! ]}, "seed": 42}
//! ```
//!
//! | key | effect |
//! |-----|--------|
//! | `delay_ms` | wait before replying (see [`super::Entry`]) |
//! | `close` | close the connection instead of replying |
//! | `garbage` | send these raw bytes (hex) instead of the reply; `{"hex": ..., "after_reply": true}` sends them after it |
//! | `truncate` | send part of the reply (`true`: half, or a byte count), then close |
//! | `wrong_msgid` | reply with the request's msgid + 1 (`true`) or with this msgid |
//! | `no_reply` | never answer this request |
//! | `crash` | the whole server process exits at once, as Go servers do when a plugin panics |
//! | `error` | the reply's error text (see [`super::Entry`]) |
//!
//! An entry with `calls` (1-based call numbers of its method) or
//! `probability` (with the spec's `seed`) is *conditional*: it is tried
//! before the plain entries and applies only when its condition holds.

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// What goes wrong when an entry answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Close the connection instead of replying.
    pub close: bool,
    /// Raw bytes to send.
    pub garbage: Option<Garbage>,
    /// Send only part of the reply, then close.
    pub truncate: Option<Truncate>,
    /// Reply with a msgid the client did not use.
    pub wrong_msgid: Option<WrongMsgid>,
    /// Never answer.
    pub no_reply: bool,
    /// Exit the server process.
    pub crash: bool,
}

impl Faults {
    /// True when no fault is set.
    pub fn is_empty(&self) -> bool {
        *self == Faults::default()
    }
}

/// Raw bytes a faulty entry sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Garbage {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Send them after the reply instead of in its place.
    pub after_reply: bool,
}

/// How much of the reply a truncating entry sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Truncate {
    /// The first half (at least one byte, never all of it).
    Half,
    /// This many bytes (fewer than the reply has).
    Bytes(usize),
}

/// Which msgid a `wrong_msgid` entry uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WrongMsgid {
    /// The request's msgid plus one.
    Next,
    /// This msgid.
    Fixed(u32),
}

/// When a conditional entry applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct When {
    /// 1-based call numbers of the entry's method (counted per connection,
    /// or over all connections with `"cycle": "global"`).
    pub calls: Vec<u64>,
    /// Chance that the entry applies to a call, from 0 to 1.
    pub probability: Option<f64>,
}

impl When {
    /// True for an entry without conditions.
    pub fn is_always(&self) -> bool {
        self.calls.is_empty() && self.probability.is_none()
    }
}

/// The fault and condition keys as they appear in an entry.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawFaults {
    #[serde(default)]
    pub(crate) close: bool,
    pub(crate) garbage: Option<Garbage>,
    pub(crate) truncate: Option<Truncate>,
    pub(crate) wrong_msgid: Option<WrongMsgid>,
    #[serde(default)]
    pub(crate) no_reply: bool,
    #[serde(default)]
    pub(crate) crash: bool,
    pub(crate) calls: Option<Vec<u64>>,
    pub(crate) probability: Option<f64>,
}

impl RawFaults {
    /// Checks combinations and splits into faults and conditions.
    pub(crate) fn build<E: de::Error>(self) -> Result<(Faults, When), E> {
        let instead: Vec<&str> = [
            ("close", self.close),
            ("no_reply", self.no_reply),
            ("crash", self.crash),
            ("truncate", self.truncate.is_some()),
            (
                "garbage",
                self.garbage.as_ref().is_some_and(|g| !g.after_reply),
            ),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name)
        .collect();
        if instead.len() > 1 {
            return Err(E::custom(format!(
                "an entry can only do one of {} instead of replying",
                instead.join(", ")
            )));
        }
        if let Some(p) = self.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err(E::custom(format!(
                "probability must be between 0 and 1, not {p}"
            )));
        }
        if let Some(calls) = &self.calls {
            if calls.is_empty() {
                return Err(E::custom("calls is an empty list"));
            }
            if calls.contains(&0) {
                return Err(E::custom("call numbers start at 1"));
            }
        }
        Ok((
            Faults {
                close: self.close,
                garbage: self.garbage,
                truncate: self.truncate,
                wrong_msgid: self.wrong_msgid,
                no_reply: self.no_reply,
                crash: self.crash,
            },
            When {
                calls: self.calls.unwrap_or_default(),
                probability: self.probability,
            },
        ))
    }
}

/// Parses hex text, allowing spaces between bytes.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.is_empty() {
        return Err("no bytes given".into());
    }
    if !digits.len().is_multiple_of(2) {
        return Err(format!("{text:?} has an odd number of hex digits"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| format!("{text:?} is not hex"))
        })
        .collect()
}

#[derive(Deserialize)]
struct RawGarbage {
    hex: String,
    #[serde(default)]
    after_reply: bool,
}

impl<'de> Deserialize<'de> for Garbage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Garbage;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("hex bytes (\"c1ff\") or {\"hex\": \"c1ff\", \"after_reply\": true}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Garbage, E> {
                Ok(Garbage {
                    bytes: parse_hex(s).map_err(E::custom)?,
                    after_reply: false,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Garbage, A::Error> {
                let raw = RawGarbage::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Garbage {
                    bytes: parse_hex(&raw.hex).map_err(de::Error::custom)?,
                    after_reply: raw.after_reply,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Truncate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Truncate;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true (send half the reply) or a byte count")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Truncate, E> {
                if b {
                    Ok(Truncate::Half)
                } else {
                    Err(E::custom(
                        "leave truncate out instead of setting it to false",
                    ))
                }
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Truncate, E> {
                match usize::try_from(n) {
                    Ok(n) if n > 0 => Ok(Truncate::Bytes(n)),
                    _ => Err(E::custom("truncate needs a byte count of 1 or more")),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for WrongMsgid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = WrongMsgid;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true (the request's msgid + 1) or a msgid")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<WrongMsgid, E> {
                if b {
                    Ok(WrongMsgid::Next)
                } else {
                    Err(E::custom(
                        "leave wrong_msgid out instead of setting it to false",
                    ))
                }
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<WrongMsgid, E> {
                u32::try_from(n)
                    .map(WrongMsgid::Fixed)
                    .map_err(|_| E::custom("a msgid is an unsigned 32-bit integer"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex() {
        assert_eq!(parse_hex("c1 FF00").unwrap(), [0xc1, 0xff, 0x00]);
        assert!(parse_hex("c").is_err());
        assert!(parse_hex("zz").is_err());
        assert!(parse_hex("  ").is_err());
    }
}
