//! The decoders through the public API: gRPC framing split at every byte,
//! schema-less protobuf never panicking, schemas and their errors.

use bytes::BytesMut;
use proptest::prelude::*;
use serde_json::json;
use tokio_util::codec::Decoder as _;

use plugtap::goplugin::frame::{self, Framed, MessageDecoder};
use plugtap::goplugin::schema::{Schemas, decode_json, encode_json};
use plugtap::goplugin::wire;

use crate::support;

fn messages(stream: &[u8], split: usize, max: usize) -> Vec<Framed> {
    let mut d = MessageDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for part in [&stream[..split], &stream[split..]] {
        buf.extend_from_slice(part);
        while let Some(m) = d.decode(&mut buf).unwrap() {
            out.push(m);
        }
    }
    assert!(d.decode_eof(&mut buf).unwrap().is_none());
    out
}

#[test]
fn framing_survives_every_split() {
    let mut stream = Vec::new();
    stream.extend_from_slice(&frame::encode(b"\x0a\x01a"));
    stream.extend_from_slice(&frame::encode(b""));
    stream.extend_from_slice(&frame::encode(&[7u8; 300]));
    for split in 0..=stream.len() {
        let got = messages(&stream, split, 1024);
        assert_eq!(got.len(), 3, "split at {split}");
        let Framed::Message(m) = &got[2] else {
            panic!()
        };
        assert_eq!(m.payload.len(), 300);
    }
}

#[test]
fn oversized_messages_are_skipped_and_the_next_one_still_decodes() {
    let mut stream = frame::encode(&[1u8; 100]).to_vec();
    stream.extend_from_slice(&frame::encode(b"ok"));
    for split in 0..=stream.len() {
        let got = messages(&stream, split, 10);
        assert_eq!(
            got[0],
            Framed::Oversized { len: 100, max: 10 },
            "split at {split}"
        );
        assert!(matches!(&got[1], Framed::Message(m) if &m.payload[..] == b"ok"));
    }
}

#[test]
fn bad_flags_and_truncation_are_errors() {
    let mut d = MessageDecoder::new(1024);
    let mut buf = BytesMut::from(&b"\x07\x00\x00\x00\x01x"[..]);
    assert!(d.decode(&mut buf).unwrap_err().to_string().contains("0x07"));
    let mut d = MessageDecoder::new(1024);
    let mut buf = BytesMut::from(&b"\x00\x00\x00\x00\x09abc"[..]);
    assert!(d.decode(&mut buf).unwrap().is_none());
    assert_eq!(
        d.decode_eof(&mut buf).unwrap_err().to_string(),
        "stream ended inside a gRPC message: 8 of 14 bytes"
    );
}

proptest! {
    #[test]
    fn schema_less_decoding_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(fields) = wire::decode(&bytes) {
            // Re-encoding writes minimal varints, so compare decoded forms;
            // and the re-encoded bytes are stable.
            let again = wire::encode(&fields).unwrap();
            prop_assert_eq!(wire::decode(&again).unwrap(), fields);
            prop_assert_eq!(wire::encode(&wire::decode(&again).unwrap()).unwrap(), again);
        }
    }
}

#[test]
fn schemas_decode_and_encode_protobuf_json() {
    let mut s = Schemas::builtin();
    s.add_proto_files(
        &[support::root().join("tests/peers/goplugin/kv.proto")],
        &[],
    )
    .unwrap();
    let m = s.method("kv.KV", "Put").unwrap();
    let bytes = encode_json(&m.input(), &json!({"key": "a", "value": "aGk="})).unwrap();
    assert_eq!(bytes, b"\x0a\x01a\x12\x02hi");
    assert_eq!(
        decode_json(&m.input(), &bytes).unwrap(),
        json!({"key": "a", "value": "aGk="})
    );
    assert!(
        encode_json(&m.input(), &json!({"nope": 1}))
            .unwrap_err()
            .contains("kv.PutRequest")
    );
    // The built-ins know go-plugin's own services.
    let c = s.method("plugin.GRPCBroker", "StartStream").unwrap();
    assert_eq!(c.input().full_name(), "plugin.ConnInfo");
}

#[test]
fn a_broken_proto_file_is_reported_with_its_position() {
    let dir = support::tmpdir();
    let p = dir.path().join("bad.proto");
    std::fs::write(&p, "syntax = \"proto3\";\nmessage A {\n  string x = ;\n}\n").unwrap();
    let err = Schemas::builtin()
        .add_proto_files(std::slice::from_ref(&p), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.proto:3:"), "{err}");
}

#[test]
fn go_plugin_spec_errors_name_the_position() {
    let err = plugtap::goplugin::spec::load_str(
        "{\"protocol\": \"go-plugin\",\n \"calls\": [{\"method\": 3}]}",
        "s.json",
        std::path::Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("s.json:2:"), "{err}");
    let err = plugtap::goplugin::spec::load_str(
        r#"{"protocol": "go-plugin", "services": {"kv.KV": {"Get": [{"response": {"value": "x"}}]}}}"#,
        "s.json",
        std::path::Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no schema defines kv.KV/Get"), "{err}");
}
