//! `plugtap export` on small synthetic recordings: pairing per connection,
//! notifications, matches, captures, determinism, thousands of calls, and
//! bad input. (Round trips against the real Python server are in
//! export_roundtrip.rs.)

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value as Json, json};

use plugtap::export::{self, Options, Target};

use crate::support;

/// Writes a recording: a header for `protocol`, then `events` (frames
/// given as `(conn, message)`, direction from the message kind), then
/// closes and an `end` line.
fn write_rec(dir: &Path, name: &str, protocol: &str, frames: &[(u64, Json)]) -> PathBuf {
    let mut out = String::new();
    out.push_str(
        &json!({"type": "header", "format": "plugtap-recording", "version": 1, "plugtap": "0.1.0",
                "protocol": protocol, "listen": "/tmp/x/front.sock", "upstream": "/tmp/x/back.sock",
                "started_at": "2026-11-23T09:00:00Z"})
        .to_string(),
    );
    out.push('\n');
    let mut seq = 0;
    let mut line = |v: Json, out: &mut String| {
        seq += 1;
        let mut v = v;
        v["seq"] = json!(seq);
        v["t_us"] = json!(seq * 10);
        v["at"] = json!("2026-11-23T09:00:00.000001Z");
        out.push_str(&v.to_string());
        out.push('\n');
    };
    let mut conns: Vec<u64> = Vec::new();
    for (conn, msg) in frames {
        if !conns.contains(conn) {
            conns.push(*conn);
            line(json!({"type": "open", "conn": conn}), &mut out);
        }
        let (kind, dir, id, method) = match msg[0].as_u64().unwrap() {
            0 if msg.as_array().unwrap().len() != 4 => ("malformed", "to_server", None, None),
            0 => (
                "request",
                "to_server",
                Some(msg[1].clone()),
                Some(msg[2].clone()),
            ),
            1 => ("response", "to_client", Some(msg[1].clone()), None),
            _ => ("notification", "to_client", None, Some(msg[1].clone())),
        };
        let mut m = json!({"kind": kind, "value": msg});
        if let Some(id) = id {
            m["id"] = id;
        }
        if let Some(method) = method {
            m["method"] = method;
        }
        line(
            json!({"type": "frame", "conn": conn, "dir": dir, "offset": 0, "len": 1, "msg": m}),
            &mut out,
        );
    }
    for conn in conns {
        line(
            json!({"type": "close", "conn": conn, "to_server": 1, "to_client": 1}),
            &mut out,
        );
    }
    let events = 2 * frames.len() as u64;
    line(
        json!({"type": "end", "events": events, "frames": frames.len(), "reason": "test"}),
        &mut out,
    );
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    path
}

fn exported(path: &Path, target: Target, keep_volatile: bool) -> Json {
    let text = export::export_file(
        path,
        Options {
            target,
            keep_volatile,
            concurrent: false,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(text.starts_with("// Exported by `plugtap export"));
    let spec = plugtap::spec::load_str(&text, "exported").unwrap_or_else(|e| panic!("{e}"));
    assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);
    serde_json_lenient::from_str(&text).unwrap()
}

fn req(id: u64, method: &str, params: Json) -> Json {
    json!([0, id, method, params])
}

fn ok(id: u64, result: Json) -> Json {
    json!([1, id, null, result])
}

#[test]
fn replies_pair_per_connection_even_with_the_same_msgids() {
    let dir = support::tmpdir();
    // Two connections both use msgid 1 and 2; replies come back crossed.
    let rec = write_rec(
        dir.path(),
        "r.jsonl",
        "MsgPack:1",
        &[
            (1, req(1, "plugin.StartInstance", json!([{"Name": "a"}]))),
            (2, req(1, "plugin.StartInstance", json!([{"Name": "b"}]))),
            (2, ok(1, json!({"Name": "b", "Id": 8, "StartTime": 1.5}))),
            (1, ok(1, json!({"Name": "a", "Id": 7, "StartTime": 2.5}))),
            (2, req(2, "plugin.CloseInstance", json!([8]))),
            (1, req(2, "plugin.CloseInstance", json!([7]))),
            (1, ok(2, json!({"Id": 7}))),
            (2, ok(2, json!({"Id": 8}))),
        ],
    );
    let client = exported(&rec, Target::Client, false);
    assert_eq!(
        client["try_methods"],
        json!([
            {"conn": 1, "method": "plugin.StartInstance", "params": [{"Name": "a"}],
             "expect": {"error": null, "result": {"Name": "a"}}, "capture": {"id": "Id"}},
            {"conn": 2, "method": "plugin.StartInstance", "params": [{"Name": "b"}],
             "expect": {"error": null, "result": {"Name": "b"}}, "capture": {"id_2": "Id"}},
            {"conn": 2, "method": "plugin.CloseInstance", "params": ["${id_2}"],
             "expect": {"error": null, "result": {"Id": "${id_2}"}}},
            {"conn": 1, "method": "plugin.CloseInstance", "params": ["${id}"],
             "expect": {"error": null, "result": {"Id": "${id}"}}}
        ])
    );
    // --keep-volatile keeps StartTime in the expectation.
    let kept = exported(&rec, Target::Client, true);
    assert_eq!(
        kept["try_methods"][0]["expect"]["result"],
        json!({"Name": "a", "StartTime": 2.5})
    );
    let server = exported(&rec, Target::Server, false);
    assert_eq!(server["cycle"], "global");
    assert_eq!(
        server["on_methods"]["plugin.StartInstance"],
        json!([
            {"match": [{"Name": "a"}], "result": {"Name": "a", "Id": 7, "StartTime": 2.5}},
            {"match": [{"Name": "b"}], "result": {"Name": "b", "Id": 8, "StartTime": 1.5}}
        ])
    );
}

#[test]
fn same_params_different_replies_cycle_and_overlapping_matches_are_exact() {
    let dir = support::tmpdir();
    let step = |id, params: Json, result: Json| {
        vec![(1, req(id, "plugin.Step", params)), (1, ok(id, result))]
    };
    let mut frames = vec![];
    frames.extend(step(
        1,
        json!([{"EventId": 0, "Data": "x"}]),
        json!({"EventId": 0, "Data": "a"}),
    ));
    frames.extend(step(
        2,
        json!([{"EventId": 0}]),
        json!({"EventId": 0, "Data": "ret"}),
    ));
    for (id, data) in [(3, "p"), (4, "q"), (5, "p"), (6, "q")] {
        frames.push((1, req(id, "plugin.Poll", json!([]))));
        frames.push((1, ok(id, json!(data))));
    }
    for id in 7..10 {
        frames.push((1, req(id, "plugin.Same", json!([id]))));
        frames.push((1, ok(id, json!("same"))));
    }
    let rec = write_rec(dir.path(), "r.jsonl", "MsgPack:1", &frames);
    let server = exported(&rec, Target::Server, false);
    let m = &server["on_methods"];
    assert_eq!(
        m["plugin.Step"],
        json!([
            {"match": [{"EventId": 0, "Data": "x"}], "result": {"EventId": 0, "Data": "a"}},
            {"match": [{"EventId": 0}], "exact": true, "result": {"EventId": 0, "Data": "ret"}}
        ])
    );
    // p q p q is written as its shortest cycle.
    assert_eq!(m["plugin.Poll"], json!([{"result": "p"}, {"result": "q"}]));
    // Different params, one reply: no match needed.
    assert_eq!(m["plugin.Same"], json!([{"result": "same"}]));
    // The same recording always gives the same text.
    let opts = Options {
        target: Target::Server,
        keep_volatile: false,
        concurrent: false,
    };
    assert_eq!(
        export::export_file(&rec, opts).unwrap(),
        export::export_file(&rec, opts).unwrap()
    );
}

#[test]
fn notifications_become_on_connect_and_notify() {
    let dir = support::tmpdir();
    let rec = write_rec(
        dir.path(),
        "r.jsonl",
        "MsgPack:1",
        &[
            (1, json!([2, "serverPid", 4242])),
            (1, req(1, "plugin.GetStatus", json!([]))),
            (1, json!([2, "note", [1]])),
            (1, ok(1, json!({"Plugins": {}}))),
            (1, req(2, "plugin.Hang", json!([]))),
        ],
    );
    let server = exported(&rec, Target::Server, false);
    assert_eq!(server["on_connect"], json!([["serverPid", "${pid}"]]));
    assert_eq!(
        server["on_methods"]["plugin.GetStatus"],
        json!([{"result": {"Plugins": {}}, "notify": [["note", [1]]]}])
    );
    // A call the recording never saw answered.
    assert_eq!(
        server["on_methods"]["plugin.Hang"],
        json!([{"no_reply": true}])
    );
    let kept = exported(&rec, Target::Server, true);
    assert_eq!(kept["on_connect"], json!([["serverPid", 4242]]));
    // The client leaves the unanswered call out (it would wait forever).
    let client = exported(&rec, Target::Client, false);
    assert_eq!(client["try_methods"].as_array().unwrap().len(), 1);
    assert!(client["try_methods"][0].get("conn").is_none());
}

#[test]
fn errors_are_expected_by_their_text_without_ids() {
    let dir = support::tmpdir();
    let rec = write_rec(
        dir.path(),
        "r.jsonl",
        "MsgPack:1",
        &[
            (1, req(1, "plugin.HandleEvent", json!([{"InstanceId": 3}]))),
            (1, json!([1, 1, "no plugin instance #3", null])),
        ],
    );
    let client = exported(&rec, Target::Client, false);
    assert_eq!(
        client["try_methods"][0]["expect"],
        json!({"error": "no plugin instance #"})
    );
    let server = exported(&rec, Target::Server, false);
    assert_eq!(
        server["on_methods"]["plugin.HandleEvent"],
        json!([{"error": "no plugin instance #3"}])
    );
}

fn export_err(dir: &Path, rec: &Path) -> String {
    let out = support::run(dir, &["export", rec.to_str().unwrap(), "--as", "server"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    out.stderr
}

#[test]
fn bad_recordings_are_refused_with_the_line() {
    let dir = support::tmpdir();
    let good = write_rec(
        dir.path(),
        "good.jsonl",
        "MsgPack:1",
        &[(1, req(1, "m", json!([]))), (1, ok(1, json!(1)))],
    );
    let text = std::fs::read_to_string(&good).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    let garbled = dir.path().join("garbled.jsonl");
    let mut g = lines.clone();
    g[2] = "{\"type\":\"frame\",\"seq\":2,";
    std::fs::write(&garbled, g.join("\n") + "\n").unwrap();
    let err = export_err(dir.path(), &garbled);
    assert!(err.contains("garbled.jsonl:3:"), "{err}");

    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, lines[..3].join("\n") + "\n" + &lines[3][..20]).unwrap();
    let err = export_err(dir.path(), &cut);
    assert!(
        err.contains("cut.jsonl:4:") && err.contains("cut short"),
        "{err}"
    );

    let unknown = dir.path().join("unknown.jsonl");
    std::fs::write(&unknown, text.replacen("MsgPack:1", "MsgPack:9", 1)).unwrap();
    let err = export_err(dir.path(), &unknown);
    assert!(
        err.contains("unknown.jsonl:1:") && err.contains("protocol `MsgPack:9`"),
        "{err}"
    );

    let orphan = write_rec(
        dir.path(),
        "orphan.jsonl",
        "MsgPack:1",
        &[(1, ok(5, json!(1)))],
    );
    let err = export_err(dir.path(), &orphan);
    assert!(
        err.contains("orphan.jsonl:3:") && err.contains("response #5"),
        "{err}"
    );

    let err = export_err(dir.path(), &dir.path().join("missing.jsonl"));
    assert!(err.contains("cannot open recording"), "{err}");
}

#[test]
fn thousands_of_calls_export_and_replay() {
    const EVENTS: u64 = 1000;
    let dir = support::tmpdir();
    let mut frames = vec![];
    let mut ids = [0u64; 4];
    let mut call =
        |conn: u64, method: &str, params: Json, result: Json, frames: &mut Vec<(u64, Json)>| {
            let slot = &mut ids[conn as usize - 1];
            *slot += 1;
            frames.push((conn, req(*slot, method, params)));
            frames.push((conn, ok(*slot, result)));
        };
    call(
        1,
        "plugin.StartInstance",
        json!([{"Name": "p"}]),
        json!({"Id": 5, "StartTime": 1.0}),
        &mut frames,
    );
    // Events 100.. run on 4 connections, each call on the next one, as
    // Kong's pool spreads them.
    for e in 0..EVENTS {
        let id = 100 + e;
        let conn = |k: u64| (e + k) % 4 + 1;
        call(
            conn(0),
            "plugin.HandleEvent",
            json!([{"InstanceId": 5, "EventName": "access"}]),
            json!({"EventId": id, "Data": {"Method": "kong.request.get_header", "Args": ["host"]}}),
            &mut frames,
        );
        call(
            conn(1),
            "plugin.Step",
            json!([{"EventId": id, "Data": format!("h{e}")}]),
            json!({"EventId": id, "Data": {"Method": "kong.response.set_header", "Args": ["x", format!("hi h{e}")]}}),
            &mut frames,
        );
        call(
            conn(2),
            "plugin.Step",
            json!([{"EventId": id}]),
            json!({"EventId": id, "Data": "ret"}),
            &mut frames,
        );
    }
    let rec = write_rec(dir.path(), "big.jsonl", "MsgPack:1", &frames);
    let started = Instant::now();
    for (name, target) in [("server.json", "server"), ("client.json", "client")] {
        let out = support::run(
            dir.path(),
            &["export", rec.to_str().unwrap(), "--as", target, "-o", name],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    eprintln!(
        "exported {} calls twice in {:?}",
        frames.len() / 2,
        started.elapsed()
    );
    let client: Json = serde_json_lenient::from_str(
        &std::fs::read_to_string(dir.path().join("client.json")).unwrap(),
    )
    .unwrap();
    let steps = client["try_methods"].as_array().unwrap();
    assert_eq!(steps.len() as u64, 1 + 3 * EVENTS);
    assert_eq!(
        steps[3 * EVENTS as usize]["params"],
        json!([{"EventId": format!("${{event_id_{EVENTS}}}")}])
    );
    // The client spec replays against the mock made from the same recording.
    let mut mock = support::mock_server(
        dir.path(),
        &dir.path().join("server.json"),
        "m.sock",
        &["--no-conversations", "-q"],
    );
    let out = support::run(
        dir.path(),
        &[
            "-q",
            "client",
            "--spec",
            "client.json",
            "--socket",
            "m.sock",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("3001 steps: 3001 passed"),
        "{}",
        out.stderr
    );
    assert_eq!(mock.interrupt(), 0);
}

#[test]
fn spec_keys_added_for_exports_are_checked() {
    let spec = plugtap::spec::load_str(
        r#"{"protocol": "ProtoBuf:1", "try_methods": [{"conn": 2, "method": "cmd_get_plugin_names"}]}"#,
        "t",
    )
    .unwrap();
    assert!(
        spec.warnings.iter().any(|w| w.contains("`conn` labels")),
        "{:?}",
        spec.warnings
    );
    let err = plugtap::spec::load_str(
        r#"{"on_methods": {"m": [{"exact": true, "result": 1}]}}"#,
        "t",
    )
    .unwrap_err();
    assert!(err.to_string().contains("`exact` needs a `match`"), "{err}");
}

#[test]
fn exact_entries_answer_only_equal_params() {
    let dir = support::tmpdir();
    let spec = dir.path().join("mock.json");
    std::fs::write(
        &spec,
        r#"{"role": "server", "on_methods": {"plugin.Step": [
            {"match": [{"EventId": 0}], "exact": true, "result": "ret"},
            {"match": [{"EventId": 0, "Data": "x"}], "result": "data"}]}}"#,
    )
    .unwrap();
    let mut mock = support::mock_server(dir.path(), &spec, "m.sock", &[]);
    let mut peer = crate::support::mp::MpPeer::connect(&dir.path().join("m.sock"));
    let reply = |v: rmpv::Value| v.as_array().unwrap()[3].as_str().unwrap().to_owned();
    let params = |data: Option<&str>| {
        let mut m = vec![("EventId", rmpv::Value::from(0))];
        if let Some(d) = data {
            m.push(("Data", rmpv::Value::from(d)));
        }
        rmpv::Value::Array(vec![crate::support::mp::map(&m)])
    };
    // Without `exact`, both entries would match the second call and cycle.
    for _ in 0..2 {
        assert_eq!(
            reply(peer.call(1, "plugin.Step", params(Some("x")))),
            "data"
        );
        assert_eq!(reply(peer.call(2, "plugin.Step", params(None))), "ret");
    }
    drop(peer);
    assert_eq!(mock.interrupt(), 0);
}

#[test]
fn a_reply_to_a_malformed_request_is_left_out_with_a_warning() {
    let dir = support::tmpdir();
    // As `plugtap check` sends: a request of the wrong shape, which the
    // server answers.
    let rec = write_rec(
        dir.path(),
        "r.jsonl",
        "MsgPack:1",
        &[
            (1, json!([0, 1, "plugin.GetStatus"])),
            (1, json!([1, 1, "bad request", null])),
            (1, req(2, "plugin.GetStatus", json!([]))),
            (1, ok(2, json!({"Plugins": {}}))),
        ],
    );
    let out = support::run(
        dir.path(),
        &["export", rec.to_str().unwrap(), "--as", "client"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("malformed message left out"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("response #1 answers a request that could not be decoded"),
        "{}",
        out.stderr
    );
    let spec: Json = serde_json_lenient::from_str(&out.stdout).unwrap();
    assert_eq!(spec["try_methods"].as_array().unwrap().len(), 1);
}

#[test]
fn concurrent_clients_share_captures_and_never_wait_forever() {
    let dir = support::tmpdir();
    let mock = dir.path().join("mock.json");
    std::fs::write(
        &mock,
        r#"{"role": "server", "on_methods": {
            "plugin.StartInstance": [{"result": {"Id": 9}}],
            "plugin.HandleEvent": [{"match": [{"InstanceId": 9}], "result": {"EventId": 4}}]}}"#,
    )
    .unwrap();
    let mut server = support::mock_server(dir.path(), &mock, "m.sock", &[]);
    // Connection 2 starts at once but needs the id connection 1
    // captures, so it waits for it.
    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"role": "client", "concurrent": true, "try_methods": [
            {"conn": 1, "method": "plugin.StartInstance", "params": [{}], "capture": {"id": "Id"}},
            {"conn": 2, "method": "plugin.HandleEvent", "params": [{"InstanceId": "${id}"}],
             "expect": {"result": {"EventId": 4}}}]}"#,
    )
    .unwrap();
    let out = support::run(
        dir.path(),
        &["client", "--spec", "good.json", "--socket", "m.sock"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    // A capture that never happens fails the step that needs it.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"role": "client", "concurrent": true, "try_methods": [
            {"conn": 1, "method": "plugin.StartInstance", "params": [{}], "capture": {"id": "Nope"}},
            {"conn": 2, "method": "plugin.HandleEvent", "params": [{"InstanceId": "${id}"}]}]}"#,
    )
    .unwrap();
    let out = support::run(
        dir.path(),
        &["client", "--spec", "bad.json", "--socket", "m.sock"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("is never captured"), "{}", out.stderr);
    assert_eq!(server.interrupt(), 0);
}
