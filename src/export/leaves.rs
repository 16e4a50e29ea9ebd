//! Walking JSON values leaf by leaf: paths, leaf keys, volatile fields,
//! and the word tokens the capture finder compares.

use serde_json::Value as Json;

use crate::spec::matcher;
use crate::spec::template::Segment;

/// A scalar inside a value, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf<'a> {
    /// Path from the root.
    pub path: Vec<Segment>,
    /// The value.
    pub value: &'a Json,
}

impl Leaf<'_> {
    /// The object key the leaf sits under (`None` for an array element).
    pub fn key(&self) -> Option<&str> {
        match self.path.last() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }
}

/// Every scalar leaf of `value` (tagged values of the lossless mapping,
/// like `{"$bin": ...}`, count as one leaf), in document order.
pub fn leaves(value: &Json) -> Vec<Leaf<'_>> {
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn walk<'a>(value: &'a Json, path: &mut Vec<Segment>, out: &mut Vec<Leaf<'a>>) {
    match value {
        Json::Object(map) if !is_tag(value) => {
            for (k, v) in map {
                path.push(Segment::Key(k.clone()));
                walk(v, path, out);
                path.pop();
            }
        }
        Json::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(Segment::Index(i));
                walk(v, path, out);
                path.pop();
            }
        }
        _ => out.push(Leaf {
            path: path.clone(),
            value,
        }),
    }
}

fn is_tag(v: &Json) -> bool {
    v.as_object()
        .is_some_and(|o| o.len() == 1 && o.keys().all(|k| k.starts_with('$')))
}

/// A path as captures write it: `Id`, `Data.Args[0]`, `$` for the root.
pub fn path_string(path: &[Segment]) -> String {
    let mut s = String::from("$");
    for seg in path {
        match seg {
            Segment::Key(k) => matcher::push_key(&mut s, k),
            Segment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    match s.strip_prefix("$.") {
        Some(rest) => rest.to_owned(),
        None => s,
    }
}

/// The value at `path`, mutably.
pub fn lookup_mut<'a>(value: &'a mut Json, path: &[Segment]) -> Option<&'a mut Json> {
    path.iter().try_fold(value, |v, seg| match seg {
        Segment::Key(k) => v.get_mut(k.as_str()),
        Segment::Index(i) => v.get_mut(*i),
    })
}

/// Removes what is at `path` from an expectation pattern. Patterns match
/// objects partially but arrays exactly, so a path through an array drops
/// the array (at its nearest object key). Returns false when nothing of
/// the pattern is left to expect (the path reaches the root).
pub fn drop_path(pattern: &mut Json, path: &[Segment]) -> bool {
    // The last object key on the path that has only object keys before it.
    let cut = path
        .iter()
        .position(|s| matches!(s, Segment::Index(_)))
        .unwrap_or(path.len());
    if cut == 0 {
        return false;
    }
    let (parent, last) = (&path[..cut - 1], &path[cut - 1]);
    if let (Some(Json::Object(map)), Segment::Key(k)) = (lookup_mut(pattern, parent), last) {
        map.shift_remove(k);
    }
    true
}

/// Removes every object key named in `keys` (case-insensitively), at any
/// depth.
pub fn strip_keys(value: &mut Json, keys: &[&str]) {
    match value {
        Json::Object(map) if !is_tag_map(map) => {
            map.retain(|k, _| !keys.iter().any(|v| v.eq_ignore_ascii_case(k)));
            map.values_mut().for_each(|v| strip_keys(v, keys));
        }
        Json::Array(items) => items.iter_mut().for_each(|v| strip_keys(v, keys)),
        _ => {}
    }
}

fn is_tag_map(map: &serde_json::Map<String, Json>) -> bool {
    map.len() == 1 && map.keys().all(|k| k.starts_with('$'))
}

/// Lower-case words of a camelCase, snake_case or dotted name
/// (`plugin.StartInstance` → `plugin`, `start`, `instance`).
pub fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `EventId` → `event_id`: a name for a capture.
pub fn snake(name: &str) -> String {
    let w = words(name);
    if w.is_empty() {
        "value".to_owned()
    } else {
        w.join("_")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn leaves_and_paths() {
        let v = json!({"Id": 3, "Data": {"Args": ["host", {"$bin": "AA=="}]}, "x-y": null});
        let got: Vec<(String, Json)> = leaves(&v)
            .iter()
            .map(|l| (path_string(&l.path), l.value.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("Id".to_owned(), json!(3)),
                ("Data.Args[0]".to_owned(), json!("host")),
                ("Data.Args[1]".to_owned(), json!({"$bin": "AA=="})),
                ("$[\"x-y\"]".to_owned(), json!(null)),
            ]
        );
        assert_eq!(path_string(&[]), "$");
        assert_eq!(path_string(&[Segment::Index(0)]), "$[0]");
    }

    #[test]
    fn dropping_and_stripping() {
        let mut p =
            json!({"Id": 1, "Data": {"Args": [1, 2]}, "StartTime": 5, "In": {"starttime": 1}});
        assert!(drop_path(&mut p, &[Segment::Key("Id".into())]));
        assert!(drop_path(
            &mut p,
            &[
                Segment::Key("Data".into()),
                Segment::Key("Args".into()),
                Segment::Index(1)
            ]
        ));
        strip_keys(&mut p, &["StartTime"]);
        assert_eq!(p, json!({"Data": {}, "In": {}}));
        assert!(!drop_path(&mut p, &[Segment::Index(0)]));
        assert!(!drop_path(&mut p, &[]));
    }

    #[test]
    fn word_splitting() {
        assert_eq!(
            words("plugin.StartInstance"),
            ["plugin", "start", "instance"]
        );
        assert_eq!(words("instance_id"), ["instance", "id"]);
        assert_eq!(snake("EventId"), "event_id");
        assert_eq!(snake("Id"), "id");
        assert_eq!(snake(""), "value");
    }
}
