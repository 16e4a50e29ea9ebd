//! The server role, run as the built binary on temp sockets and driven by a
//! raw msgpack peer.

use std::os::unix::net::UnixListener;
use std::time::Duration;

use nix::sys::signal::Signal;
use rmpv::Value;
use serde_json::Value as Json;

use crate::support::mp::{MpPeer, map, request, response};
use crate::support::{self, Proc};

#[test]
fn original_example_runs_verbatim_and_cycles_per_connection() {
    let dir = support::tmpdir();
    // The example's socket is relative ("mock.socket"): it lands in the cwd.
    let spec = support::spec("original-server.json");
    let mut server = Proc::plugtap(dir.path(), &["-s", spec.to_str().unwrap()]);
    let socket = dir.path().join("mock.socket");
    support::wait_for_socket(&socket);

    for _ in 0..2 {
        let mut kong = MpPeer::connect(&socket);
        let start = kong.call(1, "plugin.StartInstance", Value::Array(vec![]));
        assert_eq!(start, response(1, Value::Nil, "{}".into()));
        let step = |kong: &mut MpPeer, id| kong.call(id, "plugin.Step", Value::Array(vec![]));
        let debug_done = Value::Array(vec![
            "kong.log.debug".into(),
            Value::Array(vec!["done".into()]),
        ]);
        assert_eq!(
            step(&mut kong, 2),
            response(2, Value::Nil, debug_done.clone())
        );
        assert_eq!(step(&mut kong, 3), response(3, Value::Nil, "ret".into()));
        assert_eq!(step(&mut kong, 4), response(4, Value::Nil, debug_done));
        let missing = kong.call(5, "plugin.CloseInstance", Value::Array(vec![0.into()]));
        assert_eq!(missing, response(5, "not implemented".into(), Value::Nil));
    }

    assert_eq!(server.interrupt(), 0, "{}", server.stderr());
    assert!(support::wait_gone(&socket), "socket left behind");
    // Each connection's conversation is one JSON line on stdout.
    let lines: Vec<Json> = server
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let messages = lines[0]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 10);
    assert_eq!(messages[0]["request"][2], "plugin.StartInstance");
    assert_eq!(messages[9]["response"][2], "not implemented");
}

#[test]
fn many_concurrent_connections() {
    let dir = support::tmpdir();
    let mut server =
        support::mock_server(dir.path(), &support::spec("mock-hello.json"), "m.sock", &[]);
    let socket = dir.path().join("m.sock");
    let threads: Vec<_> = (0..48)
        .map(|t| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut kong = MpPeer::connect(&socket);
                for i in 0..25u32 {
                    let id = t * 1000 + i;
                    let params = Value::Array(vec!["hello_peer".into()]);
                    let reply = kong.call(id, "plugin.GetPluginInfo", params);
                    assert_eq!(reply[1], Value::from(id), "reply to the right msgid");
                    assert_eq!(reply[3]["Name"], Value::from("hello_peer"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(server.interrupt(), 0);
    assert_eq!(server.stdout().lines().count(), 48);
}

#[test]
fn match_notify_delay_on_connect_and_global_cycle() {
    let dir = support::tmpdir();
    let spec_path = dir.path().join("s.json");
    std::fs::write(
        &spec_path,
        r#"{
            "role": "server",
            "cycle": "global",
            "on_connect": [["serverPid", "${pid}"]],
            "on_methods": {
                "plugin.Step": [
                    {"match": [{"Data": "a"}], "result": "for a", "notify": [{"method": "note", "params": [1]}]},
                    {"result": "first"},
                    {"result": "second", "delay_ms": 300}
                ]
            }
        }"#,
    )
    .unwrap();
    let server = support::mock_server(dir.path(), &spec_path, "g.sock", &[]);
    let socket = dir.path().join("g.sock");

    let mut a = MpPeer::connect(&socket);
    let hello = a.recv();
    assert_eq!(
        hello,
        Value::Array(vec![2.into(), "serverPid".into(), server.pid().into()])
    );
    let data_b = Value::Array(vec![map(&[("Data", "b".into())])]);
    let data_a = Value::Array(vec![map(&[("Data", "a".into())])]);
    assert_eq!(
        a.call(1, "plugin.Step", data_b.clone())[3],
        Value::from("first")
    );

    // A second connection continues the global cycle.
    let mut b = MpPeer::connect(&socket);
    assert_eq!(b.recv()[1], Value::from("serverPid"));
    let started = std::time::Instant::now();
    assert_eq!(b.call(1, "plugin.Step", data_b)[3], Value::from("second"));
    assert!(
        started.elapsed() >= Duration::from_millis(290),
        "delay_ms honoured"
    );

    // The matching entry sends its notification before the reply.
    b.send(&request(2, "plugin.Step", data_a));
    assert_eq!(
        b.recv(),
        Value::Array(vec![2.into(), "note".into(), Value::Array(vec![1.into()])])
    );
    assert_eq!(b.recv(), response(2, Value::Nil, "for a".into()));
}

#[test]
fn malformed_and_undecodable_input_does_not_stop_the_server() {
    let dir = support::tmpdir();
    let mut server = support::mock_server(
        dir.path(),
        &support::spec("original-server.json"),
        "b.sock",
        &["--max-message", "4096"],
    );
    let socket = dir.path().join("b.sock");
    let mut healthy = MpPeer::connect(&socket);

    // Valid msgpack, wrong shape: logged, ignored, the connection goes on.
    let mut odd = MpPeer::connect(&socket);
    odd.send(&Value::Array(vec![7.into(), "x".into()]));
    odd.send(&map(&[("not", "rpc".into())]));
    let reply = odd.call(3, "plugin.StartInstance", Value::Array(vec![]));
    assert_eq!(reply, response(3, Value::Nil, "{}".into()));

    // Invalid bytes (reserved marker): that connection is closed.
    let mut bad = MpPeer::connect(&socket);
    bad.send_raw(&[0x94, 0x00, 0x01, 0xc1]);
    assert!(bad.try_recv().is_none(), "connection closed");

    // A hostile length above --max-message: rejected before buffering.
    let mut huge = MpPeer::connect(&socket);
    huge.send_raw(&[0x94, 0x00, 0x01, 0xdb, 0x7f, 0xff, 0xff, 0xff]);
    assert!(huge.try_recv().is_none(), "connection closed");

    // Deep nesting.
    let mut deep = MpPeer::connect(&socket);
    deep.send_raw(&[0x91; 500]);
    assert!(deep.try_recv().is_none(), "connection closed");

    // A client that disconnects mid-message.
    let mut cut = MpPeer::connect(&socket);
    cut.send_raw(&[0x94, 0x00, 0x01, 0xb4, b'p']);
    drop(cut);
    server.wait_for_stderr("stream ended in the middle of a message");

    // Everyone else is unaffected.
    let reply = healthy.call(9, "plugin.HandleEvent", Value::Array(vec![]));
    assert_eq!(reply[1], Value::from(9));
    drop((healthy, odd));

    assert_eq!(server.interrupt(), 0);
    let err = server.stderr();
    assert!(err.contains("MALFORMED"), "{err}");
    assert!(err.contains("unknown message type 7"), "{err}");
    assert!(err.contains("reserved msgpack marker 0xc1"), "{err}");
    assert!(err.contains("too large"), "{err}");
    assert!(err.contains("nests deeper"), "{err}");
    assert!(
        err.contains("stream ended in the middle of a message"),
        "{err}"
    );
    let out = server.stdout();
    assert!(out.contains("\"undecodable\":\"940001c1\""), "{out}");
}

#[test]
fn socket_path_rules() {
    let dir = support::tmpdir();
    let spec = support::spec("original-server.json");
    let spec = spec.to_str().unwrap();

    // A stale socket file (no listener) is replaced.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let mut server = Proc::plugtap(
        dir.path(),
        &[
            "server",
            "--spec",
            spec,
            "--socket",
            stale.to_str().unwrap(),
        ],
    );
    support::wait_for_socket(&stale);

    // A live listener is refused and left alone.
    let out = support::run(
        dir.path(),
        &[
            "server",
            "--spec",
            spec,
            "--socket",
            stale.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("is in use"), "{}", out.stderr);
    assert!(stale.exists());
    MpPeer::connect(&stale);

    // SIGTERM removes the socket.
    server.signal(Signal::SIGTERM);
    assert_eq!(server.exit_code(), 0);
    assert!(!stale.exists());

    // A regular file is never replaced.
    let file = dir.path().join("file.sock");
    std::fs::write(&file, "precious").unwrap();
    let out = support::run(
        dir.path(),
        &["server", "--spec", spec, "--socket", file.to_str().unwrap()],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("is not a socket"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");

    // Paths over the OS limit.
    let long = format!("{}/{}.sock", dir.path().display(), "x".repeat(120));
    let out = support::run(dir.path(), &["server", "--spec", spec, "--socket", &long]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("at most 107"), "{}", out.stderr);

    // A missing directory.
    let out = support::run(
        dir.path(),
        &[
            "server",
            "--spec",
            spec,
            "--socket",
            "/nonexistent-dir/x.sock",
        ],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
}

#[test]
fn kong_probe_connections_that_send_nothing_are_fine() {
    let dir = support::tmpdir();
    let mut server = support::mock_server(
        dir.path(),
        &support::spec("original-server.json"),
        "p.sock",
        &[],
    );
    let socket = dir.path().join("p.sock");
    for _ in 0..20 {
        drop(MpPeer::connect(&socket));
    }
    let mut kong = MpPeer::connect(&socket);
    assert_eq!(
        kong.call(1, "plugin.StartInstance", Value::Nil)[3],
        Value::from("{}")
    );
    drop(kong);
    assert_eq!(server.interrupt(), 0);
    // Silent connections print no conversation.
    assert_eq!(server.stdout().lines().count(), 1);
}
