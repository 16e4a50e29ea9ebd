//! The wrapper: `plugtap proxy --protocol go-plugin -- PLUGIN`, used by the
//! stand-in host as the plugin command, and run on its own to check what
//! it prints, passes through and relays.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

use super::{kv_plugin_cmd, python, wrapped};
use crate::support;

#[test]
fn the_host_drives_the_python_plugin_through_the_wrapper_and_every_call_is_decoded() {
    let dir = support::tmpdir();
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            support::spec("goplugin-client-kv.json").to_str().unwrap(),
            "--start-cmd",
            &wrapped(&kv_plugin_cmd(), ""),
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    // The host connected to the wrapper's socket, not the plugin's.
    assert!(
        report["handshake"].as_str().unwrap().contains("/plugtap-"),
        "{report}"
    );
    assert_eq!(report["shutdown"], "exited after Shutdown (exit code 0)");
    let log = &out.stderr;
    // The wrapper's log lines reach the host through stderr.
    for needle in [
        "schema for kv.KV from server reflection",
        "host→plugin open /kv.KV/Get",
        "host→plugin message #0 /kv.KV/Get kv.GetRequest {\"key\":\"greeting\"}",
        "plugin→host trailers /kv.KV/Get NOT_FOUND: no key 'greeting'",
        "plugin→host message #0 /kv.KV/Get kv.GetResponse {\"value\":\"aGVsbG8=\"}",
        "plugin→host message #2 /kv.KV/Watch kv.GetResponse",
        // grpcio's own text for an unknown method.
        "plugin→host trailers /kv.KV/Delete UNIMPLEMENTED: Method not found!",
        "host→plugin open /grpc.health.v1.Health/Check",
        "plugin→host message #0 /grpc.health.v1.Health/Check grpc.health.v1.HealthCheckResponse {\"status\":\"SERVING\"}",
        "plugin→host message #0 /plugin.GRPCStdio/StreamStdio plugin.StdioData",
        "host→plugin message #0 /plugin.GRPCController/Shutdown plugin.Empty {}",
        // The broker announcement is rewritten and the brokered connection decoded.
        "the plugin announced broker service 1 at unix:",
        "broker#1 s1 host→plugin open /kv.Counter/Next",
        "broker#1 s1 plugin→host message #0 /kv.Counter/Next kv.CountReply {\"count\":\"1\"}",
        "the plugin exited (code 0)",
    ] {
        assert!(log.contains(needle), "missing {needle:?} in:\n{log}");
    }
    // The host dialled plugtap's broker socket, not the plugin's.
    let announced = log
        .lines()
        .find(|l| l.contains("the host is told"))
        .unwrap_or_else(|| panic!("no rewrite logged:\n{log}"));
    assert!(announced.contains("broker1.sock"), "{announced}");
    assert!(!log.contains("RESET"), "{log}");
}

/// SIGTERM to the wrapper; it must pass it on and exit within 10 s (the
/// plugin inherits the stderr pipe, so a wrapper that left it running
/// would keep stderr open).
fn terminate(child: &mut std::process::Child) {
    use nix::sys::signal::{Signal, kill};
    let _ = kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    );
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("the wrapper did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the wrapper directly, as a host would, with `env` added.
fn start_wrapper(dir: &std::path::Path, cmd: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    start_wrapper_with(dir, &[], cmd, env)
}

/// [`start_wrapper`] with more wrapper options.
fn start_wrapper_with(
    dir: &std::path::Path,
    opts: &[&str],
    cmd: &[&str],
    env: &[(&str, &str)],
) -> std::process::Child {
    let mut c = Command::new(support::bin());
    c.args(["proxy", "--protocol", "go-plugin"])
        .args(opts)
        .arg("--")
        .args(cmd);
    c.current_dir(dir)
        .env("PLUGIN_UNIX_SOCKET_DIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

#[test]
fn the_wrapper_rewrites_the_handshake_and_passes_stderr_through_unchanged() {
    let dir = support::tmpdir();
    let py = python();
    let plugin = support::root().join("tests/peers/goplugin/kv_plugin.py");
    let mut child = start_wrapper(
        dir.path(),
        &[py.to_str().unwrap(), plugin.to_str().unwrap()],
        &[("BASIC_PLUGIN", "hello"), ("PLUGIN_PROTOCOL_VERSIONS", "1")],
    );
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let fields: Vec<&str> = line.trim_end().split('|').collect();
    // Same versions and protocol; plugtap's own socket.
    assert_eq!(fields[..3], ["1", "1", "unix"], "{line}");
    assert_eq!(fields[4], "grpc");
    let sock = std::path::PathBuf::from(fields[3]);
    assert!(
        sock.starts_with(dir.path()) && sock.to_str().unwrap().contains("plugtap-"),
        "{line}"
    );
    assert!(UnixStream::connect(&sock).is_ok());
    // As a host would stop it without Shutdown: SIGTERM, which the wrapper
    // passes on, then the wrapper exits with the plugin's status.
    terminate(&mut child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    // The plugin's hclog line arrives whole and as JSON, as the host needs it.
    let hclog = err
        .lines()
        .find(|l| l.contains("kv plugin starting"))
        .unwrap_or_else(|| panic!("{err}"));
    let entry: Json = serde_json::from_str(hclog).unwrap_or_else(|e| panic!("{e}: {hclog}"));
    assert_eq!(entry["@level"], "info");
}

#[test]
fn without_the_cookie_the_plugin_refuses_and_the_wrapper_passes_its_exit_on() {
    let dir = support::tmpdir();
    let py = python();
    let plugin = support::root().join("tests/peers/goplugin/kv_plugin.py");
    let child = start_wrapper(
        dir.path(),
        &[py.to_str().unwrap(), plugin.to_str().unwrap()],
        &[],
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(plugtap::goplugin::env::NOT_A_PLUGIN), "{err}");
    assert!(
        err.contains("Failed to read any lines from plugin's stdout"),
        "{err}"
    );
}

#[test]
fn a_garbage_first_line_goes_to_the_host_unchanged_with_a_diagnosis() {
    let dir = support::tmpdir();
    let child = start_wrapper(
        dir.path(),
        &["sh", "-c", "echo 'Listening on 8080'; exit 3"],
        &[],
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Listening on 8080\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("The host will say: Unrecognized remote plugin message: Listening on 8080"),
        "{err}"
    );
}

#[test]
fn auto_mtls_traffic_is_relayed_byte_for_byte_and_reported() {
    let dir = support::tmpdir();
    let echo = support::root().join("tests/peers/goplugin/echo_plugin.py");
    let rec = dir.path().join("mtls.jsonl");
    let mut child = start_wrapper_with(
        dir.path(),
        &["--record", rec.to_str().unwrap()],
        &["python3", echo.to_str().unwrap()],
        &[],
    );
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    let fields: Vec<&str> = line.trim_end().split('|').collect();
    assert_eq!(fields.len(), 6, "{line}");
    // The certificate field passes unchanged; only the address is plugtap's.
    assert_eq!(
        fields[5],
        "MIIBcertificatebytesnotreallyDERbutlongerthanfiftycharactersAAAA"
    );
    let mut s = UnixStream::connect(fields[3]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    s.write_all(&bytes).unwrap();
    let mut back = vec![0u8; bytes.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, bytes);
    drop(s);
    std::thread::sleep(Duration::from_millis(200));
    terminate(&mut child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("AutoMTLS is on"), "{err}");
    assert!(
        err.contains("cannot decode it without terminating TLS"),
        "{err}"
    );
    assert!(
        err.contains("10000 bytes host→plugin and 10000 bytes plugin→host (not decoded)"),
        "{err}"
    );
    // The recording says why nothing was decoded and what went through.
    use plugtap::record::Line;
    let lines = crate::proxy::lines(&rec);
    assert!(
        lines.iter().any(|l| matches!(l,
        Line::Handshake(h) if h.relay.as_deref().is_some_and(|r| r.starts_with("AutoMTLS is on"))))
    );
    assert!(lines.iter().any(|l| matches!(l, Line::Open(_))));
    assert!(lines.iter().any(|l| matches!(l,
        Line::Close(c) if (c.to_server, c.to_client) == (10_000, 10_000))));
    assert!(!lines.iter().any(|l| matches!(l, Line::Frame(_))));
    assert!(matches!(lines.last(), Some(Line::End(_))));
}

#[test]
fn a_tcp_plugin_is_wrapped_on_tcp_and_a_cancelled_stream_is_passed_on() {
    // go-plugin's own Python example listens on TCP; so does this run.
    let dir = support::tmpdir();
    let spec = super::client_spec(
        dir.path(),
        "tcp.json",
        &format!(
            r#"{{"protocol": "go-plugin", "role": "client",
            "handshake": {{"magic_cookie_key": "BASIC_PLUGIN", "magic_cookie_value": "hello"}},
            "schema": {{"proto": ["{}"]}},
            "calls": [
              {{"method": "kv.KV/Put", "request": {{"key": "k", "value": "dg=="}}}},
              {{"method": "grpc.health.v1.Health/Watch", "request": {{"service": "plugin"}}, "take": 1,
               "expect": {{"responses": [{{"status": "SERVING"}}]}}}},
              {{"broker": 1, "method": "kv.Counter/Next", "expect": {{"response": {{"count": "1"}}}}}}
            ]}}"#,
            support::root()
                .join("tests/peers/goplugin/kv.proto")
                .display()
        ),
    );
    let cmd = wrapped(
        &format!("env KV_PLUGIN_NETWORK=tcp {}", kv_plugin_cmd()),
        "--no-reflection",
    );
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--start-cmd",
            &cmd,
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        report["handshake"]
            .as_str()
            .unwrap()
            .starts_with("1|1|tcp|127.0.0.1:"),
        "{report}"
    );
    let log = &out.stderr;
    assert!(
        log.contains("plugin handshake: 1|1|tcp|127.0.0.1:"),
        "{log}"
    );
    // Without reflection and --proto the wrapper shows messages by wire type.
    assert!(
        log.contains("host→plugin message #0 /kv.KV/Put (no schema) [{\"n\":1,\"hex\":\"6b\",\"string\":\"k\"},{\"n\":2,\"hex\":\"76\",\"string\":\"v\"}]"),
        "{log}"
    );
    // Health/Watch never ends on its own: the host cancelled it after one
    // response, and the wrapper passed the reset on.
    assert!(
        log.contains("host→plugin RESET /grpc.health.v1.Health/Watch (the host reset the stream"),
        "{log}"
    );
    // The brokered TCP listener was rewritten too.
    assert!(
        log.contains("announced broker service 1 at tcp:127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("broker#1 s1 plugin→host message #0 /kv.Counter/Next (no schema) [{\"n\":1,\"varint\":1,\"sint\":-1}]"), "{log}");
}

#[test]
fn bad_peers_get_clear_errors_and_other_connections_keep_going() {
    use plugtap::goplugin::{call, frame, grpc};
    use plugtap::net::Address;

    let dir = support::tmpdir();
    let py = python();
    let plugin = support::root().join("tests/peers/goplugin/kv_plugin.py");
    let mut child = start_wrapper(
        dir.path(),
        &[py.to_str().unwrap(), plugin.to_str().unwrap()],
        &[("BASIC_PLUGIN", "hello")],
    );
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let sock = line.trim_end().split('|').nth(3).unwrap().to_owned();
    // Not HTTP/2 at all.
    let mut raw = UnixStream::connect(&sock).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let io = Address::Unix(sock.clone().into()).connect().await.unwrap();
        let mut send = grpc::client(io).await.unwrap();
        // A request whose framing is wrong: flag byte 7.
        let (resp, mut body) = send
            .send_request(grpc::request("/kv.KV/Get"), false)
            .unwrap();
        body.send_data(bytes::Bytes::from_static(b"\x07\x00\x00\x00\x00"), true)
            .unwrap();
        let r = resp.await.unwrap();
        let status = grpc::status_of(r.headers()).map(|s| s.0);
        assert!(status.is_some_and(|c| c != 0), "{r:?}");
        // The same connection still works.
        let ok = call::call(
            &mut send,
            "/kv.KV/Put",
            &[frame::encode(b"\x0a\x01k").slice(5..)],
            None,
            Duration::from_secs(10),
            1 << 20,
        )
        .await;
        assert_eq!(ok.code(), 0, "{ok:?}");
    });
    terminate(&mut child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("HTTP/2 handshake with the host failed"),
        "{err}"
    );
    assert!(err.contains("host→plugin MALFORMED /kv.KV/Get (bad gRPC compressed-flag byte 0x07 (expected 0 or 1))"), "{err}");
    assert!(
        err.contains("host→plugin message #0 /kv.KV/Put kv.PutRequest {\"key\":\"k\"}"),
        "{err}"
    );
}

#[test]
fn multiplexed_and_netrpc_plugins_are_relayed_and_reported() {
    let echo = support::root().join("tests/peers/goplugin/echo_plugin.py");
    for (tail, env, warning) in [
        (
            "grpc||true",
            Some(("PLUGIN_MULTIPLEX_GRPC", "true")),
            "yamux session, which plugtap does not demultiplex",
        ),
        (
            "netrpc",
            None,
            "the plugin speaks netrpc (net/rpc over yamux), which plugtap does not decode",
        ),
    ] {
        let dir = support::tmpdir();
        let mut vars = vec![("ECHO_PLUGIN_TAIL", tail)];
        vars.extend(env);
        let mut child = start_wrapper(dir.path(), &["python3", echo.to_str().unwrap()], &vars);
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let fields: Vec<&str> = line.trim_end().split('|').collect();
        assert_eq!(fields[4..].join("|"), tail, "{line}");
        let mut s = UnixStream::connect(fields[3]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"\x00\x00\x00\x01yamux-ish").unwrap();
        let mut back = [0u8; 13];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"\x00\x00\x00\x01yamux-ish");
        drop(s);
        terminate(&mut child);
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(err.contains(warning), "{tail}: {err}");
    }
}
