//! A cursor over the bytes of one msgpack message, for the readers that
//! walk msgpack by hand instead of through rmpv: the proxy's fast view
//! ([`super::msgpack_view`]), its scan ([`super::msgpack_scan`]) and the
//! recording's JSON text (`record::msgpack_text`). Every read is checked:
//! bytes that run out give `None`, never a panic.

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(raw: &'a [u8]) -> Cursor<'a> {
        Cursor { raw, pos: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub(crate) fn left(&self) -> usize {
        self.raw.len() - self.pos
    }

    /// The next byte, without reading it.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.raw.get(self.pos).copied()
    }

    /// Reads the next byte (an item's marker).
    pub(crate) fn marker(&mut self) -> Option<u8> {
        let marker = self.peek()?;
        self.pos += 1;
        Some(marker)
    }

    /// Reads `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.raw.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(bytes)
    }

    /// Reads an `n`-byte big-endian unsigned integer.
    pub(crate) fn uint(&mut self, n: usize) -> Option<u64> {
        Some(
            self.take(n)?
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        )
    }

    /// Reads an `n`-byte big-endian signed integer.
    pub(crate) fn int(&mut self, n: usize) -> Option<i64> {
        let u = self.uint(n)?;
        let shift = 64 - 8 * n as u32;
        Some(((u << shift) as i64) >> shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked() {
        let mut c = Cursor::new(&[0xd1, 0xff, 0x7f, 0x01]);
        assert_eq!(c.marker(), Some(0xd1));
        assert_eq!(c.int(2), Some(-129));
        assert_eq!((c.pos(), c.left(), c.peek()), (3, 1, Some(1)));
        assert_eq!(c.uint(2), None);
        assert_eq!(c.take(usize::MAX), None);
        assert_eq!(c.uint(1), Some(1));
        assert_eq!((c.marker(), c.left()), (None, 0));
    }
}
