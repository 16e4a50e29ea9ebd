//! Hook payloads and replies as msgpack: encoding them the way prox's Go
//! encoder does, filling in the fields prox always sends, and checking a
//! decoded value the way prox's lenient Go decoder would read it.

use rmpv::Value as Mp;
use serde_json::{Map, Value as Json};

use super::schema::{Schema, Ty};
use crate::codec::msgpack;
use crate::value_json;

/// How integers and floats in a payload are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// As prox's Go encoder (vmihailenco/msgpack v5 defaults) writes:
    /// `int64` fields as `0xd3` and 8 bytes, `float64` fields as `0xcb` and
    /// 8 bytes, the envelope's `t` as `0xcc NN`. Everything else in its
    /// smallest form.
    #[default]
    Go,
    /// The smallest form of every value, as most msgpack libraries (Python's
    /// `msgpack` among them) write.
    Compact,
}

/// The msgpack bytes of `value` (a JSON object with short keys, in the
/// lossless mapping of [`crate::value_json`]) as a `schema`.
pub fn encode(schema: &'static Schema, value: &Json, enc: Encoding) -> Result<Vec<u8>, String> {
    let mp = value_json::from_json(value).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(64);
    write_typed(&mut out, Some(schema), &mp, enc).map_err(|e| e.to_string())?;
    Ok(out)
}

fn write_typed(
    out: &mut Vec<u8>,
    schema: Option<&'static Schema>,
    v: &Mp,
    enc: Encoding,
) -> std::io::Result<()> {
    let (Some(schema), Mp::Map(pairs)) = (schema, v) else {
        return msgpack::write(out, v);
    };
    let len = u32::try_from(pairs.len()).map_err(std::io::Error::other)?;
    rmp::encode::write_map_len(out, len)?;
    for (k, val) in pairs {
        msgpack::write(out, k)?;
        let ty = k.as_str().and_then(|k| schema.by_key(k)).map(|f| f.ty);
        match (enc, ty, val) {
            (Encoding::Go, Some(Ty::Int64), Mp::Integer(i)) if i.as_i64().is_some() => {
                rmp::encode::write_i64(out, i.as_i64().unwrap_or_default())?;
            }
            (Encoding::Go, Some(Ty::Float), Mp::Integer(i)) => {
                let f = i.as_f64().unwrap_or_default();
                rmp::encode::write_f64(out, f)?;
            }
            (_, Some(Ty::Struct(inner)), _) => write_typed(out, Some(inner), val, enc)?,
            _ => msgpack::write(out, val)?,
        }
    }
    Ok(())
}

/// `value` (short keys) as prox would send it: fields in declaration
/// order, and every field prox always sends present (zero values for the
/// missing ones: `""`, `0`, `false`, `{}`). Keys the type does not know
/// follow, as given.
pub fn fill(schema: &'static Schema, value: &Json) -> Json {
    let empty = Map::new();
    let obj = value.as_object().unwrap_or(&empty);
    let mut out = Map::new();
    for field in schema.fields {
        let given = obj.get(field.key);
        let v = match (given, field.ty) {
            (Some(v), Ty::Struct(inner)) if v.is_object() => fill(inner, v),
            (Some(v), _) => v.clone(),
            (None, _) if field.omitempty => continue,
            (None, ty) => zero(ty),
        };
        out.insert(field.key.to_owned(), v);
    }
    for (k, v) in obj {
        if schema.by_key(k).is_none() {
            out.insert(k.clone(), v.clone());
        }
    }
    Json::Object(out)
}

fn zero(ty: Ty) -> Json {
    match ty {
        Ty::Str => Json::from(""),
        Ty::Bool => Json::Bool(false),
        Ty::Int | Ty::Int64 => Json::from(0),
        Ty::Float => Json::from(0.0),
        Ty::Bytes => serde_json::json!({"$bin": ""}),
        Ty::StrMap => Json::Object(Map::new()),
        Ty::StrList => Json::Array(vec![]),
        Ty::Struct(inner) => fill(inner, &Json::Null),
    }
}

/// What prox's decoder makes of a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Check {
    /// Reasons the Go decoder fails on the value (so the call fails).
    pub errors: Vec<String>,
    /// Keys the type does not have, which the decoder skips.
    pub ignored: Vec<String>,
}

/// Checks `v` against `schema` with the Go decoder's leniency: any integer
/// form for integers (and for floats), nil for any field (its zero value),
/// str or bin for strings and bytes, a map (or an array holding exactly
/// one item per field) for a struct.
pub fn check(schema: &'static Schema, v: &Mp) -> Check {
    let mut c = Check::default();
    check_struct(schema, v, "", &mut c);
    c
}

fn check_struct(schema: &'static Schema, v: &Mp, at: &str, c: &mut Check) {
    match v {
        Mp::Nil => {}
        Mp::Map(pairs) => {
            for (k, val) in pairs {
                let Some(key) = k.as_str() else {
                    c.errors.push(format!(
                        "{}a key that is not a string ({}) in {}",
                        prefix(at),
                        value_json::to_json(k),
                        schema.name
                    ));
                    continue;
                };
                let path = join(at, key);
                match schema.by_key(key) {
                    Some(field) => check_field(field.ty, val, &path, c),
                    None => c.ignored.push(path),
                }
            }
        }
        Mp::Array(items) if items.len() == schema.fields.len() => {
            for (field, item) in schema.fields.iter().zip(items) {
                check_field(field.ty, item, &join(at, field.key), c);
            }
        }
        Mp::Array(items) => c.errors.push(format!(
            "{}an array of {} items where {} is due (as an array it needs exactly {})",
            prefix(at),
            items.len(),
            schema.name,
            schema.fields.len()
        )),
        other => c.errors.push(format!(
            "{}{} where {} (a map) is due",
            prefix(at),
            kind(other),
            schema.name
        )),
    }
}

fn check_field(ty: Ty, v: &Mp, at: &str, c: &mut Check) {
    let stringish = |v: &Mp| matches!(v, Mp::String(_) | Mp::Binary(_) | Mp::Nil);
    let ok = match ty {
        Ty::Struct(inner) => return check_struct(inner, v, at, c),
        _ if v.is_nil() => true,
        Ty::Str | Ty::Bytes => stringish(v),
        Ty::Bool => v.is_bool(),
        Ty::Int | Ty::Int64 => matches!(v, Mp::Integer(_)),
        Ty::Float => matches!(v, Mp::Integer(_) | Mp::F32(_) | Mp::F64(_)),
        Ty::StrMap => match v {
            Mp::Map(pairs) => pairs.iter().all(|(k, v)| stringish(k) && stringish(v)),
            _ => false,
        },
        Ty::StrList => match v {
            Mp::Array(items) => items.iter().all(stringish),
            _ => false,
        },
    };
    if !ok {
        c.errors.push(format!(
            "{at}: {} where {} is due",
            describe(v),
            expected(ty)
        ));
    }
}

fn expected(ty: Ty) -> &'static str {
    match ty {
        Ty::Str => "a string",
        Ty::Bool => "a bool",
        Ty::Int | Ty::Int64 => "an integer",
        Ty::Float => "a number",
        Ty::Bytes => "bin (or str)",
        Ty::StrMap => "a map of strings to strings",
        Ty::StrList => "an array of strings",
        Ty::Struct(_) => "a map",
    }
}

fn describe(v: &Mp) -> String {
    match v {
        Mp::Map(_) | Mp::Array(_) => kind(v).to_owned(),
        other => format!("{} {}", kind(other), value_json::to_json(other)),
    }
}

fn kind(v: &Mp) -> &'static str {
    match v {
        Mp::Nil => "nil",
        Mp::Boolean(_) => "a bool",
        Mp::Integer(_) => "an integer",
        Mp::F32(_) | Mp::F64(_) => "a float",
        Mp::String(_) => "a string",
        Mp::Binary(_) => "bin",
        Mp::Array(_) => "an array",
        Mp::Map(_) => "a map",
        Mp::Ext(..) => "an ext value",
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

fn prefix(at: &str) -> String {
    if at.is_empty() {
        String::new()
    } else {
        format!("{at}: ")
    }
}
