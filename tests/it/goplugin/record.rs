//! `plugtap proxy --protocol go-plugin --record`: the stand-in host drives
//! the Python plugin through the recording wrapper; the recording is read
//! back with the public reader and shown. Message bytes are checked
//! against protobuf encodings written out by hand.

use std::path::Path;

use plugtap::message::{Direction, Kind};
use plugtap::protocol::Protocol;
use plugtap::record::{Line, Reader};

use super::{client_spec, kv_plugin_cmd, wrapped};
use crate::proxy::{b64, lines};
use crate::support;

/// Messages of the KV run and their protobuf bytes, encoded by hand.
pub const KNOWN: &[(&str, &str, &[u8])] = &[
    ("/kv.KV/Get", "kv.GetRequest", b"\x0a\x08greeting"),
    (
        "/kv.KV/Put",
        "kv.PutRequest",
        b"\x0a\x08greeting\x12\x05hello",
    ),
    ("/kv.KV/Get", "kv.GetResponse", b"\x0a\x05hello"),
    ("/kv.Counter/Next", "kv.CountReply", b"\x08\x01"),
    (
        "/grpc.health.v1.Health/Check",
        "grpc.health.v1.HealthCheckRequest",
        b"\x0a\x06plugin",
    ),
    (
        "/grpc.health.v1.Health/Check",
        "grpc.health.v1.HealthCheckResponse",
        b"\x08\x01",
    ),
    ("/plugin.GRPCController/Shutdown", "plugin.Empty", b""),
];

/// Runs the KV client spec through the wrapper with `extra` options and
/// an optional environment assignment for the plugin; returns the client's
/// exit code and stderr.
fn record(dir: &Path, spec: &Path, rec: &Path, extra: &str, env: &str) -> (i32, String) {
    let cmd = wrapped(
        &kv_plugin_cmd(),
        &format!("--record {} {extra}", rec.display()),
    );
    let out = support::run(
        dir,
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--start-cmd",
            &format!("{env} {cmd}"),
        ],
    );
    (out.code, out.stderr)
}

/// Checks what every go-plugin recording of the KV run must hold; returns
/// the lines.
pub fn check_kv_recording(path: &Path) -> Vec<Line> {
    let header = Reader::open(path).unwrap().header().clone();
    assert_eq!(header.protocol, Protocol::GoPlugin);
    assert!(
        header.command.as_deref().unwrap().contains("kv_plugin.py"),
        "{header:?}"
    );
    let lines = lines(path);
    // The handshake: the plugin's address, and plugtap's in its place.
    let hs = lines
        .iter()
        .find_map(|l| match l {
            Line::Handshake(h) => Some(h.clone()),
            _ => None,
        })
        .expect("a handshake line");
    let told = hs.rewritten.as_deref().unwrap();
    assert!(hs.original.starts_with("1|1|unix|"), "{hs:?}");
    assert!(
        told.starts_with("1|1|unix|") && told.ends_with("|grpc"),
        "{hs:?}"
    );
    assert_ne!(hs.original, told);
    assert!(told.contains(&header.listen.display().to_string()[5..]));
    assert!(
        hs.original
            .contains(&header.upstream.display().to_string()[5..])
    );
    // Connections: the host's, and the brokered one.
    let opens: Vec<_> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Open(o) => Some(o.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(opens.len(), 2, "{opens:?}");
    assert_eq!(opens[0].client.as_deref(), Some("host"));
    assert!(opens[1].name.as_deref().unwrap().ends_with("broker#1"));
    let broker = lines
        .iter()
        .find_map(|l| match l {
            Line::Broker(b) => Some(b.clone()),
            _ => None,
        })
        .expect("a broker line");
    assert_eq!(
        (broker.service_id, broker.announcer.as_str()),
        (1, "plugin")
    );
    assert!(broker.told.as_deref().unwrap().ends_with("broker1.sock"));
    assert_eq!(
        opens[1].upstream.as_deref(),
        Some(broker.announced.as_str())
    );
    // Every message: its bytes, its size, its place in the stream.
    let mut next_offset = std::collections::HashMap::new();
    let mut known = vec![false; KNOWN.len()];
    for l in &lines {
        let Line::Frame(f) = l else { continue };
        if f.msg.kind != Kind::GrpcMessage {
            assert_eq!(f.len, 0, "{f:?}");
            continue;
        }
        let raw = b64(f.raw.as_deref().expect("raw kept"));
        assert_eq!(raw.len() as u64, f.len);
        assert_eq!(f.msg.value["size"], raw.len());
        let key = (f.conn, f.msg.id, f.dir);
        let at = next_offset.entry(key).or_insert(0u64);
        assert_eq!(f.offset, *at, "{f:?}");
        *at += 5 + f.len;
        let path = f.msg.method.as_deref().unwrap();
        let ty = f.msg.value["type"].as_str().unwrap_or("");
        for (i, (p, t, bytes)) in KNOWN.iter().enumerate() {
            if *p == path && *t == ty && raw == *bytes {
                known[i] = true;
            }
        }
    }
    for (i, seen) in known.iter().enumerate() {
        assert!(seen, "no message {:?} in the recording", KNOWN[i]);
    }
    // Status of a failed call, with its duration.
    let not_found = lines
        .iter()
        .find_map(|l| match l {
            Line::Frame(f)
                if f.msg.kind == Kind::GrpcTrailers
                    && f.msg
                        .error
                        .as_deref()
                        .is_some_and(|e| e.contains("NOT_FOUND")) =>
            {
                Some(f.clone())
            }
            _ => None,
        })
        .expect("the NOT_FOUND trailers");
    assert_eq!(not_found.dir, Direction::ToClient);
    assert_eq!(not_found.msg.value["code"], 5);
    assert_eq!(
        not_found.reply.as_ref().unwrap().method.as_deref(),
        Some("/kv.KV/Get")
    );
    // The plugin's stderr, its exit and the end.
    assert!(lines.iter().any(
        |l| matches!(l, Line::Stderr(e) if e.text.contains("\"@message\": \"kv plugin starting\""))
    ));
    assert!(lines.iter().any(
        |l| matches!(l, Line::Child(c) if c.event == "exited" && c.status.as_deref() == Some("exit code 0"))
    ));
    assert!(matches!(lines.last(), Some(Line::End(_))));
    lines
}

#[test]
fn the_wrapper_records_handshake_calls_broker_stderr_and_exit() {
    let dir = support::tmpdir();
    let rec = dir.path().join("kv.jsonl");
    let (code, log) = record(
        dir.path(),
        &support::spec("goplugin-client-kv.json"),
        &rec,
        "",
        "",
    );
    assert_eq!(code, 0, "{log}");
    check_kv_recording(&rec);
    // show: the host's and the plugin's arrows, the broker connection's too.
    let path = rec.to_str().unwrap();
    let text = support::run(dir.path(), &["show", path]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    for needle in [
        "# go-plugin recording of",
        "handshake: the plugin printed 1|1|unix|",
        "host→plugin message #0 /grpc.health.v1.Health/Check",
        "plugin→host trailers /kv.KV/Get NOT_FOUND: no key 'greeting' after",
        "broker: the plugin announced service 1 at unix:",
        "open broker#1 (host → plugin",
        "host→plugin message #0 /kv.Counter/Next",
        "plugin stderr: {\"@level\": \"info\", \"@message\": \"kv plugin starting\"",
        "plugin exited: exit code 0",
    ] {
        assert!(
            text.stdout.contains(needle),
            "{needle:?} in\n{}",
            text.stdout
        );
    }
    let only = support::run(dir.path(), &["show", path, "--method", "Counter"]);
    assert!(only.stdout.contains("/kv.Counter/Next"));
    assert!(!only.stdout.contains("/kv.KV/"), "{}", only.stdout);
    let mermaid = support::run(dir.path(), &["show", path, "--format", "mermaid"]);
    for needle in [
        "participant H as host",
        "participant G as plugin",
        "open /grpc.health.v1.Health/Check",
        "H->>G: c2 s1 open /kv.Counter/Next",
        "G-->>H: c2 s1 message #35;0 {\"count\":\"1\"}",
        "message #35;0 {\"status\":\"SERVING\"}",
        "trailers NOT_FOUND: no key 'greeting'",
        "Note over P: c1 broker service 1 of the plugin at unix:",
    ] {
        assert!(
            mermaid.stdout.contains(needle),
            "{needle:?} in\n{}",
            mermaid.stdout
        );
    }
}

#[test]
fn the_committed_kv_recording_holds_the_whole_run() {
    // Made by scripts/record-goplugin.sh.
    let path = support::root().join("recordings/goplugin-python-kv.jsonl");
    let lines = check_kv_recording(&path);
    // Every call of the spec, in the host's order on the host's connection.
    let opened: Vec<&str> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Frame(f) if f.msg.kind == Kind::GrpcOpen => f.msg.method.as_deref(),
            _ => None,
        })
        .filter(|m| m.starts_with("/kv."))
        .collect();
    assert_eq!(
        opened,
        [
            "/kv.KV/Get",
            "/kv.KV/Put",
            "/kv.KV/Get",
            "/kv.KV/Get",
            "/kv.KV/Watch",
            "/kv.KV/Delete",
            "/kv.Counter/Next",
            "/kv.Counter/Next"
        ]
    );
}

#[test]
fn redacted_values_are_hidden_with_their_raw_bytes() {
    let dir = support::tmpdir();
    let rec = dir.path().join("kv.jsonl");
    let (code, log) = record(
        dir.path(),
        &support::spec("goplugin-client-kv.json"),
        &rec,
        "--redact value",
        "",
    );
    assert_eq!(code, 0, "{log}");
    // The wrapper's log lines reach the host's stderr marked [plugin].
    let wrapper_log: Vec<_> = log.lines().filter(|l| l.contains("[plugin]")).collect();
    assert!(
        wrapper_log
            .iter()
            .any(|l| l.contains("kv.GetResponse {\"value\":\"[redacted]\"}")),
        "{log}"
    );
    assert!(
        !wrapper_log.iter().any(|l| l.contains("aGVsbG8=")),
        "the log hides it too:\n{log}"
    );
    let reader = Reader::open(&rec).unwrap();
    assert_eq!(reader.header().redact, ["value"]);
    let mut hidden = 0;
    for l in lines(&rec) {
        let Line::Frame(f) = l else { continue };
        let text = f.msg.value.to_string();
        assert!(!text.contains("aGVsbG8="), "{text}");
        if f.redacted {
            hidden += 1;
            assert!(f.raw.is_none());
            assert_eq!(f.msg.value["json"]["value"], "[redacted]");
        } else if f.msg.kind == Kind::GrpcMessage {
            assert!(f.raw.is_some());
        }
    }
    // Put, two Gets, three Watch replies.
    assert_eq!(hidden, 6);
}

#[test]
fn a_plugin_dying_mid_call_leaves_a_complete_recording() {
    let dir = support::tmpdir();
    let proto = support::root().join("tests/peers/goplugin/kv.proto");
    let spec = client_spec(
        dir.path(),
        "die.json",
        &format!(
            r#"{{"protocol": "go-plugin", "role": "client",
  "handshake": {{"magic_cookie_key": "BASIC_PLUGIN", "magic_cookie_value": "hello", "app_versions": [1]}},
  "schema": {{"proto": ["{}"]}},
  "calls": [
    {{"method": "kv.KV/Put", "request": {{"key": "a", "value": "aGk="}}}},
    {{"method": "kv.KV/Put", "request": {{"key": "doom", "value": "aGk="}}}}
  ]}}"#,
            proto.display()
        ),
    );
    let rec = dir.path().join("die.jsonl");
    let (code, log) = record(dir.path(), &spec, &rec, "", "env KV_PLUGIN_DIE_ON_PUT=doom");
    assert_eq!(code, 1, "the second call fails:\n{log}");
    let lines = lines(&rec);
    // The call the plugin died in: its request, then a reset, no status.
    let doom: Vec<_> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Frame(f) if f.msg.id == Some(9) && f.conn == 1 => Some(f.msg.kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        doom,
        [Kind::GrpcOpen, Kind::GrpcMessage, Kind::GrpcReset],
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(
            |l| matches!(l, Line::Stderr(e) if e.text.contains("dying in the middle of a call"))
        )
    );
    assert!(
        lines
            .iter()
            .any(|l| matches!(l, Line::Close(c) if c.conn == 1))
    );
    match lines.last() {
        Some(Line::End(e)) => assert_eq!(e.reason, "the plugin exited (exit code 3)"),
        other => panic!("no end line: {other:?}"),
    }
    let out = support::run(dir.path(), &["show", rec.to_str().unwrap()]);
    assert_eq!(out.code, 0);
    assert!(
        out.stdout
            .contains("plugin→host RESET /kv.KV/Put (the plugin failed the stream"),
        "{}",
        out.stdout
    );
    // Export keeps the call that got its status and says why the other is missing.
    let out = support::run(
        dir.path(),
        &["export", rec.to_str().unwrap(), "--as", "client"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("kv.KV/Put was cut short (no status); left out"),
        "{}",
        out.stderr
    );
    let spec: serde_json::Value =
        serde_json::from_str(out.stdout.split_once('\n').unwrap().1).unwrap();
    assert_eq!(spec["calls"].as_array().unwrap().len(), 1, "{spec}");
}

#[test]
fn a_refused_handshake_is_recorded_with_the_hosts_error() {
    let dir = support::tmpdir();
    let rec = dir.path().join("bad.jsonl");
    let script = dir.path().join("bad.sh");
    std::fs::write(&script, "echo '2|1|unix|/tmp/x.sock|grpc'\nsleep 0.2\n").unwrap();
    let out = support::run(
        dir.path(),
        &[
            "proxy",
            "--protocol",
            "go-plugin",
            "--record",
            rec.to_str().unwrap(),
            "--",
            "sh",
            script.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "the plugin's exit code: {}", out.stderr);
    assert_eq!(out.stdout, "2|1|unix|/tmp/x.sock|grpc\n");
    let lines = lines(&rec);
    let hs = lines
        .iter()
        .find_map(|l| match l {
            Line::Handshake(h) => Some(h.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(hs.original, "2|1|unix|/tmp/x.sock|grpc");
    assert_eq!(hs.rewritten, None);
    assert!(
        hs.error.as_deref().unwrap().starts_with(
            "incompatible core API version with plugin. Plugin version: 2, Core version: 1"
        ),
        "{hs:?}"
    );
    assert!(matches!(lines.last(), Some(Line::End(e)) if e.reason.contains("refused")));
}

#[test]
fn while_recording_stderr_still_passes_byte_for_byte() {
    let dir = support::tmpdir();
    let script = dir.path().join("plugin.sh");
    std::fs::write(
        &script,
        "printf 'line one \\377\\n{\"@level\":\"info\"}\\npartial' >&2\n\
         echo '1|1|unix|/tmp/plugtap-test-nope.sock|grpc'\nsleep 0.3\n",
    )
    .unwrap();
    let rec = dir.path().join("r.jsonl");
    let out = std::process::Command::new(support::bin())
        .current_dir(dir.path())
        .env("PLUGIN_UNIX_SOCKET_DIR", dir.path())
        .args(["-q", "proxy", "--protocol", "go-plugin", "--record"])
        .arg(&rec)
        .arg("--")
        .arg("sh")
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    // Exactly the plugin's bytes: invalid UTF-8 and a last line without
    // its newline included (plugtap itself is quiet with -q).
    assert_eq!(
        out.stderr,
        b"line one \xff\n{\"@level\":\"info\"}\npartial".to_vec()
    );
    let text: Vec<String> = lines(&rec)
        .into_iter()
        .filter_map(|l| match l {
            Line::Stderr(e) => Some(e.text),
            _ => None,
        })
        .collect();
    assert_eq!(
        text,
        ["line one \u{fffd}", "{\"@level\":\"info\"}", "partial"]
    );
}

#[test]
fn replay_modes_are_refused_for_go_plugin_with_a_pointer_to_export() {
    let dir = support::tmpdir();
    let out = support::run(
        dir.path(),
        &[
            "proxy",
            "--protocol",
            "go-plugin",
            "--mode",
            "replay",
            "--",
            "true",
        ],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("plugtap export REC --as server"),
        "{}",
        out.stderr
    );
}
