//! Against a real pluginserver written by others: the Python server from
//! PyPI's kong-pdk, hosting tests/peers/python/hello_peer.py.

use serde_json::Value as Json;

use crate::support;

#[test]
fn full_event_cycle_against_the_python_server() {
    let dir = support::tmpdir();
    let _peer = support::python_peer(dir.path(), "py.sock");
    let socket = dir.path().join("py.sock");
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            support::spec("client-event-cycle.json").to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    let steps = report["steps"].as_array().unwrap();
    let methods: Vec<_> = steps
        .iter()
        .map(|s| s["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        [
            "plugin.GetPluginInfo",
            "plugin.StartInstance",
            "plugin.HandleEvent",
            "plugin.Step",
            "plugin.Step",
            "plugin.CloseInstance",
            "plugin.HandleEvent"
        ]
    );
    // The real server's answers, as seen through the lossless mapping.
    assert!(steps[1]["result"]["StartTime"].is_f64());
    assert_eq!(steps[4]["result"]["Data"], "ret");
    assert!(
        steps[6]["error"]
            .as_str()
            .unwrap()
            .starts_with("no plugin instance #")
    );
}

#[test]
fn the_client_starts_and_stops_the_python_server_itself() {
    let dir = support::tmpdir();
    let cmd = support::python_peer_cmd(dir.path(), "own.sock");
    let socket = dir.path().join("own.sock");
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            support::spec("client-event-cycle.json").to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--start-cmd",
            &cmd,
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("7 steps: 7 passed"), "{}", out.stderr);
    assert!(out.stderr.contains("ended ("), "{}", out.stderr);
}

#[test]
fn the_mock_answers_like_the_real_server() {
    // The same client spec passes against specs/mock-hello.json.
    let dir = support::tmpdir();
    let mut mock = support::mock_server(
        dir.path(),
        &support::spec("mock-hello.json"),
        "mock.sock",
        &[],
    );
    let socket = dir.path().join("mock.sock");
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            support::spec("client-event-cycle.json").to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(mock.interrupt(), 0);
}
