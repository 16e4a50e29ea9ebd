//! prox faults end to end: a plugin whose `ready` names a missing socket,
//! one that exits during a call or before `ready`, replies and stdout lines
//! prox cannot use, a plugin that ignores stdin's end, timeouts, and bad
//! specs; each reported clearly by the built binary.

use serde_json::Value as Json;

use crate::support;
use crate::support::prox::plugin_cmd;

fn client(dir: &std::path::Path, spec: &str, start_cmd: &str, extra: &[&str]) -> support::Output {
    let path = dir.join("c.json");
    std::fs::write(&path, spec).unwrap();
    let mut args = vec![
        "client",
        "--spec",
        path.to_str().unwrap(),
        "--start-cmd",
        start_cmd,
        "--json",
    ];
    args.extend_from_slice(extra);
    support::run(dir, &args)
}

fn report(out: &support::Output) -> Json {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr))
}

fn failure(r: &Json, step: usize) -> String {
    r["steps"][step]["failures"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

const ONE_CALL: &str = r#"{"protocol": "prox", "try_methods": [
    {"method": "on_request", "params": {"path": "/"}}]}"#;

#[test]
fn a_ready_naming_a_missing_socket() {
    let dir = support::tmpdir();
    let missing = dir.path().join("nope.sock");
    let cmd = plugin_cmd(dir.path(), &format!("--announce {}", missing.display()));
    let out = client(dir.path(), ONE_CALL, &cmd, &["--wait", "0.5"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "the plugin's `ready` names socket {}, but it cannot be reached",
            missing.display()
        )) && out.stderr.contains("No such file or directory"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("stdin closed"),
        "the plugin was stopped: {}",
        out.stderr
    );
}

#[test]
fn a_plugin_that_exits_during_a_call() {
    let dir = support::tmpdir();
    let spec = r#"{"protocol": "prox", "try_methods": [
        {"method": "on_request", "params": {"path": "/crash"}},
        {"method": "on_request", "params": {"path": "/"}}]}"#;
    let out = client(dir.path(), spec, &plugin_cmd(dir.path(), ""), &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let r = report(&out);
    let error = r["steps"][0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("closed: the plugin closed the connection instead of answering")
            && error.contains("(the plugin process ended: exit code 3)")
            && error.contains("prox answers the HTTP request with 500"),
        "{error}"
    );
    assert_eq!(
        failure(&r, 1),
        "not sent: the plugin process has ended (exit code 3); prox would restart it first"
    );
    let plugin_failure = r["plugin"]["failures"][0]["message"].as_str().unwrap();
    assert!(
        plugin_failure.contains("the plugin exited (exit code 3) while prox was calling it"),
        "{plugin_failure}"
    );
    assert_eq!(r["plugin"]["exit"], "exited (exit code 3) during the calls");
}

#[test]
fn a_plugin_that_exits_before_ready() {
    let dir = support::tmpdir();
    let out = client(dir.path(), ONE_CALL, "echo starting; exit 4", &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("before sending `ready`") && out.stderr.contains("exit code 4"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_plugin_that_never_sends_ready() {
    let dir = support::tmpdir();
    let out = client(
        dir.path(),
        ONE_CALL,
        "echo starting up; sleep 10",
        &["--wait", "0.5", "--grace", "0.2"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the plugin sent no `ready` with a socket within 500ms"),
        "{}",
        out.stderr
    );
    // Its stray output was shown for what it is, and it was stopped.
    assert!(
        out.stderr.contains(r#"MALFORMED (not JSON"#),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("killing it") || out.stderr.contains("closing the plugin's stdin"));
}

#[test]
fn replies_and_lines_prox_cannot_use() {
    let dir = support::tmpdir();
    // The disconnect comes last: a reply to it is then caught for sure (a
    // call right after it would race the stray reply, as in prox).
    let spec = r#"{"protocol": "prox", "try_methods": [
        {"method": "on_request", "params": {"path": "/bad-reply"}},
        {"method": "on_disconnect", "params": {"route_id": "web:0"}}]}"#;
    let cmd = plugin_cmd(dir.path(), "--reply-to-disconnect --long-line");
    let out = client(dir.path(), spec, &cmd, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let r = report(&out);
    let f0 = failure(&r, 0);
    assert!(
        f0.starts_with("unusable reply: prox cannot decode it as AuthorizeResult")
            && f0.contains(r#"ok: a string "yes" where a bool is due"#),
        "{f0}"
    );
    let f1 = failure(&r, 1);
    assert!(
        f1.contains("the plugin sent a frame nobody asked for")
            && f1.contains("after on_disconnect, which gets no reply"),
        "{f1}"
    );
    let plugin = r["plugin"]["failures"][0]["message"].as_str().unwrap();
    assert!(
        plugin.contains("does not fit prox's 64 KiB line buffer: prox's reader stops for good"),
        "{plugin}"
    );
}

#[test]
fn a_plugin_that_ignores_the_end_of_stdin_is_terminated() {
    let dir = support::tmpdir();
    let out = client(
        dir.path(),
        ONE_CALL,
        &plugin_cmd(dir.path(), "--ignore-eof"),
        &["--grace", "0.3"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let r = report(&out);
    assert_eq!(r["steps"][0]["status"], "passed");
    let f = r["plugin"]["failures"][0]["message"].as_str().unwrap();
    assert!(
        f.contains("did not exit within 300ms after its stdin closed"),
        "{f}"
    );
    assert_eq!(
        r["plugin"]["exit"],
        "terminated by plugtap (signal SIGTERM)"
    );
}

#[test]
fn timeouts_and_expected_errors() {
    let dir = support::tmpdir();
    let spec = r#"{"protocol": "prox", "try_methods": [
        {"method": "on_request", "params": {"path": "/slow"}, "expect": {"error": "timeout"}},
        {"method": "on_request", "params": {"path": "/slow"}},
        {"method": "on_request", "params": {"path": "/"}, "expect": {"error": true}}]}"#;
    let out = client(
        dir.path(),
        spec,
        &plugin_cmd(dir.path(), ""),
        &["--timeout", "0.1"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let r = report(&out);
    assert_eq!(r["steps"][0]["status"], "passed", "{r:#}");
    assert!(
        failure(&r, 1)
            .starts_with("timeout: no reply within 100ms; prox answers the HTTP request with 500")
    );
    // After a timeout prox drops the connection; the next call dials anew
    // and gets its answer, which this step did not expect.
    assert_eq!(
        failure(&r, 2),
        "expected the call to fail, but the plugin replied"
    );
    assert_eq!(r["steps"][2]["result"]["ok"], true);
}

#[test]
fn bad_prox_specs_are_refused_before_anything_starts() {
    let dir = support::tmpdir();
    let cases = [
        (
            "client",
            r#"{"protocol": "prox", "try_methods": [{"method": "on_teardown"}]}"#,
            "try_methods[0]: `on_teardown` is not a prox hook (valid: on_request, on_response, on_connect, on_disconnect)",
        ),
        (
            "client",
            r#"{"protocol": "prox", "try_methods": [{"method": "on_request", "params": {"pth": "/"}}]}"#,
            "try_methods[0].params: `pth` is not a field of prox's RequestInfo",
        ),
        (
            "client",
            r#"{"protocol": "prox", "try_methods": [{"method": "on_disconnect", "expect": {"result": {}}}]}"#,
            "try_methods[0].expect.result: on_disconnect gets no reply",
        ),
        (
            "client",
            r#"{"protocol": "prox", "prox": {"connections": 2}, "try_methods": [
                {"method": "on_request", "capture": {"x": "ok"}}]}"#,
            "captures need one connection",
        ),
        (
            "server",
            r#"{"protocol": "prox", "on_methods": {"on_teardown": [{"result": {}}]}}"#,
            "on_methods key `on_teardown` is not a prox hook",
        ),
        (
            "server",
            r#"{"protocol": "prox", "on_methods": {"on_disconnect": [{"result": {"ok": true}}]}}"#,
            "on_methods[\"on_disconnect\"][0].result: on_disconnect gets no reply",
        ),
        (
            "server",
            r#"{"protocol": "prox", "on_methods": {"on_request": [{"match": {"nope": 1}, "result": {}}]}}"#,
            "on_methods[\"on_request\"][0].match: `nope` is not a field of prox's RequestInfo",
        ),
        (
            "server",
            r#"{"protocol": "prox", "on_methods": {"on_request": [{"result": {"allow": true, "colour": 1}}]}}"#,
            "on_methods[\"on_request\"][0].result: `colour` is not a field of prox's AuthorizeResult",
        ),
    ];
    for (role, text, expected) in cases {
        let spec = dir.path().join("bad.json");
        std::fs::write(&spec, text).unwrap();
        let socket = dir.path().join("x.sock");
        let args = [
            role,
            "--spec",
            spec.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
        ];
        let out = support::run(dir.path(), &args);
        assert_eq!(out.code, 2, "{text}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{text}: {}", out.stderr);
        assert!(
            out.stderr.contains("bad.json"),
            "names the file: {}",
            out.stderr
        );
        assert!(!socket.exists());
    }
}

/// A raw plugin answers with a length above prox's 1 MiB: the call fails
/// as it does in prox, and the next call dials a new connection.
#[test]
fn a_reply_over_prox_frame_limit() {
    use crate::support::prox::{read_frame, write_frame};
    use std::io::Write as _;
    use std::os::unix::net::UnixListener;

    let dir = support::tmpdir();
    let socket = dir.path().join("raw.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        read_frame(&mut s).unwrap();
        s.write_all(&[0x00, 0x10, 0x00, 0x01, 0x81]).unwrap();
        assert_eq!(read_frame(&mut s), None, "prox drops the connection");
        let (mut s, _) = listener.accept().unwrap();
        read_frame(&mut s).unwrap();
        write_frame(&mut s, &[0x81, 0xa2, b'o', b'k', 0xc3]);
        assert_eq!(read_frame(&mut s), None);
    });
    let spec = dir.path().join("c.json");
    std::fs::write(
        &spec,
        r#"{"protocol": "prox", "try_methods": [
            {"method": "on_request", "params": {"path": "/"}},
            {"method": "on_request", "params": {"path": "/"}, "expect": {"result": {"allow": true}}}]}"#,
    )
    .unwrap();
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
    let r = report(&out);
    let f = failure(&r, 0);
    assert!(
        f.starts_with("undecodable: message at stream offset 0 is too large: 1048577 bytes")
            && f.contains("limit 1048576")
            && f.contains("`frame too large: 1048577 bytes`"),
        "{f}"
    );
    assert_eq!(r["steps"][1]["status"], "passed");
}
