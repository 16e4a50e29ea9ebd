//! The client role: a stand-in for Kong driving a real pluginserver.
//!
//! It optionally starts the server (`start_cmd`), waits for its socket,
//! then sends each step as Kong would: one call at a time on one
//! connection, never pipelined (the JS server cannot split two requests in
//! one read), msgids counting up from 1. It waits for the response with
//! the same msgid, logging notifications on the way, checks expectations,
//! captures values for later steps, and finally terminates the server it
//! started. The result is a [`Report`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rmpv::Value as Mp;
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use super::launch;
use super::log_message;
use super::report::capture;
pub use super::report::{Failure, Report, StepReport, StepStatus};
use super::unsolicited;
use crate::codec::{Limits, MsgpackCodec, hex, msgpack};
use crate::error::{Error, Result};
use crate::message::msgpack_rpc::{self, RpcMessage, error_text};
use crate::message::{Direction, Kind};
use crate::net::{self, Connection};
use crate::process::Child;
use crate::spec::matcher;
use crate::spec::template::{self, Vars};
use crate::spec::{ExpectError, Spec, StartCmd, Step};
use crate::value_json;

/// Settings of a client run that do not come from the spec's steps.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Socket to connect to; a go-plugin handshake from `start_cmd` may
    /// supply it instead.
    pub socket: Option<PathBuf>,
    /// Command starting the server under test.
    pub start_cmd: Option<StartCmd>,
    /// How long to wait for each reply (Kong waits 60 s).
    pub call_timeout: Duration,
    /// How long to wait for the socket to accept connections.
    pub wait: Duration,
    /// How long the started server gets to exit after SIGTERM.
    pub grace: Duration,
    /// Decoding limits.
    pub limits: Limits,
    /// Log values in full instead of shortened.
    pub full_values: bool,
}

/// Runs the spec's steps against a server.
pub async fn run(spec: &Spec, opts: ClientOptions, shutdown: CancellationToken) -> Result<Report> {
    let mut child = match &opts.start_cmd {
        Some(cmd) => Some(Child::spawn(cmd)?),
        None => None,
    };
    let outcome = async {
        let (stream, path) = tokio::select! {
            _ = shutdown.cancelled() => return Err(Error::Other("interrupted".into())),
            s = connect_to(&opts, child.as_mut()) => s?,
        };
        let conn = Connection::new(stream, MsgpackCodec::new(opts.limits));
        if spec.client.concurrent {
            return Ok(super::client_concurrent::drive(
                conn,
                &path,
                &spec.client.try_methods,
                &opts,
                &shutdown,
            )
            .await);
        }
        Ok(drive(conn, &path, &spec.client.try_methods, &opts, &shutdown).await)
    }
    .await;
    launch::stop(child.as_mut(), opts.grace).await;
    outcome
}

/// Finds the socket (spec, or a go-plugin handshake from the child) and
/// connects, failing early if the child exits first.
pub(crate) async fn connect(opts: &ClientOptions, child: Option<&mut Child>) -> Result<UnixStream> {
    connect_to(opts, child).await.map(|(stream, _)| stream)
}

/// [`connect`], also giving the socket path (for more connections).
async fn connect_to(
    opts: &ClientOptions,
    child: Option<&mut Child>,
) -> Result<(UnixStream, PathBuf)> {
    let Some(child) = child else {
        let path = opts
            .socket
            .as_ref()
            .ok_or_else(|| Error::Other("no socket given (spec `socket` or --socket)".into()))?;
        return Ok((
            net::connect_when_ready(path, opts.wait).await?,
            path.clone(),
        ));
    };
    let (path, stream) =
        super::launch::connect_child(child, opts.socket.clone(), opts.wait).await?;
    Ok((stream, path))
}

/// Runs every step in order, each on its step's connection (`conn`): the
/// first label seen uses `first`, the others are opened on first use.
async fn drive(
    first: Connection<MsgpackCodec>,
    path: &std::path::Path,
    steps: &[Step],
    opts: &ClientOptions,
    shutdown: &CancellationToken,
) -> Report {
    let mut vars = template::builtins();
    let mut reports: Vec<StepReport> = steps
        .iter()
        .enumerate()
        .map(|(index, s)| StepReport::blank(index, s))
        .collect();
    // Connection label -> (connection, last msgid); msgids count per connection.
    let mut conns: Vec<(Option<u64>, Connection<MsgpackCodec>, u32)> = Vec::new();
    let mut first = Some(first);
    for (step, report) in steps.iter().zip(reports.iter_mut()) {
        if shutdown.is_cancelled() {
            break;
        }
        let slot = match conns.iter().position(|(label, _, _)| *label == step.conn) {
            Some(i) => i,
            None => {
                let conn = match first.take() {
                    Some(c) => c,
                    None => match net::connect_when_ready(path, opts.wait).await {
                        Ok(stream) => Connection::new(stream, MsgpackCodec::new(opts.limits)),
                        Err(e) => {
                            report.failures.push(Failure::new(format!(
                                "cannot open connection {}: {e}",
                                step.conn.unwrap_or_default()
                            )));
                            report.status = StepStatus::Failed;
                            break;
                        }
                    },
                };
                if let Some(label) = step.conn {
                    tracing::info!("connection {label} of the spec is {}", conn.id());
                }
                conns.push((step.conn, conn, 0));
                conns.len() - 1
            }
        };
        let (_, conn, msgid) = &mut conns[slot];
        *msgid = msgid.wrapping_add(1);
        let go_on = call(conn, step, report, *msgid, &mut vars, opts, shutdown).await;
        report.status = if report.failures.is_empty() {
            StepStatus::Passed
        } else {
            StepStatus::Failed
        };
        if !go_on {
            break;
        }
    }
    Report::new(reports)
}

/// Makes one call. Returns false when the connection cannot be used any more.
pub(super) async fn call(
    conn: &mut Connection<MsgpackCodec>,
    step: &Step,
    report: &mut StepReport,
    msgid: u32,
    vars: &mut Vars,
    opts: &ClientOptions,
    shutdown: &CancellationToken,
) -> bool {
    let params = match template::substitute(&step.params, vars).and_then(|p| {
        value_json::from_json(&p)
            .map(|mp| (p, mp))
            .map_err(|e| e.to_string())
    }) {
        Ok((json, mp)) => {
            report.params = Some(json);
            mp
        }
        Err(e) => {
            report
                .failures
                .push(Failure::new(format!("cannot build params: {e}")));
            return true;
        }
    };
    if let Some(pattern) = step.expect.as_ref().and_then(|e| e.result.as_ref()) {
        report.expected =
            Some(template::substitute(pattern, vars).unwrap_or_else(|_| pattern.clone()));
    }
    let mut stray = unsolicited::stray_bytes(conn, Duration::ZERO, opts.full_values).await;
    report.notifications.append(&mut stray.notifications);
    if let Some(complaint) = stray.complaint() {
        report.failures.push(Failure::new(complaint));
        return false;
    }
    let request = RpcMessage::Request {
        msgid,
        method: step.method.clone(),
        params,
    };
    report.msgid = Some(msgid);
    log_message(
        conn.id(),
        Direction::ToServer,
        &request.view(),
        opts.full_values,
    );
    let started = Instant::now();
    if let Err(e) = conn.write_all(&msgpack::encode(&request.to_value())).await {
        report
            .failures
            .push(Failure::new(format!("cannot send the request: {e}")));
        return false;
    }
    loop {
        let read = tokio::select! {
            _ = shutdown.cancelled() => {
                report.failures.push(Failure::new("interrupted while waiting for the reply"));
                return false;
            }
            read = tokio::time::timeout(opts.call_timeout, conn.read_frame()) => read,
        };
        let frame = match read {
            Err(_) => {
                report.failures.push(Failure::new(format!(
                    "no reply within {:?} (Kong would log \"no data\")",
                    opts.call_timeout
                )));
                return false;
            }
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => {
                report.failures.push(Failure::new(
                    "the server closed the connection before replying (Kong would log \"no data\")",
                ));
                return false;
            }
            Ok(Err(crate::codec::CodecError::Truncated { pending, .. })) => {
                report.failures.push(Failure::new(format!(
                    "the server closed the connection in the middle of the reply \
                     ({pending} bytes of it arrived; Kong would log \"no data\")"
                )));
                return false;
            }
            Ok(Err(e)) => {
                let pending = conn.pending();
                report.failures.push(Failure::new(format!(
                    "undecodable bytes from the server: {e}; raw {}",
                    hex(&pending[..pending.len().min(256)])
                )));
                return false;
            }
        };
        let view = msgpack_rpc::view_of(&frame.value);
        log_message(conn.id(), Direction::ToClient, &view, opts.full_values);
        match RpcMessage::from_value(&frame.value) {
            Ok(RpcMessage::Notification { .. }) => report.notifications.push(view.value),
            Ok(RpcMessage::Response {
                msgid: got,
                error,
                result,
            }) if got == msgid => {
                report.elapsed_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                settle(step, report, &error, &result, vars);
                return true;
            }
            Ok(RpcMessage::Response {
                msgid: got,
                error,
                result,
            }) => {
                report.strays.push(serde_json::json!({
                    "msgid": got,
                    "error": value_json::to_json(&error),
                    "result": value_json::to_json(&result),
                }));
                report.failures.push(Failure::new(format!(
                    "response with msgid {got} while waiting for {msgid} \
                     (Kong fails with \"unexpected RPC response ID from Go plugin server\")"
                )));
                return true;
            }
            Ok(RpcMessage::Request { .. }) => {
                report.failures.push(Failure::new(
                    "the server sent a request; Kong fails with \"RPC response expected from Go plugin server\"",
                ));
                return true;
            }
            Err(m) => {
                debug_assert_eq!(view.kind, Kind::Malformed);
                report.failures.push(Failure::new(format!(
                    "malformed message from the server ({m}); raw {}",
                    hex(&frame.raw)
                )));
                return false;
            }
        }
    }
}

/// Records the reply, checks expectations and captures values.
pub(crate) fn settle(
    step: &Step,
    report: &mut StepReport,
    error: &Mp,
    result: &Mp,
    vars: &mut Vars,
) {
    let result_json = value_json::to_json(result);
    let error_msg = error_text(error);
    if let Some(text) = &error_msg {
        tracing::warn!("{} returned an error: {text}", step.method);
        report.error = Some(value_json::to_json(error));
    }
    report.result = Some(result_json.clone());
    if let Some(expect) = &step.expect {
        match (&expect.error, &error_msg) {
            (Some(ExpectError::None), Some(text)) => {
                report.failures.push(Failure::new(format!(
                    "expected success, got error {text:?}"
                )));
            }
            (Some(ExpectError::Any), None) => {
                report
                    .failures
                    .push(Failure::new("expected an error, got success"));
            }
            (Some(ExpectError::Contains(want)), None) => {
                report.failures.push(Failure::new(format!(
                    "expected an error containing {want:?}, got success"
                )));
            }
            (Some(ExpectError::Contains(want)), Some(text)) if !text.contains(want.as_str()) => {
                report.failures.push(Failure::new(format!(
                    "expected an error containing {want:?}, got {text:?}"
                )));
            }
            _ => {}
        }
        if let Some(pattern) = &expect.result {
            let pattern = template::substitute(pattern, vars).unwrap_or_else(|_| pattern.clone());
            let mismatches = matcher::diff(&pattern, &result_json);
            report.expected = Some(pattern);
            if !mismatches.is_empty() {
                report.failures.push(Failure {
                    message: "result does not match the expectation".into(),
                    mismatches,
                });
            }
        }
    }
    capture(&step.capture, &result_json, vars, &mut report.failures);
}
