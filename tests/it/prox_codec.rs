//! prox's codecs on in-memory buffers: socket frames (big-endian length,
//! 1 MiB limit) and stdio lines (64 KiB flag), at every split point, with
//! hostile lengths, truncation and exact raw bytes.

use bytes::BytesMut;
use plugtap::codec::lines::PROX_MAX_LINE;
use plugtap::codec::prox::{MAX_FRAME, PREFIX, encode};
use plugtap::codec::{CodecError, LineCodec, ProxCodec, ProxFrame};
use tokio_util::codec::{Decoder as _, Encoder as _};

fn payloads() -> Vec<Vec<u8>> {
    vec![
        // The reference's on_connect envelope and the reply {ok: true}.
        crate::support::prox::unhex(
            "82 a1 74 cc 03 a1 64 c4 23 83 a1 72 a4 6c 34 3a 30 a1 64 a9 61 2e 65 78 61 6d 70 6c 65
             a1 61 ac 31 2e 32 2e 33 2e 34 3a 35 35 35 35",
        ),
        vec![0x81, 0xa2, b'o', b'k', 0xc3],
        vec![],
        vec![0x5a; 70_000],
    ]
}

#[test]
fn frames_split_at_every_byte() {
    for payload in payloads() {
        let bytes = encode(&payload).unwrap();
        assert_eq!(&bytes[..PREFIX], &(payload.len() as u32).to_be_bytes());
        for cut in 0..bytes.len() {
            let mut c = ProxCodec::default();
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(c.decode(&mut buf).unwrap(), None, "prefix of {cut} bytes");
            buf.extend_from_slice(&bytes[cut..]);
            let frame = c.decode(&mut buf).unwrap().expect("complete");
            assert_eq!(frame.raw, bytes, "raw bytes kept");
            assert_eq!(frame.payload(), payload);
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn the_reference_reply_frame() {
    let frame = encode(&[0x81, 0xa2, b'o', b'k', 0xc3]).unwrap();
    assert_eq!(frame[..], [0, 0, 0, 5, 0x81, 0xa2, 0x6f, 0x6b, 0xc3]);
}

#[test]
fn byte_by_byte_stream_keeps_offsets_and_bytes() {
    let payloads = payloads();
    let mut stream = BytesMut::new();
    let mut enc = ProxCodec::default();
    for p in &payloads {
        enc.encode(p.as_slice(), &mut stream).unwrap();
    }
    let mut c = ProxCodec::default();
    let mut buf = BytesMut::new();
    let mut frames: Vec<ProxFrame> = vec![];
    for b in stream.iter() {
        buf.extend_from_slice(&[*b]);
        while let Some(f) = c.decode(&mut buf).unwrap() {
            frames.push(f);
        }
    }
    let got: Vec<Vec<u8>> = frames.iter().map(|f| f.payload().to_vec()).collect();
    assert_eq!(got, payloads);
    let mut offset = 0;
    for f in &frames {
        assert_eq!(f.offset, offset);
        offset += f.raw.len() as u64;
    }
    assert_eq!(c.offset(), stream.len() as u64);
    assert_eq!(c.decode_eof(&mut buf).unwrap(), None, "clean end");
}

#[test]
fn frames_above_prox_limit_are_refused_before_buffering() {
    assert_eq!(MAX_FRAME, 1 << 20);
    let mut c = ProxCodec::default();
    let mut buf = BytesMut::from(&encode(b"ok").unwrap()[..]);
    // 1 MiB + 1, then a byte of the payload.
    buf.extend_from_slice(&[0x00, 0x10, 0x00, 0x01, 0x01]);
    assert!(c.decode(&mut buf).unwrap().is_some());
    let cap = buf.capacity();
    let err = c.decode(&mut buf).unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::TooLarge {
                offset: 6,
                size: 1_048_577,
                limit: 1_048_576
            }
        ),
        "{err}"
    );
    assert_eq!(
        buf.capacity(),
        cap,
        "nothing reserved for the hostile frame"
    );
    // A length of 4 GiB - 1 is refused the same way.
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
    assert!(matches!(
        ProxCodec::default().decode(&mut buf),
        Err(CodecError::TooLarge {
            size: 0xffff_ffff,
            ..
        })
    ));
    // Exactly at the limit is a frame.
    let mut c = ProxCodec::new(3);
    let mut buf = BytesMut::from(&encode(b"abc").unwrap()[..]);
    assert!(c.decode(&mut buf).unwrap().is_some());
    let mut buf = BytesMut::from(&encode(b"abcd").unwrap()[..]);
    assert!(matches!(
        c.decode(&mut buf),
        Err(CodecError::TooLarge {
            size: 4,
            limit: 3,
            ..
        })
    ));
}

#[test]
fn truncated_frames_are_errors_at_the_end() {
    let bytes = encode(&[7u8; 10]).unwrap();
    for cut in 1..bytes.len() {
        let mut c = ProxCodec::default();
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        let err = c.decode_eof(&mut buf).unwrap_err();
        assert!(
            matches!(err, CodecError::Truncated { offset: 0, pending } if pending == cut),
            "{cut}: {err}"
        );
    }
}

#[test]
fn lines_split_at_every_byte() {
    let text = b"{\"method\":\"configure\",\"params\":{\"route_id\":\"web:0\"}}\n{\"result\":\"ok\"}\r\n\n";
    for cut in 0..text.len() {
        let mut c = LineCodec::new(1024);
        let mut buf = BytesMut::from(&text[..cut]);
        let mut lines = vec![];
        while let Some(l) = c.decode(&mut buf).unwrap() {
            lines.push(l);
        }
        buf.extend_from_slice(&text[cut..]);
        while let Some(l) = c.decode(&mut buf).unwrap() {
            lines.push(l);
        }
        assert_eq!(lines.len(), 3, "cut at {cut}");
        assert_eq!(
            lines[0].text(),
            br#"{"method":"configure","params":{"route_id":"web:0"}}"#
        );
        assert_eq!(
            lines[1].text(),
            br#"{"result":"ok"}"#,
            "CR dropped as Go does"
        );
        assert_eq!(
            lines[1].raw.as_ref(),
            b"{\"result\":\"ok\"}\r\n",
            "raw kept"
        );
        assert_eq!(lines[2].text(), b"");
        assert_eq!(
            (lines[0].offset, lines[1].offset, lines[2].offset),
            (0, 53, 70)
        );
        assert!(lines.iter().all(|l| l.terminated()));
    }
}

#[test]
fn a_last_line_without_newline_is_still_a_line() {
    let mut c = LineCodec::new(1024);
    let mut buf = BytesMut::from(&b"{\"result\":\"ok\"}"[..]);
    assert_eq!(c.decode(&mut buf).unwrap(), None);
    let line = c.decode_eof(&mut buf).unwrap().unwrap();
    assert!(!line.terminated());
    assert_eq!(line.text(), br#"{"result":"ok"}"#);
    assert_eq!(c.decode_eof(&mut buf).unwrap(), None);
}

#[test]
fn lines_over_prox_buffer_are_flagged_not_lost() {
    // prox's scanner holds 64 KiB: a line fits when it and its newline do.
    for (len, over) in [
        (PROX_MAX_LINE - 1, false),
        (PROX_MAX_LINE, true),
        (PROX_MAX_LINE + 5000, true),
    ] {
        let mut bytes = vec![b'x'; len];
        bytes.push(b'\n');
        let mut c = LineCodec::new(1 << 20);
        let mut buf = BytesMut::from(&bytes[..]);
        let line = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(line.text().len(), len);
        assert_eq!(line.over_prox_limit(), over, "{len} bytes");
    }
}

#[test]
fn lines_above_the_hard_limit_are_refused_before_the_newline() {
    let mut c = LineCodec::new(100);
    let mut buf = BytesMut::from(&[b'x'; 101][..]);
    let err = c.decode(&mut buf).unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::TooLarge {
                size: 101,
                limit: 100,
                ..
            }
        ),
        "{err}"
    );
    let mut c = LineCodec::new(100);
    let mut buf = BytesMut::from(&[b'x'; 100][..]);
    assert_eq!(c.decode(&mut buf).unwrap(), None, "at the limit: waits");
}
