//! Decoding with a schema the user supplies, not one from reflection: the
//! wrapper runs with `--no-reflection` and gets the KV plugin's types from
//! `--proto` or from a descriptor set made by the official protobuf
//! compiler (grpc_tools.protoc, in .venv-goplugin).

use std::path::Path;

use super::{client_spec, kv_plugin_cmd, python, wrapped};
use crate::support;

/// Runs one Put through the wrapper with `schema_args` and returns its log.
fn put_through_wrapper(dir: &Path, schema_args: &str) -> String {
    let spec = client_spec(
        dir,
        "put.json",
        r#"{"protocol": "go-plugin", "role": "client",
            "handshake": {"magic_cookie_key": "BASIC_PLUGIN", "magic_cookie_value": "hello"},
            "calls": [{"method": "kv.KV/Put", "request_hex": "0a016b120176"}]}"#,
    );
    let cmd = wrapped(&kv_plugin_cmd(), &format!("--no-reflection {schema_args}"));
    let out = support::run(
        dir,
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--start-cmd",
            &cmd,
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stderr
}

fn kv_proto() -> std::path::PathBuf {
    support::root().join("tests/peers/goplugin/kv.proto")
}

#[test]
fn a_proto_file_types_the_messages_without_reflection() {
    let dir = support::tmpdir();
    let log = put_through_wrapper(dir.path(), &format!("--proto {}", kv_proto().display()));
    assert!(
        log.contains("host→plugin message #0 /kv.KV/Put kv.PutRequest {\"key\":\"k\""),
        "{log}"
    );
    assert!(!log.contains("(no schema)"), "{log}");
}

#[test]
fn a_descriptor_set_from_protoc_types_the_messages_without_reflection() {
    let dir = support::tmpdir();
    let set = dir.path().join("kv.pb");
    let proto = kv_proto();
    let made = std::process::Command::new(python())
        .args(["-m", "grpc_tools.protoc", "--include_imports"])
        .arg(format!("-I{}", proto.parent().unwrap().display()))
        .arg(format!("--descriptor_set_out={}", set.display()))
        .arg(&proto)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let log = put_through_wrapper(dir.path(), &format!("--descriptor-set {}", set.display()));
    assert!(
        log.contains("host→plugin message #0 /kv.KV/Put kv.PutRequest {\"key\":\"k\""),
        "{log}"
    );
    assert!(!log.contains("(no schema)"), "{log}");
}
