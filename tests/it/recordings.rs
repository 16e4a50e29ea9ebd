//! The committed recordings (recordings/, made by scripts/record-examples.sh
//! through the proxy against the real Python server) and `plugtap show`.

use plugtap::record::{Line, Reader};
use plugtap::value_json;

use crate::proxy::{b64, lines};
use crate::support;

/// Each shipped recording and the test that reads it.
pub const RECORDED: &[(&str, &str)] = &[
    (
        "python-event-cycle.jsonl",
        "recordings::recorded_raw_bytes_decode_to_the_recorded_messages",
    ),
    (
        "python-redacted.jsonl",
        "recordings::redacted_recording_hides_the_greeting_and_its_raw_bytes",
    ),
    (
        "python-interleaved.jsonl",
        "export_roundtrip::committed_exports_match_fresh_exports_of_the_recordings",
    ),
    (
        "go-pdk-event-cycle.jsonl",
        "pb_proxy::real_go_pdk_frames_replayed_through_the_proxy_match_the_committed_recording",
    ),
    (
        "prox-python.jsonl",
        "recordings::prox_recording_keeps_every_line_and_frame_exactly",
    ),
    (
        "goplugin-python-kv.jsonl",
        "goplugin::record::the_committed_kv_recording_holds_the_whole_run",
    ),
];

fn recording(name: &str) -> std::path::PathBuf {
    support::root().join("recordings").join(name)
}

#[test]
fn every_recording_is_listed_parses_and_shows() {
    let mut names: Vec<String> = std::fs::read_dir(support::root().join("recordings"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for name in &names {
        assert!(
            RECORDED.iter().any(|(n, _)| n == name),
            "recordings/{name} is not exercised by any test; add one and list it in RECORDED"
        );
        let lines = lines(&recording(name));
        assert!(
            matches!(lines.last(), Some(Line::End(_))),
            "{name} is complete"
        );
        let dir = support::tmpdir();
        let path = recording(name);
        let path = path.to_str().unwrap();
        for args in [
            vec!["show", path],
            vec!["show", path, "--json"],
            vec!["show", path, "--format", "mermaid"],
        ] {
            let out = support::run(dir.path(), &args);
            assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
            assert!(!out.stdout.is_empty());
        }
    }
}

#[test]
fn recorded_raw_bytes_decode_to_the_recorded_messages() {
    let lines = lines(&recording("python-event-cycle.jsonl"));
    let mut frames = 0;
    for l in &lines {
        if let Line::Frame(f) = l {
            frames += 1;
            let raw = b64(f.raw.as_deref().expect("raw bytes kept"));
            assert_eq!(raw.len() as u64, f.len);
            // Decoded independently of plugtap's codec.
            let value = rmpv::decode::read_value(&mut raw.as_slice()).unwrap();
            assert_eq!(value_json::to_json(&value), f.msg.value);
        }
    }
    assert_eq!(frames, 14);
}

#[test]
fn redacted_recording_hides_the_greeting_and_its_raw_bytes() {
    let reader = Reader::open(&recording("python-redacted.jsonl")).unwrap();
    assert_eq!(reader.header().redact, ["greeting"]);
    let text = std::fs::read_to_string(recording("python-redacted.jsonl")).unwrap();
    assert!(!text.contains("\\\"hi\\\""), "the greeting value is gone");
    let lines = lines(&recording("python-redacted.jsonl"));
    let redacted: Vec<_> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Frame(f) if f.redacted => Some(f),
            _ => None,
        })
        .collect();
    assert!(!redacted.is_empty());
    assert!(redacted.iter().all(|f| f.raw.is_none()));
}

#[test]
fn show_filters_and_draws() {
    let dir = support::tmpdir();
    let path = recording("python-event-cycle.jsonl");
    let path = path.to_str().unwrap();
    let out = support::run(dir.path(), &["show", path, "--method", "Step"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let shown: Vec<&str> = out.stdout.lines().skip(1).collect();
    assert_eq!(shown.len(), 4, "{}", out.stdout);
    assert!(shown.iter().all(|l| l.contains("plugin.Step")));
    let out = support::run(dir.path(), &["show", path, "--json", "--conn", "99"]);
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "only the header: {}",
        out.stdout
    );
    let out = support::run(dir.path(), &["show", path, "--since", "100"]);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    let out = support::run(dir.path(), &["show", path, "--format", "mermaid"]);
    let m = out.stdout;
    assert!(m.starts_with("sequenceDiagram\n    participant K as Kong\n    participant P as plugtap\n    participant S as server\n"), "{m}");
    assert_eq!(m.matches("K->>S: c1 request #35;").count(), 7, "{m}");
    assert_eq!(m.matches("S-->>K: c1 ").count(), 7, "{m}");
    assert!(
        m.contains("S-->>K: c1 error #35;7 plugin.HandleEvent no plugin instance #35;0"),
        "{m}"
    );
}

#[test]
fn bad_recordings_are_reported_with_file_and_line() {
    let dir = support::tmpdir();
    let d = dir.path();
    let good = std::fs::read_to_string(recording("python-event-cycle.jsonl")).unwrap();
    let mut torn: String = good.lines().take(4).collect::<Vec<_>>().join("\n");
    torn.push_str("\n{\"type\":\"frame\",\"seq\":4,\"t_us\":1");
    std::fs::write(d.join("torn.jsonl"), &torn).unwrap();
    std::fs::write(d.join("other.jsonl"), "{\"role\": \"server\"}\n").unwrap();
    let bad_line: String = good
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 2 {
                "{\"type\":\"frame\"}".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(d.join("bad.jsonl"), bad_line).unwrap();
    for (file, want) in [
        ("torn.jsonl", "torn.jsonl:5: the last line is cut short"),
        ("other.jsonl", "other.jsonl:1: not a plugtap recording"),
        ("bad.jsonl", "bad.jsonl:3: column"),
        ("missing.jsonl", "missing.jsonl: cannot open recording"),
    ] {
        let out = support::run(d, &["show", file]);
        assert_eq!(out.code, 2, "{file}");
        assert!(out.stderr.contains(want), "{file}: {}", out.stderr);
    }
}

#[test]
fn kong_conf_prints_the_wrapper_lines() {
    let dir = support::tmpdir();
    let out = support::run(
        dir.path(),
        &[
            "kong-conf",
            "--name",
            "My-Py",
            "--listen",
            "/k/py.sock",
            "--upstream",
            "/k/real.sock",
            "--record",
            "/tmp/r.jsonl",
            "--redact",
            "$[3][0].Config",
            "--query-cmd",
            "kong-python-pluginserver -d /p --dump-all-plugins",
            "--plugtap",
            "/usr/bin/plugtap",
            "--",
            "kong-python-pluginserver",
            "-d",
            "/p",
            "--socket-name",
            "real.sock",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            "pluginserver_names = My-Py",
            "pluginserver_my_py_socket = /k/py.sock",
            "pluginserver_my_py_start_cmd = /usr/bin/plugtap proxy --listen /k/py.sock --upstream /k/real.sock --record /tmp/r.jsonl --redact '$[3][0].Config' -- kong-python-pluginserver -d /p --socket-name real.sock",
            "pluginserver_my_py_query_cmd = kong-python-pluginserver -d /p --dump-all-plugins",
        ]
    );
}

/// recordings/prox-python.jsonl (scripts/record-prox.sh): every stdio line
/// and hook frame decodes, independently of plugtap, to what was recorded.
#[test]
fn prox_recording_keeps_every_line_and_frame_exactly() {
    use plugtap::message::Direction;
    let path = recording("prox-python.jsonl");
    assert_eq!(
        Reader::open(&path).unwrap().header().protocol,
        plugtap::protocol::Protocol::Prox
    );
    let (mut calls, mut replies, mut readies, mut configures) = (vec![], 0, 0, 0);
    for l in &lines(&path) {
        match l {
            Line::Stdio(s) => {
                let raw = b64(s.raw.as_deref().expect("raw bytes kept"));
                assert_eq!(raw.len() as u64, s.len);
                let json: serde_json::Value = serde_json::from_slice(&raw).unwrap();
                assert_eq!(json, s.msg.value);
                match s.msg.method.as_deref() {
                    Some("ready") => {
                        readies += 1;
                        assert!(
                            s.rewritten_socket
                                .as_deref()
                                .unwrap()
                                .ends_with(".plugtap.sock")
                        );
                    }
                    Some("configure") => configures += 1,
                    _ => assert!(s.rewritten_socket.is_none()),
                }
            }
            Line::Frame(f) => {
                let raw = b64(f.raw.as_deref().expect("raw bytes kept"));
                assert_eq!(
                    u32::from_be_bytes(raw[..4].try_into().unwrap()) as usize,
                    raw.len() - 4
                );
                let value = rmpv::decode::read_value(&mut &raw[4..]).unwrap();
                if f.dir == Direction::ToServer {
                    let d = value
                        .as_map()
                        .unwrap()
                        .iter()
                        .find(|(k, _)| k.as_str() == Some("d"))
                        .unwrap();
                    let inner = rmpv::decode::read_value(&mut d.1.as_slice().unwrap()).unwrap();
                    assert_eq!(f.msg.value["d"], value_json::to_json(&inner));
                    calls.push(f.msg.method.clone().unwrap());
                } else {
                    assert_eq!(f.msg.value["result"], value_json::to_json(&value));
                    assert_eq!(f.reply.as_ref().unwrap().method, f.msg.method);
                    replies += 1;
                }
            }
            _ => {}
        }
    }
    calls.sort();
    assert_eq!(
        calls,
        [
            "on_connect",
            "on_connect",
            "on_disconnect",
            "on_request",
            "on_request",
            "on_request",
            "on_response"
        ]
    );
    assert_eq!((replies, readies, configures), (6, 2, 2));
}
