//! `plugtap export` of ProtoBuf:1 recordings: the round trip against the
//! go-pdk stand-in (record through the wrapper → export the server spec →
//! the mock answers the same client with the same decoded replies and PDK
//! calls; export the client spec → it passes against a fresh stand-in),
//! and the committed exports of recordings/ re-exported and replayed.

use std::path::Path;

use serde_json::Value as Json;

use crate::pb_kong::go_peer_cmd;
use crate::support::{self, Proc};

/// The steps of a client run through `socket`: (error, result, pdk).
fn run_client(dir: &Path, spec: &Path, socket: &Path, extra: &[&str]) -> (i32, Vec<Json>, String) {
    let mut args = vec![
        "client",
        "--spec",
        spec.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = support::run(dir, &args);
    let report: Json = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    let steps = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| serde_json::json!({"error": s["error"], "result": s["result"], "pdk": s["pdk"]}))
        .collect();
    (out.code, steps, out.stderr)
}

fn export(dir: &Path, recording: &Path, role: &str) -> std::path::PathBuf {
    let out = support::run(dir, &["export", "--as", role, recording.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let path = dir.join(format!("exported-{role}.json"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

#[test]
fn round_trip_through_the_go_pdk_stand_in() {
    let dir = support::tmpdir();
    let d = dir.path();
    let real = d.join("real");
    std::fs::create_dir(&real).unwrap();
    let cmd = go_peer_cmd(&real);
    let mut args = vec![
        "proxy",
        "--protocol",
        "ProtoBuf:1",
        "--listen",
        "front.sock",
        "--upstream",
        "real/go-peer.socket",
        "--record",
        "rec.jsonl",
        "--",
    ];
    args.extend(cmd.split(' '));
    let mut proxy = Proc::plugtap(d, &args);
    proxy.wait_for_stderr("listening on");
    let client = support::spec("pb-client-event-cycle.json");
    let (code, recorded, err) = run_client(d, &client, &d.join("front.sock"), &[]);
    assert_eq!(code, 0, "{err}");
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0, "{}", proxy.stderr());

    // The mock from the recording answers the same client the same way:
    // the same RpcReturns (the recorded instance id), the same PDK calls.
    let rec = d.join("rec.jsonl");
    let server = export(d, &rec, "server");
    let mut mock = support::mock_server(d, &server, "mock.sock", &[]);
    let (code, replayed, err) = run_client(d, &client, &d.join("mock.sock"), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(replayed, recorded);
    // The mock uses Kong's answer as the plugin did: another host, another header.
    let other = d.join("other-client.json");
    std::fs::write(
        &other,
        std::fs::read_to_string(&client)
            .unwrap()
            .replace("example.test", "other.test"),
    )
    .unwrap();
    let (code, steps, err) = run_client(d, &other, &d.join("mock.sock"), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(steps[1]["pdk"][1]["args"]["v"], "hello other.test");
    assert_eq!(mock.interrupt(), 0, "{}", mock.stderr());

    // Kong's side, exported, passes against a fresh stand-in, whose
    // instance id is another random one (captured, not expected).
    let client_spec = export(d, &rec, "client");
    let text = std::fs::read_to_string(&client_spec).unwrap();
    assert!(text.contains("\"on_pdk\""), "{text}");
    assert!(text.contains("${instance_id}"), "{text}");
    let fresh = d.join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let (code, steps, err) = run_client(
        d,
        &client_spec,
        &fresh.join("go-peer.socket"),
        &["--start-cmd", &go_peer_cmd(&fresh)],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(steps.len(), recorded.len());
    assert_eq!(steps[1]["pdk"], recorded[1]["pdk"]);
}

/// Each committed ProtoBuf:1 recording and its exported specs.
const COMMITTED: &[(&str, &str, &str)] = &[(
    "go-pdk-event-cycle.jsonl",
    "export-go-pdk-event-cycle-server.json",
    "export-go-pdk-event-cycle-client.json",
)];

#[test]
fn committed_go_pdk_exports_are_up_to_date_and_replay() {
    let dir = support::tmpdir();
    let d = dir.path();
    for (recording, server, client) in COMMITTED {
        let rec = support::root().join("recordings").join(recording);
        for (role, name) in [("server", server), ("client", client)] {
            let fresh = export(d, &rec, role);
            let committed = support::spec(name);
            if std::env::var_os("PLUGTAP_REGENERATE").is_some() {
                std::fs::copy(&fresh, &committed).unwrap();
            }
            assert_eq!(
                std::fs::read_to_string(&fresh).unwrap(),
                std::fs::read_to_string(&committed).unwrap(),
                "specs/{name} is out of date: PLUGTAP_REGENERATE=1 cargo test --test it committed_go_pdk"
            );
        }
        // The exported client against the exported mock: every step as
        // recorded, except that the real go-pdk answered
        // cmd_get_plugin_info with an empty frame, whose sequence 0 fails
        // Kong's check (Kong itself never sends that command).
        let mut mock = support::mock_server(d, &support::spec(server), "m.sock", &[]);
        let (code, steps, err) = run_client(d, &support::spec(client), &d.join("m.sock"), &[]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("✗ step 0 cmd_get_plugin_info")
                && err.contains("does not echo the call's sequence 2")
                && err.contains(&format!(
                    "{} steps: {} passed, 1 failed",
                    steps.len(),
                    steps.len() - 1
                )),
            "{err}"
        );
        assert_eq!(steps[2]["pdk"][1]["args"]["v"], "hello example.test");
        assert_eq!(mock.interrupt(), 0, "{}", mock.stderr());
    }
}
