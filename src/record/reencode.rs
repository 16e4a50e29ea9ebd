//! Leaving out raw bytes the decoded form gives back exactly.
//!
//! A MsgPack:1 frame's `msg.value` is its whole message in the lossless
//! JSON mapping ([`crate::value_json`]). Servers almost always write each
//! item in its smallest encoding, which is what plugtap's encoder writes
//! too, so encoding `msg.value` again usually gives the frame's bytes
//! back, byte for byte. The recorder checks exactly that for every frame
//! (no copy is made: the encoding is compared with the raw bytes as it is
//! written; a frame the proxy only scanned already knows, see
//! [`crate::message::msgpack_scan`]) and, when it holds, writes
//! `"reencodes": true` instead of the base64 of the bytes. A 4 KiB frame's line shrinks by more than half,
//! which is most of what recording costs under load (scripts/bench.sh).
//! A frame whose bytes differ in any way (a wider encoding than needed, a
//! NaN's payload bits) keeps its `raw`; `--keep-raw` keeps it always.
//! [`FrameEvent::raw_bytes`] gives the bytes back either way.

use std::io::Write;

use serde_json::Value as Json;

use super::FrameEvent;
use crate::codec::msgpack::{self, len32};
use crate::value_json;

impl FrameEvent {
    /// The frame's exact bytes: `raw` decoded from base64, or, for a frame
    /// written with `reencodes`, `msg.value` encoded again. `None` when
    /// redacted (or for a line that is neither).
    pub fn raw_bytes(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        if let Some(raw) = &self.raw {
            return base64::engine::general_purpose::STANDARD.decode(raw).ok();
        }
        if !self.reencodes || self.redacted {
            return None;
        }
        let mut out = Vec::with_capacity(self.len as usize);
        encode(&mut out, &self.msg.value).ok()?;
        Some(out)
    }
}

/// True when `value` encodes (MsgPack:1) to exactly `raw`.
pub(crate) fn msgpack_reencodes(value: &Json, raw: &[u8]) -> bool {
    let mut compare = Compare { rest: raw };
    encode(&mut compare, value).is_ok() && compare.rest.is_empty()
}

/// A writer that accepts only the bytes `rest` starts with, so an encoder
/// writing into it stops at the first byte that differs.
struct Compare<'a> {
    rest: &'a [u8],
}

impl Write for Compare<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.rest.strip_prefix(buf) {
            Some(rest) => {
                self.rest = rest;
                Ok(buf.len())
            }
            None => Err(std::io::ErrorKind::InvalidData.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `value` as msgpack exactly as [`msgpack::write`] writes
/// `value_json::from_json(value)`, without building the msgpack value: the
/// common items directly, tagged objects (`$bin`, `$f32`, ...) through the
/// mapping itself.
fn encode<W: Write>(wr: &mut W, value: &Json) -> std::io::Result<()> {
    use rmp::encode as e;
    let io = |err: e::ValueWriteError| match err {
        e::ValueWriteError::InvalidMarkerWrite(io) | e::ValueWriteError::InvalidDataWrite(io) => io,
    };
    match value {
        Json::Null => e::write_nil(wr)?,
        Json::Bool(b) => e::write_bool(wr, *b)?,
        Json::Number(n) => msgpack::write(wr, &value_json::number_to_mp(n))?,
        Json::String(s) => {
            e::write_str_len(wr, len32(s.len())?).map_err(io)?;
            wr.write_all(s.as_bytes())?;
        }
        Json::Array(items) => {
            e::write_array_len(wr, len32(items.len())?).map_err(io)?;
            for item in items {
                encode(wr, item)?;
            }
        }
        Json::Object(obj) if obj.len() == 1 && obj.keys().all(|k| k.starts_with('$')) => {
            let mp = value_json::from_json(value).map_err(std::io::Error::other)?;
            msgpack::write(wr, &mp)?;
        }
        Json::Object(obj) => {
            e::write_map_len(wr, len32(obj.len())?).map_err(io)?;
            for (k, v) in obj {
                e::write_str_len(wr, len32(k.len())?).map_err(io)?;
                wr.write_all(k.as_bytes())?;
                encode(wr, v)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rmpv::Value as Mp;
    use serde_json::json;

    fn via_mapping(value: &Json) -> Vec<u8> {
        msgpack::encode(&value_json::from_json(value).unwrap()).to_vec()
    }

    #[test]
    fn smallest_encodings_reencode() {
        for value in [
            json!([0, 1, "plugin.GetPluginInfo", ["hello_peer"]]),
            json!([1, 7, null, {"Id": 0, "Config": {"n": -129, "f": 1.5, "s": "x".repeat(300)}}]),
            json!([2, "n", [{"$bin": "AAEC"}, {"$f32": 0.5}, {"$ext": [5, "AQ=="]}, {"$map": [[1, 2]]}]]),
            json!([
                u64::MAX,
                i64::MIN,
                -32,
                -33,
                127,
                128,
                255,
                256,
                65535,
                65536
            ]),
        ] {
            let raw = via_mapping(&value);
            assert!(msgpack_reencodes(&value, &raw), "{value}");
            let mut out = Vec::new();
            encode(&mut out, &value).unwrap();
            assert_eq!(out, raw);
        }
    }

    #[test]
    fn other_encodings_keep_their_bytes() {
        // 1 as uint8 instead of a fixint; "a" as str8; a float64 NaN with a
        // payload; one byte too many; one too few.
        let cases: [(&[u8], Json); 5] = [
            (&[0x91, 0xcc, 0x01], json!([1])),
            (&[0xd9, 0x01, b'a'], json!("a")),
            (
                &[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1],
                json!({"$f64": "NaN"}),
            ),
            (&[0x91, 0x01, 0x01], json!([1])),
            (&[0x92, 0x01], json!([1])),
        ];
        for (raw, value) in cases {
            assert!(!msgpack_reencodes(&value, raw), "{raw:02x?}");
        }
    }

    fn any_msgpack() -> impl Strategy<Value = Mp> {
        let leaf = prop_oneof![
            Just(Mp::Nil),
            any::<bool>().prop_map(Mp::Boolean),
            any::<i64>().prop_map(Mp::from),
            any::<u64>().prop_map(Mp::from),
            any::<f64>().prop_map(Mp::F64),
            any::<f32>().prop_map(Mp::F32),
            ".{0,40}".prop_map(|s: String| Mp::from(s)),
            prop::collection::vec(any::<u8>(), 0..40).prop_map(Mp::Binary),
            (any::<i8>(), prop::collection::vec(any::<u8>(), 0..20))
                .prop_map(|(t, d)| Mp::Ext(t, d)),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Mp::Array),
                prop::collection::vec((inner.clone(), inner), 0..6).prop_map(Mp::Map),
                prop::collection::vec(("[a-z$]{0,6}", any::<u32>()), 0..6).prop_map(|kv| {
                    Mp::Map(
                        kv.into_iter()
                            .map(|(k, v)| (Mp::from(k), Mp::from(v)))
                            .collect(),
                    )
                }),
            ]
        })
    }

    proptest! {
        /// The check says yes exactly when the mapping's encoding equals
        /// the bytes, and the bytes it gives back are those bytes.
        #[test]
        fn agrees_with_the_mapping(v in any_msgpack(), wider in any::<bool>()) {
            let mut raw = msgpack::encode(&v).to_vec();
            if wider {
                // `[v]` as an array16: not the smallest encoding.
                raw.splice(0..0, [0xdc, 0, 1]);
            }
            let decoded = rmpv::decode::read_value(&mut raw.as_slice()).unwrap();
            let value = value_json::to_json(&decoded);
            let expected = via_mapping(&value) == raw;
            prop_assert_eq!(msgpack_reencodes(&value, &raw), expected);
            if wider {
                prop_assert!(!expected);
            }
            let mut out = Vec::new();
            encode(&mut out, &value).unwrap();
            prop_assert_eq!(out, via_mapping(&value));
        }
    }
}
