//! Which frames a MsgPack:1 recording writes without their raw bytes:
//! those whose decoded form encodes back to exactly their bytes
//! (`reencodes`); a frame written any other way keeps `raw`, and
//! `--keep-raw` keeps it for every frame. Either way the recording gives
//! back exactly the bytes forwarded.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use plugtap::record::Line;
use rmpv::Value;

use crate::proxy::{encode, fake_upstream, lines, proxy};
use crate::support::{self, mp::request};

/// The reply `[1, 1, nil, "ok"]` with its msgid as a uint8 (`cc 01`)
/// where the smallest encoding is the fixint `01`: valid msgpack that
/// plugtap's encoder would not write.
const WIDE_REPLY: &[u8] = &[0x94, 0x01, 0xcc, 0x01, 0xc0, 0xa2, b'o', b'k'];

/// Sends one request through a proxy to a peer answering `WIDE_REPLY`;
/// returns the recorded frames and the bytes each way.
fn one_call(extra: &[&str]) -> (Vec<plugtap::record::FrameEvent>, Vec<u8>) {
    let dir = support::tmpdir();
    let d = dir.path();
    let upstream = fake_upstream(&d.join("back.sock"), |s| {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).unwrap();
        s.write_all(WIDE_REPLY).unwrap();
    });
    let mut proxy = proxy(d, "front.sock", "back.sock", "rec.jsonl", extra);
    let big = "x".repeat(4096);
    let sent = encode(&request(1, "plugin.Step", Value::Array(vec![big.into()])));
    let mut s = std::os::unix::net::UnixStream::connect(d.join("front.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&sent).unwrap();
    let mut got = vec![0u8; WIDE_REPLY.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(
        got, WIDE_REPLY,
        "the client got the server's bytes unchanged"
    );
    drop(s);
    upstream.join().unwrap();
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0, "{}", proxy.stderr());
    let frames = lines(&d.join("rec.jsonl"))
        .into_iter()
        .filter_map(|l| match l {
            Line::Frame(f) => Some(f),
            _ => None,
        })
        .collect();
    (frames, sent)
}

#[test]
fn smallest_encodings_go_without_raw_and_others_keep_it() {
    let (frames, sent) = one_call(&[]);
    assert_eq!(frames.len(), 2, "{frames:?}");
    let (req, reply) = (&frames[0], &frames[1]);
    assert!(req.reencodes && req.raw.is_none(), "{req:?}");
    assert_eq!(req.raw_bytes().unwrap(), sent);
    assert!(!reply.reencodes && reply.raw.is_some(), "{reply:?}");
    assert_eq!(reply.raw_bytes().unwrap(), WIDE_REPLY);
    assert_eq!(reply.msg.id, Some(1));
}

#[test]
fn keep_raw_writes_every_frames_bytes() {
    let (frames, sent) = one_call(&["--keep-raw"]);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(frames.iter().all(|f| !f.reencodes && f.raw.is_some()));
    assert_eq!(frames[0].raw_bytes().unwrap(), sent);
    assert_eq!(frames[1].raw_bytes().unwrap(), WIDE_REPLY);
}

#[test]
fn a_recording_of_format_version_1_still_reads() {
    // The committed recordings predate `reencodes`: every frame has raw.
    let path = support::root().join("recordings/python-event-cycle.jsonl");
    let header = plugtap::record::Reader::open(&path)
        .unwrap()
        .header()
        .clone();
    assert_eq!(header.version, 1);
    let lines = lines(&path);
    for l in &lines {
        if let Line::Frame(f) = l {
            assert_eq!(f.raw_bytes().unwrap().len() as u64, f.len);
        }
    }
}
