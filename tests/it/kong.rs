//! The client role's Kong emulation (`kong` section), end to end against
//! the real Python pluginserver (mocks that misbehave: `kong_mock.rs`).

use serde_json::{Value as Json, json};

use crate::support::{self, specfile};

pub(crate) fn run_client(
    dir: &std::path::Path,
    spec: &std::path::Path,
    socket: &std::path::Path,
    extra: &[&str],
) -> support::Output {
    let mut args = vec![
        "client",
        "--spec",
        spec.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    support::run(dir, &args)
}

pub(crate) fn report(out: &support::Output) -> Json {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr))
}

#[test]
fn one_line_spec_runs_a_request_through_the_python_plugin() {
    let dir = support::tmpdir();
    let _peer = support::python_peer(dir.path(), "hello.sock");
    let socket = dir.path().join("hello.sock");
    let out = run_client(dir.path(), &support::spec("kong-hello.json"), &socket, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // What the plugin asked Kong, and what it set, for people...
    assert!(
        out.stderr
            .contains("kong.request.get_header(\"host\") → \"localhost:8000\" (plugin.Step)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("\"x-hello\":\"hi localhost:8000\""),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("1 request(s), 1 phase(s): 1 completed"));
    // ...and for machines.
    let r = report(&out);
    assert_eq!(r["passed"], true);
    let calls = &r["requests"][0]["phases"][0]["calls"];
    assert_eq!(calls[0]["method"], "kong.request.get_header");
    assert_eq!(calls[0]["answer"], "localhost:8000");
    assert_eq!(calls[1]["method"], "kong.response.set_header");
    assert_eq!(calls[1]["args"], json!(["x-hello", "hi localhost:8000"]));
    assert_eq!(calls[1]["answer"], Json::Null);
    assert_eq!(calls[1]["step"], "plugin.Step");
    assert_eq!(
        r["requests"][0]["response"]["headers"]["x-hello"],
        "hi localhost:8000"
    );
}

#[test]
fn instances_are_reused_then_replaced_on_a_config_change() {
    let dir = support::tmpdir();
    let socket = dir.path().join("hello.sock");
    let cmd = support::python_peer_cmd(dir.path(), "hello.sock");
    let out = run_client(
        dir.path(),
        &support::spec("kong-requests.json"),
        &socket,
        &["--start-cmd", &cmd],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = report(&out);
    let life: Vec<(u64, &str)> = r["lifecycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["request"].as_u64().unwrap(),
                l["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        life,
        [
            (1, "start"),
            (3, "config_change"),
            (3, "start"),
            (3, "close")
        ]
    );
    let ids: Vec<&Json> = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| &q["phases"][0]["instance_id"])
        .collect();
    assert_eq!(ids, [&json!(0), &json!(0), &json!(1)]);
    assert_eq!(r["lifecycle"][2]["seq"], 2);
    assert_eq!(r["lifecycle"][3]["instance_id"], 0);
    assert_eq!(
        r["requests"][0]["url"],
        "http://example.com:8000/hello?lang=en&debug"
    );
}

#[test]
fn a_failed_expectation_exits_1_with_a_diff() {
    let dir = support::tmpdir();
    let _peer = support::python_peer(dir.path(), "hello.sock");
    let spec = specfile::write(
        dir.path(),
        "expect.json",
        &json!({"role": "client", "kong": {"plugin": "hello_peer",
            "expect": {"requests": [{"response": {"headers": {"x-hello": "bye"}}}]}}}),
    );
    let out = run_client(dir.path(), &spec, &dir.path().join("hello.sock"), &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("does not match `expect`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "$.requests[0].response.headers[\"x-hello\"]: expected \"bye\", got \"hello localhost:8000\""
        ),
        "{}",
        out.stderr
    );
}

/// Runs two requests through tests/peers/python_boom: the first with
/// `boom` set to `first`, the second after a config change to no boom.
fn boom(first: Json) -> Json {
    let dir = support::tmpdir();
    let exe = support::python_pluginserver();
    let plugins = support::root().join("tests/peers/python_boom");
    let cmd = format!(
        "{} -d {} -p {} --socket-name boom.sock",
        exe.display(),
        plugins.display(),
        dir.path().display()
    );
    let spec = specfile::write(
        dir.path(),
        "boom.json",
        &json!({"role": "client", "kong": {"plugin": "boom", "config": {"boom": first},
            "requests": [{}, {"config": {"boom": false}}]}}),
    );
    let out = run_client(
        dir.path(),
        &spec,
        &dir.path().join("boom.sock"),
        &["--start-cmd", &cmd, "--timeout", "2"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let r = report(&out);
    // The second request runs on a new instance either way: starting it
    // and closing the old one work (they take another lock).
    let actions: Vec<&str> = r["lifecycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["start", "config_change", "start", "close"]);
    r
}

fn phase(r: &Json, request: usize) -> &Json {
    &r["requests"][request]["phases"][0]
}

/// kong-pdk 0.36 (threaded mode) holds a global lock in HandleEvent until
/// the plugin's first PDK call. A plugin that raises before that call
/// never releases it: that request gets no answer (Kong: `no data` after
/// 60 s, as the reference says), and neither does *any later event on
/// the server*, even on another, healthy instance. The reference only
/// describes the first part.
#[test]
fn python_server_hangs_for_good_after_an_early_plugin_exception() {
    let r = boom(json!(true));
    for i in 0..2 {
        assert_eq!(phase(&r, i)["status"], "failed", "{r}");
        assert!(
            phase(&r, i)["error"]
                .as_str()
                .unwrap()
                .contains("no reply to plugin.HandleEvent"),
            "{r}"
        );
    }
}

/// After the first PDK call the lock is free: an exception then leaves
/// only its own event without an answer, as the reference says.
#[test]
fn python_server_survives_a_late_plugin_exception() {
    let r = boom(json!("late"));
    assert_eq!(phase(&r, 0)["status"], "failed");
    assert!(
        phase(&r, 0)["error"]
            .as_str()
            .unwrap()
            .contains("no reply to plugin.Step"),
        "{r}"
    );
    assert_eq!(phase(&r, 1)["status"], "completed", "{r}");
    assert_eq!(r["requests"][1]["response"]["headers"]["x-ok"], "1");
}

#[test]
fn a_missing_server_is_a_runtime_error() {
    let dir = support::tmpdir();
    let out = run_client(
        dir.path(),
        &support::spec("kong-hello.json"),
        &dir.path().join("none.sock"),
        &["--wait", "0.2"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("waiting for"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}
