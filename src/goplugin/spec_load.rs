//! Reading go-plugin specs (see [`super::spec`]): lenient JSON straight
//! into serde shapes, so syntax and type errors carry `file:line:column`;
//! unknown keys become warnings; then checks that need the schemas.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value as Json;

use super::grpc::status_from_json;
use super::schema::Schemas;
use super::spec::{Body, Call, CallExpect, Entry, GoSpec, HandshakeSpec, StdioLine};
use crate::spec::{Role, SpecError, StartCmd};

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
        brokered: raw.brokered.unwrap_or_default(),
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
    let lists = match (e.responses, e.responses_raw) {
        (Some(_), Some(_)) => {
            return Err(format!("{at}: give either `responses` or `responses_raw`"));
        }
        (Some(l), None) => Some(l.into_iter().map(Body::Json).collect::<Vec<_>>()),
        (None, Some(l)) => {
            for r in &l {
                super::wire::encode(r).map_err(|e| format!("{at}.responses_raw: {e}"))?;
            }
            Some(l.into_iter().map(Body::Raw).collect())
        }
        (None, None) => None,
    };
    if let Some(list) = lists {
        if !responses.is_empty() {
            return Err(format!("{at}: give either `response` or `responses`"));
        }
        responses = list;
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
    let lists = match (c.requests, c.requests_raw) {
        (Some(_), Some(_)) => {
            return Err(format!("{at}: give either `requests` or `requests_raw`"));
        }
        (Some(l), None) => Some(l.into_iter().map(Body::Json).collect::<Vec<_>>()),
        (None, Some(l)) => {
            for r in &l {
                super::wire::encode(r).map_err(|e| format!("{at}.requests_raw: {e}"))?;
            }
            Some(l.into_iter().map(Body::Raw).collect())
        }
        (None, None) => None,
    };
    if let Some(list) = lists {
        if !requests.is_empty() {
            return Err(format!("{at}: give either `request` or `requests`"));
        }
        requests = list;
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
    brokered: Option<Vec<u64>>,
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
    responses_raw: Option<Vec<Json>>,
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
    requests_raw: Option<Vec<Json>>,
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
