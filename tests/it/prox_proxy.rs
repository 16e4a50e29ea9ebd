//! The prox wrapper (`plugtap proxy --protocol prox -- PLUGIN`) end to end:
//! plugtap's prox client drives the Python prox-style plugin directly and
//! through the wrapper and gets the same results; the recording is checked
//! against the bytes, decoded independently with rmpv; bad input (a
//! `ready` naming a missing socket, a plugin exiting mid-call, an oversize
//! frame, envelopes without `t` or `d`, an unknown hook byte) is reported.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plugtap::record::Line;
use rmpv::Value as Mp;
use serde_json::{Value as Json, json};

use crate::proxy::{b64, lines};
use crate::support;
use crate::support::prox::{MockPlugin, connect, plugin_cmd, read_frame, silent_for, write_frame};
use crate::support::specfile;

fn report(stdout: &str) -> Json {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The shell command starting the wrapper around the Python plugin.
fn wrapped(dir: &Path, wrapper_args: &str, plugin_args: &str) -> String {
    format!(
        "{} proxy --protocol prox {wrapper_args} -- {}",
        support::bin().display(),
        plugin_cmd(dir, plugin_args)
    )
}

fn mp_get<'a>(v: &'a Mp, key: &str) -> Option<&'a Mp> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// The client's steps: name, status and result, which must not depend on
/// whether the wrapper sits in between.
fn outcomes(r: &Json) -> Vec<Json> {
    r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!([s["method"], s["status"], s["result"]]))
        .collect()
}

#[test]
fn client_gets_the_same_results_through_the_wrapper_and_it_records_them() {
    let dir = support::tmpdir();
    let spec = support::spec("prox-client.json");
    let spec = spec.to_str().unwrap();
    let direct = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            spec,
            "--start-cmd",
            &plugin_cmd(dir.path(), ""),
            "--json",
        ],
    );
    assert_eq!(direct.code, 0, "{}", direct.stderr);
    let rec = dir.path().join("rec.jsonl");
    let through = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            spec,
            "--start-cmd",
            &wrapped(dir.path(), &format!("--record {}", rec.display()), ""),
            "--json",
        ],
    );
    assert_eq!(through.code, 0, "{}", through.stderr);
    let (direct, through_r) = (report(&direct.stdout), report(&through.stdout));
    assert_eq!(outcomes(&direct), outcomes(&through_r));
    assert_eq!(direct["plugin"]["pushes"], through_r["plugin"]["pushes"]);
    assert_eq!(
        through_r["plugin"]["exit"],
        "exited (exit code 0) after its stdin closed"
    );
    // prox was told plugtap's socket, next to the plugin's; it is gone.
    let ours = dir.path().join("plugin.plugtap.sock");
    assert_eq!(
        through_r["plugin"]["socket"].as_str(),
        Some(ours.to_str().unwrap())
    );
    assert!(!ours.exists(), "the wrapper removed its socket");

    let reader = plugtap::record::Reader::open(&rec).unwrap();
    let h = reader.header();
    assert_eq!(h.protocol.name(), "prox");
    assert!(h.command.as_deref().unwrap().contains("prox_plugin.py"));
    let lines = lines(&rec);
    // stdio: every line with its exact bytes; `ready` rewritten.
    let stdio: Vec<_> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Stdio(s) => Some(s),
            _ => None,
        })
        .collect();
    let methods: Vec<(&str, &str)> = stdio
        .iter()
        .map(|s| (s.stream.as_str(), s.msg.method.as_deref().unwrap_or("ack")))
        .collect();
    assert_eq!(
        methods[..6],
        [
            ("stdin", "configure"),
            ("stdin", "configure"),
            ("stdout", "ack"),
            ("stdout", "ready"),
            ("stdout", "set_targets"),
            ("stdout", "ack"),
        ]
    );
    for s in &stdio {
        let raw = b64(&s.raw);
        assert_eq!(raw.len() as u64, s.len);
        let text: Json = serde_json::from_slice(&raw).unwrap();
        assert_eq!(text, s.msg.value);
        let ready = s.msg.method.as_deref() == Some("ready");
        assert_eq!(s.rewritten_socket.is_some(), ready);
        if ready {
            assert_eq!(
                text["params"]["socket"],
                dir.path().join("plugin.sock").to_str().unwrap()
            );
            assert_eq!(s.rewritten_socket.as_deref(), ours.to_str());
        }
    }
    // Hook frames: seven calls, six replies (on_disconnect gets none);
    // every frame decodes, independently, to what was recorded.
    let frames: Vec<_> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Frame(f) => Some(f),
            _ => None,
        })
        .collect();
    let calls: Vec<_> = frames
        .iter()
        .filter(|f| f.dir == plugtap::message::Direction::ToServer)
        .collect();
    assert_eq!((calls.len(), frames.len() - calls.len()), (7, 6));
    for f in &frames {
        let raw = b64(f.raw.as_deref().expect("raw bytes kept"));
        assert_eq!(raw.len() as u64, f.len);
        assert_eq!(
            u32::from_be_bytes(raw[..4].try_into().unwrap()) as usize,
            raw.len() - 4
        );
        let value = rmpv::decode::read_value(&mut &raw[4..]).unwrap();
        assert!(f.msg.problem.is_none(), "{:?}", f.msg);
        if f.dir == plugtap::message::Direction::ToServer {
            let t = mp_get(&value, "t").and_then(Mp::as_u64).unwrap();
            assert_eq!(f.msg.value["t"], t);
            let d = mp_get(&value, "d").and_then(Mp::as_slice).unwrap();
            let inner = rmpv::decode::read_value(&mut &d[..]).unwrap();
            assert_eq!(f.msg.value["d"], plugtap::value_json::to_json(&inner));
        } else {
            assert_eq!(f.msg.value["result"], plugtap::value_json::to_json(&value));
            let reply = f.reply.as_ref().expect("a reply names its call");
            assert_eq!(reply.method.as_deref(), f.msg.method.as_deref());
        }
    }
    let hooks: Vec<&str> = calls
        .iter()
        .map(|f| f.msg.method.as_deref().unwrap())
        .collect();
    let mut sorted = hooks.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "on_connect",
            "on_connect",
            "on_disconnect",
            "on_request",
            "on_request",
            "on_request",
            "on_response"
        ]
    );
    let exited = lines.iter().find_map(|l| match l {
        Line::Child(c) if c.event == "exited" => c.status.clone(),
        _ => None,
    });
    assert_eq!(exited.as_deref(), Some("exit code 0"));
    assert!(matches!(lines.last(), Some(Line::End(_))));
    // Frames tile each direction of each connection: offsets follow on,
    // and they add up to the bytes forwarded.
    for l in &lines {
        let Line::Close(c) = l else { continue };
        for (dir, total) in [
            (plugtap::message::Direction::ToServer, c.to_server),
            (plugtap::message::Direction::ToClient, c.to_client),
        ] {
            let mut next = 0;
            for f in frames.iter().filter(|f| f.conn == c.conn && f.dir == dir) {
                assert_eq!(f.offset, next, "{f:?}");
                next += f.len;
            }
            assert_eq!(next, total, "connection {} {dir:?}", c.conn);
        }
    }

    // `show` renders stdio lines and hooks, as text and as a diagram.
    let out = support::run(dir.path(), &["show", rec.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("# prox recording of plugin `"));
    assert!(out.stdout.contains("stdin prox→plugin notify configure"));
    assert!(out.stdout.contains("[socket rewritten to "));
    assert!(out.stdout.contains("prox→plugin request on_request"));
    assert!(out.stdout.contains("plugin→prox response on_request"));
    assert!(out.stdout.contains("prox→plugin notify on_disconnect"));
    let out = support::run(
        dir.path(),
        &["show", rec.to_str().unwrap(), "--format", "mermaid"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("participant K as prox"));
    assert!(out.stdout.contains("K->>S: stdin configure"));
    assert!(out.stdout.contains("S-)K: stdout ready"));
    assert!(out.stdout.contains("K->>S: c"));
    let out = support::run(
        dir.path(),
        &["show", rec.to_str().unwrap(), "--method", "ready"],
    );
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout);
}

#[test]
fn a_ready_naming_a_missing_socket_is_reported() {
    let dir = support::tmpdir();
    let missing = dir.path().join("missing.sock");
    let rec = dir.path().join("rec.jsonl");
    let spec = specfile::write(
        dir.path(),
        "spec.json",
        &json!({
            "role": "client", "protocol": "prox",
            "try_methods": [{"method": "on_connect",
                             "params": {"route_id": "l4:0", "domain": "a.example"},
                             "expect": {"result": {"allow": true}}}]
        }),
    );
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--timeout",
            "5",
            "--start-cmd",
            &wrapped(
                dir.path(),
                &format!("--wait 0.5 --record {}", rec.display()),
                &format!("--announce {}", missing.display()),
            ),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "the plugin's `ready` names socket {}, which does not exist",
            missing.display()
        )),
        "{}",
        out.stderr
    );
    let errors: Vec<String> = lines(&rec)
        .into_iter()
        .filter_map(|l| match l {
            Line::Error(e) => Some(e.error),
            _ => None,
        })
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("which does not exist")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("cannot connect to upstream") && e.contains("missing.sock")),
        "{errors:?}"
    );
}

#[test]
fn a_plugin_exiting_during_a_call_is_reported_and_the_wrapper_exits_with_its_code() {
    let dir = support::tmpdir();
    let rec = dir.path().join("rec.jsonl");
    let spec = specfile::write(
        dir.path(),
        "spec.json",
        &json!({
            "role": "client", "protocol": "prox",
            "try_methods": [{"method": "on_request",
                             "params": {"route_id": "web:0", "method": "GET", "path": "/crash",
                                        "domain": "a.example"}}]
        }),
    );
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--json",
            "--start-cmd",
            &wrapped(dir.path(), &format!("--record {}", rec.display()), ""),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let r = report(&out.stdout);
    assert_eq!(r["plugin"]["exit"], "exited (exit code 3) during the calls");
    let lines = lines(&rec);
    let closed = lines
        .iter()
        .find_map(|l| match l {
            Line::Frame(f) if f.msg.kind == plugtap::message::Kind::Closed => Some(f),
            _ => None,
        })
        .expect("a closed frame");
    assert_eq!(closed.len, 0);
    assert!(
        closed
            .msg
            .error
            .as_deref()
            .unwrap()
            .contains("the plugin closed the connection instead of answering on_request"),
        "{:?}",
        closed.msg
    );
    let exited = lines.iter().find_map(|l| match l {
        Line::Child(c) if c.event == "exited" => c.status.clone(),
        _ => None,
    });
    assert_eq!(exited.as_deref(), Some("exit code 3"));
    let Some(Line::End(end)) = lines.last() else {
        panic!("not finished")
    };
    assert_eq!(end.reason, "the plugin exited (exit code 3)");
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
