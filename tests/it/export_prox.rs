//! Export of prox recordings: record plugtap's prox client against the
//! Python prox-style plugin through the wrapper, export a server spec, run
//! the mock from it and get the same decoded replies; export a client spec
//! and run it against a fresh plugin (the committed exports of
//! recordings/prox-python.jsonl are compared with fresh ones with the
//! others, in `export_roundtrip.rs`); bad input.

use serde_json::{Value as Json, json};

use crate::support;
use crate::support::prox::plugin_cmd;

fn report(stdout: &str) -> Json {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Each step's hook, status and decoded result.
fn outcomes(r: &Json) -> Vec<Json> {
    r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!([s["method"], s["status"], s["result"]]))
        .collect()
}

fn client(dir: &std::path::Path, spec: &str, start_cmd: &str) -> Json {
    let out = support::run(
        dir,
        &["client", "--spec", spec, "--start-cmd", start_cmd, "--json"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    report(&out.stdout)
}

#[test]
fn a_recording_exported_as_a_mock_answers_as_the_plugin_did() {
    let dir = support::tmpdir();
    let rec = dir.path().join("rec.jsonl");
    let spec = support::spec("prox-client.json");
    let spec = spec.to_str().unwrap();
    let wrapped = format!(
        "{} proxy --protocol prox --record {} -- {}",
        support::bin().display(),
        rec.display(),
        plugin_cmd(dir.path(), "")
    );
    let recorded = client(dir.path(), spec, &wrapped);
    let server = dir.path().join("server.json");
    let out = support::run(
        dir.path(),
        &[
            "export",
            rec.to_str().unwrap(),
            "--as",
            "server",
            "-o",
            server.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mock = format!(
        "{} server --spec {} --socket {}",
        support::bin().display(),
        server.display(),
        dir.path().join("mock.sock").display()
    );
    let replayed = client(dir.path(), spec, &mock);
    assert_eq!(outcomes(&recorded), outcomes(&replayed));
    assert!(
        outcomes(&replayed).iter().all(|o| o[1] == "passed"),
        "{replayed:#}"
    );
    assert_eq!(recorded["plugin"]["pushes"], replayed["plugin"]["pushes"]);
    // The committed export of the committed recording does the same.
    let committed = format!(
        "{} server --spec {} --socket {}",
        support::bin().display(),
        support::spec("export-prox-python-server.json").display(),
        dir.path().join("mock2.sock").display()
    );
    let again = client(dir.path(), spec, &committed);
    assert_eq!(outcomes(&recorded), outcomes(&again));
}

#[test]
fn an_exported_client_spec_passes_against_a_fresh_plugin() {
    let dir = support::tmpdir();
    let spec = support::spec("export-prox-python-client.json");
    let r = client(
        dir.path(),
        spec.to_str().unwrap(),
        &plugin_cmd(dir.path(), ""),
    );
    let statuses: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["passed"; 7], "{r:#}");
    // The recorded configure lines were sent: two routes, two `ready`s.
    assert_eq!(r["plugin"]["readies"], 2);
}

/// A reply whose call is not in the recording (here: the call's line was
/// cut out) is an error naming the file and line.
#[test]
fn a_reply_without_its_call_is_reported_with_its_line() {
    let dir = support::tmpdir();
    let text =
        std::fs::read_to_string(support::root().join("recordings/prox-python.jsonl")).unwrap();
    let first_call = text
        .lines()
        .position(|l| l.contains(r#""type":"frame""#) && l.contains(r#""dir":"to_server""#))
        .unwrap();
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != first_call)
        .map(|(_, l)| l)
        .collect();
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, kept.join("\n") + "\n").unwrap();
    let out = support::run(
        dir.path(),
        &["export", cut.to_str().unwrap(), "--as", "server"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("cut.jsonl:")
            && out.stderr.contains("answers no call recorded before it"),
        "{}",
        out.stderr
    );
}
