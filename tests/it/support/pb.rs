//! A raw ProtoBuf:1 peer for tests: frames read and written with plain
//! std I/O (a little-endian u32 length, then the payload), independent of
//! plugtap's codec.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Connects with read timeouts, so a test never hangs.
pub fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Writes one frame.
pub fn write_frame(s: &mut UnixStream, payload: &[u8]) {
    let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(payload);
    s.write_all(&bytes).unwrap();
}

/// Writes several frames in one write, so a peer that closes after the
/// first cannot break the pipe between them.
pub fn write_frames(s: &mut UnixStream, payloads: &[&[u8]]) {
    let mut bytes = Vec::new();
    for p in payloads {
        bytes.extend_from_slice(&(p.len() as u32).to_le_bytes());
        bytes.extend_from_slice(p);
    }
    s.write_all(&bytes).unwrap();
}

/// Reads one frame; `None` at end of stream.
pub fn read_frame(s: &mut UnixStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("reading a frame: {e}"),
    }
    let mut payload = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut payload).unwrap();
    Some(payload)
}

/// Hex digits (spaces allowed) to bytes.
pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
