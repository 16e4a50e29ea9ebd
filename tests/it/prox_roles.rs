//! prox roles end to end with the built binary: the client (stand-in for
//! prox) driving the mock plugin and the Python prox-style plugin; the mock
//! plugin driven by a raw peer that speaks on its stdin/stdout and socket
//! with hand-made bytes; the client's bytes checked by a raw plugin.

use std::os::unix::net::UnixListener;
use std::time::Duration;

use rmpv::Value as Mp;
use serde_json::{Value as Json, json};

use crate::support;
use crate::support::prox::{
    MockPlugin, connect, plugin_cmd, read_frame, silent_for, unhex, write_frame,
};

fn report(stdout: &str) -> Json {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn statuses(report: &Json) -> Vec<&str> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect()
}

#[test]
fn client_drives_the_mock_plugin() {
    let dir = support::tmpdir();
    let mock = format!(
        "{} server --spec {}",
        support::bin().display(),
        support::spec("prox-mock-plugin.json").display()
    );
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            support::spec("prox-client-mock.json").to_str().unwrap(),
            "--start-cmd",
            &mock,
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = report(&out.stdout);
    assert_eq!(statuses(&r), ["passed"; 5], "{r:#}");
    // What was sent: readable names became prox's keys, in its order, with
    // the fields prox always sends.
    assert_eq!(
        r["steps"][1]["params"],
        json!({"r": "web:0", "m": "GET", "p": "/", "d": "a.example", "a": "192.0.2.1:50000", "h": {}})
    );
    assert_eq!(
        r["steps"][1]["result"]["sp"],
        json!({"dl": 8.0, "gk": "free"})
    );
    assert!(
        r["steps"][3].get("result").is_none(),
        "on_disconnect: no reply"
    );
    let plugin = &r["plugin"];
    assert_eq!(
        (plugin["configures"].as_u64(), plugin["readies"].as_u64()),
        (Some(1), Some(1))
    );
    let socket = plugin["ready"]["socket"].as_str().unwrap();
    assert!(
        socket.starts_with("/tmp/prox-p-"),
        "the SDK's default path: {socket}"
    );
    assert_eq!(
        plugin["ready"]["hooks"],
        json!(["on_request", "on_response", "on_connect", "on_disconnect"])
    );
    assert_eq!(
        plugin["pushes"],
        json!([
            {"method": "set_targets", "params": {"route_id": "*", "targets": ["10.0.0.1:8080", "10.0.0.2:8080"]}},
            {"method": "log", "params": {"level": "info", "message": "mock plugin configured", "args": ["version", "1"]}}
        ])
    );
    assert_eq!(
        plugin["exit"],
        "exited (exit code 0) after its stdin closed"
    );
    // The mock's own log (stderr is shared) and its cleanup.
    assert!(
        out.stderr.contains("stdin closed: stopping"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("5 steps: 5 passed, 0 failed, 0 not run")
    );
    assert!(
        !std::path::Path::new(socket).exists(),
        "the mock removed its socket"
    );
}

#[test]
fn client_drives_the_python_plugin() {
    let dir = support::tmpdir();
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            support::spec("prox-client.json").to_str().unwrap(),
            "--start-cmd",
            &plugin_cmd(dir.path(), ""),
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = report(&out.stdout);
    assert_eq!(statuses(&r), ["passed"; 7], "{r:#}");
    let plugin = &r["plugin"];
    // Two routes configured: an acknowledgement and a `ready` for each.
    assert_eq!(
        (plugin["configures"].as_u64(), plugin["readies"].as_u64()),
        (Some(2), Some(2))
    );
    let lines: Vec<(&str, &str)> = plugin["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["direction"].as_str().unwrap(),
                l["view"]["method"].as_str().unwrap_or("ack"),
            )
        })
        .collect();
    assert_eq!(
        lines[..6],
        [
            ("to_server", "configure"),
            ("to_server", "configure"),
            ("to_client", "ack"),
            ("to_client", "ready"),
            ("to_client", "set_targets"),
            ("to_client", "ack"),
        ]
    );
    assert_eq!(
        plugin["pushes"][0],
        json!({"method": "set_targets", "params": {"route_id": "web:0", "targets": ["127.0.0.1:9001", "127.0.0.1:9002"]}})
    );
    // The plugin logged the disconnect's counters through a `log` push.
    assert_eq!(
        plugin["pushes"][1]["params"]["args"],
        json!(["route", "web:0", "rx", 1048576, "tx", 5_000_000_000u64])
    );
    assert_eq!(
        plugin["exit"],
        "exited (exit code 0) after its stdin closed"
    );
}

/// The mock plugin as prox sees it: lines on its stdin and stdout, and on
/// its socket the reference's bytes (other-protocols.md B.3) and bad input.
#[test]
fn mock_plugin_answers_prox_bytes_and_bad_envelopes() {
    let dir = support::tmpdir();
    let socket = dir.path().join("m.sock");
    let mut mock = MockPlugin::start(
        dir.path(),
        &support::spec("prox-mock-plugin.json"),
        &["--socket", socket.to_str().unwrap()],
    );
    let announced = mock.configure(r#"{"route_id":"l4:0"}"#);
    assert_eq!(announced, socket, "`ready` names the socket, absolute");
    assert_eq!(mock.json()["method"], "set_targets");
    assert_eq!(mock.json()["method"], "log");
    let mut s = connect(&socket);
    // on_connect, written as prox's Go encoder writes it; the reply
    // {ok: true} is the reference's frame byte for byte.
    let on_connect = unhex(
        "82 a1 74 cc 03 a1 64 c4 23 83 a1 72 a4 6c 34 3a 30 a1 64 a9 61 2e 65 78 61 6d 70 6c 65
         a1 61 ac 31 2e 32 2e 33 2e 34 3a 35 35 35 35",
    );
    write_frame(&mut s, &on_connect);
    assert_eq!(read_frame(&mut s).unwrap(), [0x81, 0xa2, 0x6f, 0x6b, 0xc3]);
    // on_request as Python's msgpack packs it (fixint t): allowed, with a
    // speed limit whose float is written as float64, as Go writes it.
    let vectors: Json = serde_json::from_str(
        &std::fs::read_to_string(support::root().join("tests/vectors/prox.json")).unwrap(),
    )
    .unwrap();
    let min = vectors["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "on_request_min")
        .unwrap();
    write_frame(&mut s, &unhex(min["envelope_hex"].as_str().unwrap()));
    let reply = read_frame(&mut s).unwrap();
    let value = rmpv::decode::read_value(&mut &reply[..]).unwrap();
    let sp = map_get(&value, "sp");
    assert_eq!(map_get(&value, "ok"), &Mp::Boolean(true));
    assert_eq!(map_get(sp, "dl"), &Mp::F64(8.0));
    let dl_at = reply
        .windows(3)
        .position(|w| w == [0xa2, b'd', b'l'])
        .unwrap();
    assert_eq!(reply[dl_at + 3], 0xcb, "float64");
    // on_disconnect gets no reply; the connection goes back to the pool.
    write_frame(&mut s, &disconnect_envelope());
    assert!(
        silent_for(&mut s, Duration::from_millis(200)),
        "no reply to on_disconnect"
    );
    mock.wait_for_stderr("prox→plugin notify on_disconnect");
    // Without `t` the SDK reads hook type 0 and answers nothing.
    write_frame(&mut s, &unhex("81 a1 64 c4 01 80"));
    assert!(silent_for(&mut s, Duration::from_millis(200)));
    mock.wait_for_stderr("unknown hook type: 0");
    // An unknown hook byte: no reply either.
    write_frame(&mut s, &unhex("82 a1 74 cc 09 a1 64 c4 01 80"));
    assert!(silent_for(&mut s, Duration::from_millis(200)));
    mock.wait_for_stderr("unknown hook type: 9");
    // Without `d` the payload is empty: the SDK's error reply.
    write_frame(&mut s, &unhex("81 a1 74 cc 01"));
    let reply = read_frame(&mut s).unwrap();
    assert_eq!(
        rmpv::decode::read_value(&mut &reply[..]).unwrap(),
        Mp::Map(vec![
            (Mp::from("ok"), Mp::Boolean(false)),
            (Mp::from("s"), Mp::from(500)),
            (Mp::from("b"), Mp::from("plugin error")),
        ])
    );
    // The connection still serves calls: a denied SNI.
    write_frame(&mut s, &connect_envelope("blocked.example"));
    assert_eq!(read_frame(&mut s).unwrap(), [0x81, 0xa2, 0x6f, 0x6b, 0xc2]);
    // Not an envelope at all: the SDK closes the connection.
    write_frame(&mut s, &unhex("93 01 02 03"));
    assert_eq!(read_frame(&mut s), None);
    mock.wait_for_stderr("the envelope is an array of 3, not a map");
    // A length above prox's 1 MiB: refused before reading it, closed.
    let mut s = connect(&socket);
    std::io::Write::write_all(&mut s, &[0x00, 0x10, 0x00, 0x01, 0x82]).unwrap();
    assert_eq!(read_frame(&mut s), None);
    mock.wait_for_stderr("1048577 bytes declared or buffered, limit 1048576");
    mock.wait_for_stderr("frame too large: 1048577 bytes");
    // Other connections are unaffected.
    let mut s = connect(&socket);
    write_frame(&mut s, &connect_envelope("a.example"));
    assert_eq!(read_frame(&mut s).unwrap(), [0x81, 0xa2, 0x6f, 0x6b, 0xc3]);
    drop(s);
    // prox stops plugins by closing stdin.
    assert_eq!(mock.close_stdin(), 0, "{}", mock.stderr());
    assert!(!socket.exists(), "the socket is removed");
    assert!(mock.stderr().contains("stdin closed: stopping"));
}

fn map_get<'a>(v: &'a Mp, key: &str) -> &'a Mp {
    v.as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// An envelope made with rmpv (not plugtap): `t` as uint8, `d` as bin.
fn envelope(t: u8, inner: &Mp) -> Vec<u8> {
    let mut d = Vec::new();
    rmpv::encode::write_value(&mut d, inner).unwrap();
    let mut out = vec![0x82, 0xa1, b't', 0xcc, t, 0xa1, b'd'];
    rmp::encode::write_bin(&mut out, &d).unwrap();
    out
}

fn connect_envelope(sni: &str) -> Vec<u8> {
    envelope(
        3,
        &Mp::Map(vec![
            (Mp::from("r"), Mp::from("l4:0")),
            (Mp::from("d"), Mp::from(sni)),
            (Mp::from("a"), Mp::from("192.0.2.1:1")),
        ]),
    )
}

fn disconnect_envelope() -> Vec<u8> {
    envelope(
        4,
        &Mp::Map(vec![
            (Mp::from("r"), Mp::from("web:0")),
            (Mp::from("a"), Mp::from("192.0.2.1:1")),
            (Mp::from("rx"), Mp::from(10)),
            (Mp::from("tx"), Mp::from(20)),
            (Mp::from("ms"), Mp::from(30)),
        ]),
    )
}

#[test]
fn mock_plugin_listens_where_the_sdk_does_by_default() {
    let dir = support::tmpdir();
    let mut mock = MockPlugin::start(dir.path(), &support::spec("prox-mock-plugin.json"), &[]);
    let socket = mock.configure("{}");
    let expected = format!("/tmp/prox-p-{}.sock", mock.pid());
    assert_eq!(socket.to_str().unwrap(), expected);
    assert!(socket.exists());
    // A second configure gets a second acknowledgement and `ready`.
    assert_eq!(mock.json()["method"], "set_targets");
    assert_eq!(mock.configure(r#"{"route_id":"web:1"}"#), socket);
    assert_eq!(mock.close_stdin(), 0);
    assert!(!socket.exists());
}

/// A raw plugin checks the client's bytes: the reference's on_connect frame,
/// byte for byte, as prox's Go encoder writes it. The client only connects
/// (no command to start): `--socket`.
#[test]
fn client_sends_proxs_bytes() {
    let dir = support::tmpdir();
    let socket = dir.path().join("raw.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let spec = dir.path().join("c.json");
    std::fs::write(
        &spec,
        r#"{"role": "client", "protocol": "prox", "try_methods": [
              {"method": "on_connect", "params": {"route_id": "l4:0", "domain": "a.example", "remote_addr": "1.2.3.4:5555"},
               "expect": {"result": {"allow": true}}},
              {"method": "on_disconnect", "params": {"r": "l4:0", "a": "1.2.3.4:5555", "rx": 1, "tx": 2, "ms": 3}}
            ]}"#,
    )
    .unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let frame = read_frame(&mut s).unwrap();
        assert_eq!(
            frame,
            unhex(
                "82 a1 74 cc 03 a1 64 c4 23 83 a1 72 a4 6c 34 3a 30 a1 64 a9 61 2e 65 78 61 6d 70 6c
                 65 a1 61 ac 31 2e 32 2e 33 2e 34 3a 35 35 35 35"
            )
        );
        write_frame(&mut s, &[0x81, 0xa2, 0x6f, 0x6b, 0xc3]);
        let frame = read_frame(&mut s).unwrap();
        // int64 counters as d3 + 8 bytes, as prox writes them.
        assert_eq!(
            frame[9..],
            unhex(
                "85 a1 72 a4 6c 34 3a 30 a1 61 ac 31 2e 32 2e 33 2e 34 3a 35 35 35 35
                 a2 72 78 d3 00 00 00 00 00 00 00 01 a2 74 78 d3 00 00 00 00 00 00 00 02
                 a2 6d 73 d3 00 00 00 00 00 00 00 03"
            )[..]
        );
        assert_eq!(read_frame(&mut s), None, "the client closes at the end");
    });
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
        ],
    );
    peer.join().expect("the raw plugin saw prox's bytes");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("2 steps: 2 passed"), "{}", out.stderr);
}
