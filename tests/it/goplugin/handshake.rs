//! Bad handshakes, reported with the texts go-plugin's host uses: end to
//! end through the stand-in host with small shell plugins, and the rules
//! table through the public API.

use serde_json::Value as Json;

use plugtap::goplugin::handshake::{Fields, HandshakeError, HostRules};
use plugtap::net::Address;

use crate::support;

/// Runs the host against `sh -c SCRIPT` and returns (exit code, report).
fn host_against(script: &str, extra: &str) -> (i32, Json, String) {
    let dir = support::tmpdir();
    let spec = super::client_spec(
        dir.path(),
        "c.json",
        &format!(
            r#"{{"protocol": "go-plugin", "role": "client", {extra}
                "start_cmd": ["sh", "-c", {}],
                "calls": [{{"method": "kv.KV/Get"}}]}}"#,
            serde_json::to_string(script).unwrap()
        ),
    );
    let out = support::run(
        dir.path(),
        &["client", "--spec", spec.to_str().unwrap(), "--json"],
    );
    let report = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    (out.code, report, out.stderr)
}

fn rejected(script: &str) -> String {
    let (code, report, stderr) = host_against(script, "");
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(report["calls"][0]["ran"], false);
    assert!(stderr.contains("handshake rejected: "), "{stderr}");
    assert!(
        stderr.contains("1 calls: 0 passed, 0 failed, 1 not run"),
        "{stderr}"
    );
    report["handshake_error"].as_str().unwrap().to_owned()
}

#[test]
fn wrong_core_version() {
    assert_eq!(
        rejected("echo '2|1|unix|/tmp/x|grpc|'; sleep 5"),
        "incompatible core API version with plugin. Plugin version: 2, Core version: 1\n\nTo fix this, the plugin usually only needs to be recompiled.\nPlease report this to the plugin author"
    );
    assert_eq!(
        rejected("echo 'one|1|unix|/tmp/x|grpc'; sleep 5"),
        "error parsing core protocol version: strconv.Atoi: parsing \"one\": invalid syntax"
    );
}

#[test]
fn unknown_network_type_names_the_address() {
    assert_eq!(
        rejected("echo '1|1|udp|/tmp/x|grpc'; sleep 5"),
        "unknown address type: /tmp/x"
    );
}

#[test]
fn missing_protocol_means_netrpc_which_a_grpc_host_refuses() {
    assert_eq!(
        rejected("echo '1|1|unix|/tmp/x'; sleep 5"),
        "unsupported plugin protocol \"netrpc\". Supported: [grpc]"
    );
}

#[test]
fn app_version_not_supported() {
    assert_eq!(
        rejected("echo '1|7|unix|/tmp/x|grpc|'; sleep 5"),
        "incompatible API version with plugin. Plugin version: 7, Client versions: [1]"
    );
}

#[test]
fn garbage_line_gets_the_hosts_diagnosis() {
    let e = rejected("echo 'Starting server on :8080'; sleep 5");
    assert!(
        e.starts_with("Unrecognized remote plugin message: Starting server on :8080\nThis usually means\n  the plugin was not compiled for this architecture,\n  the plugin is missing dynamic-link libraries necessary to run,\n  the plugin is not executable by this process due to file permissions, or\n  the plugin failed to negotiate the initial go-plugin protocol handshake\n\nAdditional notes about plugin:\n  Path: "),
        "{e}"
    );
    assert!(e.contains("\n  Mode: -rwxr-xr-x\n  Owner: "), "{e}");
    assert!(e.contains("\n  ELF architecture: EM_"), "{e}");
}

#[test]
fn no_output_at_all() {
    let e = rejected("exit 0");
    assert!(
        e.starts_with("Unrecognized remote plugin message: \nFailed to read any lines from plugin's stdout\nThis usually means\n"),
        "{e}"
    );
}

#[test]
fn timeout_waiting_for_the_handshake() {
    let (code, report, stderr) =
        host_against("sleep 10", r#""handshake": {"start_timeout_s": 0.5},"#);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        report["handshake_error"],
        "timeout while waiting for plugin to start"
    );
    assert!(
        report["shutdown"].as_str().unwrap().starts_with("killed"),
        "{report}"
    );
}

#[test]
fn a_missing_plugin_is_a_runtime_error() {
    let dir = support::tmpdir();
    let spec = super::client_spec(
        dir.path(),
        "c.json",
        r#"{"protocol": "go-plugin", "role": "client", "start_cmd": ["/nonexistent/plugin"]}"#,
    );
    let out = support::run(dir.path(), &["client", "--spec", spec.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("cannot start `/nonexistent/plugin`"),
        "{}",
        out.stderr
    );
}

fn judge(
    rules: &HostRules,
    line: &str,
) -> Result<plugtap::goplugin::handshake::Accepted, HandshakeError> {
    rules.judge(Some(line), || "NOTES".into())
}

#[test]
fn rules_in_the_hosts_order() {
    let grpc = HostRules::default();
    let ok = judge(&grpc, "1|1|unix|/tmp/plugin1|grpc|\r\n").unwrap();
    assert_eq!(ok.address, Address::Unix("/tmp/plugin1".into()));
    assert_eq!(
        judge(&grpc, "1|1|tcp|127.0.0.1:1234|grpc").unwrap().address,
        Address::Tcp("127.0.0.1:1234".into())
    );
    assert_eq!(
        judge(&grpc, "1|1|tcp|127.0.0.1|grpc")
            .unwrap_err()
            .to_string(),
        "address 127.0.0.1: missing port in address"
    );
    assert_eq!(
        judge(&grpc, "1|x|unix|/a|grpc").unwrap_err().to_string(),
        "Error parsing protocol version \"x\": strconv.Atoi: parsing \"x\": invalid syntax"
    );
    assert_eq!(
        judge(&grpc, "a|b|c").unwrap_err().to_string(),
        "Unrecognized remote plugin message: a|b|c\nNOTES"
    );
    // The certificate field counts only when longer than 50 characters.
    assert!(
        judge(&grpc, "1|1|unix|/a|grpc|short-extra-data")
            .unwrap()
            .server_cert
            .is_none()
    );
    let bad_cert = format!("1|1|unix|/a|grpc|{}", "!".repeat(60));
    assert_eq!(
        judge(&grpc, &bad_cert).unwrap_err().to_string(),
        "error parsing server cert: illegal base64 data at input byte 0"
    );
    // Multiplexing asked for.
    let mux = HostRules {
        multiplex: true,
        ..HostRules::default()
    };
    assert_eq!(
        judge(&mux, "1|1|unix|/a|grpc|").unwrap_err().to_string(),
        "client requested gRPC broker multiplexing but plugin does not support the feature; for Go plugins, you will need to update the github.com/hashicorp/go-plugin dependency and recompile"
    );
    assert_eq!(
        judge(&mux, "1|1|unix|/a|grpc||maybe")
            .unwrap_err()
            .to_string(),
        "error parsing \"maybe\" as a boolean for gRPC broker multiplexing support"
    );
    assert_eq!(
        judge(&mux, "1|1|unix|/a|grpc||false")
            .unwrap_err()
            .to_string(),
        "client requested gRPC broker multiplexing but plugin does not support the feature"
    );
    assert!(judge(&mux, "1|1|unix|/a|grpc||true").is_ok());
    // Several versions are listed as Go prints a slice.
    let many = HostRules {
        versions: vec![3, 4],
        ..HostRules::default()
    };
    assert_eq!(
        judge(&many, "1|5|unix|/a|grpc").unwrap_err().to_string(),
        "incompatible API version with plugin. Plugin version: 5, Client versions: [3 4]"
    );
}

#[test]
fn rewriting_keeps_every_other_field() {
    let f = Fields::split("1|5|unix|/tmp/plugin9|grpc||true\n");
    assert_eq!(
        f.with_address(&Address::Unix("/tmp/me.sock".into())),
        "1|5|unix|/tmp/me.sock|grpc||true"
    );
    assert_eq!(
        f.with_address(&Address::Tcp("127.0.0.1:9".into())),
        "1|5|tcp|127.0.0.1:9|grpc||true"
    );
}
