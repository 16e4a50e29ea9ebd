//! Replay verification end to end: what a client run reports beyond
//! pass/fail (diffs with paths, near misses, expectations never
//! exercised), and what a mock server reports at exit (`--report`,
//! `--verify`: entries never used, requests no entry matched with the
//! nearest entry and why).

use serde_json::{Value as Json, json};

use crate::support::{self, specfile};

fn client(dir: &std::path::Path, steps: Json, socket: &str) -> support::Output {
    let spec = specfile::write(
        dir,
        "c.json",
        &json!({"role": "client", "try_methods": steps}),
    );
    let socket = dir.join(socket);
    support::run(
        dir,
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--json",
            "--timeout",
            "2",
        ],
    )
}

#[test]
fn client_report_has_diffs_near_misses_and_steps_never_exercised() {
    let dir = support::tmpdir();
    let d = dir.path();
    let spec = specfile::write(
        d,
        "mock.json",
        &json!({"role": "server", "on_methods": {
            "plugin.A": [{"result": {"Name": "x", "Id": 1}}],
            "plugin.B": [{"result": {"Name": "y", "Id": 2}}],
            "plugin.W": [{"wrong_msgid": 77, "result": {"Data": "ret"}}],
            "plugin.Close": [{"close": true}]}}),
    );
    let mut server = support::mock_server(d, &spec, "m.sock", &[]);
    let out = client(
        d,
        json!([
            {"method": "plugin.A", "params": [], "expect": {"result": {"Name": "y", "Id": 2}}},
            ["plugin.B", []],
            {"method": "plugin.W", "params": [], "expect": {"result": {"Data": "ret"}}},
            {"method": "plugin.Close", "params": [], "expect": {"result": {"Data": "ret"}}},
            {"method": "plugin.A", "params": [], "expect": {"result": {"Name": "x"}}}
        ]),
        "m.sock",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    // The diff, with paths.
    let m = &report["steps"][0]["failures"][0]["mismatches"];
    assert_eq!(m[0]["path"], "$.Name");
    assert_eq!(m[0]["expected"], "y");
    assert_eq!(m[0]["actual"], "x");
    assert!(
        out.stderr.contains("$.Name: expected \"y\", got \"x\""),
        "{}",
        out.stderr
    );
    // Near misses: another step's reply, and the response with the wrong msgid.
    let near = report["near_misses"].as_array().unwrap();
    assert_eq!(near.len(), 3, "{near:#?}");
    assert_eq!(near[0]["step"], 0);
    assert_eq!(near[0]["closest"], "reply to step 1 (plugin.B)");
    assert_eq!(near[0]["mismatches"], json!([]));
    assert_eq!(near[1]["step"], 2);
    assert_eq!(near[1]["closest"], "response with msgid 77 during step 2");
    // The step whose connection died: its closest is W's stray reply.
    assert_eq!(near[2]["step"], 3);
    assert!(
        out.stderr
            .contains("near miss: the reply to step 1 (plugin.B) matches this expectation"),
        "{}",
        out.stderr
    );
    // Never exercised: the expectations of the steps that got no reply,
    // and the step after the connection died, with the reasons.
    let never = report["not_exercised"].as_array().unwrap();
    assert_eq!(never.len(), 3, "{never:#?}");
    assert_eq!(never[0]["step"], 2);
    assert!(
        never[0]["reason"]
            .as_str()
            .unwrap()
            .contains("response with msgid 77 while waiting for 3"),
        "{never:#?}"
    );
    assert_eq!(never[1]["step"], 3);
    assert!(
        never[1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("its expectation was never checked: the server closed the connection"),
        "{never:#?}"
    );
    assert_eq!(never[2]["step"], 4);
    assert!(
        never[2]["reason"]
            .as_str()
            .unwrap()
            .starts_with("not run: the run stopped at step 3 (plugin.Close): the server closed"),
        "{never:#?}"
    );
    assert!(
        out.stderr
            .contains("  - step 4 plugin.A: not run: the run stopped at step 3"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("5 steps: 1 passed, 3 failed, 1 not run")
    );
    assert_eq!(server.interrupt(), 0);
}

#[test]
fn a_passing_run_reports_no_near_misses() {
    let dir = support::tmpdir();
    let d = dir.path();
    let spec = specfile::write(
        d,
        "mock.json",
        &json!({"role": "server", "on_methods": {"plugin.A": [{"result": 1}]}}),
    );
    let mut server = support::mock_server(d, &spec, "m.sock", &[]);
    let out = client(
        d,
        json!([{"method": "plugin.A", "params": [], "expect": {"result": 1}}]),
        "m.sock",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    assert!(report.get("near_misses").is_none(), "{report:#}");
    assert!(report.get("not_exercised").is_none(), "{report:#}");
    assert_eq!(server.interrupt(), 0);
}

fn server_spec() -> Json {
    json!({"role": "server", "on_methods": {
        "plugin.StartInstance": [{"result": {"Id": 0}}],
        "plugin.Step": [
            {"match": [{"EventId": 5, "Data": "a"}], "result": 1},
            {"match": [{"EventId": 1, "Data": "b"}], "result": 2}
        ],
        "plugin.M": [{"calls": [2], "result": "second"}],
        "plugin.Unused": [{"result": 0}]}})
}

#[test]
fn server_report_names_unused_entries_and_nearest_entries_of_unmatched_requests() {
    let dir = support::tmpdir();
    let d = dir.path();
    let spec = specfile::write(d, "mock.json", &server_spec());
    let mut server = support::mock_server(
        d,
        &spec,
        "m.sock",
        &["--report", "report.json", "--verify", "--no-conversations"],
    );
    let out = client(
        d,
        json!([
            ["plugin.StartInstance", []],
            ["plugin.Step", [{"EventId": 1, "Data": "c"}]],
            ["plugin.Stpe", [{"EventId": 1, "Data": "b"}]],
            ["plugin.M", []]
        ]),
        "m.sock",
    );
    assert_eq!(
        out.code, 0,
        "not implemented is an error reply, not a failure"
    );
    assert_eq!(server.interrupt(), 1, "--verify: {}", server.stderr());
    let report: Json =
        serde_json::from_str(&std::fs::read_to_string(d.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["passed"], false);
    assert_eq!(report["requests"], 4);
    assert_eq!(
        report["unused"],
        json!([
            {"method": "plugin.M", "index": 0},
            {"method": "plugin.Step", "index": 0, "match": [{"EventId": 5, "Data": "a"}]},
            {"method": "plugin.Step", "index": 1, "match": [{"EventId": 1, "Data": "b"}]},
            {"method": "plugin.Unused", "index": 0}
        ])
    );
    let un = report["unmatched"].as_array().unwrap();
    assert_eq!(un.len(), 3, "{un:#?}");
    // Nearest by match: entry 1 differs in one place, entry 0 in two.
    assert_eq!(un[0]["method"], "plugin.Step");
    assert_eq!(un[0]["msgid"], 2);
    assert_eq!(un[0]["nearest"]["index"], 1);
    assert_eq!(
        un[0]["nearest"]["mismatches"],
        json!([{"path": "$[0].Data", "expected": "b", "actual": "c"}])
    );
    // A typo in the method name.
    assert_eq!(un[1]["reason"], "no entry for plugin.Stpe");
    assert_eq!(un[1]["nearest"]["method"], "plugin.Step");
    // An entry limited to other calls.
    assert_eq!(un[2]["reason"], "no entry for plugin.M applies to call 1");
    assert_eq!(un[2]["nearest"]["index"], 0);
    let err = server.stderr();
    for needle in [
        "  - on_methods[\"plugin.Unused\"][0] was never used",
        " #2 plugin.Step: no entry for plugin.Step matches params",
        "      nearest: on_methods[\"plugin.Step\"][1] (its match differs in 1 place(s))",
        "        $[0].Data: expected \"b\", got \"c\"",
        "4 requests: 3 unmatched; 4 spec entries never used",
    ] {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
}

#[test]
fn server_verify_passes_when_everything_was_used_and_report_goes_to_stdout() {
    let dir = support::tmpdir();
    let d = dir.path();
    let spec = specfile::write(
        d,
        "mock.json",
        &json!({"role": "server", "on_methods": {"plugin.A": [{"result": 1}]}}),
    );
    let mut server = support::mock_server(d, &spec, "m.sock", &["--report", "--verify"]);
    let out = client(d, json!([["plugin.A", []]]), "m.sock");
    assert_eq!(out.code, 0, "{}", out.stderr);
    server.wait_for_stderr("plugin.A");
    assert_eq!(server.interrupt(), 0, "{}", server.stderr());
    let stdout = server.stdout();
    let last: Json = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        last,
        json!({"passed": true, "requests": 1, "unused": [], "unmatched": []})
    );
    // Without --verify, the same misses do not change the exit code.
    let spec = specfile::write(d, "mock2.json", &server_spec());
    let mut server = support::mock_server(d, &spec, "m2.sock", &[]);
    assert_eq!(server.interrupt(), 0);
    assert!(
        server
            .stderr()
            .contains("0 requests: 0 unmatched; 5 spec entries never used")
    );
}

#[test]
fn report_and_verify_are_refused_for_other_protocols() {
    let dir = support::tmpdir();
    let d = dir.path();
    let out = support::run(
        d,
        &[
            "server",
            "--spec",
            support::spec("pb-mock-go-peer.json").to_str().unwrap(),
            "--socket",
            d.join("pb.sock").to_str().unwrap(),
            "--verify",
        ],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("--report and --verify are only available for MsgPack:1 so far"),
        "{}",
        out.stderr
    );
}
