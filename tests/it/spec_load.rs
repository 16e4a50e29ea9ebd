//! Loading specs: the original format, positions in errors, warnings,
//! whole-spec checks.

use plugtap::spec::{Role, SpecError, load_str};
use serde_json::Value as Json;

fn err(text: &str) -> SpecError {
    load_str(text, "t.json").unwrap_err()
}

#[test]
fn original_server_example_with_trailing_comma() {
    let text = "{\n\t\"protocol\": \"MsgPack:1\",\n\t\"socket\": \"mock.socket\",\n\t\"role\": \"server\",\n\t\"on_methods\": {\n\t\t\"plugin.Step\": [\n\t\t\t{ \"return\": [null, \"ret\"]}\n\t\t]\n\t},\n}\n";
    let spec = load_str(text, "t.json").unwrap();
    assert_eq!(spec.role, Some(Role::Server));
    assert_eq!(
        spec.server.on_methods["plugin.Step"][0].result,
        Json::from("ret")
    );
    assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);
}

#[test]
fn positions_and_valid_lists() {
    let e = err("{\n  \"role\": \"sever\"\n}");
    assert_eq!(e.position, Some((2, 17)));
    assert!(
        e.message.contains("`server`") && e.message.contains("`client`"),
        "{e}"
    );
    let e = err("{\"protocol\": \"MsgPack:2\"}");
    assert!(e.message.contains("MsgPack:1"), "{e}");
    let e = err("{\n\n  \"role\": \"server\" \"x\"}");
    assert_eq!(e.to_string().split(':').nth(1), Some("3"), "{e}");
    let e = err("{\"try_methods\": [[\"plugin.Step\"]]}");
    assert!(e.message.contains("invalid length 1"), "{e}");
    let e = err("{\"on_methods\": {\"m\": [{\"return\": [null, 1], \"result\": 2}]}}");
    assert!(
        e.message.contains("not both") && e.position.is_some(),
        "{e}"
    );
}

#[test]
fn comments_and_unknown_keys() {
    let spec = load_str(
        "// a mock\n{ /* role */ \"role\": \"client\", \"try_methods\": [{\"method\": \"m\", \"expct\": 1}], \"colour\": 1,\n \"on_methods\": {} }",
        "t.json",
    )
    .unwrap();
    let w = spec.warnings.join("\n");
    assert!(w.contains("`colour`"), "{w}");
    assert!(w.contains("expct"), "{w}");
}

#[test]
fn whole_spec_checks() {
    let e = err("{\"try_methods\": [{\"method\": \"m\", \"params\": [\"${iid}\"]}]}");
    assert!(e.message.contains("no earlier step captures `iid`"), "{e}");
    let ok = load_str(
        "{\"try_methods\": [{\"method\": \"a\", \"capture\": {\"iid\": \"Id\"}}, {\"method\": \"b\", \"params\": [\"${iid}\"]}]}",
        "t.json",
    );
    assert!(ok.is_ok(), "{ok:?}");
    let e = err("{\"on_methods\": {\"m\": [{\"result\": {\"$bin\": \"%%\"}}]}}");
    assert!(
        e.message.contains("on_methods[\"m\"][0].result") && e.message.contains("base64"),
        "{e}"
    );
    let ok = load_str(
        "{\"role\": \"server\", \"try_methods\": [[\"m\", []]]}",
        "t.json",
    )
    .unwrap();
    assert!(ok.warnings[0].contains("only used by the client role"));
}
