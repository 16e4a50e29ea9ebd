//! Kong's values on the `MsgPack:1` wire: what lua-MessagePack makes of
//! the Lua tables Kong builds (reference §2.2).
//!
//! * Lua has one string type, so binary data becomes a str unless Kong
//!   forces bin (`fix_raw`, [`Answer::Raw`]).
//! * An empty Lua table packs as an empty **array**; only `fix_mmap`
//!   results stay explicit empty maps ([`Answer::MultiMap`]).
//! * A nil field disappears from its map: a Step with a nil result has no
//!   `Data` key.
//!
//! Integer and string encodings are the encoder's business
//! ([`crate::codec::kong_style`]).

use rmpv::Value as Mp;
use serde_json::Value as Json;

use crate::kong::step::Answer;
use crate::value_json;

/// A JSON value (lossless mapping) as Kong would pack the Lua value it
/// decodes to.
pub fn lua_value(v: &Json) -> Mp {
    value_json::from_json(v).map_or(Mp::Nil, lua_shape)
}

fn lua_shape(v: Mp) -> Mp {
    match v {
        Mp::Binary(b) => value_json::raw_string(&b),
        Mp::Map(pairs) if pairs.is_empty() => Mp::Array(vec![]),
        Mp::Map(pairs) => Mp::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (lua_shape(k), lua_shape(v)))
                .collect(),
        ),
        Mp::Array(items) => Mp::Array(items.into_iter().map(lua_shape).collect()),
        other => other,
    }
}

/// The `Data` of a Step carrying `answer`; `None` leaves the key out.
pub fn data_of(answer: &Answer) -> Option<Mp> {
    match answer {
        Answer::Nil => None,
        Answer::Value(v) => Some(lua_value(v)),
        Answer::MultiMap(map) => Some(Mp::Map(
            map.iter()
                .map(|(k, v)| (Mp::from(k.as_str()), lua_value(v)))
                .collect(),
        )),
        Answer::Raw(bytes) => Some(Mp::Binary(bytes.clone())),
    }
}

/// A map from string keys, leaving out nil values as Lua does.
pub fn table(fields: Vec<(&str, Mp)>) -> Mp {
    Mp::Map(
        fields
            .into_iter()
            .filter(|(_, v)| !v.is_nil())
            .map(|(k, v)| (Mp::from(k), v))
            .collect(),
    )
}

/// Looks up a string key in a msgpack map.
pub fn field<'a>(map: &'a Mp, key: &str) -> Option<&'a Mp> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lua_tables() {
        assert_eq!(lua_value(&json!({})), Mp::Array(vec![]));
        assert_eq!(
            lua_value(&json!({"unnamed": [], "named": {}})),
            Mp::Map(vec![
                ("unnamed".into(), Mp::Array(vec![])),
                ("named".into(), Mp::Array(vec![]))
            ])
        );
        assert_eq!(
            lua_value(&json!({"$bin": "/w=="})),
            value_json::raw_string(&[0xff])
        );
        let empty = Answer::MultiMap(Default::default());
        assert_eq!(data_of(&empty), Some(Mp::Map(vec![])));
        assert_eq!(data_of(&Answer::Nil), None);
        assert_eq!(data_of(&Answer::Raw(vec![1])), Some(Mp::Binary(vec![1])));
        assert_eq!(
            table(vec![("EventId", Mp::from(0)), ("Data", Mp::Nil)]),
            Mp::Map(vec![("EventId".into(), Mp::from(0))])
        );
    }
}
