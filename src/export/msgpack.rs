//! The `MsgPack:1` dialect: `[0, msgid, method, params]` requests paired
//! with `[1, msgid, error, result]` responses by msgid per connection
//! (msgids repeat across Kong's workers), `[2, method, params]`
//! notifications attached to the call in flight (or, with none, passed on
//! for `on_connect`). Entries are written as `result` / `error`.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;
use serde_json::{Map, Value as Json, json};

use super::client::error_expectation;
use super::{Dialect, Exchange, Item, Reply};
use crate::message::{Direction, Kind};
use crate::protocol::Protocol;
use crate::record::FrameEvent;
use crate::spec::Notification;

/// Pairs `MsgPack:1` frames; see the module docs.
#[derive(Debug, Default)]
pub struct MsgpackDialect {
    pending: HashMap<u64, IndexMap<u64, Exchange>>,
    /// Connections where requests were lost (malformed or undecodable).
    lossy: HashSet<u64>,
}

fn field<'a>(value: &'a Json, i: usize, what: &str) -> Result<&'a Json, String> {
    value
        .get(i)
        .ok_or_else(|| format!("{what} without element {i}: {value}"))
}

impl Dialect for MsgpackDialect {
    fn protocol(&self) -> Protocol {
        Protocol::MsgPack1
    }

    fn frame(&mut self, frame: &FrameEvent) -> Result<Vec<Item>, String> {
        let msg = &frame.msg;
        let v = &msg.value;
        let conn = frame.conn;
        match (msg.kind, frame.dir) {
            (Kind::Request, Direction::ToServer) => {
                let id = msg.id.ok_or("a request without msgid")?;
                let method = field(v, 2, "a request")?
                    .as_str()
                    .ok_or("a request whose method is not a string")?
                    .to_owned();
                let params = field(v, 3, "a request")?.clone();
                let ex = Exchange {
                    conn,
                    request_seq: frame.stamp.seq,
                    reply_seq: 0,
                    method,
                    params,
                    reply: None,
                    notifications: vec![],
                };
                let pending = self.pending.entry(conn).or_default();
                let mut out = vec![];
                if let Some(old) = pending.shift_remove(&id) {
                    tracing::warn!(
                        "connection {conn}: msgid {id} reused before {} got its reply",
                        old.method
                    );
                    out.push(Item::Exchange(old));
                }
                pending.insert(id, ex);
                Ok(out)
            }
            (Kind::Response, Direction::ToClient) => {
                let id = msg.id.ok_or("a response without msgid")?;
                let found = self
                    .pending
                    .get_mut(&conn)
                    .and_then(|p| p.shift_remove(&id));
                let Some(mut ex) = found else {
                    if self.lossy.contains(&conn) {
                        tracing::warn!(
                            "connection {conn}: response #{id} answers a request that could not be decoded; left out"
                        );
                        return Ok(vec![]);
                    }
                    return Err(format!(
                        "response #{id} on connection {conn} answers no request recorded before it"
                    ));
                };

                ex.reply_seq = frame.stamp.seq;
                ex.reply = Some(Reply {
                    error: field(v, 2, "a response")?.clone(),
                    result: field(v, 3, "a response")?.clone(),
                });
                Ok(vec![Item::Exchange(ex)])
            }
            (Kind::Notification, Direction::ToClient) => {
                let notification = Notification {
                    method: msg.method.clone().unwrap_or_default(),
                    params: field(v, 2, "a notification")?.clone(),
                };
                match self.pending.get_mut(&conn).and_then(|p| p.first_mut()) {
                    Some((_, ex)) => {
                        ex.notifications.push(notification);
                        Ok(vec![])
                    }
                    None => Ok(vec![Item::Notification { conn, notification }]),
                }
            }
            (Kind::Malformed, dir) => {
                self.lost(conn, dir);
                tracing::warn!(
                    "connection {conn}: malformed message left out ({}): {v}",
                    msg.problem.as_deref().unwrap_or("no reason given")
                );
                Ok(vec![])
            }
            (kind, dir) => Err(super::out_of_place(
                kind,
                dir,
                "MsgPack:1",
                ["to the server", "to the client"],
            )),
        }
    }

    fn lost(&mut self, conn: u64, dir: Direction) {
        if dir == Direction::ToServer {
            self.lossy.insert(conn);
        }
    }

    fn close(&mut self, conn: u64) -> Vec<Item> {
        self.pending
            .remove(&conn)
            .map(|p| p.into_values().map(Item::Exchange).collect())
            .unwrap_or_default()
    }

    fn volatile_keys(&self) -> &'static [&'static str] {
        // StartTime: Python, JS and Go instance status; Pid, LoadTime,
        // Modtime, LastStartInstance, LastCloseInstance: go-pluginserver's
        // GetStatus.
        &[
            "StartTime",
            "Pid",
            "LoadTime",
            "Modtime",
            "LastStartInstance",
            "LastCloseInstance",
        ]
    }

    fn volatile_notification(&self, n: &Notification) -> bool {
        n.method == "serverPid"
    }

    fn server_reply(&self, reply: Option<&Reply>, entry: &mut Map<String, Json>) {
        match reply {
            None => {
                entry.insert("no_reply".into(), Json::Bool(true));
            }
            Some(r) if r.error.is_null() => {
                entry.insert("result".into(), r.result.clone());
            }
            Some(r) => {
                entry.insert("error".into(), r.error.clone());
                if !r.result.is_null() {
                    entry.insert("result".into(), r.result.clone());
                }
            }
        }
    }

    fn client_expect(&self, reply: &Reply, result: Option<Json>) -> Json {
        if !reply.error.is_null() {
            return json!({"error": error_expectation(&reply.error)});
        }
        match result {
            Some(r) => json!({"error": null, "result": r}),
            None => json!({"error": null}),
        }
    }
}
