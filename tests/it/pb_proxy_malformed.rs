//! Malformed ProtoBuf:1 frames from either side through the proxy: they
//! are forwarded, reported, and the recording stays valid.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use plugtap::message::{Direction, Kind};
use plugtap::record::Line;

use crate::pb_proxy::pb_proxy;
use crate::proxy::{b64, lines};
use crate::support;
use crate::support::pb::{connect, unhex};

/// Plays `script` between a raw client and a raw server through the
/// proxy: each side writes its own bytes and reads the other's, in order.
/// Returns the recording and the proxy's log.
type Script = Vec<(Direction, Vec<u8>)>;

fn through(dir: &Path, script: Script) -> (Vec<Line>, String) {
    use std::io::{Read as _, Write as _};
    fn play(s: &mut UnixStream, script: &[(Direction, Vec<u8>)], me: Direction) {
        for (dir, bytes) in script {
            if *dir == me {
                let _ = s.write_all(bytes);
            } else {
                let mut got = vec![0u8; bytes.len()];
                let _ = s.read_exact(&mut got);
            }
        }
    }
    let listener = UnixListener::bind(dir.join("back.sock")).unwrap();
    let mut proxy = pb_proxy(dir, &[]);
    let theirs = script.clone();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        play(&mut s, &theirs, Direction::ToClient);
    });
    let mut s = connect(&dir.join("front.sock"));
    play(&mut s, &script, Direction::ToServer);
    server.join().unwrap();
    // Kong never half-closes: it reads until the server is done.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    drop(s);
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0, "{}", proxy.stderr());
    (lines(&dir.join("rec.jsonl")), proxy.stderr())
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

#[test]
fn malformed_frames_through_the_proxy_are_reported_and_the_recording_stays_valid() {
    let event = framed(&unhex("0803a2020e08a18496eb041206616363657373"));
    use Direction::{ToClient as S, ToServer as K};
    let cases: Vec<(&str, Script, &str)> = vec![
        (
            "huge length",
            vec![(K, vec![0xff, 0xff, 0xff, 0x7f, 1, 2, 3])],
            "too large",
        ),
        (
            "truncated payload",
            vec![(K, vec![0x13, 0, 0, 0, 0x08, 0x03])],
            "middle of a frame",
        ),
        (
            "invalid protobuf",
            vec![(K, framed(&[0xff, 0xff, 0xff]))],
            "RpcCall",
        ),
        (
            "unknown method name",
            vec![
                (K, event.clone()),
                (S, framed(b"kong.request.get_everything")),
                (S, framed(&[0x0a, 0x01, 0x78])),
            ],
            "get_everything",
        ),
        (
            "reply of the wrong type",
            vec![
                (K, event.clone()),
                (S, framed(b"kong.request.get_header")),
                (S, framed(&unhex("0a04686f7374"))),
                (K, framed(&unhex("10 05"))),
            ],
            "kong.request.get_header",
        ),
    ];
    for (name, script, needle) in cases {
        let dir = support::tmpdir();
        let stream = |d: Direction| -> Vec<u8> {
            script
                .iter()
                .filter(|(x, _)| *x == d)
                .flat_map(|(_, b)| b.clone())
                .collect()
        };
        let (sent, answered) = (stream(K), stream(S));
        let (rec, log) = through(dir.path(), script);
        // Nothing lost: frames and undecodable chunks tile both streams.
        for (dir, bytes) in [
            (Direction::ToServer, &sent),
            (Direction::ToClient, &answered),
        ] {
            let mut seen = Vec::new();
            for l in &rec {
                match l {
                    Line::Frame(f) if f.dir == dir => {
                        assert_eq!(f.offset as usize, seen.len(), "{name}");
                        seen.extend(b64(f.raw.as_deref().unwrap()));
                    }
                    Line::Undecodable(u) if u.dir == dir => {
                        assert_eq!(u.offset as usize, seen.len(), "{name}");
                        seen.extend(b64(&u.raw));
                    }
                    _ => {}
                }
            }
            assert_eq!(&seen, bytes, "{name}: {dir:?}");
        }
        let flagged: Vec<String> = rec
            .iter()
            .filter_map(|l| match l {
                Line::Frame(f) => f
                    .msg
                    .problem
                    .clone()
                    .or_else(|| (f.msg.kind == Kind::Malformed).then(|| "malformed".into())),
                Line::Undecodable(u) => Some(u.error.clone()),
                _ => None,
            })
            .collect();
        assert!(
            flagged.iter().any(|p| p.contains(needle)),
            "{name}: {flagged:?}\n{log}"
        );
        assert!(matches!(rec.last(), Some(Line::End(_))), "{name}");
    }
}
