//! The proxy's fastest path for a `MsgPack:1` frame: checked in one pass
//! over its bytes, without building its value.
//!
//! A recording needs a frame's value only as JSON text, and the recording
//! thread can write that text straight from the msgpack bytes
//! (`record::msgpack_text`). So the proxy's conversation asks [`scan`]
//! first: it accepts exactly the messages [`fast_view`] accepts (tested
//! below, also on random values), gives the same view with the value left
//! out (`null`), and says whether encoding the value again would give the
//! bytes back ([`Scanned::canonical`], what `record::reencode` would
//! otherwise find out by encoding it). Whoever needs the value itself
//! (redaction) builds it with [`Scanned::build`].
//!
//! A response whose error is neither nil nor a string is left to
//! [`fast_view`]: its error text is the error's JSON.

use serde_json::Value as Js;

use super::msgpack_bytes::Cursor;
use super::msgpack_view::fast_view;
use super::{Kind, MessageView};

/// What [`scan`] found out about a frame whose value it did not build.
/// Only [`scan`] makes one, so holding one means the bytes it was made
/// from are a message of the fast path (every string checked UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    canonical: bool,
    /// Small: every frame in flight carries one.
    payload: u32,
    max_depth: u32,
}

impl Scanned {
    /// Every item is in its smallest encoding, so encoding the value again
    /// gives the frame's bytes back exactly.
    pub fn canonical(&self) -> bool {
        self.canonical
    }

    /// Where the message's last item (params or result) starts.
    pub fn payload(&self) -> usize {
        self.payload as usize
    }

    /// The value of `raw`, the bytes this was made from: what
    /// [`fast_view`] would have put in the view.
    pub fn build(&self, raw: &[u8]) -> Option<Js> {
        fast_view(raw, self.max_depth as usize).map(|view| view.value)
    }
}

/// The view of the complete message `raw` (nested at most `max_depth`
/// containers deep) with `value` left `null`, and what the scan found;
/// `None` where [`fast_view`] is needed (or the general path).
pub fn scan(raw: &[u8], max_depth: usize) -> Option<(MessageView, Scanned)> {
    let mut s = Scanner {
        cur: Cursor::new(raw),
        canonical: true,
    };
    let len = match s.cur.marker()? {
        m @ 0x90..=0x9f => usize::from(m & 0x0f),
        // Three or four items in a wider header than needed.
        m @ (0xdc | 0xdd) => {
            s.smallest(false);
            usize::try_from(s.cur.uint(if m == 0xdc { 2 } else { 4 })?).ok()?
        }
        _ => return None,
    };
    if !(3..=4).contains(&len) {
        return None;
    }
    let depth = max_depth.checked_sub(1)?;
    let mut items = [Item::Nil; 4];
    let mut payload = 0;
    for item in items.iter_mut().take(len) {
        payload = s.cur.pos();
        *item = s.value(depth)?;
    }
    if s.cur.left() != 0 {
        return None;
    }
    let (kind, id, method, error) = match (items[0], len) {
        (Item::Uint(0), 4) => (
            Kind::Request,
            Some(msgid(items[1])?),
            Some(text(items[2])?),
            None,
        ),
        (Item::Uint(1), 4) => (
            Kind::Response,
            Some(msgid(items[1])?),
            None,
            match items[2] {
                Item::Nil => None,
                Item::Str(e) => Some(e.to_owned()),
                _ => return None,
            },
        ),
        (Item::Uint(2), 3) => (Kind::Notification, None, Some(text(items[1])?), None),
        _ => return None,
    };
    let view = MessageView {
        kind,
        id,
        method,
        problem: None,
        error,
        value: Js::Null,
    };
    let scanned = Scanned {
        canonical: s.canonical,
        payload: u32::try_from(payload).ok()?,
        max_depth: u32::try_from(max_depth).ok()?,
    };
    Some((view, scanned))
}

fn msgid(item: Item<'_>) -> Option<u64> {
    match item {
        Item::Uint(id) if u32::try_from(id).is_ok() => Some(id),
        _ => None,
    }
}

fn text(item: Item<'_>) -> Option<String> {
    match item {
        Item::Str(s) => Some(s.to_owned()),
        _ => None,
    }
}

/// What the envelope needs to know of an item.
#[derive(Debug, Clone, Copy)]
enum Item<'a> {
    Nil,
    /// An integer that is not negative (whatever its marker).
    Uint(u64),
    Str(&'a str),
    Other,
}

struct Scanner<'a> {
    cur: Cursor<'a>,
    canonical: bool,
}

impl<'a> Scanner<'a> {
    /// Notes whether an item's encoding is its smallest one.
    fn smallest(&mut self, yes: bool) {
        self.canonical &= yes;
    }

    fn value(&mut self, depth: usize) -> Option<Item<'a>> {
        let marker = self.cur.marker()?;
        Some(match marker {
            0x00..=0x7f => Item::Uint(u64::from(marker)),
            0xe0..=0xff | 0xc2 | 0xc3 => Item::Other,
            0xc0 => Item::Nil,
            0xcc..=0xcf => {
                let k = usize::from(marker - 0xcc);
                let u = self.cur.uint(1 << k)?;
                self.smallest(u >= [0x80, 0x100, 0x1_0000, 0x1_0000_0000][k]);
                Item::Uint(u)
            }
            0xd0..=0xd3 => {
                let k = usize::from(marker - 0xd0);
                let i = self.cur.int(1 << k)?;
                match u64::try_from(i) {
                    // Written again as an unsigned integer.
                    Ok(u) => {
                        self.smallest(false);
                        Item::Uint(u)
                    }
                    Err(_) => {
                        self.smallest(i < [-32, -128, -32_768, -(1 << 31)][k]);
                        Item::Other
                    }
                }
            }
            0xcb => {
                if !f64::from_bits(self.cur.uint(8)?).is_finite() {
                    return None;
                }
                Item::Other
            }
            0xa0..=0xbf => self.str(usize::from(marker & 0x1f))?,
            0xd9..=0xdb => {
                let k = usize::from(marker - 0xd9);
                let len = self.cur.uint(1 << k)?;
                self.smallest(len >= [32, 0x100, 0x1_0000][k]);
                self.str(usize::try_from(len).ok()?)?
            }
            0x90..=0x9f => self.array(usize::from(marker & 0x0f), depth)?,
            0xdc | 0xdd => {
                let wide = marker == 0xdd;
                let len = self.cur.uint(if wide { 4 } else { 2 })?;
                self.smallest(len >= if wide { 0x1_0000 } else { 16 });
                self.array(usize::try_from(len).ok()?, depth)?
            }
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0xde | 0xdf => {
                let wide = marker == 0xdf;
                let len = self.cur.uint(if wide { 4 } else { 2 })?;
                self.smallest(len >= if wide { 0x1_0000 } else { 16 });
                self.map(usize::try_from(len).ok()?, depth)?
            }
            // bin, ext, float32 and the reserved marker.
            _ => return None,
        })
    }

    fn str(&mut self, len: usize) -> Option<Item<'a>> {
        Some(Item::Str(std::str::from_utf8(self.cur.take(len)?).ok()?))
    }

    fn array(&mut self, len: usize, depth: usize) -> Option<Item<'a>> {
        let depth = depth.checked_sub(1)?;
        for _ in 0..len {
            self.value(depth)?;
        }
        Some(Item::Other)
    }

    fn map(&mut self, len: usize, depth: usize) -> Option<Item<'a>> {
        /// Up to this many keys, each new key is compared with the ones
        /// before it (kept on the stack); past it, they are sorted once.
        const PAIRWISE: usize = 8;
        let depth = depth.checked_sub(1)?;
        let mut few = [""; PAIRWISE];
        let mut many = Vec::new();
        for i in 0..len {
            let Item::Str(key) = self.value(depth)? else {
                return None;
            };
            if len <= PAIRWISE {
                if few[..i].contains(&key) {
                    return None;
                }
                few[i] = key;
            } else {
                // Each pair takes at least two bytes.
                many.reserve(len.min(self.cur.left()));
                many.push(key);
            }
            self.value(depth)?;
        }
        if len > PAIRWISE {
            many.sort_unstable();
            if many.windows(2).any(|w| w[0] == w[1]) {
                return None;
            }
        }
        // One `$`-key is a tagged value of the mapping: the general path.
        if len == 1 && few[0].starts_with('$') {
            return None;
        }
        Some(Item::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::msgpack_view::tests::{random_messages, samples};
    use crate::record::msgpack_reencodes;

    /// The scan agrees with the fast view: same acceptance, the same view
    /// but for the value, the value it builds, and whether it re-encodes.
    fn agree(raw: &[u8], max_depth: usize) -> bool {
        let fast = fast_view(raw, max_depth);
        let Some((view, scanned)) = scan(raw, max_depth) else {
            // Only a response with a structured error may leave the scan.
            if let Some(fast) = &fast {
                let error = fast.value.as_array().map(|items| &items[2]);
                assert!(
                    matches!(error, Some(e) if !e.is_null() && !e.is_string()),
                    "{raw:02x?}"
                );
            }
            return false;
        };
        let fast =
            fast.unwrap_or_else(|| panic!("scan accepted what fast_view does not: {raw:02x?}"));
        assert_eq!(
            MessageView {
                value: Js::Null,
                ..fast.clone()
            },
            view
        );
        assert_eq!(scanned.build(raw).as_ref(), Some(&fast.value));
        assert_eq!(
            scanned.canonical(),
            msgpack_reencodes(&fast.value, raw),
            "{raw:02x?}"
        );
        let items = fast.value.as_array().unwrap();
        let payload = rmpv::decode::read_value(&mut &raw[scanned.payload()..]).unwrap();
        assert_eq!(crate::value_json::to_json(&payload), *items.last().unwrap());
        true
    }

    #[test]
    fn samples_agree() {
        let (fast, general) = samples();
        for raw in &fast {
            assert!(
                agree(raw, 64) || raw[0] == 0x94 && raw[1] == 1,
                "{raw:02x?}"
            );
        }
        for raw in &general {
            assert!(!agree(raw, 64), "{raw:02x?}");
        }
    }

    #[test]
    fn random_messages_agree() {
        let mut scanned = 0;
        for raw in random_messages(5000) {
            if agree(&raw, 3) | agree(&raw, 64) {
                scanned += 1;
            }
        }
        assert!(scanned > 500, "only {scanned} scanned");
    }

    #[test]
    fn wider_encodings_are_not_canonical() {
        // [0, 1, "m", X] with X in a wider encoding than needed.
        for x in [
            &[0xcc, 0x05][..],
            &[0xcd, 0x00, 0xff],
            &[0xce, 0x00, 0x00, 0xff, 0xff],
            &[0xcf, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            &[0xd0, 0x05],
            &[0xd0, 0xe0],
            &[0xd1, 0xff, 0x80],
            &[0xd2, 0xff, 0xff, 0x80, 0x00],
            &[0xd3, 0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 0],
            &[0xd9, 0x01, b'x'],
            &[0xda, 0x00, 0x01, b'x'],
            &[0xdc, 0x00, 0x01, 0xc0],
            &[0xde, 0x00, 0x01, 0xa1, b'k', 0xc0],
        ] {
            let mut raw = vec![0x94, 0x00, 0x01, 0xa1, b'm'];
            raw.extend_from_slice(x);
            let (_, scanned) = scan(&raw, 64).unwrap();
            assert!(!scanned.canonical(), "{x:02x?}");
            assert!(agree(&raw, 64));
        }
        // The envelope itself in array16 and array32.
        for raw in [
            &[0xdc, 0x00, 0x04, 0x00, 0x01, 0xa1, b'm', 0xc0][..],
            &[0xdd, 0x00, 0x00, 0x00, 0x03, 0x02, 0xa1, b'n', 0xc0],
        ] {
            let (_, scanned) = scan(raw, 64).unwrap();
            assert!(!scanned.canonical(), "{raw:02x?}");
            assert!(agree(raw, 64));
        }
        for x in [
            &[0xcc, 0x80][..],
            &[0xd0, 0xdf],
            &[0xd1, 0xff, 0x7f],
            &[0xd9, 0x20],
        ] {
            let mut raw = vec![0x94, 0x00, 0x01, 0xa1, b'm'];
            raw.extend_from_slice(x);
            if x[0] == 0xd9 {
                raw.extend_from_slice(&[b'y'; 32]);
            }
            let (_, scanned) = scan(&raw, 64).unwrap();
            assert!(scanned.canonical(), "{x:02x?}");
            assert!(agree(&raw, 64));
        }
    }

    #[test]
    fn duplicate_keys_leave_the_scan() {
        for n in [2usize, 8, 9, 16, 17, 40] {
            let mut raw = vec![0x94, 0x00, 0x01, 0xa1, b'm', 0xde, 0, n as u8];
            for i in 0..n {
                let k = if i == n - 1 { 0 } else { i };
                raw.extend_from_slice(&[0xa2, b'k', b'a' + k as u8, 0xc0]);
            }
            assert!(scan(&raw, 64).is_none(), "{n}");
            assert!(fast_view(&raw, 64).is_none(), "{n}");
        }
    }
}
