//! Deserialising a spec's repeated shapes from lenient JSON: reply
//! entries, notifications, steps with their `expect`, and `start_cmd`.
//!
//! Each is written either as an array (`["method", params]`) or as an
//! object; [`SeqOrMap`] reads both without `#[serde(untagged)]`, so errors
//! keep their line and column and unknown keys are still reported (see
//! [`super::load`]).

use std::fmt;
use std::marker::PhantomData;

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

use super::{Entry, Expect, ExpectError, Notification, PdkStep, StartCmd, Step};

/// `Some(value)` even for `null`, so "absent" and "null" differ.
fn present<'de, D: de::Deserializer<'de>>(d: D) -> Result<Option<Json>, D::Error> {
    Json::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(rename = "return")]
    ret: Option<(Json, Json)>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Json>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Json>,
    #[serde(rename = "match")]
    matcher: Option<Json>,
    #[serde(default)]
    exact: bool,
    #[serde(default)]
    notify: Vec<Notification>,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    pdk: Vec<PdkStep>,
    #[serde(default)]
    close: bool,
    garbage: Option<super::faults::Garbage>,
    truncate: Option<super::faults::Truncate>,
    wrong_msgid: Option<super::faults::WrongMsgid>,
    #[serde(default)]
    no_reply: bool,
    #[serde(default)]
    crash: bool,
    calls: Option<Vec<u64>>,
    probability: Option<f64>,
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawEntry::deserialize(d)?;
        let (error, result) = match (raw.ret, raw.error, raw.result) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(de::Error::custom(
                    "an entry has either `return` or `error`/`result`, not both",
                ));
            }
            (Some((error, result)), None, None) => (error, result),
            (None, None, None) => (Json::from("not implemented"), Json::Null),
            (None, error, result) => (error.unwrap_or(Json::Null), result.unwrap_or(Json::Null)),
        };
        let (faults, when) = super::faults::RawFaults {
            close: raw.close,
            garbage: raw.garbage,
            truncate: raw.truncate,
            wrong_msgid: raw.wrong_msgid,
            no_reply: raw.no_reply,
            crash: raw.crash,
            calls: raw.calls,
            probability: raw.probability,
        }
        .build()?;
        if raw.exact && raw.matcher.is_none() {
            return Err(de::Error::custom("`exact` needs a `match`"));
        }
        Ok(Entry {
            matcher: raw.matcher,
            exact: raw.exact,
            error,
            result,
            notify: raw.notify,
            delay_ms: raw.delay_ms,
            pdk: raw.pdk,
            faults,
            when,
        })
    }
}

#[derive(Deserialize)]
struct RawNotification {
    method: String,
    #[serde(default)]
    params: Json,
}

impl<'de> Deserialize<'de> for Notification {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let form = d.deserialize_any(SeqOrMap::<(String, Json), RawNotification>::new(
            "a notification: [\"method\", params] or {\"method\": ..., \"params\": ...}",
        ))?;
        Ok(match form {
            Form::Seq((method, params)) => Notification { method, params },
            Form::Map(RawNotification { method, params }) => Notification { method, params },
        })
    }
}

#[derive(Deserialize)]
struct RawStep {
    name: Option<String>,
    method: String,
    #[serde(default = "empty_params")]
    params: Json,
    expect: Option<RawExpect>,
    #[serde(default)]
    capture: IndexMap<String, String>,
    conn: Option<u64>,
}

fn empty_params() -> Json {
    Json::Array(vec![])
}

#[derive(Deserialize)]
struct RawExpect {
    #[serde(default, deserialize_with = "present")]
    error: Option<Json>,
    result: Option<Json>,
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let form = d.deserialize_any(SeqOrMap::<(String, Json), RawStep>::new(
            "a step: [\"method\", params] or {\"method\": ..., \"params\": ..., \"expect\": ...}",
        ))?;
        Ok(match form {
            Form::Seq((method, params)) => Step {
                name: None,
                method,
                params,
                expect: None,
                capture: IndexMap::new(),
                conn: None,
            },
            Form::Map(raw) => Step {
                name: raw.name,
                method: raw.method,
                params: raw.params,
                expect: raw.expect.map(expect).transpose()?,
                capture: raw.capture,
                conn: raw.conn,
            },
        })
    }
}

fn expect<E: de::Error>(raw: RawExpect) -> Result<Expect, E> {
    let error = match raw.error {
        None => None,
        Some(Json::Null | Json::Bool(false)) => Some(ExpectError::None),
        Some(Json::Bool(true)) => Some(ExpectError::Any),
        Some(Json::String(s)) => Some(ExpectError::Contains(s)),
        Some(other) => {
            return Err(E::custom(format!(
                "expect.error must be null (success), true (any error) or a string the error contains, not {other}"
            )));
        }
    };
    Ok(Expect {
        error,
        result: raw.result,
    })
}

impl<'de> Deserialize<'de> for StartCmd {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StartCmd;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a command: a string for the shell, or a list of arguments")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StartCmd, E> {
                if s.trim().is_empty() {
                    return Err(E::custom("start_cmd is empty"));
                }
                Ok(StartCmd::Shell(s.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<StartCmd, A::Error> {
                let argv = Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                if argv.is_empty() {
                    return Err(de::Error::custom("start_cmd is an empty list"));
                }
                Ok(StartCmd::Argv(argv))
            }
        }
        d.deserialize_any(V)
    }
}

/// Which of two written forms a value used.
enum Form<S, M> {
    Seq(S),
    Map(M),
}

/// Deserializes an array into `S` or an object into `M`, keeping positions
/// and unknown-key tracking (unlike `#[serde(untagged)]`).
struct SeqOrMap<S, M> {
    expecting: &'static str,
    _forms: PhantomData<(S, M)>,
}

impl<S, M> SeqOrMap<S, M> {
    fn new(expecting: &'static str) -> Self {
        SeqOrMap {
            expecting,
            _forms: PhantomData,
        }
    }
}

impl<'de, S: Deserialize<'de>, M: Deserialize<'de>> Visitor<'de> for SeqOrMap<S, M> {
    type Value = Form<S, M>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        S::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Form::Seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        M::deserialize(de::value::MapAccessDeserializer::new(map)).map(Form::Map)
    }
}
