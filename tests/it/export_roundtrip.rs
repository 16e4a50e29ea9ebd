//! Export round trips against the real Python pluginserver (PyPI
//! kong-pdk, plugin tests/peers/python/hello_peer.py): record through the
//! proxy, export, replay; and the committed exports in specs/ against
//! fresh exports of recordings/.

use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

use crate::support::{self, Proc};

/// Runs `spec` through the proxy in wrapper mode in front of a fresh
/// Python server, recording to `dir/NAME.jsonl`; returns the recording
/// and the client's JSON report.
fn record(dir: &Path, spec: &str, name: &str) -> (PathBuf, Json) {
    let rec = dir.join(format!("{name}.jsonl"));
    let front = dir.join(format!("{name}-front.sock"));
    let back = format!("{name}-py.sock");
    let cmd = support::python_peer_cmd(dir, &back);
    let mut args = vec![
        "proxy".to_owned(),
        "--listen".to_owned(),
        front.display().to_string(),
        "--upstream".to_owned(),
        dir.join(&back).display().to_string(),
        "--record".to_owned(),
        rec.display().to_string(),
        "--".to_owned(),
    ];
    args.extend(cmd.split_whitespace().map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut proxy = Proc::plugtap(dir, &args);
    support::wait_for_socket(&front);
    let report = client_json(dir, &support::spec(spec), &front);
    assert_eq!(proxy.interrupt(), 0, "{}", proxy.stderr());
    (rec, report)
}

/// Runs a client spec against `socket` and returns its JSON report,
/// failing the test unless every step passed.
fn client_json(dir: &Path, spec: &Path, socket: &Path) -> Json {
    let out = support::run(
        dir,
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", spec.display(), out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

fn export(dir: &Path, rec: &Path, target: &str) -> PathBuf {
    let path = dir.join(format!(
        "{}-{target}.json",
        rec.file_stem().unwrap().to_string_lossy()
    ));
    let out = support::run(
        dir,
        &[
            "export",
            rec.to_str().unwrap(),
            "--as",
            target,
            "-o",
            path.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    path
}

/// Each step's (error, result), StartTime removed.
fn replies(report: &Json) -> Vec<Json> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut result = s["result"].clone();
            if let Some(m) = result.as_object_mut() {
                m.shift_remove("StartTime");
            }
            json!([s["error"], result])
        })
        .collect()
}

/// A Python server that has already handed out instance 0 and events 0
/// to 2, so the ids it gives next differ from a fresh recording's.
fn used_python_server(dir: &Path) -> (Proc, PathBuf) {
    let peer = support::python_peer(dir, "used.sock");
    let socket = dir.join("used.sock");
    client_json(dir, &support::spec("client-interleaved.json"), &socket);
    (peer, socket)
}

#[test]
fn round_trip_a_the_exported_mock_answers_as_the_python_server_did() {
    let dir = support::tmpdir();
    let (rec, original) = record(dir.path(), "client-event-cycle.json", "a");
    assert!(original["steps"][1]["result"]["StartTime"].is_f64());
    let spec = export(dir.path(), &rec, "server");
    let mut mock = support::mock_server(dir.path(), &spec, "mock.sock", &[]);
    let replayed = client_json(
        dir.path(),
        &support::spec("client-event-cycle.json"),
        &dir.path().join("mock.sock"),
    );
    assert_eq!(replies(&replayed), replies(&original));
    assert_eq!(replies(&original).len(), 7);
    assert_eq!(mock.interrupt(), 0);
    assert!(
        !mock.stderr().contains("was never used")
            && mock.stderr().contains(" 0 spec entries never used"),
        "every exported entry is used: {}",
        mock.stderr()
    );
}

#[test]
fn round_trip_b_the_exported_client_passes_against_a_server_with_other_ids() {
    let dir = support::tmpdir();
    let (rec, original) = record(dir.path(), "client-event-cycle.json", "b");
    let spec = export(dir.path(), &rec, "client");
    let (_peer, socket) = used_python_server(dir.path());
    let replayed = client_json(dir.path(), &spec, &socket);
    // The ids really differ, so only captures can have made it pass.
    assert_eq!(original["steps"][1]["result"]["Id"], 0);
    assert_eq!(replayed["steps"][1]["result"]["Id"], 1);
    assert_ne!(
        replayed["steps"][2]["result"]["EventId"],
        original["steps"][2]["result"]["EventId"]
    );
    // StartTime was left out of the expectation, and differs.
    assert_ne!(
        replayed["steps"][1]["result"]["StartTime"],
        original["steps"][1]["result"]["StartTime"]
    );
}

#[test]
fn round_trip_c_interleaved_connections_keep_each_events_step_replies() {
    let dir = support::tmpdir();
    let (rec, original) = record(dir.path(), "client-interleaved.json", "c");
    // Three events in flight on three connections in the recording.
    let conns: std::collections::BTreeSet<u64> = plugtap::record::Reader::open(&rec)
        .unwrap()
        .filter_map(|l| match l.unwrap() {
            plugtap::record::Line::Frame(f) => Some(f.conn),
            _ => None,
        })
        .collect();
    assert_eq!(conns.len(), 3);
    let server = export(dir.path(), &rec, "server");
    let client = export(dir.path(), &rec, "client");
    let mut mock = support::mock_server(dir.path(), &server, "mock.sock", &[]);
    let mock_socket = dir.path().join("mock.sock");
    // The hand-written spec expects each event's own host in its replies.
    let replayed = client_json(
        dir.path(),
        &support::spec("client-interleaved.json"),
        &mock_socket,
    );
    assert_eq!(replies(&replayed), replies(&original));
    // The exported client, on its three connections, against the mock ...
    let exported = client_json(dir.path(), &client, &mock_socket);
    assert_eq!(replies(&exported), replies(&original));
    assert_eq!(mock.interrupt(), 0);
    // ... and against a Python server whose ids differ.
    let (_peer, socket) = used_python_server(dir.path());
    let real = client_json(dir.path(), &client, &socket);
    assert_eq!(real["steps"].as_array().unwrap().len(), 11);
    // With the recorded concurrency: the three connections at once.
    let concurrent = dir.path().join("concurrent.json");
    let out = support::run(
        dir.path(),
        &[
            "export",
            rec.to_str().unwrap(),
            "--as",
            "client",
            "--concurrent",
            "-o",
            concurrent.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        std::fs::read_to_string(&concurrent)
            .unwrap()
            .contains("\"concurrent\": true")
    );
    let real = client_json(dir.path(), &concurrent, &socket);
    assert_eq!(real["passed"], true);
    assert_eq!(real["steps"].as_array().unwrap().len(), 11);
    // A mock that answers a Step with another event's reply is caught.
    let text =
        std::fs::read_to_string(&server)
            .unwrap()
            .replacen("hey two.example", "hey one.example", 1);
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, text).unwrap();
    let mut mock = support::mock_server(dir.path(), &broken, "broken.sock", &[]);
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            client.to_str().unwrap(),
            "--socket",
            "broken.sock",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("hey two.example"), "{}", out.stderr);
    mock.interrupt();
}

/// Each committed export and the recording it comes from.
pub const EXPORTS: &[(&str, &str, &str)] = &[
    (
        "export-python-event-cycle-server.json",
        "python-event-cycle.jsonl",
        "server",
    ),
    (
        "export-python-event-cycle-client.json",
        "python-event-cycle.jsonl",
        "client",
    ),
    (
        "export-python-interleaved-server.json",
        "python-interleaved.jsonl",
        "server",
    ),
    (
        "export-python-interleaved-client.json",
        "python-interleaved.jsonl",
        "client",
    ),
    (
        "export-go-pdk-event-cycle-server.json",
        "go-pdk-event-cycle.jsonl",
        "server",
    ),
    (
        "export-go-pdk-event-cycle-client.json",
        "go-pdk-event-cycle.jsonl",
        "client",
    ),
    (
        "export-prox-python-server.json",
        "prox-python.jsonl",
        "server",
    ),
    (
        "export-prox-python-client.json",
        "prox-python.jsonl",
        "client",
    ),
    (
        "export-goplugin-python-kv-server.json",
        "goplugin-python-kv.jsonl",
        "server",
    ),
    (
        "export-goplugin-python-kv-client.json",
        "goplugin-python-kv.jsonl",
        "client",
    ),
];

#[test]
fn committed_exports_match_fresh_exports_of_the_recordings() {
    let dir = support::tmpdir();
    let mut names: Vec<String> = std::fs::read_dir(support::root().join("specs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("export-"))
        .collect();
    names.sort();
    for name in &names {
        assert!(
            EXPORTS.iter().any(|(n, _, _)| n == name),
            "specs/{name} is not compared with a fresh export; list it in EXPORTS"
        );
    }
    for (name, rec, target) in EXPORTS {
        let rec = support::root().join("recordings").join(rec);
        let out = support::run(
            dir.path(),
            &["export", rec.to_str().unwrap(), "--as", target],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let committed = std::fs::read_to_string(support::spec(name)).unwrap();
        assert!(
            out.stdout == committed,
            "specs/{name} is stale: run scripts/record-examples.sh or \
             `plugtap export recordings/... --as {target} -o specs/{name}`"
        );
    }
}

#[test]
fn committed_exports_replay() {
    let dir = support::tmpdir();
    // The exported mocks pass the hand-written clients, and the exported
    // clients pass against the exported mocks.
    for (server, hand, client) in [
        (
            "export-python-event-cycle-server.json",
            "client-event-cycle.json",
            "export-python-event-cycle-client.json",
        ),
        (
            "export-python-interleaved-server.json",
            "client-interleaved.json",
            "export-python-interleaved-client.json",
        ),
    ] {
        let mut mock = support::mock_server(dir.path(), &support::spec(server), "m.sock", &[]);
        let socket = dir.path().join("m.sock");
        client_json(dir.path(), &support::spec(hand), &socket);
        client_json(dir.path(), &support::spec(client), &socket);
        assert_eq!(mock.interrupt(), 0);
    }
    // The exported event-cycle client passes against the real server.
    let (_peer, socket) = used_python_server(dir.path());
    client_json(
        dir.path(),
        &support::spec("export-python-event-cycle-client.json"),
        &socket,
    );
}
