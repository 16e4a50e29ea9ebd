//! Lossless mapping between msgpack values ([`rmpv::Value`]) and JSON
//! ([`serde_json::Value`]).
//!
//! Specs, logs and recordings show msgpack as JSON. Plain JSON cannot say
//! everything msgpack can, so the values JSON lacks are written as one-key
//! objects whose key starts with `$` (a *tag*):
//!
//! | msgpack                                   | JSON                                   |
//! |-------------------------------------------|----------------------------------------|
//! | nil, bool                                 | `null`, `true`/`false`                 |
//! | integer (any width, `i64::MIN..=u64::MAX`) | number without fraction: `7`, `-3`     |
//! | float64 (finite)                          | number with a fraction or exponent: `1.0`, `2.5e-7` |
//! | float64 NaN / ±infinity                   | `{"$f64": "NaN"}`, `{"$f64": "inf"}`, `{"$f64": "-inf"}` |
//! | float32                                   | `{"$f32": 1.5}` (or `"NaN"`, `"inf"`, `"-inf"`) |
//! | str (valid UTF-8)                         | string                                 |
//! | str (invalid UTF-8)                       | `{"$rawstr": "<base64>"}`              |
//! | bin                                       | `{"$bin": "<base64>"}`                 |
//! | ext                                       | `{"$ext": [type, "<base64>"]}`         |
//! | array                                     | array                                  |
//! | map with distinct string keys             | object, keys in wire order             |
//! | any other map                             | `{"$map": [[key, value], ...]}`        |
//!
//! A map whose only key starts with `$` would read as a tag, so it is
//! written with `$map` too. When reading JSON, an object with exactly one
//! key starting with `$` must be a known tag; any other object is a map.
//! Base64 is the standard alphabet with padding.
//!
//! The mapping is exact in both directions: `from_json(to_json(v)) == v` for
//! every msgpack value (see the property tests). Which msgpack *encoding*
//! was used for a value (say str8 or str16) is not part of the value; raw
//! bytes are kept next to the decoded form where that matters (recordings).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rmpv::Value as Mp;
use serde_json::{Map, Number, Value as Js};

/// Why a JSON value could not be turned into msgpack. `path` says where,
/// in the same notation the spec errors use (`$.on_methods[0].return[1]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct MappingError {
    /// Location of the offending value, relative to the converted root.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Converts a msgpack value into its JSON form.
pub fn to_json(v: &Mp) -> Js {
    match v {
        Mp::Nil => Js::Null,
        Mp::Boolean(b) => Js::Bool(*b),
        Mp::Integer(i) => {
            if let Some(u) = i.as_u64() {
                Js::Number(u.into())
            } else {
                // rmpv integers are always representable as u64 or i64.
                Js::Number(i.as_i64().unwrap_or_default().into())
            }
        }
        Mp::F64(f) => match Number::from_f64(*f) {
            Some(n) => Js::Number(n),
            None => tag("$f64", Js::String(non_finite_name(*f).into())),
        },
        Mp::F32(f) => {
            let inner = match Number::from_f64(f64::from(*f)) {
                Some(n) => Js::Number(n),
                None => Js::String(non_finite_name(f64::from(*f)).into()),
            };
            tag("$f32", inner)
        }
        Mp::String(s) => match s.as_str() {
            Some(text) => Js::String(text.to_owned()),
            None => tag("$rawstr", Js::String(B64.encode(s.as_bytes()))),
        },
        Mp::Binary(b) => tag("$bin", Js::String(B64.encode(b))),
        Mp::Ext(t, data) => tag(
            "$ext",
            Js::Array(vec![Js::Number((*t).into()), Js::String(B64.encode(data))]),
        ),
        Mp::Array(items) => Js::Array(items.iter().map(to_json).collect()),
        Mp::Map(pairs) => map_to_json(pairs),
    }
}

fn map_to_json(pairs: &[(Mp, Mp)]) -> Js {
    let mut obj = Map::with_capacity(pairs.len());
    let plain = pairs.iter().all(|(k, _)| k.as_str().is_some());
    if plain {
        for (k, v) in pairs {
            let key = k.as_str().unwrap_or_default();
            if obj.insert(key.to_owned(), to_json(v)).is_some() {
                // A duplicate key: an object would lose one of the values.
                return tagged_map(pairs);
            }
        }
        let lone_dollar = obj.len() == 1 && obj.keys().all(|k| k.starts_with('$'));
        if !lone_dollar {
            return Js::Object(obj);
        }
    }
    tagged_map(pairs)
}

fn tagged_map(pairs: &[(Mp, Mp)]) -> Js {
    let list = pairs
        .iter()
        .map(|(k, v)| Js::Array(vec![to_json(k), to_json(v)]))
        .collect();
    tag("$map", Js::Array(list))
}

fn tag(name: &str, inner: Js) -> Js {
    let mut obj = Map::with_capacity(1);
    obj.insert(name.to_owned(), inner);
    Js::Object(obj)
}

fn non_finite_name(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

/// Converts JSON in the mapping above into a msgpack value.
pub fn from_json(j: &Js) -> Result<Mp, MappingError> {
    from_json_at(j, &mut String::from("$"))
}

fn from_json_at(j: &Js, path: &mut String) -> Result<Mp, MappingError> {
    Ok(match j {
        Js::Null => Mp::Nil,
        Js::Bool(b) => Mp::Boolean(*b),
        Js::Number(n) => number_to_mp(n),
        Js::String(s) => Mp::String(s.clone().into()),
        Js::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                out.push(from_json_at(item, path)?);
                path.truncate(len);
            }
            Mp::Array(out)
        }
        Js::Object(obj) => {
            if obj.len() == 1
                && let Some((k, v)) = obj.iter().next()
                && k.starts_with('$')
            {
                return tag_to_mp(k, v, path);
            }
            let mut out = Vec::with_capacity(obj.len());
            for (k, v) in obj {
                let len = path.len();
                push_key(path, k);
                out.push((Mp::String(k.clone().into()), from_json_at(v, path)?));
                path.truncate(len);
            }
            Mp::Map(out)
        }
    })
}

pub(crate) fn number_to_mp(n: &Number) -> Mp {
    if let Some(u) = n.as_u64() {
        Mp::from(u)
    } else if let Some(i) = n.as_i64() {
        Mp::from(i)
    } else {
        Mp::F64(n.as_f64().unwrap_or(f64::NAN))
    }
}

fn tag_to_mp(tag: &str, v: &Js, path: &mut String) -> Result<Mp, MappingError> {
    let len = path.len();
    push_key(path, tag);
    let out = match tag {
        "$bin" => Mp::Binary(base64_at(v, path)?),
        "$rawstr" => raw_string(&base64_at(v, path)?),
        "$f64" => Mp::F64(float_at(v, path)?),
        "$f32" => {
            let f = float_at(v, path)?;
            let narrow = f as f32;
            if f.is_finite() && f64::from(narrow) != f {
                return Err(err(
                    path,
                    format!("{f} is not exactly representable as float32"),
                ));
            }
            Mp::F32(narrow)
        }
        "$ext" => {
            let pair = v.as_array().filter(|a| a.len() == 2);
            let Some(pair) = pair else {
                return Err(err(path, "expected [type, \"<base64>\"]".into()));
            };
            let t = pair[0]
                .as_i64()
                .and_then(|t| i8::try_from(t).ok())
                .ok_or_else(|| err(path, "ext type must be an integer in -128..=127".into()))?;
            path.push_str("[1]");
            let data = base64_at(&pair[1], path)?;
            Mp::Ext(t, data)
        }
        "$map" => {
            let Some(list) = v.as_array() else {
                return Err(err(path, "expected a list of [key, value] pairs".into()));
            };
            let mut out = Vec::with_capacity(list.len());
            for (i, pair) in list.iter().enumerate() {
                let plen = path.len();
                path.push_str(&format!("[{i}]"));
                let Some([k, val]) = pair.as_array().map(Vec::as_slice) else {
                    return Err(err(path, "expected a [key, value] pair".into()));
                };
                let mk = from_json_at(k, path)?;
                let mv = from_json_at(val, path)?;
                out.push((mk, mv));
                path.truncate(plen);
            }
            Mp::Map(out)
        }
        other => {
            return Err(err(
                path,
                format!(
                    "unknown tag `{other}` (known: $bin, $ext, $f32, $f64, $map, $rawstr); \
                     to write a map whose only key starts with `$`, use {{\"$map\": [[key, value]]}}"
                ),
            ));
        }
    };
    path.truncate(len);
    Ok(out)
}

/// A msgpack str holding arbitrary bytes. rmpv only builds invalid UTF-8
/// strings while decoding, so the value is decoded from its encoding.
pub fn raw_string(bytes: &[u8]) -> Mp {
    let mut buf = Vec::with_capacity(bytes.len() + 5);
    // Writing into a Vec cannot fail, and the length fits in u32 for any
    // string a spec or recording can hold.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let _ = rmp::encode::write_str_len(&mut buf, len);
    buf.extend_from_slice(bytes);
    rmpv::decode::read_value(&mut buf.as_slice()).unwrap_or(Mp::Nil)
}

fn base64_at(v: &Js, path: &str) -> Result<Vec<u8>, MappingError> {
    let s = v
        .as_str()
        .ok_or_else(|| err(path, "expected a base64 string".into()))?;
    B64.decode(s)
        .map_err(|e| err(path, format!("invalid base64: {e}")))
}

fn float_at(v: &Js, path: &str) -> Result<f64, MappingError> {
    match v {
        Js::Number(n) => n
            .as_f64()
            .ok_or_else(|| err(path, "expected a number".into())),
        Js::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            _ => Err(err(
                path,
                format!("expected a number, \"NaN\", \"inf\" or \"-inf\", not {s:?}"),
            )),
        },
        _ => Err(err(path, "expected a number".into())),
    }
}

fn push_key(path: &mut String, key: &str) {
    let simple = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if simple {
        path.push('.');
        path.push_str(key);
    } else {
        path.push_str(&format!("[{}]", Js::String(key.to_owned())));
    }
}

fn err(path: &str, reason: String) -> MappingError {
    MappingError {
        path: path.to_owned(),
        reason,
    }
}

/// Structural equality that treats two floats as equal when their bits are
/// equal, so NaN equals NaN. [`rmpv::Value`]'s own `==` follows IEEE rules.
pub fn same_value(a: &Mp, b: &Mp) -> bool {
    match (a, b) {
        (Mp::F64(x), Mp::F64(y)) => x.to_bits() == y.to_bits(),
        (Mp::F32(x), Mp::F32(y)) => x.to_bits() == y.to_bits(),
        (Mp::Array(x), Mp::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (Mp::Map(x), Mp::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| same_value(k1, k2) && same_value(v1, v2))
        }
        _ => a == b,
    }
}
