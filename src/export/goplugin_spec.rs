//! go-plugin specs from the items of [`super::goplugin`]: a mock plugin
//! (`--as server`) or a stand-in host's calls (`--as client`), in the
//! format of [`crate::goplugin::spec`].
//!
//! * Server: each method the plugin served gets its replies as entries;
//!   when a method got different replies for different requests, entries
//!   `match` their request (the mock decodes requests as the spec writes
//!   them: JSON for go-plugin's own services, wire-type fields otherwise,
//!   which match whole since their arrays must have the same length); a
//!   request's replies are written as the shortest cycle that reproduces
//!   them (the mock cycles per candidate set). Broker services the plugin
//!   announced become `brokered`, `GRPCStdio` lines `stdio`.
//! * Client: the host's calls in the order it made them, on the broker
//!   connection they used (`broker`), with `expect` from the recorded
//!   status and responses; `reflection` off, so responses decode the same
//!   way against the real plugin and against a mock.
//!
//! Left out, with a warning: calls cut short (no status), callbacks the
//! plugin made to the host, and go-plugin's own calls the roles make by
//! themselves (health, broker and stdio streams, Shutdown). The magic
//! cookie is not in recordings (it is an environment variable the host
//! sets); add it to `handshake` when the plugin checks it.

use indexmap::IndexMap;
use serde_json::{Map, Value as Json, json};

use super::goplugin::spec_body;
use super::server::period;
use super::{Dialect, Exchange, Item, Reply, SinkOut, Target};
use crate::record::Header;
use crate::spec::Notification;

/// Calls the go-plugin roles make or answer by themselves.
const OWN: &[&str] = &[
    "grpc.health.v1.Health/Check",
    "plugin.GRPCBroker/StartStream",
    "plugin.GRPCStdio/StreamStdio",
    "plugin.GRPCController/Shutdown",
];

/// The builder for `target`.
pub(crate) fn sink(target: Target, header: &Header) -> Box<dyn SinkOut> {
    Box::new(GoExport {
        target,
        command: header.command.clone(),
        app_version: None,
        brokered: Vec::new(),
        stdio: Vec::new(),
        methods: IndexMap::new(),
        calls: Vec::new(),
    })
}

struct Group {
    pattern: Json,
    distinct: IndexMap<String, Reply>,
    seq: Vec<u32>,
}

struct GoExport {
    target: Target,
    command: Option<String>,
    app_version: Option<i64>,
    brokered: Vec<u64>,
    stdio: Vec<Json>,
    methods: IndexMap<String, IndexMap<String, Group>>,
    /// (request's `seq`, call): written in the order the host made them.
    calls: Vec<(u64, Json)>,
}

impl GoExport {
    fn note(&mut self, n: Notification) {
        let p = &n.params;
        match n.method.as_str() {
            "go-plugin.handshake" => self.app_version = p["app_version"].as_i64(),
            "go-plugin.broker" if p["announcer"] == "plugin" => {
                if let Some(id) = p["service_id"].as_u64()
                    && !self.brokered.contains(&id)
                {
                    self.brokered.push(id);
                }
            }
            "go-plugin.stdio" => self.stdio.push(p.clone()),
            _ => {}
        }
    }

    fn exchange(&mut self, ex: Exchange, dialect: &dyn Dialect) {
        if OWN.contains(&ex.method.as_str()) {
            return;
        }
        if ex.params["caller"] == "plugin" {
            tracing::warn!(
                "connection {}: {} is a callback the plugin made to the host; left out",
                ex.conn,
                ex.method
            );
            return;
        }
        let Some(reply) = ex.reply else {
            tracing::warn!(
                "connection {}: {} was cut short (no status); left out",
                ex.conn,
                ex.method
            );
            return;
        };
        let requests = ex.params["requests"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        match self.target {
            Target::Client => {
                let mut call = Map::new();
                call.insert("method".into(), json!(ex.method));
                if let Some(id) = ex.params["broker"].as_u64() {
                    call.insert("broker".into(), json!(id));
                }
                match requests.as_slice() {
                    [] => {}
                    [one] => {
                        let (suffix, value) = spec_body(one);
                        call.insert(format!("request{suffix}"), value);
                    }
                    many => {
                        let (key, list) = lists(many);
                        call.insert(format!("request{key}"), list);
                    }
                }
                let expect = dialect.client_expect(&reply, None);
                if expect.as_object().is_some_and(|e| !e.is_empty()) {
                    call.insert("expect".into(), expect);
                }
                self.calls.push((ex.request_seq, Json::Object(call)));
            }
            Target::Server => {
                let pattern = requests.first().map(decoded).unwrap_or(Json::Null);
                let groups = self.methods.entry(ex.method).or_default();
                let group = groups.entry(pattern.to_string()).or_insert_with(|| Group {
                    pattern,
                    distinct: IndexMap::new(),
                    seq: Vec::new(),
                });
                let key = json!([reply.error, reply.result]).to_string();
                let entry = group.distinct.entry(key);
                let index = entry.index();
                entry.or_insert(reply);
                group.seq.push(index as u32);
            }
        }
    }

    fn handshake(&self, client: bool) -> Json {
        let versions = json!([self.app_version.unwrap_or(1)]);
        if client {
            json!({"magic_cookie_key": "", "magic_cookie_value": "", "app_versions": versions})
        } else {
            json!({"app_versions": versions})
        }
    }

    fn server(&self, dialect: &dyn Dialect) -> Json {
        let mut services: IndexMap<String, Map<String, Json>> = IndexMap::new();
        for (method, groups) in &self.methods {
            let mut all = std::collections::HashSet::new();
            for g in groups.values() {
                all.extend(g.distinct.keys());
            }
            let mut entries = Vec::new();
            let entry = |reply: &Reply, pattern: Option<&Json>| {
                let mut e = Map::new();
                if let Some(p) = pattern {
                    e.insert("match".into(), p.clone());
                }
                dialect.server_reply(Some(reply), &mut e);
                Json::Object(e)
            };
            if all.len() <= 1 {
                entries.push(entry(&groups[0].distinct[0], None));
            } else {
                let with_match = groups.len() > 1;
                for g in groups.values() {
                    for &i in &g.seq[..period(&g.seq)] {
                        entries.push(entry(
                            &g.distinct[i as usize],
                            with_match.then_some(&g.pattern),
                        ));
                    }
                }
            }
            let (svc, m) = method.split_once('/').unwrap_or((method.as_str(), ""));
            services
                .entry(svc.to_owned())
                .or_default()
                .insert(m.to_owned(), Json::Array(entries));
        }
        let mut spec = Map::new();
        spec.insert("protocol".into(), json!("go-plugin"));
        spec.insert("role".into(), json!("server"));
        spec.insert("handshake".into(), self.handshake(false));
        if !self.brokered.is_empty() {
            spec.insert("brokered".into(), json!(self.brokered));
        }
        if !self.stdio.is_empty() {
            spec.insert("stdio".into(), json!(self.stdio));
        }
        spec.insert(
            "services".into(),
            Json::Object(
                services
                    .into_iter()
                    .map(|(k, v)| (k, Json::Object(v)))
                    .collect(),
            ),
        );
        Json::Object(spec)
    }

    fn client(&self) -> Json {
        let mut spec = Map::new();
        spec.insert("protocol".into(), json!("go-plugin"));
        spec.insert("role".into(), json!("client"));
        spec.insert("handshake".into(), self.handshake(true));
        if let Some(c) = &self.command {
            spec.insert("start_cmd".into(), json!(c));
        }
        spec.insert("reflection".into(), json!(false));
        let mut calls = self.calls.clone();
        calls.sort_by_key(|(seq, _)| *seq);
        spec.insert(
            "calls".into(),
            Json::Array(calls.into_iter().map(|(_, c)| c).collect()),
        );
        Json::Object(spec)
    }
}

/// Several bodies as `s` (JSON) or `s_raw`.
fn lists(bodies: &[Json]) -> (&'static str, Json) {
    if bodies.iter().all(|b| b.get("json").is_some()) {
        ("s", bodies.iter().map(|b| b["json"].clone()).collect())
    } else {
        ("s_raw", bodies.iter().map(decoded).collect())
    }
}

/// A body as the roles decode it (JSON, else fields).
fn decoded(b: &Json) -> Json {
    b.get("json")
        .or(b.get("raw"))
        .cloned()
        .unwrap_or_else(|| b.get("hex").cloned().unwrap_or(Json::Null))
}

impl SinkOut for GoExport {
    fn item(&mut self, item: Item, dialect: &dyn Dialect) {
        match item {
            Item::Exchange(ex) => self.exchange(ex, dialect),
            Item::Notification { notification, .. } => self.note(notification),
        }
    }

    fn finish(self: Box<Self>, dialect: &dyn Dialect) -> Json {
        match self.target {
            Target::Server => self.server(dialect),
            Target::Client => self.client(),
        }
    }
}
