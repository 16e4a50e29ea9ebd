//! The proxy's wrapper mode (it starts the server itself, passes signals
//! on and exits with its status) and proxy specs run with `plugtap run`.

use std::path::Path;

use plugtap::message::Direction;
use plugtap::record::Line;
use rmpv::Value;

use crate::proxy::{PING_SERVER, lines, write_spec};
use crate::support::mp::MpPeer;
use crate::support::{self, Proc};

#[test]
fn wrapper_mode_runs_the_python_server_and_stops_it_on_sigterm() {
    let dir = support::tmpdir();
    let d = dir.path();
    let cmd = support::python_peer_cmd(d, "real.sock");
    let mut args = vec![
        "proxy",
        "--listen",
        "front.sock",
        "--upstream",
        "real.sock",
        "--record",
        "rec.jsonl",
        "--",
    ];
    args.extend(cmd.split_whitespace());
    let mut proxy = Proc::plugtap(d, &args);
    support::wait_for_socket(&d.join("front.sock"));
    let out = support::run(
        d,
        &[
            "client",
            "--spec",
            support::spec("client-event-cycle.json").to_str().unwrap(),
            "--socket",
            d.join("front.sock").to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0, "{}", proxy.stderr());
    assert!(!d.join("front.sock").exists());
    let stderr = proxy.stderr();
    assert!(stderr.contains("passing it on to"), "{stderr}");
    let lines = lines(&d.join("rec.jsonl"));
    let child: Vec<_> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Child(c) => Some(c.event.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(child, ["started", "exited"]);
    assert_eq!(
        lines.iter().filter(|l| matches!(l, Line::Frame(_))).count(),
        14
    );
}

#[test]
fn wrapper_mode_exits_with_the_servers_status() {
    let dir = support::tmpdir();
    let d = dir.path();
    let out = support::run(
        d,
        &[
            "proxy",
            "--listen",
            "f.sock",
            "--upstream",
            "b.sock",
            "--",
            "sh",
            "-c",
            "echo starting; exit 3",
        ],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("exited (exit code 3) before"),
        "{}",
        out.stderr
    );
    assert!(!d.join("f.sock").exists());
}

#[test]
fn a_proxy_spec_runs_with_plugtap_run() {
    let dir = support::tmpdir();
    let d = dir.path();
    let server_spec = write_spec(d, "server.json", PING_SERVER);
    let _server = support::mock_server(d, Path::new(&server_spec), "back.sock", &[]);
    let spec = write_spec(
        d,
        "proxy.json",
        r#"{"role": "proxy", "socket": "front.sock", "upstream": "back.sock",
            "record": "rec.jsonl", "redact": ["n"]}"#,
    );
    let mut proxy = Proc::plugtap(d, &["run", &spec]);
    support::wait_for_socket(&d.join("front.sock"));
    let mut peer = MpPeer::connect(&d.join("front.sock"));
    let reply = peer.call(
        1,
        "bench.Ping",
        Value::Array(vec![crate::support::mp::map(&[("n", 42.into())])]),
    );
    assert_eq!(reply[3], crate::support::mp::map(&[("pong", true.into())]));
    drop(peer);
    proxy.wait_for_stderr("response #1");
    assert_eq!(proxy.interrupt(), 0, "{}", proxy.stderr());
    let lines = lines(&d.join("rec.jsonl"));
    let f = lines
        .iter()
        .find_map(|l| match l {
            Line::Frame(f) if f.dir == Direction::ToServer => Some(f),
            _ => None,
        })
        .unwrap();
    assert!(f.redacted && f.raw.is_none(), "{f:?}");
    assert_eq!(f.msg.value[3][0]["n"], "[redacted]");
    let stderr = proxy.stderr();
    assert!(
        stderr.contains(r#"[{"n":"[redacted]"}]"#) && !stderr.contains(r#""n":42"#),
        "redacted in logs too: {stderr}"
    );
}
