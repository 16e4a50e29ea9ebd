//! Byte compatibility with the official Python protobuf runtime: the
//! vectors in tests/vectors/protobuf.json were made by
//! scripts/gen-protobuf-vectors.py (PyPI `protobuf` + `grpcio-tools`
//! compiling the same proto/pluginsocket.proto). plugtap must decode each
//! to the same canonical JSON and encode that JSON back to the same bytes.

use std::process::Command;

use plugtap::message::protobuf::{self, Envelope, EnvelopeKind, PdkMethod, Schema};
use serde_json::Value as Json;

use crate::support;

fn vectors_file() -> Json {
    let text = std::fs::read_to_string(support::root().join("tests/vectors/protobuf.json"))
        .expect("tests/vectors/protobuf.json");
    serde_json::from_str(&text).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    plugtap::codec::hex(b)
}

#[test]
fn python_vectors_decode_and_reencode_byte_for_byte() {
    let file = vectors_file();
    let vectors = file["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 40, "only {} vectors", vectors.len());
    let mut pdk_methods = 0;
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let type_name = v["type"].as_str().unwrap();
        let bytes = unhex(v["hex"].as_str().unwrap());
        let expected_json = &v["json"];
        let desc = Schema::get()
            .message(type_name)
            .unwrap_or_else(|| panic!("{name}: no type {type_name}"));
        let msg = protobuf::decode(&desc, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let json = protobuf::to_json(&msg).unwrap();
        assert_eq!(&json, expected_json, "{name}: decoded JSON differs");
        let encoded = protobuf::encode_json(&desc, expected_json).unwrap();
        if v.get("unordered_maps").is_some() {
            // Map entry order is the encoder's choice: same entries, same size.
            assert_eq!(encoded.len(), bytes.len(), "{name}");
            let again = protobuf::decode(&desc, &encoded).unwrap();
            assert_eq!(&protobuf::to_json(&again).unwrap(), expected_json, "{name}");
        } else {
            assert_eq!(
                hex(&encoded),
                hex(&bytes),
                "{name}: re-encoded bytes differ"
            );
        }
        // PDK payloads: the method table gives the type the vector used.
        if let Some(method) = v.get("method").and_then(Json::as_str) {
            pdk_methods += 1;
            let pdk = PdkMethod::named(method).unwrap_or_else(|| panic!("{method} unknown"));
            let (decoded, ty) = match v["part"].as_str().unwrap() {
                "args" => (pdk.decode_args(&bytes), &pdk.input),
                _ => (pdk.decode_reply(&bytes), &pdk.output),
            };
            assert_eq!(ty.full_name(), type_name, "{name}: {method} type");
            assert_eq!(&decoded.unwrap(), expected_json, "{name}");
        }
    }
    assert!(pdk_methods >= 25, "{pdk_methods} PDK vectors");
}

#[test]
fn envelopes_from_python_vectors() {
    let file = vectors_file();
    let find = |n: &str| {
        file["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("vector {n}"))
            .clone()
    };
    let start = find("start_instance");
    let env = Envelope::decode(EnvelopeKind::Call, &unhex(start["hex"].as_str().unwrap())).unwrap();
    assert_eq!(env.sequence(), 2);
    assert_eq!(env.member().as_deref(), Some("cmd_start_instance"));
    let view = env.view();
    assert_eq!(view.kind, plugtap::message::Kind::Request);
    assert_eq!(view.id, Some(2));
    assert_eq!(view.method.as_deref(), Some("cmd_start_instance"));
    // Built from a command name and params, the call has the same bytes.
    let params = &start["json"]["cmdStartInstance"];
    let built = Envelope::call(2, "cmd_start_instance", params).unwrap();
    assert_eq!(hex(&built.encode()), start["hex"].as_str().unwrap());
    // The config may be written as a JSON object; it is sent as its text.
    let config: Json = serde_json::from_str(
        r#"{"message": "Kong!", "__seq__": 7, "__key__": "plugins:my-plugin:::::0dc6"}"#,
    )
    .unwrap();
    let inline = protobuf::envelope::inline_config(
        "cmd_start_instance",
        &serde_json::json!({"name": "my-plugin", "config": config}),
    );
    let sent = Envelope::call(2, "cmd_start_instance", &inline).unwrap();
    let text = sent
        .message
        .get_field_by_name("cmd_start_instance")
        .unwrap();
    let text = text
        .as_message()
        .unwrap()
        .get_field_by_name("config")
        .unwrap();
    let text: Json = serde_json::from_slice(text.as_bytes().unwrap()).unwrap();
    assert_eq!(text, config);

    let ret = find("event_return");
    let env = Envelope::decode(EnvelopeKind::Return, &unhex(ret["hex"].as_str().unwrap())).unwrap();
    assert_eq!((env.sequence(), env.member()), (3, None));
    assert_eq!(env.view().kind, plugtap::message::Kind::Response);

    let err = Envelope::call(2, "cmd_start", &Json::Null).unwrap_err();
    assert!(
        err.contains("not an RpcCall command") && err.contains("cmd_handle_event"),
        "{err}"
    );
}

/// Regenerates the vectors with the Python runtime and compares them with
/// the committed file, so the file cannot drift from what Python produces.
#[test]
fn committed_vectors_are_what_python_produces() {
    let python = support::root().join(".venv-proto/bin/python");
    assert!(
        python.exists(),
        "the Python protobuf runtime is not installed: run scripts/setup-python-protobuf.sh (scripts/test.sh does)"
    );
    let out = Command::new(&python)
        .arg(support::root().join("scripts/gen-protobuf-vectors.py"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fresh, vectors_file());
}
