//! JSON text straight from the bytes of a scanned `MsgPack:1` frame.
//!
//! A frame the proxy's conversation only scanned
//! ([`crate::message::msgpack_scan`]) has no value built; its `msg.value`
//! is written here from the msgpack itself, with no value tree to build and
//! free again. The text is exactly what [`super::json_out::write_value`]
//! writes for the value the scan would build (tested below, also on random
//! messages), so a recording reads back the same either way.

use serde_json::Number;

use super::json_out::{number, write_utf8};
use crate::codec::Limits;
use crate::message::msgpack_bytes::Cursor;
use crate::message::msgpack_scan::Scanned;

/// Appends the JSON of the msgpack value at the start of `raw`, which
/// must lie inside bytes `_scanned` was made from (the scan checked their
/// structure and that every string is UTF-8). False, with `out` cut back,
/// on bytes that are not such a value after all.
pub fn write_json(out: &mut Vec<u8>, raw: &[u8], _scanned: &Scanned) -> bool {
    let start = out.len();
    let mut text = Text {
        cur: Cursor::new(raw),
        out,
    };
    if text.value(Limits::MAX_DEPTH_CEILING).is_some() {
        return true;
    }
    out.truncate(start);
    false
}

struct Text<'a, 'o> {
    cur: Cursor<'a>,
    out: &'o mut Vec<u8>,
}

impl<'a> Text<'a, '_> {
    fn int(&mut self, i: i64) {
        if i < 0 {
            self.out.push(b'-');
        }
        number(self.out, i.unsigned_abs());
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        let marker = self.cur.marker()?;
        match marker {
            0x00..=0x7f => number(self.out, u64::from(marker)),
            0xe0..=0xff => self.int(i64::from(marker as i8)),
            0xc0 => self.out.extend_from_slice(b"null"),
            0xc2 => self.out.extend_from_slice(b"false"),
            0xc3 => self.out.extend_from_slice(b"true"),
            0xcc..=0xcf => {
                let u = self.cur.uint(1 << (marker - 0xcc))?;
                number(self.out, u);
            }
            0xd0..=0xd3 => {
                let i = self.cur.int(1 << (marker - 0xd0))?;
                self.int(i);
            }
            0xcb => {
                let f = Number::from_f64(f64::from_bits(self.cur.uint(8)?))?;
                serde_json::to_writer(&mut *self.out, &f).ok()?;
            }
            0xa0..=0xbf => self.str(usize::from(marker & 0x1f))?,
            0xd9..=0xdb => {
                let len = self.cur.uint(1 << (marker - 0xd9))?;
                self.str(usize::try_from(len).ok()?)?;
            }
            0x90..=0x9f => self.array(usize::from(marker & 0x0f), depth)?,
            0xdc | 0xdd => {
                let len = self.cur.uint(if marker == 0xdc { 2 } else { 4 })?;
                self.array(usize::try_from(len).ok()?, depth)?;
            }
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0xde | 0xdf => {
                let len = self.cur.uint(if marker == 0xde { 2 } else { 4 })?;
                self.map(usize::try_from(len).ok()?, depth)?;
            }
            _ => return None,
        }
        Some(())
    }

    fn str(&mut self, len: usize) -> Option<()> {
        let bytes = self.cur.take(len)?;
        write_utf8(self.out, bytes);
        Some(())
    }

    fn array(&mut self, len: usize, depth: usize) -> Option<()> {
        let depth = depth.checked_sub(1)?;
        self.out.push(b'[');
        for i in 0..len {
            if i > 0 {
                self.out.push(b',');
            }
            self.value(depth)?;
        }
        self.out.push(b']');
        Some(())
    }

    fn map(&mut self, len: usize, depth: usize) -> Option<()> {
        let depth = depth.checked_sub(1)?;
        self.out.push(b'{');
        for i in 0..len {
            if i > 0 {
                self.out.push(b',');
            }
            let marker = self.cur.peek()?;
            if !matches!(marker, 0xa0..=0xbf | 0xd9..=0xdb) {
                return None;
            }
            self.value(depth)?;
            self.out.push(b':');
            self.value(depth)?;
        }
        self.out.push(b'}');
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::msgpack_scan::scan;
    use crate::message::msgpack_view::tests::{random_messages, samples};
    use crate::record::json_out::write_value;

    /// For every message the scan takes: the text of the whole message
    /// and of its payload equals the text of the value it builds.
    fn same_text(raw: &[u8]) -> bool {
        let Some((_, scanned)) = scan(raw, 64) else {
            return false;
        };
        let value = scanned.build(raw).unwrap();
        let (mut ours, mut theirs) = (b"x".to_vec(), b"x".to_vec());
        assert!(write_json(&mut ours, raw, &scanned));
        write_value(&mut theirs, &value);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(theirs).unwrap()
        );
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        assert!(write_json(&mut ours, &raw[scanned.payload()..], &scanned));
        write_value(&mut theirs, value.as_array().unwrap().last().unwrap());
        assert_eq!(ours, theirs);
        true
    }

    #[test]
    fn samples_write_the_same_text() {
        assert!(samples().0.iter().filter(|raw| same_text(raw)).count() >= 6);
    }

    #[test]
    fn random_messages_write_the_same_text() {
        let n = random_messages(5000)
            .iter()
            .filter(|raw| same_text(raw))
            .count();
        assert!(n > 500, "only {n}");
    }

    #[test]
    fn bytes_that_are_not_a_value_leave_out_untouched() {
        let raw = [0x94, 0x00, 0x01, 0xa1, b'm', 0x91, 0xc0];
        let (_, scanned) = scan(&raw, 64).unwrap();
        for bad in [
            &[0x92, 0xc0][..],
            &[0xc1],
            &[0x81, 0x01, 0x02],
            &[0xa3, b'x'],
        ] {
            let mut out = b"keep".to_vec();
            assert!(!write_json(&mut out, bad, &scanned), "{bad:02x?}");
            assert_eq!(out, b"keep");
        }
    }
}
