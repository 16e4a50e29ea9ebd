//! Command-line behaviour: help, usage errors, spec errors, stdin.

use crate::support;

#[test]
fn help_has_examples_and_exit_codes() {
    let dir = support::tmpdir();
    let top = support::run(dir.path(), &["--help"]);
    assert_eq!(top.code, 0);
    assert!(top.stdout.contains("Example"), "{}", top.stdout);
    // Every subcommand the top-level help lists has examples of its own.
    let commands: Vec<&str> = top
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    for expected in [
        "run",
        "server",
        "client",
        "proxy",
        "show",
        "export",
        "kong-conf",
        "check",
    ] {
        assert!(commands.contains(&expected), "{expected} in {commands:?}");
    }
    for command in &commands {
        let out = support::run(dir.path(), &[command, "--help"]);
        assert_eq!(out.code, 0, "{command}");
        assert!(out.stdout.contains("Example"), "{command}: {}", out.stdout);
    }
    let out = top;
    assert!(
        out.stdout.contains("Exit codes: 0 all passed, 1"),
        "{}",
        out.stdout
    );
    let out = support::run(dir.path(), &["--version"]);
    assert!(out.stdout.starts_with("plugtap "), "{}", out.stdout);
}

#[test]
fn usage_errors_exit_2() {
    let dir = support::tmpdir();
    let out = support::run(dir.path(), &["server"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--spec"), "{}", out.stderr);
    let out = support::run(dir.path(), &["client", "--spec", "x", "--timeout", "soon"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("not a number of seconds"),
        "{}",
        out.stderr
    );
    let out = support::run(
        dir.path(),
        &["server", "--spec", "x", "--protocol", "Carrier:1"],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("valid: MsgPack:1"), "{}", out.stderr);
}

#[test]
fn spec_errors_name_file_line_column() {
    let dir = support::tmpdir();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        "{\n  \"role\": \"server\",\n  \"on_methods\": {\"m\": [{\"return\": [null]}]}\n}\n",
    )
    .unwrap();
    let out = support::run(dir.path(), &["-s", bad.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("bad.json:3:"), "{}", out.stderr);
    assert!(out.stderr.contains("invalid length 1"), "{}", out.stderr);

    std::fs::write(&bad, "{\"role\": \"proxyy\"}").unwrap();
    let out = support::run(dir.path(), &["run", bad.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(
            "bad.json:1:17: unknown variant `proxyy`, expected one of `server`, `client`, `proxy`"
        ),
        "{}",
        out.stderr
    );

    std::fs::write(&bad, "{\"protocol\": \"ProtoBuf:9\", \"role\": \"server\"}").unwrap();
    let out = support::run(dir.path(), &["run", bad.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("MsgPack:1"), "{}", out.stderr);

    std::fs::write(&bad, "{\"socket\": \"x.sock\"}").unwrap();
    let out = support::run(dir.path(), &["run", bad.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("names no role"), "{}", out.stderr);

    let out = support::run(dir.path(), &["run", "missing.json"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("missing.json: cannot read spec"),
        "{}",
        out.stderr
    );
}

#[test]
fn unknown_keys_are_warned_about() {
    let dir = support::tmpdir();
    let spec = dir.path().join("w.json");
    std::fs::write(
        &spec,
        r#"{"role": "client", "socket": "none.sock", "try_method": [], "try_methods": [{"method": "m", "expct": {}}]}"#,
    )
    .unwrap();
    let out = support::run(
        dir.path(),
        &["run", spec.to_str().unwrap(), "--wait", "0.1"],
    );
    assert!(
        out.stderr.contains("unknown key `try_method` is ignored"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("expct"), "{}", out.stderr);
}

#[test]
fn spec_on_stdin_like_the_original() {
    let dir = support::tmpdir();
    let server_spec = std::fs::read_to_string(support::spec("original-server.json")).unwrap();
    // A server reading its spec from stdin, on the spec's relative socket.
    let mut child = std::process::Command::new(support::bin())
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(server_spec.as_bytes()).unwrap();
    }
    let socket = dir.path().join("mock.socket");
    support::wait_for_socket(&socket);
    // And a client reading its spec from stdin with `-s -`.
    let client_spec = format!(
        r#"{{"role": "client", "socket": "{}", "try_methods": [["plugin.StartInstance", [{{}}]]]}}"#,
        socket.display()
    );
    let out = support::run_with_stdin(dir.path(), &["-s", "-", "-v"], &client_spec);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("plugin.StartInstance"),
        "{}",
        out.stderr
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
}
