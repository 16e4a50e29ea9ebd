//! Protobuf without a schema: decoding by wire type, and encoding fields
//! written by hand.
//!
//! Each field is a varint key `(number << 3) | wire type`, then a value:
//! 0 VARINT, 1 I64 (8 bytes little-endian), 2 LEN (varint length, then
//! bytes), 3/4 group start/end (deprecated), 5 I32 (4 bytes). Without a
//! schema the value's meaning is ambiguous, so [`decode`] shows every
//! reading that fits, as JSON objects keyed by `n` (the field number):
//!
//! | wire type | shown as |
//! |-----------|----------|
//! | VARINT | `{"n":1,"varint":150,"sint":75}` (`int` too when negative as int64) |
//! | I64 | `{"n":2,"i64":…,"double":…}` |
//! | I32 | `{"n":3,"i32":…,"float":…}` |
//! | LEN | `{"n":4,"hex":"…"}` plus `"string"` when it is printable UTF-8 and `"message"` when it parses as a message |
//! | group | `{"n":5,"group":[…]}` |
//!
//! [`encode`] takes the same shapes back (for LEN the first of `hex`,
//! `base64`, `string`, `message` present), so a logged message can be
//! pasted into a spec as raw fields.

use base64::Engine as _;
use serde_json::{Map, Value as Json, json};

use crate::codec::hex;

/// Nested messages are guessed at most this deep.
pub const MAX_GUESS_DEPTH: usize = 32;

/// Decodes a message without a schema. The error names the byte offset.
pub fn decode(bytes: &[u8]) -> Result<Json, String> {
    let mut pos = 0;
    let fields = fields(bytes, &mut pos, None, 0)?;
    Ok(Json::Array(fields))
}

fn fields(
    bytes: &[u8],
    pos: &mut usize,
    group: Option<u64>,
    depth: usize,
) -> Result<Vec<Json>, String> {
    let mut out = Vec::new();
    while *pos < bytes.len() {
        let at = *pos;
        let key = varint(bytes, pos)?;
        let number = key >> 3;
        let wire = key & 7;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(format!("invalid field number {number} at byte {at}"));
        }
        let mut f = Map::new();
        f.insert("n".into(), json!(number));
        match wire {
            0 => {
                let v = varint(bytes, pos)?;
                f.insert("varint".into(), json!(v));
                if (v as i64) < 0 {
                    f.insert("int".into(), json!(v as i64));
                }
                f.insert("sint".into(), json!(zigzag_decode(v)));
            }
            1 => {
                let b = take(bytes, pos, 8)?;
                let v = u64::from_le_bytes(b.try_into().expect("8 bytes"));
                f.insert("i64".into(), json!(v));
                f.insert("double".into(), float_json(f64::from_bits(v)));
            }
            2 => {
                let len = varint(bytes, pos)?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|l| *l <= bytes.len() - *pos)
                    .ok_or_else(|| {
                        format!(
                            "field {number} at byte {at} declares {len} bytes, only {} remain",
                            bytes.len() - *pos
                        )
                    })?;
                let b = take(bytes, pos, len)?;
                f.insert("hex".into(), json!(hex(b)));
                if let Some(s) = printable(b) {
                    f.insert("string".into(), json!(s));
                }
                if !b.is_empty() && depth < MAX_GUESS_DEPTH {
                    let mut p = 0;
                    if let Ok(nested) = fields(b, &mut p, None, depth + 1) {
                        f.insert("message".into(), Json::Array(nested));
                    }
                }
            }
            3 => {
                if depth >= MAX_GUESS_DEPTH {
                    return Err(format!(
                        "groups nested deeper than {MAX_GUESS_DEPTH} at byte {at}"
                    ));
                }
                let inner = fields(bytes, pos, Some(number), depth + 1)?;
                f.insert("group".into(), Json::Array(inner));
            }
            4 => {
                return if group == Some(number) {
                    Ok(out)
                } else {
                    Err(format!("unexpected end of group {number} at byte {at}"))
                };
            }
            5 => {
                let b = take(bytes, pos, 4)?;
                let v = u32::from_le_bytes(b.try_into().expect("4 bytes"));
                f.insert("i32".into(), json!(v));
                f.insert("float".into(), float_json(f64::from(f32::from_bits(v))));
            }
            w => return Err(format!("invalid wire type {w} at byte {at}")),
        }
        out.push(Json::Object(f));
    }
    match group {
        Some(n) => Err(format!("group {n} is not closed")),
        None => Ok(out),
    }
}

fn varint(bytes: &[u8], pos: &mut usize) -> Result<u64, String> {
    let start = *pos;
    let mut v: u64 = 0;
    for i in 0..10 {
        let Some(&b) = bytes.get(*pos) else {
            return Err(format!("truncated varint at byte {start}"));
        };
        *pos += 1;
        if i == 9 && b > 1 {
            return Err(format!("varint longer than 64 bits at byte {start}"));
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(format!("varint longer than 10 bytes at byte {start}"))
}

fn take<'a>(bytes: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], String> {
    if bytes.len() - *pos < n {
        return Err(format!(
            "truncated value at byte {}: {n} bytes needed, {} remain",
            *pos,
            bytes.len() - *pos
        ));
    }
    let b = &bytes[*pos..*pos + n];
    *pos += n;
    Ok(b)
}

fn printable(b: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(b).ok()?;
    s.chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .then_some(s)
}

fn float_json(f: f64) -> Json {
    if f.is_finite() {
        json!(f)
    } else {
        json!(f.to_string())
    }
}

fn zigzag_decode(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

// ---- encoding --------------------------------------------------------------

/// Encodes raw fields written as [`decode`] shows them. The error names
/// the field (`[2].message[0]`) and what is wrong.
pub fn encode(fields: &Json) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    encode_into(fields, "", &mut out)?;
    Ok(out)
}

fn encode_into(fields: &Json, at: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let Json::Array(list) = fields else {
        return Err(format!(
            "{}raw fields must be a list of {{\"n\": …, …}} objects",
            loc(at)
        ));
    };
    for (i, f) in list.iter().enumerate() {
        let here = format!("{at}[{i}]");
        let n = f
            .get("n")
            .and_then(Json::as_u64)
            .filter(|n| (1..(1 << 29)).contains(n))
            .ok_or_else(|| format!("{here}: `n` must be a field number from 1 to 536870911"))?;
        let get = |k: &str| f.get(k);
        if let Some(v) = get("varint") {
            put_key(out, n, 0);
            let v = v
                .as_u64()
                .or_else(|| v.as_i64().map(|i| i as u64))
                .ok_or_else(|| format!("{here}.varint: expected an integer"))?;
            put_varint(out, v);
        } else if let Some(v) = get("sint") {
            let v = v
                .as_i64()
                .ok_or_else(|| format!("{here}.sint: expected an integer"))?;
            put_key(out, n, 0);
            put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
        } else if let Some(v) = get("bool") {
            let v = v
                .as_bool()
                .ok_or_else(|| format!("{here}.bool: expected true or false"))?;
            put_key(out, n, 0);
            put_varint(out, u64::from(v));
        } else if let Some(v) = get("i64").or_else(|| get("fixed64")) {
            let v = v
                .as_u64()
                .or_else(|| v.as_i64().map(|i| i as u64))
                .ok_or_else(|| format!("{here}.i64: expected an integer"))?;
            put_key(out, n, 1);
            out.extend_from_slice(&v.to_le_bytes());
        } else if let Some(v) = get("double") {
            let v = v
                .as_f64()
                .ok_or_else(|| format!("{here}.double: expected a number"))?;
            put_key(out, n, 1);
            out.extend_from_slice(&v.to_le_bytes());
        } else if let Some(v) = get("i32").or_else(|| get("fixed32")) {
            let v = v
                .as_u64()
                .and_then(|u| u32::try_from(u).ok())
                .or_else(|| {
                    v.as_i64()
                        .and_then(|i| i32::try_from(i).ok())
                        .map(|i| i as u32)
                })
                .ok_or_else(|| format!("{here}.i32: expected a 32-bit integer"))?;
            put_key(out, n, 5);
            out.extend_from_slice(&v.to_le_bytes());
        } else if let Some(v) = get("float") {
            let v = v
                .as_f64()
                .ok_or_else(|| format!("{here}.float: expected a number"))?;
            put_key(out, n, 5);
            out.extend_from_slice(&(v as f32).to_le_bytes());
        } else if let Some(v) = get("group") {
            put_key(out, n, 3);
            encode_into(v, &format!("{here}.group"), out)?;
            put_key(out, n, 4);
        } else {
            let bytes = if let Some(v) = get("hex") {
                let s = v
                    .as_str()
                    .ok_or_else(|| format!("{here}.hex: expected a string"))?;
                unhex(s).ok_or_else(|| format!("{here}.hex: not hexadecimal"))?
            } else if let Some(v) = get("base64") {
                let s = v
                    .as_str()
                    .ok_or_else(|| format!("{here}.base64: expected a string"))?;
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| format!("{here}.base64: {e}"))?
            } else if let Some(v) = get("string") {
                v.as_str()
                    .ok_or_else(|| format!("{here}.string: expected a string"))?
                    .as_bytes()
                    .to_vec()
            } else if let Some(v) = get("message") {
                let mut inner = Vec::new();
                encode_into(v, &format!("{here}.message"), &mut inner)?;
                inner
            } else {
                return Err(format!(
                    "{here}: needs a value: varint, sint, bool, i64, double, i32, float, hex, base64, string, message or group"
                ));
            };
            put_key(out, n, 2);
            put_varint(out, bytes.len() as u64);
            out.extend_from_slice(&bytes);
        }
    }
    Ok(())
}

fn loc(at: &str) -> String {
    if at.is_empty() {
        String::new()
    } else {
        format!("{at}: ")
    }
}

fn put_key(out: &mut Vec<u8>, n: u64, wire: u64) {
    put_varint(out, (n << 3) | wire);
}

/// Appends a varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Parses hex text (whitespace allowed between byte pairs).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_wire_type() {
        // 1: varint 150; 2: "hi"; 3: fixed32 1.0f; 4: fixed64; 5: nested {1: 1}
        let mut b = vec![0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x1d];
        b.extend_from_slice(&1.0f32.to_le_bytes());
        b.push(0x21);
        b.extend_from_slice(&7u64.to_le_bytes());
        b.extend_from_slice(&[0x2a, 0x02, 0x08, 0x01]);
        let j = decode(&b).unwrap();
        assert_eq!(j[0], json!({"n":1,"varint":150,"sint":75}));
        // "hi" is also a valid message (field 13 = 105): both readings show.
        assert_eq!(j[1]["string"], "hi");
        assert_eq!(j[1]["message"][0]["n"], 13);
        assert_eq!(j[2]["float"], 1.0);
        assert_eq!(j[3]["i64"], 7);
        assert_eq!(j[4]["message"][0]["varint"], 1);
        assert_eq!(encode(&j).unwrap(), b);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(decode(&[0x08]).unwrap_err().contains("truncated varint"));
        assert!(
            decode(&[0x12, 0x05, 1])
                .unwrap_err()
                .contains("declares 5 bytes")
        );
        assert!(
            decode(&[0x00])
                .unwrap_err()
                .contains("invalid field number 0")
        );
        assert!(decode(&[0x0f]).unwrap_err().contains("invalid wire type 7"));
        assert!(decode(&[0x0b]).unwrap_err().contains("not closed"));
        assert!(
            decode(&[0x0c])
                .unwrap_err()
                .contains("unexpected end of group")
        );
        assert!(
            decode(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
            ])
            .is_err()
        );
        let deep: Vec<u8> = std::iter::repeat_n(0x0b, 100).collect();
        assert!(decode(&deep).is_err());
    }

    #[test]
    fn negative_varints_show_as_int() {
        let mut b = vec![0x08];
        put_varint(&mut b, -1i64 as u64);
        let j = decode(&b).unwrap();
        assert_eq!(j[0]["int"], -1);
        assert_eq!(encode(&json!([{"n":1,"varint":-1}])).unwrap(), b);
        assert_eq!(
            encode(&json!([{"n":1,"sint":-1}])).unwrap(),
            vec![0x08, 0x01]
        );
    }
}
