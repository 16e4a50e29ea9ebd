//! Choosing the server's reply to a request: `match` filters the entries
//! listed for the method, then the survivors are cycled through.
//!
//! Cycling is counted per *candidate set* (the entries that matched), so an
//! exported spec where Step replies depend on params replays each group in
//! order. Counters live per connection or globally ([`Cycle`]).
//!
//! Entries with a condition (`calls`, `probability`; see
//! [`crate::spec::faults`]) are tried first, in spec order; the cycle runs
//! over the matching entries without one. Calls of a method are numbered
//! from 1, per connection or globally like the cycle.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rmpv::Value as Mp;
use serde_json::Value as Json;

use super::faults;
use crate::spec::template::{self, Vars};
use crate::spec::{Cycle, Entry, Notification, ServerSpec, matcher};
use crate::value_json;

/// An entry converted to msgpack once, at start-up.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) entry: Entry,
    pub(crate) error: Mp,
    pub(crate) result: Mp,
    pub(crate) notify: Vec<(String, Mp)>,
    hits: AtomicU64,
}

/// What the server should do with a request.
#[derive(Debug)]
pub(crate) enum Choice<'a> {
    /// Reply as this entry says.
    Entry {
        index: usize,
        prepared: &'a Prepared,
    },
    /// The spec has no entry for the method.
    NoEntries,
    /// Entries exist but none matched the params.
    NoMatch,
    /// Matching entries exist, but all have conditions that do not hold
    /// for this call (its number is given).
    NotThisCall(u64),
}

type CycleKey = (String, Vec<usize>);

/// Per-connection cycling state.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    counts: HashMap<CycleKey, usize>,
    calls: HashMap<String, u64>,
}

/// The server's replies, shared by all connections.
#[derive(Debug)]
pub(crate) struct Replies {
    methods: HashMap<String, Vec<Prepared>>,
    on_connect: Vec<(String, Mp)>,
    cycle: Cycle,
    seed: u64,
    global: Mutex<HashMap<CycleKey, usize>>,
    global_calls: Mutex<HashMap<String, u64>>,
}

impl Replies {
    /// Prepares a spec's replies; `${pid}` and other built-ins are filled in.
    pub(crate) fn new(spec: &ServerSpec) -> Result<Replies, String> {
        let vars = template::builtins();
        let mut methods = HashMap::new();
        for (method, entries) in &spec.on_methods {
            let prepared = entries
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    prepare(e, &vars).map_err(|m| format!("on_methods[{method:?}][{i}]: {m}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            methods.insert(method.clone(), prepared);
        }
        let on_connect = spec
            .on_connect
            .iter()
            .map(|n| notification(n, &vars))
            .collect::<Result<_, _>>()?;
        Ok(Replies {
            methods,
            on_connect,
            cycle: spec.cycle,
            seed: spec.seed,
            global: Mutex::new(HashMap::new()),
            global_calls: Mutex::new(HashMap::new()),
        })
    }

    /// Notifications to send when a connection opens.
    pub(crate) fn on_connect(&self) -> &[(String, Mp)] {
        &self.on_connect
    }

    /// Picks the reply for `method` called with `params`.
    pub(crate) fn choose(&self, cursor: &mut Cursor, method: &str, params: &Json) -> Choice<'_> {
        let Some(entries) = self.methods.get(method) else {
            return Choice::NoEntries;
        };
        let call = match self.cycle {
            Cycle::PerConnection => count_call(&mut cursor.calls, method),
            Cycle::Global => {
                let mut calls = self.global_calls.lock().unwrap_or_else(|e| e.into_inner());
                count_call(&mut calls, method)
            }
        };
        let matching: Vec<usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.entry.matcher.as_ref().is_none_or(|m| {
                    if p.entry.exact {
                        matcher::equals(m, params)
                    } else {
                        matcher::matches(m, params)
                    }
                })
            })
            .map(|(i, _)| i)
            .collect();
        if matching.is_empty() {
            return Choice::NoMatch;
        }
        for &index in &matching {
            let when = &entries[index].entry.when;
            if !when.is_always() && faults::applies(when, self.seed, method, index, call) {
                let prepared = &entries[index];
                prepared.hits.fetch_add(1, Ordering::Relaxed);
                return Choice::Entry { index, prepared };
            }
        }
        let candidates: Vec<usize> = matching
            .into_iter()
            .filter(|&i| entries[i].entry.when.is_always())
            .collect();
        if candidates.is_empty() {
            return Choice::NotThisCall(call);
        }
        let key = (method.to_owned(), candidates.clone());
        let turn = match self.cycle {
            Cycle::PerConnection => bump(&mut cursor.counts, key),
            Cycle::Global => {
                let mut global = self.global.lock().unwrap_or_else(|e| e.into_inner());
                bump(&mut global, key)
            }
        };
        let index = candidates[turn % candidates.len()];
        let prepared = &entries[index];
        prepared.hits.fetch_add(1, Ordering::Relaxed);
        Choice::Entry { index, prepared }
    }

    /// The entries listed for `method`.
    pub(crate) fn entries(&self, method: &str) -> Option<&[Prepared]> {
        self.methods.get(method).map(Vec::as_slice)
    }

    /// The methods the spec has entries for.
    pub(crate) fn method_names(&self) -> impl Iterator<Item = &str> {
        self.methods.keys().map(String::as_str)
    }

    /// Entries no request has used yet, as `(method, index)`.
    pub(crate) fn unused(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = self
            .methods
            .iter()
            .flat_map(|(m, entries)| {
                entries
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.hits.load(Ordering::Relaxed) == 0)
                    .map(move |(i, _)| (m.clone(), i))
            })
            .collect();
        out.sort();
        out
    }
}

fn count_call(calls: &mut HashMap<String, u64>, method: &str) -> u64 {
    let slot = calls.entry(method.to_owned()).or_insert(0);
    *slot += 1;
    *slot
}

fn bump(counts: &mut HashMap<CycleKey, usize>, key: CycleKey) -> usize {
    let slot = counts.entry(key).or_insert(0);
    let turn = *slot;
    *slot += 1;
    turn
}

fn prepare(entry: &Entry, vars: &Vars) -> Result<Prepared, String> {
    Ok(Prepared {
        error: to_mp(&entry.error, vars)?,
        result: to_mp(&entry.result, vars)?,
        notify: entry
            .notify
            .iter()
            .map(|n| notification(n, vars))
            .collect::<Result<_, _>>()?,
        entry: entry.clone(),
        hits: AtomicU64::new(0),
    })
}

fn notification(n: &Notification, vars: &Vars) -> Result<(String, Mp), String> {
    Ok((n.method.clone(), to_mp(&n.params, vars)?))
}

fn to_mp(value: &Json, vars: &Vars) -> Result<Mp, String> {
    let filled = template::substitute(value, vars)?;
    value_json::from_json(&filled).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn replies(text: &str) -> Replies {
        let spec = spec::load_str(text, "t").unwrap();
        Replies::new(&spec.server).unwrap()
    }

    fn pick(r: &Replies, c: &mut Cursor, m: &str, params: Json) -> Option<usize> {
        match r.choose(c, m, &params) {
            Choice::Entry { index, .. } => Some(index),
            _ => None,
        }
    }

    #[test]
    fn cycles_within_matching_entries() {
        let r = replies(
            r#"{"on_methods": {"plugin.Step": [
                {"match": [{"Data": "a"}], "result": 1},
                {"result": 2},
                {"match": [{"Data": "a"}], "result": 3}
            ]}}"#,
        );
        let mut c = Cursor::default();
        let a = serde_json::json!([{"EventId": 0, "Data": "a"}]);
        let b = serde_json::json!([{"EventId": 0, "Data": "b"}]);
        let seq: Vec<_> = [&a, &a, &b, &a, &b]
            .iter()
            .map(|p| pick(&r, &mut c, "plugin.Step", (*p).clone()))
            .collect();
        assert_eq!(seq, [Some(0), Some(1), Some(1), Some(2), Some(1)]);
        assert!(matches!(
            r.choose(&mut c, "plugin.Nope", &a),
            Choice::NoEntries
        ));
        assert_eq!(r.unused(), Vec::<(String, usize)>::new());
    }

    #[test]
    fn global_cycle_is_shared() {
        let r =
            replies(r#"{"cycle": "global", "on_methods": {"m": [{"result": 1}, {"result": 2}]}}"#);
        let (mut c1, mut c2) = (Cursor::default(), Cursor::default());
        assert_eq!(pick(&r, &mut c1, "m", Json::Null), Some(0));
        assert_eq!(pick(&r, &mut c2, "m", Json::Null), Some(1));
        let r = replies(
            r#"{"on_methods": {"m": [{"result": 1}, {"result": 2}], "n": [{"match": 5}]}}"#,
        );
        let (mut c1, mut c2) = (Cursor::default(), Cursor::default());
        assert_eq!(pick(&r, &mut c1, "m", Json::Null), Some(0));
        assert_eq!(pick(&r, &mut c2, "m", Json::Null), Some(0));
        assert!(matches!(
            r.choose(&mut c1, "n", &Json::Null),
            Choice::NoMatch
        ));
        assert_eq!(r.unused(), [("m".to_string(), 1), ("n".to_string(), 0)]);
    }
}
