//! Fault injection in the ProtoBuf:1 server role, end to end: the pb client
//! drives the faulty mock through the recording proxy, and both the
//! client's report and the recording say what went wrong on each call.

use std::path::Path;

use plugtap::message::{Direction, Kind};
use plugtap::record::Line;
use serde_json::Value as Json;

use crate::proxy::{lines, proxy};
use crate::support;

/// A client spec making `n` calls of `method` with `params`.
fn client_spec(dir: &Path, method: &str, params: &str, n: usize) -> String {
    let steps: Vec<String> = (0..n)
        .map(|_| {
            format!(r#"{{"method": "{method}", "params": {params}, "expect": {{"error": null}}}}"#)
        })
        .collect();
    let path = dir.join(format!("{method}.json"));
    std::fs::write(
        &path,
        format!(
            r#"{{"role": "client", "protocol": "ProtoBuf:1", "try_methods": [{}]}}"#,
            steps.join(",\n")
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn run_client(dir: &Path, spec: &str, socket: &str) -> (support::Output, Json) {
    let out = support::run(
        dir,
        &[
            "client",
            "--spec",
            spec,
            "--socket",
            socket,
            "--timeout",
            "1",
            "--json",
        ],
    );
    let report: Json = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    (out, report)
}

fn failures(step: &Json) -> String {
    step["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[test]
fn each_fault_is_reported_by_the_client_and_recorded_by_the_proxy() {
    let dir = support::tmpdir();
    let d = dir.path();
    let mut server =
        support::mock_server(d, &support::spec("pb-mock-faults.json"), "back.sock", &[]);
    let mut proxy = proxy(
        d,
        "front.sock",
        "back.sock",
        "rec.jsonl",
        &["--protocol", "ProtoBuf:1"],
    );
    let spec = client_spec(
        d,
        "cmd_start_instance",
        r#"{"name": "go-peer", "config": {}}"#,
        9,
    );
    let front = d.join("front.sock");
    let (out, report) = run_client(d, &spec, front.to_str().unwrap());
    assert_eq!(out.code, 1, "{}", out.stderr);
    let steps = report["steps"].as_array().unwrap();

    // 1: delay_ms, answered.
    assert_eq!(steps[0]["status"], "passed", "{report:#}");
    assert!(steps[0]["elapsed_ms"].as_f64().unwrap() >= 300.0);
    // 2: close; 7: error, which go-pdk servers report by closing.
    for i in [1, 6] {
        assert_eq!(steps[i]["error"], "closed", "step {i}: {report:#}");
        assert!(failures(&steps[i]).contains("expected success, got error \"closed\""));
    }
    // 3: garbage instead of the RpcReturn.
    let f = failures(&steps[2]);
    assert!(f.contains("malformed frame from the server"), "{f}");
    // 4: truncated RpcReturn, then closed.
    let f = failures(&steps[3]);
    assert!(f.contains("undecodable bytes from the server"), "{f}");
    // 5: wrong sequence.
    let f = failures(&steps[4]);
    assert!(
        f.contains("sequence") && f.contains("Kong raises a Lua error"),
        "{f}"
    );
    // 6: no reply.
    let f = failures(&steps[5]);
    assert!(
        f.contains("no frame within 1s") && f.contains("timeout"),
        "{f}"
    );
    // 8: answered, then an empty frame nobody asked for, which the next
    // call reads as its RpcReturn (sequence 0).
    assert_eq!(steps[7]["status"], "passed", "{report:#}");
    let f = failures(&steps[8]);
    assert!(f.contains("sequence"), "{f}");

    assert_eq!(server.interrupt(), 0, "{}", server.stderr());
    let err = server.stderr();
    for fault in [
        "fault close",
        "fault garbage",
        "fault truncate",
        "fault wrong_msgid",
        "fault no_reply",
        "says error",
    ] {
        assert!(err.contains(fault), "{fault}: {err}");
    }
    let conversations: Vec<Json> = server
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Connections print when they close, in any order.
    let mut noted: Vec<&str> = conversations
        .iter()
        .flat_map(|c| c["messages"].as_array().unwrap())
        .filter_map(|m| m["fault"].as_str())
        .collect();
    noted.sort_unstable();
    assert_eq!(
        noted,
        [
            "close",
            "garbage",
            "garbage",
            "no_reply",
            "truncate",
            "wrong_msgid"
        ]
    );

    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0, "{}", proxy.stderr());
    let rec = lines(&d.join("rec.jsonl"));
    let header = plugtap::record::Reader::open(&d.join("rec.jsonl")).unwrap();
    assert_eq!(
        header.header().protocol,
        plugtap::protocol::Protocol::ProtoBuf1
    );
    let frames: Vec<_> = rec
        .iter()
        .filter_map(|l| match l {
            Line::Frame(f) => Some(f),
            _ => None,
        })
        .collect();
    let closed: Vec<_> = frames
        .iter()
        .filter(|f| f.msg.kind == Kind::Closed && f.dir == Direction::ToClient)
        .collect();
    // close, error, and the close after the truncated RpcReturn.
    assert_eq!(closed.len(), 3, "{closed:#?}");
    for c in &closed {
        let e = c.msg.error.as_deref().unwrap();
        assert!(
            e.contains("closed the connection instead of answering"),
            "{e}"
        );
    }
    assert!(
        frames.iter().any(|f| f.msg.kind == Kind::Malformed
            && f.dir == Direction::ToClient
            && f.msg.problem.is_some()),
        "garbage is a malformed frame"
    );
    assert!(
        rec.iter().any(|l| matches!(l, Line::Undecodable(u)
            if u.dir == Direction::ToClient && u.error.contains("middle of a frame"))),
        "the truncated RpcReturn is undecodable bytes"
    );
    assert!(
        frames.iter().any(|f| f.msg.kind == Kind::Response
            && f.msg
                .problem
                .as_deref()
                .is_some_and(|p| p.contains("sequence"))),
        "wrong sequence is flagged"
    );
    assert!(
        frames.iter().any(|f| f.msg.kind == Kind::Closed
            && f.dir == Direction::ToServer
            && f.msg
                .error
                .as_deref()
                .is_some_and(|e| e.contains("was due"))),
        "Kong giving up after no reply: {frames:#?}"
    );
    assert!(matches!(rec.last(), Some(Line::End(_))));
}

/// Runs 12 events against a fresh faulty mock; which ones were closed.
fn chaos_run(dir: &Path) -> Vec<bool> {
    let mut server = support::mock_server(
        dir,
        &support::spec("pb-mock-faults.json"),
        "chaos.sock",
        &[],
    );
    let spec = client_spec(
        dir,
        "cmd_handle_event",
        r#"{"instanceId": 7, "eventName": "access"}"#,
        12,
    );
    let socket = dir.join("chaos.sock");
    let (_, report) = run_client(dir, &spec, socket.to_str().unwrap());
    assert_eq!(server.interrupt(), 0, "{}", server.stderr());
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["error"] == "closed")
        .collect()
}

#[test]
fn seeded_probability_faults_the_same_events_in_every_run() {
    let a = support::tmpdir();
    let b = support::tmpdir();
    let first = chaos_run(a.path());
    let second = chaos_run(b.path());
    assert_eq!(first, second);
    let closed = first.iter().filter(|c| **c).count();
    assert!((1..12).contains(&closed), "{first:?}");
}

#[test]
fn crash_ends_the_server_process_and_the_client_sees_closed() {
    let dir = support::tmpdir();
    let d = dir.path();
    let spec = d.join("crash.json");
    std::fs::write(
        &spec,
        r#"{"role": "server", "protocol": "ProtoBuf:1",
            "on_methods": {"cmd_handle_event": [{"crash": true}]}}"#,
    )
    .unwrap();
    let mut server = support::mock_server(d, &spec, "crash.sock", &[]);
    let client = client_spec(
        d,
        "cmd_handle_event",
        r#"{"instanceId": 1, "eventName": "access"}"#,
        1,
    );
    let (out, report) = run_client(d, &client, d.join("crash.sock").to_str().unwrap());
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(report["steps"][0]["error"], "closed");
    assert_eq!(server.exit_code(), 2);
    assert!(
        server.stderr().contains("fault crash"),
        "{}",
        server.stderr()
    );
}
