//! The default answers of the emulated PDK: getters from the request
//! model, setters recorded as effects. Split from [`super`] to keep the
//! table apart from the call logic.

use serde_json::{Value as Json, json};

use super::{Default, Pdk, text};
use crate::kong::effects::{Exit, HeaderOp, LogLine};
use crate::kong::request::{Headers, body_json};

/// Real PDK functions plugtap answers with nil.
const NOT_EMULATED: &[&str] = &[
    "kong.client.get_consumer_groups",
    "kong.client.get_consumer_group",
    "kong.client.set_authenticated_consumer_groups",
    "kong.client.tls.request_client_certificate",
    "kong.client.tls.disable_session_reuse",
    "kong.client.tls.get_full_client_certificate_chain",
    "kong.client.tls.set_client_verify",
    "kong.request.get_forwarded_prefix",
    "kong.service.set_tls_verify",
    "kong.service.set_tls_verify_depth",
    "kong.service.set_tls_verify_store",
    "kong.service.set_retries",
    "kong.service.set_timeouts",
    "kong.service.request.enable_buffering",
    "kong.vault.get",
    "kong.vault.update",
    "kong.telemetry.log",
];

impl Pdk {
    pub(super) fn default(&mut self, method: &str, a: &[Json]) -> Default {
        let s = |i: usize| a.get(i).and_then(Json::as_str).map(str::to_owned);
        let v = |i: usize| a.get(i).cloned().unwrap_or(Json::Null);
        let max = a.first().and_then(Json::as_u64).map_or(100, |m| m as usize);
        let req = &self.request;
        let value = match method {
            "kong.request.get_scheme" | "kong.request.get_forwarded_scheme" => json!(req.scheme),
            "kong.request.get_host" | "kong.request.get_forwarded_host" => json!(req.host),
            "kong.request.get_port" | "kong.request.get_forwarded_port" => json!(req.port),
            "kong.request.get_http_version" => json!(1.1),
            "kong.request.get_method" => json!(req.method),
            "kong.request.get_path"
            | "kong.request.get_raw_path"
            | "kong.request.get_forwarded_path" => json!(req.path),
            "kong.request.get_path_with_query" => json!(req.path_with_query()),
            "kong.request.get_raw_query" => json!(req.query),
            "kong.request.get_query_arg" => {
                s(0).and_then(|n| req.query_arg(&n)).unwrap_or(Json::Null)
            }
            "kong.request.get_query" => Json::Object(req.query_table(max)),
            "kong.request.get_header" => s(0)
                .and_then(|n| req.headers.get(&n).map(Json::from))
                .unwrap_or(Json::Null),
            "kong.request.get_headers" => Json::Object(req.headers.table(max)),
            "kong.request.get_raw_body" => body_json(&req.body),
            "kong.request.get_body" => parse_body(&req.headers, &req.body),
            "kong.request.get_uri_captures" => json!({"unnamed": [], "named": {}}),
            "kong.request.get_start_time" => json!((self.started_at * 1000.0) as u64),
            "kong.client.get_ip" | "kong.client.get_forwarded_ip" => json!(req.client_ip),
            "kong.client.get_port" | "kong.client.get_forwarded_port" => json!(req.client_port),
            "kong.client.get_protocol" => json!(req.scheme),
            "kong.client.get_credential" => self.credential.clone().unwrap_or(Json::Null),
            "kong.client.get_consumer" => self.consumer.clone().unwrap_or(Json::Null),
            "kong.client.load_consumer" => Json::Null,
            "kong.client.authenticate" => {
                self.consumer = Some(v(0)).filter(|c| !c.is_null());
                self.credential = Some(v(1)).filter(|c| !c.is_null());
                Json::Null
            }
            "kong.ip.is_trusted" => json!(false),
            "kong.ctx.shared.get" => s(0)
                .and_then(|k| self.effects.ctx_shared.get(&k).cloned())
                .unwrap_or(Json::Null),
            "kong.ctx.shared.set" => {
                if let Some(k) = s(0) {
                    self.effects.ctx_shared.insert(k, v(1));
                }
                Json::Null
            }
            "kong.nginx.get_ctx" => s(0)
                .and_then(|k| self.nginx_ctx.get(&k).cloned())
                .unwrap_or(Json::Null),
            "kong.nginx.set_ctx" => {
                if let Some(k) = s(0) {
                    self.nginx_ctx.insert(k, v(1));
                }
                Json::Null
            }
            "kong.nginx.get_var" => s(0).map_or(Json::Null, |n| self.nginx_var(&n)),
            "kong.nginx.get_subsystem" => json!("http"),
            "kong.nginx.get_tls1_version_str" => {
                if req.scheme == "https" {
                    json!("TLSv1.3")
                } else {
                    Json::Null
                }
            }
            "kong.nginx.req_start_time" => json!(self.started_at),
            "kong.node.get_id" => json!("4f5e2c1a-6b7d-4e8f-9a0b-1c2d3e4f5a6b"),
            "kong.node.get_hostname" => json!("plugtap"),
            "kong.node.get_memory_stats" => json!({
                "lua_shared_dicts": {"kong": {"allocated_slabs": 12288, "capacity": 5242880}},
                "workers_lua_vms": [{"http_allocated_gc": 1102, "pid": std::process::id()}]
            }),
            "kong.cluster.get_id" => json!("8a7c6b5d-4e3f-4a1b-8c9d-0e1f2a3b4c5d"),
            "kong.plugin.get_id" => json!(self.identity.plugin_id),
            "kong.router.get_route" => json!({
                "id": self.identity.route_id.as_deref().unwrap_or("3f9c1a2b-7d4e-4b5a-8c6d-000000000002"),
                "name": "plugtap-route",
                "paths": ["/"],
                "protocols": ["http", "https"],
                "strip_path": true,
                "preserve_host": false
            }),
            "kong.router.get_service" => json!({
                "id": self.identity.service_id.as_deref().unwrap_or("7b2e4d6f-1a3c-4e5b-9d7f-000000000003"),
                "name": "plugtap-upstream",
                "host": "upstream.test",
                "port": 80,
                "protocol": "http",
                "retries": 5,
                "connect_timeout": 60000,
                "read_timeout": 60000,
                "write_timeout": 60000
            }),
            "kong.log" => return self.log("notice", a),
            "kong.log.alert" | "kong.log.crit" | "kong.log.err" | "kong.log.warn"
            | "kong.log.notice" | "kong.log.info" | "kong.log.debug" => {
                return self.log(&method["kong.log.".len()..], a);
            }
            "kong.log.inspect" | "kong.log.deprecation" => Json::Null,
            "kong.log.set_serialize_value" => {
                if let Some(k) = s(0) {
                    self.effects.serialize_values.insert(k, v(1));
                }
                Json::Null
            }
            "kong.log.serialize" => json!(self.serialize().to_string()),
            "kong.response.get_status" => self.status(),
            "kong.response.get_header" => s(0)
                .and_then(|n| self.response_headers().get(&n).map(Json::from))
                .unwrap_or(Json::Null),
            "kong.response.get_headers" => Json::Object(self.response_headers().table(max)),
            "kong.response.get_source" => match &self.effects.exit {
                Some(e) if e.via == "kong.response.error" => json!("error"),
                Some(_) => json!("exit"),
                None => json!("service"),
            },
            "kong.response.get_raw_body" => match &self.effects.response_body {
                Some(b) => b.clone(),
                None => body_json(&self.upstream.body),
            },
            "kong.response.set_status" => {
                self.effects.status = Some(v(0));
                Json::Null
            }
            "kong.response.set_header" | "kong.response.add_header" => {
                if let (Some(n), Some(val)) = (s(0), a.get(1).map(text)) {
                    self.effects
                        .response_headers
                        .push(if method.ends_with("add_header") {
                            HeaderOp::Add(n, val)
                        } else {
                            HeaderOp::Set(n, val)
                        });
                }
                Json::Null
            }
            "kong.response.clear_header" => {
                if let Some(n) = s(0) {
                    self.effects.response_headers.push(HeaderOp::Clear(n));
                }
                Json::Null
            }
            "kong.response.set_headers" => {
                set_all(&mut self.effects.response_headers, &v(0));
                Json::Null
            }
            "kong.response.set_raw_body" => {
                self.effects.response_body = Some(v(0));
                Json::Null
            }
            "kong.response.exit" | "kong.response.error" => {
                let body = match (method, v(1)) {
                    ("kong.response.error", Json::Null) => json!({"message": reason(&v(0))}),
                    ("kong.response.error", Json::String(m)) => json!({"message": m}),
                    (_, b) => b,
                };
                self.effects.exit = Some(Exit {
                    via: method.to_owned(),
                    status: v(0),
                    body,
                    headers: v(2),
                });
                Json::Null
            }
            "kong.service.set_upstream" => {
                self.effects
                    .upstream_request
                    .insert("upstream".into(), v(0));
                json!(true)
            }
            "kong.service.set_target" => {
                self.effects
                    .upstream_request
                    .insert("target".into(), json!([v(0), v(1)]));
                Json::Null
            }
            "kong.service.request.set_scheme"
            | "kong.service.request.set_path"
            | "kong.service.request.set_raw_query"
            | "kong.service.request.set_method"
            | "kong.service.request.set_query"
            | "kong.service.request.set_raw_body"
            | "kong.service.request.set_body" => {
                let field = &method["kong.service.request.set_".len()..];
                self.effects.upstream_request.insert(field.into(), v(0));
                Json::Null
            }
            "kong.service.request.set_header" | "kong.service.request.add_header" => {
                if let (Some(n), Some(val)) = (s(0), a.get(1).map(text)) {
                    self.effects
                        .upstream_headers
                        .push(if method.ends_with("add_header") {
                            HeaderOp::Add(n, val)
                        } else {
                            HeaderOp::Set(n, val)
                        });
                }
                Json::Null
            }
            "kong.service.request.clear_header" => {
                if let Some(n) = s(0) {
                    self.effects.upstream_headers.push(HeaderOp::Clear(n));
                }
                Json::Null
            }
            "kong.service.request.set_headers" => {
                set_all(&mut self.effects.upstream_headers, &v(0));
                Json::Null
            }
            "kong.service.response.get_status" if self.late() => json!(self.upstream.status),
            "kong.service.response.get_headers" if self.late() => {
                Json::Object(self.upstream.headers.table(max))
            }
            "kong.service.response.get_header" if self.late() => s(0)
                .and_then(|n| self.upstream.headers.get(&n).map(Json::from))
                .unwrap_or(Json::Null),
            "kong.service.response.get_raw_body" if self.late() => body_json(&self.upstream.body),
            "kong.service.response.get_body" if self.late() => {
                parse_body(&self.upstream.headers, &self.upstream.body)
            }
            // Before the upstream answered, there is no service response.
            m if m.starts_with("kong.service.response.get_") => Json::Null,
            m if NOT_EMULATED.contains(&m) => return Default::NotEmulated,
            _ => return Default::Unknown,
        };
        Default::Value(Some(value))
    }

    fn log(&mut self, level: &str, a: &[Json]) -> Default {
        let message: String = a.iter().map(text).collect();
        tracing::debug!("plugin log [{level}] {message}");
        self.effects.logs.push(LogLine {
            phase: self.phase.clone(),
            level: level.to_owned(),
            message,
        });
        Default::Value(None)
    }

    fn status(&self) -> Json {
        if let Some(e) = &self.effects.exit {
            return e.status.clone();
        }
        if let Some(s) = &self.effects.status {
            return s.clone();
        }
        json!(self.upstream.status)
    }

    fn nginx_var(&self, name: &str) -> Json {
        let r = &self.request;
        match name {
            "host" => json!(r.host),
            "uri" | "upstream_uri" => json!(r.path),
            "request_uri" => json!(r.path_with_query()),
            "args" if r.query.is_empty() => Json::Null,
            "args" => json!(r.query),
            "request_method" => json!(r.method),
            "scheme" => json!(r.scheme),
            "server_port" => json!(r.port.to_string()),
            "remote_addr" => json!(r.client_ip),
            "remote_port" => json!(r.client_port.to_string()),
            "request_id" => json!("0123456789abcdef0123456789abcdef"),
            n if n.starts_with("http_") => r
                .headers
                .get(&n["http_".len()..])
                .map_or(Json::Null, Json::from),
            _ => Json::Null,
        }
    }

    /// A small version of Kong's basic serializer.
    fn serialize(&self) -> Json {
        let r = &self.request;
        let mut out = json!({
            "request": {
                "method": r.method,
                "uri": r.path_with_query(),
                "url": r.url(),
                "headers": r.headers.to_json(),
                "querystring": Json::Object(r.query_table(100)),
                "size": r.body.len(),
            },
            "response": {"status": self.status(), "headers": self.response_headers().to_json()},
            "client_ip": r.client_ip,
            "started_at": (self.started_at * 1000.0) as u64,
        });
        if let Json::Object(o) = &mut out {
            for (k, v) in &self.effects.serialize_values {
                o.insert(k.clone(), v.clone());
            }
        }
        out
    }
}

fn set_all(ops: &mut Vec<HeaderOp>, table: &Json) {
    if let Json::Object(map) = table {
        for (name, value) in map {
            match value {
                Json::Array(items) => {
                    ops.push(HeaderOp::Clear(name.clone()));
                    for item in items {
                        ops.push(HeaderOp::Add(name.clone(), text(item)));
                    }
                }
                other => ops.push(HeaderOp::Set(name.clone(), text(other))),
            }
        }
    }
}

fn parse_body(headers: &Headers, body: &[u8]) -> Json {
    let ctype = headers.get("content-type").unwrap_or("").to_lowercase();
    if ctype.starts_with("application/json") {
        serde_json::from_slice(body).unwrap_or(Json::Null)
    } else {
        Json::Null
    }
}

fn reason(status: &Json) -> &'static str {
    match status.as_u64() {
        Some(400) => "Bad request",
        Some(401) => "Unauthorized",
        Some(403) => "Forbidden",
        Some(404) => "Not found",
        Some(429) => "API rate limit exceeded",
        Some(500) => "An unexpected error occurred",
        Some(502) => "An invalid response was received from the upstream server",
        Some(503) => "Service unavailable",
        _ => "The upstream server is timing out",
    }
}
