//! ProtoBuf:1 roles end to end: the built binary on temporary sockets,
//! client against server and against a raw peer that checks bytes
//! (faults are in `pb_faults.rs`).

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

#[test]
fn exit_is_never_answered_and_ends_the_event() {
    let dir = support::tmpdir();
    let spec = dir.path().join("s.json");
    std::fs::write(
        &spec,
        r#"{"role": "server", "protocol": "ProtoBuf:1", "on_methods": {"cmd_handle_event": [
              {"pdk": [{"method": "kong.response.exit",
                        "args": {"status": 403, "body": "ZGVuaWVk", "headers": {"x-why": "test"}}}],
               "result": {}}]}}"#,
    )
    .unwrap();
    let mut server = support::mock_server(dir.path(), &spec, "s.sock", &[]);
    let client = dir.path().join("c.json");
    std::fs::write(
        &client,
        r#"{"role": "client", "protocol": "ProtoBuf:1", "try_methods": [
              {"method": "cmd_handle_event", "params": {"instanceId": 1, "eventName": "access"},
               "expect": {"result": {"exit": {"status": 403, "headers": {"x-why": "test"}}}}},
              {"method": "cmd_handle_event", "params": {"instanceId": 1, "eventName": "access"}}
            ]}"#,
    )
    .unwrap();
    let socket = dir.path().join("s.sock");
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            client.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        report["steps"][0]["pdk"],
        json!([{"method": "kong.response.exit", "no_reply": true,
                "args": {"status": 403, "body": "ZGVuaWVk", "headers": {"x-why": "test"}}}])
    );
    assert!(
        out.stderr
            .contains("Kong ends the request and abandons the event")
    );
    assert_eq!(server.interrupt(), 0, "{}", server.stderr());
    // Two events, each on its own connection: Kong does not reuse one after exit.
    assert_eq!(server.stdout().lines().count(), 2, "{}", server.stdout());
}

#[test]
fn value_replies_carry_kongs_null() {
    use plugtap::message::protobuf::PdkMethod;
    let get = PdkMethod::named("kong.ctx.shared.get").unwrap();
    assert_eq!(get.encode_reply(&Json::Null).unwrap(), [0x08, 0x01]);
    assert_eq!(get.decode_reply(&[0x08, 0x01]).unwrap(), Json::Null);
    assert_eq!(get.decode_reply(&[0x08, 0x00]).unwrap(), Json::Null);
    let struct_reply = get.encode_reply(&json!({"a": 1})).unwrap();
    assert_eq!(get.decode_reply(&struct_reply).unwrap(), json!({"a": 1.0}));
    let header = PdkMethod::named("kong.request.get_header").unwrap();
    assert_eq!(
        header.encode_reply(&Json::Null).unwrap(),
        b"",
        "nil is an empty frame"
    );
}
