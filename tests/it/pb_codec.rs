//! The ProtoBuf:1 frame codec on in-memory buffers: every split point,
//! zero-length frames, hostile lengths, truncation, exact raw bytes.

use bytes::BytesMut;
use plugtap::codec::protobuf::{PREFIX, encode};
use plugtap::codec::{CodecError, Limits, ProtobufCodec, ProtobufFrame};
use tokio_util::codec::{Decoder as _, Encoder as _};

fn codec() -> ProtobufCodec {
    ProtobufCodec::new(Limits::default())
}

/// §6.2's event: a call, PDK frames, an empty reply, the end frame, a return.
fn payloads() -> Vec<Vec<u8>> {
    vec![
        vec![
            0x08, 0x03, 0xa2, 0x02, 0x0a, 0x08, 0x07, 0x12, 0x06, b'a', b'c', b'c', b'e', b's',
            b's',
        ],
        b"kong.request.get_header".to_vec(),
        vec![0x0a, 0x04, b'h', b'o', b's', b't'],
        vec![],
        vec![],
        vec![0x08, 0x03],
        vec![0x5a; 70_000],
    ]
}

#[test]
fn split_at_every_byte() {
    for payload in payloads() {
        let bytes = encode(&payload).unwrap();
        assert_eq!(&bytes[..PREFIX], &(payload.len() as u32).to_le_bytes());
        for cut in 0..bytes.len() {
            let mut c = codec();
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(c.decode(&mut buf).unwrap(), None, "prefix of {cut} bytes");
            buf.extend_from_slice(&bytes[cut..]);
            let frame = c
                .decode(&mut buf)
                .unwrap()
                .expect("complete after the rest");
            assert_eq!(frame.raw, bytes);
            assert_eq!(frame.payload(), payload);
            assert_eq!(frame.is_empty(), payload.is_empty());
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn byte_by_byte_stream_round_trips_with_offsets() {
    let payloads = payloads();
    let mut stream = BytesMut::new();
    let mut enc = codec();
    for p in &payloads {
        enc.encode(p.as_slice(), &mut stream).unwrap();
    }
    let mut c = codec();
    let mut buf = BytesMut::new();
    let mut frames: Vec<ProtobufFrame> = vec![];
    for b in stream.iter() {
        buf.extend_from_slice(&[*b]);
        while let Some(f) = c.decode(&mut buf).unwrap() {
            frames.push(f);
        }
    }
    let got: Vec<Vec<u8>> = frames.iter().map(|f| f.payload().to_vec()).collect();
    assert_eq!(got, payloads);
    let mut offset = 0u64;
    for f in &frames {
        assert_eq!(f.offset, offset);
        offset += f.raw.len() as u64;
    }
    assert_eq!(c.offset(), stream.len() as u64);
    let rebuilt: Vec<u8> = frames.iter().flat_map(|f| f.raw.to_vec()).collect();
    assert_eq!(rebuilt, stream.to_vec(), "raw bytes are kept exactly");
}

#[test]
fn zero_length_frames_are_frames() {
    let mut c = codec();
    let mut buf = BytesMut::from(&[0u8, 0, 0, 0, 0, 0, 0, 0][..]);
    let a = c.decode(&mut buf).unwrap().unwrap();
    let b = c.decode(&mut buf).unwrap().unwrap();
    assert!(a.is_empty() && b.is_empty());
    assert_eq!((a.offset, b.offset), (0, 4));
    assert_eq!(c.decode(&mut buf).unwrap(), None);
    assert_eq!(c.decode_eof(&mut buf).unwrap(), None, "clean end");
}

#[test]
fn hostile_length_rejected_before_buffering() {
    let mut c = ProtobufCodec::new(Limits {
        max_message: 1024,
        max_depth: 8,
    });
    // A valid frame first, so the offset of the bad one is not 0.
    let mut buf = BytesMut::from(&encode(b"ok").unwrap()[..]);
    buf.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x01]);
    assert!(c.decode(&mut buf).unwrap().is_some());
    let cap = buf.capacity();
    let err = c.decode(&mut buf).unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::TooLarge {
                offset: 6,
                size: 0xffff_ffff,
                limit: 1024
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("too large"), "{err}");
    assert_eq!(
        buf.capacity(),
        cap,
        "nothing reserved for the hostile frame"
    );
    // Exactly at the limit is fine; one more is not.
    let mut c = ProtobufCodec::new(Limits {
        max_message: 3,
        max_depth: 8,
    });
    let mut buf = BytesMut::from(&encode(b"abc").unwrap()[..]);
    assert!(c.decode(&mut buf).unwrap().is_some());
    let mut buf = BytesMut::from(&encode(b"abcd").unwrap()[..]);
    assert!(matches!(
        c.decode(&mut buf),
        Err(CodecError::TooLarge { size: 4, .. })
    ));
}

#[test]
fn truncated_payload_and_prefix() {
    let bytes = encode(&[7u8; 10]).unwrap();
    for cut in 1..bytes.len() {
        let mut c = codec();
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        let err = c.decode_eof(&mut buf).unwrap_err();
        assert!(
            matches!(err, CodecError::Truncated { offset: 0, pending } if pending == cut),
            "{cut}: {err}"
        );
    }
}
