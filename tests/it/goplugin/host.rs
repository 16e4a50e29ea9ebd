//! The stand-in host (client role) against the real Python plugin and
//! against plugtap's own mock plugin.

use serde_json::Value as Json;

use super::{kv_plugin_cmd, python};
use crate::support;

fn run_client(spec: &str, start_cmd: &str) -> support::Output {
    let _ = python();
    let dir = support::tmpdir();
    support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            support::spec(spec).to_str().unwrap(),
            "--start-cmd",
            start_cmd,
            "--json",
        ],
    )
}

#[test]
fn the_host_drives_the_python_plugin_through_every_call() {
    let out = run_client("goplugin-client-kv.json", &kv_plugin_cmd());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["app_version"], 1);
    assert!(
        report["handshake"]
            .as_str()
            .unwrap()
            .starts_with("1|1|unix|")
    );
    let calls = report["calls"].as_array().unwrap();
    let statuses: Vec<&str> = calls
        .iter()
        .map(|c| c["status_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "NOT_FOUND",
            "OK",
            "OK",
            "OK",
            "OK",
            "UNIMPLEMENTED",
            "OK",
            "OK"
        ]
    );
    // Answers of the real grpcio server, decoded with kv.proto.
    assert_eq!(calls[0]["message"], "no key 'greeting'");
    assert_eq!(calls[2]["responses"][0]["value"], "aGVsbG8=");
    assert_eq!(calls[4]["responses"].as_array().unwrap().len(), 3);
    // Calls on the connection the plugin announced on GRPCBroker.
    assert_eq!(calls[6]["responses"][0]["count"], "1");
    assert_eq!(calls[7]["responses"][0]["count"], "2");
    // The host's shutdown: GRPCController.Shutdown, and the plugin exits.
    assert_eq!(report["shutdown"], "exited after Shutdown (exit code 0)");
    // Its stderr is hclog JSON, re-logged at its level; GRPCStdio is read.
    assert!(
        out.stderr.contains("[plugin] kv plugin starting"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("[plugin stdout via GRPCStdio] kv plugin stdout line"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("health check: plugin is SERVING"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_failed_expectation_exits_1_with_a_diff() {
    let dir = support::tmpdir();
    let spec = super::client_spec(
        dir.path(),
        "c.json",
        &format!(
            r#"{{"protocol": "go-plugin", "role": "client",
            "handshake": {{"magic_cookie_key": "BASIC_PLUGIN", "magic_cookie_value": "hello"}},
            "schema": {{"proto": ["{}"]}},
            "calls": [{{"method": "kv.KV/Put", "request": {{"key": "k", "value": "eA=="}}}},
                      {{"method": "kv.KV/Get", "request": {{"key": "k"}}, "expect": {{"response": {{"value": "eQ=="}}}}}},
                      {{"method": "kv.KV/Get", "request": {{"key": "nope"}}}}]}}"#,
            support::root()
                .join("tests/peers/goplugin/kv.proto")
                .display()
        ),
    );
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--start-cmd",
            &kv_plugin_cmd(),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("$.value: expected \"eQ==\", got \"eA==\""),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("expected status OK, got NOT_FOUND: no key 'nope'"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("3 calls: 1 passed, 2 failed, 0 not run"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_host_drives_the_mock_plugin() {
    let mock = format!(
        "{} server --spec {}",
        support::bin().display(),
        support::spec("goplugin-mock-kv.json").display()
    );
    let out = run_client("goplugin-client-mock.json", &mock);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    // The mock offers 1 and 2, the host 2 and 3: both pick 2.
    assert_eq!(report["app_version"], 2);
    assert!(
        report["handshake"].as_str().unwrap().ends_with("|grpc|"),
        "{report}"
    );
    assert_eq!(report["calls"][1]["responses"][0]["value"], "aGk=");
    assert_eq!(report["shutdown"], "exited after Shutdown (exit code 0)");
    assert!(
        out.stderr
            .contains("[plugin stderr via GRPCStdio] mock plugin ready"),
        "{}",
        out.stderr
    );
    // The mock logs like the proxy: with the schema, and by wire type without.
    assert!(
        out.stderr
            .contains("host→mock message #0 /kv.KV/Get kv.GetRequest {\"key\":\"raw\"}"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("host→mock message #0 /kv.Missing/Call (no schema) []"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_mock_checks_the_magic_cookie_like_a_go_plugin() {
    let dir = support::tmpdir();
    let mut p = support::Proc::plugtap(
        dir.path(),
        &[
            "server",
            "--spec",
            support::spec("goplugin-mock-kv.json").to_str().unwrap(),
        ],
    );
    assert_eq!(p.exit_code(), 1);
    assert_eq!(p.stdout(), "");
    assert_eq!(p.stderr(), plugtap::goplugin::env::NOT_A_PLUGIN);
}

#[test]
fn run_picks_the_role_of_a_go_plugin_spec_as_written() {
    // specs/goplugin-client-mock.json starts `plugtap server …` from PATH.
    let path = format!(
        "{}:{}",
        support::bin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new(support::bin())
        .args(["run", "specs/goplugin-client-mock.json"])
        .current_dir(support::root())
        .env("PATH", path)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("6 calls: 6 passed, 0 failed, 0 not run"),
        "{stderr}"
    );
}

/// A mock whose Shutdown is answered from its spec, so it keeps running.
const DEAF_MOCK: &str = r#"{"protocol": "go-plugin", "role": "server",
 "handshake": {"magic_cookie_key": "BASIC_PLUGIN", "magic_cookie_value": "hello", "app_versions": [1]},
 "services": {"plugin.GRPCController": {"Shutdown": [{"response": {}}]}}}"#;

const NO_CALLS: &str = r#"{"protocol": "go-plugin", "role": "client",
 "handshake": {"magic_cookie_key": "BASIC_PLUGIN", "magic_cookie_value": "hello", "app_versions": [1]},
 "calls": []}"#;

/// Runs the host (no calls) against `start_cmd`; returns its report, its
/// stderr and how long it took.
fn host_stopping(dir: &std::path::Path, start_cmd: &str) -> (Json, String, std::time::Duration) {
    let spec = super::client_spec(dir, "client.json", NO_CALLS);
    let start = std::time::Instant::now();
    let out = support::run(
        dir,
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--start-cmd",
            start_cmd,
            "--json",
        ],
    );
    let took = start.elapsed();
    assert_eq!(out.code, 0, "{}", out.stderr);
    (serde_json::from_str(&out.stdout).unwrap(), out.stderr, took)
}

#[test]
fn a_plugin_that_ignores_shutdown_is_killed_after_the_hosts_grace() {
    let dir = support::tmpdir();
    let mock = super::client_spec(dir.path(), "deaf.json", DEAF_MOCK);
    let cmd = format!(
        "{} server --spec {}",
        support::bin().display(),
        mock.display()
    );
    let (report, log, took) = host_stopping(dir.path(), &cmd);
    assert_eq!(
        report["shutdown"],
        "plugin failed to exit gracefully; killed (signal SIGKILL)"
    );
    assert!(log.contains("plugin failed to exit gracefully"), "{log}");
    // Shutdown answered, then go-plugin's 2 s, then SIGKILL.
    assert!(took >= std::time::Duration::from_secs(2), "{took:?}");
}

#[test]
fn through_the_wrapper_a_plugin_that_ignores_shutdown_is_not_left_running() {
    let dir = support::tmpdir();
    let mock = super::client_spec(dir.path(), "deaf.json", DEAF_MOCK);
    let inner = format!(
        "{} server --spec {}",
        support::bin().display(),
        mock.display()
    );
    let (report, log, _) = host_stopping(dir.path(), &super::wrapped(&inner, ""));
    // The wrapper kills the plugin before the host's 2 s are over (the
    // host would kill only the wrapper) and exits with its status.
    assert_eq!(report["shutdown"], "exited after Shutdown (exit code 137)");
    assert!(
        log.contains("the plugin did not exit 1.5s after the host's Shutdown call; killing it"),
        "{log}"
    );
    let pid: i32 = log
        .lines()
        .find(|l| l.contains("[plugin]") && l.contains("started plugin"))
        .and_then(|l| l.rsplit("(pid ").next())
        .and_then(|p| p.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no plugin pid in\n{log}"));
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(),
        "the plugin (pid {pid}) is still running"
    );
}
