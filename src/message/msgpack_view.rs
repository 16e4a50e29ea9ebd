//! The proxy's fast path from a `MsgPack:1` frame's bytes to its
//! [`MessageView`]: the msgpack is read straight into the JSON of
//! [`crate::value_json`], without building an [`rmpv::Value`] first.
//!
//! It covers what Kong and the plugin servers send (nil, booleans,
//! integers, finite float64, UTF-8 strings, arrays, maps with distinct
//! string keys) and well-formed requests, responses and notifications.
//! Anything else (bin, ext, float32, NaN, invalid UTF-8, other map keys,
//! a malformed message) returns `None`, and the caller takes the general
//! path ([`super::msgpack_rpc::view_of`] on the decoded value), so the
//! view is always exactly the one that path gives (tested below).

use serde_json::{Map, Number, Value as Js};

use super::msgpack_bytes::Cursor;
use super::{Kind, MessageView};

/// The view of one complete msgpack message `raw`, nested at most
/// `max_depth` containers deep; `None` to take the general path.
pub fn fast_view(raw: &[u8], max_depth: usize) -> Option<MessageView> {
    let mut r = Reader {
        cur: Cursor::new(raw),
    };
    let value = r.value(max_depth)?;
    if r.cur.left() != 0 {
        return None;
    }
    let Js::Array(items) = &value else {
        return None;
    };
    let (kind, id, method, error) = match (items.first().and_then(Js::as_u64), items.len()) {
        (Some(0), 4) => (
            Kind::Request,
            Some(msgid(&items[1])?),
            Some(items[2].as_str()?.to_owned()),
            None,
        ),
        (Some(1), 4) => (
            Kind::Response,
            Some(msgid(&items[1])?),
            None,
            match &items[2] {
                Js::Null => None,
                Js::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            },
        ),
        (Some(2), 3) => (
            Kind::Notification,
            None,
            Some(items[1].as_str()?.to_owned()),
            None,
        ),
        _ => return None,
    };
    Some(MessageView {
        kind,
        id,
        method,
        problem: None,
        error,
        value,
    })
}

fn msgid(v: &Js) -> Option<u64> {
    v.as_u64().filter(|id| u32::try_from(*id).is_ok())
}

struct Reader<'a> {
    cur: Cursor<'a>,
}

impl Reader<'_> {
    fn value(&mut self, depth: usize) -> Option<Js> {
        let marker = self.cur.marker()?;
        Some(match marker {
            0x00..=0x7f => Js::Number(u64::from(marker).into()),
            0xe0..=0xff => Js::Number(i64::from(marker as i8).into()),
            0xc0 => Js::Null,
            0xc2 => Js::Bool(false),
            0xc3 => Js::Bool(true),
            0xcc..=0xcf => Js::Number(self.cur.uint(1 << (marker - 0xcc))?.into()),
            0xd0..=0xd3 => {
                let i = self.cur.int(1 << (marker - 0xd0))?;
                match u64::try_from(i) {
                    Ok(u) => Js::Number(u.into()),
                    Err(_) => Js::Number(i.into()),
                }
            }
            0xcb => Js::Number(Number::from_f64(f64::from_bits(self.cur.uint(8)?))?),
            0xa0..=0xbf => self.str(usize::from(marker & 0x1f))?,
            0xd9..=0xdb => {
                let len = self.cur.uint(1 << (marker - 0xd9))?;
                self.str(usize::try_from(len).ok()?)?
            }
            0x90..=0x9f => self.array(usize::from(marker & 0x0f), depth)?,
            0xdc | 0xdd => {
                let len = self.cur.uint(if marker == 0xdc { 2 } else { 4 })?;
                self.array(usize::try_from(len).ok()?, depth)?
            }
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0xde | 0xdf => {
                let len = self.cur.uint(if marker == 0xde { 2 } else { 4 })?;
                self.map(usize::try_from(len).ok()?, depth)?
            }
            // bin, ext, float32 and the reserved marker: the general path.
            _ => return None,
        })
    }

    fn str(&mut self, len: usize) -> Option<Js> {
        let text = std::str::from_utf8(self.cur.take(len)?).ok()?;
        Some(Js::String(text.to_owned()))
    }

    fn array(&mut self, len: usize, depth: usize) -> Option<Js> {
        let depth = depth.checked_sub(1)?;
        // Each item takes at least one byte: a bad length cannot allocate much.
        let mut items = Vec::with_capacity(len.min(self.cur.left()));
        for _ in 0..len {
            items.push(self.value(depth)?);
        }
        Some(Js::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Option<Js> {
        let depth = depth.checked_sub(1)?;
        let mut obj = Map::with_capacity(len.min(self.cur.left()));
        for _ in 0..len {
            let Js::String(key) = self.value(depth)? else {
                return None;
            };
            let val = self.value(depth)?;
            if obj.insert(key, val).is_some() {
                return None;
            }
        }
        if obj.len() == 1 && obj.keys().all(|k| k.starts_with('$')) {
            return None;
        }
        Some(Js::Object(obj))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::message::msgpack_rpc::view_of;
    use rmpv::Value;

    fn encode(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    /// The fast view, when there is one, equals the general path's.
    fn check(raw: &[u8]) -> bool {
        let v = rmpv::decode::read_value(&mut &raw[..]).unwrap();
        match fast_view(raw, 64) {
            Some(view) => {
                assert_eq!(view, view_of(&v), "{v}");
                true
            }
            None => false,
        }
    }

    fn req(params: Value) -> Value {
        Value::Array(vec![0.into(), 7.into(), "plugin.Step".into(), params])
    }

    fn map(pairs: Vec<(&str, Value)>) -> Value {
        Value::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Encoded messages: those the fast path takes, and well-formed
    /// msgpack it leaves to the general path.
    pub(crate) fn samples() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let params = Value::Array(vec![
            Value::Nil,
            true.into(),
            false.into(),
            0.into(),
            127.into(),
            128.into(),
            65_536.into(),
            u64::MAX.into(),
            (-1).into(),
            (-33).into(),
            (-200).into(),
            (-70_000).into(),
            i64::MIN.into(),
            Value::F64(1.5),
            Value::F64(-0.0),
            "".into(),
            "x".repeat(40).into(),
            "ünï \"q\" \n".repeat(3000).into(),
            map(vec![("a", 1.into()), ("$b", 2.into())]),
            map(vec![]),
            Value::Array((0..70_000).map(Value::from).collect()),
            Value::Map(
                (0..40)
                    .map(|i| (format!("k{i}").into(), i.into()))
                    .collect(),
            ),
        ]);
        let fast = [
            req(params.clone()),
            req(Value::Array(vec![])),
            Value::Array(vec![1.into(), 7.into(), Value::Nil, params.clone()]),
            Value::Array(vec![1.into(), 7.into(), "boom".into(), Value::Nil]),
            Value::Array(vec![
                1.into(),
                7.into(),
                map(vec![("e", 1.into())]),
                2.into(),
            ]),
            Value::Array(vec![2.into(), "serverPid".into(), 42.into()]),
            Value::Array(vec![
                0.into(),
                u64::from(u32::MAX).into(),
                "m".into(),
                1.into(),
            ]),
        ];
        let bytes = |b: &[u8]| Value::Binary(b.to_vec());
        let mut general: Vec<Value> = [
            bytes(b"\x00\xff"),
            Value::Ext(3, vec![1, 2]),
            Value::F32(1.5),
            Value::F64(f64::NAN),
            Value::F64(f64::INFINITY),
            Value::Map(vec![(1.into(), 2.into())]),
            Value::Map(vec![("a".into(), 1.into()), ("a".into(), 2.into())]),
            Value::Map(vec![("$bin".into(), 1.into())]),
            Value::Array(vec![Value::Map(vec![(Value::Nil, Value::Nil)])]),
        ]
        .into_iter()
        .map(req)
        .collect();
        general.extend([
            Value::Array(vec![0.into(), 7.into(), "m".into()]),
            Value::Array(vec![
                0.into(),
                (u64::from(u32::MAX) + 1).into(),
                "m".into(),
                1.into(),
            ]),
            Value::Array(vec![0.into(), (-1).into(), "m".into(), 1.into()]),
            Value::Array(vec![0.into(), 1.into(), 2.into(), 1.into()]),
            Value::Array(vec![3.into(), 1.into(), 2.into(), 1.into()]),
            Value::Array(vec![Value::F64(0.0), 1.into(), "m".into(), 1.into()]),
            Value::Array(vec![2.into(), Value::Nil, 1.into()]),
            "not an array".into(),
            Value::Array(vec![]),
        ]);
        let mut general: Vec<Vec<u8>> = general.iter().map(encode).collect();
        // A string that is not UTF-8 as params.
        general.push(vec![0x94, 0x00, 0x07, 0xa1, b'm', 0xa2, 0xff, 0xfe]);
        (fast.iter().map(encode).collect(), general)
    }

    #[test]
    fn common_messages_take_the_fast_path() {
        for raw in samples().0 {
            assert!(check(&raw), "{raw:02x?}");
        }
    }

    #[test]
    fn the_rest_takes_the_general_path() {
        for raw in samples().1 {
            if rmpv::decode::read_value(&mut &raw[..]).is_ok() {
                assert!(!check(&raw), "{raw:02x?}");
            } else {
                assert!(fast_view(&raw, 64).is_none());
            }
        }
        // Cut short, trailing bytes, too deep.
        let raw = encode(&req(1.into()));
        assert!(fast_view(&raw[..raw.len() - 1], 64).is_none());
        let mut long = raw.clone();
        long.push(0);
        assert!(fast_view(&long, 64).is_none());
        let deep = req(Value::Array(vec![Value::Array(vec![])]));
        assert!(fast_view(&encode(&deep), 2).is_none());
        assert!(fast_view(&encode(&deep), 3).is_some());
    }

    /// `n` pseudo-random messages (a fixed xorshift sequence), encoded;
    /// many take the fast path, many do not.
    pub(crate) fn random_messages(n: usize) -> Vec<Vec<u8>> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        fn random(next: &mut dyn FnMut() -> u64, depth: u32) -> Value {
            let pick = next() % if depth == 0 { 9 } else { 12 };
            match pick {
                0 => Value::Nil,
                1 => next().is_multiple_of(2).into(),
                2 => (next() % 300).into(),
                3 => (next() as i64).into(),
                4 => next().into(),
                5 => Value::F64(f64::from_bits(next())),
                6 => ["a", "$a", "b", "ü", "\"\\\u{1}"][(next() % 5) as usize].into(),
                7 => Value::F32(next() as f32),
                8 => Value::Binary(vec![next() as u8]),
                9 | 10 => Value::Array((0..next() % 4).map(|_| random(next, depth - 1)).collect()),
                _ => Value::Map(
                    (0..next() % 3)
                        .map(|_| (random(next, 0), random(next, depth - 1)))
                        .collect(),
                ),
            }
        }
        (0..n)
            .map(|_| {
                let params = random(&mut next, 3);
                let v = match next() % 3 {
                    0 => req(params),
                    1 => Value::Array(vec![1.into(), 3.into(), random(&mut next, 1), params]),
                    _ => Value::Array(vec![2.into(), "serverPid".into(), params]),
                };
                encode(&v)
            })
            .collect()
    }

    #[test]
    fn random_values_agree() {
        let fast = random_messages(5000)
            .iter()
            .filter(|raw| check(raw))
            .count();
        assert!(fast > 500, "only {fast} took the fast path");
    }
}
