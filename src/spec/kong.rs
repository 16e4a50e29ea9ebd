//! The `kong` section of a client spec: run requests through a plugin the
//! way Kong would.
//!
//! ```json
//! {"role": "client", "socket": "hello.sock",
//!  "kong": {"plugin": "hello_peer", "config": {"greeting": "hi"}, "phases": ["access"]}}
//! ```
//!
//! Everything but `plugin` has a default: one `GET http://localhost:8000/`
//! request through the `access` phase, PDK calls answered from that
//! request (see [`crate::kong::pdk`]). The other keys tune the request, the
//! upstream's response, canned PDK answers, Kong's ids and the number of
//! requests. Values are JSON in the lossless mapping of
//! [`crate::value_json`].

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::Value as Json;

/// The phases Kong runs external plugins in, in the order it runs them.
pub const PHASES: &[&str] = &[
    "certificate",
    "rewrite",
    "access",
    "response",
    "preread",
    "log",
];

/// Most requests one run may make (each is kept in the report).
pub const MAX_REQUESTS: u32 = 100_000;

/// The `kong` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KongSpec {
    /// Plugin name, as the server knows it (`StartInstance`'s `Name`).
    pub plugin: String,
    /// The plugin's configuration (schema fields); Kong adds its own keys.
    #[serde(default = "empty_object")]
    pub config: Json,
    /// Phases to run for each request, in Kong's order.
    #[serde(default = "default_phases")]
    pub phases: Vec<String>,
    /// The client's request; unset fields take defaults.
    #[serde(default)]
    pub request: RequestSpec,
    /// What the upstream service answers (for `kong.service.response.*`
    /// and the response and log phases).
    #[serde(default)]
    pub response: UpstreamSpec,
    /// How many requests to run (a number), or one entry per request with
    /// fields that differ from `request` (and optionally a new `config`).
    #[serde(default)]
    pub requests: Requests,
    /// Canned PDK answers, per PDK method; they take precedence over the
    /// defaults.
    #[serde(default)]
    pub pdk: IndexMap<String, CannedList>,
    /// Kong's ids for the plugin entity (they go into the config JSON).
    #[serde(default)]
    pub ids: IdsSpec,
    /// `__seq__` of the first config (Kong's plugins-iterator counter).
    #[serde(default = "one")]
    pub seq: u64,
    /// How many times one event may be retried after a `no plugin
    /// instance` error (Kong retries without limit).
    #[serde(default = "three")]
    pub max_resets: u32,
    /// Partial deep match on the run's outcome (`requests[i].response`,
    /// `requests[i].calls`, ...), checked at the end.
    pub expect: Option<Json>,
}

/// An HTTP request as the PDK sees it. Every field is optional; in
/// `requests` entries, unset fields keep the `request` value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RequestSpec {
    /// `http` or `https`.
    pub scheme: Option<String>,
    /// Host name, without port.
    pub host: Option<String>,
    /// Port Kong listens on.
    pub port: Option<u16>,
    /// HTTP method.
    pub method: Option<String>,
    /// Path, without the query string.
    pub path: Option<String>,
    /// Raw query string, without `?` (`a=1&a=2&flag`).
    pub query: Option<String>,
    /// Request headers: name -> string or list of strings.
    pub headers: Option<IndexMap<String, Json>>,
    /// Raw body: a string, or `{"$bin": "<base64>"}`.
    pub body: Option<Json>,
    /// Client address.
    pub client_ip: Option<String>,
    /// Client port.
    pub client_port: Option<u16>,
    /// In `requests` entries only: the plugin's config from this request
    /// on (a config change, so a new `__seq__`).
    pub config: Option<Json>,
}

/// The upstream service's response.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct UpstreamSpec {
    /// Status code (default 200).
    pub status: Option<u16>,
    /// Headers: name -> string or list of strings.
    pub headers: Option<IndexMap<String, Json>>,
    /// Raw body: a string or `{"$bin": ...}`.
    pub body: Option<Json>,
}

/// Kong's ids for the plugin entity.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct IdsSpec {
    /// The plugin entity's id (`__plugin_id`).
    pub plugin_id: Option<String>,
    /// Workspace id (`__ws_id`).
    pub ws_id: Option<String>,
    /// Route the plugin is attached to.
    pub route_id: Option<String>,
    /// Service the plugin is attached to.
    pub service_id: Option<String>,
    /// Consumer the plugin is attached to.
    pub consumer_id: Option<String>,
    /// `instance_name` of the plugin entity.
    pub instance_name: Option<String>,
}

/// The `requests` key: a count or one entry per request.
#[derive(Debug, Clone, PartialEq)]
pub enum Requests {
    /// Run the `request` this many times.
    Count(u32),
    /// One request per entry, each overriding fields of `request`.
    List(Vec<RequestSpec>),
}

impl Default for Requests {
    fn default() -> Self {
        Requests::Count(1)
    }
}

/// Canned answers for one PDK method: a list of entries, or one entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CannedList(pub Vec<CannedEntry>);

/// One canned answer rule.
#[derive(Debug, Clone, PartialEq)]
pub struct CannedEntry {
    /// Partial deep match on the call's `Args` (an array); `None` matches
    /// every call.
    pub matcher: Option<Json>,
    /// Answers for successive matching calls; the last one repeats. `null`
    /// is nil (Kong then sends no `Data`).
    pub answers: Vec<Json>,
}

#[derive(Deserialize)]
struct RawCanned {
    #[serde(rename = "match")]
    matcher: Option<Json>,
    #[serde(default, deserialize_with = "present")]
    answer: Option<Json>,
    answers: Option<Vec<Json>>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Json>, D::Error> {
    Json::deserialize(d).map(Some)
}

impl<'de> Deserialize<'de> for CannedEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawCanned::deserialize(d)?;
        let answers = match (raw.answer, raw.answers) {
            (Some(a), None) => vec![a],
            (None, Some(list)) if !list.is_empty() => list,
            (None, Some(_)) => return Err(de::Error::custom("`answers` is an empty list")),
            (Some(_), Some(_)) => {
                return Err(de::Error::custom(
                    "a canned answer has `answer` or `answers`, not both",
                ));
            }
            (None, None) => {
                return Err(de::Error::custom(
                    "a canned answer needs `answer` (one value) or `answers` (a sequence)",
                ));
            }
        };
        Ok(CannedEntry {
            matcher: raw.matcher,
            answers,
        })
    }
}

impl<'de> Deserialize<'de> for CannedList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = CannedList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a canned answer {\"answer\": ...} or a list of them")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<CannedList, A::Error> {
                Vec::<CannedEntry>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(CannedList)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<CannedList, A::Error> {
                CannedEntry::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|e| CannedList(vec![e]))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Requests {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Requests;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of requests, or a list of request objects")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Requests, E> {
                match u32::try_from(n) {
                    Ok(n) if (1..=MAX_REQUESTS).contains(&n) => Ok(Requests::Count(n)),
                    _ => Err(E::custom(format!(
                        "requests must be between 1 and {MAX_REQUESTS}, not {n}"
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Requests, E> {
                Err(E::custom(format!("requests must be 1 or more, not {n}")))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Requests, A::Error> {
                let list =
                    Vec::<RequestSpec>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                if list.is_empty() {
                    return Err(de::Error::custom("requests is an empty list"));
                }
                if list.len() > MAX_REQUESTS as usize {
                    return Err(de::Error::custom(format!(
                        "requests has more than {MAX_REQUESTS} entries"
                    )));
                }
                Ok(Requests::List(list))
            }
        }
        d.deserialize_any(V)
    }
}

fn empty_object() -> Json {
    Json::Object(Default::default())
}

fn default_phases() -> Vec<String> {
    vec!["access".into()]
}

fn one() -> u64 {
    1
}

fn three() -> u32 {
    3
}

/// Checks that need the whole section; errors name the key (`kong.phases[1]`).
pub fn validate(k: &KongSpec) -> Result<(), String> {
    if k.plugin.trim().is_empty() {
        return Err("kong.plugin is empty".into());
    }
    if !k.config.is_object() {
        return Err("kong.config must be an object (the plugin's configuration)".into());
    }
    if k.phases.is_empty() {
        return Err("kong.phases is empty".into());
    }
    for (i, p) in k.phases.iter().enumerate() {
        if !PHASES.contains(&p.as_str()) {
            return Err(format!(
                "kong.phases[{i}]: unknown phase {p:?} (Kong's phases: {})",
                PHASES.join(", ")
            ));
        }
        if k.phases[..i].contains(p) {
            return Err(format!("kong.phases[{i}]: {p:?} is listed twice"));
        }
    }
    if k.request.config.is_some() {
        return Err(
            "kong.request.config: the config goes in kong.config (or in a kong.requests entry)"
                .into(),
        );
    }
    check_request(&k.request, "kong.request")?;
    if let Requests::List(list) = &k.requests {
        for (i, r) in list.iter().enumerate() {
            check_request(r, &format!("kong.requests[{i}]"))?;
            if let Some(c) = &r.config
                && !c.is_object()
            {
                return Err(format!("kong.requests[{i}].config must be an object"));
            }
        }
    }
    check_headers(k.response.headers.as_ref(), "kong.response.headers")?;
    check_body(k.response.body.as_ref(), "kong.response.body")?;
    if let Some(s) = k.response.status
        && !(100..=999).contains(&s)
    {
        return Err(format!("kong.response.status: {s} is not an HTTP status"));
    }
    for (method, list) in &k.pdk {
        if !method.starts_with("kong.") {
            return Err(format!(
                "kong.pdk: {method:?} is not a PDK method (they start with `kong.`)"
            ));
        }
        for (i, e) in list.0.iter().enumerate() {
            for (j, a) in e.answers.iter().enumerate() {
                crate::value_json::from_json(a)
                    .map_err(|err| format!("kong.pdk[{method:?}][{i}].answers[{j}]: {err}"))?;
            }
        }
    }
    Ok(())
}

fn check_request(r: &RequestSpec, at: &str) -> Result<(), String> {
    check_headers(r.headers.as_ref(), &format!("{at}.headers"))?;
    check_body(r.body.as_ref(), &format!("{at}.body"))?;
    if let Some(s) = &r.scheme
        && s != "http"
        && s != "https"
    {
        return Err(format!("{at}.scheme: {s:?} is not http or https"));
    }
    if let Some(p) = &r.path
        && !p.starts_with('/')
    {
        return Err(format!("{at}.path: {p:?} does not start with /"));
    }
    if let Some(q) = &r.query
        && q.starts_with('?')
    {
        return Err(format!(
            "{at}.query: write the query without the leading `?`"
        ));
    }
    Ok(())
}

fn check_headers(h: Option<&IndexMap<String, Json>>, at: &str) -> Result<(), String> {
    for (name, value) in h.into_iter().flatten() {
        let ok = match value {
            Json::String(_) => true,
            Json::Array(items) => items.iter().all(Json::is_string),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "{at}[{name:?}]: a header value is a string or a list of strings, not {value}"
            ));
        }
    }
    Ok(())
}

fn check_body(b: Option<&Json>, at: &str) -> Result<(), String> {
    match b {
        None | Some(Json::String(_)) => Ok(()),
        Some(v) if v.get("$bin").is_some() => crate::value_json::from_json(v)
            .map(drop)
            .map_err(|e| format!("{at}: {e}")),
        Some(v) => Err(format!(
            "{at}: a body is a string or {{\"$bin\": \"<base64>\"}}, not {v}"
        )),
    }
}
