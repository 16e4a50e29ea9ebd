//! Writing msgpack the way Kong writes it.
//!
//! Kong packs its requests with lua-MessagePack 0.5.4 and its default
//! settings (`string_compat`, `unsigned` integers, `double` numbers). The
//! bytes differ from the smallest encoding [`super::msgpack::write`] picks
//! in ways a server's decoder may notice:
//!
//! ```text
//!   string of 32..=65535 bytes   da LL LL ...   str16, never str8 (d9)
//!   integer >= 0                 fixint / cc / cd / ce / cf   (unsigned families)
//!   integer < 0                  negative fixint / d0 / d1 / d2 / d3
//!   integral number (1.0)        an integer: Lua numbers are doubles, and the
//!                                packer writes the integral ones as integers
//!   other number                 float64 (cb), never float32
//! ```
//!
//! Which values Kong sends (a nil `Data` disappears, header maps are
//! explicit empty maps, raw bodies are bin) is Kong logic and lives in
//! [`crate::kong`]; this module only chooses encodings.

use bytes::{BufMut as _, Bytes, BytesMut};
use rmpv::Value;

/// Which encoder's choices to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Style {
    /// The smallest encoding of each value ([`super::msgpack::write`]).
    #[default]
    Compact,
    /// Kong's lua-MessagePack encoder (see the module docs).
    Kong,
}

/// Encodes one value in the given style into a fresh buffer.
pub fn encode_styled(value: &Value, style: Style) -> Bytes {
    match style {
        Style::Compact => super::msgpack::encode(value),
        Style::Kong => {
            let mut buf = BytesMut::with_capacity(64);
            // Writing into memory cannot fail.
            let _ = write_kong(&mut (&mut buf).writer(), value);
            buf.freeze()
        }
    }
}

/// Writes a value the way Kong's encoder would.
pub fn write_kong<W: std::io::Write>(wr: &mut W, value: &Value) -> std::io::Result<()> {
    use rmp::encode as e;
    let io = |err: e::ValueWriteError| match err {
        e::ValueWriteError::InvalidMarkerWrite(io) | e::ValueWriteError::InvalidDataWrite(io) => io,
    };
    match value {
        Value::F64(f) => write_number(wr, *f)?,
        Value::F32(f) => write_number(wr, f64::from(*f))?,
        Value::String(s) => {
            let bytes = s.as_bytes();
            let len = len32(bytes.len())?;
            match len {
                0..=31 => wr.write_all(&[0xa0 | len as u8])?,
                32..=0xffff => {
                    wr.write_all(&[0xda])?;
                    wr.write_all(&(len as u16).to_be_bytes())?;
                }
                _ => {
                    wr.write_all(&[0xdb])?;
                    wr.write_all(&len.to_be_bytes())?;
                }
            }
            wr.write_all(bytes)?;
        }
        Value::Array(items) => {
            e::write_array_len(wr, len32(items.len())?).map_err(io)?;
            for item in items {
                write_kong(wr, item)?;
            }
        }
        Value::Map(pairs) => {
            e::write_map_len(wr, len32(pairs.len())?).map_err(io)?;
            for (k, v) in pairs {
                write_kong(wr, k)?;
                write_kong(wr, v)?;
            }
        }
        // nil, booleans, integers (already unsigned families for >= 0),
        // bin and ext: the compact writer makes the same choices.
        other => super::msgpack::write(wr, other)?,
    }
    Ok(())
}

/// A Lua number: integral values within the integer range as integers,
/// everything else (fractions, NaN, infinities) as float64.
fn write_number<W: std::io::Write>(wr: &mut W, f: f64) -> std::io::Result<()> {
    use rmp::encode as e;
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    let integral = f.is_finite() && f.fract() == 0.0;
    if integral && (0.0..2.0 * TWO_63).contains(&f) {
        e::write_uint(wr, f as u64).map_err(std::io::Error::other)?;
    } else if integral && (-TWO_63..0.0).contains(&f) {
        e::write_sint(wr, f as i64).map_err(std::io::Error::other)?;
    } else {
        e::write_f64(wr, f).map_err(std::io::Error::other)?;
    }
    Ok(())
}

fn len32(n: usize) -> std::io::Result<u32> {
    u32::try_from(n)
        .map_err(|_| std::io::Error::other("msgpack cannot hold more than 2^32-1 items or bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kong(v: Value) -> Vec<u8> {
        encode_styled(&v, Style::Kong).to_vec()
    }

    #[test]
    fn strings_skip_str8() {
        assert_eq!(kong(Value::from("abc"))[0], 0xa3);
        let s32 = "x".repeat(32);
        assert_eq!(&kong(Value::from(s32.as_str()))[..3], &[0xda, 0x00, 0x20]);
        let s300 = "x".repeat(300);
        assert_eq!(&kong(Value::from(s300.as_str()))[..3], &[0xda, 0x01, 0x2c]);
        let big = "x".repeat(70_000);
        assert_eq!(kong(Value::from(big.as_str()))[0], 0xdb);
        // The compact style does use str8.
        assert_eq!(
            encode_styled(&Value::from(s32.as_str()), Style::Compact)[0],
            0xd9
        );
    }

    #[test]
    fn numbers_like_lua() {
        assert_eq!(kong(Value::from(200)), [0xcc, 200]);
        assert_eq!(kong(Value::from(-5)), [0xfb]);
        assert_eq!(kong(Value::from(-200)), [0xd1, 0xff, 0x38]);
        assert_eq!(kong(Value::F64(8000.0)), [0xcd, 0x1f, 0x40]);
        assert_eq!(kong(Value::F64(-1.0)), [0xff]);
        assert_eq!(kong(Value::F32(2.0)), [0x02]);
        let frac = kong(Value::F64(1.5));
        assert_eq!(frac[0], 0xcb);
        assert_eq!(kong(Value::F64(f64::NAN))[0], 0xcb);
        assert_eq!(kong(Value::F64(1e300))[0], 0xcb);
    }

    #[test]
    fn containers_recurse() {
        let v = Value::Map(vec![(
            Value::from("k"),
            Value::Array(vec![Value::F64(3.0), Value::from("x".repeat(40).as_str())]),
        )]);
        let bytes = kong(v);
        assert_eq!(&bytes[..6], &[0x81, 0xa1, b'k', 0x92, 0x03, 0xda]);
    }
}
