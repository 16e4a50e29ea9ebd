//! go-plugin specs: what the mock plugin answers and what the stand-in
//! host calls. JSON with comments and trailing commas allowed, errors with
//! `file:line:column`, unknown keys reported as warnings.
//!
//! ```json
//! {
//!   "protocol": "go-plugin",
//!   "role": "server",
//!   "handshake": {"magic_cookie_key": "BASIC_PLUGIN", "magic_cookie_value": "hello", "app_versions": [1]},
//!   "schema": {"proto": ["kv.proto"]},
//!   "services": {"proto.KV": {"Get": [{"match": {"key": "a"}, "response": {"value": "aGk="}},
//!                                     {"status": "NOT_FOUND", "message": "no such key"}]}}
//! }
//! ```
//!
//! Messages are written as protobuf JSON when a schema knows the method
//! (`response`, `request`), or as raw fields in the form
//! [`super::wire`] prints (`response_raw`, `request_raw`), or as hex
//! (`response_hex`, `request_hex`). Paths in `schema` are relative to the
//! spec file.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value as Json;

use super::grpc::status_from_json;
use super::schema::Schemas;
use crate::spec::{Role, SpecError, StartCmd};

/// A loaded go-plugin spec.
#[derive(Debug, Clone)]
pub struct GoSpec {
    /// Where it came from.
    pub source: String,
    /// The role it names.
    pub role: Option<Role>,
    /// Handshake settings.
    pub handshake: HandshakeSpec,
    /// Schemas from the spec's `schema` section (plus the built-ins).
    pub schemas: Schemas,
    /// Socket path for the mock (default: a fresh `plugin<digits>` in the
    /// socket dir).
    pub socket: Option<PathBuf>,
    /// Mock replies: service -> method -> entries.
    pub services: IndexMap<String, IndexMap<String, Vec<Entry>>>,
    /// What the mock sends on `GRPCStdio/StreamStdio`.
    pub stdio: Vec<StdioLine>,
    /// The plugin the host starts.
    pub start_cmd: Option<StartCmd>,
    /// The host's calls.
    pub calls: Vec<Call>,
    /// Check Health ("plugin" must be SERVING) after connecting.
    pub health: bool,
    /// Fetch schemas by server reflection for calls that need one.
    pub reflection: bool,
    /// Warnings (unknown keys).
    pub warnings: Vec<String>,
}

/// The `handshake` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HandshakeSpec {
    /// Magic cookie name; empty means none.
    pub magic_cookie_key: String,
    /// Magic cookie value.
    pub magic_cookie_value: String,
    /// App protocol versions (mock: offered; host: supported).
    pub app_versions: Vec<i64>,
    /// Protocols the host accepts.
    pub allowed_protocols: Vec<String>,
    /// The host asks for broker multiplexing.
    pub multiplex: bool,
    /// Seconds the host waits for the handshake.
    pub start_timeout_s: f64,
}

impl Default for HandshakeSpec {
    fn default() -> Self {
        HandshakeSpec {
            magic_cookie_key: String::new(),
            magic_cookie_value: String::new(),
            app_versions: vec![1],
            allowed_protocols: vec!["grpc".into()],
            multiplex: false,
            start_timeout_s: 60.0,
        }
    }
}

/// A message as a spec writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Protobuf JSON; needs the schema.
    Json(Json),
    /// Raw fields ([`super::wire`] form).
    Raw(Json),
    /// Exact bytes.
    Hex(Vec<u8>),
}

/// One scripted reply of the mock.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Partial deep match on the decoded request.
    pub matcher: Option<Json>,
    /// Response messages (several for server streaming).
    pub responses: Vec<Body>,
    /// Status code.
    pub status: u32,
    /// Status message.
    pub message: String,
    /// Pause before answering.
    pub delay_ms: u64,
}

/// A line the mock writes on the stdio stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StdioLine {
    /// `stdout` or `stderr`.
    pub channel: String,
    /// The text.
    pub data: String,
}

/// One call of the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Label for the report.
    pub name: Option<String>,
    /// Service.
    pub service: String,
    /// Method.
    pub method: String,
    /// Request messages (several for client streaming).
    pub requests: Vec<Body>,
    /// Stop after this many responses.
    pub take: Option<usize>,
    /// Make the call on the brokered connection the plugin announced with
    /// this service id (instead of the main connection).
    pub broker: Option<u64>,
    /// Seconds to wait for the call.
    pub timeout_s: f64,
    /// Expectations.
    pub expect: CallExpect,
}

/// Expectations on a call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallExpect {
    /// Status code (default: OK).
    pub status: Option<u32>,
    /// Text the status message must contain.
    pub message: Option<String>,
    /// Partial match on the first response.
    pub response: Option<Json>,
    /// Partial matches on the responses, in order (same count).
    pub responses: Option<Vec<Json>>,
}

impl Call {
    /// `/service/method`.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.service, self.method)
    }
}

// ---- loading ---------------------------------------------------------------

/// True when the spec text names `"protocol": "go-plugin"`.
pub fn is_go_plugin(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Peek {
        protocol: Option<Json>,
    }
    serde_json_lenient::from_str::<Peek>(text)
        .ok()
        .and_then(|p| p.protocol)
        .is_some_and(|p| {
            p.as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("go-plugin"))
        })
}

/// Loads a go-plugin spec file.
pub fn load_file(path: &Path) -> Result<GoSpec, SpecError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| plain(&source, format!("cannot read spec: {e}")))?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    load_str(&text, &source, base)
}

/// Loads a go-plugin spec from text; relative paths resolve against `base`.
pub fn load_str(text: &str, source: &str, base: &Path) -> Result<GoSpec, SpecError> {
    let mut de = serde_json_lenient::Deserializer::from_str(text);
    let mut unknown = Vec::new();
    let raw: RawSpec = serde_ignored::deserialize(&mut de, |p| unknown.push(p.to_string()))
        .map_err(|e| positioned(source, &e))?;
    de.end().map_err(|e| positioned(source, &e))?;
    if raw.version.unwrap_or(1) != 1 {
        return Err(plain(
            source,
            "spec version is not supported (only 1)".into(),
        ));
    }
    if let Some(p) = &raw.protocol
        && !p.eq_ignore_ascii_case("go-plugin")
    {
        return Err(plain(source, format!("protocol {p:?} is not go-plugin")));
    }
    let mut schemas = Schemas::builtin();
    let schema = raw.schema.unwrap_or_default();
    let files: Vec<PathBuf> = schema.proto.iter().map(|p| base.join(p)).collect();
    let includes: Vec<PathBuf> = schema.include.iter().map(|p| base.join(p)).collect();
    schemas
        .add_proto_files(&files, &includes)
        .map_err(|e| plain(source, e.to_string()))?;
    for d in &schema.descriptor_sets {
        schemas
            .add_descriptor_set(&base.join(d))
            .map_err(|e| plain(source, e.to_string()))?;
    }
    let mut services = IndexMap::new();
    for (svc, methods) in raw.services.unwrap_or_default() {
        let mut out = IndexMap::new();
        for (m, entries) in methods {
            let mut list = Vec::new();
            for (i, e) in entries.into_iter().enumerate() {
                let at = format!("services[{svc:?}][{m:?}][{i}]");
                list.push(entry(e, &at).map_err(|msg| plain(source, msg))?);
            }
            out.insert(m, list);
        }
        services.insert(svc, out);
    }
    let mut calls = Vec::new();
    for (i, c) in raw.calls.unwrap_or_default().into_iter().enumerate() {
        calls.push(call(c, i).map_err(|msg| plain(source, msg))?);
    }
    let spec = GoSpec {
        source: source.to_owned(),
        role: raw.role,
        handshake: raw.handshake.unwrap_or_default(),
        schemas,
        socket: raw.socket.map(|s| base.join(s)),
        services,
        stdio: raw.stdio.unwrap_or_default(),
        start_cmd: raw.start_cmd,
        calls,
        health: raw.health.unwrap_or(true),
        reflection: raw.reflection.unwrap_or(true),
        warnings: unknown
            .into_iter()
            .map(|k| format!("unknown key `{k}` is ignored"))
            .collect(),
    };
    check(&spec).map_err(|m| plain(source, m))?;
    Ok(spec)
}

/// Checks that need the schemas: JSON messages must belong to a method the
/// schemas know (the host may still learn it by reflection).
fn check(spec: &GoSpec) -> Result<(), String> {
    for (svc, methods) in &spec.services {
        for (m, entries) in methods {
            for (i, e) in entries.iter().enumerate() {
                let at = format!("services[{svc:?}][{m:?}][{i}]");
                let needs = e.responses.iter().any(|b| matches!(b, Body::Json(_)));
                if needs {
                    let md = spec.schemas.method(svc, m).ok_or_else(|| {
                        format!("{at}: `response` is protobuf JSON, but no schema defines {svc}/{m} (add it to `schema`, or write `response_raw`)")
                    })?;
                    for b in &e.responses {
                        if let Body::Json(j) = b {
                            super::schema::encode_json(&md.output(), j)
                                .map_err(|err| format!("{at}: {err}"))?;
                        }
                    }
                }
            }
        }
    }
    for (i, c) in spec.calls.iter().enumerate() {
        if let Some(md) = spec.schemas.method(&c.service, &c.method) {
            for b in &c.requests {
                if let Body::Json(j) = b {
                    super::schema::encode_json(&md.input(), j)
                        .map_err(|err| format!("calls[{i}]: {err}"))?;
                }
            }
        } else if c.requests.iter().any(|b| matches!(b, Body::Json(_))) && !spec.reflection {
            return Err(format!(
                "calls[{i}]: `request` is protobuf JSON, but no schema defines {} (add it to `schema`, turn `reflection` on, or write `request_raw`)",
                c.path()
            ));
        }
    }
    Ok(())
}

fn body(
    json: Option<Json>,
    raw: Option<Json>,
    hex: Option<String>,
    at: &str,
    what: &str,
) -> Result<Option<Body>, String> {
    match (json, raw, hex) {
        (None, None, None) => Ok(None),
        (Some(j), None, None) => Ok(Some(Body::Json(j))),
        (None, Some(r), None) => {
            super::wire::encode(&r).map_err(|e| format!("{at}.{what}_raw: {e}"))?;
            Ok(Some(Body::Raw(r)))
        }
        (None, None, Some(h)) => super::wire::unhex(&h)
            .map(|b| Some(Body::Hex(b)))
            .ok_or_else(|| format!("{at}.{what}_hex: not hexadecimal")),
        _ => Err(format!(
            "{at}: give one of `{what}`, `{what}_raw` and `{what}_hex`"
        )),
    }
}

fn entry(e: RawEntry, at: &str) -> Result<Entry, String> {
    let mut responses: Vec<Body> =
        body(e.response, e.response_raw, e.response_hex, at, "response")?
            .into_iter()
            .collect();
    if let Some(list) = e.responses {
        if !responses.is_empty() {
            return Err(format!("{at}: give either `response` or `responses`"));
        }
        responses = list.into_iter().map(Body::Json).collect();
    }
    let status = match &e.status {
        None => 0,
        Some(v) => status_from_json(v)
            .ok_or_else(|| format!("{at}.status: {v} is not a gRPC status code or name"))?,
    };
    if status == 0 && responses.is_empty() {
        // A unary success needs a message: an empty one.
        responses.push(Body::Hex(Vec::new()));
    }
    Ok(Entry {
        matcher: e.matcher,
        responses,
        status,
        message: e.message.unwrap_or_default(),
        delay_ms: e.delay_ms.unwrap_or(0),
    })
}

fn call(c: RawCall, i: usize) -> Result<Call, String> {
    let at = format!("calls[{i}]");
    let (service, method) = match (c.service, c.method.trim_start_matches('/').split_once('/')) {
        (Some(s), None) => (s, c.method.clone()),
        (None, Some((s, m))) => (s.to_owned(), m.to_owned()),
        (Some(_), Some(_)) => return Err(format!("{at}: `method` is a full path; drop `service`")),
        (None, None) => {
            return Err(format!(
                "{at}: `method` must be \"package.Service/Method\" (or give `service` too)"
            ));
        }
    };
    let mut requests: Vec<Body> = body(c.request, c.request_raw, c.request_hex, &at, "request")?
        .into_iter()
        .collect();
    if let Some(list) = c.requests {
        if !requests.is_empty() {
            return Err(format!("{at}: give either `request` or `requests`"));
        }
        requests = list.into_iter().map(Body::Json).collect();
    }
    if requests.is_empty() {
        requests.push(Body::Hex(Vec::new()));
    }
    let e = c.expect.unwrap_or_default();
    let status =
        match &e.status {
            None => None,
            Some(v) => Some(status_from_json(v).ok_or_else(|| {
                format!("{at}.expect.status: {v} is not a gRPC status code or name")
            })?),
        };
    Ok(Call {
        name: c.name,
        service,
        method,
        requests,
        take: c.take,
        broker: c.broker,
        timeout_s: c.timeout_s.unwrap_or(10.0),
        expect: CallExpect {
            status,
            message: e.message,
            response: e.response,
            responses: e.responses,
        },
    })
}

fn positioned(source: &str, e: &serde_json_lenient::Error) -> SpecError {
    let (line, col) = (e.line(), e.column());
    let text = e.to_string();
    let suffix = format!(" at line {line} column {col}");
    SpecError {
        file: source.to_owned(),
        position: (line > 0).then_some((line, col)),
        message: text.strip_suffix(&suffix).unwrap_or(&text).to_owned(),
    }
}

fn plain(source: &str, message: String) -> SpecError {
    SpecError {
        file: source.to_owned(),
        position: None,
        message,
    }
}

// ---- serde shapes ------------------------------------------------------------

#[derive(Deserialize)]
struct RawSpec {
    version: Option<u32>,
    protocol: Option<String>,
    role: Option<Role>,
    handshake: Option<HandshakeSpec>,
    schema: Option<RawSchema>,
    socket: Option<PathBuf>,
    services: Option<IndexMap<String, IndexMap<String, Vec<RawEntry>>>>,
    stdio: Option<Vec<StdioLine>>,
    start_cmd: Option<StartCmd>,
    calls: Option<Vec<RawCall>>,
    health: Option<bool>,
    reflection: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawSchema {
    proto: Vec<PathBuf>,
    include: Vec<PathBuf>,
    descriptor_sets: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(rename = "match")]
    matcher: Option<Json>,
    response: Option<Json>,
    response_raw: Option<Json>,
    response_hex: Option<String>,
    responses: Option<Vec<Json>>,
    status: Option<Json>,
    message: Option<String>,
    delay_ms: Option<u64>,
}

#[derive(Deserialize)]
struct RawCall {
    name: Option<String>,
    service: Option<String>,
    method: String,
    request: Option<Json>,
    request_raw: Option<Json>,
    request_hex: Option<String>,
    requests: Option<Vec<Json>>,
    take: Option<usize>,
    broker: Option<u64>,
    timeout_s: Option<f64>,
    expect: Option<RawExpect>,
}

#[derive(Deserialize, Default)]
struct RawExpect {
    status: Option<Json>,
    message: Option<String>,
    response: Option<Json>,
    responses: Option<Vec<Json>>,
}
