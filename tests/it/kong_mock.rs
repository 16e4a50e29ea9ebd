//! The Kong emulation against plugtap's own mock server, scripted to
//! misbehave: resets, serverPid changes, exits, faults, failed starts and
//! events that never end.

use serde_json::{Value as Json, json};

use crate::kong::{report, run_client};
use crate::support::{self, specfile};

/// A mock server from `spec` on `dir/m.sock`.
fn mock(dir: &std::path::Path, spec: Json) -> support::Proc {
    let path = specfile::write(dir, "mock.json", &spec);
    support::mock_server(dir, &path, "m.sock", &[])
}

fn start_ok() -> Json {
    json!([{"result": {"Name": "p", "Id": 0, "Config": {}, "StartTime": 1.0}}])
}

#[test]
fn reset_and_retry_is_bounded_and_reported() {
    let dir = support::tmpdir();
    let mut server = mock(
        dir.path(),
        json!({"role": "server", "on_methods": {
            "plugin.StartInstance": start_ok(),
            "plugin.HandleEvent": [{"error": "No plugin instance 0"}]}}),
    );
    let spec = specfile::write(
        dir.path(),
        "c.json",
        &json!({"role": "client", "kong": {"plugin": "p", "max_resets": 2}}),
    );
    let out = run_client(dir.path(), &spec, &dir.path().join("m.sock"), &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let phase = &report(&out)["requests"][0]["phases"][0];
    assert_eq!(phase["status"], "failed");
    assert_eq!(phase["resets"], 2);
    assert!(
        phase["error"]
            .as_str()
            .unwrap()
            .contains("after 2 reset(s)")
    );
    assert!(phase["kong"].as_str().unwrap().contains("without limit"));
    assert_eq!(server.interrupt(), 0);
    let methods = specfile::requested_methods(&server.stdout());
    assert_eq!(
        methods,
        ["plugin.StartInstance", "plugin.HandleEvent"].repeat(3),
        "a new StartInstance before every retry"
    );
}

#[test]
fn one_reset_then_the_retried_event_completes() {
    let dir = support::tmpdir();
    let mut server = mock(
        dir.path(),
        json!({"role": "server", "cycle": "global", "on_methods": {
            "plugin.StartInstance": start_ok(),
            "plugin.HandleEvent": [
                {"calls": [1], "error": "no plugin instance #0"},
                {"result": {"EventId": 0, "Data": "ret"}}]}}),
    );
    let spec = specfile::write(
        dir.path(),
        "c.json",
        &json!({"role": "client", "kong": {"plugin": "p"}}),
    );
    let out = run_client(dir.path(), &spec, &dir.path().join("m.sock"), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = report(&out);
    assert_eq!(r["requests"][0]["phases"][0]["status"], "completed");
    assert_eq!(r["requests"][0]["phases"][0]["resets"], 1);
    assert_eq!(r["lifecycle"][1]["action"], "reset");
    assert!(
        out.stderr.contains("✓ done after 1 reset(s)"),
        "{}",
        out.stderr
    );
    assert_eq!(server.interrupt(), 0);
}

#[test]
fn a_new_server_pid_makes_kong_start_new_instances() {
    let dir = support::tmpdir();
    let ret = json!({"EventId": 0, "Data": "ret"});
    let mut server = mock(
        dir.path(),
        json!({"role": "server", "cycle": "global",
            "on_connect": [["serverPid", 100]],
            "on_methods": {
                "plugin.StartInstance": start_ok(),
                "plugin.HandleEvent": [
                    {"calls": [2], "notify": [["serverPid", 200]], "result": ret},
                    {"result": ret}]}}),
    );
    let spec = specfile::write(
        dir.path(),
        "c.json",
        &json!({"role": "client", "kong": {"plugin": "p", "requests": 3}}),
    );
    let out = run_client(dir.path(), &spec, &dir.path().join("m.sock"), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let life: Vec<(u64, String)> = report(&out)["lifecycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["request"].as_u64().unwrap(),
                l["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        life,
        [
            (1, "start".to_string()),
            (2, "server_pid".into()),
            (3, "start".into())
        ]
    );
    assert_eq!(server.interrupt(), 0);
}

#[test]
fn an_exit_skips_later_phases_but_not_log() {
    let dir = support::tmpdir();
    let mut server = mock(
        dir.path(),
        json!({"role": "server", "on_methods": {
            "plugin.StartInstance": start_ok(),
            "plugin.HandleEvent": [
                {"match": [{"EventName": "access"}], "result": {"EventId": 0, "Data":
                    {"Method": "kong.response.exit", "Args": [401, {"message": "no"}, {"WWW-Authenticate": "Basic"}]}}},
                {"match": [{"EventName": "log"}], "result": {"EventId": 1, "Data":
                    {"Method": "kong.response.get_status", "Args": []}}}],
            "plugin.Step": [{"match": [{"EventId": 1, "Data": 401}], "result": {"EventId": 1, "Data": "ret"}}]}}),
    );
    let spec = specfile::write(
        dir.path(),
        "c.json",
        &json!({"role": "client", "kong": {"plugin": "p", "phases": ["log", "access", "response"]}}),
    );
    let out = run_client(dir.path(), &spec, &dir.path().join("m.sock"), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = report(&out);
    let phases: Vec<(&str, &str)> = r["requests"][0]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["phase"].as_str().unwrap(), p["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        phases,
        [
            ("access", "exited"),
            ("response", "skipped"),
            ("log", "completed")
        ],
        "phases run in Kong's order"
    );
    let response = &r["requests"][0]["response"];
    assert_eq!(response["status"], 401);
    assert_eq!(response["body"], json!({"message": "no"}));
    assert_eq!(response["headers"]["www-authenticate"], "Basic");
    assert_eq!(server.interrupt(), 0);
}

#[test]
fn server_faults_are_reported_as_kong_would_see_them() {
    let dir = support::tmpdir();
    let mut server = mock(
        dir.path(),
        json!({"role": "server", "cycle": "global", "on_methods": {
            "plugin.StartInstance": start_ok(),
            "plugin.HandleEvent": [{"result": {"EventId": 0, "Data": {"Method": "kong.request.get_host", "Args": []}}}],
            "plugin.Step": [
                {"calls": [1], "close": true},
                {"calls": [2], "garbage": "c1"},
                {"calls": [3], "truncate": true, "result": {"EventId": 0, "Data": "ret"}},
                {"calls": [4], "wrong_msgid": true, "result": {"EventId": 0, "Data": "ret"}},
                {"calls": [5], "no_reply": true},
                {"result": {"EventId": 0, "Data": "ret"}}]}}),
    );
    let spec = specfile::write(
        dir.path(),
        "c.json",
        &json!({"role": "client", "kong": {"plugin": "p", "requests": 6}}),
    );
    let out = run_client(
        dir.path(),
        &spec,
        &dir.path().join("m.sock"),
        &["--timeout", "1"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let r = report(&out);
    let seen: Vec<(String, String, String)> = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let p = &q["phases"][0];
            (
                p["status"].as_str().unwrap().to_owned(),
                p["error"].as_str().unwrap_or("").to_owned(),
                p["kong"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expect = [
        (
            "closed the connection before replying to plugin.Step",
            "`no data`",
        ),
        ("undecodable bytes in reply to plugin.Step", "Lua error"),
        ("in the middle of the reply to plugin.Step", "`no data`"),
        (
            "unexpected RPC response ID from Go plugin server (sent msgid",
            "Lua error",
        ),
        ("no reply to plugin.Step within 1s", "`no data`"),
    ];
    for (i, (error, kong)) in expect.iter().enumerate() {
        assert_eq!(seen[i].0, "failed", "request {}: {:?}", i + 1, seen[i]);
        assert!(
            seen[i].1.contains(error),
            "request {}: {:?}",
            i + 1,
            seen[i]
        );
        assert!(seen[i].2.contains(kong), "request {}: {:?}", i + 1, seen[i]);
    }
    assert_eq!(
        seen[5].0, "completed",
        "the server works again after the faults"
    );
    assert_eq!(server.interrupt(), 0);
    let stdout = server.stdout();
    for fault in ["close", "garbage", "truncate", "wrong_msgid", "no_reply"] {
        assert!(
            stdout.contains(&format!("{{\"fault\":\"{fault}\"")),
            "{fault}: {stdout}"
        );
    }
}

/// kong-pdk 0.36 (threaded mode) holds a global lock in HandleEvent until
/// the plugin's first PDK call. A plugin that raises before that call
/// never releases it: that request gets no answer (Kong: `no data` after
/// 60 s, as the reference says), and neither does *any later event on
/// the server*, even for another instance. The reference only describes
/// the first part.

#[test]
fn an_event_that_never_ends_is_stopped() {
    let dir = support::tmpdir();
    let ask =
        json!({"result": {"EventId": 0, "Data": {"Method": "kong.request.get_path", "Args": []}}});
    let server = mock(
        dir.path(),
        json!({"role": "server", "on_methods": {
            "plugin.StartInstance": start_ok(),
            "plugin.HandleEvent": [ask],
            "plugin.Step": [ask]}}),
    );
    let spec = specfile::write(
        dir.path(),
        "c.json",
        &json!({"role": "client", "kong": {"plugin": "p"}}),
    );
    let out = support::run(
        dir.path(),
        &[
            "-q",
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--socket",
            dir.path().join("m.sock").to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let phase = &report(&out)["requests"][0]["phases"][0];
    assert_eq!(phase["calls"].as_array().unwrap().len(), 10_000);
    assert!(
        phase["error"]
            .as_str()
            .unwrap()
            .contains("more than 10000 PDK calls")
    );
    server.signal(nix::sys::signal::Signal::SIGKILL);
}

#[test]
fn a_failed_start_is_a_500_in_kong() {
    let dir = support::tmpdir();
    let mut server = mock(
        dir.path(),
        json!({"role": "server", "cycle": "global", "on_methods": {
            "plugin.StartInstance": [{"calls": [1], "error": "bad config"}, {"close": true}]}}),
    );
    let spec = specfile::write(
        dir.path(),
        "c.json",
        &json!({"role": "client", "kong": {"plugin": "p", "requests": 2}}),
    );
    let out = run_client(dir.path(), &spec, &dir.path().join("m.sock"), &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let r = report(&out);
    let (first, second) = (
        &r["requests"][0]["phases"][0],
        &r["requests"][1]["phases"][0],
    );
    assert_eq!(
        first["error"],
        "StartInstance failed: error reply \"bad config\""
    );
    assert_eq!(
        first["kong"],
        "Kong logs `starting instance: bad config` and raises an error: the client gets a 500"
    );
    assert!(
        second["error"]
            .as_str()
            .unwrap()
            .contains("closed the connection before replying")
    );
    assert!(
        second["kong"]
            .as_str()
            .unwrap()
            .contains("`starting instance: no data`")
    );
    assert_eq!(server.interrupt(), 0);
}
