//! Finding values the server generated that Kong later sent back.
//!
//! Every integer or non-empty string in a reply that is not an echo of the
//! call's own params is a *producer* (step, path). When a later request
//! carries the same value, the finder picks the producer it most likely
//! came from, by key name, in this order:
//!
//! 1. a producer under the same key (`EventId` ← `EventId`);
//! 2. a producer whose key ends the consumer's, or the other way round
//!    (`InstanceId` ← `Id`);
//! 3. for a value with no key (an array element, like `CloseInstance`'s
//!    `[0]`), a producer sharing a word with the method
//!    (`CloseInstance` ← `StartInstance.Id`).
//!
//! Ties go to the latest producer. Values alone are not enough: small
//! integers coincide (instance 0 and event 0), which is why keys decide.
//! Only the latest producer per value and site (method + path) is kept,
//! so memory follows the distinct generated values, not the calls.

use std::collections::{HashMap, HashSet};

use serde_json::Value as Json;

use super::leaves::{self, words};
use crate::spec::template::Segment;

/// Where a generated value came from.
#[derive(Debug, Clone)]
pub struct Producer {
    /// Index of the step whose reply holds it.
    pub step: usize,
    /// Path inside that reply's result.
    pub path: Vec<Segment>,
    /// `seq` of the reply's line: only later requests can send it back.
    pub seq: u64,
    key: Option<String>,
    words: Vec<String>,
    /// The capture name, once a request used the value.
    pub capture: Option<String>,
}

/// The producers seen so far; see the module docs.
#[derive(Debug, Default)]
pub struct Finder {
    producers: Vec<Producer>,
    by_value: HashMap<String, Vec<usize>>,
    by_site: HashMap<(String, String), usize>,
    names: HashSet<String>,
    /// Per base name, the next number to try.
    next: HashMap<String, usize>,
}

/// The identity of a value that can be a generated id.
pub fn value_key(v: &Json) -> Option<String> {
    match v {
        Json::Number(n) if n.is_i64() || n.is_u64() => Some(format!("i:{n}")),
        Json::String(s) if !s.is_empty() => Some(format!("s:{s}")),
        _ => None,
    }
}

/// True when two keys can name the same thing (`InstanceId` and `Id`).
pub fn compatible(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
            a.ends_with(&b) || b.ends_with(&a)
        }
        _ => true,
    }
}

fn method_words(method: &str) -> Vec<String> {
    words(method.rsplit('.').next().unwrap_or(method))
}

impl Finder {
    /// Registers a reply's value at `path` of step `step`'s result.
    pub fn produce(&mut self, step: usize, seq: u64, method: &str, path: &[Segment], value: &Json) {
        let Some(vk) = value_key(value) else {
            return;
        };
        let site = (
            vk.clone(),
            format!("{method} {}", leaves::path_string(path)),
        );
        if let Some(&i) = self.by_site.get(&site)
            && self.producers[i].capture.is_none()
        {
            self.producers[i].step = step;
            self.producers[i].seq = seq;
            // Latest first among ties: move it to the end of the list.
            let list = self.by_value.entry(vk).or_default();
            list.retain(|&j| j != i);
            list.push(i);
            return;
        }
        let key = match path.last() {
            Some(Segment::Key(k)) => Some(k.clone()),
            _ => None,
        };
        let mut w = method_words(method);
        if let Some(k) = &key {
            w.extend(words(k));
        }
        let i = self.producers.len();
        self.producers.push(Producer {
            step,
            path: path.to_vec(),
            seq,
            key,
            words: w,
            capture: None,
        });
        self.by_site.insert(site, i);
        self.by_value.entry(vk).or_default().push(i);
    }

    /// The producer a request's value (under `key`, in a call of `method`
    /// whose request line has `seq`) most likely came from.
    pub fn consume(
        &self,
        seq: u64,
        method: &str,
        key: Option<&str>,
        value: &Json,
    ) -> Option<usize> {
        let list: Vec<usize> = self
            .by_value
            .get(&value_key(value)?)?
            .iter()
            .copied()
            .filter(|&i| self.producers[i].seq < seq)
            .collect();
        let latest = |pred: &dyn Fn(&Producer) -> bool| {
            list.iter()
                .rev()
                .copied()
                .find(|&i| pred(&self.producers[i]))
        };
        match key {
            Some(k) => latest(&|p| {
                p.key
                    .as_deref()
                    .is_some_and(|pk| pk.eq_ignore_ascii_case(k))
            })
            .or_else(|| latest(&|p| p.key.is_some() && compatible(p.key.as_deref(), Some(k)))),
            None => {
                let mine = method_words(method);
                let score = |p: &Producer| p.words.iter().filter(|w| mine.contains(w)).count();
                let best = list.iter().map(|&i| score(&self.producers[i])).max()?;
                if best == 0 {
                    return None;
                }
                latest(&|p| score(p) == best)
            }
        }
    }

    /// The producer `i`, with a capture name given on first use. Returns
    /// the name and whether it is new.
    pub fn capture(&mut self, i: usize) -> (String, bool) {
        if let Some(name) = &self.producers[i].capture {
            return (name.clone(), false);
        }
        let base = self.producers[i]
            .key
            .as_deref()
            .map(leaves::snake)
            .unwrap_or_else(|| "value".to_owned());
        let next = self.next.entry(base.clone()).or_insert(1);
        let mut name = if *next == 1 {
            base.clone()
        } else {
            format!("{base}_{next}")
        };
        while self.names.contains(&name) || crate::spec::template::BUILTINS.contains(&name.as_str())
        {
            *next += 1;
            name = format!("{base}_{next}");
        }
        *next += 1;
        self.names.insert(name.clone());
        self.producers[i].capture = Some(name.clone());
        (name, true)
    }

    /// Producer `i`.
    pub fn producer(&self, i: usize) -> &Producer {
        &self.producers[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn k(s: &str) -> Vec<Segment> {
        vec![Segment::Key(s.into())]
    }

    #[test]
    fn keys_decide_between_coinciding_values() {
        let mut f = Finder::default();
        f.produce(1, 10, "plugin.StartInstance", &k("Id"), &json!(0));
        f.produce(2, 20, "plugin.HandleEvent", &k("EventId"), &json!(0));
        let step = |i: Option<usize>| i.map(|i| f.producer(i).step);
        assert_eq!(
            step(f.consume(30, "plugin.Step", Some("EventId"), &json!(0))),
            Some(2)
        );
        assert_eq!(
            step(f.consume(30, "plugin.HandleEvent", Some("InstanceId"), &json!(0))),
            Some(1)
        );
        assert_eq!(
            step(f.consume(30, "plugin.CloseInstance", None, &json!(0))),
            Some(1)
        );
        assert_eq!(f.consume(30, "plugin.Step", Some("Data"), &json!(0)), None);
        assert_eq!(
            f.consume(30, "plugin.Step", Some("EventId"), &json!(1)),
            None
        );
        assert_eq!(f.consume(30, "plugin.Other", None, &json!(0)), None);
        // A request sent before a reply arrived cannot carry its value.
        assert_eq!(
            step(f.consume(15, "plugin.Step", Some("EventId"), &json!(0))),
            Some(1)
        );
        assert_eq!(
            step(f.consume(5, "plugin.Step", Some("EventId"), &json!(0))),
            None
        );
    }

    #[test]
    fn names_are_unique() {
        let mut f = Finder::default();
        f.produce(1, 1, "m", &k("EventId"), &json!(1));
        f.produce(2, 2, "m", &k("EventId"), &json!(2));
        f.produce(3, 3, "m", &k("Pid"), &json!(3));
        assert_eq!(f.capture(0), ("event_id".to_owned(), true));
        assert_eq!(f.capture(0), ("event_id".to_owned(), false));
        assert_eq!(f.capture(1), ("event_id_2".to_owned(), true));
        assert_eq!(f.capture(2).0, "pid_2");
    }
}
