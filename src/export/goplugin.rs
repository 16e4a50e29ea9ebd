//! The go-plugin dialect: gRPC streams of a go-plugin recording become
//! calls, and what the plugin sent outside calls (its handshake, broker
//! announcements, `GRPCStdio` lines) becomes notifications.
//!
//! A stream is keyed by connection and HTTP/2 stream id: `grpc_open`
//! starts it, `grpc_message`s collect requests and responses, trailers
//! (or trailers-only headers) end it with its status, a reset ends it
//! without a reply. The `open` line of each connection says who opened it
//! (`host` or, for a brokered callback, `plugin`) and its broker service
//! id (`4 broker#1`), so the dialect sees the recording's other lines too.
//!
//! An [`Exchange`] carries the call as
//! `method` = `pkg.Service/Method`, `params` =
//! `{"requests": [BODY…], "broker": ID|null, "caller": "host"|"plugin"}`
//! and a [`Reply`] with `error` = `null` or `{"status", "message"}` and
//! `result` = `[BODY…]`. A BODY is `{"json": …}` when plugtap's built-in
//! schemas know the method (go-plugin's own services), else `{"raw": …}`
//! (fields by wire type, [`crate::goplugin::wire`], decoded from the
//! recorded bytes, so a spec replays them exactly) or `{"hex": …}`.
//! Notifications are named `go-plugin.handshake` (`{"app_version"}`),
//! `go-plugin.broker` (`{"service_id", "announcer"}`) and
//! `go-plugin.stdio` (`{"channel", "data"}`). [`super::goplugin_spec`]
//! writes the go-plugin spec format from them.

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::{Map, Value as Json, json};

use super::{Dialect, Exchange, Item, Reply};
use crate::goplugin::schema::Schemas;
use crate::goplugin::wire;
use crate::message::{Direction, Kind};
use crate::protocol::Protocol;
use crate::record::{FrameEvent, Line};
use crate::spec::Notification;

/// The stdio stream's path.
pub const STDIO_PATH: &str = "/plugin.GRPCStdio/StreamStdio";

/// Pairs go-plugin stream events; see the module docs.
#[derive(Default)]
pub struct GoPluginDialect {
    /// go-plugin's own services (`Schemas::default` is the built-ins).
    builtin: Schemas,
    /// conn -> (caller, broker service id).
    conns: HashMap<u64, (String, Option<u64>)>,
    streams: HashMap<(u64, u64), Exchange>,
}

impl GoPluginDialect {
    fn known(&self, path: &str) -> bool {
        crate::goplugin::grpc::split_path(path)
            .is_some_and(|(s, m)| self.builtin.method(s, m).is_some())
    }

    /// A recorded message in spec form.
    fn body(&self, f: &FrameEvent, path: &str) -> Json {
        let v = &f.msg.value;
        if self.known(path)
            && let Some(j) = v.get("json")
        {
            return json!({"json": j});
        }
        let raw = f
            .raw
            .as_deref()
            .and_then(|r| base64::engine::general_purpose::STANDARD.decode(r).ok());
        match raw {
            Some(bytes) => match wire::decode(&bytes) {
                Ok(fields) => json!({"raw": fields}),
                Err(_) => json!({"hex": crate::codec::hex(&bytes)}),
            },
            // Redacted: what the recording still shows.
            None => match (v.get("json"), v.get("fields")) {
                (Some(j), _) => json!({"json": j}),
                (None, Some(fields)) => json!({"raw": fields}),
                _ => json!({"hex": ""}),
            },
        }
    }

    fn note(method: &str, params: Json) -> Notification {
        Notification {
            method: method.into(),
            params,
        }
    }
}

impl Dialect for GoPluginDialect {
    fn protocol(&self) -> Protocol {
        Protocol::GoPlugin
    }

    fn line(&mut self, line: &Line) -> Vec<Item> {
        match line {
            Line::Open(o) => {
                let broker = o
                    .name
                    .as_deref()
                    .and_then(|n| n.rsplit_once("broker#"))
                    .and_then(|(_, id)| id.parse().ok());
                let caller = o.client.clone().unwrap_or_else(|| "host".into());
                self.conns.insert(o.conn, (caller, broker));
                vec![]
            }
            Line::Handshake(h) => {
                let version = h
                    .original
                    .split('|')
                    .nth(1)
                    .and_then(|v| v.trim().parse::<i64>().ok());
                vec![Item::Notification {
                    conn: 0,
                    notification: Self::note(
                        "go-plugin.handshake",
                        json!({"app_version": version}),
                    ),
                }]
            }
            Line::Broker(b) => vec![Item::Notification {
                conn: b.conn,
                notification: Self::note(
                    "go-plugin.broker",
                    json!({"service_id": b.service_id, "announcer": b.announcer}),
                ),
            }],
            _ => vec![],
        }
    }

    fn frame(&mut self, f: &FrameEvent) -> Result<Vec<Item>, String> {
        let stream = f.msg.id.ok_or("a gRPC event without a stream id")?;
        let key = (f.conn, stream);
        let path = f.msg.method.clone().unwrap_or_default();
        match f.msg.kind {
            Kind::GrpcOpen => {
                let (caller, broker) = self
                    .conns
                    .get(&f.conn)
                    .cloned()
                    .unwrap_or_else(|| ("host".into(), None));
                let ex = Exchange {
                    conn: f.conn,
                    request_seq: f.stamp.seq,
                    reply_seq: 0,
                    method: path.trim_start_matches('/').to_owned(),
                    params: json!({"requests": [], "broker": broker, "caller": caller}),
                    reply: None,
                    notifications: vec![],
                };
                if let Some(old) = self.streams.insert(key, ex) {
                    return Ok(vec![Item::Exchange(old)]);
                }
                Ok(vec![])
            }
            Kind::GrpcMessage => {
                let body = self.body(f, &path);
                if path == STDIO_PATH && f.dir == Direction::ToClient {
                    let j = &body["json"];
                    let data = j["data"]
                        .as_str()
                        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                        .unwrap_or_default();
                    let channel = match j["channel"].as_str() {
                        Some("STDERR") => "stderr",
                        _ => "stdout",
                    };
                    let note = Self::note(
                        "go-plugin.stdio",
                        json!({"channel": channel, "data": String::from_utf8_lossy(&data)}),
                    );
                    return Ok(vec![Item::Notification {
                        conn: f.conn,
                        notification: note,
                    }]);
                }
                let ex = self.streams.get_mut(&key).ok_or_else(|| {
                    format!(
                        "a message on stream {stream} of connection {} that was never opened",
                        f.conn
                    )
                })?;
                match f.dir {
                    Direction::ToServer => push(&mut ex.params["requests"], body),
                    Direction::ToClient => {
                        let reply = ex.reply.get_or_insert(Reply {
                            error: Json::Null,
                            result: json!([]),
                        });
                        push(&mut reply.result, body);
                    }
                }
                Ok(vec![])
            }
            Kind::GrpcTrailers => {
                let Some(mut ex) = self.streams.remove(&key) else {
                    return Ok(vec![]);
                };
                ex.reply_seq = f.stamp.seq;
                let reply = ex.reply.get_or_insert(Reply {
                    error: Json::Null,
                    result: json!([]),
                });
                let v = &f.msg.value;
                if f.msg.error.is_some() {
                    let mut e = Map::new();
                    e.insert("status".into(), v["status"].clone());
                    e.insert("message".into(), v["message"].clone());
                    reply.error = Json::Object(e);
                }
                Ok(vec![Item::Exchange(ex)])
            }
            Kind::GrpcReset => {
                let Some(mut ex) = self.streams.remove(&key) else {
                    return Ok(vec![]);
                };
                // Cut short: no status, so no reply to reproduce.
                ex.reply = None;
                Ok(vec![Item::Exchange(ex)])
            }
            Kind::GrpcHeaders => Ok(vec![]),
            Kind::Malformed => {
                tracing::warn!(
                    "connection {}: malformed gRPC bytes left out ({})",
                    f.conn,
                    f.msg.problem.as_deref().unwrap_or("no reason given")
                );
                Ok(vec![])
            }
            other => Err(format!(
                "a {} frame is not go-plugin traffic",
                other.label().trim()
            )),
        }
    }

    fn close(&mut self, conn: u64) -> Vec<Item> {
        let keys: Vec<_> = self
            .streams
            .keys()
            .filter(|(c, _)| *c == conn)
            .copied()
            .collect();
        let mut out = Vec::new();
        for k in keys {
            if let Some(mut ex) = self.streams.remove(&k) {
                ex.reply = None;
                out.push(Item::Exchange(ex));
            }
        }
        out
    }

    fn volatile_keys(&self) -> &'static [&'static str] {
        &[]
    }

    fn volatile_notification(&self, _: &Notification) -> bool {
        false
    }

    fn server_reply(&self, reply: Option<&Reply>, entry: &mut Map<String, Json>) {
        let Some(r) = reply else {
            return;
        };
        let bodies = r.result.as_array().cloned().unwrap_or_default();
        match bodies.as_slice() {
            [] => {}
            [one] => {
                let (key, value) = spec_body(one);
                entry.insert(format!("response{key}"), value);
            }
            many => {
                let all_json = many.iter().all(|b| b.get("json").is_some());
                let (key, list): (&str, Vec<Json>) = if all_json {
                    (
                        "responses",
                        many.iter().map(|b| b["json"].clone()).collect(),
                    )
                } else {
                    ("responses_raw", many.iter().map(raw_form).collect())
                };
                entry.insert(key.into(), Json::Array(list));
            }
        }
        if let Some(e) = r.error.as_object() {
            entry.insert("status".into(), e["status"].clone());
            entry.insert("message".into(), e["message"].clone());
        }
    }

    fn client_expect(&self, reply: &Reply, _: Option<Json>) -> Json {
        let mut e = Map::new();
        if let Some(err) = reply.error.as_object() {
            e.insert("status".into(), err["status"].clone());
            if err["message"].as_str().is_some_and(|m| !m.is_empty()) {
                e.insert("message".into(), err["message"].clone());
            }
        }
        let bodies = reply.result.as_array().cloned().unwrap_or_default();
        match bodies.as_slice() {
            [] => {}
            [one] => {
                e.insert("response".into(), decoded_form(one));
            }
            many => {
                e.insert(
                    "responses".into(),
                    Json::Array(many.iter().map(decoded_form).collect()),
                );
            }
        }
        Json::Object(e)
    }
}

fn push(list: &mut Json, item: Json) {
    if let Json::Array(a) = list {
        a.push(item);
    }
}

/// `("", json)`, `("_raw", fields)` or `("_hex", text)`: the suffix of a
/// spec key and its value.
pub fn spec_body(b: &Json) -> (&'static str, Json) {
    if let Some(j) = b.get("json") {
        ("", j.clone())
    } else if let Some(r) = b.get("raw") {
        ("_raw", r.clone())
    } else {
        ("_hex", b.get("hex").cloned().unwrap_or(json!("")))
    }
}

/// A body as raw fields (hex bodies as one unknown field cannot be
/// written; they are kept as their wire decoding attempt).
fn raw_form(b: &Json) -> Json {
    match (b.get("raw"), b.get("hex").and_then(Json::as_str)) {
        (Some(r), _) => r.clone(),
        (None, Some(h)) => wire::unhex(h)
            .and_then(|bytes| wire::decode(&bytes).ok())
            .unwrap_or(json!([])),
        _ => b.get("json").cloned().unwrap_or(json!([])),
    }
}

/// A body as the host decodes a response: JSON with a schema, fields by
/// wire type without one.
fn decoded_form(b: &Json) -> Json {
    match b.get("json") {
        Some(j) => j.clone(),
        None => raw_form(b),
    }
}
