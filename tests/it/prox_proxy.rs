//! The prox wrapper (`plugtap proxy --protocol prox -- PLUGIN`) end to end:
//! plugtap's prox client drives the Python prox-style plugin directly and
//! through the wrapper and gets the same results; the recording is checked
//! against the bytes, decoded independently with rmpv; a `ready` naming a
//! missing socket and a plugin exiting mid-call are reported (raw-peer
//! faults are in `prox_proxy_faults.rs`).

use std::path::Path;

use plugtap::record::Line;
use rmpv::Value as Mp;
use serde_json::{Value as Json, json};

use crate::proxy::{b64, lines};
use crate::support;
use crate::support::prox::plugin_cmd;
use crate::support::specfile;

fn report(stdout: &str) -> Json {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The shell command starting the wrapper around the Python plugin.
fn wrapped(dir: &Path, wrapper_args: &str, plugin_args: &str) -> String {
    format!(
        "{} proxy --protocol prox {wrapper_args} -- {}",
        support::bin().display(),
        plugin_cmd(dir, plugin_args)
    )
}

fn mp_get<'a>(v: &'a Mp, key: &str) -> Option<&'a Mp> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// The client's steps: name, status and result, which must not depend on
/// whether the wrapper sits in between.
fn outcomes(r: &Json) -> Vec<Json> {
    r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!([s["method"], s["status"], s["result"]]))
        .collect()
}

#[test]
fn client_gets_the_same_results_through_the_wrapper_and_it_records_them() {
    let dir = support::tmpdir();
    let spec = support::spec("prox-client.json");
    let spec = spec.to_str().unwrap();
    let direct = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            spec,
            "--start-cmd",
            &plugin_cmd(dir.path(), ""),
            "--json",
        ],
    );
    assert_eq!(direct.code, 0, "{}", direct.stderr);
    let rec = dir.path().join("rec.jsonl");
    let through = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            spec,
            "--start-cmd",
            &wrapped(dir.path(), &format!("--record {}", rec.display()), ""),
            "--json",
        ],
    );
    assert_eq!(through.code, 0, "{}", through.stderr);
    let (direct, through_r) = (report(&direct.stdout), report(&through.stdout));
    assert_eq!(outcomes(&direct), outcomes(&through_r));
    assert_eq!(direct["plugin"]["pushes"], through_r["plugin"]["pushes"]);
    assert_eq!(
        through_r["plugin"]["exit"],
        "exited (exit code 0) after its stdin closed"
    );
    // prox was told plugtap's socket, next to the plugin's; it is gone.
    let ours = dir.path().join("plugin.plugtap.sock");
    assert_eq!(
        through_r["plugin"]["socket"].as_str(),
        Some(ours.to_str().unwrap())
    );
    assert!(!ours.exists(), "the wrapper removed its socket");

    let reader = plugtap::record::Reader::open(&rec).unwrap();
    let h = reader.header();
    assert_eq!(h.protocol.name(), "prox");
    assert!(h.command.as_deref().unwrap().contains("prox_plugin.py"));
    let lines = lines(&rec);
    // stdio: every line with its exact bytes; `ready` rewritten.
    let stdio: Vec<_> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Stdio(s) => Some(s),
            _ => None,
        })
        .collect();
    let methods: Vec<(&str, &str)> = stdio
        .iter()
        .map(|s| (s.stream.as_str(), s.msg.method.as_deref().unwrap_or("ack")))
        .collect();
    assert_eq!(
        methods[..6],
        [
            ("stdin", "configure"),
            ("stdin", "configure"),
            ("stdout", "ack"),
            ("stdout", "ready"),
            ("stdout", "set_targets"),
            ("stdout", "ack"),
        ]
    );
    for s in &stdio {
        let raw = b64(s.raw.as_deref().expect("raw bytes kept"));
        assert_eq!(raw.len() as u64, s.len);
        let text: Json = serde_json::from_slice(&raw).unwrap();
        assert_eq!(text, s.msg.value);
        let ready = s.msg.method.as_deref() == Some("ready");
        assert_eq!(s.rewritten_socket.is_some(), ready);
        if ready {
            assert_eq!(
                text["params"]["socket"],
                dir.path().join("plugin.sock").to_str().unwrap()
            );
            assert_eq!(s.rewritten_socket.as_deref(), ours.to_str());
        }
    }
    // Hook frames: seven calls, six replies (on_disconnect gets none);
    // every frame decodes, independently, to what was recorded.
    let frames: Vec<_> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Frame(f) => Some(f),
            _ => None,
        })
        .collect();
    let calls: Vec<_> = frames
        .iter()
        .filter(|f| f.dir == plugtap::message::Direction::ToServer)
        .collect();
    assert_eq!((calls.len(), frames.len() - calls.len()), (7, 6));
    for f in &frames {
        let raw = b64(f.raw.as_deref().expect("raw bytes kept"));
        assert_eq!(raw.len() as u64, f.len);
        assert_eq!(
            u32::from_be_bytes(raw[..4].try_into().unwrap()) as usize,
            raw.len() - 4
        );
        let value = rmpv::decode::read_value(&mut &raw[4..]).unwrap();
        assert!(f.msg.problem.is_none(), "{:?}", f.msg);
        if f.dir == plugtap::message::Direction::ToServer {
            let t = mp_get(&value, "t").and_then(Mp::as_u64).unwrap();
            assert_eq!(f.msg.value["t"], t);
            let d = mp_get(&value, "d").and_then(Mp::as_slice).unwrap();
            let inner = rmpv::decode::read_value(&mut &d[..]).unwrap();
            assert_eq!(f.msg.value["d"], plugtap::value_json::to_json(&inner));
        } else {
            assert_eq!(f.msg.value["result"], plugtap::value_json::to_json(&value));
            let reply = f.reply.as_ref().expect("a reply names its call");
            assert_eq!(reply.method.as_deref(), f.msg.method.as_deref());
        }
    }
    let hooks: Vec<&str> = calls
        .iter()
        .map(|f| f.msg.method.as_deref().unwrap())
        .collect();
    let mut sorted = hooks.clone();
    sorted.sort();
    assert_eq!(
        sorted,
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
    let exited = lines.iter().find_map(|l| match l {
        Line::Child(c) if c.event == "exited" => c.status.clone(),
        _ => None,
    });
    assert_eq!(exited.as_deref(), Some("exit code 0"));
    assert!(matches!(lines.last(), Some(Line::End(_))));
    // Frames tile each direction of each connection: offsets follow on,
    // and they add up to the bytes forwarded.
    for l in &lines {
        let Line::Close(c) = l else { continue };
        for (dir, total) in [
            (plugtap::message::Direction::ToServer, c.to_server),
            (plugtap::message::Direction::ToClient, c.to_client),
        ] {
            let mut next = 0;
            for f in frames.iter().filter(|f| f.conn == c.conn && f.dir == dir) {
                assert_eq!(f.offset, next, "{f:?}");
                next += f.len;
            }
            assert_eq!(next, total, "connection {} {dir:?}", c.conn);
        }
    }

    // `show` renders stdio lines and hooks, as text and as a diagram.
    let out = support::run(dir.path(), &["show", rec.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("# prox recording of plugin `"));
    assert!(out.stdout.contains("stdin prox→plugin notify configure"));
    assert!(out.stdout.contains("[socket rewritten to "));
    assert!(out.stdout.contains("prox→plugin request on_request"));
    assert!(out.stdout.contains("plugin→prox response on_request"));
    assert!(out.stdout.contains("prox→plugin notify on_disconnect"));
    let out = support::run(
        dir.path(),
        &["show", rec.to_str().unwrap(), "--format", "mermaid"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("participant K as prox"));
    assert!(out.stdout.contains("K->>S: stdin configure"));
    assert!(out.stdout.contains("S-)K: stdout ready"));
    assert!(out.stdout.contains("K->>S: c"));
    let out = support::run(
        dir.path(),
        &["show", rec.to_str().unwrap(), "--method", "ready"],
    );
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout);
}

#[test]
fn a_ready_naming_a_missing_socket_is_reported() {
    let dir = support::tmpdir();
    let missing = dir.path().join("missing.sock");
    let rec = dir.path().join("rec.jsonl");
    let spec = specfile::write(
        dir.path(),
        "spec.json",
        &json!({
            "role": "client", "protocol": "prox",
            "try_methods": [{"method": "on_connect",
                             "params": {"route_id": "l4:0", "domain": "a.example"},
                             "expect": {"result": {"allow": true}}}]
        }),
    );
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--timeout",
            "5",
            "--start-cmd",
            &wrapped(
                dir.path(),
                &format!("--wait 0.5 --record {}", rec.display()),
                &format!("--announce {}", missing.display()),
            ),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "the plugin's `ready` names socket {}, which does not exist",
            missing.display()
        )),
        "{}",
        out.stderr
    );
    let errors: Vec<String> = lines(&rec)
        .into_iter()
        .filter_map(|l| match l {
            Line::Error(e) => Some(e.error),
            _ => None,
        })
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("which does not exist")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("cannot connect to upstream") && e.contains("missing.sock")),
        "{errors:?}"
    );
}

#[test]
fn a_plugin_exiting_during_a_call_is_reported_and_the_wrapper_exits_with_its_code() {
    let dir = support::tmpdir();
    let rec = dir.path().join("rec.jsonl");
    let spec = specfile::write(
        dir.path(),
        "spec.json",
        &json!({
            "role": "client", "protocol": "prox",
            "try_methods": [{"method": "on_request",
                             "params": {"route_id": "web:0", "method": "GET", "path": "/crash",
                                        "domain": "a.example"}}]
        }),
    );
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--json",
            "--start-cmd",
            &wrapped(dir.path(), &format!("--record {}", rec.display()), ""),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let r = report(&out.stdout);
    assert_eq!(r["plugin"]["exit"], "exited (exit code 3) during the calls");
    let lines = lines(&rec);
    let closed = lines
        .iter()
        .find_map(|l| match l {
            Line::Frame(f) if f.msg.kind == plugtap::message::Kind::Closed => Some(f),
            _ => None,
        })
        .expect("a closed frame");
    assert_eq!(closed.len, 0);
    assert!(
        closed
            .msg
            .error
            .as_deref()
            .unwrap()
            .contains("the plugin closed the connection instead of answering on_request"),
        "{:?}",
        closed.msg
    );
    let exited = lines.iter().find_map(|l| match l {
        Line::Child(c) if c.event == "exited" => c.status.clone(),
        _ => None,
    });
    assert_eq!(exited.as_deref(), Some("exit code 3"));
    let Some(Line::End(end)) = lines.last() else {
        panic!("not finished")
    };
    assert_eq!(end.reason, "the plugin exited (exit code 3)");
}
