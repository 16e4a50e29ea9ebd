//! The hook payloads' fields: prox's short msgpack keys, readable names for
//! them (the JSON names of prox's Go SDK), their Go types and whether prox
//! leaves them out when empty (`omitempty`).
//!
//! Specs may use either spelling; [`Schema::to_short`] turns a readable
//! pattern or value into the wire's short keys, [`Schema::readable`] does
//! the reverse for logs and reports.

use serde_json::{Map, Value as Json};

/// A field's Go type, as far as decoding is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// `string`.
    Str,
    /// `bool`.
    Bool,
    /// Go `int`: written in the smallest integer form.
    Int,
    /// `int64`: prox writes it as `0xd3` and 8 bytes, whatever its value.
    Int64,
    /// `float64`: always `0xcb` and 8 bytes.
    Float,
    /// `[]byte`: bin.
    Bytes,
    /// `map[string]string`.
    StrMap,
    /// `[]string`.
    StrList,
    /// A nested struct (written as a map with its own short keys).
    Struct(&'static Schema),
}

/// One field of a payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    /// The msgpack key on the wire, e.g. `p`.
    pub key: &'static str,
    /// The readable name, e.g. `path`.
    pub name: &'static str,
    /// The Go type.
    pub ty: Ty,
    /// Left out by prox's encoder when zero.
    pub omitempty: bool,
}

/// A payload type: a Go struct encoded as a map with string keys, fields in
/// declaration order.
#[derive(Debug, PartialEq, Eq)]
pub struct Schema {
    /// The Go type's name in prox, for messages.
    pub name: &'static str,
    /// Its fields, in declaration (and so wire) order.
    pub fields: &'static [Field],
}

const fn f(key: &'static str, name: &'static str, ty: Ty) -> Field {
    Field {
        key,
        name,
        ty,
        omitempty: false,
    }
}

const fn opt(key: &'static str, name: &'static str, ty: Ty) -> Field {
    Field {
        key,
        name,
        ty,
        omitempty: true,
    }
}

/// `on_request`'s payload, also `req` of `on_response`'s.
pub static REQUEST_INFO: Schema = Schema {
    name: "RequestInfo",
    fields: &[
        f("r", "route_id", Ty::Str),
        f("m", "method", Ty::Str),
        f("p", "path", Ty::Str),
        opt("q", "query", Ty::Str),
        f("d", "domain", Ty::Str),
        opt("ho", "host", Ty::Str),
        opt("pr", "proto", Ty::Str),
        f("a", "remote_addr", Ty::Str),
        opt("cl", "content_length", Ty::Int64),
        f("h", "headers", Ty::StrMap),
        opt("bd", "body", Ty::Bytes),
        opt("md", "match_domain", Ty::Str),
        opt("mg", "match_glob", Ty::Str),
        opt("mp", "match_path", Ty::Str),
        opt("v", "vars", Ty::StrMap),
        opt("tg", "target", Ty::Str),
    ],
};

/// `sp` of an `on_request` verdict.
pub static SPEED_LIMIT: Schema = Schema {
    name: "SpeedLimit",
    fields: &[
        opt("dl", "download_mbps", Ty::Float),
        opt("ul", "upload_mbps", Ty::Float),
        opt("gk", "group_key", Ty::Str),
    ],
};

/// The verdict answering `on_request`. A missing `ok` reads as deny.
pub static AUTHORIZE_RESULT: Schema = Schema {
    name: "AuthorizeResult",
    fields: &[
        f("ok", "allow", Ty::Bool),
        opt("dr", "drop", Ty::Bool),
        opt("fb", "fallback", Ty::Bool),
        opt("s", "status", Ty::Int),
        opt("b", "body", Ty::Str),
        opt("h", "headers", Ty::StrMap),
        opt("sp", "speed_limit", Ty::Struct(&SPEED_LIMIT)),
        opt("cq", "clean_query", Ty::Bool),
        opt("rp", "rewrite_path", Ty::Str),
    ],
};

/// `resp` of `on_response`'s payload: the upstream status and headers.
pub static UPSTREAM_RESPONSE: Schema = Schema {
    name: "UpstreamResponseInfo",
    fields: &[f("s", "status", Ty::Int), f("h", "headers", Ty::StrMap)],
};

/// `on_response`'s payload.
pub static RESPONSE_PAIR: Schema = Schema {
    name: "ResponsePair",
    fields: &[
        f("req", "request", Ty::Struct(&REQUEST_INFO)),
        f("resp", "response", Ty::Struct(&UPSTREAM_RESPONSE)),
    ],
};

/// The changes answering `on_response`.
pub static RESPONSE_MOD: Schema = Schema {
    name: "ResponseModResult",
    fields: &[
        opt("s", "status", Ty::Int),
        opt("h", "headers", Ty::StrMap),
        opt("rm", "remove", Ty::StrList),
    ],
};

/// `on_connect`'s payload; `d` is the SNI.
pub static CONN_INFO: Schema = Schema {
    name: "ConnInfo",
    fields: &[
        f("r", "route_id", Ty::Str),
        f("d", "domain", Ty::Str),
        f("a", "remote_addr", Ty::Str),
        opt("md", "match_domain", Ty::Str),
        opt("mg", "match_glob", Ty::Str),
    ],
};

/// The verdict answering `on_connect`.
pub static CONN_RESULT: Schema = Schema {
    name: "ConnResult",
    fields: &[f("ok", "allow", Ty::Bool)],
};

/// `on_disconnect`'s payload.
pub static DISCONNECT_INFO: Schema = Schema {
    name: "DisconnectInfo",
    fields: &[
        f("r", "route_id", Ty::Str),
        opt("tg", "target", Ty::Str),
        f("a", "remote_addr", Ty::Str),
        f("rx", "bytes_rx", Ty::Int64),
        f("tx", "bytes_tx", Ty::Int64),
        f("ms", "duration_ms", Ty::Int64),
    ],
};

impl Schema {
    /// The field with this wire key.
    pub fn by_key(&'static self, key: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.key == key)
    }

    /// The field with this wire key or readable name.
    pub fn field(&'static self, key_or_name: &str) -> Option<&'static Field> {
        self.fields
            .iter()
            .find(|f| f.key == key_or_name || f.name == key_or_name)
    }

    /// `key/name, ...` for messages.
    pub fn describe_fields(&self) -> String {
        self.fields
            .iter()
            .map(|f| format!("{}/{}", f.key, f.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `value` (an object with readable names or short keys, as a spec
    /// writes it) with short keys throughout, nested structs included.
    /// Keys neither spelling knows, and a field given twice, are errors
    /// naming `at`.
    pub fn to_short(&'static self, value: &Json, at: &str) -> Result<Json, String> {
        let Json::Object(obj) = value else {
            return Ok(value.clone());
        };
        if is_tag(obj) {
            return Ok(value.clone());
        }
        let mut out = Map::new();
        for (k, v) in obj {
            let field = self.field(k).ok_or_else(|| {
                format!(
                    "{at}: `{k}` is not a field of prox's {} (fields: {})",
                    self.name,
                    self.describe_fields()
                )
            })?;
            if out.contains_key(field.key) {
                return Err(format!(
                    "{at}: `{}` is given twice (as `{}` and `{}`)",
                    field.name, field.key, field.name
                ));
            }
            let v = match field.ty {
                Ty::Struct(inner) => inner.to_short(v, &format!("{at}.{}", field.name))?,
                _ => v.clone(),
            };
            out.insert(field.key.to_owned(), v);
        }
        Ok(Json::Object(out))
    }

    /// `value` (short keys, as decoded) with readable names, nested structs
    /// included. Keys the type does not have are kept as they are.
    pub fn readable(&'static self, value: &Json) -> Json {
        let Json::Object(obj) = value else {
            return value.clone();
        };
        if is_tag(obj) {
            return value.clone();
        }
        let mut out = Map::new();
        for (k, v) in obj {
            match self.by_key(k) {
                Some(field) => {
                    let v = match field.ty {
                        Ty::Struct(inner) => inner.readable(v),
                        _ => v.clone(),
                    };
                    out.insert(field.name.to_owned(), v);
                }
                None => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        Json::Object(out)
    }
}

/// A one-key object whose key starts with `$` is a tag of the lossless
/// mapping (`{"$bin": ...}`), not a map.
fn is_tag(obj: &Map<String, Json>) -> bool {
    obj.len() == 1 && obj.keys().all(|k| k.starts_with('$'))
}
