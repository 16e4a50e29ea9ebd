//! Fault injection in the server role, seen through the client role: each
//! fault is reported clearly, faults hit exactly the calls they name, and
//! seeded chaos is reproducible.

use serde_json::{Value as Json, json};

use crate::support::{self, specfile};

fn mock(dir: &std::path::Path, spec: &Json) -> support::Proc {
    let path = specfile::write(dir, "mock.json", spec);
    support::mock_server(dir, &path, "m.sock", &[])
}

/// Runs `calls` calls of `method` through the client role.
fn client(dir: &std::path::Path, method: &str, calls: usize, extra: &[&str]) -> support::Output {
    let steps: Vec<Json> = (0..calls).map(|_| json!([method, []])).collect();
    let spec = specfile::write(
        dir,
        "c.json",
        &json!({"role": "client", "try_methods": steps}),
    );
    let socket = dir.join("m.sock");
    let mut args = vec![
        "client",
        "--spec",
        spec.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    support::run(dir, &args)
}

fn failures(out: &support::Output) -> Vec<String> {
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["failures"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .map(|x| x["message"].as_str().unwrap().to_owned())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn every_fault_is_reported_clearly_by_the_client() {
    let dir = support::tmpdir();
    let ok = json!({"result": "ok"});
    let mut server = mock(
        dir.path(),
        &json!({"role": "server", "on_methods": {
            "plugin.Close": [{"close": true}],
            "plugin.Garbage": [{"garbage": "c1 c1"}],
            "plugin.Truncate": [{"truncate": 3, "result": "a longer reply"}],
            "plugin.WrongId": [{"wrong_msgid": 77, "result": "ok"}],
            "plugin.Silent": [{"no_reply": true}],
            "plugin.After": [{"garbage": {"hex": "a1 78", "after_reply": true}, "result": "ok"}],
            "plugin.Slow": [{"delay_ms": 1500, "result": "late"}],
            "plugin.Error": [{"error": "boom"}],
            "plugin.Ok": [ok]}}),
    );
    let cases: &[(&str, &str)] = &[
        (
            "plugin.Close",
            "the server closed the connection before replying (Kong would log \"no data\")",
        ),
        (
            "plugin.Garbage",
            "undecodable bytes from the server: invalid data at stream offset 0: reserved msgpack marker 0xc1",
        ),
        (
            "plugin.Truncate",
            "the server closed the connection in the middle of the reply (3 bytes of it arrived",
        ),
        (
            "plugin.WrongId",
            "response with msgid 77 while waiting for 1 (Kong fails with \"unexpected RPC response ID",
        ),
        (
            "plugin.Silent",
            "no reply within 1s (Kong would log \"no data\")",
        ),
        ("plugin.Slow", "no reply within 1s"),
    ];
    for (method, expected) in cases {
        let out = client(dir.path(), method, 1, &["--timeout", "1"]);
        assert_eq!(out.code, 1, "{method}: {}", out.stderr);
        let f = failures(&out);
        assert!(f[0].contains(expected), "{method}: {f:?}");
        assert!(out.stderr.contains(expected), "{method}: {}", out.stderr);
    }
    // Bytes after a reply are caught before the next call.
    let out = client(dir.path(), "plugin.After", 2, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let f = failures(&out);
    assert_eq!(f[0], "");
    assert!(
        f[1].contains("the server sent 2 byte(s) nobody asked for after its last reply: a178"),
        "{f:?}"
    );
    let out = client(dir.path(), "plugin.Error", 1, &[]);
    assert_eq!(
        out.code, 0,
        "an error reply alone is not a failure: {}",
        out.stderr
    );
    assert!(out.stderr.contains("plugin.Error returned an error: boom"));
    assert_eq!(server.interrupt(), 0);
}

#[test]
fn call_numbers_count_per_connection_or_globally() {
    for (cycle, second_run) in [("per_connection", "second"), ("global", "")] {
        let dir = support::tmpdir();
        let mut server = mock(
            dir.path(),
            &json!({"role": "server", "cycle": cycle, "on_methods": {"plugin.M": [
                {"calls": [2], "error": "second"},
                {"result": "ok"}]}}),
        );
        let runs: Vec<Vec<Json>> = (0..2)
            .map(|_| {
                let out = client(dir.path(), "plugin.M", 2, &[]);
                let r: Json = serde_json::from_str(&out.stdout).unwrap();
                r["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["error"].clone())
                    .collect()
            })
            .collect();
        assert_eq!(runs[0], [Json::Null, json!("second")], "{cycle}");
        let expected = if second_run.is_empty() {
            Json::Null
        } else {
            json!(second_run)
        };
        assert_eq!(
            runs[1],
            [Json::Null, expected],
            "{cycle}: calls 3 and 4 globally"
        );
        assert_eq!(server.interrupt(), 0);
    }
}

/// Which of 40 calls fail with the seeded chaos of `seed`.
fn chaos(seed: u64) -> Vec<bool> {
    let dir = support::tmpdir();
    let mut server = mock(
        dir.path(),
        &json!({"role": "server", "seed": seed, "on_methods": {"plugin.M": [
            {"probability": 0.3, "error": "chaos"},
            {"result": "ok"}]}}),
    );
    let out = client(dir.path(), "plugin.M", 40, &[]);
    assert_eq!(server.interrupt(), 0);
    let r: Json = serde_json::from_str(&out.stdout).unwrap();
    r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["error"] == "chaos")
        .collect()
}

#[test]
fn seeded_chaos_is_reproducible() {
    let a = chaos(42);
    assert_eq!(a, chaos(42), "the same seed faults the same calls");
    let hits = a.iter().filter(|h| **h).count();
    assert!(
        (4..=24).contains(&hits),
        "about 30% of 40 calls, got {hits}"
    );
    assert_ne!(a, chaos(43), "another seed, other calls");
}

#[test]
fn crash_takes_the_server_process_down() {
    let dir = support::tmpdir();
    let mut server = mock(
        dir.path(),
        &json!({"role": "server", "on_methods": {"plugin.Panic": [{"crash": true}]}}),
    );
    let out = client(dir.path(), "plugin.Panic", 1, &[]);
    assert_eq!(out.code, 1);
    assert!(failures(&out)[0].contains("closed the connection before replying"));
    assert_eq!(server.exit_code(), 2);
    assert!(
        server.stderr().contains("fault crash"),
        "{}",
        server.stderr()
    );
}

#[test]
fn the_shipped_chaos_mock_faults_the_same_calls_every_run() {
    let run = || {
        let dir = support::tmpdir();
        let mut server = support::mock_server(
            dir.path(),
            &support::spec("mock-faults.json"),
            "faults.sock",
            &[],
        );
        let spec = specfile::write(
            dir.path(),
            "c.json",
            &json!({"role": "client", "kong": {"plugin": "hello_peer", "requests": 12}}),
        );
        let socket = dir.path().join("faults.sock");
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
        assert_eq!(server.interrupt(), 0);
        let r: Json = serde_json::from_str(&out.stdout).unwrap();
        r["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| {
                let p = &q["phases"][0];
                format!(
                    "{}/{}",
                    p["status"].as_str().unwrap(),
                    p["resets"].as_u64().unwrap_or(0)
                )
            })
            .collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first, run());
    assert!(
        first.iter().any(|s| s.starts_with("completed")),
        "{first:?}"
    );
    assert!(first.iter().any(|s| s.starts_with("failed")), "{first:?}");
    assert_eq!(
        first[2], "failed/0",
        "the 3rd HandleEvent is closed: {first:?}"
    );
}

#[test]
fn fault_keys_are_checked_at_load() {
    let bad = [
        (
            r#"{"on_methods": {"m": [{"close": true, "no_reply": true}]}}"#,
            "only do one of close, no_reply",
        ),
        (
            r#"{"on_methods": {"m": [{"probability": 1.5}]}}"#,
            "probability must be between 0 and 1",
        ),
        (
            r#"{"on_methods": {"m": [{"calls": [0]}]}}"#,
            "call numbers start at 1",
        ),
        (
            r#"{"on_methods": {"m": [{"garbage": "zz"}]}}"#,
            "is not hex",
        ),
        (
            r#"{"on_methods": {"m": [{"truncate": false}]}}"#,
            "leave truncate out",
        ),
    ];
    for (text, expected) in bad {
        let err = plugtap::spec::load_str(text, "f.json")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f.json:1:"), "{err}");
        assert!(err.contains(expected), "{err}");
    }
}
