//! ProtoBuf:1 roles end to end: the built binary on temporary sockets,
//! client against server, each against a raw peer that checks bytes, and
//! faults on either side.

use std::os::unix::net::UnixListener;
use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::support;
use crate::support::pb::{connect, read_frame, unhex, write_frame};

#[test]
fn full_event_cycle_between_client_and_server_roles() {
    let dir = support::tmpdir();
    let mut server = support::mock_server(
        dir.path(),
        &support::spec("pb-mock-go-peer.json"),
        "s.sock",
        &[],
    );
    let socket = dir.path().join("s.sock");
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            support::spec("pb-client-event-cycle.json")
                .to_str()
                .unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    let steps = report["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["status"] == "passed"), "{report:#}");
    assert_eq!(
        steps
            .iter()
            .map(|s| s["msgid"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [2, 3, 4, 5],
        "sequences start at 2, as Kong's"
    );
    assert_eq!(steps[0]["result"]["instanceStatus"]["instanceId"], 7);
    // The mock plugin used Kong's reply to get_header in its set_header.
    assert_eq!(
        steps[1]["pdk"],
        json!([
            {"method": "kong.request.get_header", "args": {"v": "host"}, "reply": {"v": "example.test"}},
            {"method": "kong.response.set_header", "args": {"k": "x-peer-go", "v": "hello example.test"}, "reply": null}
        ])
    );
    assert_eq!(steps[3]["error"], "closed");
    assert!(
        out.stderr.contains("4 steps: 4 passed, 0 failed"),
        "{}",
        out.stderr
    );

    assert_eq!(server.interrupt(), 0, "{}", server.stderr());
    let stdout = server.stdout();
    let conns: Vec<Json> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(conns.len(), 1, "{stdout}");
    let kinds: Vec<&str> = conns[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["view"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "request",
            "response",
            "request",
            "pdk_call",
            "pdk_args",
            "pdk_reply",
            "pdk_call",
            "pdk_args",
            "pdk_reply",
            "pdk_end",
            "response",
            "request",
            "response",
            "request",
            "closed"
        ]
    );
    assert!(server.stderr().contains("closing the connection"));
}

/// A raw go-pdk stand-in checks the client's bytes against the reference
/// (kong-protocols.md §6.2) and answers with the reference's bytes.
#[test]
fn client_sends_kongs_bytes() {
    let dir = support::tmpdir();
    let socket = dir.path().join("raw.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let spec = dir.path().join("c.json");
    std::fs::write(
        &spec,
        r#"{"role": "client", "protocol": "ProtoBuf:1",
            "on_pdk": {"kong.request.get_header": [{"result": {"v": "localhost:8000"}}]},
            "try_methods": [
              {"method": "cmd_start_instance", "params": {"name": "my-plugin", "config": {}},
               "capture": {"iid": "instanceStatus.instanceId"}},
              {"method": "cmd_handle_event", "params": {"instance_id": "${iid}", "event_name": "access"},
               "expect": {"result": {"sequence": "3"}}}
            ]}"#,
    )
    .unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let start = read_frame(&mut s).unwrap();
        assert_eq!(
            start,
            unhex("08 02 8a 02 0f 0a 09 6d 79 2d 70 6c 75 67 69 6e 12 02 7b 7d")
        );
        write_frame(
            &mut s,
            &unhex("08 02 8a 02 13 0a 09 6d 79 2d 70 6c 75 67 69 6e 10 07 20 80 b3 9a b3 06"),
        );
        let event = read_frame(&mut s).unwrap();
        assert_eq!(event, unhex("08 03 a2 02 0a 08 07 12 06 61 63 63 65 73 73"));
        write_frame(&mut s, b"kong.request.get_header");
        write_frame(&mut s, &unhex("0a 04 68 6f 73 74"));
        let reply = read_frame(&mut s).unwrap();
        assert_eq!(
            reply,
            unhex("0a 0e 6c 6f 63 61 6c 68 6f 73 74 3a 38 30 30 30")
        );
        write_frame(&mut s, b"kong.response.set_header");
        write_frame(&mut s, &unhex("0a 07 78 2d 68 65 6c 6c 6f 12 03 1a 01 78"));
        let reply = read_frame(&mut s).unwrap();
        assert_eq!(reply, b"", "no canned answer: nil, an empty frame");
        write_frame(&mut s, &[]);
        write_frame(&mut s, &unhex("08 03"));
        assert_eq!(read_frame(&mut s), None, "the client closes at the end");
    });
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
        ],
    );
    peer.join().expect("the raw peer saw Kong's bytes");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no on_pdk answer for kong.response.set_header"),
        "{}",
        out.stderr
    );
}

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
        write_frame(&mut s, b"kong.request.get_everything");
        write_frame(&mut s, &[]);
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

#[test]
fn protocol_flag_overrides_the_spec() {
    let dir = support::tmpdir();
    // A ProtoBuf:1 mock from a spec that names no protocol.
    let spec = dir.path().join("s.json");
    std::fs::write(
        &spec,
        r#"{"role": "server", "on_methods": {"cmd_close_instance": [{"result": {}}]}}"#,
    )
    .unwrap();
    let mut server =
        support::mock_server(dir.path(), &spec, "s.sock", &["--protocol", "ProtoBuf:1"]);
    let mut s = connect(&dir.path().join("s.sock"));
    write_frame(&mut s, &unhex("08 02 9a 02 02 08 07"));
    assert_eq!(read_frame(&mut s).unwrap(), unhex("08 02"));
    drop(s);
    assert_eq!(server.interrupt(), 0);
}
