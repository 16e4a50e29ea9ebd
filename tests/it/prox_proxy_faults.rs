//! The prox wrapper driven by a raw peer playing prox (lines on its stdin
//! and stdout, hand-made frames on its socket, encoded with rmpv): bad
//! frames (no `t`, no `d`, an unknown hook byte, an oversize length),
//! restarts, signals, and the socket-only proxy without a plugin command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plugtap::record::Line;
use rmpv::Value as Mp;

use crate::proxy::lines;
use crate::support;
use crate::support::prox::{MockPlugin, connect, read_frame, silent_for, write_frame};

fn mp_get<'a>(v: &'a Mp, key: &str) -> Option<&'a Mp> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// The wrapper run by the test as prox runs it: `configure` on its stdin,
/// `ready` read from its stdout.
fn start_wrapper(dir: &Path, rec: &Path, wrapper_args: &[&str]) -> (MockPlugin, PathBuf) {
    let python = crate::support::prox::python();
    let plugin = support::root().join("tests/peers/prox/prox_plugin.py");
    let real = dir.join("plugin.sock");
    let mut args = vec![
        "proxy",
        "--protocol",
        "prox",
        "--record",
        rec.to_str().unwrap(),
    ];
    args.extend_from_slice(wrapper_args);
    args.extend_from_slice(&[
        "--",
        python.to_str().unwrap(),
        plugin.to_str().unwrap(),
        "--socket",
        real.to_str().unwrap(),
    ]);
    let mut w = MockPlugin::plugtap(dir, &args);
    let socket = w.configure(r#"{"route_id":"web:0"}"#);
    assert_ne!(socket, real, "the socket in `ready` is rewritten");
    (w, socket)
}

fn envelope(pairs: Vec<(&str, Mp)>) -> Vec<u8> {
    let map = Mp::Map(pairs.into_iter().map(|(k, v)| (Mp::from(k), v)).collect());
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &map).unwrap();
    out
}

fn inner(pairs: Vec<(&str, &str)>) -> Mp {
    let map = Mp::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Mp::from(k), Mp::from(v)))
            .collect(),
    );
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &map).unwrap();
    Mp::Binary(out)
}

#[test]
fn bad_frames_through_the_wrapper_are_forwarded_and_reported() {
    let dir = support::tmpdir();
    let rec = dir.path().join("rec-{pid}.jsonl");
    let (mut w, socket) = start_wrapper(dir.path(), &rec, &["--listen", "front.sock"]);
    assert_eq!(socket, dir.path().join("front.sock"), "made absolute");
    let conn_d = || inner(vec![("r", "l4:0"), ("d", "a.example"), ("a", "1.2.3.4:5")]);

    // No `t`: the SDK reads hook type 0 and answers nothing.
    let mut s = connect(&socket);
    write_frame(&mut s, &envelope(vec![("d", conn_d())]));
    assert!(silent_for(&mut s, Duration::from_millis(300)));
    // No `d`: on_connect with an empty payload; the SDK's error reply.
    let mut s = connect(&socket);
    write_frame(&mut s, &envelope(vec![("t", Mp::from(3u8))]));
    let reply = read_frame(&mut s).expect("a reply");
    assert_eq!(reply, [0x81, 0xa2, b'o', b'k', 0xc2]);
    // An unknown hook byte: no reply either.
    let mut s = connect(&socket);
    write_frame(
        &mut s,
        &envelope(vec![("t", Mp::from(9u8)), ("d", conn_d())]),
    );
    assert!(silent_for(&mut s, Duration::from_millis(300)));
    // 2 MiB declared: the plugin refuses it and closes the connection.
    let mut s = connect(&socket);
    use std::io::Write as _;
    s.write_all(&(2u32 << 20).to_be_bytes()).unwrap();
    s.write_all(&[0x80; 64]).unwrap();
    assert_eq!(read_frame(&mut s), None);
    w.wait_for_stderr("frame too large: 2097152 bytes");
    assert_eq!(w.close_stdin(), 0);
    assert!(!socket.exists(), "the wrapper removed its socket");

    let rec = dir.path().join(format!("rec-{}.jsonl", w.pid()));
    let lines = lines(&rec);
    let problems: Vec<String> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Frame(f) => f.msg.problem.clone(),
            _ => None,
        })
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("the envelope has no `t`: the SDK reads hook type 0")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("the envelope has no `d`")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("unknown hook type 9")),
        "{problems:?}"
    );
    let undecodable: Vec<String> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Undecodable(u) => Some(u.error.clone()),
            _ => None,
        })
        .collect();
    assert!(
        undecodable.iter().any(|e| e.contains(
            "a frame of 2097152 bytes declared, above the limit of 1048576 bytes: the plugin's SDK refuses it"
        )),
        "{undecodable:?}"
    );
    let out = support::run(dir.path(), &["show", rec.to_str().unwrap()]);
    assert!(out.stdout.contains("unknown hook type 9"), "{}", out.stdout);
    assert!(out.stdout.contains("undecodable bytes"), "{}", out.stdout);
}

/// An on_request for `path`, as prox encodes it (Go-style, via rmpv).
fn request_envelope(path: &str) -> Vec<u8> {
    envelope(vec![
        ("t", Mp::from(1u8)),
        (
            "d",
            inner(vec![
                ("r", "web:0"),
                ("m", "GET"),
                ("p", path),
                ("d", "a.example"),
                ("a", "1.2.3.4:5"),
            ]),
        ),
    ])
}

/// prox restarts a plugin that exits: here, the wrapper, which starts a
/// fresh plugin; `configure` again gives a new `ready`, and each run
/// leaves its own complete recording and no socket behind.
#[test]
fn a_restarted_wrapper_serves_again_and_keeps_each_runs_recording() {
    let dir = support::tmpdir();
    let rec = dir.path().join("rec-{pid}.jsonl");
    let (mut first, socket) = start_wrapper(dir.path(), &rec, &["--listen", "front.sock"]);
    let mut s = connect(&socket);
    write_frame(&mut s, &request_envelope("/crash"));
    assert_eq!(read_frame(&mut s), None, "the plugin died mid-call");
    assert_eq!(first.wait_exit(Duration::from_secs(10)), Some(3));
    assert!(!socket.exists(), "the first run removed its socket");

    let (mut second, again) = start_wrapper(dir.path(), &rec, &["--listen", "front.sock"]);
    assert_eq!(again, socket);
    let mut s = connect(&socket);
    write_frame(&mut s, &request_envelope("/admin"));
    let reply = rmpv::decode::read_value(&mut &read_frame(&mut s).unwrap()[..]).unwrap();
    assert_eq!(mp_get(&reply, "s").and_then(Mp::as_u64), Some(403));
    drop(s);
    assert_eq!(second.close_stdin(), 0);

    let ends: Vec<String> = [first.pid(), second.pid()]
        .iter()
        .map(|pid| {
            let lines = lines(&dir.path().join(format!("rec-{pid}.jsonl")));
            match lines.last() {
                Some(Line::End(e)) => e.reason.clone(),
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert_eq!(
        ends,
        [
            "the plugin exited (exit code 3)",
            "the plugin exited (exit code 0)"
        ]
    );
}

/// Without a plugin command, the proxy sits on one plugin socket whose path
/// is known (here the mock plugin's), with prox's framing and limit.
#[test]
fn socket_proxy_without_a_command_decodes_prox_frames() {
    let dir = support::tmpdir();
    let mut mock = MockPlugin::start(
        dir.path(),
        &support::spec("prox-mock-plugin.json"),
        &["--socket", "mock.sock"],
    );
    let back = mock.configure(r#"{"route_id":"web:0"}"#);
    let mut p = crate::proxy::proxy(
        dir.path(),
        "front.sock",
        back.to_str().unwrap(),
        "rec.jsonl",
        &["--protocol", "prox"],
    );
    let mut s = connect(&dir.path().join("front.sock"));
    write_frame(&mut s, &request_envelope("/admin"));
    let reply = rmpv::decode::read_value(&mut &read_frame(&mut s).unwrap()[..]).unwrap();
    assert_eq!(mp_get(&reply, "s").and_then(Mp::as_u64), Some(403));
    // 1 MiB + 1 declared: above prox's limit, whatever --max-message says.
    use std::io::Write as _;
    let mut s2 = connect(&dir.path().join("front.sock"));
    s2.write_all(&((1u32 << 20) + 1).to_be_bytes()).unwrap();
    drop(s2);
    drop(s);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(p.interrupt(), 0);
    let lines = lines(&dir.path().join("rec.jsonl"));
    let reply = lines
        .iter()
        .find_map(|l| match l {
            Line::Frame(f) if f.reply.is_some() => Some(f),
            _ => None,
        })
        .expect("a reply");
    assert_eq!(reply.msg.method.as_deref(), Some("on_request"));
    assert_eq!(reply.msg.value["fields"]["status"], 403);
    assert!(
        lines.iter().any(|l| matches!(l, Line::Undecodable(u)
            if u.error.contains("a frame of 1048577 bytes declared, above the limit of 1048576"))),
        "{lines:?}"
    );
    drop(mock);
}

/// SIGTERM to the wrapper goes to the plugin; the wrapper then exits 0
/// (the plugin ended by the signal passed on), without its socket.
#[test]
fn sigterm_is_passed_on_to_the_plugin() {
    let dir = support::tmpdir();
    let rec = dir.path().join("rec.jsonl");
    let (mut w, socket) = start_wrapper(dir.path(), &rec, &[]);
    assert!(socket.exists());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(w.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(
        w.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        w.stderr()
    );
    assert!(!socket.exists(), "the wrapper removed its socket");
    let Some(Line::End(end)) = lines(&rec).last().cloned() else {
        panic!("not finished")
    };
    assert_eq!(end.reason, "the plugin exited (signal SIGTERM)");
    let out = support::run(
        dir.path(),
        &["show", rec.to_str().unwrap(), "--format", "mermaid"],
    );
    assert!(
        out.stdout.contains("Note over S: plugin exited"),
        "{}",
        out.stdout
    );
}

/// `--redact` hides values in the recording of stdio lines too; prox
/// still gets the lines unchanged.
#[test]
fn redact_hides_stdio_values_in_the_recording_only() {
    let dir = support::tmpdir();
    let rec = dir.path().join("rec.jsonl");
    let (mut w, _) = start_wrapper(dir.path(), &rec, &["--redact", "targets"]);
    let push = w.json();
    assert_eq!(push["method"], "set_targets", "{push}");
    assert_eq!(
        push["params"]["targets"],
        serde_json::json!(["127.0.0.1:9001", "127.0.0.1:9002"])
    );
    assert_eq!(w.close_stdin(), 0);
    let lines = lines(&rec);
    let pushed = lines
        .iter()
        .find_map(|l| match l {
            Line::Stdio(s) if s.msg.method.as_deref() == Some("set_targets") => Some(s),
            _ => None,
        })
        .expect("the push is recorded");
    assert!(pushed.redacted && pushed.raw.is_none(), "{pushed:?}");
    assert_eq!(pushed.msg.value["params"]["targets"], "[redacted]");
    let configure = lines
        .iter()
        .find_map(|l| match l {
            Line::Stdio(s) if s.msg.method.as_deref() == Some("configure") => Some(s),
            _ => None,
        })
        .unwrap();
    assert!(!configure.redacted && configure.raw.is_some());
    let out = support::run(dir.path(), &["show", rec.to_str().unwrap()]);
    assert!(out.stdout.contains("set_targets"), "{}", out.stdout);
    assert!(out.stdout.contains("[redacted]"), "{}", out.stdout);
}
