//! Fast JSON text for the recording's hottest line, `frame`.
//!
//! serde_json escapes strings one byte at a time and the base64 of a
//! frame's raw bytes would be scanned for escapes it can never need; with
//! 4 KiB params that was most of the recorder's time. Here strings are
//! scanned eight bytes at a time, base64 is written straight into the
//! output ([`super::base64_out`]), a scanned frame's value is written from
//! its msgpack bytes ([`super::msgpack_text`]), numbers and the common
//! names by hand, and the rare rest through serde_json. The output parses
//! to exactly what serde would have written (tested against it in this
//! file and by every test that reads a recording back).

use serde_json::Value as Json;

use super::base64_out::base64;
use super::{FrameEvent, msgpack_text};
use crate::message::msgpack_scan::Scanned;
use crate::message::{Direction, Kind};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// True when one of the eight bytes of `w` needs escaping in JSON: a
/// control character, `"` or `\`.
fn needs_escape(w: u64) -> bool {
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS != 0;
    below_space || zero_in(w ^ (ONES * u64::from(b'"'))) || zero_in(w ^ (ONES * u64::from(b'\\')))
}

/// Bytes tested together by [`write_str`].
const BLOCK: usize = 64;

/// True when one of the bytes of `block` needs escaping. Written without
/// an early exit over a fixed-size block, so the compiler turns it into
/// vector compares: the common clean block costs a few instructions.
fn block_needs_escape(block: &[u8; BLOCK]) -> bool {
    let mut bad = 0u8;
    for &b in block {
        bad |= u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\');
    }
    bad != 0
}

/// Writes `s` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_utf8(out, s.as_bytes());
}

/// Writes `bytes`, which must be UTF-8, as a JSON string.
pub(super) fn write_utf8(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(block) = bytes.get(i..i + BLOCK)
            && let Ok(block) = <&[u8; BLOCK]>::try_from(block)
            && !block_needs_escape(block)
        {
            i += BLOCK;
            continue;
        }
        if let Some(word) = bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            if !needs_escape(u64::from_le_bytes(w)) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0..=0x1f => None,
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Writes a JSON value.
pub fn write_value(out: &mut Vec<u8>, v: &Json) {
    match v {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Number(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Json::String(s) => write_str(out, s),
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Json::Object(map) => {
            out.push(b'{');
            for (i, (k, val)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, val);
            }
            out.push(b'}');
        }
    }
}

fn field(out: &mut Vec<u8>, name: &str) {
    out.push(b',');
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

pub(super) fn number(out: &mut Vec<u8>, mut n: u64) {
    // Most numbers in a recording are small (msgids, offsets, lengths).
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while n > 0 {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits[i..]);
}

/// Writes a kind or direction as serde names it: the common ones as
/// they are, any other through serde.
fn name<T: serde::Serialize>(out: &mut Vec<u8>, known: Option<&str>, value: &T) {
    match known {
        Some(name) => {
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.push(b'"');
        }
        None => {
            let _ = serde_json::to_writer(&mut *out, value);
        }
    }
}

fn kind_name(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Request => Some("request"),
        Kind::Response => Some("response"),
        Kind::Notification => Some("notification"),
        _ => None,
    }
}

fn dir_name(dir: Direction) -> &'static str {
    match dir {
        Direction::ToServer => "to_server",
        Direction::ToClient => "to_client",
    }
}

/// Where a `frame` line's `msg.value` comes from.
pub enum ValueSource<'a> {
    /// The event's own `msg.value`.
    Built,
    /// A scanned frame's bytes, its value written straight from them
    /// ([`super::msgpack_text`]).
    Scanned(&'a [u8], &'a Scanned),
}

/// Writes a `frame` line (without the newline) with the raw bytes given
/// separately, so their base64 goes straight into `out`. `event.raw` is
/// ignored; `raw` is written when it is `Some`.
pub fn write_frame(
    out: &mut Vec<u8>,
    event: &FrameEvent,
    raw: Option<&[u8]>,
    value: ValueSource<'_>,
) {
    out.extend_from_slice(b"{\"type\":\"frame\",\"seq\":");
    number(out, event.stamp.seq);
    field(out, "t_us");
    number(out, event.stamp.t_us);
    field(out, "at");
    write_str(out, &event.stamp.at);
    field(out, "conn");
    number(out, event.conn);
    field(out, "dir");
    name(out, Some(dir_name(event.dir)), &event.dir);
    field(out, "offset");
    number(out, event.offset);
    field(out, "len");
    number(out, event.len);
    if let Some(raw) = raw {
        field(out, "raw");
        out.push(b'"');
        base64(out, raw);
        out.push(b'"');
    }
    if event.reencodes {
        field(out, "reencodes");
        out.extend_from_slice(b"true");
    }
    if event.redacted {
        field(out, "redacted");
        out.extend_from_slice(b"true");
    }
    let m = &event.msg;
    field(out, "msg");
    out.extend_from_slice(b"{\"kind\":");
    name(out, kind_name(m.kind), &m.kind);
    if let Some(id) = m.id {
        field(out, "id");
        number(out, id);
    }
    for (name, text) in [
        ("method", &m.method),
        ("problem", &m.problem),
        ("error", &m.error),
    ] {
        if let Some(t) = text {
            field(out, name);
            write_str(out, t);
        }
    }
    field(out, "value");
    match value {
        ValueSource::Built => write_value(out, &m.value),
        ValueSource::Scanned(bytes, scanned) => {
            if !msgpack_text::write_json(out, bytes, scanned) {
                // Cannot happen to bytes the scan took; if it did, the
                // value is built the long way and the line stays whole.
                let built = scanned.build(bytes).unwrap_or_else(|| {
                    tracing::error!(
                        "a scanned frame's value could not be rebuilt; recorded as null"
                    );
                    Json::Null
                });
                write_value(out, &built);
            }
        }
    }
    out.push(b'}');
    if let Some(r) = &event.reply {
        field(out, "reply");
        out.push(b'{');
        if let Some(method) = &r.method {
            out.extend_from_slice(b"\"method\":");
            write_str(out, method);
            out.push(b',');
        }
        out.extend_from_slice(b"\"request_offset\":");
        number(out, r.request_offset);
        field(out, "latency_us");
        number(out, r.latency_us);
        out.push(b'}');
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageView;
    use crate::record::{Line, ReplyInfo, Stamp};
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde_json::json;

    #[test]
    fn numbers_match_std() {
        for n in [0, 1, 9, 10, 99, 100, 123_456_789, u64::MAX] {
            let mut out = Vec::new();
            number(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }

    #[test]
    fn strings_match_serde() {
        let mut all = String::new();
        for c in (0u32..0x80).filter_map(char::from_u32) {
            all.push(c);
        }
        // Escapes at every position of the 64-byte blocks.
        let mut long = String::new();
        for i in 0..140 {
            long.push_str(&"x".repeat(i));
            long.push(['"', '\\', '\n', '\u{1f}', 'é'][i % 5]);
        }
        for s in [
            "",
            "plain ascii text that is long enough",
            "quote \" backslash \\ newline \n tab \t",
            &all,
            "ünïcödé ✓ \u{1f600} and \u{7f}",
            "12345678\"",
            "1234567\u{1}",
            &long,
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn frame_lines_match_serde() {
        let value = json!([1, 2, null, {"Data": "x\"y", "n": -1.5, "big": 18446744073709551615u64, "a": [true, false]}]);
        for (raw, redacted, reply) in [
            (Some(vec![0x94u8, 0, 1, 0xff, 7]), false, None),
            (None, false, None),
            (
                None,
                true,
                Some(ReplyInfo {
                    method: Some("plugin.Step".into()),
                    request_offset: 9,
                    latency_us: 120,
                }),
            ),
        ] {
            let event = FrameEvent {
                stamp: Stamp {
                    seq: 3,
                    t_us: 42,
                    at: "2026-01-01T00:00:00.000001Z".into(),
                },
                conn: 7,
                dir: Direction::ToClient,
                offset: 100,
                len: 5,
                raw: raw.as_ref().map(|r| B64.encode(r)),
                reencodes: raw.is_none() && !redacted,
                redacted,
                msg: MessageView {
                    kind: Kind::Response,
                    id: Some(2),
                    method: None,
                    problem: None,
                    error: Some("no plugin instance #0".into()),
                    value: value.clone(),
                },
                reply,
            };
            // Every kind and both directions, named as serde names them.
            for (kind, dir) in [
                Kind::Request,
                Kind::Response,
                Kind::Notification,
                Kind::Malformed,
                Kind::PdkArgs,
                Kind::GrpcReset,
            ]
            .into_iter()
            .zip(
                [Direction::ToServer, Direction::ToClient]
                    .into_iter()
                    .cycle(),
            ) {
                let mut event = event.clone();
                (event.msg.kind, event.dir) = (kind, dir);
                let mut out = Vec::new();
                write_frame(&mut out, &event, raw.as_deref(), ValueSource::Built);
                let expected = serde_json::to_string(&Line::Frame(event)).unwrap();
                assert_eq!(String::from_utf8(out).unwrap(), expected);
            }
        }
    }

    #[test]
    fn scanned_values_write_the_lines_built_ones_do() {
        use crate::message::msgpack_scan::scan;
        let value = json!([1, 9, null, {"a": [1, -2, 1.5, "x\u{1}\"", null, true], "b": {}}]);
        let raw = crate::codec::msgpack::encode(&crate::value_json::from_json(&value).unwrap());
        let (msg, scanned) = scan(&raw, 64).unwrap();
        let mut event = FrameEvent {
            stamp: Stamp::default(),
            conn: 1,
            dir: Direction::ToClient,
            offset: 0,
            len: raw.len() as u64,
            raw: None,
            reencodes: true,
            redacted: false,
            msg,
            reply: None,
        };
        let mut out = Vec::new();
        write_frame(&mut out, &event, None, ValueSource::Scanned(&raw, &scanned));
        event.msg.value = value;
        let expected = serde_json::to_string(&Line::Frame(event)).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
