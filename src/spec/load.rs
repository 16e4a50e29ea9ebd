//! Reading spec text: lenient JSON, positions in errors, warnings for
//! unknown keys, and checks that need the whole spec.
//!
//! Parsing goes straight from text into typed structs through
//! `serde_json_lenient` (comments and trailing commas allowed), so syntax
//! errors *and* type errors ("unknown variant `sever`") carry the line and
//! column where they were found. `serde_ignored` reports every key the
//! structs do not consume.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

use super::template;
use super::{
    ClientSpec, Cycle, Entry, Expect, ExpectError, Notification, PdkStep, ProxSpec, ProxySpec,
    Role, ServerSpec, Spec, StartCmd, Step,
};
use crate::protocol::Protocol;
use crate::value_json;

/// A spec that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// File name, or `<stdin>`.
    pub file: String,
    /// 1-based line and column, when the error has a position.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Loads a spec file.
pub fn load_file(path: &Path) -> Result<Spec, SpecError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SpecError {
        file: source.clone(),
        position: None,
        message: format!("cannot read spec: {e}"),
    })?;
    load_str(&text, &source)
}

/// Loads a spec from a reader (standard input).
pub fn load_reader(mut reader: impl std::io::Read, source: &str) -> Result<Spec, SpecError> {
    let mut text = String::new();
    reader.read_to_string(&mut text).map_err(|e| SpecError {
        file: source.into(),
        position: None,
        message: format!("cannot read spec: {e}"),
    })?;
    load_str(&text, source)
}

/// Loads a spec from text; `source` names it in messages.
pub fn load_str(text: &str, source: &str) -> Result<Spec, SpecError> {
    let mut de = serde_json_lenient::Deserializer::from_str(text);
    let mut unknown = Vec::new();
    // serde_ignored writes `?` for an `Option` level; it means nothing to users.
    let raw: RawSpec = serde_ignored::deserialize(&mut de, |path| {
        unknown.push(path.to_string().replace(".?", ""))
    })
    .map_err(|e| positioned(source, &e))?;
    de.end().map_err(|e| positioned(source, &e))?;

    let mut spec = Spec {
        source: source.to_owned(),
        version: raw.version.unwrap_or(1),
        protocol: raw.protocol.unwrap_or_default(),
        socket: raw.socket,
        role: raw.role,
        server: ServerSpec {
            on_methods: raw.on_methods.unwrap_or_default(),
            on_connect: raw.on_connect.unwrap_or_default(),
            cycle: raw.cycle.unwrap_or_default(),
            seed: raw.seed.unwrap_or(0),
        },
        proxy: ProxySpec {
            upstream: raw.upstream,
            record: raw.record,
            redact: raw.redact.unwrap_or_default(),
            strict: raw.strict.unwrap_or_default(),
            start_cmd: raw.start_cmd.clone(),
            mode: raw.mode.unwrap_or_default(),
        },
        client: ClientSpec {
            try_methods: raw.try_methods.unwrap_or_default(),
            start_cmd: raw.start_cmd,
            on_pdk: raw.on_pdk.unwrap_or_default(),
            kong: raw.kong,
        },
        prox: raw.prox.unwrap_or_default(),
        warnings: unknown
            .into_iter()
            .map(|k| format!("unknown key `{k}` is ignored"))
            .collect(),
    };
    if spec.version != 1 {
        return Err(plain(
            source,
            format!("spec version {} is not supported (only 1)", spec.version),
        ));
    }
    check(&mut spec).map_err(|m| plain(source, m))?;
    Ok(spec)
}

/// Checks that need the whole spec: values map to the protocol, captures
/// are defined before use. Adds warnings for keys the role will not use.
fn check(spec: &mut Spec) -> Result<(), String> {
    let Spec { server, client, .. } = &*spec;
    let mut values: Vec<(String, &Json)> = Vec::new();
    for (method, entries) in &server.on_methods {
        for (i, e) in entries.iter().enumerate() {
            let at = format!("on_methods[{method:?}][{i}]");
            values.push((format!("{at}.error"), &e.error));
            values.push((format!("{at}.result"), &e.result));
            for (j, n) in e.notify.iter().enumerate() {
                values.push((format!("{at}.notify[{j}]"), &n.params));
            }
        }
    }
    for (i, n) in server.on_connect.iter().enumerate() {
        values.push((format!("on_connect[{i}]"), &n.params));
    }
    let mut defined: Vec<&str> = template::BUILTINS.to_vec();
    for (i, step) in client.try_methods.iter().enumerate() {
        values.push((format!("try_methods[{i}].params"), &step.params));
        let expected = step.expect.as_ref().and_then(|e| e.result.as_ref());
        let mut refs = template::references(&step.params);
        refs.extend(expected.map(template::references).unwrap_or_default());
        for name in refs {
            if !defined.contains(&name.as_str()) {
                return Err(format!(
                    "try_methods[{i}] ({}) uses ${{{name}}}, but no earlier step captures `{name}`",
                    step.method
                ));
            }
        }
        for (name, path) in &step.capture {
            template::parse_path(path)
                .map_err(|e| format!("try_methods[{i}].capture.{name}: {e}"))?;
            defined.push(name);
        }
    }
    for (at, value) in values {
        // `${...}` placeholders are strings, so they map fine before substitution.
        value_json::from_json(value).map_err(|e| format!("{at}: {}", e.reason_at()))?;
    }

    if let Some(k) = &client.kong {
        super::kong::validate(k)?;
        if !client.try_methods.is_empty() {
            return Err("a client spec has `try_methods` or `kong`, not both".into());
        }
    }

    let role = spec.role;
    let mut unused = Vec::new();
    if role == Some(Role::Client) {
        if !spec.server.on_methods.is_empty() {
            unused.push(("on_methods", Role::Server));
        }
        if !spec.server.on_connect.is_empty() {
            unused.push(("on_connect", Role::Server));
        }
    }
    if role == Some(Role::Server) {
        if !spec.client.try_methods.is_empty() {
            unused.push(("try_methods", Role::Client));
        }
        if spec.client.start_cmd.is_some() {
            unused.push(("start_cmd", Role::Client));
        }
        if spec.client.kong.is_some() {
            unused.push(("kong", Role::Client));
        }
        if !spec.client.on_pdk.is_empty() {
            unused.push(("on_pdk", Role::Client));
        }
    }
    let has_pdk = spec
        .server
        .on_methods
        .values()
        .flatten()
        .any(|e| !e.pdk.is_empty());
    if spec.protocol != Protocol::ProtoBuf1 && (has_pdk || !spec.client.on_pdk.is_empty()) {
        spec.warnings.push(format!(
            "`pdk` and `on_pdk` are only used with \"protocol\": \"{}\" (or --protocol)",
            Protocol::ProtoBuf1
        ));
    }
    if spec.protocol != Protocol::MsgPack1
        && spec.client.try_methods.iter().any(|s| s.conn.is_some())
    {
        spec.warnings.push(format!(
            "step `conn` labels are only used with \"protocol\": \"{}\"; all steps run on one connection",
            Protocol::MsgPack1
        ));
    }
    if spec.protocol != Protocol::Prox && spec.prox != ProxSpec::default() {
        spec.warnings.push(format!(
            "`prox` is only used with \"protocol\": \"{}\" (or --protocol)",
            Protocol::Prox
        ));
    }
    let proxy_keys = [
        ("upstream", spec.proxy.upstream.is_some()),
        ("record", spec.proxy.record.is_some()),
        ("redact", !spec.proxy.redact.is_empty()),
        ("strict", spec.proxy.strict),
        ("mode", spec.proxy.mode != super::ProxyMode::Record),
    ];
    if matches!(role, Some(Role::Client | Role::Server)) {
        for (key, present) in proxy_keys {
            if present {
                unused.push((key, Role::Proxy));
            }
        }
    }
    if role == Some(Role::Proxy) {
        if !spec.server.on_methods.is_empty() && spec.proxy.mode == super::ProxyMode::Record {
            unused.push(("on_methods", Role::Server));
        }
        if !spec.client.try_methods.is_empty() {
            unused.push(("try_methods", Role::Client));
        }
    }
    for (key, used_by) in unused {
        spec.warnings.push(format!(
            "`{key}` is only used by the {} role and is ignored here",
            used_by.name()
        ));
    }
    Ok(())
}

impl value_json::MappingError {
    fn reason_at(&self) -> String {
        if self.path == "$" {
            self.reason.clone()
        } else {
            format!("{}: {}", self.path.trim_start_matches('$'), self.reason)
        }
    }
}

fn positioned(source: &str, e: &serde_json_lenient::Error) -> SpecError {
    let (line, col) = (e.line(), e.column());
    let text = e.to_string();
    let suffix = format!(" at line {line} column {col}");
    let message = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    SpecError {
        file: source.to_owned(),
        position: (line > 0).then_some((line, col)),
        message,
    }
}

fn plain(source: &str, message: String) -> SpecError {
    SpecError {
        file: source.to_owned(),
        position: None,
        message,
    }
}

// ---- the raw, serde-facing shapes ----------------------------------------

#[derive(Deserialize)]
struct RawSpec {
    version: Option<u32>,
    protocol: Option<Protocol>,
    socket: Option<PathBuf>,
    role: Option<Role>,
    on_methods: Option<IndexMap<String, Vec<Entry>>>,
    on_connect: Option<Vec<Notification>>,
    cycle: Option<Cycle>,
    seed: Option<u64>,
    try_methods: Option<Vec<Step>>,
    start_cmd: Option<StartCmd>,
    on_pdk: Option<IndexMap<String, Vec<Entry>>>,
    upstream: Option<PathBuf>,
    record: Option<PathBuf>,
    redact: Option<Vec<String>>,
    strict: Option<bool>,
    mode: Option<super::ProxyMode>,
    kong: Option<super::kong::KongSpec>,
    prox: Option<ProxSpec>,
}

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
