//! `plugtap check` over ProtoBuf:1, against the Python go-pdk stand-in
//! and plugtap's pb mock.

use serde_json::Value as Json;

use crate::pb_kong::{go_peer_cmd, mock};
use crate::support;

#[test]
fn check_speaks_protobuf_to_the_stand_in_and_to_the_stateless_mock() {
    let dir = support::tmpdir();
    let d = dir.path();
    let python = support::root().join(".venv-proto/bin/python");
    let query = format!(
        "{} {} -dump",
        python.display(),
        support::root().join("tests/peers/go_pdk/go-peer").display()
    );
    let socket = d.join("go-peer.socket");
    let out = support::run(
        d,
        &[
            "check",
            "--socket",
            socket.to_str().unwrap(),
            "--plugin",
            "go-peer",
            "--start-cmd",
            &go_peer_cmd(d),
            "--query-cmd",
            &query,
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    // The query output's Protocol picks the checks' protocol.
    assert_eq!(report["protocol"], "ProtoBuf:1");
    let status = |r: &Json, name: &str| {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for name in [
        "query_output",
        "socket",
        "start_instance",
        "event",
        "concurrent_events",
        "unknown_instance",
        "close_instance",
        "no_unsolicited_bytes",
        "malformed_request",
    ] {
        assert_eq!(status(&report, name), "pass", "{name}: {}", out.stderr);
    }
    assert_eq!(status(&report, "steps_across_connections"), "skip");

    // The mock answers every event for instance 7, even after closing it.
    let mut server = support::mock_server(d, &support::spec("pb-mock-go-peer.json"), "m.sock", &[]);
    let out = support::run(
        d,
        &[
            "check",
            "--socket",
            d.join("m.sock").to_str().unwrap(),
            "--plugin",
            "go-peer",
            "--protocol",
            "ProtoBuf:1",
            "--json",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(status(&report, "event"), "pass");
    assert_eq!(status(&report, "close_instance"), "fail");
    assert!(
        out.stderr.contains("requests run on a stale instance"),
        "{}",
        out.stderr
    );
    assert_eq!(server.interrupt(), 0);
}

#[test]
fn check_fails_a_stray_frame_after_a_reply() {
    let dir = support::tmpdir();
    let d = dir.path();
    // An empty frame nobody asked for follows close's RpcReturn; bad
    // bytes only cost their connection (the mock closes it, as go-pdk).
    let mut server = mock(
        d,
        r#"{"cmd_start_instance": [{"result": {"instanceStatus": {"name": "go-peer", "instanceId": 4}}}],
            "cmd_handle_event": [{"match": {"instanceId": 4}, "result": {}}],
            "cmd_close_instance": [{"garbage": {"hex": "00000000", "after_reply": true},
                                    "result": {"instanceStatus": {"name": "---", "instanceId": 4}}}]}"#,
    );
    let out = support::run(
        d,
        &[
            "check",
            "--socket",
            d.join("m.sock").to_str().unwrap(),
            "--plugin",
            "go-peer",
            "--protocol",
            "ProtoBuf:1",
            "--json",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        check("no_unsolicited_bytes")["status"],
        "fail",
        "{}",
        out.stderr
    );
    assert!(
        check("no_unsolicited_bytes")["kong"]
            .as_str()
            .unwrap()
            .contains("sequence assertion fails")
    );
    assert_eq!(check("malformed_request")["status"], "pass");
    assert_eq!(server.interrupt(), 0);
}
