//! The `ProtoBuf:1` dialect. A connection carries one call at a time: an
//! RpcCall (named by its command; its content is the params), then for
//! `cmd_handle_event` the PDK calls the server made (method name,
//! arguments, Kong's reply), then the RpcReturn, or the server closing the
//! connection, which is its error (`"closed"`).
//!
//! Server entries: `result` is the RpcReturn without its `sequence` (the
//! mock echoes the call's), `null` for go-pdk's empty frame, `error:
//! "closed"` for a close; an event's entry has `pdk`, the calls the
//! server made with their arguments. Client specs get `on_pdk`, Kong's
//! recorded answers per method and arguments, and expectations on the
//! RpcReturn without `sequence` and `startedAt`.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde_json::{Map, Value as Json, json};

use super::{Dialect, Exchange, Item, Reply, leaves};
use crate::message::{Direction, Kind};
use crate::protocol::Protocol;
use crate::record::FrameEvent;
use crate::spec::Notification;

/// Where an event's PDK calls travel inside a [`Reply`]'s result between
/// [`Dialect::frame`] and [`Dialect::server_reply`].
const PDK: &str = "$pdk";

/// The call in flight on one connection.
#[derive(Debug)]
struct Pending {
    exchange: Exchange,
    pdk: Vec<Json>,
}

/// Pairs `ProtoBuf:1` frames; see the module docs.
#[derive(Debug, Default)]
pub struct ProtobufDialect {
    pending: HashMap<u64, Pending>,
    /// Kong's answers: method → distinct (args, reply), in recorded order.
    answers: IndexMap<String, Vec<(Json, Json)>>,
}

impl ProtobufDialect {
    /// Ends the pending call on `conn`; `seq` is the reply's line (unused
    /// without a reply).
    fn finish(&mut self, conn: u64, reply: Option<Reply>, seq: u64) -> Vec<Item> {
        let Some(mut p) = self.pending.remove(&conn) else {
            return vec![];
        };
        p.exchange.reply_seq = if reply.is_some() { seq } else { 0 };
        p.exchange.reply = reply.map(|mut r| {
            if !p.pdk.is_empty() {
                let mut with = Map::new();
                with.insert(PDK.into(), Json::Array(script(&p.pdk)));
                with.insert("return".into(), r.result);
                r.result = Json::Object(with);
            }
            r
        });
        vec![Item::Exchange(p.exchange)]
    }
}

/// The RpcReturn without what the mock fills in itself, and the PDK calls.
fn split(result: &Json) -> (Json, Option<&Json>) {
    match result.get(PDK) {
        Some(pdk) => (
            result.get("return").cloned().unwrap_or(Json::Null),
            Some(pdk),
        ),
        None => (result.clone(), None),
    }
}

/// An event's PDK calls as the mock plays them: method and arguments, and
/// where an argument repeats text from an earlier reply of Kong's (the
/// plugin used it: `hello example.test` after `get_header` said
/// `example.test`), that reply is captured and the text becomes `${name}`,
/// so the mock follows other answers as the plugin would.
fn script(pdk: &[Json]) -> Vec<Json> {
    // Producers: string leaves of Kong's replies, long enough to be
    // recognised, with the step and path they come from.
    let mut producers: Vec<(usize, String, String)> = Vec::new();
    for (i, step) in pdk.iter().enumerate() {
        if let Some(reply) = step.get("reply") {
            for leaf in leaves::leaves(reply) {
                if let Json::String(v) = leaf.value
                    && v.chars().count() >= 3
                    && !producers.iter().any(|(_, p, _)| p == v)
                {
                    producers.push((i, v.clone(), leaves::path_string(&leaf.path)));
                }
            }
        }
    }
    let mut used: IndexMap<usize, Map<String, Json>> = IndexMap::new();
    let mut steps: Vec<Map<String, Json>> = Vec::new();
    for (j, step) in pdk.iter().enumerate() {
        let mut args = step.get("args").cloned().unwrap_or(Json::Null);
        for (n, (i, value, path)) in producers.iter().enumerate() {
            if *i >= j {
                continue;
            }
            let name = format!("reply_{}", n + 1);
            if replace_text(&mut args, value, &format!("${{{name}}}")) {
                used.entry(*i)
                    .or_default()
                    .insert(name, Json::String(path.clone()));
            }
        }
        let mut out = Map::new();
        out.insert("method".into(), step["method"].clone());
        out.insert("args".into(), args);
        steps.push(out);
    }
    for (i, capture) in used {
        steps[i].insert("capture".into(), Json::Object(capture));
    }
    steps.into_iter().map(Json::Object).collect()
}

/// Replaces `text` inside every string of `value`; true if any changed.
fn replace_text(value: &mut Json, text: &str, with: &str) -> bool {
    match value {
        Json::String(s) if s.contains(text) => {
            *s = s.replace(text, with);
            true
        }
        Json::Array(items) => items
            .iter_mut()
            .fold(false, |acc, v| replace_text(v, text, with) | acc),
        Json::Object(map) => map
            .values_mut()
            .fold(false, |acc, v| replace_text(v, text, with) | acc),
        _ => false,
    }
}

fn without_sequence(mut v: Json) -> Json {
    if let Json::Object(m) = &mut v {
        m.remove("sequence");
    }
    v
}

impl Dialect for ProtobufDialect {
    fn protocol(&self) -> Protocol {
        Protocol::ProtoBuf1
    }

    fn frame(&mut self, frame: &FrameEvent) -> Result<Vec<Item>, String> {
        let msg = &frame.msg;
        let conn = frame.conn;
        match (msg.kind, frame.dir) {
            (Kind::Request, Direction::ToServer) => {
                let mut out = vec![];
                if self.pending.contains_key(&conn) {
                    out = self.finish(conn, None, 0);
                }
                let Some(method) = msg.method.clone() else {
                    tracing::warn!("connection {conn}: an RpcCall with no command left out");
                    return Ok(out);
                };
                // The content is the one member beside `sequence`.
                let params = msg
                    .value
                    .as_object()
                    .and_then(|m| m.iter().find(|(k, _)| k.as_str() != "sequence"))
                    .map_or_else(|| json!({}), |(_, v)| v.clone());
                self.pending.insert(
                    conn,
                    Pending {
                        exchange: Exchange {
                            conn,
                            request_seq: frame.stamp.seq,
                            reply_seq: 0,
                            method,
                            params,
                            reply: None,
                            notifications: vec![],
                        },
                        pdk: vec![],
                    },
                );
                Ok(out)
            }
            (Kind::PdkCall | Kind::PdkEnd, Direction::ToClient) => Ok(vec![]),
            (Kind::PdkArgs, Direction::ToClient) => {
                if let Some(p) = self.pending.get_mut(&conn) {
                    p.pdk.push(json!({
                        "method": msg.method.clone().unwrap_or_default(),
                        "args": msg.value,
                    }));
                }
                Ok(vec![])
            }
            (Kind::PdkReply, Direction::ToServer) => {
                let method = msg.method.clone().unwrap_or_default();
                let Some(step) = self.pending.get(&conn).and_then(|p| p.pdk.last()) else {
                    return Err(format!("a reply to {method} with no PDK call before it"));
                };
                let args = step["args"].clone();
                // An empty frame is nil, whatever the type's empty message.
                let reply = if frame.len <= 4 {
                    Json::Null
                } else {
                    msg.value.clone()
                };
                if let Some(last) = self.pending.get_mut(&conn).and_then(|p| p.pdk.last_mut()) {
                    last["reply"] = reply.clone();
                }
                let seen = self.answers.entry(method).or_default();
                if !seen.iter().any(|(a, r)| *a == args && *r == reply) {
                    seen.push((args, reply));
                }
                Ok(vec![])
            }
            (Kind::Response, Direction::ToClient) => {
                // go-pdk's empty frame (commands it does not implement) is `null`.
                let result = if frame.len <= 4 {
                    Json::Null
                } else {
                    msg.value.clone()
                };
                Ok(self.finish(
                    conn,
                    Some(Reply {
                        error: Json::Null,
                        result,
                    }),
                    frame.stamp.seq,
                ))
            }
            (Kind::Closed, Direction::ToClient) => Ok(self.finish(
                conn,
                Some(Reply {
                    error: json!("closed"),
                    result: Json::Null,
                }),
                frame.stamp.seq,
            )),
            // Kong gave up (after kong.response.exit, or a timeout).
            (Kind::Closed, Direction::ToServer) => Ok(self.finish(conn, None, 0)),
            (Kind::Malformed, _) => {
                tracing::warn!(
                    "connection {conn}: malformed frame left out ({}): {}",
                    msg.problem.as_deref().unwrap_or("no reason given"),
                    msg.value
                );
                Ok(vec![])
            }
            (kind, dir) => Err(super::out_of_place(
                kind,
                dir,
                "ProtoBuf:1",
                ["to the server", "to the client"],
            )),
        }
    }

    fn close(&mut self, conn: u64) -> Vec<Item> {
        self.finish(conn, None, 0)
    }

    fn volatile_keys(&self) -> &'static [&'static str] {
        &["sequence", "startedAt"]
    }

    fn volatile_notification(&self, _: &Notification) -> bool {
        false
    }

    fn server_reply(&self, reply: Option<&Reply>, entry: &mut Map<String, Json>) {
        let Some(r) = reply else {
            entry.insert("no_reply".into(), Json::Bool(true));
            return;
        };
        if !r.error.is_null() {
            entry.insert("error".into(), r.error.clone());
            return;
        }
        let (ret, pdk) = split(&r.result);
        if let Some(pdk) = pdk {
            entry.insert("pdk".into(), pdk.clone());
        }
        entry.insert("result".into(), without_sequence(ret));
    }

    fn client_expect(&self, reply: &Reply, result: Option<Json>) -> Json {
        if !reply.error.is_null() {
            return json!({"error": reply.error});
        }
        match result.map(|r| split(&r).0) {
            Some(Json::Null) | None => json!({"error": null}),
            Some(r) => json!({"error": null, "result": r}),
        }
    }

    fn conn_labels(&self) -> bool {
        false
    }

    fn client_extra(&self) -> Map<String, Json> {
        let mut on_pdk = Map::new();
        for (method, seen) in &self.answers {
            let several = seen.len() > 1;
            let entries = seen
                .iter()
                .map(|(args, reply)| {
                    if several {
                        json!({"match": args, "result": reply})
                    } else {
                        json!({"result": reply})
                    }
                })
                .collect();
            on_pdk.insert(method.clone(), Json::Array(entries));
        }
        let mut extra = Map::new();
        if !on_pdk.is_empty() {
            extra.insert("on_pdk".into(), Json::Object(on_pdk));
        }
        extra
    }
}
