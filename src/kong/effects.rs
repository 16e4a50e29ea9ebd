//! What a plugin did to a request through the PDK: response status and
//! headers, an early exit, changes to the request sent upstream, log lines
//! and values shared with other plugins. Reported after each request.

use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::request::{Headers, Upstream};

/// One header change.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderOp {
    /// `set_header(name, value)`.
    Set(String, String),
    /// `add_header(name, value)`.
    Add(String, String),
    /// `clear_header(name)`.
    Clear(String),
}

/// Applies header changes in order.
pub fn apply(base: &Headers, ops: &[HeaderOp]) -> Headers {
    let mut h = base.clone();
    for op in ops {
        match op {
            HeaderOp::Set(n, v) => h.set(n, v),
            HeaderOp::Add(n, v) => h.add(n, v),
            HeaderOp::Clear(n) => h.clear(n),
        }
    }
    h
}

/// The plugin's `kong.response.exit` or `kong.response.error`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exit {
    /// The PDK method used.
    pub via: String,
    /// Status code.
    pub status: Json,
    /// Body as given (string or table), or the default error body.
    #[serde(skip_serializing_if = "Json::is_null")]
    pub body: Json,
    /// Headers as given.
    #[serde(skip_serializing_if = "Json::is_null")]
    pub headers: Json,
}

/// One `kong.log.*` line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    /// Phase it was written in.
    pub phase: String,
    /// Level (`err`, `warn`, `notice`, ...).
    pub level: String,
    /// The arguments joined as Kong joins them.
    pub message: String,
}

/// Everything a plugin changed during one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// `kong.response.set_status`.
    pub status: Option<Json>,
    /// Response header changes, in order.
    pub response_headers: Vec<HeaderOp>,
    /// `kong.response.set_raw_body`.
    pub response_body: Option<Json>,
    /// The exit, if the plugin short-circuited the request.
    pub exit: Option<Exit>,
    /// Changes to the request Kong sends upstream (`kong.service.*`),
    /// field -> value, in order.
    pub upstream_request: Map<String, Json>,
    /// Header changes on the request sent upstream.
    pub upstream_headers: Vec<HeaderOp>,
    /// Log lines.
    pub logs: Vec<LogLine>,
    /// `kong.ctx.shared` values.
    pub ctx_shared: Map<String, Json>,
    /// `kong.log.set_serialize_value` values.
    pub serialize_values: Map<String, Json>,
}

impl Effects {
    /// The downstream response as the client would get it.
    pub fn response(&self, upstream: &Upstream) -> Json {
        let mut out = Map::new();
        match &self.exit {
            Some(exit) => {
                out.insert("source".into(), "exit".into());
                out.insert("status".into(), exit.status.clone());
                let mut base = Headers::default();
                if let Json::Object(h) = &exit.headers {
                    for (k, v) in h {
                        match v {
                            Json::String(s) => base.add(k, s),
                            Json::Array(items) => items
                                .iter()
                                .filter_map(Json::as_str)
                                .for_each(|s| base.add(k, s)),
                            other => base.add(k, &other.to_string()),
                        }
                    }
                }
                out.insert(
                    "headers".into(),
                    apply(&base, &self.response_headers).to_json(),
                );
                if !exit.body.is_null() {
                    out.insert("body".into(), exit.body.clone());
                }
            }
            None => {
                out.insert("source".into(), "service".into());
                let status = self
                    .status
                    .clone()
                    .unwrap_or_else(|| Json::from(upstream.status));
                out.insert("status".into(), status);
                out.insert(
                    "headers".into(),
                    apply(&upstream.headers, &self.response_headers).to_json(),
                );
                let body = match &self.response_body {
                    Some(b) => b.clone(),
                    None => super::request::body_json(&upstream.body),
                };
                out.insert("body".into(), body);
            }
        }
        Json::Object(out)
    }

    /// Changes to the upstream request, or `None` when there are none.
    pub fn upstream_request(&self, request_headers: &Headers) -> Option<Json> {
        if self.upstream_request.is_empty() && self.upstream_headers.is_empty() {
            return None;
        }
        let mut out = self.upstream_request.clone();
        if !self.upstream_headers.is_empty() {
            out.insert(
                "headers".into(),
                apply(request_headers, &self.upstream_headers).to_json(),
            );
        }
        Some(Json::Object(out))
    }
}
