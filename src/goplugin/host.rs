//! The client role for go-plugin: a stand-in host.
//!
//! It starts the plugin with the magic cookie and `PLUGIN_*` variables,
//! judges the first stdout line with go-plugin's rules and texts
//! ([`super::handshake`]), connects, opens the broker stream and the stdio
//! stream as the host does right after connecting, checks Health
//! (`"plugin"` must be SERVING), makes the spec's calls one at a time and
//! checks what came back, then shuts the plugin down the way the host
//! does: end the broker stream, call `GRPCController/Shutdown` (errors
//! ignored), close the connection, wait 2 s, then kill.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use prost::Message as _;
use prost_reflect::{DynamicMessage, Value};
use serde_json::Value as Json;

use super::call::call;
use super::diagnose::diagnose;
use super::env::HostEnv;
use super::grpc;
use super::handshake::HostRules;
use super::host_streams::{Announced, dial_broker, open_broker, start_stdio};
use super::launch::{FirstLine, Plugin};
use super::report::{CallReport, HostReport};
use super::schema::{Schemas, decode_json, encode_json};
use super::spec::{Body, Call, GoSpec};
use crate::error::{Error, Result};
use crate::spec::{StartCmd, matcher};

/// How long the host waits for the plugin to exit after Shutdown.
pub const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Settings that do not come from the spec.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Overrides the spec's `start_cmd`.
    pub start_cmd: Option<StartCmd>,
    /// Overrides the spec's start timeout.
    pub start_timeout: Option<Duration>,
    /// Largest response decoded.
    pub max_message: usize,
}

/// Runs the spec against a plugin.
pub async fn run(spec: &GoSpec, opts: HostOptions) -> Result<HostReport> {
    let cmd = opts
        .start_cmd
        .clone()
        .or_else(|| spec.start_cmd.clone())
        .ok_or_else(|| {
            Error::Other("no plugin to start: give `start_cmd` in the spec or --start-cmd".into())
        })?;
    let hs = &spec.handshake;
    let host_env = HostEnv {
        cookie_key: hs.magic_cookie_key.clone(),
        cookie_value: hs.magic_cookie_value.clone(),
        versions: hs.app_versions.clone(),
        min_port: 10000,
        max_port: 25000,
        multiplex: hs.multiplex,
    };
    let mut vars = host_env.vars();
    if hs.magic_cookie_key.is_empty() {
        vars.remove(0);
    }
    let rules = HostRules {
        versions: hs.app_versions.clone(),
        allowed_protocols: hs.allowed_protocols.clone(),
        multiplex: hs.multiplex,
    };
    let timeout = opts.start_timeout.unwrap_or_else(|| {
        Duration::try_from_secs_f64(hs.start_timeout_s).unwrap_or(Duration::from_secs(60))
    });
    let mut plugin = Plugin::spawn(&cmd, &vars)?;
    let mut report = HostReport {
        calls: spec
            .calls
            .iter()
            .map(|c| CallReport {
                name: c.name.clone(),
                path: c.path(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let first = plugin.first_line(timeout).await;
    let program = plugin.program.clone();
    let judged = match &first {
        FirstLine::Line(l) => {
            report.handshake = Some(l.clone());
            rules.judge(Some(l), || diagnose(&program))
        }
        FirstLine::Eof => rules.judge(None, || diagnose(&program)),
        FirstLine::Exited => Err(super::handshake::HandshakeError::Exited),
        FirstLine::Timeout => Err(super::handshake::HandshakeError::Timeout),
    };
    let accepted = match judged {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("plugin handshake rejected: {e}");
            report.handshake_error = Some(e.to_string());
            let status = plugin.kill().await;
            report.shutdown = Some(format!(
                "killed after the failed start ({})",
                describe(status)
            ));
            return Ok(report);
        }
    };
    report.app_version = Some(accepted.app_version);
    tracing::info!(
        "handshake accepted: app protocol {}, {} at {}",
        accepted.app_version,
        accepted.protocol,
        accepted.address
    );
    if accepted.server_cert.is_some() {
        report.failures.push("the plugin uses AutoMTLS (its handshake carries a certificate); plugtap's host speaks plain h2c only".into());
        let status = plugin.kill().await;
        report.shutdown = Some(format!("killed ({})", describe(status)));
        return Ok(report);
    }
    let send = match accepted.address.connect().await {
        Ok(io) => grpc::client(io).await.map_err(|e| e.to_string()),
        Err(e) => Err(format!("cannot connect to {}: {e}", accepted.address)),
    };
    let mut send = match send {
        Ok(s) => s,
        Err(e) => {
            report.failures.push(e);
            let status = plugin.kill().await;
            report.shutdown = Some(format!("killed ({})", describe(status)));
            return Ok(report);
        }
    };
    let mut schemas = spec.schemas.clone();
    // As the host does right after connecting: the broker stream, then stdio.
    let announced = Arc::new(Announced::default());
    let broker = open_broker(&mut send, announced.clone(), opts.max_message).await;
    let mut brokered: HashMap<u64, SendRequest<Bytes>> = HashMap::new();
    start_stdio(&mut send, &schemas, opts.max_message).await;
    if spec.health {
        health(&mut send, &schemas, &mut report, opts.max_message).await;
    }
    for (c, r) in spec.calls.iter().zip(report.calls.iter_mut()) {
        match c.broker {
            None => {
                run_call(
                    &mut send,
                    c,
                    r,
                    &mut schemas,
                    spec.reflection,
                    &accepted.address,
                    opts.max_message,
                )
                .await
            }
            Some(id) => match dial_broker(id, &announced, &mut brokered).await {
                Ok((conn, addr)) => {
                    run_call(
                        conn,
                        c,
                        r,
                        &mut schemas,
                        spec.reflection,
                        &addr,
                        opts.max_message,
                    )
                    .await
                }
                Err(e) => {
                    r.ran = true;
                    r.failures.push(e);
                }
            },
        }
    }
    drop(brokered);
    // Kill(): close the broker, GRPCController.Shutdown, close the connection.
    if let Some(mut b) = broker {
        let _ = b.send_data(Bytes::new(), true);
    }
    let out = call(
        &mut send,
        "/plugin.GRPCController/Shutdown",
        &[Bytes::new()],
        None,
        Duration::from_secs(2),
        opts.max_message,
    )
    .await;
    if out.code() != 0 {
        tracing::info!(
            "GRPCController.Shutdown: {} {} (ignored, as the host does)",
            grpc::status_name(out.code()),
            out.message()
        );
    }
    drop(send);
    report.shutdown = Some(match plugin.wait(EXIT_GRACE).await {
        Some(s) => format!("exited after Shutdown ({})", describe(Some(s))),
        None => {
            tracing::warn!("plugin failed to exit gracefully");
            let s = plugin.kill().await;
            format!("plugin failed to exit gracefully; killed ({})", describe(s))
        }
    });
    Ok(report)
}

fn describe(s: Option<std::process::ExitStatus>) -> String {
    s.map_or_else(|| "status unknown".into(), crate::process::describe)
}

/// `Health/Check{service: "plugin"}` must say SERVING.
async fn health(
    send: &mut SendRequest<Bytes>,
    schemas: &Schemas,
    report: &mut HostReport,
    max: usize,
) {
    let Some(req_d) = schemas.message("grpc.health.v1.HealthCheckRequest") else {
        return;
    };
    let Some(resp_d) = schemas.message("grpc.health.v1.HealthCheckResponse") else {
        return;
    };
    let mut req = DynamicMessage::new(req_d);
    req.set_field_by_name("service", Value::String("plugin".into()));
    let out = call(
        send,
        "/grpc.health.v1.Health/Check",
        &[Bytes::from(req.encode_to_vec())],
        None,
        Duration::from_secs(10),
        max,
    )
    .await;
    if out.code() != 0 {
        report.failures.push(format!(
            "health check failed: {} {} (hosts restart plugins whose Ping fails)",
            grpc::status_name(out.code()),
            out.message()
        ));
        return;
    }
    let status = out
        .messages
        .first()
        .and_then(|m| decode_json(&resp_d, m).ok())
        .and_then(|j| j.get("status").cloned())
        .unwrap_or(Json::String("UNKNOWN".into()));
    if status != "SERVING" {
        report.failures.push(format!(
            "health check: service \"plugin\" is {status}, not SERVING"
        ));
    } else {
        tracing::info!("health check: plugin is SERVING");
    }
}

async fn run_call(
    send: &mut SendRequest<Bytes>,
    c: &Call,
    r: &mut CallReport,
    schemas: &mut Schemas,
    reflection: bool,
    addr: &crate::net::Address,
    max: usize,
) {
    r.ran = true;
    if schemas.method(&c.service, &c.method).is_none()
        && reflection
        && !schemas.has_service(&c.service)
    {
        match super::reflection::fetch(addr, &c.service, schemas).await {
            Ok(n) => tracing::info!(
                "schema for {} from server reflection ({n} files)",
                c.service
            ),
            Err(e) => tracing::info!("no schema for {} by reflection: {e}", c.service),
        }
    }
    let md = schemas.method(&c.service, &c.method);
    let mut requests = Vec::new();
    for b in &c.requests {
        let bytes = match b {
            Body::Hex(h) => Ok(h.clone()),
            Body::Raw(j) => super::wire::encode(j),
            Body::Json(j) => match &md {
                Some(md) => encode_json(&md.input(), j),
                None => Err(format!(
                    "no schema for {} to encode the request (give `schema` or write `request_raw`)",
                    c.path()
                )),
            },
        };
        match bytes {
            Ok(b) => requests.push(Bytes::from(b)),
            Err(e) => {
                r.failures.push(e);
                return;
            }
        }
    }
    let started = Instant::now();
    let timeout = Duration::try_from_secs_f64(c.timeout_s).unwrap_or(Duration::from_secs(10));
    let out = call(send, &c.path(), &requests, c.take, timeout, max).await;
    r.elapsed_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    let code = if c.take.is_some_and(|t| out.messages.len() >= t) && out.status.is_none() {
        0
    } else {
        out.code()
    };
    r.status = Some(code);
    r.status_name = Some(grpc::status_name(code));
    r.message = Some(out.message()).filter(|m| !m.is_empty() && code != 0);
    r.responses = out
        .messages
        .iter()
        .map(|m| match &md {
            Some(md) => decode_json(&md.output(), m)
                .unwrap_or_else(|_| super::wire::decode(m).unwrap_or(Json::Null)),
            None => super::wire::decode(m).unwrap_or_else(|_| Json::String(crate::codec::hex(m))),
        })
        .collect();
    tracing::info!(
        "{} → {} {}",
        c.path(),
        grpc::status_name(code),
        Json::Array(r.responses.clone())
    );
    let want = c.expect.status.unwrap_or(0);
    if code != want {
        r.failures.push(format!(
            "expected status {}, got {}{}",
            grpc::status_name(want),
            grpc::status_name(code),
            r.message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ));
    }
    if let Some(text) = &c.expect.message
        && !out.message().contains(text.as_str())
    {
        r.failures.push(format!(
            "expected a status message containing {text:?}, got {:?}",
            out.message()
        ));
    }
    if let Some(p) = &c.expect.response {
        match r.responses.first() {
            Some(got) => r.mismatches.extend(matcher::diff(p, got)),
            None => r.failures.push("expected a response, got none".into()),
        }
    }
    if let Some(ps) = &c.expect.responses {
        if ps.len() != r.responses.len() {
            r.failures.push(format!(
                "expected {} responses, got {}",
                ps.len(),
                r.responses.len()
            ));
        }
        for (p, got) in ps.iter().zip(&r.responses) {
            r.mismatches.extend(matcher::diff(p, got));
        }
    }
}
