//! `plugtap check` around the protocol checks: the query command's
//! output, a missing socket, bad arguments.

use serde_json::json;

use crate::check::{check, check_mock, expect_statuses, mock_spec, run_check, statuses};
use crate::support::{self, specfile};

#[test]
fn query_output_fails_with_kongs_own_error() {
    let info = r#"[{"Name":"hello_peer","Phases":["access"],"Priority":100,"Version":null,"Schema":{"name":"hello_peer","fields":[{"config":{"type":"record","fields":[]}}]}}]"#;
    let query = format!("printf '%s' '{info}'");
    let (out, report) = check_mock(json!({}), &["--query-cmd", &query]);
    assert_eq!(out.code, 1);
    expect_statuses(&report, &[("query_output", "fail")]);
    let c = check(&report, "query_output");
    assert!(
        c["detail"].as_str().unwrap().contains(
            "error loading plugin schemas: on plugin 'hello_peer': Plugin \"hello_peer\" cannot be loaded because its VERSION field does not follow the \"x.y.z\" format, got: \"nil\"."
        ),
        "{c}"
    );
    assert!(
        c["kong"]
            .as_str()
            .unwrap()
            .contains("Kong refuses to start")
    );
}

#[test]
fn a_missing_socket_fails_skips_the_rest_and_names_sockets_nearby() {
    let dir = support::tmpdir();
    let path = specfile::write(dir.path(), "mock.json", &mock_spec(json!({})));
    // The server listens on another name than the one Kong is given.
    let mut server = support::mock_server(dir.path(), &path, "hello_peer.sock", &[]);
    let (out, report) = run_check(dir.path(), "hello_peer.socket", &["--wait", "0.3"]);
    assert_eq!(out.code, 1);
    let s = statuses(&report);
    assert_eq!(s[1], ("socket".into(), "fail".into()));
    assert!(s[2..].iter().all(|(_, st)| st == "skip"), "{s:?}");
    let c = check(&report, "socket");
    assert!(c["kong"].as_str().unwrap().contains("connect() to unix:"));
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("hello_peer.sock (is the server listening on another name?)"),
        "{c}"
    );
    assert_eq!(server.interrupt(), 0);
}

#[test]
fn bad_arguments_are_usage_errors() {
    let dir = support::tmpdir();
    for args in [
        vec![
            "check", "--socket", "x.sock", "--plugin", "p", "--config", "[1]",
        ],
        vec![
            "check",
            "--socket",
            "x.sock",
            "--plugin",
            "p",
            "--phase",
            "header_filter",
        ],
        vec!["check", "--socket", "x.sock"],
    ] {
        let out = support::run(dir.path(), &args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
    }
    let help = support::run(dir.path(), &["check", "--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("steps_across_connections"));
    assert!(help.stdout.contains("Examples:"));
}
