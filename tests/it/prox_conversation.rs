//! prox messages and conversations through the public API: hooks shown by
//! name with readable fields next to the short keys, replies decoded with
//! the hook of the call they follow on their own connection, fire-and-forget
//! disconnects, bad envelopes and bad replies explained, and the stdio
//! lines with what prox does about each.

use plugtap::codec::{Limits, Line};
use plugtap::conversation::prox::{Observed, ProxConversation};
use plugtap::message::prox::stdio::{self, StdioMessage};
use plugtap::message::prox::{Encoding, Hook, envelope, payload};
use plugtap::message::{Direction, Kind};
use serde_json::{Value as Json, json};

const TO_PLUGIN: Direction = Direction::ToServer;
const TO_PROX: Direction = Direction::ToClient;

fn call(hook: Hook, value: Json) -> Vec<u8> {
    let inner = payload::encode(hook.request(), &value, Encoding::Go).unwrap();
    envelope::encode(hook.byte(), &inner, Encoding::Go)
}

fn reply(hook: Hook, value: Json) -> Vec<u8> {
    payload::encode(hook.result().unwrap(), &value, Encoding::Go).unwrap()
}

fn conv() -> ProxConversation {
    ProxConversation::new(Limits::default())
}

#[test]
fn hooks_are_named_with_readable_fields_next_to_the_short_keys() {
    let mut c = conv();
    let obs = c.observe(
        TO_PLUGIN,
        &call(Hook::OnRequest, json!({"r": "web:0", "m": "GET", "p": "/admin", "d": "a.example", "a": "192.0.2.1:1", "h": {}})),
    );
    assert_eq!(obs.view.kind, Kind::Request);
    assert_eq!(obs.view.method.as_deref(), Some("on_request"));
    assert_eq!(obs.view.value["t"], 1);
    assert_eq!(obs.view.value["d"]["p"], "/admin");
    assert_eq!(obs.view.value["fields"]["path"], "/admin");
    assert_eq!(obs.view.value["fields"]["route_id"], "web:0");
    assert_eq!(obs.view.value["fields"]["remote_addr"], "192.0.2.1:1");
    assert_eq!(c.awaiting(), Some(Hook::OnRequest));
    let obs = c.observe(
        TO_PROX,
        &reply(
            Hook::OnRequest,
            json!({"ok": false, "s": 403, "sp": {"dl": 8, "gk": "g"}}),
        ),
    );
    assert_eq!(obs.view.kind, Kind::Response);
    assert_eq!(obs.view.method.as_deref(), Some("on_request"));
    assert_eq!(
        obs.view.value["fields"],
        json!({"allow": false, "status": 403, "speed_limit": {"download_mbps": 8.0, "group_key": "g"}})
    );
    assert_eq!(c.awaiting(), None);
}

#[test]
fn replies_are_decoded_with_the_hook_of_their_own_connection() {
    // Two connections, interleaved: the same reply bytes mean different
    // things on each.
    let (mut a, mut b) = (conv(), conv());
    a.observe(
        TO_PLUGIN,
        &call(Hook::OnConnect, json!({"r": "l4:0", "d": "x", "a": "y"})),
    );
    b.observe(TO_PLUGIN, &call(Hook::OnResponse, json!({})));
    let bytes = reply(Hook::OnResponse, json!({"s": 503}));
    let on_b = b.observe(TO_PROX, &bytes);
    assert_eq!(on_b.view.method.as_deref(), Some("on_response"));
    assert_eq!(on_b.view.problem, None);
    assert_eq!(on_b.view.value["fields"], json!({"status": 503}));
    // On a, the same map is an on_connect verdict with a key prox skips
    // and no `ok`.
    let on_a = a.observe(TO_PROX, &bytes);
    assert_eq!(on_a.view.method.as_deref(), Some("on_connect"));
    let problem = on_a.view.problem.unwrap();
    assert!(problem.contains("keys prox skips: s"), "{problem}");
    assert!(
        problem.contains("no `ok`: prox reads it as false (deny)"),
        "{problem}"
    );
}

#[test]
fn disconnects_expect_no_reply_and_a_stray_one_is_flagged() {
    let mut c = conv();
    let obs = c.observe(
        TO_PLUGIN,
        &call(
            Hook::OnDisconnect,
            json!({"r": "web:0", "a": "x", "rx": 1, "tx": 2, "ms": 3}),
        ),
    );
    assert_eq!(obs.view.kind, Kind::Notification);
    assert_eq!(obs.view.value["fields"]["bytes_tx"], 2);
    assert_eq!(c.awaiting(), None);
    assert_eq!(c.closed(TO_PROX), None, "nothing was due");
    let stray = c.observe(TO_PROX, &reply(Hook::OnConnect, json!({"ok": true})));
    assert_eq!(stray.view.kind, Kind::Malformed);
    assert_eq!(stray.what, Observed::Unexpected);
    assert!(
        stray
            .view
            .problem
            .unwrap()
            .contains("after on_disconnect, which gets no reply"),
    );
    // The connection carries on: the next call and its reply.
    c.observe(TO_PLUGIN, &call(Hook::OnConnect, json!({})));
    let ok = c.observe(TO_PROX, &reply(Hook::OnConnect, json!({"ok": true})));
    assert!(matches!(ok.what, Observed::Reply { usable: true, .. }));
}

#[test]
fn bad_envelopes_are_explained_as_the_sdk_reads_them() {
    let cases: [(&[u8], Option<u64>, &str); 6] = [
        // {"d": bin(80)}: no t, so hook type 0.
        (
            &[0x81, 0xa1, b'd', 0xc4, 0x01, 0x80],
            Some(0),
            "no `t`: the SDK reads hook type 0",
        ),
        // {"t": 9, "d": bin(80)}: unknown hook byte.
        (
            &[0x82, 0xa1, b't', 0xcc, 0x09, 0xa1, b'd', 0xc4, 0x01, 0x80],
            Some(9),
            "unknown hook type 9: the SDK logs `unknown hook type: 9` and sends no reply",
        ),
        // ["x"]: not a map.
        (
            &[0x91, 0xa1, b'x'],
            None,
            "the envelope is an array of 1, not a map",
        ),
        // {"t": "1", "d": ...}
        (
            &[0x82, 0xa1, b't', 0xa1, b'1', 0xa1, b'd', 0xc0],
            None,
            "`t` is a str, not an integer",
        ),
        // {"t": 1, "d": [1]}
        (
            &[0x82, 0xa1, b't', 0x01, 0xa1, b'd', 0x91, 0x01],
            None,
            "`d` is an array of 1, not bin",
        ),
        // Not msgpack at all: a reserved marker.
        (&[0xc1], None, "reserved msgpack marker"),
    ];
    for (bytes, t, needle) in cases {
        let mut c = conv();
        let obs = c.observe(TO_PLUGIN, bytes);
        assert_eq!(obs.view.kind, Kind::Malformed, "{needle}");
        let problem = obs.view.problem.clone().unwrap();
        assert!(problem.contains(needle), "{needle}: {problem}");
        assert_eq!(obs.what, Observed::BadCall { t }, "{needle}");
        assert_eq!(c.awaiting(), None, "{needle}: no reply due");
    }
    // {"t": 1}: no d, so an empty payload; the SDK answers its error reply.
    let mut c = conv();
    let obs = c.observe(TO_PLUGIN, &[0x81, 0xa1, b't', 0xcc, 0x01]);
    assert_eq!(obs.view.method.as_deref(), Some("on_request"));
    let problem = obs.view.problem.unwrap();
    assert!(problem.contains("no `d`"), "{problem}");
    assert!(
        problem.contains(r#"the SDK answers {"ok":false,"s":500,"b":"plugin error"}"#),
        "{problem}"
    );
    assert!(matches!(
        obs.what,
        Observed::Call {
            readable: false,
            ..
        }
    ));
    assert_eq!(c.awaiting(), Some(Hook::OnRequest));
}

#[test]
fn payloads_and_replies_are_checked_with_gos_leniency() {
    // Go decodes any integer form, nil for anything, bin for strings.
    let mut c = conv();
    let lenient = json!({"r": {"$bin": "d2ViOjA="}, "m": null, "p": "/", "d": "", "a": "", "h": null, "cl": 5});
    let obs = c.observe(TO_PLUGIN, &call(Hook::OnRequest, lenient));
    assert_eq!(obs.view.problem, None);
    // A header map with a number in it is not a map[string]string.
    let mut c = conv();
    let obs = c.observe(
        TO_PLUGIN,
        &call(Hook::OnRequest, json!({"h": {"A": 1}, "cl": 1.5})),
    );
    let problem = obs.view.problem.unwrap();
    assert!(
        problem.contains("h: a map where a map of strings to strings is due"),
        "{problem}"
    );
    assert!(
        problem.contains("cl: a float 1.5 where an integer is due"),
        "{problem}"
    );
    assert!(matches!(
        obs.what,
        Observed::Call {
            readable: false,
            ..
        }
    ));
    // A verdict prox cannot decode fails the hook.
    let obs = c.observe(TO_PROX, &reply(Hook::OnRequest, json!({"ok": "yes"})));
    let problem = obs.view.problem.unwrap();
    assert!(
        problem.contains(r#"ok: a string "yes" where a bool is due"#)
            && problem.contains("prox answers the HTTP request with 500"),
        "{problem}"
    );
    assert!(matches!(obs.what, Observed::Reply { usable: false, .. }));
    // Not msgpack at all.
    let mut c = conv();
    c.observe(TO_PLUGIN, &call(Hook::OnResponse, json!({})));
    let obs = c.observe(TO_PROX, &[0x92, 0x01]);
    assert_eq!(obs.view.kind, Kind::Malformed);
    assert!(
        obs.view
            .problem
            .unwrap()
            .contains("passes the upstream response through")
    );
}

#[test]
fn a_close_where_a_reply_was_due_is_reported() {
    let mut c = conv();
    c.observe(TO_PLUGIN, &call(Hook::OnConnect, json!({})));
    let view = c.closed(TO_PROX).unwrap();
    assert_eq!(view.kind, Kind::Closed);
    assert_eq!(
        view.error.as_deref(),
        Some(
            "the plugin closed the connection instead of answering on_connect; prox closes the client's TCP connection"
        )
    );
    assert_eq!(c.closed(TO_PROX), None);
}

fn line(text: &str) -> Line {
    Line {
        offset: 0,
        raw: format!("{text}\n").into(),
    }
}

#[test]
fn stdio_lines_say_what_prox_does_with_them() {
    let (v, m) = stdio::decode(
        TO_PLUGIN,
        &line(
            r#"{"method":"configure","params":{"route_id":"web:0","match":{"domain":"a.example"}}}"#,
        ),
    );
    assert_eq!(
        (v.kind, v.method.as_deref(), v.problem),
        (Kind::Notification, Some("configure"), None)
    );
    assert!(matches!(m, StdioMessage::Configure { ref route_id, .. } if route_id == "web:0"));

    let (v, m) = stdio::decode(TO_PROX, &line(r#"{"result":"ok"}"#));
    assert_eq!((v.kind, m), (Kind::Response, StdioMessage::Ack));

    let (v, m) = stdio::decode(
        TO_PROX,
        &line(
            r#"{"method":"ready","params":{"socket":"/tmp/p.sock","hooks":["on_request","on_teardown"]}}"#,
        ),
    );
    assert_eq!(
        m,
        StdioMessage::Ready {
            socket: "/tmp/p.sock".into(),
            hooks: vec!["on_request".into(), "on_teardown".into()]
        }
    );
    assert!(
        v.problem
            .unwrap()
            .contains("`on_teardown` is not a hook prox calls")
    );

    let cases = [
        (
            r#"{"method":"ready","params":{"hooks":["on_request"]}}"#,
            Kind::Notification,
            "prox logs `plugin ready without socket` and ignores it",
        ),
        (
            r#"{"method":"ready","params":{"socket":7}}"#,
            Kind::Malformed,
            "`socket` is not a string",
        ),
        (
            r#"{"method":"set_targets","params":{"targets":["a:1"]}}"#,
            Kind::Notification,
            "matched no routes",
        ),
        (
            r#"{"method":"set_targets","params":{"route_id":"*","groups":{"a":"b"}}}"#,
            Kind::Malformed,
            "`groups` is not a map of string lists",
        ),
        (
            r#"{"method":"set_speed","params":{"action":"x","download_mbps":"fast"}}"#,
            Kind::Malformed,
            "`download_mbps` is not a number",
        ),
        (
            r#"{"method":"log","params":{"level":"notice","message":"m"}}"#,
            Kind::Notification,
            "prox logs it at info",
        ),
        (
            r#"{"method":"reboot","params":{}}"#,
            Kind::Notification,
            "prox logs `plugin unknown push method` (reboot)",
        ),
        (
            r#"{"note":"hi"}"#,
            Kind::Notification,
            "no `method`; prox ignores the line",
        ),
        ("starting up...", Kind::Malformed, "not JSON"),
        ("[1,2]", Kind::Malformed, "not a JSON object"),
        ("", Kind::Notification, "an empty line"),
    ];
    for (text, kind, needle) in cases {
        let (v, _) = stdio::decode(TO_PROX, &line(text));
        assert_eq!(v.kind, kind, "{text}");
        let problem = v.problem.unwrap_or_default();
        assert!(problem.contains(needle), "{text}: {problem}");
    }
    let (v, m) = stdio::decode(
        TO_PROX,
        &line(
            r#"{"method":"set_targets","params":{"action":"api","groups":{"eu":["a:1"],"us":null}}}"#,
        ),
    );
    assert_eq!(v.problem, None);
    assert!(matches!(m, StdioMessage::Push { ref method, .. } if method == "set_targets"));

    // From prox's side, only configure exists.
    let (v, _) = stdio::decode(TO_PLUGIN, &line(r#"{"method":"shutdown"}"#));
    assert!(v.problem.unwrap().contains("unknown method: shutdown"));
    let (v, _) = stdio::decode(
        TO_PLUGIN,
        &line(r#"{"method":"configure","params":{"route_id":5}}"#),
    );
    assert_eq!(v.kind, Kind::Malformed);

    // A line too long for prox's buffer is flagged, and kept whole.
    let long = format!(
        r#"{{"method":"log","params":{{"level":"info","message":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    let (v, m) = stdio::decode(TO_PROX, &line(&long));
    assert!(
        v.problem
            .unwrap()
            .contains("does not fit prox's 64 KiB line buffer: prox's reader stops for good")
    );
    assert!(matches!(m, StdioMessage::Push { .. }));
    assert_eq!(v.value["params"]["message"].as_str().unwrap().len(), 70_000);
}
