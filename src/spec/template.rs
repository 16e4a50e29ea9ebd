//! Captures and `${name}` substitution in client steps.
//!
//! A step can `capture` values from its result by path (`"Id"`,
//! `"Data.Args[0]"`, `"$"` for the whole result); later params refer to
//! them as `${name}`. A string that is exactly `${name}` becomes the
//! captured value with its type (an integer stays an integer); inside a
//! longer string the value is spliced in as text. `$${` writes a literal
//! `${`. The built-in `${pid}` is plugtap's own process id.

use indexmap::IndexMap;
use serde_json::Value as Json;

/// Names that are always defined.
pub const BUILTINS: &[&str] = &["pid"];

/// Values captured so far, by name.
pub type Vars = IndexMap<String, Json>;

/// A variable table holding the built-ins.
pub fn builtins() -> Vars {
    let mut vars = Vars::new();
    vars.insert("pid".into(), Json::from(std::process::id()));
    vars
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// Parses `Data.Args[0]`, `$.Id`, `["a.b"]`, `$` (the whole value).
pub fn parse_path(path: &str) -> Result<Vec<Segment>, String> {
    let mut rest = path.strip_prefix('$').unwrap_or(path);
    let mut out = Vec::new();
    let mut first = path.starts_with('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| format!("unclosed `[` in path `{path}`"))?;
            let inside = &r[..end];
            if let Ok(i) = inside.parse::<usize>() {
                out.push(Segment::Index(i));
            } else {
                let key: String = serde_json::from_str(inside).map_err(|_| {
                    format!("`[{inside}]` in path `{path}` is neither an index nor a quoted key")
                })?;
                out.push(Segment::Key(key));
            }
            rest = &r[end + 1..];
        } else {
            let r = match rest.strip_prefix('.') {
                Some(r) => r,
                None if !first => rest,
                None => return Err(format!("expected `.` or `[` in path `{path}`")),
            };
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err(format!("empty key in path `{path}`"));
            }
            out.push(Segment::Key(r[..end].to_owned()));
            rest = &r[end..];
        }
        first = true;
    }
    Ok(out)
}

/// The value at `path` inside `value`.
pub fn lookup<'a>(value: &'a Json, path: &[Segment]) -> Option<&'a Json> {
    path.iter().try_fold(value, |v, seg| match seg {
        Segment::Key(k) => v.get(k),
        Segment::Index(i) => v.get(*i),
    })
}

/// Every `${name}` referenced anywhere in `value`.
pub fn references(value: &Json) -> Vec<String> {
    let mut out = Vec::new();
    walk_strings(value, &mut |s| {
        for piece in pieces(s) {
            if let Piece::Var(name) = piece {
                out.push(name.to_owned());
            }
        }
    });
    out
}

/// Replaces `${name}` references with values from `vars`.
pub fn substitute(value: &Json, vars: &Vars) -> Result<Json, String> {
    Ok(match value {
        Json::String(s) => substitute_str(s, vars)?,
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|v| substitute(v, vars))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, vars)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn substitute_str(s: &str, vars: &Vars) -> Result<Json, String> {
    if !s.contains('$') {
        return Ok(Json::String(s.to_owned()));
    }
    let parts = pieces(s);
    let get = |name: &str| {
        vars.get(name)
            .ok_or_else(|| format!("`${{{name}}}` is not defined"))
    };
    if let [Piece::Var(name)] = parts.as_slice() {
        return get(name).cloned();
    }
    let mut out = String::new();
    for part in parts {
        match part {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(name) => match get(name)? {
                Json::String(v) => out.push_str(v),
                other => out.push_str(&other.to_string()),
            },
        }
    }
    Ok(Json::String(out))
}

enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn pieces(s: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push(Piece::Text(&rest[..i]));
            out.push(Piece::Text("${"));
            rest = tail;
        } else if let Some(body) = after.strip_prefix("${")
            && let Some(end) = body.find('}')
        {
            out.push(Piece::Text(&rest[..i]));
            out.push(Piece::Var(&body[..end]));
            rest = &body[end + 1..];
        } else {
            out.push(Piece::Text(&rest[..=i]));
            rest = &after[1..];
        }
    }
    out.push(Piece::Text(rest));
    out.retain(|p| !matches!(p, Piece::Text("")));
    out
}

fn walk_strings(value: &Json, f: &mut impl FnMut(&str)) {
    match value {
        Json::String(s) => f(s),
        Json::Array(items) => items.iter().for_each(|v| walk_strings(v, f)),
        Json::Object(map) => map.values().for_each(|v| walk_strings(v, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let v = json!({"Id": 3, "Data": {"Args": ["host", {"a.b": 1}]}});
        let at = |p: &str| lookup(&v, &parse_path(p).unwrap()).cloned();
        assert_eq!(at("Id"), Some(json!(3)));
        assert_eq!(at("$.Id"), Some(json!(3)));
        assert_eq!(at("Data.Args[0]"), Some(json!("host")));
        assert_eq!(at("Data.Args[1][\"a.b\"]"), Some(json!(1)));
        assert_eq!(at("$"), Some(v.clone()));
        assert_eq!(at("Nope"), None);
        assert!(parse_path("a..b").is_err());
        assert!(parse_path("a[x]").is_err());
        assert!(parse_path("$Id").is_err());
    }

    #[test]
    fn substitution_keeps_types() {
        let mut vars = Vars::new();
        vars.insert("iid".into(), json!(7));
        vars.insert("name".into(), json!("p"));
        let params = json!([{"InstanceId": "${iid}", "Label": "inst-${iid}-${name}", "Raw": "$${iid}", "Cost": "$5"}]);
        assert_eq!(
            substitute(&params, &vars).unwrap(),
            json!([{"InstanceId": 7, "Label": "inst-7-p", "Raw": "${iid}", "Cost": "$5"}])
        );
        assert_eq!(references(&params), ["iid", "iid", "name"]);
        assert!(
            substitute(&json!("${nope}"), &vars)
                .unwrap_err()
                .contains("nope")
        );
    }
}
