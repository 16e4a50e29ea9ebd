//! Property tests: the msgpack ⇄ JSON mapping is lossless, and the codec
//! splits any stream of values however the bytes are chunked.

use bytes::BytesMut;
use plugtap::codec::{Limits, MsgpackCodec, msgpack};
use plugtap::value_json::{from_json, same_value, to_json};
use proptest::prelude::*;
use rmpv::Value;
use tokio_util::codec::Decoder as _;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::F64),
        any::<f32>().prop_map(Value::F32),
        ".{0,12}".prop_map(Value::from),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(|b| plugtap::value_json::raw_string(&b)),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(Value::Binary),
        (any::<i8>(), prop::collection::vec(any::<u8>(), 0..12))
            .prop_map(|(t, d)| Value::Ext(t, d)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((inner.clone(), inner.clone()), 0..5).prop_map(Value::Map),
            prop::collection::vec(("[a-z$]{0,4}", inner), 0..5).prop_map(|pairs| {
                Value::Map(
                    pairs
                        .into_iter()
                        .map(|(k, v)| (Value::from(k), v))
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #[test]
    fn msgpack_json_msgpack_is_identity(v in value()) {
        let text = serde_json::to_string(&to_json(&v)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let back = from_json(&json).unwrap();
        prop_assert!(same_value(&back, &v), "{:?} -> {} -> {:?}", v, text, back);
    }

    #[test]
    fn any_chunking_gives_the_same_messages(values in prop::collection::vec(value(), 1..5), cuts in prop::collection::vec(1usize..40, 0..30)) {
        let stream: Vec<u8> = values.iter().flat_map(|v| msgpack::encode(v).to_vec()).collect();
        let mut codec = MsgpackCodec::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        let mut cuts = cuts.into_iter();
        while !rest.is_empty() {
            let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                got.push(frame);
            }
        }
        prop_assert!(codec.decode_eof(&mut buf).unwrap().is_none());
        prop_assert_eq!(got.len(), values.len());
        for (frame, v) in got.iter().zip(&values) {
            prop_assert!(same_value(&frame.value, v));
            prop_assert_eq!(&frame.raw[..], &msgpack::encode(v)[..]);
        }
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut codec = MsgpackCodec::new(Limits { max_message: 1000, max_depth: 16 });
        let mut buf = BytesMut::from(&bytes[..]);
        for _ in 0..300 {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => { codec.resync(&mut buf); }
            }
        }
        let _ = codec.decode_eof(&mut buf);
    }
}
