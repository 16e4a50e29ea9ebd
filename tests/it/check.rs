//! `plugtap check` against the real Python pluginserver (every check
//! passes), and against mock servers made with plugtap's server role, each
//! broken in one way so that one check fails for that reason.
//!
//! The mocks count on the order of check's calls (see `src/check/mod.rs`):
//! HandleEvent #1 is the single event, #2 the event spread over
//! connections, #3–#6 the concurrent events, #7 the unknown instance, #8
//! the closed instance; Step #1 belongs to the single event, #2 to the
//! spread one. Entries are told apart by `match` (a plain entry without
//! one would take turns with the others).

use serde_json::{Value as Json, json};

use crate::support::{self, specfile};

pub(crate) fn run_check(
    dir: &std::path::Path,
    socket: &str,
    extra: &[&str],
) -> (support::Output, Json) {
    let socket = dir.join(socket);
    let mut args = vec![
        "check",
        "--socket",
        socket.to_str().unwrap(),
        "--plugin",
        "hello_peer",
        "--json",
    ];
    for (flag, default) in [("--timeout", "1"), ("--wait", "5")] {
        if !extra.contains(&flag) {
            args.extend([flag, default]);
        }
    }
    args.extend_from_slice(extra);
    let out = support::run(dir, &args);
    let report = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    (out, report)
}

/// `name -> status` for every check, in order.
pub(crate) fn statuses(report: &Json) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub(crate) fn check<'a>(report: &'a Json, name: &str) -> &'a Json {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

/// Every check passes except the ones listed with their status.
pub(crate) fn expect_statuses(report: &Json, except: &[(&str, &str)]) {
    let names = [
        "query_output",
        "socket",
        "start_instance",
        "event",
        "steps_across_connections",
        "concurrent_events",
        "unknown_instance",
        "close_instance",
        "no_unsolicited_bytes",
        "malformed_request",
    ];
    let expected: Vec<(String, String)> = names
        .iter()
        .map(|n| {
            let status = except.iter().find(|(e, _)| e == n).map_or(
                if *n == "query_output" { "skip" } else { "pass" },
                |(_, s)| *s,
            );
            (n.to_string(), status.to_string())
        })
        .collect();
    assert_eq!(statuses(report), expected, "{report:#}");
}

#[test]
fn the_python_server_passes_every_check() {
    let dir = support::tmpdir();
    let exe = support::python_pluginserver();
    let plugins = support::root().join("tests/peers/python");
    let query = format!(
        "{} -d {} --dump-all-plugins",
        exe.display(),
        plugins.display()
    );
    let start = support::python_peer_cmd(dir.path(), "py.sock");
    let (out, report) = run_check(
        dir.path(),
        "py.sock",
        &[
            "--start-cmd",
            &start,
            "--query-cmd",
            &query,
            "--timeout",
            "5",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    expect_statuses(&report, &[("query_output", "pass")]);
    assert!(
        out.stderr
            .contains("10 checks: 10 passed, 0 failed, 0 skipped"),
        "{}",
        out.stderr
    );
    assert_eq!(report["query"]["plugins"], json!(["hello_peer"]));
    assert!(
        check(&report, "event")["summary"]
            .as_str()
            .unwrap()
            .contains("[kong.request.get_header, kong.response.set_header], then ret")
    );
    assert!(
        check(&report, "unknown_instance")["summary"]
            .as_str()
            .unwrap()
            .contains("no plugin instance #1000000")
    );
}

/// A mock that passes every check; `patch` replaces methods' entries.
pub(crate) fn mock_spec(patch: Json) -> Json {
    let ret = json!({"EventId": 0, "Data": "ret"});
    let mut on_methods = json!({
        "plugin.StartInstance": [{"result": {"Name": "hello_peer", "Id": 0, "Config": {}, "StartTime": 1.5}}],
        "plugin.HandleEvent": [
            {"calls": [8], "error": "no plugin instance #0"},
            {"match": [{"InstanceId": 0}], "result": {"EventId": 0,
                "Data": {"Method": "kong.request.get_header", "Args": ["host"]}}},
            {"match": [{"InstanceId": 1000000}], "error": "no plugin instance #1000000"}
        ],
        "plugin.Step": [{"result": ret}],
        "plugin.CloseInstance": [{"result": {"Name": "hello_peer", "Id": 0, "Config": {}}}]
    });
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            on_methods.as_object_mut().unwrap().remove(k);
        } else {
            on_methods[k] = v.clone();
        }
    }
    json!({"role": "server", "cycle": "global", "on_methods": on_methods})
}

/// Runs check against a mock started by the test.
pub(crate) fn check_mock(patch: Json, extra: &[&str]) -> (support::Output, Json) {
    let dir = support::tmpdir();
    let path = specfile::write(dir.path(), "mock.json", &mock_spec(patch));
    let mut server = support::mock_server(dir.path(), &path, "m.sock", &[]);
    let result = run_check(dir.path(), "m.sock", extra);
    server.signal(nix::sys::signal::Signal::SIGINT);
    let _ = server.wait_for(std::time::Duration::from_secs(10));
    result
}

#[test]
fn a_well_behaved_mock_passes_every_check() {
    let (out, report) = check_mock(json!({}), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    expect_statuses(&report, &[]);
}

#[test]
fn start_instance_fails_when_the_server_refuses() {
    let (out, report) = check_mock(
        json!({"plugin.StartInstance": [{"error": "bad config"}]}),
        &[],
    );
    assert_eq!(out.code, 1);
    let why = "no instance (start_instance failed)";
    expect_statuses(
        &report,
        &[
            ("start_instance", "fail"),
            ("event", "skip"),
            ("steps_across_connections", "skip"),
            ("concurrent_events", "skip"),
            ("close_instance", "skip"),
        ],
    );
    let c = check(&report, "start_instance");
    assert!(
        c["kong"]
            .as_str()
            .unwrap()
            .contains("`starting instance: bad config`")
    );
    assert!(c["kong"].as_str().unwrap().contains("500"));
    assert_eq!(check(&report, "event")["summary"], why);
    assert!(
        out.stderr.contains("start_instance            ✗ FAIL"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("in production: Kong logs `starting instance: bad config`")
    );
}

#[test]
fn event_fails_when_the_server_never_answers() {
    let (out, report) = check_mock(
        json!({"plugin.HandleEvent": [
            {"calls": [1], "no_reply": true},
            {"calls": [3], "error": "no plugin instance #0"},
            {"match": [{"InstanceId": 0}], "result": {"EventId": 0, "Data": "ret"}},
            {"match": [{"InstanceId": 1000000}], "error": "no plugin instance #1000000"}]}),
        &[],
    );
    assert_eq!(out.code, 1);
    expect_statuses(
        &report,
        &[
            ("event", "fail"),
            ("steps_across_connections", "skip"),
            ("concurrent_events", "skip"),
        ],
    );
    let c = check(&report, "event");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("no reply to plugin.HandleEvent within 1s")
    );
    assert!(c["kong"].as_str().unwrap().contains("`no data`"));
}

#[test]
fn steps_across_connections_fails_when_events_live_on_one_connection() {
    let (out, report) = check_mock(
        json!({"plugin.Step": [
            {"calls": [2], "error": "event id 0 not found"},
            {"result": {"EventId": 0, "Data": "ret"}}]}),
        &[],
    );
    assert_eq!(out.code, 1);
    expect_statuses(&report, &[("steps_across_connections", "fail")]);
    let c = check(&report, "steps_across_connections");
    assert!(c["kong"].as_str().unwrap().contains("event id 0 not found"));
    assert!(
        c["kong"]
            .as_str()
            .unwrap()
            .contains("from its pool for every call")
    );
}

#[test]
fn concurrent_events_fails_when_one_connection_hangs() {
    let (out, report) = check_mock(
        json!({"plugin.HandleEvent": [
            {"calls": [4], "no_reply": true},
            {"calls": [8], "error": "no plugin instance #0"},
            {"match": [{"InstanceId": 0}], "result": {"EventId": 0,
                "Data": {"Method": "kong.request.get_header", "Args": ["host"]}}},
            {"match": [{"InstanceId": 1000000}], "error": "no plugin instance #1000000"}]}),
        &[],
    );
    assert_eq!(out.code, 1);
    expect_statuses(&report, &[("concurrent_events", "fail")]);
    let c = check(&report, "concurrent_events");
    assert_eq!(c["summary"], "1 of 4 concurrent events failed");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("HandleEvent: no reply to plugin.HandleEvent")
    );
}

#[test]
fn unknown_instance_fails_without_kongs_reset_text() {
    let (out, report) = check_mock(
        json!({"plugin.HandleEvent": [
            {"calls": [8], "error": "no plugin instance #0"},
            {"match": [{"InstanceId": 0}], "result": {"EventId": 0,
                "Data": {"Method": "kong.request.get_header", "Args": ["host"]}}},
            {"match": [{"InstanceId": 1000000}], "error": "instance not found"}]}),
        &[],
    );
    assert_eq!(out.code, 1);
    expect_statuses(&report, &[("unknown_instance", "fail")]);
    let c = check(&report, "unknown_instance");
    assert!(
        c["summary"]
            .as_str()
            .unwrap()
            .contains("\"instance not found\" lacks `no plugin instance`")
    );
    assert!(c["kong"].as_str().unwrap().contains("until Kong restarts"));
}

#[test]
fn close_instance_fails_when_not_implemented() {
    let (out, report) = check_mock(json!({"plugin.CloseInstance": null}), &[]);
    assert_eq!(out.code, 1);
    expect_statuses(&report, &[("close_instance", "fail")]);
    let c = check(&report, "close_instance");
    assert!(c["detail"].as_str().unwrap().contains("not implemented"));
    assert!(
        c["kong"]
            .as_str()
            .unwrap()
            .contains("leaves an instance behind")
    );
}

#[test]
fn no_unsolicited_bytes_fails_on_bytes_after_a_reply() {
    let (out, report) = check_mock(
        json!({"plugin.HandleEvent": [
            {"calls": [8], "error": "no plugin instance #0", "garbage": {"hex": "c0", "after_reply": true}},
            {"match": [{"InstanceId": 0}], "result": {"EventId": 0,
                "Data": {"Method": "kong.request.get_header", "Args": ["host"]}}},
            {"match": [{"InstanceId": 1000000}], "error": "no plugin instance #1000000"}]}),
        &[],
    );
    assert_eq!(out.code, 1);
    expect_statuses(&report, &[("no_unsolicited_bytes", "fail")]);
    let c = check(&report, "no_unsolicited_bytes");
    assert!(c["detail"].as_str().unwrap().contains("c0"), "{c}");
    assert!(
        c["kong"]
            .as_str()
            .unwrap()
            .contains("unexpected RPC response ID")
    );
}

#[test]
fn malformed_request_fails_when_the_server_crashes() {
    let dir = support::tmpdir();
    let mut spec = mock_spec(json!({}));
    spec["on_methods"]["plugin.HandleEvent"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"match": "x", "crash": true}));
    let path = specfile::write(dir.path(), "mock.json", &spec);
    let socket = dir.path().join("m.sock");
    let start = format!(
        "{} -q server --spec {} --socket {}",
        support::bin().display(),
        path.display(),
        socket.display()
    );
    let (out, report) = run_check(dir.path(), "m.sock", &["--start-cmd", &start]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    expect_statuses(&report, &[("malformed_request", "fail")]);
    let c = check(&report, "malformed_request");
    assert_eq!(
        c["summary"],
        "the server did not survive a HandleEvent request whose params are not a one-element array"
    );
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("the server process exited (exit code 2)")
    );
    assert!(
        c["kong"]
            .as_str()
            .unwrap()
            .contains("takes the whole server down")
    );
}
