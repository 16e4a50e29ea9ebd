//! The observer through the public API: forwarded events in, decoded
//! protocol-neutral views out (what a recording will store).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;

use plugtap::goplugin::event::{ConnLabel, Decoded, Event, Observed};
use plugtap::goplugin::frame;
use plugtap::goplugin::observer::{self, ObserverOptions};
use plugtap::goplugin::schema::Schemas;
use plugtap::message::{Direction, Kind};
use plugtap::net::{Address, ConnId};

fn observe(events: Vec<(Direction, Event)>) -> Vec<Decoded> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut schemas = Schemas::builtin();
        schemas
            .add_proto_files(
                &[crate::support::root().join("tests/peers/goplugin/kv.proto")],
                &[],
            )
            .unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let (sink, mut out) = mpsc::unbounded_channel();
        let conn = Arc::new(ConnLabel {
            id: ConnId::next(),
            name: "c9".into(),
            client: "host",
            server: "plugin",
            upstream: Address::Unix("/nonexistent".into()),
        });
        for (dir, event) in events {
            tx.send(Observed::now(conn.clone(), 3, dir, event)).unwrap();
        }
        drop(tx);
        let opts = ObserverOptions {
            schemas,
            reflection: false,
            max_message: 1024,
            full_values: false,
            redact: Default::default(),
            record: None,
        };
        observer::run(opts, rx, Some(sink)).await;
        let mut v = Vec::new();
        while let Ok(d) = out.try_recv() {
            v.push(d);
        }
        v
    })
}

#[test]
fn a_call_becomes_open_messages_headers_and_trailers() {
    let req = frame::encode(b"\x0a\x01a");
    let mut two = frame::encode(b"\x0a\x02hi").to_vec();
    two.extend_from_slice(&frame::encode(b"\x0a\x00"));
    let (first, second) = two.split_at(4);
    let got = observe(vec![
        (
            Direction::ToServer,
            Event::Open {
                path: "/kv.KV/Watch".into(),
                headers: vec![(":path".into(), "/kv.KV/Watch".into())],
            },
        ),
        (Direction::ToServer, Event::Data(req)),
        (Direction::ToServer, Event::End),
        (
            Direction::ToClient,
            Event::Headers {
                headers: vec![(":status".into(), "200".into())],
                end: false,
            },
        ),
        // Two messages split across DATA chunks at an odd place.
        (
            Direction::ToClient,
            Event::Data(Bytes::copy_from_slice(first)),
        ),
        (
            Direction::ToClient,
            Event::Data(Bytes::copy_from_slice(second)),
        ),
        (
            Direction::ToClient,
            Event::Trailers(vec![
                ("grpc-status".into(), "5".into()),
                ("grpc-message".into(), "gone%21".into()),
            ]),
        ),
    ]);
    let kinds: Vec<Kind> = got.iter().map(|d| d.view.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::GrpcOpen,
            Kind::GrpcMessage,
            Kind::GrpcHeaders,
            Kind::GrpcMessage,
            Kind::GrpcMessage,
            Kind::GrpcTrailers
        ]
    );
    assert!(
        got.iter()
            .all(|d| d.view.id == Some(3) && d.view.method.as_deref() == Some("/kv.KV/Watch"))
    );
    assert_eq!(
        got[1].view.value,
        json!({"index": 0, "size": 3, "type": "kv.GetRequest", "json": {"key": "a"}})
    );
    assert_eq!(got[1].raw.as_deref(), Some(&b"\x0a\x01a"[..]));
    assert_eq!(got[3].view.value["json"], json!({"value": "aGk="}));
    assert_eq!(got[4].view.value["index"], 1);
    assert_eq!(got[5].view.error.as_deref(), Some("NOT_FOUND: gone!"));
    assert_eq!(got[5].view.value["code"], 5);
    // Views serialize as the neutral form recordings use.
    let v = serde_json::to_value(&got[0].view).unwrap();
    assert_eq!(v["kind"], "grpc_open");
}

#[test]
fn undecodable_bytes_are_reported_not_skipped() {
    let got = observe(vec![
        (
            Direction::ToServer,
            Event::Open {
                path: "/kv.KV/Get".into(),
                headers: vec![],
            },
        ),
        // Valid framing, but not a kv.GetRequest (field 1 as a varint).
        (Direction::ToServer, Event::Data(frame::encode(b"\x08\x01"))),
        // Then a prefix announcing more than the limit, then a bad flag.
        (
            Direction::ToServer,
            Event::Data(Bytes::from_static(b"\x00\x00\x00\x10\x00")),
        ),
        (
            Direction::ToClient,
            Event::Data(Bytes::from_static(b"\x09\x00\x00\x00\x00")),
        ),
        // The stream ends inside the oversized message.
        (Direction::ToServer, Event::End),
    ]);
    assert_eq!(
        got[1]
            .view
            .problem
            .as_deref()
            .map(|p| p.starts_with("not a valid kv.GetRequest")),
        Some(true),
        "{:?}",
        got[1].view
    );
    assert_eq!(
        got[1].view.value["fields"],
        json!([{"n": 1, "varint": 1, "sint": -1}])
    );
    assert!(
        got[2]
            .view
            .problem
            .as_deref()
            .unwrap()
            .contains("over the 1024-byte decoding limit"),
        "{:?}",
        got[2].view
    );
    assert_eq!(got[3].view.kind, Kind::Malformed);
    assert!(got[3].view.problem.as_deref().unwrap().contains("0x09"));
    assert_eq!(got[4].view.kind, Kind::Malformed);
    assert_eq!(
        got[4].view.problem.as_deref(),
        Some("stream ended inside a gRPC message: 0 of 4096 bytes")
    );
}
