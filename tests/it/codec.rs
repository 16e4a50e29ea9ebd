//! The msgpack codec on in-memory buffers: every split point, hostile
//! lengths, nesting, truncation, resynchronisation.

use bytes::BytesMut;
use plugtap::codec::msgpack::encode;
use plugtap::codec::{CodecError, Limits, MsgpackCodec};
use rmpv::Value;
use tokio_util::codec::Decoder as _;

fn codec() -> MsgpackCodec {
    MsgpackCodec::new(Limits::default())
}

fn sample() -> Vec<Value> {
    vec![
        Value::Array(vec![
            0.into(),
            1.into(),
            "plugin.StartInstance".into(),
            Value::Array(vec![Value::Map(vec![
                ("Name".into(), "my-plugin".into()),
                ("Config".into(), "{\"message\":\"Kong!\"}".into()),
            ])]),
        ]),
        Value::Array(vec![2.into(), "serverPid".into(), 4242.into()]),
        Value::Array(vec![
            1.into(),
            3.into(),
            Value::Nil,
            Value::Map(vec![
                ("bin".into(), Value::Binary(vec![0; 300])),
                ("ext".into(), Value::Ext(5, vec![1, 2, 3])),
                ("f".into(), Value::F32(1.5)),
                ("big".into(), Value::from(u64::MAX)),
                ("neg".into(), Value::from(-70000)),
                ("s".into(), "x".repeat(70000).into()),
                ("empty".into(), Value::Array(vec![])),
                ("emptymap".into(), Value::Map(vec![])),
            ]),
        ]),
    ]
}

#[test]
fn split_at_every_byte() {
    for value in sample() {
        let bytes = encode(&value);
        for cut in 0..bytes.len() {
            let mut c = codec();
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(c.decode(&mut buf).unwrap(), None, "prefix of {cut} bytes");
            buf.extend_from_slice(&bytes[cut..]);
            let frame = c
                .decode(&mut buf)
                .unwrap()
                .expect("complete after the rest");
            assert_eq!(frame.value, value);
            assert_eq!(frame.raw, bytes);
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn byte_by_byte_and_concatenated() {
    let values = sample();
    let stream: Vec<u8> = values.iter().flat_map(|v| encode(v).to_vec()).collect();
    let mut c = codec();
    let mut buf = BytesMut::new();
    let mut out = vec![];
    for b in &stream {
        buf.extend_from_slice(&[*b]);
        while let Some(f) = c.decode(&mut buf).unwrap() {
            out.push(f);
        }
    }
    assert_eq!(
        out.iter().map(|f| &f.value).collect::<Vec<_>>(),
        values.iter().collect::<Vec<_>>()
    );
    assert_eq!(out[1].offset, out[0].raw.len() as u64);
    assert_eq!(c.offset(), stream.len() as u64);
}

#[test]
fn eof_clean_versus_truncated() {
    let mut c = codec();
    assert!(c.decode_eof(&mut BytesMut::new()).unwrap().is_none());
    let bytes = encode(&sample()[0]);
    let mut buf = BytesMut::from(&bytes[..5]);
    let err = c.decode_eof(&mut buf).unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::Truncated {
                offset: 0,
                pending: 5
            }
        ),
        "{err}"
    );
}

#[test]
fn hostile_lengths_rejected_before_buffering() {
    // str32 declaring 4 GiB, with only the header present.
    let mut c = codec();
    let mut buf = BytesMut::from(&[0x94, 0x00, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff][..]);
    let err = c.decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, CodecError::TooLarge { size, .. } if size > 4_000_000_000),
        "{err}"
    );
    // array32 declaring 4 billion elements.
    let mut c = codec();
    let mut buf = BytesMut::from(&[0xdd, 0xff, 0xff, 0xff, 0xff][..]);
    assert!(matches!(
        c.decode(&mut buf),
        Err(CodecError::TooLarge { .. })
    ));
    // map32: counts are doubled, still rejected.
    let mut c = MsgpackCodec::new(Limits {
        max_message: 100,
        max_depth: 8,
    });
    let mut buf = BytesMut::from(&[0xdf, 0x00, 0x00, 0x00, 0x40][..]);
    assert!(matches!(
        c.decode(&mut buf),
        Err(CodecError::TooLarge { size: 133, .. })
    ));
}

#[test]
fn deep_nesting_rejected() {
    let mut c = MsgpackCodec::new(Limits {
        max_message: 1 << 20,
        max_depth: 10,
    });
    let mut buf = BytesMut::from(&[0x91u8; 11][..]);
    assert!(matches!(
        c.decode(&mut buf),
        Err(CodecError::TooDeep { limit: 10, .. })
    ));
    // Exactly at the limit is fine.
    let mut c = MsgpackCodec::new(Limits {
        max_message: 1 << 20,
        max_depth: 10,
    });
    let mut bytes = vec![0x91u8; 10];
    bytes.push(0xc0);
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(c.decode(&mut buf).unwrap().is_some());
    // A million levels never reach the value decoder.
    let mut c = codec();
    let mut buf = BytesMut::from(&vec![0x91u8; 1_000_000][..]);
    assert!(matches!(
        c.decode(&mut buf),
        Err(CodecError::TooDeep { .. })
    ));
}

#[test]
fn reserved_marker_and_resync() {
    let good = encode(&sample()[1]);
    let mut stream = BytesMut::from(&[0xc1, 0x00, 0x13][..]);
    stream.extend_from_slice(&good);
    let mut c = codec();
    let err = c.decode(&mut stream).unwrap_err();
    assert!(
        matches!(err, CodecError::Invalid { offset: 0, .. }),
        "{err}"
    );
    let skipped = c.resync(&mut stream);
    assert_eq!(&skipped[..], &[0xc1, 0x00, 0x13]);
    let f = c.decode(&mut stream).unwrap().unwrap();
    assert_eq!(f.offset, 3);
    assert_eq!(f.raw, good);
}
