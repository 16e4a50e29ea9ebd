//! The proxy role end to end: the built binary between a client and a
//! server on temporary sockets, against the real Python pluginserver and
//! against hand-written peers.

use std::io::Write as _;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use plugtap::message::{Direction, Kind};
use plugtap::record::{Line, Reader};
use rmpv::Value;

use crate::support::mp::{MpPeer, request};
use crate::support::tap::Tap;
use crate::support::{self, Proc};

/// Every line of a recording; panics with file:line on a bad one.
pub fn lines(path: &Path) -> Vec<Line> {
    let reader = Reader::open(path).unwrap_or_else(|e| panic!("{e}"));
    reader
        .map(|l| l.unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

pub fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// Starts `plugtap proxy` from `front` to `back`, recording to `rec`.
pub fn proxy(dir: &Path, front: &str, back: &str, rec: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "proxy",
        "--listen",
        front,
        "--upstream",
        back,
        "--record",
        rec,
    ];
    args.extend_from_slice(extra);
    let p = Proc::plugtap(dir, &args);
    if extra.contains(&"-q") {
        support::wait_for_socket(&dir.join(front));
    } else {
        // No probe connection: some upstreams here accept only one.
        p.wait_for_stderr("listening on");
    }
    p
}

/// Concatenated raw bytes of the recorded frames and undecodable chunks
/// in one direction, in order.
fn recorded_bytes(lines: &[Line], dir: Direction) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        match l {
            Line::Frame(f) if f.dir == dir => {
                assert_eq!(f.offset as usize, out.len(), "frames are contiguous");
                out.extend(f.raw_bytes().expect("raw bytes kept or re-encodable"));
            }
            Line::Undecodable(u) if u.dir == dir => {
                assert_eq!(u.offset as usize, out.len());
                out.extend(b64(&u.raw));
            }
            _ => {}
        }
    }
    out
}

#[test]
fn event_cycle_through_the_proxy_to_the_python_server_is_byte_exact_and_recorded() {
    let dir = support::tmpdir();
    let d = dir.path();
    let _peer = support::python_peer(d, "back.sock");
    // client -> tap A -> proxy -> tap B -> Python server
    let tap_b = Tap::start(&d.join("mid.sock"), &d.join("back.sock"));
    let mut proxy = proxy(d, "front.sock", "mid.sock", "rec.jsonl", &[]);
    let tap_a = Tap::start(&d.join("edge.sock"), &d.join("front.sock"));
    let out = support::run(
        d,
        &[
            "client",
            "--spec",
            support::spec("client-event-cycle.json").to_str().unwrap(),
            "--socket",
            d.join("edge.sock").to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::thread::sleep(Duration::from_millis(200));
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0, "{}", proxy.stderr());
    assert!(!d.join("front.sock").exists(), "socket removed");

    let (a_up, a_down) = tap_a.bytes();
    let (b_up, b_down) = tap_b.bytes();
    assert!(!a_up.is_empty() && !a_down.is_empty());
    assert_eq!(
        a_up, b_up,
        "the server received exactly what the client sent"
    );
    assert_eq!(
        a_down, b_down,
        "the client received exactly what the server sent"
    );

    let lines = lines(&d.join("rec.jsonl"));
    assert_eq!(recorded_bytes(&lines, Direction::ToServer), a_up);
    assert_eq!(recorded_bytes(&lines, Direction::ToClient), a_down);
    let frames: Vec<_> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Frame(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(frames.len(), 14);
    // kong-pdk writes every item in its smallest encoding, so every frame
    // went without its base64 (and `recorded_bytes` above rebuilt them).
    assert!(
        frames.iter().all(|f| f.reencodes && f.raw.is_none()),
        "{frames:?}"
    );
    let methods: Vec<_> = frames
        .iter()
        .step_by(2)
        .map(|f| f.msg.method.clone().unwrap())
        .collect();
    assert_eq!(
        methods,
        [
            "plugin.GetPluginInfo",
            "plugin.StartInstance",
            "plugin.HandleEvent",
            "plugin.Step",
            "plugin.Step",
            "plugin.CloseInstance",
            "plugin.HandleEvent"
        ]
    );
    for pair in frames.chunks(2) {
        assert_eq!(pair[0].dir, Direction::ToServer);
        assert_eq!(pair[0].msg.kind, Kind::Request);
        assert_eq!(pair[1].dir, Direction::ToClient);
        let reply = pair[1].reply.as_ref().expect("paired");
        assert_eq!(reply.method, pair[0].msg.method);
        assert_eq!(reply.request_offset, pair[0].offset);
        assert_eq!(pair[1].msg.id, pair[0].msg.id);
    }
    // Sequence numbers count up; the file ends with an end line.
    let seqs: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.stamp())
        .map(|s| s.seq)
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    assert!(matches!(lines.last(), Some(Line::End(e)) if e.frames == 14));
    let header = Reader::open(&d.join("rec.jsonl")).unwrap().header().clone();
    assert!(header.upstream.ends_with("mid.sock"), "{header:?}");
    // One live log line per frame.
    let stderr = proxy.stderr();
    assert_eq!(stderr.matches(" K→S request #").count(), 7, "{stderr}");
    assert!(
        stderr.contains("S→K response #2 plugin.StartInstance"),
        "{stderr}"
    );
}

pub(crate) fn write_spec(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

pub(crate) const PING_SERVER: &str = r#"{"role": "server", "on_methods": {
    "bench.Ping": [{"result": {"pong": true}}],
    "bench.Slow": [{"result": "late", "delay_ms": 5000}]}}"#;
pub(crate) const PING_CLIENT: &str = r#"{"role": "client", "try_methods": [
    {"method": "bench.Ping", "params": [{"n": 1}], "expect": {"error": null, "result": {"pong": true}}}]}"#;

#[test]
fn upstream_killed_mid_call_closes_both_sides_and_the_proxy_keeps_serving() {
    let dir = support::tmpdir();
    let d = dir.path();
    let server_spec = write_spec(d, "server.json", PING_SERVER);
    let mut server = support::mock_server(d, Path::new(&server_spec), "back.sock", &[]);
    let mut proxy = proxy(d, "front.sock", "back.sock", "rec.jsonl", &[]);
    let mut peer = MpPeer::connect(&d.join("front.sock"));
    peer.send(&request(1, "bench.Slow", Value::Array(vec![])));
    server.wait_for_stderr("request #1 bench.Slow");
    server.signal(nix::sys::signal::Signal::SIGKILL);
    // Gone for good (its listener closed) before anyone connects again.
    assert!(server.wait_for(Duration::from_secs(10)).is_some());
    assert!(
        peer.try_recv().is_none(),
        "the client sees the connection end"
    );
    drop(peer);
    // The socket file is left behind by the killed server: connecting is refused.
    let mut again = MpPeer::connect(&d.join("front.sock"));
    assert!(again.try_recv().is_none(), "closed at once");
    proxy.wait_for_stderr("cannot connect to upstream");
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0, "{}", proxy.stderr());
    let lines = lines(&d.join("rec.jsonl"));
    let busy = lines.iter().find_map(|l| match l {
        Line::Frame(f) => Some(f.conn),
        _ => None,
    });
    let c1: Vec<&Line> = lines.iter().filter(|l| l.conn() == busy).collect();
    assert!(matches!(c1[0], Line::Open(_)));
    assert!(matches!(c1[1], Line::Frame(f) if f.msg.method.as_deref() == Some("bench.Slow")));
    // A killed peer's socket ends with end of stream or a reset, whichever
    // the kernel delivers; either is recorded on the server's side.
    assert!(
        c1.iter().any(
            |l| matches!(l, Line::Eof(e) if e.dir == Direction::ToClient)
                || matches!(l, Line::Error(e) if e.dir == Some(Direction::ToClient))
        ),
        "{c1:?}"
    );
    assert!(matches!(c1.last(), Some(Line::Close(c)) if c.to_client == 0));
    assert!(
        lines
            .iter()
            .any(|l| matches!(l, Line::Error(e) if e.error.contains("cannot connect to upstream")))
    );
}

/// A one-connection upstream that records what it gets and runs `script`.
pub fn fake_upstream(
    path: &Path,
    script: impl FnOnce(&mut std::os::unix::net::UnixStream) + Send + 'static,
) -> std::thread::JoinHandle<Vec<u8>> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        script(&mut s);
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut rest);
        rest
    })
}

pub fn encode(v: &Value) -> Vec<u8> {
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, v).unwrap();
    buf
}

#[test]
fn a_client_disconnecting_mid_frame_is_recorded_with_its_bytes() {
    let dir = support::tmpdir();
    let d = dir.path();
    let upstream = fake_upstream(&d.join("back.sock"), |_| {});
    let mut proxy = proxy(d, "front.sock", "back.sock", "rec.jsonl", &[]);
    let whole = encode(&request(1, "plugin.Step", Value::Array(vec![1.into()])));
    let half = &whole[..whole.len() / 2];
    {
        let mut s = std::os::unix::net::UnixStream::connect(d.join("front.sock")).unwrap();
        s.write_all(half).unwrap();
    }
    assert_eq!(
        upstream.join().unwrap(),
        half,
        "the half frame was forwarded"
    );
    proxy.wait_for_stderr("undecodable bytes at offset 0");
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0);
    let lines = lines(&d.join("rec.jsonl"));
    let u = lines
        .iter()
        .find_map(|l| match l {
            Line::Undecodable(u) => Some(u),
            _ => None,
        })
        .expect("an undecodable event");
    assert_eq!((u.dir, u.offset), (Direction::ToServer, 0));
    assert_eq!(b64(&u.raw), half);
    assert!(
        u.error.contains("stream ended in the middle"),
        "{}",
        u.error
    );
}

#[test]
fn malformed_bytes_from_either_side_are_forwarded_and_recorded() {
    let dir = support::tmpdir();
    let d = dir.path();
    let reply = encode(&Value::Array(vec![
        1.into(),
        1.into(),
        Value::Nil,
        "ok".into(),
    ]));
    let mut from_server = vec![0xc1];
    from_server.extend(&reply);
    let sent_back = from_server.clone();
    let upstream = fake_upstream(&d.join("back.sock"), move |s| {
        let mut buf = [0u8; 64];
        let _ = std::io::Read::read(s, &mut buf).unwrap();
        s.write_all(&sent_back).unwrap();
    });
    let mut proxy = proxy(d, "front.sock", "back.sock", "rec.jsonl", &[]);
    let mut to_server = vec![0xc1];
    to_server.extend(encode(&request(1, "plugin.Step", Value::Array(vec![]))));
    let mut s = std::os::unix::net::UnixStream::connect(d.join("front.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&to_server).unwrap();
    let mut got = vec![0u8; from_server.len()];
    std::io::Read::read_exact(&mut s, &mut got).unwrap();
    assert_eq!(
        got, from_server,
        "the client got the server's bytes unchanged"
    );
    drop(s);
    let mut received = to_server[..0].to_vec();
    received.extend(upstream.join().unwrap());
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0);
    let lines = lines(&d.join("rec.jsonl"));
    assert_eq!(recorded_bytes(&lines, Direction::ToServer), to_server);
    assert_eq!(recorded_bytes(&lines, Direction::ToClient), from_server);
    let kinds: Vec<String> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Frame(f) => Some(format!("{:?} {}", f.dir, f.msg.kind.label())),
            Line::Undecodable(u) => Some(format!("{:?} undecodable@{}", u.dir, u.offset)),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "ToServer undecodable@0",
            "ToServer request",
            "ToClient undecodable@0",
            "ToClient response"
        ]
    );
    assert!(
        proxy.stderr().contains("reserved msgpack marker 0xc1"),
        "{}",
        proxy.stderr()
    );
}

#[test]
fn strict_closes_a_connection_that_sends_undecodable_bytes() {
    let dir = support::tmpdir();
    let d = dir.path();
    let _upstream = fake_upstream(&d.join("back.sock"), |_| {});
    let mut proxy = proxy(d, "front.sock", "back.sock", "rec.jsonl", &["--strict"]);
    let mut peer = MpPeer::connect(&d.join("front.sock"));
    peer.send_raw(&[0xc1, 0xc1]);
    assert!(peer.try_recv().is_none(), "closed by --strict");
    proxy.wait_for_stderr("--strict: closing the connection");
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0);
}
