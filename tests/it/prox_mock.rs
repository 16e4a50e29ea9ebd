//! The mock prox plugin's own behaviour where a spec says little: the SDK's
//! replies for hooks without entries, entries that close the connection, a
//! `ready` without acknowledgement, and a clean stop on SIGTERM while prox
//! still holds its stdin open.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support;
use crate::support::prox::{MockPlugin, connect, read_frame, unhex, write_frame};

const SPEC: &str = r#"{
  "role": "server", "protocol": "prox",
  "prox": {"ack": false, "hooks": ["on_request", "on_response"]},
  "on_methods": {
    "on_request": [
      {"match": {"path": "/close"}, "error": "boom"},
      {"match": {"path": "/slow"}, "result": {"allow": true}, "delay_ms": 150},
      {"match": {"path": "/x"}, "result": {"allow": false, "status": 401}}
    ]
  }
}"#;

/// {r, m, p, d, a, h} with path `path`, as prox's Go encoder writes it.
fn on_request(path: &str) -> Vec<u8> {
    let mut inner = vec![0x86];
    for (k, v) in [
        ("r", "web:0"),
        ("m", "GET"),
        ("p", path),
        ("d", ""),
        ("a", ""),
    ] {
        inner.extend_from_slice(&[0xa0 | k.len() as u8]);
        inner.extend_from_slice(k.as_bytes());
        inner.push(0xa0 | v.len() as u8);
        inner.extend_from_slice(v.as_bytes());
    }
    inner.extend_from_slice(&[0xa1, b'h', 0x80]);
    let mut env = vec![
        0x82,
        0xa1,
        b't',
        0xcc,
        0x01,
        0xa1,
        b'd',
        0xc4,
        inner.len() as u8,
    ];
    env.extend_from_slice(&inner);
    env
}

#[test]
fn the_mock_does_what_the_sdk_does_where_the_spec_is_silent() {
    let dir = support::tmpdir();
    let spec = dir.path().join("m.json");
    std::fs::write(&spec, SPEC).unwrap();
    let socket = dir.path().join("m.sock");
    let mut mock = MockPlugin::start(dir.path(), &spec, &["--socket", socket.to_str().unwrap()]);
    mock.send(r#"{"method":"configure","params":{"route_id":"web:0"}}"#);
    // No acknowledgement: `ready` comes first, with the spec's hooks.
    let ready = mock.json();
    assert_eq!(ready["method"], "ready");
    assert_eq!(
        ready["params"]["hooks"],
        serde_json::json!(["on_request", "on_response"])
    );
    let mut s = connect(&socket);
    // An entry that matches.
    write_frame(&mut s, &on_request("/x"));
    assert_eq!(
        read_frame(&mut s).unwrap(),
        unhex("82 a2 6f 6b c2 a1 73 cd 01 91")
    );
    // No entry matches: the SDK's reply without a handler, allow.
    write_frame(&mut s, &on_request("/other"));
    assert_eq!(read_frame(&mut s).unwrap(), unhex("81 a2 6f 6b c3"));
    mock.wait_for_stderr("no entry for on_request matches");
    // A hook without entries: no changes.
    write_frame(&mut s, &unhex("82 a1 74 cc 02 a1 64 c4 01 80"));
    assert_eq!(read_frame(&mut s).unwrap(), [0x80]);
    // delay_ms holds the reply back.
    let started = std::time::Instant::now();
    write_frame(&mut s, &on_request("/slow"));
    assert_eq!(read_frame(&mut s).unwrap(), unhex("81 a2 6f 6b c3"));
    assert!(started.elapsed() >= Duration::from_millis(150));
    // An entry with an error and no result closes the connection.
    write_frame(&mut s, &on_request("/close"));
    assert_eq!(read_frame(&mut s), None);
    mock.wait_for_stderr("has no result (error \"boom\"): closing the connection");
    // SIGTERM stops the mock although prox keeps its stdin open.
    kill(Pid::from_raw(mock.pid() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(
        mock.wait_exit(Duration::from_secs(5)),
        Some(0),
        "{}",
        mock.stderr()
    );
    assert!(!socket.exists(), "the socket is removed");
}
