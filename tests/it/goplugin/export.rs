//! `plugtap export` for go-plugin recordings, round trip: record the
//! Python plugin through the wrapper, export a mock (server spec) and a
//! host script (client spec), then
//!
//! * the same host against the mock gets the same decoded replies as
//!   against the real plugin;
//! * the exported host script passes against a fresh real plugin (and
//!   against the exported mock).
//!
//! The committed exports of recordings/goplugin-python-kv.jsonl are
//! re-exported and compared, and run the same way.

use std::path::Path;

use serde_json::Value as Json;

use super::{kv_plugin_cmd, python, wrapped};
use crate::support;

/// Runs the host with `spec`, the plugin started by `start_cmd`; returns
/// the exit code, the report and the log.
fn host(dir: &Path, spec: &Path, start_cmd: &str) -> (i32, Json, String) {
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
    let report = serde_json::from_str(&out.stdout).unwrap_or(Json::Null);
    (out.code, report, out.stderr)
}

/// What a host saw of each call: path, status, message and responses.
fn replies(report: &Json) -> Vec<Json> {
    report["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| serde_json::json!([c["path"], c["status_name"], c["message"], c["responses"]]))
        .collect()
}

fn export(dir: &Path, recording: &Path, role: &str) -> std::path::PathBuf {
    let out = dir.join(format!("exported-{role}.json"));
    let run = support::run(
        dir,
        &[
            "export",
            recording.to_str().unwrap(),
            "--as",
            role,
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    out
}

/// The real plugin, with the magic cookie the exported host spec cannot
/// know (recordings do not hold the host's environment).
fn real_plugin_with_cookie() -> String {
    format!("env BASIC_PLUGIN=hello {}", kv_plugin_cmd())
}

fn mock_cmd(spec: &Path) -> String {
    format!(
        "{} server --spec {}",
        support::bin().display(),
        spec.display()
    )
}

#[test]
fn record_export_and_replay_both_sides() {
    let _ = python();
    let dir = support::tmpdir();
    let rec = dir.path().join("kv.jsonl");
    let client = support::spec("goplugin-client-kv.json");
    let (code, real, log) = host(
        dir.path(),
        &client,
        &wrapped(&kv_plugin_cmd(), &format!("--record {}", rec.display())),
    );
    assert_eq!(code, 0, "{log}");
    // The mock exported from it answers the same host the same way.
    let server = export(dir.path(), &rec, "server");
    let (code, mocked, log) = host(dir.path(), &client, &mock_cmd(&server));
    assert_eq!(code, 0, "{log}");
    assert_eq!(replies(&mocked), replies(&real));
    assert_eq!(mocked["shutdown"], "exited after Shutdown (exit code 0)");
    // The GRPCStdio line the plugin sent comes from the mock too.
    assert!(log.contains("kv plugin stdout line"), "{log}");
    // The exported host script passes against a fresh real plugin and
    // against the exported mock.
    let script = export(dir.path(), &rec, "client");
    let (code, fresh, log) = host(dir.path(), &script, &real_plugin_with_cookie());
    assert_eq!(code, 0, "{log}");
    assert_eq!(fresh["calls"].as_array().unwrap().len(), 8);
    let (code, _, log) = host(dir.path(), &script, &mock_cmd(&server));
    assert_eq!(code, 0, "{log}");
}

#[test]
fn the_exported_script_fails_when_the_plugin_answers_differently() {
    let _ = python();
    let dir = support::tmpdir();
    let script = export(
        dir.path(),
        &support::root().join("recordings/goplugin-python-kv.jsonl"),
        "client",
    );
    // A plugin that has "greeting" from the start: the first Get no
    // longer fails with NOT_FOUND.
    let text = std::fs::read_to_string(support::spec("goplugin-mock-kv.json")).unwrap();
    let mock = dir.path().join("mock.json");
    std::fs::write(
        &mock,
        text.replace(
            "../tests/",
            &format!("{}/tests/", support::root().display()),
        ),
    )
    .unwrap();
    let (code, report, log) = host(
        dir.path(),
        &script,
        &format!("env BASIC_PLUGIN=hello {}", mock_cmd(&mock)),
    );
    assert_eq!(code, 1, "{log}");
    assert!(
        report["calls"][0]["failures"][0]
            .as_str()
            .unwrap()
            .contains("NOT_FOUND"),
        "{report}"
    );
}

#[test]
fn committed_exports_match_a_fresh_export_and_replay() {
    let _ = python();
    let dir = support::tmpdir();
    let rec = support::root().join("recordings/goplugin-python-kv.jsonl");
    for role in ["server", "client"] {
        let fresh = std::fs::read_to_string(export(dir.path(), &rec, role)).unwrap();
        let committed = std::fs::read_to_string(support::spec(&format!(
            "export-goplugin-python-kv-{role}.json"
        )))
        .unwrap();
        assert_eq!(
            fresh, committed,
            "specs/export-goplugin-python-kv-{role}.json is stale: run scripts/record-goplugin.sh"
        );
    }
    let server = support::spec("export-goplugin-python-kv-server.json");
    let (code, _, log) = host(
        dir.path(),
        &support::spec("goplugin-client-kv.json"),
        &mock_cmd(&server),
    );
    assert_eq!(code, 0, "{log}");
    let client = support::spec("export-goplugin-python-kv-client.json");
    let (code, _, log) = host(dir.path(), &client, &real_plugin_with_cookie());
    assert_eq!(code, 0, "{log}");
}
