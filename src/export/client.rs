//! Client export: the recorded calls become `try_methods` steps.
//!
//! Steps keep the recorded order; with several connections each step
//! names its connection (`conn`, renumbered 1, 2, … by first use), so the
//! client replays them on as many connections. Each step expects the
//! recorded reply: `"error": null` and the result (a partial match, with
//! volatile fields left out unless `keep_volatile`), or the error's text
//! up to its first digit (error texts often carry ids). Generated values
//! Kong sent back (see [`super::captures`]) become a `capture` on the step
//! that produced them (and leave its expectation) and `${name}` wherever
//! they come back, in params and in echoed results.

use std::collections::HashMap;

use indexmap::{IndexMap, IndexSet};
use serde_json::{Map, Value as Json, json};

use super::captures::{Finder, compatible, value_key};
use super::{Dialect, Exchange, Item, Options, Reply, SinkOut, leaves};

/// Builds a client spec from items; see the module docs.
pub struct ClientExport {
    socket: String,
    opts: Options,
    steps: Vec<StepOut>,
    finder: Finder,
    conns: IndexSet<u64>,
}

struct StepOut {
    request_seq: u64,
    conn: u64,
    method: String,
    params: Json,
    reply: Reply,
    /// `None`: nothing is expected of the result.
    result: Option<Json>,
    capture: IndexMap<String, String>,
}

impl ClientExport {
    /// A builder writing `socket` as the spec's socket.
    pub fn new(socket: String, opts: Options) -> Self {
        ClientExport {
            socket,
            opts,
            steps: Vec::new(),
            finder: Finder::default(),
            conns: IndexSet::new(),
        }
    }

    fn exchange(&mut self, mut ex: Exchange, dialect: &dyn Dialect) {
        if ex.reply.is_none() && dialect.one_way(&ex.method) {
            // Sent as recorded, with nothing to expect.
            self.conns.insert(ex.conn);
            self.steps.push(StepOut {
                request_seq: ex.request_seq,
                conn: ex.conn,
                method: ex.method,
                params: ex.params,
                reply: Reply {
                    error: Json::Null,
                    result: Json::Null,
                },
                result: None,
                capture: IndexMap::new(),
            });
            return;
        }
        let Some(reply) = ex.reply.take() else {
            tracing::warn!(
                "connection {}: {} got no reply in the recording; the step is left out",
                ex.conn,
                ex.method
            );
            return;
        };
        let index = self.steps.len();
        self.conns.insert(ex.conn);
        // Params: values Kong got from the server become ${name}.
        let mut params = ex.params.clone();
        let mut bound: Vec<(Option<String>, Json, String)> = Vec::new();
        let mut echoes: Vec<(Option<String>, Json)> = Vec::new();
        for leaf in leaves::leaves(&ex.params) {
            if value_key(leaf.value).is_none() {
                continue;
            }
            let key = leaf.key().map(str::to_owned);
            echoes.push((key.clone(), leaf.value.clone()));
            let found = self
                .finder
                .consume(ex.request_seq, &ex.method, key.as_deref(), leaf.value);
            let Some(p) = found else {
                continue;
            };
            let (name, new) = self.finder.capture(p);
            if new {
                let producer = self.finder.producer(p).clone();
                let step = &mut self.steps[producer.step];
                step.capture
                    .insert(name.clone(), leaves::path_string(&producer.path));
                if let Some(result) = step.result.as_mut()
                    && !leaves::drop_path(result, &producer.path)
                {
                    step.result = None;
                }
            }
            if let Some(slot) = leaves::lookup_mut(&mut params, &leaf.path) {
                *slot = Json::String(format!("${{{name}}}"));
            }
            bound.push((key, leaf.value.clone(), name));
        }
        // Result: echoes of bound values become ${name}; new values are
        // producers.
        let volatile = dialect.volatile_keys();
        let mut result = reply.result.clone();
        if !self.opts.keep_volatile {
            leaves::strip_keys(&mut result, volatile);
        }
        for leaf in leaves::leaves(&reply.result) {
            let key = leaf.key();
            if key.is_some_and(|k| volatile.iter().any(|v| v.eq_ignore_ascii_case(k))) {
                continue;
            }
            if let Some((_, _, name)) = bound
                .iter()
                .find(|(k, v, _)| v == leaf.value && compatible(k.as_deref(), key))
            {
                if let Some(slot) = leaves::lookup_mut(&mut result, &leaf.path) {
                    *slot = Json::String(format!("${{{name}}}"));
                }
                continue;
            }
            let echo = echoes
                .iter()
                .any(|(k, v)| v == leaf.value && compatible(k.as_deref(), key));
            if !echo {
                self.finder
                    .produce(index, ex.reply_seq, &ex.method, &leaf.path, leaf.value);
            }
        }
        let result = reply.error.is_null().then_some(result);
        self.steps.push(StepOut {
            request_seq: ex.request_seq,
            conn: ex.conn,
            method: ex.method,
            params,
            reply,
            result,
            capture: IndexMap::new(),
        });
    }
}

impl ClientExport {
    /// Names captures in the order of the steps that produce them
    /// (`event_id`, `event_id_2`, …), whatever order they were found in.
    fn rename(&mut self) {
        let mut counts: IndexMap<String, usize> = IndexMap::new();
        let mut renames: HashMap<String, String> = HashMap::new();
        for step in &mut self.steps {
            let old = std::mem::take(&mut step.capture);
            for (name, path) in old {
                let base = base_name(&name);
                let n = counts.entry(base.to_owned()).or_insert(0);
                *n += 1;
                let new = if *n == 1 {
                    base.to_owned()
                } else {
                    format!("{base}_{n}")
                };
                renames.insert(format!("${{{name}}}"), format!("${{{new}}}"));
                step.capture.insert(new, path);
            }
        }
        for step in &mut self.steps {
            replace_refs(&mut step.params, &renames);
            if let Some(r) = step.result.as_mut() {
                replace_refs(r, &renames);
            }
        }
    }
}

/// `event_id_3` → `event_id`.
fn base_name(name: &str) -> &str {
    match name.rsplit_once('_') {
        Some((base, n)) if !base.is_empty() && n.parse::<u32>().is_ok() => base,
        _ => name,
    }
}

fn replace_refs(value: &mut Json, renames: &HashMap<String, String>) {
    match value {
        Json::String(s) => {
            if let Some(new) = renames.get(s.as_str()) {
                *s = new.clone();
            }
        }
        Json::Array(items) => items.iter_mut().for_each(|v| replace_refs(v, renames)),
        Json::Object(map) => map.values_mut().for_each(|v| replace_refs(v, renames)),
        _ => {}
    }
}

/// What a failed call must say: its text up to the first digit (ids and
/// counts vary), or any error when nothing is left.
pub fn error_expectation(error: &Json) -> Json {
    match error {
        Json::String(s) => {
            let cut = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
            let text = s[..cut].trim_end();
            if text.is_empty() {
                Json::Bool(true)
            } else {
                Json::String(text.to_owned())
            }
        }
        _ => Json::Bool(true),
    }
}

impl SinkOut for ClientExport {
    fn item(&mut self, item: Item, dialect: &dyn Dialect) {
        match item {
            Item::Exchange(ex) => self.exchange(ex, dialect),
            Item::Notification { conn, notification } => tracing::debug!(
                "connection {conn}: notification {} (clients do not script notifications)",
                notification.method
            ),
        }
    }

    fn finish(mut self: Box<Self>, dialect: &dyn Dialect) -> Json {
        let several = self.conns.len() > 1;
        // Steps in the order Kong sent the requests.
        self.steps.sort_by_key(|s| s.request_seq);
        self.rename();
        // Connections numbered 1, 2, … in the order of their first request.
        let mut numbers: IndexSet<u64> = IndexSet::new();
        let steps: Vec<Json> = self
            .steps
            .into_iter()
            .map(|s| {
                let mut step = Map::new();
                if several && dialect.conn_labels() {
                    let (n, _) = numbers.insert_full(s.conn);
                    step.insert("conn".into(), json!(n + 1));
                }
                step.insert("method".into(), json!(s.method));
                step.insert("params".into(), s.params);
                let expect = dialect.client_expect(&s.reply, s.result);
                if !expect.is_null() {
                    step.insert("expect".into(), expect);
                }
                if !s.capture.is_empty() {
                    step.insert("capture".into(), json!(s.capture));
                }
                Json::Object(step)
            })
            .collect();
        let mut spec = Map::new();
        spec.insert("role".into(), json!("client"));
        spec.insert("protocol".into(), json!(dialect.protocol().name()));
        spec.insert("socket".into(), json!(self.socket));
        spec.extend(dialect.client_extra());
        if self.opts.concurrent {
            if several && dialect.protocol() == crate::protocol::Protocol::MsgPack1 {
                spec.insert("concurrent".into(), Json::Bool(true));
            } else {
                tracing::warn!(
                    "--concurrent is ignored: it needs a MsgPack:1 recording spanning several connections"
                );
            }
        }
        spec.insert("try_methods".into(), Json::Array(steps));
        Json::Object(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::error_expectation;
    use serde_json::json;

    #[test]
    fn error_texts_lose_ids() {
        assert_eq!(
            error_expectation(&json!("no plugin instance #0")),
            json!("no plugin instance #")
        );
        assert_eq!(error_expectation(&json!("42")), json!(true));
        assert_eq!(error_expectation(&json!({"a": 1})), json!(true));
    }
}
