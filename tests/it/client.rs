//! The client role against mock servers: plugtap's own server role, and
//! hand-written misbehaving peers.

use std::io::Read as _;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use rmpv::Value;
use serde_json::Value as Json;

use crate::support::mp::{MpPeer, response};
use crate::support::{self, Proc};

fn write_spec(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A one-connection fake server: `script` gets the accepted peer.
fn fake_server(
    dir: &Path,
    name: &str,
    script: impl FnOnce(MpPeer) + Send + 'static,
) -> (String, std::thread::JoinHandle<()>) {
    let path = dir.join(name);
    let listener = UnixListener::bind(&path).unwrap();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        script(MpPeer { stream });
    });
    (path.to_str().unwrap().to_owned(), handle)
}

#[test]
fn original_client_example_runs_verbatim_against_original_server_example() {
    let dir = support::tmpdir();
    let mut server = support::mock_server(
        dir.path(),
        &support::spec("original-server.json"),
        "o.sock",
        &[],
    );
    let client_spec = support::spec("original-client.json");
    let socket = dir.path().join("o.sock");
    // The example names /usr/local/kong paths; point it at the mock instead.
    let out = support::run(
        dir.path(),
        &[
            "-v",
            "client",
            "--spec",
            client_spec.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--no-start",
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["passed"], true);
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    // msgids count up, as Kong's do.
    let ids: Vec<_> = steps.iter().map(|s| s["msgid"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    // An error reply is logged and the run goes on.
    assert_eq!(steps[3]["error"], "not implemented");
    assert!(
        out.stderr.contains("error: not implemented"),
        "{}",
        out.stderr
    );
    assert_eq!(server.interrupt(), 0);
}

#[test]
fn the_example_client_starts_its_start_cmd_and_reports_when_it_fails() {
    // Verbatim, the example's start_cmd does not exist on this machine.
    let dir = support::tmpdir();
    let client_spec = support::spec("original-client.json");
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            client_spec.to_str().unwrap(),
            "--socket",
            "x.sock",
            "--wait",
            "5",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("/usr/local/kong/go-plugins/go-bip-a")
            && out.stderr.contains("exit code 127"),
        "{}",
        out.stderr
    );
}

#[test]
fn failed_expectations_exit_1_with_a_diff() {
    let dir = support::tmpdir();
    let _server =
        support::mock_server(dir.path(), &support::spec("mock-hello.json"), "h.sock", &[]);
    let spec = write_spec(
        dir.path(),
        "c.json",
        r#"{"try_methods": [
            {"method": "plugin.StartInstance", "params": [{"Name": "hello_peer", "Config": "{}"}],
             "expect": {"result": {"Name": "other", "Config": {"greeting": "hi"}, "Missing": 1}}},
            {"method": "plugin.GetPluginInfo", "params": ["hello_peer"], "expect": {"error": "boom"}},
            {"method": "plugin.Nope", "expect": {"error": null}}
        ]}"#,
    );
    let socket = dir.path().join("h.sock");
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            &spec,
            "--socket",
            socket.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("$.Name: expected \"other\", got \"hello_peer\""),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("$.Missing: expected 1, but it is missing"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("expected an error containing \"boom\", got success"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("expected success, got error \"not implemented\""),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("3 steps: 0 passed, 3 failed"),
        "{}",
        out.stderr
    );
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    let mismatches = &report["steps"][0]["failures"][0]["mismatches"];
    assert_eq!(mismatches.as_array().unwrap().len(), 2);
}

#[test]
fn server_closing_mid_call_is_reported() {
    let dir = support::tmpdir();
    let (socket, server) = fake_server(dir.path(), "f.sock", |mut peer| {
        let _request = peer.recv();
        // Close without replying.
    });
    let spec = write_spec(
        dir.path(),
        "c.json",
        r#"{"try_methods": [["plugin.A", [1]], ["plugin.B", [2]]]}"#,
    );
    let out = support::run(
        dir.path(),
        &["client", "--spec", &spec, "--socket", &socket],
    );
    server.join().unwrap();
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("closed the connection before replying"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("step 1 plugin.B: not run"),
        "{}",
        out.stderr
    );
}

#[test]
fn malformed_reply_and_notifications() {
    let dir = support::tmpdir();
    let (socket, server) = fake_server(dir.path(), "m.sock", |mut peer| {
        let req = peer.recv();
        assert_eq!(req[1], Value::from(1));
        peer.send(&Value::Array(vec![2.into(), "serverPid".into(), 42.into()]));
        peer.send(&response(1, Value::Nil, "ok".into()));
        let _ = peer.recv();
        // Valid msgpack, not an RPC message.
        peer.send(&Value::Array(vec![9.into()]));
        let _ = peer.try_recv();
    });
    let spec = write_spec(
        dir.path(),
        "c.json",
        r#"{"try_methods": [["plugin.A", []], ["plugin.B", []], ["plugin.C", []]]}"#,
    );
    let out = support::run(
        dir.path(),
        &["client", "--spec", &spec, "--socket", &socket, "--json"],
    );
    server.join().unwrap();
    assert_eq!(out.code, 1, "{}", out.stderr);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        report["steps"][0]["notifications"][0],
        serde_json::json!([2, "serverPid", 42])
    );
    assert_eq!(report["steps"][0]["status"], "passed");
    let failure = report["steps"][1]["failures"][0]["message"]
        .as_str()
        .unwrap();
    assert!(
        failure.contains("malformed") && failure.contains("raw 9109"),
        "{failure}"
    );
    assert_eq!(report["steps"][2]["status"], "not_run");
}

#[test]
fn wrong_msgid_and_garbage_bytes() {
    let dir = support::tmpdir();
    let (socket, server) = fake_server(dir.path(), "w.sock", |mut peer| {
        let _ = peer.recv();
        peer.send(&response(99, Value::Nil, Value::Nil));
        let _ = peer.recv();
        peer.send_raw(&[0xc1, 0xc1, 0xc1]);
        let _ = peer.try_recv();
    });
    let spec = write_spec(
        dir.path(),
        "c.json",
        r#"{"try_methods": [["plugin.A", []], ["plugin.B", []]]}"#,
    );
    let out = support::run(
        dir.path(),
        &["client", "--spec", &spec, "--socket", &socket],
    );
    server.join().unwrap();
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("msgid 99 while waiting for 1"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("undecodable bytes from the server"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("c1c1c1"), "{}", out.stderr);
}

#[test]
fn never_pipelines() {
    // The fake server checks that nothing more arrives before it replies.
    let dir = support::tmpdir();
    let (socket, server) = fake_server(dir.path(), "p.sock", |mut peer| {
        for id in 1..=5u32 {
            let req = peer.recv();
            assert_eq!(req[1], Value::from(id));
            peer.stream
                .set_read_timeout(Some(Duration::from_millis(150)))
                .unwrap();
            let mut probe = [0u8; 1];
            let early = peer.stream.read(&mut probe);
            assert!(
                early.is_err(),
                "request {} arrived before reply {id}",
                id + 1
            );
            peer.stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            peer.send(&response(id, Value::Nil, id.into()));
        }
    });
    let spec = write_spec(
        dir.path(),
        "c.json",
        r#"{"try_methods": [["a", []], ["b", []], ["c", []], ["d", []], ["e", []]]}"#,
    );
    let out = support::run(
        dir.path(),
        &["client", "--spec", &spec, "--socket", &socket],
    );
    server.join().unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn timeout_and_missing_socket() {
    let dir = support::tmpdir();
    let (socket, server) = fake_server(dir.path(), "t.sock", |mut peer| {
        let _ = peer.recv();
        std::thread::sleep(Duration::from_millis(1500));
    });
    let spec = write_spec(
        dir.path(),
        "c.json",
        r#"{"try_methods": [["plugin.A", []]]}"#,
    );
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            &spec,
            "--socket",
            &socket,
            "--timeout",
            "0.5",
        ],
    );
    server.join().unwrap();
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no reply within"), "{}", out.stderr);

    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            &spec,
            "--socket",
            "nobody.sock",
            "--wait",
            "0.3",
        ],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("timed out after") && out.stderr.contains("nobody.sock"),
        "{}",
        out.stderr
    );
}

#[test]
fn start_cmd_is_started_waited_for_and_terminated() {
    let dir = support::tmpdir();
    let pidfile = dir.path().join("server.pid");
    // A shell start_cmd that records its pid and then runs a plugtap mock.
    let cmd = format!(
        "echo $$ > {}; exec {} server --spec {} --socket s.sock",
        pidfile.display(),
        support::bin().display(),
        support::spec("mock-hello.json").display()
    );
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            support::spec("client-event-cycle.json").to_str().unwrap(),
            "--socket",
            "s.sock",
            "--start-cmd",
            &cmd,
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err();
    assert!(gone, "the started server was left running");
    assert!(
        !dir.path().join("s.sock").exists(),
        "the server got SIGTERM and cleaned up"
    );
    assert!(out.stderr.contains("ended (exit code 0)"), "{}", out.stderr);
}

#[test]
fn a_start_cmd_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let dir = support::tmpdir();
    let pidfile = dir.path().join("stubborn.pid");
    // Listens (the client's connect succeeds from the backlog) and ignores
    // SIGTERM, so only SIGKILL ends it.
    let script = format!(
        "import os, signal, socket, time\n\
         signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
         open({:?}, 'w').write(str(os.getpid()))\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.bind('s.sock')\n\
         s.listen(8)\n\
         time.sleep(60)\n",
        pidfile.display().to_string()
    );
    std::fs::write(dir.path().join("stubborn.py"), script).unwrap();
    let spec = write_spec(
        dir.path(),
        "c.json",
        r#"{"socket": "s.sock", "start_cmd": "exec python3 stubborn.py", "try_methods": []}"#,
    );
    let started = std::time::Instant::now();
    let out = support::run(dir.path(), &["client", "--spec", &spec, "--grace", "0.3"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the client waited for the stubborn server"
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("after SIGTERM; killing it"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("SIGKILL"), "{}", out.stderr);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err();
    assert!(gone, "the stubborn server was left running");
}

#[test]
fn go_plugin_handshake_names_the_socket() {
    let dir = support::tmpdir();
    let socket = dir.path().join("hs.sock");
    let cmd = format!(
        "echo '1|1|unix|{}|grpc|'; exec {} server --spec {} --socket {}",
        socket.display(),
        support::bin().display(),
        support::spec("mock-hello.json").display(),
        socket.display()
    );
    let spec = write_spec(
        dir.path(),
        "c.json",
        &format!(
            r#"{{"start_cmd": ["/bin/sh", "-c", {}], "try_methods": [["plugin.GetPluginInfo", ["hello_peer"]]]}}"#,
            Json::from(cmd)
        ),
    );
    let out = support::run(dir.path(), &["client", "--spec", &spec]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("go-plugin handshake names socket"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_server_that_dies_at_start_is_reported() {
    let dir = support::tmpdir();
    let spec = write_spec(
        dir.path(),
        "c.json",
        r#"{"socket": "x.sock", "start_cmd": "echo starting; exit 3", "try_methods": []}"#,
    );
    let out = support::run(dir.path(), &["client", "--spec", &spec]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("exited (exit code 3) before its socket accepted connections"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("starting"),
        "stdout of the child is logged: {}",
        out.stderr
    );
}

#[test]
fn sigint_stops_a_waiting_client_and_its_child() {
    let dir = support::tmpdir();
    let spec = write_spec(
        dir.path(),
        "c.json",
        r#"{"socket": "never.sock", "start_cmd": "sleep 30", "try_methods": [["a", []]]}"#,
    );
    let mut client = Proc::plugtap(dir.path(), &["client", "--spec", &spec, "--wait", "30"]);
    std::thread::sleep(Duration::from_millis(500));
    let code = client.interrupt();
    assert_eq!(code, 2, "{}", client.stderr());
    assert!(
        client.stderr().contains("interrupted"),
        "{}",
        client.stderr()
    );
}

#[test]
fn captures_feed_later_params() {
    let dir = support::tmpdir();
    let (socket, server) = fake_server(dir.path(), "c.sock", |mut peer| {
        let _ = peer.recv();
        let id = Value::Map(vec![("Id".into(), 41.into())]);
        peer.send(&response(1, Value::Nil, id));
        let req = peer.recv();
        // `${iid}` arrives as an integer, and inside a string as text.
        assert_eq!(req[3][0]["InstanceId"], Value::from(41));
        assert_eq!(req[3][0]["Note"], Value::from("instance 41"));
        peer.send(&response(2, Value::Nil, Value::Nil));
    });
    let spec = write_spec(
        dir.path(),
        "c.json",
        r#"{"try_methods": [
            {"method": "plugin.StartInstance", "capture": {"iid": "Id"}},
            {"method": "plugin.HandleEvent", "params": [{"InstanceId": "${iid}", "Note": "instance ${iid}"}]}
        ]}"#,
    );
    let out = support::run(
        dir.path(),
        &["client", "--spec", &spec, "--socket", &socket],
    );
    server.join().unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn mock_replies_to_a_raw_peer_exactly() {
    // Byte-level check of what the server writes.
    let dir = support::tmpdir();
    let _server = support::mock_server(
        dir.path(),
        &support::spec("original-server.json"),
        "x.sock",
        &[],
    );
    let mut kong = MpPeer::connect(&dir.path().join("x.sock"));
    // Kong's StartInstance request bytes from the reference (§6.1), shortened config.
    let mut req = vec![0x94, 0x00, 0x01, 0xb4];
    req.extend_from_slice(b"plugin.StartInstance");
    req.extend_from_slice(&[0x91, 0x81, 0xa4]);
    req.extend_from_slice(b"Name");
    req.extend_from_slice(&[0xa1, b'x']);
    kong.send_raw(&req);
    let mut buf = [0u8; 7];
    use std::io::Read;
    kong.stream.read_exact(&mut buf).unwrap();
    assert_eq!(buf, [0x94, 0x01, 0x01, 0xc0, 0xa2, b'{', b'}']);
}
