//! Canned PDK answers from a spec's `kong.pdk` table.
//!
//! Per PDK method, a list of entries; the first entry whose `match`
//! pattern matches the call's `Args` answers it. An entry gives answers
//! for its successive calls; once they run out, the last one repeats.

use indexmap::IndexMap;
use serde_json::Value as Json;

use crate::spec::kong::{CannedEntry, CannedList};
use crate::spec::matcher;

/// The canned answers of one run, with how far each entry has got.
#[derive(Debug, Clone, Default)]
pub struct Canned {
    methods: IndexMap<String, Vec<(CannedEntry, usize)>>,
}

impl Canned {
    /// The answers a spec gives.
    pub fn new(spec: &IndexMap<String, CannedList>) -> Canned {
        Canned {
            methods: spec
                .iter()
                .map(|(m, list)| (m.clone(), list.0.iter().cloned().map(|e| (e, 0)).collect()))
                .collect(),
        }
    }

    /// The canned answer for a call, if one applies: `Some(Json::Null)`
    /// is a canned nil.
    pub fn take(&mut self, method: &str, args: &Json) -> Option<Json> {
        let entries = self.methods.get_mut(method)?;
        let (entry, used) = entries.iter_mut().find(|(e, _)| {
            e.matcher
                .as_ref()
                .is_none_or(|pattern| matcher::matches(pattern, args))
        })?;
        let answer = entry
            .answers
            .get(*used)
            .or_else(|| entry.answers.last())
            .cloned();
        *used += 1;
        answer
    }

    /// Canned entries that answered nothing, as `(method, index)`.
    pub fn unused(&self) -> Vec<(String, usize)> {
        self.methods
            .iter()
            .flat_map(|(m, entries)| {
                entries
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, used))| *used == 0)
                    .map(move |(i, _)| (m.clone(), i))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn match_then_sequence_then_repeat() {
        let spec: IndexMap<String, CannedList> = serde_json::from_value(json!({
            "kong.request.get_header": [
                {"match": ["x-key"], "answers": ["k1", null]},
                {"answer": "other"}
            ],
            "kong.node.get_id": {"answer": "abc"}
        }))
        .unwrap();
        let mut c = Canned::new(&spec);
        let key = json!(["x-key"]);
        assert_eq!(c.take("kong.request.get_header", &key), Some(json!("k1")));
        assert_eq!(c.take("kong.request.get_header", &key), Some(Json::Null));
        assert_eq!(c.take("kong.request.get_header", &key), Some(Json::Null));
        assert_eq!(
            c.take("kong.request.get_header", &json!(["host"])),
            Some(json!("other"))
        );
        assert_eq!(c.take("kong.request.get_host", &json!([])), None);
        assert_eq!(c.unused(), [("kong.node.get_id".to_string(), 0)]);
    }
}
