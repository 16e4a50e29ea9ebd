//! The ProtoBuf:1 conversation state on frames from the real go-pdk
//! captures, from the reference's example, and on malformed frames: each
//! frame gets its meaning from the ones before it, and bad frames are
//! reported clearly without derailing the rest.

use plugtap::conversation::protobuf::{Observed, ProtobufConversation};
use plugtap::message::{Direction, Kind, MessageView};
use serde_json::{Value as Json, json};

use crate::support;

const K: Direction = Direction::ToServer;
const S: Direction = Direction::ToClient;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn feed(conv: &mut ProtobufConversation, frames: &[(Direction, &str)]) -> Vec<MessageView> {
    frames
        .iter()
        .map(|(dir, hex)| conv.observe(*dir, &unhex(hex)).view)
        .collect()
}

fn kinds(views: &[MessageView]) -> Vec<Kind> {
    views.iter().map(|v| v.kind).collect()
}

#[test]
fn real_go_pdk_capture_decodes_frame_by_frame() {
    let text =
        std::fs::read_to_string(support::root().join("tests/captures/go-pdk-protobuf1.jsonl"))
            .unwrap();
    let mut conv = ProtobufConversation::new();
    let mut views = vec![];
    let mut closes = vec![];
    for line in text.lines() {
        let rec: Json = serde_json::from_str(line).unwrap();
        if rec.get("step").and_then(Json::as_str) == Some("probe result") {
            assert!(rec["result"].as_str().unwrap().contains("closed"));
            closes.push(conv.closed(S).expect("a close where a return was due"));
            conv = ProtobufConversation::new();
            continue;
        }
        let Some(dir) = rec.get("dir").and_then(Json::as_str) else {
            continue;
        };
        let dir = if dir == ">" { K } else { S };
        let payload = unhex(rec["hex"].as_str().unwrap());
        assert_eq!(payload.len() as u64, rec["len"].as_u64().unwrap());
        let view = conv.observe(dir, &payload).view;
        assert_ne!(view.kind, Kind::Malformed, "{line}: {view:?}");
        views.push(view);
    }
    use Kind::*;
    assert_eq!(
        kinds(&views),
        [
            Request, Response, // get_plugin_info, answered with an empty frame
            Request, Response, // start_instance
            Request, PdkCall, PdkArgs, PdkReply, PdkCall, PdkArgs, PdkReply, PdkEnd, Response,
            Request, Response, // close_instance
            Request, Request, // the two probes, each answered by a close
        ]
    );
    // go-pdk's empty answer to a command it does not implement.
    assert_eq!(views[1].id, Some(0));
    let problem = views[1].problem.as_deref().unwrap();
    assert!(
        problem.contains("empty frame") && problem.contains("cmd_get_plugin_info"),
        "{problem}"
    );
    assert_eq!(views[2].method.as_deref(), Some("cmd_start_instance"));
    assert_eq!(
        views[3].value,
        json!({"sequence": "2", "instanceStatus": {"name": "go-peer", "instanceId": 1298498081, "startedAt": "1795348714"}})
    );
    assert_eq!(views[4].method.as_deref(), Some("cmd_handle_event"));
    assert_eq!(views[5].method.as_deref(), Some("kong.request.get_header"));
    assert_eq!(views[6].value, json!({"v": "host"}));
    assert_eq!(views[7].value, json!({"v": "example.test"}));
    assert_eq!(views[8].method.as_deref(), Some("kong.response.set_header"));
    assert_eq!(
        views[9].value,
        json!({"k": "x-peer-go", "v": "hello example.test"})
    );
    assert_eq!(views[10].value, json!({}), "Empty reply");
    assert_eq!(
        (views[12].id, views[12].problem.as_deref()),
        (Some(3), None)
    );
    // go-pdk names a closed instance "---" (not in the reference's ProtoBuf section).
    assert_eq!(views[14].value["instanceStatus"]["name"], "---");
    assert_eq!(closes.len(), 2);
    for c in &closes {
        assert_eq!(c.kind, Kind::Closed);
        let error = c.error.as_deref().unwrap();
        assert!(
            error.contains("closed the connection instead of answering"),
            "{error}"
        );
    }
    assert_eq!(closes[0].method.as_deref(), Some("cmd_handle_event"));
    assert_eq!(closes[1].method.as_deref(), Some("cmd_get_instance_status"));
}

#[test]
fn reference_example_event() {
    // kong-protocols.md §6.2, frames 2-11 (payloads only).
    let mut conv = ProtobufConversation::new();
    let start = conv.observe(
        K,
        &plugtap::message::protobuf::Envelope::call(
            2,
            "cmd_start_instance",
            &json!({"name": "my-plugin", "config": "e30="}),
        )
        .unwrap()
        .encode(),
    );
    assert_eq!(start.view.kind, Kind::Request);
    let views = feed(
        &mut conv,
        &[
            (
                S,
                "08 02 8a 02 13 0a 09 6d 79 2d 70 6c 75 67 69 6e 10 07 20 80 b3 9a b3 06",
            ),
            (K, "08 03 a2 02 0a 08 07 12 06 61 63 63 65 73 73"),
            (S, "6b6f6e672e726571756573742e6765745f686561646572"),
            (S, "0a 04 68 6f 73 74"),
            (K, "0a 0e 6c 6f 63 61 6c 68 6f 73 74 3a 38 30 30 30"),
            (S, "6b6f6e672e726573706f6e73652e7365745f686561646572"),
            (
                S,
                "0a 07 78 2d 68 65 6c 6c 6f 12 16 1a 14 68 65 6c 6c 6f 20 6c 6f 63 61 6c 68 6f 73 74 3a 38 30 30 30",
            ),
            (K, ""),
            (S, ""),
            (S, "08 03"),
        ],
    );
    use Kind::*;
    assert_eq!(
        kinds(&views),
        [
            Response, Request, PdkCall, PdkArgs, PdkReply, PdkCall, PdkArgs, PdkReply, PdkEnd,
            Response
        ]
    );
    assert_eq!(views[0].value["instanceStatus"]["instanceId"], 7);
    assert_eq!(views[4].value, json!({"v": "localhost:8000"}));
    assert_eq!(
        views[6].value,
        json!({"k": "x-hello", "v": "hello localhost:8000"})
    );
    assert_eq!(views[7].value, json!({}));
    assert!(views.iter().all(|v| v.problem.is_none()), "{views:?}");
    assert!(conv.is_idle());
    assert_eq!(conv.closed(S), None, "closing an idle connection is fine");
}

fn in_event(conv: &mut ProtobufConversation) {
    let v = feed(conv, &[(K, "08 03 a2 02 0a 08 07 12 06 61 63 63 65 73 73")]);
    assert_eq!(v[0].kind, Kind::Request);
}

#[test]
fn invalid_protobuf_call_then_close_is_the_error_signal() {
    let mut conv = ProtobufConversation::new();
    let v = conv.observe(K, &[0x08, 0xff]);
    assert_eq!(v.what, Observed::Malformed);
    assert_eq!(v.view.kind, Kind::Malformed);
    let p = v.view.problem.unwrap();
    assert!(
        p.contains("not a valid kong_plugin_protocol.RpcCall"),
        "{p}"
    );
    assert_eq!(v.view.value, json!({"hex": "08ff"}));
    let closed = conv.closed(S).unwrap();
    assert_eq!(closed.kind, Kind::Closed);
    // An RpcCall that sets no command is malformed too.
    let mut conv = ProtobufConversation::new();
    let v = conv.observe(K, &[0x08, 0x05]);
    assert_eq!(v.view.kind, Kind::Malformed);
    assert_eq!(
        v.view.problem.as_deref(),
        Some("the RpcCall sets no command")
    );
    assert_eq!(v.view.id, Some(5));
}

#[test]
fn unknown_pdk_method_is_reported_and_its_args_kept_raw() {
    let mut conv = ProtobufConversation::new();
    in_event(&mut conv);
    let call = conv.observe(S, b"kong.request.get_nothing");
    assert_eq!(call.view.kind, Kind::PdkCall);
    assert!(matches!(call.what, Observed::PdkCall { known: false, .. }));
    let p = call.view.problem.unwrap();
    assert!(p.contains("not a method of service Kong"), "{p}");
    assert!(
        p.contains("method \"kong.request.get_nothing\" not found"),
        "{p}"
    );
    let args = conv.observe(S, &[0x0a, 0x01, 0x78]);
    assert_eq!(args.view.kind, Kind::Malformed);
    assert_eq!(
        args.view.method.as_deref(),
        Some("kong.request.get_nothing")
    );
    assert_eq!(args.view.value, json!({"hex": "0a0178"}));
    // Kong never replies; a server that gives up closes the connection.
    let closed = conv.closed(S).unwrap();
    assert!(closed.error.unwrap().contains("instead of answering RpcCall #3 (cmd_handle_event) while Kong's reply to kong.request.get_nothing was due"));
    // A name that is not UTF-8.
    let mut conv = ProtobufConversation::new();
    in_event(&mut conv);
    let v = conv.observe(S, &[0xff, 0xfe]);
    assert_eq!(v.view.kind, Kind::Malformed);
    assert!(v.view.problem.unwrap().contains("not UTF-8"));
}

#[test]
fn replies_and_args_of_the_wrong_type() {
    let mut conv = ProtobufConversation::new();
    in_event(&mut conv);
    conv.observe(S, b"kong.request.get_header");
    // Args: an Int where a String is due (wire type varint, not bytes).
    let args = conv.observe(S, &[0x08, 0x07]);
    assert_eq!(args.view.kind, Kind::Malformed);
    let p = args.view.problem.unwrap();
    assert!(
        p.contains("arguments of kong.request.get_header do not decode"),
        "{p}"
    );
    assert!(p.contains("kong_plugin_protocol.String"), "{p}");
    // The position is still known: the next K→S frame is the reply.
    assert_eq!(conv.awaiting_reply(), Some("kong.request.get_header"));
    let reply = conv.observe(K, &[0x08, 0x01]);
    assert_eq!(reply.view.kind, Kind::Malformed);
    assert!(
        reply
            .view
            .problem
            .unwrap()
            .contains("reply to kong.request.get_header does not decode")
    );
    // set_header's reply is Empty: a String there has a field Empty lacks.
    conv.observe(S, b"kong.response.set_header");
    conv.observe(S, &unhex("0a 01 61 12 03 1a 01 62"));
    let reply = conv.observe(K, &unhex("0a 01 78"));
    assert_eq!(reply.view.kind, Kind::Malformed);
    let p = reply.view.problem.unwrap();
    assert!(
        p.contains("google.protobuf.Empty") && p.contains("#1"),
        "{p}"
    );
    // The event still ends normally.
    let end = feed(&mut conv, &[(S, ""), (S, "08 03")]);
    assert_eq!(kinds(&end), [Kind::PdkEnd, Kind::Response]);
}

#[test]
fn frames_from_the_wrong_side_and_sequence_mismatch() {
    let mut conv = ProtobufConversation::new();
    let v = conv.observe(S, &[0x08, 0x01]);
    assert_eq!(v.view.kind, Kind::Malformed);
    assert!(
        v.view
            .problem
            .unwrap()
            .contains("the server sent a frame while no call was pending")
    );
    in_event(&mut conv);
    let v = conv.observe(K, &[]);
    assert!(
        v.view
            .problem
            .unwrap()
            .starts_with("Kong sent a frame while a PDK method name")
    );
    let v = feed(&mut conv, &[(S, ""), (S, "08 09")]);
    assert_eq!(v[1].kind, Kind::Response);
    let p = v[1].problem.as_deref().unwrap();
    assert!(
        p.contains("sequence 9 does not echo the call's sequence 3"),
        "{p}"
    );
}

#[test]
fn exit_gets_no_reply_and_other_calls_must_wait() {
    let mut conv = ProtobufConversation::new();
    in_event(&mut conv);
    conv.observe(S, b"kong.response.exit");
    let args = conv.observe(S, &unhex("08 93 03"));
    assert_eq!(args.view.value, json!({"status": 403}));
    // The server moves on without a reply: fine after exit.
    let end = conv.observe(S, &[]);
    assert_eq!((end.view.kind, end.view.problem), (Kind::PdkEnd, None));
    conv.observe(S, &[0x08, 0x03]);
    // After any other method it is flagged.
    in_event(&mut conv);
    conv.observe(S, b"kong.request.get_header");
    conv.observe(S, &unhex("0a 01 61"));
    let next = conv.observe(S, b"kong.request.get_path");
    assert_eq!(next.view.kind, Kind::PdkCall);
    assert!(
        next.view
            .problem
            .unwrap()
            .contains("without waiting for Kong's reply to kong.request.get_header")
    );
    // Kong closing while the server waits for a reply.
    conv.observe(S, &[]);
    let closed = conv.closed(K).unwrap();
    assert!(
        closed
            .error
            .unwrap()
            .contains("Kong closed the connection without replying to kong.request.get_path")
    );
}

#[test]
fn deep_nesting_is_refused_without_a_crash() {
    // KV{k: "x", v: Value{list_value{values: [Value{list_value{...}}]}}}, 5000 deep.
    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let mut value: Vec<u8> = vec![];
    for _ in 0..5000 {
        let mut list = vec![0x0a];
        varint(value.len(), &mut list);
        list.extend_from_slice(&value);
        let mut v = vec![0x32];
        varint(list.len(), &mut v);
        v.extend_from_slice(&list);
        value = v;
    }
    let mut kv = vec![0x0a, 0x01, b'x', 0x12];
    varint(value.len(), &mut kv);
    kv.extend_from_slice(&value);
    let mut conv = ProtobufConversation::new();
    in_event(&mut conv);
    conv.observe(S, b"kong.ctx.shared.set");
    let args = conv.observe(S, &kv);
    assert_eq!(args.view.kind, Kind::Malformed);
    assert!(
        args.view.problem.unwrap().contains("recursion limit"),
        "nesting is bounded"
    );
}
