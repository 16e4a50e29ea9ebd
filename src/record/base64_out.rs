//! Standard base64 (with padding) written straight into a recording
//! line: the raw bytes of frames that do not re-encode. Six input bytes
//! are read as one word and become eight characters through a table of
//! every 12-bit value, so a 4 KiB frame costs a few thousand lookups and
//! no intermediate string.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Every 12-bit value as its two base64 characters (little-endian).
static PAIRS: [u16; 4096] = {
    let mut t = [0u16; 4096];
    let mut i = 0;
    while i < 4096 {
        t[i] = u16::from_le_bytes([ALPHABET[i >> 6], ALPHABET[i & 63]]);
        i += 1;
    }
    t
};

/// The eight characters of 48 bits (the low 48 of `n`), little-endian.
fn eight(n: u64) -> [u8; 8] {
    let pair = |shift: u32| u64::from(PAIRS[(n >> shift) as usize & 0xfff]);
    (pair(36) | pair(24) << 16 | pair(12) << 32 | pair(0) << 48).to_le_bytes()
}

/// Appends standard base64 (with padding): six input bytes are read as
/// one word and become eight characters through four table lookups,
/// written into the output sized once.
pub fn base64(out: &mut Vec<u8>, raw: &[u8]) {
    let start = out.len();
    out.resize(start + raw.len().div_ceil(3) * 4, 0);
    let dst = &mut out[start..];
    // Eight bytes read, six used: the last group or two go below.
    let words = if raw.len() >= 8 {
        (raw.len() - 2) / 6
    } else {
        0
    };
    let (body, tail) = dst.split_at_mut(words * 8);
    for (k, d) in body.chunks_exact_mut(8).enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&raw[k * 6..k * 6 + 8]);
        d.copy_from_slice(&eight(u64::from_be_bytes(w) >> 16));
    }
    let rest = &raw[words * 6..];
    let mut chunks = rest.chunks_exact(3);
    let mut d = tail.chunks_exact_mut(4);
    for (c, d) in (&mut chunks).zip(&mut d) {
        let n = (usize::from(c[0]) << 16) | (usize::from(c[1]) << 8) | usize::from(c[2]);
        d[..2].copy_from_slice(&PAIRS[n >> 12].to_le_bytes());
        d[2..].copy_from_slice(&PAIRS[n & 0xfff].to_le_bytes());
    }
    let last = d.next();
    match (chunks.remainder(), last) {
        (&[a], Some(d)) => {
            d[..2].copy_from_slice(&PAIRS[usize::from(a) << 4].to_le_bytes());
            d[2..].copy_from_slice(b"==");
        }
        (&[a, b], Some(d)) => {
            let n = (usize::from(a) << 10) | (usize::from(b) << 2);
            d[..2].copy_from_slice(&PAIRS[n >> 6].to_le_bytes());
            d[2] = ALPHABET[n & 63];
            d[3] = b'=';
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;

    #[test]
    fn base64_matches_the_crate() {
        let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for len in 0..40 {
            let mut out = Vec::new();
            base64(&mut out, &data[..len]);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                B64.encode(&data[..len]),
                "{len}"
            );
        }
        let mut out = Vec::new();
        base64(&mut out, &data);
        assert_eq!(String::from_utf8(out).unwrap(), B64.encode(&data));
    }
}
