//! The `prox` dialect: recordings of the prox wrapper (`plugtap proxy
//! --protocol prox`) become prox specs.
//!
//! Socket frames: a call (`{t, d}`, its hook in `method`) is paired with
//! the next reply on its connection (prox has one call outstanding per
//! connection); the step's params and the server's `match` are the hook
//! payload `d` with prox's short keys, exactly as sent, and replies are
//! written as `result` (short keys too; the roles accept either spelling).
//! `on_disconnect` is one-way: clients send it with no expectation, mocks
//! need no entry for it. A connection closed while a reply was due leaves
//! a call without a reply (the core's no-reply handling).
//!
//! The stdio lines ([`Line::Stdio`]) give the spec's `prox` section: the
//! server announces the hooks of the last `ready`, acknowledges `configure`
//! if the plugin did, and pushes what the plugin pushed, timed from the
//! first `ready`; the client sends the recorded `configure` lines and
//! starts the recorded plugin command. The client spreads steps over
//! connections by position, not by the core's `conn`, so exported client
//! steps run in recorded order on one connection.

use std::collections::HashMap;

use serde_json::{Map, Value as Json, json};

use super::{Dialect, Exchange, Item, Reply, Target};
use crate::message::{Direction, Kind};
use crate::protocol::Protocol;
use crate::record::{FrameEvent, Header, Line};
use crate::spec::Notification;

/// Pairs prox frames and gathers the stdio lines; see the module docs.
#[derive(Debug, Default)]
pub struct ProxDialect {
    /// The call waiting for its reply, per connection.
    pending: HashMap<u64, Exchange>,
    /// `configure` params, in order.
    configures: Vec<Json>,
    /// Hooks of the last `ready`.
    hooks: Option<Json>,
    /// Whether the plugin acknowledged `configure`.
    acked: bool,
    /// When the first `ready` came (µs since the recording started).
    first_ready_us: Option<u64>,
    /// Pushes: time (µs), method, params.
    pushes: Vec<(u64, String, Json)>,
}

impl Dialect for ProxDialect {
    fn protocol(&self) -> Protocol {
        Protocol::Prox
    }

    fn frame(&mut self, frame: &FrameEvent) -> Result<Vec<Item>, String> {
        let msg = &frame.msg;
        let conn = frame.conn;
        match (msg.kind, frame.dir) {
            (Kind::Request | Kind::Notification, Direction::ToServer) => {
                let method = msg.method.clone().ok_or("a hook call without a hook")?;
                let params = msg.value.get("d").cloned().unwrap_or(Json::Null);
                let ex = Exchange {
                    conn,
                    request_seq: frame.stamp.seq,
                    reply_seq: 0,
                    method,
                    params,
                    reply: None,
                    notifications: vec![],
                };
                let mut out = Vec::new();
                if let Some(old) = self.pending.remove(&conn) {
                    tracing::warn!(
                        "connection {conn}: {} got no reply before the next call",
                        old.method
                    );
                    out.push(Item::Exchange(old));
                }
                if msg.kind == Kind::Notification {
                    out.push(Item::Exchange(ex));
                } else {
                    self.pending.insert(conn, ex);
                }
                Ok(out)
            }
            (Kind::Response, Direction::ToClient) => {
                let mut ex = self.pending.remove(&conn).ok_or_else(|| {
                    format!("a reply on connection {conn} answers no call recorded before it")
                })?;
                ex.reply_seq = frame.stamp.seq;
                ex.reply = Some(Reply {
                    error: Json::Null,
                    result: msg.value.get("result").cloned().unwrap_or(Json::Null),
                });
                ex.reply_seq = frame.stamp.seq;
                Ok(vec![Item::Exchange(ex)])
            }
            (Kind::Closed, _) => Ok(self
                .pending
                .remove(&conn)
                .map(Item::Exchange)
                .into_iter()
                .collect()),
            (Kind::Malformed, _) => {
                tracing::warn!(
                    "connection {conn}: a frame prox's side could not use is left out ({}): {}",
                    msg.problem.as_deref().unwrap_or("no reason given"),
                    msg.value
                );
                // A malformed reply still answers the call.
                if frame.dir == Direction::ToClient {
                    return Ok(self
                        .pending
                        .remove(&conn)
                        .map(Item::Exchange)
                        .into_iter()
                        .collect());
                }
                Ok(vec![])
            }
            (kind, dir) => Err(super::out_of_place(
                kind,
                dir,
                "prox plugin socket",
                ["to the plugin", "to prox"],
            )),
        }
    }

    fn close(&mut self, conn: u64) -> Vec<Item> {
        self.pending
            .remove(&conn)
            .map(Item::Exchange)
            .into_iter()
            .collect()
    }

    fn volatile_keys(&self) -> &'static [&'static str] {
        &[]
    }

    fn volatile_notification(&self, _notification: &Notification) -> bool {
        false
    }

    fn server_reply(&self, reply: Option<&Reply>, entry: &mut Map<String, Json>) {
        match reply {
            Some(r) => {
                entry.insert("result".into(), r.result.clone());
            }
            None => {
                entry.insert("no_reply".into(), Json::Bool(true));
            }
        }
    }

    fn client_expect(&self, reply: &Reply, result: Option<Json>) -> Json {
        if reply.result.is_null() && result.is_none() {
            // A one-way call.
            return Json::Null;
        }
        match result {
            Some(r) => json!({"result": r}),
            None => json!({}),
        }
    }

    fn one_way(&self, method: &str) -> bool {
        method == "on_disconnect"
    }

    fn other_line(&mut self, line: &Line) {
        let Line::Stdio(l) = line else {
            return;
        };
        let params = l.msg.value.get("params").cloned().unwrap_or(json!({}));
        match (l.dir, l.msg.kind, l.msg.method.as_deref()) {
            (Direction::ToServer, _, Some("configure")) => self.configures.push(params),
            (Direction::ToClient, Kind::Response, None) => self.acked = true,
            (Direction::ToClient, _, Some("ready")) => {
                self.first_ready_us.get_or_insert(l.stamp.t_us);
                self.hooks = params.get("hooks").cloned();
            }
            (Direction::ToClient, Kind::Notification, Some(method)) => {
                self.pushes.push((l.stamp.t_us, method.to_owned(), params));
            }
            _ => {}
        }
    }

    fn finish_spec(&self, target: Target, header: &Header, spec: &mut Map<String, Json>) {
        // The plugin names its socket in `ready`; a spec's socket would
        // override it.
        if spec.get("socket").and_then(Json::as_str) == Some("") {
            spec.shift_remove("socket");
        }
        let mut start_cmd = None;
        let mut section = Map::new();
        match target {
            Target::Server => {
                if let Some(hooks) = &self.hooks {
                    section.insert("hooks".into(), hooks.clone());
                }
                section.insert("ack".into(), json!(self.acked));
                let start = self.first_ready_us.unwrap_or(0);
                let pushes: Vec<Json> = self
                    .pushes
                    .iter()
                    .map(|(t, method, params)| {
                        json!({"after_ms": t.saturating_sub(start) / 1000, "method": method, "params": params})
                    })
                    .collect();
                if !pushes.is_empty() {
                    section.insert("pushes".into(), Json::Array(pushes));
                }
            }
            Target::Client => {
                start_cmd = header.command.clone();
                if !self.configures.is_empty() {
                    section.insert("configure".into(), json!(self.configures));
                }
                if let Some(Json::Array(steps)) = spec.get_mut("try_methods") {
                    for step in steps {
                        if let Some(step) = step.as_object_mut() {
                            step.shift_remove("conn");
                        }
                    }
                }
            }
        }
        // Keys in a stable, readable order: the command and the section
        // right after `protocol`.
        let rest: Vec<(String, Json)> = std::mem::take(spec).into_iter().collect();
        let mut extra = Vec::new();
        if let Some(cmd) = start_cmd {
            extra.push(("start_cmd".to_owned(), json!(cmd)));
        }
        if !section.is_empty() {
            extra.push(("prox".to_owned(), Json::Object(section)));
        }
        for (key, value) in rest {
            let after = key == "protocol";
            spec.insert(key, value);
            if after {
                spec.extend(extra.drain(..));
            }
        }
        spec.extend(extra);
    }
}
