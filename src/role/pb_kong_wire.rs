//! Kong's conversions between protobuf messages and Lua values for PDK
//! calls over `ProtoBuf:1` (`pb_unwrap` / `pb_wrap` in Kong's pb_rpc.lua),
//! in the JSON forms plugtap uses on both sides.
//!
//! * Arguments: scalar wrappers become their value (the type's default
//!   when unset), `KV` becomes `(k, v)`, `Target` `(host, port)`,
//!   `ExitArgs` `(status, body, headers)`, `ConsumerSpec`
//!   `(id, by_username)`, `AuthenticateArgs` `(consumer, credential)`, a
//!   `ListValue` its elements (varargs), `Empty` nothing, anything else
//!   one table.
//! * Replies: scalars are wrapped as `{v}`, header and query tables are
//!   `Struct`s of strings or lists, raw bodies are `RawBodyResult.content`
//!   or `ByteString.v`, `Empty` is an empty frame whatever the answer, and
//!   other messages are encoded straight from the table, keeping only the
//!   fields the message has (as lua-protobuf does).

use base64::Engine as _;
use serde_json::{Map, Value as Json, json};

use crate::kong::step::Answer;
use crate::message::protobuf::PdkMethod;
use crate::value_json;

fn short(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A protobuf `bytes` field (base64 in JSON) as the Lua string Kong gets.
fn bytes_text(v: Option<&Json>) -> Json {
    let raw = v
        .and_then(Json::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default();
    match String::from_utf8(raw) {
        Ok(text) => Json::String(text),
        Err(e) => value_json::to_json(&rmpv::Value::Binary(e.into_bytes())),
    }
}

/// The Lua arguments Kong passes to the PDK function, as a JSON list.
pub(crate) fn lua_args(pdk: &PdkMethod, args: &Json) -> Json {
    let get = |k: &str| args.get(k).cloned();
    let or = |k: &str, default: Json| get(k).unwrap_or(default);
    let list = match short(pdk.input.full_name()) {
        "Empty" => vec![],
        "String" => vec![or("v", json!(""))],
        "Int" | "Number" => vec![number(&or("v", json!(0)))],
        "Bool" => vec![or("v", json!(false))],
        "ByteString" => vec![bytes_text(args.get("v"))],
        "KV" => vec![or("k", json!("")), or("v", Json::Null)],
        "Target" => vec![or("host", json!("")), number(&or("port", json!(0)))],
        "ExitArgs" => vec![
            number(&or("status", json!(0))),
            bytes_text(args.get("body")),
            or("headers", Json::Null),
        ],
        "ConsumerSpec" => vec![or("id", json!("")), or("byUsername", json!(false))],
        "AuthenticateArgs" => vec![or("consumer", Json::Null), or("credential", Json::Null)],
        "ListValue" => match args {
            Json::Array(items) => items.clone(),
            _ => vec![],
        },
        _ => vec![args.clone()],
    };
    Json::Array(list)
}

/// 64-bit integers are strings in protobuf's JSON form.
fn number(v: &Json) -> Json {
    match v {
        Json::String(s) => s.parse::<i64>().map_or_else(|_| v.clone(), Json::from),
        other => other.clone(),
    }
}

/// Kong's reply to a PDK call in the JSON form of the method's output
/// type (`null`: nil, which [`PdkMethod::encode_reply`] sends as Kong does).
pub(crate) fn reply(pdk: &PdkMethod, answer: &Answer) -> Json {
    let output = short(pdk.output.full_name());
    let value = match answer {
        Answer::Nil => return Json::Null,
        Answer::Value(v) => v.clone(),
        Answer::MultiMap(m) => Json::Object(m.clone()),
        Answer::Raw(bytes) => {
            return match output {
                "RawBodyResult" => json!({"content": b64(bytes)}),
                "Empty" => Json::Null,
                _ => json!({"v": b64(bytes)}),
            };
        }
    };
    match output {
        "Empty" => Json::Null,
        "String" => json!({"v": lua_text(&value)}),
        "Int" => json!({"v": value.as_f64().map_or(0, |f| f as i64)}),
        "Number" => json!({"v": value.as_f64().unwrap_or(0.0)}),
        "Bool" => json!({"v": value.as_bool().unwrap_or(!value.is_null())}),
        "ByteString" => json!({"v": b64(lua_text(&value).as_bytes())}),
        "RawBodyResult" => json!({"content": b64(lua_text(&value).as_bytes())}),
        "Value" | "Struct" | "ListValue" => plain(&value),
        _ => known_fields(pdk, &value),
    }
}

/// A Lua string from a value in the lossless mapping.
fn lua_text(v: &Json) -> String {
    match value_json::from_json(v) {
        Ok(rmpv::Value::String(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Ok(rmpv::Value::Binary(b)) => String::from_utf8_lossy(&b).into_owned(),
        _ => match v {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

/// A value in the lossless mapping as plain JSON (binary as text).
fn plain(v: &Json) -> Json {
    match value_json::from_json(v) {
        Ok(mp) => to_plain(&mp),
        Err(_) => v.clone(),
    }
}

fn to_plain(v: &rmpv::Value) -> Json {
    use rmpv::Value as Mp;
    match v {
        Mp::Nil => Json::Null,
        Mp::Boolean(b) => Json::Bool(*b),
        Mp::Integer(i) => i
            .as_i64()
            .map(Json::from)
            .or_else(|| i.as_u64().map(Json::from))
            .unwrap_or(Json::Null),
        Mp::F32(f) => json!(f),
        Mp::F64(f) => json!(f),
        Mp::String(s) => Json::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Mp::Binary(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
        Mp::Array(items) => Json::Array(items.iter().map(to_plain).collect()),
        Mp::Map(pairs) => Json::Object(
            pairs
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Mp::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                        other => to_plain(other).to_string(),
                    };
                    (key, to_plain(v))
                })
                .collect(),
        ),
        Mp::Ext(_, b) => Json::String(String::from_utf8_lossy(b).into_owned()),
    }
}

/// The table's keys that are fields of the output message.
fn known_fields(pdk: &PdkMethod, v: &Json) -> Json {
    let Json::Object(map) = plain(v) else {
        return Json::Null;
    };
    let kept: Map<String, Json> = map
        .into_iter()
        .filter(|(k, _)| {
            pdk.output
                .fields()
                .any(|f| f.name() == k || f.json_name() == k)
        })
        .collect();
    Json::Object(kept)
}
