//! The Kong emulation on the wire, byte by byte, against a scripted peer
//! that decodes with rmpv (not plugtap's codec): Kong's encodings (str16
//! never str8, unsigned integers, bin bodies, explicit empty header maps,
//! no `Data` on nil), its Step-method choice, msgids, the config JSON, and
//! no answer after `kong.response.exit`.

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use rmpv::Value;
use serde_json::Value as Json;

use crate::support::{self, mp};

/// Reads msgpack values and keeps the exact bytes of each.
struct Tee<'a> {
    stream: &'a mut UnixStream,
    seen: Vec<u8>,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte at a time, so no byte of the next message is consumed.
        let len = buf.len().min(1);
        let n = self.stream.read(&mut buf[..len])?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// Reads one request: (msgid, method, the single param, raw bytes).
fn read_request(stream: &mut UnixStream) -> Option<(u64, String, Value, Vec<u8>)> {
    let mut tee = Tee {
        stream,
        seen: Vec::new(),
    };
    let v = rmpv::decode::read_value(&mut tee).ok()?;
    let items = v.as_array().expect("an array").clone();
    assert_eq!(items.len(), 4, "{v}");
    assert_eq!(items[0].as_u64(), Some(0), "a request: {v}");
    let params = items[3].as_array().expect("params array").clone();
    assert_eq!(params.len(), 1, "Kong sends exactly one param: {v}");
    Some((
        items[1].as_u64().unwrap(),
        items[2].as_str().unwrap().to_owned(),
        params[0].clone(),
        tee.seen,
    ))
}

fn get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn pdk(method: &str, args: Vec<Value>) -> Value {
    mp::map(&[
        (
            "Data",
            mp::map(&[("Method", method.into()), ("Args", Value::Array(args))]),
        ),
        ("EventId", Value::from(300)),
    ])
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The scripted server: returns what it saw, for assertions after the run.
fn scripted_peer(listener: UnixListener) -> Vec<(u64, String, Value, Vec<u8>)> {
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut seen = Vec::new();
    // EventId 300 sent as a *signed* int16, the way Go servers send it.
    let event_id_signed = [0xd1u8, 0x01, 0x2c];
    let replies: Vec<Value> = vec![
        // StartInstance
        mp::map(&[
            ("Name", "wire".into()),
            ("Id", 7.into()),
            ("Config", mp::map(&[])),
            ("StartTime", Value::F64(1.5)),
        ]),
        pdk("kong.request.get_header", vec!["x-long".into()]),
        pdk("kong.request.get_headers", vec![]),
        pdk("kong.request.get_query", vec![]),
        pdk("kong.request.get_raw_body", vec![]),
        pdk("kong.response.set_header", vec!["x-a".into(), "1".into()]),
        pdk("kong.nope.unknown", vec![]),
        pdk("kong.router.get_route", vec![]),
        pdk("kong.client.get_credential", vec![]),
        pdk(
            "kong.response.exit",
            vec![
                403.into(),
                "nope".into(),
                mp::map(&[("x-why", "test".into())]),
            ],
        ),
    ];
    for reply in replies {
        let req = read_request(&mut s).expect("a request");
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &mp::response(req.0 as u32, Value::Nil, reply))
            .unwrap();
        // Re-encode EventId 300 as a signed int16.
        if let Some(pos) = bytes.windows(3).position(|w| w == [0xcd, 0x01, 0x2c]) {
            bytes[pos..pos + 3].copy_from_slice(&event_id_signed);
        }
        std::io::Write::write_all(&mut s, &bytes).unwrap();
        seen.push(req);
    }
    // After kong.response.exit Kong sends nothing more: the next read sees
    // the end of the stream when plugtap exits.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if let Some(extra) = read_request(&mut s) {
        seen.push((extra.0, format!("UNEXPECTED {}", extra.1), extra.2, extra.3));
    }
    seen
}

fn write_spec(dir: &Path) -> std::path::PathBuf {
    let spec = serde_json::json!({
        "role": "client",
        "kong": {
            "plugin": "wire",
            "config": {"message": "Kong!"},
            "request": {
                "headers": {"host": "localhost:8000", "x-long": "v".repeat(40)},
                "body": {"$bin": "/wA="}
            },
            "pdk": {
                "kong.router.get_route": {"answer": {"_method": "plugin.StepCustom", "id": "r1"}},
                "kong.client.get_credential": {"answer": {"id": "c1"}}
            }
        }
    });
    let path = dir.join("wire.json");
    std::fs::write(&path, spec.to_string()).unwrap();
    path
}

#[test]
fn kong_encodings_step_methods_and_exit_on_the_wire() {
    let dir = support::tmpdir();
    let socket = dir.path().join("wire.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let peer = std::thread::spawn(move || scripted_peer(listener));
    let spec = write_spec(dir.path());
    let out = support::run(
        dir.path(),
        &[
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--json",
        ],
    );
    let seen = peer.join().unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let methods: Vec<&str> = seen.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(
        methods,
        [
            "plugin.StartInstance",
            "plugin.HandleEvent",
            "plugin.Step",
            "plugin.StepMultiMap",
            "plugin.StepMultiMap",
            "plugin.Step",
            "plugin.Step",
            "plugin.Step",
            "plugin.StepCustom",
            "plugin.StepCredential",
        ],
        "no request may follow kong.response.exit"
    );
    // msgids count up from 1.
    let ids: Vec<u64> = seen.iter().map(|s| s.0).collect();
    assert_eq!(ids, (1..=10).collect::<Vec<u64>>());

    // StartInstance: the config as JSON text with Kong's keys.
    let config: Json =
        serde_json::from_str(get(&seen[0].2, "Config").unwrap().as_str().unwrap()).unwrap();
    assert_eq!(config["message"], "Kong!");
    assert_eq!(config["__seq__"], 1);
    for key in ["__plugin_id", "__ws_id", "__key__"] {
        assert!(config[key].is_string(), "{key} in {config}");
    }
    assert!(
        config["__key__"]
            .as_str()
            .unwrap()
            .starts_with("plugins:wire:")
    );
    // The config text is over 31 bytes: str16 (da), never str8 (d9).
    assert!(!seen[0].3.contains(&0xd9), "{:02x?}", seen[0].3);
    assert!(contains(&seen[0].3, &[0xda]));

    // HandleEvent with the instance id the server gave.
    assert_eq!(get(&seen[1].2, "InstanceId"), Some(&Value::from(7)));
    assert_eq!(
        get(&seen[1].2, "EventName").unwrap().as_str(),
        Some("access")
    );

    // get_header: a 40-byte string as str16, EventId 300 echoed as uint16.
    let step = &seen[2];
    assert_eq!(
        get(&step.2, "Data").unwrap().as_str(),
        Some("v".repeat(40).as_str())
    );
    assert!(contains(&step.3, &[0xda, 0x00, 0x28]), "{:02x?}", step.3);
    assert!(!step.3.contains(&0xd9));
    assert!(contains(&step.3, &[0xcd, 0x01, 0x2c]), "{:02x?}", step.3);

    // get_headers: every value a list.
    let headers = get(&seen[3].2, "Data").unwrap();
    assert_eq!(
        get(headers, "host"),
        Some(&Value::Array(vec!["localhost:8000".into()]))
    );
    // get_query with no query: an explicit empty map (0x80), not 0x90.
    assert_eq!(get(&seen[4].2, "Data"), Some(&Value::Map(vec![])));
    assert!(contains(&seen[4].3, &[0xa4, b'D', b'a', b't', b'a', 0x80]));

    // get_raw_body: bin.
    assert_eq!(
        get(&seen[5].2, "Data"),
        Some(&Value::Binary(vec![0xff, 0x00]))
    );
    assert!(contains(&seen[5].3, &[0xc4, 0x02, 0xff, 0x00]));

    // set_header returns nil: no Data key at all.
    for nil_step in [&seen[6], &seen[7]] {
        assert_eq!(nil_step.2.as_map().unwrap().len(), 1, "{}", nil_step.2);
        assert!(get(&nil_step.2, "Data").is_none());
    }
    // _method picks the Step; the field stays in Data.
    assert_eq!(
        get(get(&seen[8].2, "Data").unwrap(), "_method")
            .unwrap()
            .as_str(),
        Some("plugin.StepCustom")
    );

    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    let phase = &report["requests"][0]["phases"][0];
    assert_eq!(phase["status"], "exited");
    assert_eq!(phase["instance_id"], 7);
    assert_eq!(phase["event_id"], 300);
    let calls = phase["calls"].as_array().unwrap();
    assert_eq!(calls[5]["source"], "unknown");
    assert_eq!(calls[5]["answer"], Json::Null);
    assert_eq!(calls[6]["source"], "canned");
    assert!(calls[8].get("answer").is_none(), "exit gets no answer");
    let response = &report["requests"][0]["response"];
    assert_eq!(response["source"], "exit");
    assert_eq!(response["status"], 403);
    assert_eq!(response["body"], "nope");
    assert_eq!(response["headers"]["x-why"], "test");
    assert_eq!(response["headers"]["x-a"], "1");
    assert!(
        out.stderr
            .contains("could not find pdk method: kong.nope.unknown")
    );
    assert!(
        out.stderr.contains("kong.response.exit(403, \"nope\""),
        "{}",
        out.stderr
    );
}

#[test]
fn a_stream_of_notifications_cannot_hold_a_call_forever() {
    let dir = support::tmpdir();
    let socket = dir.path().join("spam.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _ = read_request(&mut s);
        let note = Value::Array(vec![2.into(), "serverPid".into(), 1.into()]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &note).unwrap();
        // Notifications, never a reply, until plugtap hangs up.
        while std::io::Write::write_all(&mut s, &bytes).is_ok() {
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let spec = write_spec(dir.path());
    let started = std::time::Instant::now();
    let out = support::run(
        dir.path(),
        &[
            "-q",
            "client",
            "--spec",
            spec.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--timeout",
            "1",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no reply to plugin.StartInstance within 1s"),
        "{}",
        out.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    peer.join().unwrap();
}
