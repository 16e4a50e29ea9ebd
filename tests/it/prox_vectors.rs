//! Byte compatibility with an independent msgpack implementation: the
//! vectors in tests/vectors/prox.json were packed by PyPI `msgpack`
//! (scripts/gen-prox-vectors.py). plugtap must decode them to the same
//! values, write the same bytes in the compact style Python uses, and in
//! prox's Go style write bytes Python decodes to the same values, differing
//! only where prox's encoder differs (`t` as `cc NN`, int64 as `d3`).

use std::io::Write as _;
use std::process::{Command, Stdio};

use bytes::BytesMut;
use plugtap::codec::{Limits, ProxCodec, hex};
use plugtap::conversation::prox::{Observed, ProxConversation};
use plugtap::message::Direction;
use plugtap::message::prox::{Encoding, Hook, envelope, payload};
use serde_json::{Value as Json, json};
use tokio_util::codec::Decoder as _;

use crate::support;
use crate::support::prox::unhex;

fn vectors() -> Vec<Json> {
    let text = std::fs::read_to_string(support::root().join("tests/vectors/prox.json"))
        .expect("tests/vectors/prox.json");
    let file: Json = serde_json::from_str(&text).unwrap();
    file["vectors"].as_array().unwrap().clone()
}

fn hook_of(v: &Json) -> Hook {
    Hook::named(v["hook"].as_str().unwrap()).unwrap()
}

fn schema_of(v: &Json) -> &'static plugtap::message::prox::Schema {
    let hook = hook_of(v);
    match v["part"].as_str().unwrap() {
        "request" => hook.request(),
        _ => hook.result().unwrap(),
    }
}

#[test]
fn python_frames_decode_at_both_levels() {
    let mut requests = 0;
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        let hook = hook_of(&v);
        let mut conv = ProxConversation::new(Limits::default());
        if v["part"] == "request" {
            requests += 1;
            let mut buf = BytesMut::from(&unhex(v["frame_hex"].as_str().unwrap())[..]);
            let frame = ProxCodec::default().decode(&mut buf).unwrap().unwrap();
            let obs = conv.observe_frame(Direction::ToServer, &frame);
            assert_eq!(obs.view.method.as_deref(), Some(hook.name()), "{name}");
            assert_eq!(obs.view.value["t"], hook.byte(), "{name}");
            assert_eq!(obs.view.value["d"], v["value"], "{name}: inner map");
            assert_eq!(obs.view.problem, None, "{name}");
            let Observed::Call {
                payload, readable, ..
            } = obs.what
            else {
                panic!("{name}: {:?}", obs.what)
            };
            assert!(readable, "{name}");
            assert_eq!(payload.as_ref(), Some(&v["value"]), "{name}");
        } else {
            // A reply is decoded with the hook of the call before it.
            conv.observe(
                Direction::ToServer,
                &envelope::encode(hook.byte(), &[0x80], Encoding::Go),
            );
            let obs = conv.observe(Direction::ToClient, &unhex(v["hex"].as_str().unwrap()));
            assert_eq!(obs.view.method.as_deref(), Some(hook.name()), "{name}");
            assert_eq!(obs.view.value["result"], v["value"], "{name}");
            assert_eq!(obs.view.problem, None, "{name}");
        }
    }
    assert!(requests >= 5);
}

#[test]
fn compact_encoding_is_byte_for_byte_pythons() {
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        let inner = payload::encode(schema_of(&v), &v["value"], Encoding::Compact).unwrap();
        assert_eq!(hex(&inner), v["hex"].as_str().unwrap(), "{name}: inner");
        if v["part"] == "request" {
            let env = envelope::encode(hook_of(&v).byte(), &inner, Encoding::Compact);
            assert_eq!(hex(&env), v["envelope_hex"].as_str().unwrap(), "{name}");
            let frame = plugtap::codec::prox::encode(&env).unwrap();
            assert_eq!(hex(&frame), v["frame_hex"].as_str().unwrap(), "{name}");
        }
    }
}

/// The reference's worked example (other-protocols.md B.3) is prox's Go
/// encoding: plugtap writes it byte for byte. Python writes `t` as a fixint,
/// one byte shorter; both decode to the same envelope.
#[test]
fn go_encoding_matches_the_reference_example() {
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == "on_connect_reference")
        .unwrap();
    let inner = payload::encode(Hook::OnConnect.request(), &v["value"], Encoding::Go).unwrap();
    assert_eq!(
        inner,
        unhex(
            "83 a1 72 a4 6c 34 3a 30 a1 64 a9 61 2e 65 78 61 6d 70 6c 65 a1 61 ac 31 2e 32 2e 33 2e
             34 3a 35 35 35 35"
        )
    );
    let env = envelope::encode(3, &inner, Encoding::Go);
    assert_eq!(env.len(), 44);
    assert_eq!(env[..9], unhex("82 a1 74 cc 03 a1 64 c4 23")[..]);
    let frame = plugtap::codec::prox::encode(&env).unwrap();
    assert_eq!(frame[..4], [0x00, 0x00, 0x00, 0x2c]);
    let python = unhex(v["envelope_hex"].as_str().unwrap());
    assert_eq!(python.len(), 43, "Python's packer writes t as fixint 03");
    assert_eq!(python[..4], unhex("82 a1 74 03")[..]);
    assert_eq!(python[4..], env[5..], "the rest is identical");
}

/// prox's style: Python's msgpack decodes plugtap's Go-style bytes to the
/// same values, and the only differences from Python's own bytes are the
/// forms prox's encoder uses.
#[test]
fn go_encoding_decodes_in_python_to_the_same_values() {
    let vectors = vectors();
    let mut hexes = vec![];
    for v in &vectors {
        let inner = payload::encode(schema_of(v), &v["value"], Encoding::Go).unwrap();
        hexes.push(hex(&inner));
        if v["part"] == "request" {
            let env = envelope::encode(hook_of(v).byte(), &inner, Encoding::Go);
            assert_eq!(env[3], 0xcc, "t as uint8");
            assert_eq!(env[4], hook_of(v).byte());
            hexes.push(hex(&env));
        }
        // int64 fields are `d3` + 8 bytes; float64 fields `cb`.
        let text = hex(&inner);
        for (key, value) in v["value"].as_object().unwrap() {
            let field = schema_of(v).by_key(key).unwrap();
            let key_hex = hex(&[&[0xa0 | key.len() as u8][..], key.as_bytes()].concat());
            if field.ty == plugtap::message::prox::schema::Ty::Int64 {
                let n = value.as_i64().unwrap();
                let want = format!("{key_hex}d3{}", hex(&n.to_be_bytes()));
                assert!(text.contains(&want), "{}: {key} as d3: {text}", v["name"]);
            }
        }
    }
    let decoded = python_decode(&hexes);
    let mut i = 0;
    for v in &vectors {
        assert_eq!(decoded[i], v["value"], "{}: Go-style inner", v["name"]);
        i += 1;
        if v["part"] == "request" {
            let inner = unhex(&hexes[i - 1]);
            assert_eq!(
                decoded[i],
                json!({"t": hook_of(v).byte(), "d": {"$bin": b64(&inner)}}),
                "{}: the Go-style envelope around the Go-style inner bytes",
                v["name"]
            );
            i += 1;
        }
    }
    // Where the Go style differs from Python's: t, and the int64 fields.
    let dis = vectors
        .iter()
        .find(|v| v["name"] == "on_disconnect")
        .unwrap();
    let go = payload::encode(Hook::OnDisconnect.request(), &dis["value"], Encoding::Go).unwrap();
    let py = unhex(dis["hex"].as_str().unwrap());
    assert!(go.len() > py.len(), "d3 forms are longer than compact ones");
    assert!(
        hex(&py).contains("a27478cf000000012a05f200"),
        "Python: tx as uint64"
    );
    assert!(
        hex(&go).contains("a27478d3000000012a05f200"),
        "Go: tx as int64"
    );
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn python_decode(hexes: &[String]) -> Vec<Json> {
    let mut child = Command::new(support::prox::python())
        .arg(support::root().join("scripts/gen-prox-vectors.py"))
        .arg("--decode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(hexes).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Regenerates the vectors with Python and compares them with the committed
/// file, so the file cannot drift from what Python's msgpack produces.
#[test]
fn committed_vectors_are_what_python_produces() {
    let out = Command::new(support::prox::python())
        .arg(support::root().join("scripts/gen-prox-vectors.py"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh: Json = serde_json::from_slice(&out.stdout).unwrap();
    let text = std::fs::read_to_string(support::root().join("tests/vectors/prox.json")).unwrap();
    let committed: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(fresh, committed);
}

#[test]
fn requests_are_filled_and_ordered_as_prox_sends_them() {
    // Readable names in any order; prox's declaration order on the wire,
    // and the fields prox always sends filled in.
    let spec = json!({"path": "/x", "headers": {"A": "1"}, "route_id": "web:0"});
    let short = Hook::OnRequest.request().to_short(&spec, "params").unwrap();
    let filled = payload::fill(Hook::OnRequest.request(), &short);
    assert_eq!(
        filled,
        json!({"r": "web:0", "m": "", "p": "/x", "d": "", "a": "", "h": {"A": "1"}})
    );
    let keys: Vec<&String> = filled.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["r", "m", "p", "d", "a", "h"]);
    let pair = payload::fill(Hook::OnResponse.request(), &json!({}));
    assert_eq!(
        pair,
        json!({"req": {"r": "", "m": "", "p": "", "d": "", "a": "", "h": {}}, "resp": {"s": 0, "h": {}}})
    );
    let err = Hook::OnRequest
        .request()
        .to_short(&json!({"pth": "/"}), "try_methods[0].params")
        .unwrap_err();
    assert!(
        err.contains("`pth` is not a field of prox's RequestInfo") && err.contains("p/path"),
        "{err}"
    );
    let err = Hook::OnRequest
        .request()
        .to_short(&json!({"p": "/", "path": "/"}), "x")
        .unwrap_err();
    assert!(err.contains("given twice"), "{err}");
}
