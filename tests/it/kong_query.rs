//! What Kong accepts from a query command, with Kong's own error texts
//! (plugtap::kong::query), and the kong section's load-time checks.

use plugtap::kong::query::check_output;

fn errors(output: &str, plugin: &str) -> Vec<String> {
    check_output("q", output, plugin)
        .problems
        .into_iter()
        .map(|p| format!("{}|{}", p.versions, p.kong_error))
        .collect()
}

const GOOD: &str = r#"[{"Name":"p","Phases":["access"],"Priority":10,"Version":"1.2.3",
  "Schema":{"name":"p","fields":[{"config":{"type":"record","fields":[{"a":{"type":"string"}}]}}]}}]"#;

#[test]
fn a_good_list_and_the_go_pdk_object_form() {
    let r = check_output("q", GOOD, "p");
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.protocol, "MsgPack:1");
    // What a real go-pdk (ProtoBuf:1) server printed for `-dump`
    // (/work/shared/captures/go-pdk-dump.json).
    let dump = r#"{"Protocol":"ProtoBuf:1","SocketPath":"/usr/local/kong/go-peer.socket","Plugins":[{"Name":"go-peer","Phases":["access"],"Version":"0.0.1","Priority":7,"Schema":{"name":"go-peer","fields":[{"config":{"type":"record","fields":[{"greeting":{"type":"string"}}]}}]}}]}"#;
    let r = check_output("q", dump, "go-peer");
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.protocol, "ProtoBuf:1");
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("Kong ignores SocketPath"))
    );
}

#[test]
fn version_and_priority_errors_are_kongs() {
    let v = GOOD.replace(r#""Version":"1.2.3""#, r#""Version":null"#);
    assert_eq!(
        errors(&v, "p"),
        [
            "all|error loading plugin schemas: on plugin 'p': Plugin \"p\" cannot be loaded because its VERSION field does not follow the \"x.y.z\" format, got: \"nil\"."
        ]
    );
    let v = GOOD.replace(r#""Version":"1.2.3""#, r#""Version":"1.0.0.0""#);
    assert!(errors(&v, "p")[0].ends_with("got: \"1.0.0.0\"."));
    let p = GOOD.replace(r#""Priority":10"#, r#""Priority":1.5"#);
    assert_eq!(
        errors(&p, "p"),
        [
            "all|error loading plugin schemas: on plugin 'p': Plugin \"p\" cannot be loaded because its PRIORITY field is not a valid integer number, got: \"1.5\"."
        ]
    );
}

#[test]
fn shapes_kong_rejects() {
    let e = errors("not json", "p");
    assert!(
        e[0].starts_with("3.9+|failed loading external plugins: failed decoding plugin info: ")
    );
    assert_eq!(e[1], "<=3.8|Not a plugin info table: \nq\nnot json");
    assert_eq!(
        errors("\"text\"", "p"),
        ["all|not a plugin info table: \nq\n\"text\""]
    );
    assert_eq!(
        errors("[]", "p"),
        [
            "3.9+|attempt to index local 'info' (a nil value)",
            "<=3.8|p plugin is enabled but not installed;\nno plugin found"
        ]
    );
    let two = format!(
        "[{},{}]",
        GOOD.replace("\"p\"", "\"q\"").trim_matches(['[', ']']),
        GOOD.trim_matches(['[', ']'])
    );
    let r = check_output("q", &two, "p");
    assert_eq!(r.plugins, ["q", "p"]);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert_eq!(r.problems[0].versions, "3.9+");
    assert!(
        r.problems[0]
            .consequence
            .contains("registers only the first plugin")
    );
    assert!(errors(GOOD, "other")[0].contains("other plugin is enabled but not installed"));
    let schema = GOOD.replace(r#""type":"record""#, r#""type":"map""#);
    assert!(errors(&schema, "p")[0].contains("the type must be \"record\""));
}

#[test]
fn the_kong_section_is_checked_at_load() {
    let bad = [
        (
            r#"{"kong": {"plugin": "p", "phases": ["header_filter"]}}"#,
            "kong.phases[0]: unknown phase \"header_filter\"",
        ),
        (
            r#"{"kong": {"plugin": "p", "config": [1]}}"#,
            "kong.config must be an object",
        ),
        (
            r#"{"kong": {"plugin": "p"}, "try_methods": [["m", []]]}"#,
            "`try_methods` or `kong`, not both",
        ),
        (
            r#"{"kong": {"plugin": "p", "request": {"headers": {"a": 1}}}}"#,
            "kong.request.headers[\"a\"]: a header value is a string or a list of strings",
        ),
        (
            r#"{"kong": {"plugin": "p", "requests": 0}}"#,
            "requests must be between 1 and 100000",
        ),
        (
            r#"{"kong": {"plugin": "p", "pdk": {"kong.x": {"match": []}}}}"#,
            "needs `answer`",
        ),
        (
            r#"{"kong": {"plugin": "p", "pdk": {"ngx.x": {"answer": 1}}}}"#,
            "is not a PDK method",
        ),
    ];
    for (text, expected) in bad {
        let err = plugtap::spec::load_str(text, "k.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
    let spec = plugtap::spec::load_str(
        r#"{"role": "client", "kong": {"plugin": "p", "colour": "red", "request": {"hots": "x"}}}"#,
        "k.json",
    )
    .unwrap();
    assert_eq!(
        spec.warnings,
        [
            "unknown key `kong.colour` is ignored",
            "unknown key `kong.request.hots` is ignored"
        ]
    );
}

/// What the real Python server (kong-pdk 0.36) prints for Kong.
fn python_dump(plugins: &str) -> String {
    let out = std::process::Command::new(crate::support::python_pluginserver())
        .args([
            "-d",
            crate::support::root().join(plugins).to_str().unwrap(),
            "--dump-all-plugins",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_python_servers_own_query_output() {
    let good = check_output("q", &python_dump("tests/peers/python"), "hello_peer");
    assert!(good.problems.is_empty(), "{:?}", good.problems);
    // A plugin without `version` gets Version null, which Kong refuses
    // (as the reference says); without `priority` it gets 0, which is fine.
    let dump = python_dump("tests/peers/python_noversion");
    assert!(
        dump.contains("\"Version\": null") && dump.contains("\"Priority\": 0"),
        "{dump}"
    );
    assert_eq!(
        errors(&dump, "noversion"),
        [
            "all|error loading plugin schemas: on plugin 'noversion': Plugin \"noversion\" cannot be loaded because its VERSION field does not follow the \"x.y.z\" format, got: \"nil\"."
        ]
    );
}
