//! Server export: the recorded replies become `on_methods` entries.
//!
//! Calls are grouped per method, then per params (exact JSON). When every
//! call of a method got the same reply (volatile fields aside) it is one
//! entry; when there is one params group, its replies in recorded order;
//! otherwise each params group gets its entries with a `match` on its
//! params (and `"exact": true` when that pattern would also match another
//! group's params, since `match` is partial). A group's replies are written
//! as the shortest cycle that reproduces them, and the spec uses the
//! global cycle, so a replay whose calls arrive on other connections (Kong
//! pools them) still gets each reply in the recorded order.
//!
//! Memory: one entry per distinct reply per group and 12 bytes per call.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;
use serde_json::{Map, Value as Json, json};

use super::{Dialect, Exchange, Item, Options, Reply, SinkOut, leaves};
use crate::spec::{Notification, matcher};

/// Builds a server spec from items; see the module docs.
pub struct ServerExport {
    socket: String,
    opts: Options,
    methods: IndexMap<String, IndexMap<String, Group>>,
    on_connect: Option<Vec<Notification>>,
    first_notes: IndexMap<u64, Vec<Notification>>,
    started: HashSet<u64>,
}

struct Group {
    params: Json,
    distinct: IndexMap<String, (Option<Reply>, Vec<Notification>)>,
    /// Per call: its request's `seq` and its reply's index in `distinct`.
    calls: Vec<(u64, u32)>,
}

impl ServerExport {
    /// A builder writing `socket` as the spec's socket.
    pub fn new(socket: String, opts: Options) -> Self {
        ServerExport {
            socket,
            opts,
            methods: IndexMap::new(),
            on_connect: None,
            first_notes: IndexMap::new(),
            started: HashSet::new(),
        }
    }

    fn exchange(&mut self, ex: Exchange, dialect: &dyn Dialect) {
        if ex.reply.is_none() && dialect.one_way(&ex.method) {
            // Nothing to answer (prox's on_disconnect).
            return;
        }
        if self.started.insert(ex.conn)
            && let Some(notes) = self.first_notes.shift_remove(&ex.conn)
            && self.on_connect.is_none()
        {
            self.on_connect = Some(notes);
        }
        let norm = normalize(ex.reply.as_ref(), &ex.notifications, dialect);
        let groups = self.methods.entry(ex.method).or_default();
        let params_key = ex.params.to_string();
        let group = groups.entry(params_key).or_insert_with(|| Group {
            params: ex.params,
            distinct: IndexMap::new(),
            calls: Vec::new(),
        });
        let entry = group.distinct.entry(norm);
        let index = entry.index();
        entry.or_insert((ex.reply, ex.notifications));
        group.calls.push((ex.request_seq, index as u32));
    }

    fn entry(
        &self,
        reply: &(Option<Reply>, Vec<Notification>),
        matcher: Option<(&Json, bool)>,
        dialect: &dyn Dialect,
    ) -> Json {
        let mut e = Map::new();
        if let Some((params, exact)) = matcher {
            e.insert("match".into(), params.clone());
            if exact {
                e.insert("exact".into(), Json::Bool(true));
            }
        }
        dialect.server_reply(reply.0.as_ref(), &mut e);
        if !reply.1.is_empty() {
            let notes = reply.1.iter().map(|n| self.note(n, dialect)).collect();
            e.insert("notify".into(), Json::Array(notes));
        }
        Json::Object(e)
    }

    fn note(&self, n: &Notification, dialect: &dyn Dialect) -> Json {
        if !self.opts.keep_volatile && dialect.volatile_notification(n) {
            let n = Notification {
                method: n.method.clone(),
                params: json!("${pid}"),
            };
            return dialect.notification(&n);
        }
        dialect.notification(n)
    }
}

/// The reply with volatile fields removed, as a comparison key.
fn normalize(reply: Option<&Reply>, notes: &[Notification], dialect: &dyn Dialect) -> String {
    let keys = dialect.volatile_keys();
    let reply = reply.map(|r| {
        let mut result = r.result.clone();
        leaves::strip_keys(&mut result, keys);
        json!([r.error, result])
    });
    let notes: Vec<Json> = notes
        .iter()
        .map(|n| {
            if dialect.volatile_notification(n) {
                json!([n.method])
            } else {
                json!([n.method, n.params])
            }
        })
        .collect();
    json!([reply, notes]).to_string()
}

/// For each group, whether its params as a `match` pattern would also
/// match another group's params. A pattern can only match params that
/// hold all its leaves, so candidates come from an index of leaves (the
/// rarest leaf of the pattern), then `matches` decides: near-linear where
/// comparing every pair would be quadratic in the groups (thousands of
/// events give thousands of Step groups).
fn overlapping(groups: &IndexMap<String, Group>) -> Vec<bool> {
    let leaf_keys = |params: &Json| -> Vec<String> {
        leaves::leaves(params)
            .iter()
            .map(|l| {
                let value = match l.value {
                    Json::Number(n) => format!("n{}", n.as_f64().unwrap_or(f64::NAN)),
                    other => other.to_string(),
                };
                format!("{} {value}", leaves::path_string(&l.path))
            })
            .collect()
    };
    let keys: Vec<Vec<String>> = groups.values().map(|g| leaf_keys(&g.params)).collect();
    let mut index: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, ks) in keys.iter().enumerate() {
        for k in ks {
            index.entry(k.as_str()).or_default().push(i);
        }
    }
    let all: Vec<usize> = (0..groups.len()).collect();
    groups
        .values()
        .enumerate()
        .map(|(i, g)| {
            let candidates = keys[i]
                .iter()
                .filter_map(|k| index.get(k.as_str()))
                .min_by_key(|list| list.len())
                .unwrap_or(&all);
            candidates
                .iter()
                .any(|&j| j != i && matcher::matches(&g.params, &groups[j].params))
        })
        .collect()
}

/// The length of the shortest prefix of `seq` that, repeated, gives `seq`
/// (Knuth–Morris–Pratt failure function).
pub fn period(seq: &[u32]) -> usize {
    if seq.is_empty() {
        return 0;
    }
    let mut fail = vec![0usize; seq.len()];
    let mut k = 0;
    for i in 1..seq.len() {
        while k > 0 && seq[i] != seq[k] {
            k = fail[k - 1];
        }
        if seq[i] == seq[k] {
            k += 1;
        }
        fail[i] = k;
    }
    seq.len() - fail[seq.len() - 1]
}

impl SinkOut for ServerExport {
    fn item(&mut self, item: Item, dialect: &dyn Dialect) {
        match item {
            Item::Exchange(ex) => self.exchange(ex, dialect),
            Item::Notification { conn, notification } => {
                if self.started.contains(&conn) {
                    tracing::warn!(
                        "connection {conn}: notification {} between calls is not reproduced \
                         (only notifications sent before the first call are, as on_connect)",
                        notification.method
                    );
                } else {
                    self.first_notes.entry(conn).or_default().push(notification);
                }
            }
        }
    }

    fn finish(mut self: Box<Self>, dialect: &dyn Dialect) -> Json {
        if self.on_connect.is_none()
            && let Some((_, notes)) = self.first_notes.shift_remove_index(0)
        {
            self.on_connect = Some(notes);
        }
        // Methods and params groups in the order of their first request.
        let first = |g: &Group| g.calls.iter().map(|c| c.0).min().unwrap_or(0);
        for groups in self.methods.values_mut() {
            groups.sort_by_cached_key(|_, g| first(g));
        }
        self.methods
            .sort_by_cached_key(|_, groups| groups.values().map(first).min().unwrap_or(0));
        let mut on_methods = Map::new();
        for (method, groups) in &self.methods {
            let mut all = HashSet::new();
            for g in groups.values() {
                all.extend(g.distinct.keys());
            }
            let mut entries = Vec::new();
            if all.len() <= 1 {
                let g = &groups[0];
                entries.push(self.entry(&g.distinct[0], None, dialect));
            } else {
                let with_match = groups.len() > 1;
                let overlaps = if with_match {
                    overlapping(groups)
                } else {
                    vec![]
                };
                for (i, g) in groups.values().enumerate() {
                    // Replies cycle in the order the requests arrived.
                    let mut calls = g.calls.clone();
                    calls.sort_unstable();
                    let seq: Vec<u32> = calls.into_iter().map(|(_, r)| r).collect();
                    let matcher = with_match.then(|| (&g.params, overlaps[i]));
                    for &index in &seq[..period(&seq)] {
                        entries.push(self.entry(&g.distinct[index as usize], matcher, dialect));
                    }
                }
            }
            on_methods.insert(method.clone(), Json::Array(entries));
        }
        let mut spec = Map::new();
        spec.insert("role".into(), json!("server"));
        spec.insert("protocol".into(), json!(dialect.protocol().name()));
        spec.insert("socket".into(), json!(self.socket));
        spec.insert("cycle".into(), json!("global"));
        if let Some(notes) = &self.on_connect
            && !notes.is_empty()
        {
            let notes = notes.iter().map(|n| self.note(n, dialect)).collect();
            spec.insert("on_connect".into(), Json::Array(notes));
        }
        spec.insert("on_methods".into(), Json::Object(on_methods));
        Json::Object(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::period;

    #[test]
    fn shortest_cycle() {
        assert_eq!(period(&[0, 0, 0]), 1);
        assert_eq!(period(&[0, 1, 0, 1]), 2);
        assert_eq!(period(&[0, 1, 0]), 2);
        assert_eq!(period(&[0, 0, 1]), 3);
        assert_eq!(period(&[]), 0);
    }
}
