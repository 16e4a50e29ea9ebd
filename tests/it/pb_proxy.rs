//! The proxy on ProtoBuf:1, end to end: plugtap's pb client ↔ proxy
//! --record ↔ plugtap's pb server, the real go-pdk frames of
//! tests/captures/ replayed through it (the committed recording), and
//! malformed frames from either side.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use plugtap::message::{Direction, Kind};
use plugtap::record::{FrameEvent, Line};
use serde_json::{Value as Json, json};

use crate::proxy::{b64, lines, proxy};
use crate::support;
use crate::support::pb::{connect, read_frame, unhex, write_frame};

fn pb_proxy(dir: &Path, extra: &[&str]) -> support::Proc {
    let mut args = vec!["--protocol", "ProtoBuf:1"];
    args.extend_from_slice(extra);
    proxy(dir, "front.sock", "back.sock", "rec.jsonl", &args)
}

fn frames(rec: &[Line]) -> Vec<&FrameEvent> {
    rec.iter()
        .filter_map(|l| match l {
            Line::Frame(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn kinds(frames: &[&FrameEvent]) -> Vec<Kind> {
    frames.iter().map(|f| f.msg.kind).collect()
}

/// Every frame's raw bytes are its length prefix and payload.
fn check_raw(frames: &[&FrameEvent]) {
    for f in frames {
        let raw = b64(f.raw.as_deref().expect("raw bytes kept"));
        assert_eq!(raw.len() as u64, f.len);
        if f.msg.kind == Kind::Closed {
            assert!(raw.is_empty());
            continue;
        }
        let n = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
        assert_eq!(n + 4, raw.len(), "{f:?}");
    }
}

#[test]
fn event_cycle_between_pb_roles_through_the_proxy_is_decoded_and_recorded() {
    let dir = support::tmpdir();
    let d = dir.path();
    let mut server =
        support::mock_server(d, &support::spec("pb-mock-go-peer.json"), "back.sock", &[]);
    let mut proxy = pb_proxy(d, &[]);
    let out = support::run(
        d,
        &[
            "client",
            "--spec",
            support::spec("pb-client-event-cycle.json")
                .to_str()
                .unwrap(),
            "--socket",
            d.join("front.sock").to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.interrupt(), 0, "{}", server.stderr());
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0, "{}", proxy.stderr());

    let rec = lines(&d.join("rec.jsonl"));
    let header = plugtap::record::Reader::open(&d.join("rec.jsonl")).unwrap();
    assert_eq!(
        header.header().protocol,
        plugtap::protocol::Protocol::ProtoBuf1
    );
    let fs = frames(&rec);
    check_raw(&fs);
    use Kind::*;
    assert_eq!(
        kinds(&fs),
        [
            Request, Response, // start
            Request, PdkCall, PdkArgs, PdkReply, PdkCall, PdkArgs, PdkReply, PdkEnd,
            Response, // event
            Request, Response, // close
            Request, Closed, // event on a missing instance
        ]
    );
    let by_kind = |k: Kind, n: usize| fs.iter().filter(|f| f.msg.kind == k).nth(n).unwrap();
    assert_eq!(
        by_kind(Request, 1).msg.method.as_deref(),
        Some("cmd_handle_event")
    );
    assert_eq!(by_kind(Request, 1).msg.id, Some(3));
    assert_eq!(
        by_kind(PdkCall, 0).msg.method.as_deref(),
        Some("kong.request.get_header")
    );
    assert_eq!(by_kind(PdkArgs, 0).msg.value, json!({"v": "host"}));
    assert_eq!(by_kind(PdkArgs, 0).dir, Direction::ToClient);
    assert_eq!(
        by_kind(PdkReply, 0).msg.method.as_deref(),
        Some("kong.request.get_header")
    );
    assert_eq!(by_kind(PdkReply, 0).msg.value, json!({"v": "example.test"}));
    assert_eq!(by_kind(PdkReply, 0).dir, Direction::ToServer);
    assert_eq!(
        by_kind(PdkArgs, 1).msg.value,
        json!({"k": "x-peer-go", "v": "hello example.test"})
    );
    // set_header's nil reply is an empty frame: 4 bytes of length.
    assert_eq!(by_kind(PdkReply, 1).len, 4);
    assert_eq!(by_kind(PdkEnd, 0).len, 4);
    let ret = by_kind(Response, 1);
    assert_eq!(ret.msg.id, Some(3));
    assert_eq!(
        ret.reply.as_ref().unwrap().method.as_deref(),
        Some("cmd_handle_event")
    );
    let closed = by_kind(Closed, 0);
    assert_eq!(closed.dir, Direction::ToClient);
    assert_eq!(closed.msg.id, Some(5));
    assert!(
        closed
            .msg
            .error
            .as_deref()
            .unwrap()
            .contains("closed the connection instead of answering RpcCall #5 (cmd_handle_event)"),
        "{closed:?}"
    );
    assert!(matches!(rec.last(), Some(Line::End(_))));

    let log = proxy.stderr();
    for needle in [
        "K→S request #3 cmd_handle_event",
        "S→K pdk-call kong.request.get_header",
        "S→K pdk-args kong.request.get_header String {\"v\":\"host\"}",
        "K→S pdk-reply kong.request.get_header String {\"v\":\"example.test\"}",
        "S→K pdk-end",
        "S→K response #3 cmd_handle_event",
        "CLOSED #5",
    ] {
        assert!(log.contains(needle), "{needle}: {log}");
    }

    let path = d.join("rec.jsonl");
    let text = support::run(d, &["show", path.to_str().unwrap()]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    for needle in [
        "# ProtoBuf:1 recording",
        "S→K pdk-call kong.request.get_header",
        "K→S pdk-reply kong.request.get_header String {\"v\":\"example.test\"}",
        "S→K response #3 cmd_handle_event",
        "S→K CLOSED #5 cmd_handle_event",
    ] {
        assert!(text.stdout.contains(needle), "{needle}: {}", text.stdout);
    }
    let method = support::run(
        d,
        &["show", path.to_str().unwrap(), "--method", "get_header"],
    );
    assert_eq!(method.stdout.lines().count(), 1 + 3, "{}", method.stdout);
    let mermaid = support::run(d, &["show", path.to_str().unwrap(), "--format", "mermaid"]);
    assert_eq!(mermaid.code, 0, "{}", mermaid.stderr);
    for needle in [
        "K->>S: c1 request #35;3 cmd_handle_event",
        "S-->>K: c1 pdk-call kong.request.get_header",
        "S-->>K: c1 pdk-args kong.request.get_header String {\"v\":\"host\"}",
        "K->>S: c1 pdk-reply kong.request.get_header String {\"v\":\"example.test\"}",
        "S-->>K: c1 pdk-end",
        "S-->>K: c1 ok #35;3 cmd_handle_event",
        "S--xK: c1 CLOSED #35;5 cmd_handle_event: the server closed the connection instead of answering",
    ] {
        assert!(
            mermaid.stdout.contains(needle),
            "{needle}: {}",
            mermaid.stdout
        );
    }
}

/// The frames of tests/captures/go-pdk-protobuf1.jsonl, one list per
/// connection (the server closed after each probe).
fn capture() -> Vec<Vec<(Direction, Vec<u8>)>> {
    let text =
        std::fs::read_to_string(support::root().join("tests/captures/go-pdk-protobuf1.jsonl"))
            .unwrap();
    let mut conns = vec![vec![]];
    for line in text.lines() {
        let v: Json = serde_json::from_str(line).unwrap();
        if let Some(dir) = v["dir"].as_str() {
            let dir = if dir == ">" {
                Direction::ToServer
            } else {
                Direction::ToClient
            };
            conns
                .last_mut()
                .unwrap()
                .push((dir, unhex(v["hex"].as_str().unwrap())));
        } else if v["result"]
            .as_str()
            .is_some_and(|r| r.contains("connection closed"))
        {
            conns.push(vec![]);
        }
    }
    conns.retain(|c| !c.is_empty());
    conns
}

/// Replays the capture through a proxy recording to `rec` in `dir`.
pub fn replay_capture(dir: &Path, extra: &[&str]) -> String {
    let conns = capture();
    let listener = UnixListener::bind(dir.join("back.sock")).unwrap();
    let mut proxy = pb_proxy(dir, extra);
    let server_conns = conns.clone();
    let server = std::thread::spawn(move || {
        for frames in server_conns {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            for (dir, bytes) in frames {
                match dir {
                    Direction::ToClient => write_frame(&mut s, &bytes),
                    Direction::ToServer => assert_eq!(read_frame(&mut s).unwrap(), bytes),
                }
            }
            // The server closes: the probe's call had no answer.
        }
    });
    for frames in conns {
        let mut s: UnixStream = connect(&dir.join("front.sock"));
        for (dir, bytes) in frames {
            match dir {
                Direction::ToServer => {
                    // Kong writes the length and the payload with two send()s.
                    use std::io::Write as _;
                    s.write_all(&(bytes.len() as u32).to_le_bytes()).unwrap();
                    s.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                    s.write_all(&bytes).unwrap();
                }
                Direction::ToClient => assert_eq!(read_frame(&mut s).unwrap(), bytes),
            }
        }
        assert_eq!(read_frame(&mut s), None, "the server closed");
        drop(s);
        std::thread::sleep(Duration::from_millis(100));
    }
    server.join().unwrap();
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0, "{}", proxy.stderr());
    proxy.stderr()
}

/// What a recording says, without times, paths and latencies.
pub fn essence(rec: &[Line]) -> Vec<Json> {
    rec.iter()
        .map(|l| {
            let mut v = serde_json::to_value(l).unwrap();
            let o = v.as_object_mut().unwrap();
            for k in [
                "seq",
                "t_us",
                "at",
                "started_at",
                "listen",
                "upstream",
                "plugtap",
            ] {
                o.remove(k);
            }
            if let Some(r) = o.get_mut("reply").and_then(Json::as_object_mut) {
                r.remove("latency_us");
            }
            v
        })
        .collect()
}

#[test]
fn real_go_pdk_frames_replayed_through_the_proxy_match_the_committed_recording() {
    let dir = support::tmpdir();
    let d = dir.path();
    let log = replay_capture(d, &[]);
    let rec = lines(&d.join("rec.jsonl"));
    let committed = support::root().join("recordings/go-pdk-event-cycle.jsonl");
    if std::env::var_os("PLUGTAP_REGENERATE").is_some() {
        std::fs::copy(d.join("rec.jsonl"), &committed).unwrap();
    }
    let fs = frames(&rec);
    check_raw(&fs);
    use Kind::*;
    assert_eq!(
        kinds(&fs),
        [
            Request, Response, // get_plugin_info, answered by an empty frame
            Request, Response, // start
            Request, PdkCall, PdkArgs, PdkReply, PdkCall, PdkArgs, PdkReply, PdkEnd,
            Response, // event
            Request, Response, // close
            Request, Closed, // event on the closed instance
            Request, Closed, // get_instance_status on it, second connection
        ]
    );
    // go-pdk's empty answer to cmd_get_plugin_info is flagged (sequence 0).
    assert!(
        fs[1]
            .msg
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("sequence")),
        "{:?}",
        fs[1].msg
    );
    assert_eq!(fs[3].msg.value["instanceStatus"]["instanceId"], 1298498081);
    assert_eq!(
        fs[9].msg.value,
        json!({"k": "x-peer-go", "v": "hello example.test"})
    );
    assert_eq!(fs[18].conn, 2);
    assert!(
        log.contains("S→K pdk-args kong.response.set_header"),
        "{log}"
    );
    assert_eq!(
        essence(&rec),
        essence(&lines(&committed)),
        "recordings/go-pdk-event-cycle.jsonl is out of date: PLUGTAP_REGENERATE=1 cargo test --test it real_go_pdk"
    );
}

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

#[test]
fn wrapper_mode_records_the_python_go_pdk_stand_in() {
    let dir = support::tmpdir();
    let d = dir.path();
    let real = d.join("real");
    std::fs::create_dir(&real).unwrap();
    let cmd = crate::pb_kong::go_peer_cmd(&real);
    let mut args = vec![
        "proxy",
        "--protocol",
        "ProtoBuf:1",
        "--listen",
        "front.sock",
        "--upstream",
        "real/go-peer.socket",
        "--record",
        "rec.jsonl",
        "--",
    ];
    args.extend(cmd.split(' '));
    let mut proxy = support::Proc::plugtap(d, &args);
    proxy.wait_for_stderr("listening on");
    let out = support::run(
        d,
        &[
            "client",
            "--spec",
            support::spec("pb-kong-go-peer.json").to_str().unwrap(),
            "--socket",
            d.join("front.sock").to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0, "{}", proxy.stderr());
    let rec = lines(&d.join("rec.jsonl"));
    let fs = frames(&rec);
    check_raw(&fs);
    let replies: Vec<&Json> = fs
        .iter()
        .filter(|f| {
            f.msg.kind == Kind::PdkArgs
                && f.msg.method.as_deref() == Some("kong.response.set_header")
        })
        .map(|f| &f.msg.value)
        .collect();
    assert_eq!(
        replies,
        [
            &json!({"k": "x-peer-go", "v": "hello example.test"}),
            &json!({"k": "x-peer-go", "v": "bye example.test"})
        ]
    );
    assert!(rec.iter().any(|l| matches!(l, Line::Child(_))));
}

#[test]
fn redaction_reaches_into_the_config_bytes_of_cmd_start_instance() {
    use base64::Engine as _;
    let dir = support::tmpdir();
    let d = dir.path();
    let mut server =
        support::mock_server(d, &support::spec("pb-mock-go-peer.json"), "back.sock", &[]);
    let mut proxy = pb_proxy(d, &["--redact", "greeting"]);
    let out = support::run(
        d,
        &[
            "client",
            "--spec",
            support::spec("pb-client-event-cycle.json")
                .to_str()
                .unwrap(),
            "--socket",
            d.join("front.sock").to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.interrupt(), 0);
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0, "{}", proxy.stderr());
    // The config's text, {"greeting":"hello"}, in base64: nowhere in the log.
    let secret = base64::engine::general_purpose::STANDARD.encode(r#"{"greeting":"hello"}"#);
    assert!(proxy.stderr().contains("cmd_start_instance"));
    assert!(!proxy.stderr().contains(&secret), "{}", proxy.stderr());
    let rec = lines(&d.join("rec.jsonl"));
    let fs = frames(&rec);
    let start = fs[0];
    assert!(start.redacted && start.raw.is_none(), "{start:?}");
    let config = start.msg.value["cmdStartInstance"]["config"]
        .as_str()
        .unwrap();
    let config: Json = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(config)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(config, json!({"greeting": "[redacted]"}));
    // Frames without the key keep their bytes.
    assert!(fs[1..].iter().all(|f| !f.redacted));
}
