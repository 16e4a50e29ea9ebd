//! The Kong emulation over ProtoBuf:1, end to end against plugtap's pb
//! server role and a raw go-pdk stand-in: instance lifecycle, typed PDK
//! answers, the reset on a closed connection, unknown PDK methods.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value as Json, json};

use crate::support;
use crate::support::pb::{read_frame, unhex, write_frame, write_frames};

fn kong_run(dir: &Path, spec: &Path, socket: &Path) -> (support::Output, Json) {
    let out = support::run(
        dir,
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--timeout",
            "5",
            "--json",
        ],
    );
    let report = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    (out, report)
}

fn actions(report: &Json) -> Vec<&str> {
    report["lifecycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect()
}

#[test]
fn requests_run_through_the_pb_mock_with_kongs_lifecycle_and_answers() {
    let dir = support::tmpdir();
    let d = dir.path();
    let mut server =
        support::mock_server(d, &support::spec("pb-mock-go-peer.json"), "gp.sock", &[]);
    let (out, report) = kong_run(
        d,
        &support::spec("pb-kong-go-peer.json"),
        &d.join("gp.sock"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(report["protocol"], "ProtoBuf:1");
    assert_eq!(
        actions(&report),
        ["start", "config_change", "start", "close"]
    );
    let access = &report["requests"][0]["phases"][0];
    assert_eq!(access["status"], "completed");
    assert_eq!(access["instance_id"], 7);
    assert_eq!(
        access["calls"],
        json!([
            {"method": "kong.request.get_header", "args": ["host"], "answer": "example.test", "source": "default"},
            {"method": "kong.response.set_header", "args": ["x-peer-go", "hello example.test"], "answer": null, "source": "default"}
        ])
    );
    assert!(
        out.stderr
            .contains("kong.request.get_header(\"host\") → \"example.test\""),
        "{}",
        out.stderr
    );

    assert_eq!(server.interrupt(), 0, "{}", server.stderr());
    let messages: Vec<Json> = server
        .stdout()
        .lines()
        .flat_map(|l| {
            let c: Json = serde_json::from_str(l).unwrap();
            c["messages"].as_array().unwrap().clone()
        })
        .collect();
    let views: Vec<&Json> = messages.iter().map(|m| &m["view"]).collect();
    // Sequences count from 2 on the worker's connection.
    assert_eq!(views[0]["id"], 2);
    let start = &views[0]["value"]["cmdStartInstance"];
    assert_eq!(start["name"], "go-peer");
    let config: Json = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(start["config"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(config["greeting"], "hello");
    assert_eq!(config["__seq__"], 1);
    assert!(config["__plugin_id"].is_string() && config["__key__"].is_string());
    // Kong's reply to get_header is a String; set_header's nil an empty frame.
    let replies: Vec<&Json> = views
        .iter()
        .filter(|v| v["kind"] == "pdk_reply")
        .map(|v| &v["value"])
        .collect();
    assert_eq!(replies[0], &json!({"v": "example.test"}));
    assert_eq!(replies[1], &json!({}));
    let closes = views
        .iter()
        .filter(|v| v["method"] == "cmd_close_instance" && v["kind"] == "request")
        .count();
    assert_eq!(closes, 1);
}

pub(crate) fn mock(dir: &Path, on_methods: &str) -> support::Proc {
    let spec = dir.join("mock.json");
    std::fs::write(
        &spec,
        format!(
            r#"{{"role": "server", "protocol": "ProtoBuf:1", "cycle": "global", "on_methods": {on_methods}}}"#
        ),
    )
    .unwrap();
    support::mock_server(dir, &spec, "m.sock", &[])
}

fn one_line(dir: &Path) -> std::path::PathBuf {
    let spec = dir.join("kong.json");
    std::fs::write(
        &spec,
        r#"{"role": "client", "protocol": "ProtoBuf:1", "kong": {"plugin": "go-peer", "request": {"headers": {"host": "example.test"}}}}"#,
    )
    .unwrap();
    spec
}

#[test]
fn a_closed_event_resets_the_instance_and_retries_as_kong_does() {
    let dir = support::tmpdir();
    let d = dir.path();
    let mut server = mock(
        d,
        r#"{"cmd_start_instance": [{"result": {"instanceStatus": {"name": "go-peer", "instanceId": 3}}}],
            "cmd_handle_event": [{"calls": [1], "error": "no plugin instance 3"}, {"result": {}}]}"#,
    );
    let (out, report) = kong_run(d, &one_line(d), &d.join("m.sock"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let access = &report["requests"][0]["phases"][0];
    assert_eq!(access["status"], "completed", "{report:#}");
    assert_eq!(access["resets"], 1);
    assert_eq!(actions(&report), ["start", "reset", "start"]);
    assert!(
        report["lifecycle"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("closed")
    );
    assert_eq!(server.interrupt(), 0);
}

#[test]
fn a_closed_start_instance_fails_the_phase_as_kong_raises() {
    let dir = support::tmpdir();
    let d = dir.path();
    let mut server = mock(d, r#"{"cmd_start_instance": [{"close": true}]}"#);
    let (out, report) = kong_run(d, &one_line(d), &d.join("m.sock"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    let access = &report["requests"][0]["phases"][0];
    assert_eq!(access["status"], "failed");
    assert!(
        access["kong"]
            .as_str()
            .unwrap()
            .contains("starting instance: closed"),
        "{report:#}"
    );
    assert_eq!(server.interrupt(), 0);
}

#[test]
fn an_unknown_pdk_method_fails_the_event_without_a_reply() {
    let dir = support::tmpdir();
    let d = dir.path();
    let socket = d.join("raw.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let peer = std::thread::spawn(move || {
        // The client's readiness probe, then Kong's connection.
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let start = read_frame(&mut s).unwrap();
        assert_eq!(start[..2], [0x08, 0x02]);
        // RpcReturn{sequence 2, instance_status{name "go-peer", instance_id 9}}
        write_frame(&mut s, &unhex("0802 8a02 0b 0a07676f2d70656572 1009"));
        let event = read_frame(&mut s).unwrap();
        assert_eq!(event[..2], [0x08, 0x03]);
        // The method name and its (empty) args in one write: plugtap may
        // give up on the event as soon as it reads the name.
        write_frames(&mut s, &[b"kong.request.get_everything", &[]]);
        // Kong never answers a method it does not know.
        assert_eq!(read_frame(&mut s), None);
    });
    let (out, report) = kong_run(d, &one_line(d), &socket);
    peer.join().unwrap();
    assert_eq!(out.code, 1, "{}", out.stderr);
    let access = &report["requests"][0]["phases"][0];
    assert_eq!(access["status"], "failed");
    assert_eq!(access["calls"][0]["source"], "unknown");
    assert!(
        access["kong"]
            .as_str()
            .unwrap()
            .contains("Kong logs `method \"kong.request.get_everything\" not found`"),
        "{access:#}"
    );
}

/// The command starting the go-pdk stand-in (tests/peers/go_pdk/go-peer, on
/// the official Python protobuf runtime) with its socket in `dir`.
pub fn go_peer_cmd(dir: &Path) -> String {
    let python = support::root().join(".venv-proto/bin/python");
    assert!(
        python.exists(),
        "the Python protobuf runtime is not installed: run scripts/setup-python-protobuf.sh (scripts/test.sh does)"
    );
    format!(
        "{} {} -kong-prefix {}",
        python.display(),
        support::root().join("tests/peers/go_pdk/go-peer").display(),
        dir.display()
    )
}

#[test]
fn kong_emulation_drives_the_python_go_pdk_stand_in() {
    let dir = support::tmpdir();
    let d = dir.path();
    let out = support::run(
        d,
        &[
            "client",
            "--spec",
            support::spec("pb-kong-go-peer.json").to_str().unwrap(),
            "--socket",
            d.join("go-peer.socket").to_str().unwrap(),
            "--start-cmd",
            &go_peer_cmd(d),
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    // The stand-in takes the instance id from __seq__, as go-pdk >= 0.10.
    assert_eq!(report["requests"][0]["phases"][0]["instance_id"], 1);
    assert_eq!(report["requests"][1]["phases"][0]["instance_id"], 2);
    assert_eq!(
        report["requests"][1]["response"]["headers"]["x-peer-go"],
        "bye example.test"
    );
    assert_eq!(
        actions(&report),
        ["start", "config_change", "start", "close"]
    );
}

#[test]
fn answers_have_each_methods_output_type_and_exit_ends_the_request() {
    let dir = support::tmpdir();
    let d = dir.path();
    let mut server = mock(
        d,
        r#"{"cmd_start_instance": [{"result": {"instanceStatus": {"name": "go-peer", "instanceId": 1}}}],
            "cmd_handle_event": [{"pdk": [
              {"method": "kong.request.get_headers", "args": {"v": 10}},
              {"method": "kong.request.get_raw_body"},
              {"method": "kong.ctx.shared.set", "args": {"k": "n", "v": 5}},
              {"method": "kong.ctx.shared.get", "args": {"v": "n"}},
              {"method": "kong.ctx.shared.get", "args": {"v": "missing"}},
              {"method": "kong.request.get_port"},
              {"method": "kong.response.exit", "args": {"status": 403, "body": "bm8=", "headers": {"x-a": "b"}}}
            ], "result": {}}]}"#,
    );
    let spec = d.join("kong.json");
    std::fs::write(
        &spec,
        r#"{"role": "client", "protocol": "ProtoBuf:1", "kong": {"plugin": "go-peer",
            "phases": ["access", "log"],
            "request": {"method": "POST", "body": "hi", "headers": {"h1": ["a", "b"]}}}}"#,
    )
    .unwrap();
    let (out, report) = kong_run(d, &spec, &d.join("m.sock"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let access = &report["requests"][0]["phases"][0];
    assert_eq!(access["status"], "exited");
    assert_eq!(
        access["calls"][6]["args"],
        json!([403, "no", {"x-a": "b"}]),
        "ExitArgs become (status, body, headers)"
    );
    // An exit skips the later phases but the log phase.
    assert_eq!(report["requests"][0]["phases"][1]["phase"], "log");
    assert_eq!(
        report["requests"][0]["response"],
        json!({"source": "exit", "status": 403, "headers": {"x-a": "b"}, "body": "no"})
    );
    assert_eq!(server.interrupt(), 0);
    let replies: Vec<Json> = server
        .stdout()
        .lines()
        .flat_map(|l| {
            let c: Json = serde_json::from_str(l).unwrap();
            c["messages"].as_array().unwrap().clone()
        })
        .filter(|m| m["view"]["kind"] == "pdk_reply")
        .map(|m| m["view"]["value"].clone())
        .take(6)
        .collect();
    assert_eq!(
        replies,
        [
            json!({"h1": ["a", "b"]}),  // Struct
            json!({"content": "aGk="}), // RawBodyResult
            json!({}),                  // Empty
            json!(5.0),                 // Value
            Json::Null,                 // Value: Kong's null_value
            json!({"v": 8000}),         // Int
        ]
    );
}
