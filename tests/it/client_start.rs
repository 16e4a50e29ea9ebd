//! The client's server under test: its `start_cmd` started, waited for
//! (a socket or a go-plugin handshake), stopped with a grace period, and
//! reported when it fails or dies.

use std::time::Duration;

use serde_json::Value as Json;

use crate::client::write_spec;
use crate::support::{self, Proc};

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
