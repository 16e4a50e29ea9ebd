//! How Kong hands a PDK result back to the plugin server, whatever the
//! wire protocol: the conversions it applies (`fix_mmap`, `fix_raw`), which
//! `plugin.Step*` method carries the answer over `MsgPack:1`, which PDK
//! calls end an event without an answer, and Kong's reset rule for errors.
//!
//! Facts from Kong's `mp_rpc.lua` (reference §2.5, §2.6):
//!
//! * only the first return value of a PDK function is used, so a call
//!   that returns `nil, err` answers nil;
//! * a result table with a string `_method` field names the Step method;
//!   otherwise a fixed table maps a few PDK methods to typed Steps;
//! * header and query maps: a string value becomes a one-element list,
//!   `true` (a query flag) an empty list, and an empty table an explicit
//!   empty map;
//! * raw bodies are sent as binary, never as text;
//! * `kong.response.exit` and `kong.response.error` never get an answer.

use serde_json::{Map, Value as Json};

use crate::value_json;

/// What Kong sends back for one PDK call, before any wire encoding.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Lua nil: `MsgPack:1` leaves the `Data` key out.
    Nil,
    /// Any other Lua value, as JSON in the lossless mapping.
    Value(Json),
    /// A header or query table after `fix_mmap`: every value is a list,
    /// and the map stays a map even when empty.
    MultiMap(Map<String, Json>),
    /// A raw body after `fix_raw`: always binary.
    Raw(Vec<u8>),
}

impl Answer {
    /// The answer as JSON for reports (`null` for nil, `{"$bin": ...}` for
    /// raw bodies).
    pub fn to_json(&self) -> Json {
        match self {
            Answer::Nil => Json::Null,
            Answer::Value(v) => v.clone(),
            Answer::MultiMap(m) => Json::Object(m.clone()),
            Answer::Raw(bytes) => value_json::to_json(&rmpv::Value::Binary(bytes.clone())),
        }
    }
}

/// The conversion Kong applies to a PDK method's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// None.
    Plain,
    /// `fix_mmap`: header and query maps.
    MultiMap,
    /// `fix_raw`: raw bodies.
    Raw,
}

/// Which conversion Kong applies to `method`'s result.
pub fn conversion(method: &str) -> Conversion {
    match method {
        "kong.request.get_query"
        | "kong.request.get_headers"
        | "kong.response.get_headers"
        | "kong.service.response.get_headers" => Conversion::MultiMap,
        "kong.request.get_raw_body"
        | "kong.response.get_raw_body"
        | "kong.service.response.get_raw_body" => Conversion::Raw,
        _ => Conversion::Plain,
    }
}

/// True for PDK methods Kong never answers: the event ends there.
pub fn is_terminal(method: &str) -> bool {
    matches!(method, "kong.response.exit" | "kong.response.error")
}

/// Applies Kong's conversion for `method` to a result (`None` is nil).
///
/// `Err` means Kong itself would raise a Lua error while converting (a
/// header map that is not a table, a raw body that is not a string); the
/// plugin handler then aborts and the client gets a 500.
pub fn convert(method: &str, result: Option<Json>) -> Result<Answer, String> {
    match (conversion(method), result) {
        (Conversion::Plain, None | Some(Json::Null)) => Ok(Answer::Nil),
        (Conversion::Plain, Some(v)) => Ok(Answer::Value(v)),
        (Conversion::MultiMap, Some(Json::Object(map))) => Ok(Answer::MultiMap(fix_mmap(map))),
        (Conversion::MultiMap, other) => Err(format!(
            "{method} returned {}, not a table: Kong's fix_mmap raises a Lua error",
            shown(other.as_ref())
        )),
        (Conversion::Raw, Some(Json::String(s))) => Ok(Answer::Raw(s.into_bytes())),
        (Conversion::Raw, Some(v)) => match value_json::from_json(&v) {
            Ok(rmpv::Value::Binary(b)) => Ok(Answer::Raw(b)),
            Ok(rmpv::Value::String(s)) => Ok(Answer::Raw(s.into_bytes())),
            _ => Err(format!(
                "{method} returned {v}, not a string: Kong's fix_raw raises a Lua error"
            )),
        },
        (Conversion::Raw, None) => Err(format!(
            "{method} returned nil (a body buffered to a file): Kong's fix_raw raises a Lua error"
        )),
    }
}

fn shown(v: Option<&Json>) -> String {
    v.map_or_else(|| "nil".into(), Json::to_string)
}

fn fix_mmap(map: Map<String, Json>) -> Map<String, Json> {
    map.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Json::String(s) => Json::Array(vec![Json::String(s)]),
                Json::Bool(true) => Json::Array(vec![]),
                other => other,
            };
            (k, v)
        })
        .collect()
}

/// The RPC method that carries the answer to `pdk_method` over `MsgPack:1`.
pub fn step_method(pdk_method: &str, answer: &Answer) -> String {
    if let Answer::Value(Json::Object(table)) = answer
        && let Some(Json::String(m)) = table.get("_method")
    {
        return m.clone();
    }
    match pdk_method {
        "kong.client.get_credential" | "kong.client.authenticate" => "plugin.StepCredential",
        "kong.client.load_consumer" | "kong.client.get_consumer" => "plugin.StepConsumer",
        "kong.node.get_memory_stats" => "plugin.StepMemoryStats",
        "kong.router.get_route" => "plugin.StepRoute",
        "kong.router.get_service" => "plugin.StepService",
        "kong.request.get_query"
        | "kong.request.get_headers"
        | "kong.response.get_headers"
        | "kong.service.response.get_headers" => "plugin.StepMultiMap",
        _ => "plugin.Step",
    }
    .to_owned()
}

/// Kong's reset rule: an error whose lowercase text contains `no plugin
/// instance` makes Kong drop its instance ids and retry the event.
pub fn is_reset_error(text: &str) -> bool {
    text.to_lowercase().contains("no plugin instance")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn step_methods() {
        let nil = Answer::Nil;
        assert_eq!(step_method("kong.request.get_header", &nil), "plugin.Step");
        assert_eq!(
            step_method("kong.request.get_headers", &nil),
            "plugin.StepMultiMap"
        );
        assert_eq!(
            step_method("kong.client.authenticate", &nil),
            "plugin.StepCredential"
        );
        assert_eq!(
            step_method("kong.router.get_service", &nil),
            "plugin.StepService"
        );
        let escape = Answer::Value(json!({"_method": "plugin.StepCustom", "x": 1}));
        assert_eq!(
            step_method("kong.router.get_route", &escape),
            "plugin.StepCustom"
        );
    }

    #[test]
    fn conversions() {
        let headers = json!({"host": "a", "x-multi": ["1", "2"], "flag": true});
        assert_eq!(
            convert("kong.request.get_headers", Some(headers)).unwrap(),
            Answer::MultiMap(
                json!({"host": ["a"], "x-multi": ["1", "2"], "flag": []})
                    .as_object()
                    .unwrap()
                    .clone()
            )
        );
        assert_eq!(
            convert("kong.request.get_query", Some(json!({}))).unwrap(),
            Answer::MultiMap(Map::new())
        );
        assert!(convert("kong.request.get_query", None).is_err());
        assert_eq!(
            convert("kong.request.get_raw_body", Some(json!("ab"))).unwrap(),
            Answer::Raw(b"ab".to_vec())
        );
        assert_eq!(
            convert("kong.request.get_raw_body", Some(json!({"$bin": "/w=="}))).unwrap(),
            Answer::Raw(vec![0xff])
        );
        assert!(convert("kong.request.get_raw_body", None).is_err());
        assert_eq!(
            convert("kong.request.get_header", Some(Json::Null)).unwrap(),
            Answer::Nil
        );
    }

    #[test]
    fn reset_rule_ignores_case() {
        assert!(is_reset_error("No plugin instance 3"));
        assert!(is_reset_error("no plugin instance #0"));
        assert!(!is_reset_error("instance 3 not found"));
    }
}
