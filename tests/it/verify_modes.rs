//! The proxy's record modes, as VCR has them: `replay` answers from a
//! server spec with no real server (and records, so a replay can be
//! recorded), `new` answers from the spec what it can and forwards only
//! the rest to the real server; other protocols are refused clearly.

use std::path::Path;

use plugtap::message::{Direction, Kind};
use plugtap::record::{Header, Line, Reader};
use serde_json::{Value as Json, json};

use crate::proxy::lines;
use crate::support::{self, Proc, specfile};

fn proxy(dir: &Path, args: &[&str]) -> Proc {
    let mut all = vec!["proxy", "--listen", "front.sock", "--record", "rec.jsonl"];
    all.extend_from_slice(args);
    let p = Proc::plugtap(dir, &all);
    p.wait_for_stderr("listening on");
    p
}

fn client(dir: &Path, spec: &Path) -> support::Output {
    support::run(
        dir,
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--socket",
            dir.join("front.sock").to_str().unwrap(),
            "--json",
        ],
    )
}

fn header(path: &Path) -> Header {
    Reader::open(path).unwrap().header().clone()
}

/// (direction, kind, method or reply's method) of every recorded frame.
fn frames(lines: &[Line]) -> Vec<(Direction, Kind, String)> {
    lines
        .iter()
        .filter_map(|l| match l {
            Line::Frame(f) => Some((
                f.dir,
                f.msg.kind,
                f.msg
                    .method
                    .clone()
                    .or_else(|| f.reply.as_ref().and_then(|r| r.method.clone()))
                    .unwrap_or_default(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn replay_mode_answers_from_the_spec_without_a_server_and_records() {
    let dir = support::tmpdir();
    let d = dir.path();
    let spec = support::spec("mock-hello.json");
    let mut p = proxy(
        d,
        &[
            "--mode",
            "replay",
            "--spec",
            spec.to_str().unwrap(),
            "--verify",
            "--report",
            "report.json",
        ],
    );
    let out = client(d, &support::spec("client-event-cycle.json"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    p.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(p.exit_code(), 0, "--verify holds: {}", p.stderr());
    let report: Json =
        serde_json::from_str(&std::fs::read_to_string(d.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        report,
        json!({"passed": true, "requests": 7, "unused": [], "unmatched": []})
    );
    let lines = lines(&d.join("rec.jsonl"));
    let h = header(&d.join("rec.jsonl"));
    assert_eq!(h.mode.as_deref(), Some("replay"));
    assert_eq!(h.upstream, spec);
    let f = frames(&lines);
    assert_eq!(f.len(), 14, "{f:?}");
    assert_eq!(
        f[0],
        (
            Direction::ToServer,
            Kind::Request,
            "plugin.GetPluginInfo".into()
        )
    );
    assert_eq!(
        f[1],
        (
            Direction::ToClient,
            Kind::Response,
            "plugin.GetPluginInfo".into()
        ),
        "replies are paired with their requests"
    );
    let err = p.stderr();
    assert!(err.contains("(replay mode)"), "{err}");
    assert!(
        err.contains("7 requests: 0 unmatched; 0 spec entries never used"),
        "{err}"
    );
    // The recording of a replay shows like any other.
    let shown = support::run(d, &["show", "rec.jsonl"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(
        shown.stdout.contains("plugin.HandleEvent"),
        "{}",
        shown.stdout
    );
}

#[test]
fn new_mode_sends_only_what_the_spec_cannot_answer_to_the_server() {
    let dir = support::tmpdir();
    let d = dir.path();
    let upstream_spec = specfile::write(
        d,
        "upstream.json",
        &json!({"role": "server",
                "on_connect": [{"method": "serverPid", "params": 4242}],
                "on_methods": {
            "plugin.A": [{"result": "A from the server"}],
            "plugin.B": [{"result": "B from the server"}]}}),
    );
    let mut upstream = support::mock_server(d, &upstream_spec, "back.sock", &[]);
    let known = specfile::write(
        d,
        "known.json",
        &json!({"role": "server", "on_methods": {
            "plugin.A": [{"match": [1], "result": "A from the spec"}]}}),
    );
    let mut p = proxy(
        d,
        &[
            "--mode",
            "new",
            "--spec",
            known.to_str().unwrap(),
            "--upstream",
            "back.sock",
        ],
    );
    let steps = specfile::write(
        d,
        "c.json",
        &json!({"role": "client", "try_methods": [
            {"method": "plugin.A", "params": [1], "expect": {"result": "A from the spec"}},
            {"method": "plugin.B", "params": [], "expect": {"result": "B from the server"}},
            {"method": "plugin.A", "params": [2], "expect": {"result": "A from the server"}},
            {"method": "plugin.A", "params": [1], "expect": {"result": "A from the spec"}}
        ]}),
    );
    let out = client(d, &steps);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    let notes: Vec<&Json> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["notifications"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(
        notes,
        [&json!([2, "serverPid", 4242])],
        "the server's own notification on connect is relayed"
    );
    assert_eq!(upstream.interrupt(), 0);
    assert_eq!(
        specfile::requested_methods(&upstream.stdout()),
        ["plugin.B", "plugin.A"],
        "only the requests the spec does not answer reach the server"
    );
    p.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(p.exit_code(), 0, "{}", p.stderr());
    let lines = lines(&d.join("rec.jsonl"));
    let h = header(&d.join("rec.jsonl"));
    assert_eq!(h.mode.as_deref(), Some("new"));
    let requests = frames(&lines)
        .into_iter()
        .filter(|f| f.1 == Kind::Request)
        .count();
    assert_eq!(requests, 4, "everything is recorded");
    let responses: Vec<Json> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Frame(f) if f.msg.kind == Kind::Response => {
                assert!(f.reply.is_some(), "paired: {f:?}");
                Some(f.msg.value[3].clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        responses,
        [
            "A from the spec",
            "B from the server",
            "A from the server",
            "A from the spec"
        ]
    );
}

#[test]
fn modes_refuse_what_they_cannot_do() {
    let dir = support::tmpdir();
    let d = dir.path();
    let spec = support::spec("mock-hello.json");
    let spec = spec.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--mode", "replay"],
            "--mode replay needs --spec SERVER_SPEC",
        ),
        (
            &[
                "--mode",
                "replay",
                "--spec",
                spec,
                "--protocol",
                "ProtoBuf:1",
            ],
            "--mode replay is only available for MsgPack:1 so far, not ProtoBuf:1",
        ),
        (
            &["--mode", "replay", "--spec", spec, "--", "true"],
            "--mode replay has no real server; it cannot start one",
        ),
        (
            &["--mode", "new", "--spec", spec],
            "the proxy needs --listen and --upstream",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["proxy", "--listen", "front.sock"];
        all.extend_from_slice(args);
        let out = support::run(d, &all);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
    }
    assert!(!d.join("front.sock").exists());
}

#[test]
fn new_mode_in_front_of_the_real_python_server() {
    let dir = support::tmpdir();
    let d = dir.path();
    let peer = support::python_peer(d, "back.sock");
    // The spec knows only GetPluginInfo; the rest of the event cycle is
    // new to it and goes to the real server.
    let known = specfile::write(
        d,
        "known.json",
        &json!({"role": "server", "on_methods": {"plugin.GetPluginInfo": [{"result": {
            "Name": "hello_peer", "Phases": ["access"], "Version": "0.1.0",
            "Priority": 4242, "Schema": {}}}]}}),
    );
    let mut p = proxy(
        d,
        &[
            "--mode",
            "new",
            "--spec",
            known.to_str().unwrap(),
            "--upstream",
            "back.sock",
        ],
    );
    let out = client(d, &support::spec("client-event-cycle.json"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        report["steps"][0]["result"]["Priority"], 4242,
        "from the spec"
    );
    assert!(
        report["steps"][1]["result"]["StartTime"].is_number(),
        "from the real server: {:#}",
        report["steps"][1]
    );
    p.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(p.exit_code(), 0, "{}", p.stderr());
    assert!(
        p.stderr().contains(
            "1 requests (6 more forwarded to the upstream): 0 unmatched; 0 spec entries never used"
        ),
        "only GetPluginInfo was answered by the spec: {}",
        p.stderr()
    );
    let responses = frames(&lines(&d.join("rec.jsonl")))
        .into_iter()
        .filter(|f| f.1 == Kind::Response)
        .count();
    assert_eq!(responses, 7);
    peer.signal(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn replay_verify_fails_on_requests_the_spec_does_not_cover() {
    let dir = support::tmpdir();
    let d = dir.path();
    let spec = specfile::write(
        d,
        "known.json",
        &json!({"role": "server", "on_methods": {
            "plugin.A": [{"result": 1}], "plugin.B": [{"result": 2}]}}),
    );
    let mut p = proxy(
        d,
        &[
            "--mode",
            "replay",
            "--spec",
            spec.to_str().unwrap(),
            "--verify",
        ],
    );
    let steps = specfile::write(
        d,
        "c.json",
        &json!({"role": "client", "try_methods": [["plugin.A", []], ["plugin.C", []]]}),
    );
    let out = client(d, &steps);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["steps"][1]["error"], "not implemented");
    p.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(p.exit_code(), 1, "{}", p.stderr());
    let err = p.stderr();
    assert!(
        err.contains("on_methods[\"plugin.B\"][0] was never used"),
        "{err}"
    );
    assert!(err.contains("#2 plugin.C: no entry for plugin.C"), "{err}");
    // --report and --verify need a spec side.
    let out = support::run(
        d,
        &[
            "proxy",
            "--listen",
            "f.sock",
            "--upstream",
            "b.sock",
            "--verify",
        ],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--verify is for --mode replay and new"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_proxy_spec_with_a_mode_runs_with_plugtap_run() {
    let dir = support::tmpdir();
    let d = dir.path();
    let spec = specfile::write(
        d,
        "replay.json",
        &json!({"role": "proxy", "mode": "replay", "socket": "front.sock",
                "record": "rec.jsonl", "on_methods": {"plugin.A": [{"result": 1}]}}),
    );
    let mut p = Proc::plugtap(d, &["run", spec.to_str().unwrap()]);
    p.wait_for_stderr("(replay mode)");
    let steps = specfile::write(
        d,
        "c.json",
        &json!({"role": "client", "try_methods": [
            {"method": "plugin.A", "params": [], "expect": {"result": 1}}]}),
    );
    let out = client(d, &steps);
    assert_eq!(out.code, 0, "{}", out.stderr);
    p.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(p.exit_code(), 0, "{}", p.stderr());
    assert!(
        !p.stderr().contains("WARN"),
        "no warning about on_methods: {}",
        p.stderr()
    );
    assert_eq!(header(&d.join("rec.jsonl")).mode.as_deref(), Some("replay"));
}
