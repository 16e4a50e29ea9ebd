//! ProtoBuf:1 faults end to end: hostile and malformed frames, replies of
//! the wrong type, PDK methods Kong does not know, sequences not echoed and
//! bad specs, each reported clearly by the built binary without a crash.

use std::os::unix::net::UnixListener;
use std::time::Duration;

use serde_json::Value as Json;

use crate::support;
use crate::support::pb::{connect, read_frame, unhex, write_frame, write_frames};

#[test]
fn client_reports_unknown_pdk_method_and_sequence_mismatch() {
    let dir = support::tmpdir();
    let socket = dir.path().join("raw.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let spec = dir.path().join("c.json");
    std::fs::write(
        &spec,
        r#"{"role": "client", "protocol": "ProtoBuf:1", "try_methods": [
              {"method": "cmd_handle_event", "params": {"instanceId": 1, "eventName": "access"}},
              {"method": "cmd_close_instance", "params": {"instanceId": 1}}
            ]}"#,
    )
    .unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        read_frame(&mut s).unwrap();
        // Name and (empty) args in one write: the client may give up as
        // soon as it reads the name.
        write_frames(&mut s, &[b"kong.request.get_everything", &[]]);
        // Kong never replies to a method it does not know; it drops the connection.
        assert_eq!(read_frame(&mut s), None);
        // The next call comes on a new connection, as from Kong's pool.
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let close = read_frame(&mut s).unwrap();
        assert_eq!(close[..2], [0x08, 0x03]);
        write_frame(&mut s, &unhex("08 09"));
        assert_eq!(read_frame(&mut s), None);
    });
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--json",
        ],
    );
    peer.join().unwrap();
    assert_eq!(out.code, 1, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    let f0 = report["steps"][0]["failures"][0]["message"]
        .as_str()
        .unwrap();
    assert!(
        f0.contains(r#"method "kong.request.get_everything" not found"#),
        "{f0}"
    );
    let f1 = report["steps"][1]["failures"][0]["message"]
        .as_str()
        .unwrap();
    assert!(
        f1.contains("sequence 9 does not echo the call's sequence 3"),
        "{f1}"
    );
}

#[test]
fn server_reports_a_reply_of_the_wrong_type() {
    let dir = support::tmpdir();
    let spec = dir.path().join("s.json");
    std::fs::write(
        &spec,
        r#"{"role": "server", "protocol": "ProtoBuf:1", "on_methods": {"cmd_handle_event": [
              {"pdk": [{"method": "kong.request.get_header", "args": {"v": "host"}},
                       {"method": "kong.response.set_status", "args": {"v": 204}}],
               "result": {}}]}}"#,
    )
    .unwrap();
    let mut server = support::mock_server(dir.path(), &spec, "s.sock", &[]);
    let mut s = connect(&dir.path().join("s.sock"));
    write_frame(
        &mut s,
        &unhex("08 03 a2 02 0a 08 07 12 06 61 63 63 65 73 73"),
    );
    assert_eq!(read_frame(&mut s).unwrap(), b"kong.request.get_header");
    assert_eq!(read_frame(&mut s).unwrap(), unhex("0a 04 68 6f 73 74"));
    write_frame(&mut s, &[0x08, 0x01]); // Bool{v: true}, not a String
    assert_eq!(read_frame(&mut s).unwrap(), b"kong.response.set_status");
    assert_eq!(read_frame(&mut s).unwrap(), unhex("08 cc 01"));
    write_frame(&mut s, &[]);
    assert_eq!(read_frame(&mut s).unwrap(), b"", "end of PDK calls");
    assert_eq!(
        read_frame(&mut s).unwrap(),
        unhex("08 03"),
        "the sequence is echoed"
    );
    drop(s);
    server.wait_for_stderr("reply to kong.request.get_header does not decode");
    assert_eq!(
        server.interrupt(),
        1,
        "a failed expectation: {}",
        server.stderr()
    );
    let err = server.stderr();
    assert!(err.contains("kong_plugin_protocol.String"), "{err}");
    assert!(
        err.contains("1 PDK replies from the client did not meet expectations"),
        "{err}"
    );
}

#[test]
fn server_survives_hostile_frames() {
    let dir = support::tmpdir();
    let mut server = support::mock_server(
        dir.path(),
        &support::spec("pb-mock-go-peer.json"),
        "s.sock",
        &["--max-message", "65536"],
    );
    let socket = dir.path().join("s.sock");
    // A length far above the limit: refused at once, connection closed.
    let mut s = connect(&socket);
    std::io::Write::write_all(&mut s, &[0xff, 0xff, 0xff, 0x7f]).unwrap();
    assert_eq!(read_frame(&mut s), None);
    server.wait_for_stderr("too large: 2147483647 bytes declared or buffered, limit 65536");
    // Bytes that are not an RpcCall: go-pdk closes; so does the mock.
    let mut s = connect(&socket);
    write_frame(&mut s, &[0x08, 0xff]);
    assert_eq!(read_frame(&mut s), None);
    server.wait_for_stderr("not a valid kong_plugin_protocol.RpcCall");
    // A frame cut short by the peer's close.
    let mut s = connect(&socket);
    std::io::Write::write_all(&mut s, &[10, 0, 0, 0, 0x08, 0x02, 0x8a]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_frame(&mut s), None);
    server.wait_for_stderr("stream ended in the middle of a message");
    // Other connections are served as usual.
    let mut s = connect(&socket);
    write_frame(&mut s, &unhex("08 04 9a 02 02 08 07"));
    let ret = read_frame(&mut s).unwrap();
    assert_eq!(ret[..4], [0x08, 0x04, 0x8a, 0x02]);
    drop(s);
    assert_eq!(server.interrupt(), 0, "{}", server.stderr());
}

#[test]
fn bad_protobuf_specs_are_refused_before_listening() {
    let dir = support::tmpdir();
    let cases = [
        (
            "server",
            r#"{"protocol": "ProtoBuf:1", "on_methods": {"plugin.StartInstance": [{"result": {}}]}}"#,
            "on_methods key `plugin.StartInstance` is not an RpcCall command",
        ),
        (
            "server",
            r#"{"protocol": "ProtoBuf:1", "on_methods": {"cmd_start_instance": [{"result": {"instanceStatus": {"instanceId": "x"}}}]}}"#,
            "on_methods[\"cmd_start_instance\"][0].result",
        ),
        (
            "server",
            r#"{"protocol": "ProtoBuf:1", "on_methods": {"cmd_handle_event": [{"pdk": [{"method": "kong.request.get_header", "args": {"k": 1}}]}]}}"#,
            "on_methods[\"cmd_handle_event\"][0].pdk[0].args",
        ),
        (
            "client",
            r#"{"protocol": "ProtoBuf:1", "on_pdk": {"kong.request.get_header": [{"result": {"v": 5}}]}, "try_methods": []}"#,
            "on_pdk[\"kong.request.get_header\"][0].result",
        ),
    ];
    for (role, text, expected) in cases {
        let spec = dir.path().join("bad.json");
        std::fs::write(&spec, text).unwrap();
        let socket = dir.path().join("x.sock");
        let mut args = vec![role, "--spec", spec.to_str().unwrap(), "--socket"];
        args.push(socket.to_str().unwrap());
        let out = support::run(dir.path(), &args);
        assert_eq!(out.code, 2, "{text}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{text}: {}", out.stderr);
        assert!(!socket.exists());
    }
}
