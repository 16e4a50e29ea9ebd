//! Server faults seen through the proxy (`MsgPack:1`): the client behind
//! the proxy gets exactly what the faulty mock sent (and reports it as it
//! does without the proxy), the proxy logs and records each fault as what
//! it is, and other connections keep going.

use std::path::Path;
use std::time::Duration;

use plugtap::message::{Direction, Kind};
use plugtap::record::Line;
use serde_json::{Value as Json, json};

use crate::proxy::{lines, proxy};
use crate::support::mp::{MpPeer, request};
use crate::support::{self, specfile};

/// Runs `method` once through the proxy; returns (exit code, first failure).
fn call(dir: &Path, method: &str) -> (i32, String) {
    let spec = specfile::write(
        dir,
        "c.json",
        &json!({"role": "client", "try_methods": [[method, []]]}),
    );
    let out = support::run(
        dir,
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--socket",
            dir.join("front.sock").to_str().unwrap(),
            "--json",
            "--timeout",
            "1",
        ],
    );
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    let failure = report["steps"][0]["failures"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (out.code, failure)
}

/// The recorded connection whose first request is `method`.
fn conn_of(lines: &[Line], method: &str) -> u64 {
    lines
        .iter()
        .find_map(|l| match l {
            Line::Frame(f)
                if f.msg.kind == Kind::Request && f.msg.method.as_deref() == Some(method) =>
            {
                Some(f.conn)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no request {method} recorded"))
}

/// Short descriptions of a connection's recorded events after its open.
fn events(lines: &[Line], conn: u64) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| match l {
            Line::Frame(f) if f.conn == conn => Some(format!(
                "{:?} {}{}{}",
                f.dir,
                f.msg.kind.label(),
                f.msg
                    .error
                    .as_ref()
                    .map(|e| format!(" error={e}"))
                    .unwrap_or_default(),
                f.msg
                    .problem
                    .as_ref()
                    .map(|p| format!(" problem={p}"))
                    .unwrap_or_default()
            )),
            Line::Undecodable(u) if u.conn == conn => {
                Some(format!("{:?} undecodable: {}", u.dir, u.error))
            }
            Line::Eof(e) if e.conn == conn => Some(format!("{:?} eof", e.dir)),
            Line::Error(e) if e.conn == Some(conn) => Some(format!("error: {}", e.error)),
            Line::Close(c) if c.conn == conn => Some("close".into()),
            _ => None,
        })
        .collect()
}

fn has(events: &[String], needle: &str) -> bool {
    events.iter().any(|e| e.contains(needle))
}

#[test]
fn each_server_fault_passes_through_the_proxy_and_is_recorded_as_what_it_is() {
    let dir = support::tmpdir();
    let d = dir.path();
    let spec = specfile::write(
        d,
        "faults.json",
        &json!({"role": "server", "on_methods": {
            "plugin.Close": [{"close": true}],
            "plugin.Garbage": [{"garbage": "c1 c1"}],
            "plugin.Truncate": [{"truncate": 3, "result": "a longer reply"}],
            "plugin.WrongId": [{"wrong_msgid": 77, "result": "ok"}],
            "plugin.Silent": [{"no_reply": true}],
            "plugin.Slow": [{"delay_ms": 300, "result": "late"}],
            "plugin.Error": [{"error": "boom"}],
            "plugin.Ok": [{"result": "ok"}]}}),
    );
    let mut server = support::mock_server(d, &spec, "back.sock", &["--no-conversations"]);
    let mut p = proxy(d, "front.sock", "back.sock", "rec.jsonl", &[]);

    // A connection left hanging on a call that never gets an answer...
    let mut hanging = MpPeer::connect(&d.join("front.sock"));
    hanging.send(&request(1, "plugin.Silent", rmpv::Value::Array(vec![])));

    // ...while the client behind the proxy sees each fault as it would
    // without the proxy.
    let cases: &[(&str, &str)] = &[
        (
            "plugin.Close",
            "the server closed the connection before replying",
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
            "response with msgid 77 while waiting for 1",
        ),
        ("plugin.Silent", "no reply within 1s"),
    ];
    for (method, expected) in cases {
        let (code, failure) = call(d, method);
        assert_eq!(code, 1, "{method}");
        assert!(failure.contains(expected), "{method}: {failure}");
    }
    for method in ["plugin.Slow", "plugin.Error", "plugin.Ok"] {
        let (code, failure) = call(d, method);
        assert_eq!(code, 0, "{method}: {failure}");
    }
    // The hanging connection got nothing meant for the others.
    hanging
        .stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(hanging.try_recv().is_none());
    drop(hanging);

    assert_eq!(server.interrupt(), 0);
    p.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(p.exit_code(), 0, "{}", p.stderr());
    let lines = lines(&d.join("rec.jsonl"));

    let close = events(&lines, conn_of(&lines, "plugin.Close"));
    assert!(has(&close, "ToClient eof"), "{close:?}");
    assert!(
        has(
            &close,
            "error: request #1 plugin.Close got no reply from the server before the connection closed"
        ),
        "{close:?}"
    );
    let garbage = events(&lines, conn_of(&lines, "plugin.Garbage"));
    assert!(
        has(
            &garbage,
            "ToClient undecodable: invalid data at stream offset 0: reserved msgpack marker 0xc1"
        ),
        "{garbage:?}"
    );
    let truncated = events(&lines, conn_of(&lines, "plugin.Truncate"));
    assert!(
        has(
            &truncated,
            "ToClient undecodable: stream ended in the middle"
        ),
        "{truncated:?}"
    );
    assert!(has(
        &truncated,
        "error: request #1 plugin.Truncate got no reply"
    ));
    let wrong = events(&lines, conn_of(&lines, "plugin.WrongId"));
    assert!(
        has(
            &wrong,
            "ToClient response problem=unsolicited response: no request with msgid 77 is waiting for it"
        ),
        "{wrong:?}"
    );
    assert!(has(&wrong, "error: request #1 plugin.WrongId got no reply"));
    // Both Silent calls (the client's and the hanging one) are recorded as
    // requests without a reply.
    let silent: Vec<String> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Error(e) if e.error.contains("plugin.Silent got no reply") => {
                Some(e.error.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(silent.len(), 2, "{silent:?}");
    let error = events(&lines, conn_of(&lines, "plugin.Error"));
    assert!(has(&error, "ToClient response error=boom"), "{error:?}");
    let slow = lines
        .iter()
        .find_map(|l| match l {
            Line::Frame(f)
                if f.dir == Direction::ToClient
                    && f.reply.as_ref().and_then(|r| r.method.as_deref())
                        == Some("plugin.Slow") =>
            {
                f.reply.as_ref().map(|r| r.latency_us)
            }
            _ => None,
        })
        .unwrap();
    assert!(slow >= 300_000, "the delay shows in the latency: {slow}");
    // And the proxy said so on stderr.
    let err = p.stderr();
    for needle in [
        "unsolicited response: no request with msgid 77",
        "request #1 plugin.Silent got no reply from the server",
        "reserved msgpack marker 0xc1",
    ] {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
}
