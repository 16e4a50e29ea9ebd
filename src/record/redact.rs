//! `--redact` rules: hide secrets in the decoded form of frames.
//!
//! A rule is either
//!
//! * a key name (`Authorization`, or `key:Authorization`): every value
//!   under a map key of that name, compared case-insensitively, anywhere
//!   in the message; or
//! * a path from the whole message (`$[3][0].Config`, `$[3][*].Data`),
//!   with `[n]` indexes, `.key` or `["key"]` keys and `*` for any element.
//!
//! Strings that hold JSON text (StartInstance's `Config`) are searched
//! too, so `--redact api_key` hides a plugin config key. Matched values
//! become `"[redacted]"`. A frame that any rule changed loses its raw bytes
//! in the recording and is marked `"redacted": true`; undecodable bytes
//! cannot be searched and are kept as they are.

use serde_json::Value as Json;

use crate::message::MessageView;

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// One `--redact` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Any value under a key of this name (compared in lower case).
    Key(String),
    /// The value at this path.
    Path(Vec<Seg>),
}

/// One step of a rule's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// An object key.
    Key(String),
    /// An array index.
    Index(usize),
    /// Every element or member.
    Any,
}

impl std::str::FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Rule, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty redaction rule".into());
        }
        if s.starts_with('$') {
            return parse_path(s).map(Rule::Path);
        }
        let key = s.strip_prefix("key:").unwrap_or(s);
        if key.is_empty() {
            return Err(format!("redaction rule `{s}` names no key"));
        }
        Ok(Rule::Key(key.to_lowercase()))
    }
}

fn parse_path(path: &str) -> Result<Vec<Seg>, String> {
    let mut rest = &path[1..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| format!("unclosed `[` in `{path}`"))?;
            let inside = &r[..end];
            out.push(if inside == "*" {
                Seg::Any
            } else if let Ok(i) = inside.parse() {
                Seg::Index(i)
            } else {
                Seg::Key(serde_json::from_str(inside).map_err(|_| {
                    format!("`[{inside}]` in `{path}` is not an index, `*` or a quoted key")
                })?)
            });
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            if key.is_empty() {
                return Err(format!("empty key in `{path}`"));
            }
            out.push(if key == "*" {
                Seg::Any
            } else {
                Seg::Key(key.to_owned())
            });
            rest = &r[end..];
        } else {
            return Err(format!(
                "expected `.` or `[` in `{path}` at `{rest}` (paths look like `$[3][0].Config`)"
            ));
        }
    }
    Ok(out)
}

/// A set of rules.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    rules: Vec<Rule>,
}

impl Redactor {
    /// Rules parsed from their text.
    pub fn new(rules: Vec<Rule>) -> Self {
        Redactor { rules }
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies every rule to a message; true when something changed. The
    /// view's error text is redacted too when a key rule names `error`.
    pub fn apply(&self, view: &mut MessageView) -> bool {
        let mut changed = false;
        for rule in &self.rules {
            changed |= match rule {
                Rule::Key(k) => by_key(&mut view.value, k),
                Rule::Path(p) => by_path(&mut view.value, p),
            };
        }
        changed
    }
}

fn redacted() -> Json {
    Json::String(REDACTED.into())
}

/// Runs `f` on the JSON held in a string, writing the result back when it
/// changed something.
fn inside_string(s: &mut String, f: impl FnOnce(&mut Json) -> bool) -> bool {
    let t = s.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) {
        return inside_base64(s, f);
    }
    let Ok(mut inner) = serde_json::from_str::<Json>(s) else {
        return false;
    };
    if f(&mut inner) {
        *s = inner.to_string();
        true
    } else {
        false
    }
}

/// The same for JSON text in a base64 string: protobuf `bytes` in JSON
/// form, such as ProtoBuf:1's `cmdStartInstance.config`.
fn inside_base64(s: &mut String, f: impl FnOnce(&mut Json) -> bool) -> bool {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    if s.len() < 4 {
        return false;
    }
    let Some(mut text) = engine
        .decode(s.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return false;
    };
    let t = text.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) {
        return false;
    }
    if inside_string(&mut text, f) {
        *s = engine.encode(text);
        true
    } else {
        false
    }
}

fn by_key(v: &mut Json, key: &str) -> bool {
    match v {
        Json::Object(map) => {
            let mut changed = false;
            // The lossless mapping writes odd maps as {"$map": [[k, v], ...]}.
            if map.len() == 1
                && let Some(Json::Array(pairs)) = map.get_mut("$map")
            {
                for pair in pairs.iter_mut() {
                    if let Json::Array(kv) = pair
                        && kv.len() == 2
                    {
                        if kv[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(key)) {
                            if kv[1] != redacted() {
                                kv[1] = redacted();
                                changed = true;
                            }
                        } else {
                            changed |= by_key(&mut kv[1], key);
                        }
                    }
                }
                return changed;
            }
            for (k, val) in map.iter_mut() {
                if k.eq_ignore_ascii_case(key) {
                    if *val != redacted() {
                        *val = redacted();
                        changed = true;
                    }
                } else {
                    changed |= by_key(val, key);
                }
            }
            changed
        }
        Json::Array(items) => items
            .iter_mut()
            .fold(false, |acc, item| by_key(item, key) | acc),
        Json::String(s) => inside_string(s, |inner| by_key(inner, key)),
        _ => false,
    }
}

fn by_path(v: &mut Json, path: &[Seg]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        if *v == redacted() {
            return false;
        }
        *v = redacted();
        return true;
    };
    match (first, v) {
        (_, Json::String(s)) => inside_string(s, |inner| by_path(inner, path)),
        (Seg::Key(k), Json::Object(map)) => map.get_mut(k).is_some_and(|x| by_path(x, rest)),
        (Seg::Index(i), Json::Array(items)) => items.get_mut(*i).is_some_and(|x| by_path(x, rest)),
        (Seg::Any, Json::Array(items)) => items
            .iter_mut()
            .fold(false, |acc, x| by_path(x, rest) | acc),
        (Seg::Any, Json::Object(map)) => map
            .values_mut()
            .fold(false, |acc, x| by_path(x, rest) | acc),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Kind;
    use serde_json::json;

    fn view(value: Json) -> MessageView {
        MessageView {
            kind: Kind::Request,
            id: Some(1),
            method: None,
            problem: None,
            error: None,
            value,
        }
    }

    fn apply(rules: &[&str], value: Json) -> (bool, Json) {
        let r = Redactor::new(rules.iter().map(|r| r.parse().unwrap()).collect());
        let mut v = view(value);
        let changed = r.apply(&mut v);
        (changed, v.value)
    }

    #[test]
    fn keys_anywhere_and_inside_json_strings() {
        let msg = json!([0, 1, "plugin.StartInstance",
            [{"Name": "p", "Config": "{\"api_key\":\"s3cret\",\"greeting\":\"hi\"}",
              "Headers": {"authorization": ["Bearer x"], "host": ["a"]}}]]);
        let (changed, out) = apply(&["Authorization", "key:API_KEY"], msg);
        assert!(changed);
        assert_eq!(out[3][0]["Headers"]["authorization"], REDACTED);
        assert_eq!(out[3][0]["Headers"]["host"], json!(["a"]));
        let config: Json = serde_json::from_str(out[3][0]["Config"].as_str().unwrap()).unwrap();
        assert_eq!(config, json!({"api_key": REDACTED, "greeting": "hi"}));
    }

    #[test]
    fn paths_with_wildcards() {
        let msg = json!([1, 3, null, {"Data": {"Method": "m", "Args": ["x-secret", "v"]}}]);
        let (changed, out) = apply(&["$[3].Data.Args[1]"], msg.clone());
        assert!(changed);
        assert_eq!(out[3]["Data"]["Args"], json!(["x-secret", REDACTED]));
        let (changed, out) = apply(&["$[*].Nope"], msg.clone());
        assert!(!changed);
        assert_eq!(out, msg);
        let (_, out) = apply(&["$[3].*"], msg);
        assert_eq!(out[3]["Data"], REDACTED);
    }

    #[test]
    fn odd_maps_and_bad_rules() {
        let msg = json!({"$map": [[1, "a"], ["Token", "t"]]});
        let (changed, out) = apply(&["token"], msg);
        assert!(changed);
        assert_eq!(out, json!({"$map": [[1, "a"], ["Token", REDACTED]]}));
        for bad in ["", "$x", "$[1", "$.", "key:", "$[abc]"] {
            assert!(bad.parse::<Rule>().is_err(), "{bad:?}");
        }
    }
}
