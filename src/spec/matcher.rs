//! Partial deep matching of JSON values, with a diff of what differs.
//!
//! Used for the server's `match` on params and the client's `expect` on
//! results, so it works on the protocol-neutral JSON form:
//!
//! * an expected **object** matches an object that has every expected key
//!   with a matching value; extra keys are fine;
//! * an expected **array** matches an array of the same length whose
//!   elements match one by one;
//! * **numbers** match by value (`1` matches `1.0`);
//! * a **tagged value** of the lossless mapping (`{"$bin": ...}`) and every
//!   other scalar must be equal.

use serde_json::Value as Json;

/// One place where the actual value differs from the expected one.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mismatch {
    /// Where, as `$.Data.Args[0]`.
    pub path: String,
    /// What was expected there.
    pub expected: Json,
    /// What was there; `None` when the key or element is missing.
    pub actual: Option<Json>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.actual {
            Some(actual) => write!(
                f,
                "{}: expected {}, got {}",
                self.path, self.expected, actual
            ),
            None => write!(
                f,
                "{}: expected {}, but it is missing",
                self.path, self.expected
            ),
        }
    }
}

/// True when `actual` matches the pattern `expected`.
pub fn matches(expected: &Json, actual: &Json) -> bool {
    match (expected, actual) {
        (Json::Object(e), Json::Object(a)) if !is_tag(expected) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| matches(ev, av))),
        (Json::Array(e), Json::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(ev, av)| matches(ev, av))
        }
        (Json::Number(e), Json::Number(a)) => same_number(e, a),
        _ => expected == actual,
    }
}

/// True when `actual` equals `pattern`: the same keys, the same
/// elements, numbers by value.
pub fn equals(pattern: &Json, actual: &Json) -> bool {
    match (pattern, actual) {
        (Json::Object(e), Json::Object(a)) => {
            e.len() == a.len()
                && e.iter()
                    .all(|(k, ev)| a.get(k).is_some_and(|av| equals(ev, av)))
        }
        (Json::Array(e), Json::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(ev, av)| equals(ev, av))
        }
        (Json::Number(e), Json::Number(a)) => same_number(e, a),
        _ => pattern == actual,
    }
}

/// Every mismatch between the pattern `expected` and `actual`; empty when
/// they match.
pub fn diff(expected: &Json, actual: &Json) -> Vec<Mismatch> {
    let mut out = Vec::new();
    diff_at(expected, actual, &mut String::from("$"), &mut out);
    out
}

fn diff_at(expected: &Json, actual: &Json, path: &mut String, out: &mut Vec<Mismatch>) {
    match (expected, actual) {
        (Json::Object(e), Json::Object(a)) if !is_tag(expected) && !is_tag(actual) => {
            for (k, ev) in e {
                let len = path.len();
                push_key(path, k);
                match a.get(k) {
                    Some(av) => diff_at(ev, av, path, out),
                    None => out.push(Mismatch {
                        path: path.clone(),
                        expected: ev.clone(),
                        actual: None,
                    }),
                }
                path.truncate(len);
            }
        }
        (Json::Array(e), Json::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                diff_at(ev, av, path, out);
                path.truncate(len);
            }
        }
        _ if matches(expected, actual) => {}
        _ => out.push(Mismatch {
            path: path.clone(),
            expected: expected.clone(),
            actual: Some(actual.clone()),
        }),
    }
}

/// Appends `.key` or `["key"]` to a path.
pub fn push_key(path: &mut String, key: &str) {
    let simple = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if simple {
        path.push('.');
        path.push_str(key);
    } else {
        path.push_str(&format!("[{}]", Json::String(key.to_owned())));
    }
}

fn is_tag(v: &Json) -> bool {
    v.as_object()
        .is_some_and(|o| o.len() == 1 && o.keys().all(|k| k.starts_with('$')))
}

fn same_number(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    let int = |n: &serde_json::Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(a), int(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.as_f64() == b.as_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partial_objects_exact_arrays() {
        let actual = json!([{"EventId": 3, "Data": {"Method": "kong.request.get_header", "Args": ["host"]}}]);
        assert!(matches(&json!([{"EventId": 3}]), &actual));
        assert!(matches(&json!([{"Data": {"Args": ["host"]}}]), &actual));
        assert!(!matches(&json!([{"EventId": 4}]), &actual));
        assert!(!matches(&json!([{"Data": {"Args": []}}]), &actual));
        assert!(!matches(&json!([]), &actual));
        assert!(matches(&json!(1), &json!(1.0)));
        assert!(matches(&json!({"$bin": "AA=="}), &json!({"$bin": "AA=="})));
        assert!(equals(&json!([{"EventId": 0}]), &json!([{"EventId": 0.0}])));
        assert!(!equals(&json!([{"EventId": 0}]), &actual));
        assert!(!matches(
            &json!({"$bin": "AA=="}),
            &json!({"$bin": "AA==", "x": 1})
        ));
    }

    #[test]
    fn diff_paths() {
        let d = diff(
            &json!({"Name": "p", "Config": {"a": 1}, "Id": 0, "x-y": true}),
            &json!({"Name": "q", "Config": {"a": 2}, "Id": 0}),
        );
        let text: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "$.Name: expected \"p\", got \"q\"",
                "$.Config.a: expected 1, got 2",
                "$[\"x-y\"]: expected true, but it is missing",
            ]
        );
        assert!(diff(&json!([1, 2]), &json!([1, 2])).is_empty());
        assert_eq!(diff(&json!([1, 2]), &json!([1]))[0].path, "$");
    }
}
