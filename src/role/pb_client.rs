//! The client role for `ProtoBuf:1`: a stand-in for Kong driving a go-pdk
//! style plugin server.
//!
//! Each step is an RpcCall: `method` names the command
//! (`cmd_start_instance`, `cmd_handle_event`, ...) and `params` is its
//! content in protobuf's JSON form (`cmd_start_instance`'s `config` may be
//! written as a JSON object; it is sent as its text, as Kong does).
//! Sequences count from 2, like Kong's first calls. During an event the
//! plugin's PDK calls are answered from the spec's `on_pdk` canned results,
//! encoded with each method's output type; a method with no canned answer
//! gets a nil reply (an empty frame), and `kong.response.exit` gets none,
//! as in Kong, which then abandons the connection. A server that closes the
//! connection instead of answering is `ProtoBuf:1`'s error: the step's
//! error is `"closed"` (so `"expect": {"error": "closed"}` tests it) and the
//! next step uses a new connection, as Kong's connection pool would.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use tokio_util::sync::CancellationToken;

use super::client::ClientOptions;
use super::pb_outcome::{blank, settle};
use super::pb_wire::PbConn;
use super::replies::{Choice, Cursor, Replies};
use super::report::{Failure, Report, StepReport, StepStatus};
use crate::conversation::protobuf::Observed;
use crate::error::{Error, Result};
use crate::message::protobuf::envelope::inline_config;
use crate::message::protobuf::pdk::EXIT;
use crate::message::protobuf::{Envelope, PdkMethod};
use crate::message::{Direction, Kind};
use crate::net;
use crate::process::{self, Child};
use crate::spec::template::{self, Vars};
use crate::spec::{ServerSpec, Spec, Step};

/// Kong's first sequence number on a worker (pb_rpc.lua sends its counter plus one).
pub const FIRST_SEQUENCE: i64 = 2;

/// Runs the spec's steps against a `ProtoBuf:1` server.
pub async fn run(spec: &Spec, opts: ClientOptions, shutdown: CancellationToken) -> Result<Report> {
    let answers =
        prepare_answers(spec).map_err(|e| Error::Other(format!("{}: {e}", spec.source)))?;
    let socket = opts
        .socket
        .clone()
        .ok_or_else(|| Error::Other("no socket given (spec `socket` or --socket)".into()))?;
    let mut child = match &opts.start_cmd {
        Some(cmd) => Some(Child::spawn(cmd)?),
        None => None,
    };
    let outcome = async {
        let mut driver = Driver {
            socket,
            opts: &opts,
            answers,
            cursor: Cursor::default(),
            conn: None,
            shutdown: &shutdown,
            vars: template::builtins(),
        };
        // The first connection waits for the server (and fails early if it dies).
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Err(Error::Other("interrupted".into())),
            c = driver.connect(child.as_mut(), opts.wait) => c?,
        };
        driver.conn = Some(first);
        Ok(driver.drive(&spec.client.try_methods).await)
    }
    .await;
    if let Some(child) = child.as_mut() {
        match child.terminate(opts.grace).await {
            Ok(status) => tracing::info!(
                "`{}` ended ({})",
                child.display(),
                process::describe(status)
            ),
            Err(e) => tracing::warn!("could not reap `{}`: {e}", child.display()),
        }
    }
    outcome
}

/// Checks a spec's `on_pdk` for this role: every key is a PDK method and
/// every `result` fits that method's output type.
pub fn check(spec: &Spec) -> std::result::Result<(), String> {
    prepare_answers(spec).map(drop)
}

/// Checks `on_pdk` and prepares it for choosing answers.
fn prepare_answers(spec: &Spec) -> std::result::Result<Replies, String> {
    for (method, entries) in &spec.client.on_pdk {
        let pdk = PdkMethod::named(method)
            .ok_or_else(|| format!("on_pdk key `{method}` is not a PDK method of service Kong"))?;
        for (i, entry) in entries.iter().enumerate() {
            pdk.encode_reply(&entry.result).map_err(|e| {
                format!(
                    "on_pdk[{method:?}][{i}].result: {e} ({method} replies with {})",
                    pdk.output.full_name()
                )
            })?;
        }
    }
    let as_server = ServerSpec {
        on_methods: spec.client.on_pdk.clone(),
        ..ServerSpec::default()
    };
    Replies::new(&as_server)
}

struct Driver<'a> {
    socket: PathBuf,
    opts: &'a ClientOptions,
    answers: Replies,
    cursor: Cursor,
    conn: Option<PbConn>,
    shutdown: &'a CancellationToken,
    vars: Vars,
}

/// How a call ended, for the connection.
enum After {
    /// The connection can carry the next call.
    Keep,
    /// Kong would not reuse the connection: open a new one for the next call.
    Drop,
    /// Stop the run.
    Stop,
}

impl Driver<'_> {
    async fn connect(&self, child: Option<&mut Child>, wait: Duration) -> Result<PbConn> {
        let connect = net::connect_when_ready(&self.socket, wait);
        let stream = match child {
            None => connect.await?,
            Some(child) => tokio::select! {
                s = connect => s?,
                status = child.wait() => {
                    let how = match status {
                        Ok(s) => process::describe(s),
                        Err(e) => e.to_string(),
                    };
                    return Err(Error::Other(format!(
                        "`{}` exited ({how}) before its socket accepted connections",
                        child.display()
                    )));
                }
            },
        };
        Ok(PbConn::new(stream, self.opts.limits, self.opts.full_values))
    }

    async fn drive(&mut self, steps: &[Step]) -> Report {
        let mut reports: Vec<StepReport> = steps.iter().enumerate().map(blank).collect();
        let mut sequence = FIRST_SEQUENCE - 1;
        for (step, report) in steps.iter().zip(reports.iter_mut()) {
            if self.shutdown.is_cancelled() {
                break;
            }
            sequence += 1;
            if self.conn.is_none() {
                match self.connect(None, self.opts.wait).await {
                    Ok(c) => self.conn = Some(c),
                    Err(e) => {
                        report
                            .failures
                            .push(Failure::new(format!("cannot reconnect: {e}")));
                        report.status = StepStatus::Failed;
                        break;
                    }
                }
            }
            let after = self.call(step, report, sequence).await;
            report.status = if report.failures.is_empty() {
                StepStatus::Passed
            } else {
                StepStatus::Failed
            };
            match after {
                After::Keep => {}
                After::Drop => self.conn = None,
                After::Stop => break,
            }
        }
        Report::new(reports)
    }

    /// Makes one call, answering PDK calls until the RpcReturn.
    async fn call(&mut self, step: &Step, report: &mut StepReport, sequence: i64) -> After {
        let call = template::substitute(&step.params, &self.vars)
            .map(|p| inline_config(&step.method, &p))
            .and_then(|p| {
                let env = Envelope::call(sequence, &step.method, &p)?;
                Ok((p, env))
            });
        let call = match call {
            Ok((params, env)) => {
                report.params = Some(params);
                env
            }
            Err(e) => {
                report
                    .failures
                    .push(Failure::new(format!("cannot build the RpcCall: {e}")));
                return After::Keep;
            }
        };
        report.msgid = u32::try_from(sequence).ok();
        let Some(conn) = self.conn.as_mut() else {
            return After::Stop;
        };
        let started = Instant::now();
        if let Err(e) = conn.send(Direction::ToServer, &call.encode()).await {
            report
                .failures
                .push(Failure::new(format!("cannot send the call: {e}")));
            return After::Drop;
        }
        loop {
            let read = tokio::select! {
                _ = self.shutdown.cancelled() => {
                    report.failures.push(Failure::new("interrupted while waiting for the reply"));
                    return After::Stop;
                }
                read = tokio::time::timeout(self.opts.call_timeout, conn.read(Direction::ToClient)) => read,
            };
            let obs = match read {
                Err(_) => {
                    report.failures.push(Failure::new(format!(
                        "no frame within {:?} (Kong would log \"timeout\")",
                        self.opts.call_timeout
                    )));
                    return After::Drop;
                }
                Ok(Err(e)) => {
                    report.failures.push(Failure::new(format!(
                        "undecodable bytes from the server: {e}"
                    )));
                    return After::Drop;
                }
                Ok(Ok(None)) => {
                    // ProtoBuf:1's error signal; Kong retries on a new connection.
                    report.elapsed_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                    settle(step, report, Some("closed"), None, &mut self.vars);
                    return After::Drop;
                }
                Ok(Ok(Some(obs))) => obs,
            };
            match obs.what {
                Observed::PdkCall { known: true, .. } | Observed::PdkEnd => {}
                Observed::PdkCall {
                    method,
                    known: false,
                } => {
                    report.failures.push(Failure::new(format!(
                        "the plugin called {method}, which Kong does not have; Kong fails the \
                         event with `method \"{method}\" not found` and never replies"
                    )));
                    return After::Drop;
                }
                Observed::PdkArgs { method, args } => {
                    if method == EXIT {
                        report
                            .pdk
                            .push(json!({"method": method, "args": args, "no_reply": true}));
                        report.elapsed_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                        tracing::info!(
                            "{} {EXIT}: Kong ends the request and abandons the event",
                            conn.id()
                        );
                        settle(
                            step,
                            report,
                            None,
                            Some(json!({"exit": args})),
                            &mut self.vars,
                        );
                        return After::Drop;
                    }
                    let reply = answer(&self.answers, &mut self.cursor, &method, &args);
                    let bytes = PdkMethod::named(&method)
                        .map(|p| p.encode_reply(&reply))
                        .unwrap_or_else(|| Ok(Vec::new()));
                    let bytes = match bytes {
                        Ok(b) => b,
                        Err(e) => {
                            report.failures.push(Failure::new(format!(
                                "cannot encode the reply to {method}: {e}"
                            )));
                            return After::Drop;
                        }
                    };
                    report
                        .pdk
                        .push(json!({"method": method, "args": args, "reply": reply}));
                    if let Err(e) = conn.send(Direction::ToServer, &bytes).await {
                        report.failures.push(Failure::new(format!(
                            "cannot send the reply to {method}: {e}"
                        )));
                        return After::Drop;
                    }
                }
                Observed::Return { value, .. } => {
                    report.elapsed_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                    if let Some(problem) = &obs.view.problem {
                        report.failures.push(Failure::new(format!(
                            "{problem} (Kong raises a Lua error and the request fails)"
                        )));
                    }
                    settle(step, report, None, Some(value), &mut self.vars);
                    return After::Keep;
                }
                Observed::Malformed | Observed::Call { .. } | Observed::PdkReply { .. } => {
                    let problem = obs
                        .view
                        .problem
                        .unwrap_or_else(|| "unexpected frame".into());
                    let kind = if obs.view.kind == Kind::Malformed {
                        "malformed frame"
                    } else {
                        "unexpected frame"
                    };
                    report.failures.push(Failure::new(format!(
                        "{kind} from the server: {problem}; value {}",
                        obs.view.value
                    )));
                    return After::Drop;
                }
            }
        }
    }
}

/// Kong's canned answer to a PDK call: the first matching `on_pdk` entry's
/// `result`, cycling; nil when there is none.
fn answer(answers: &Replies, cursor: &mut Cursor, method: &str, args: &Json) -> Json {
    match answers.choose(cursor, method, args) {
        Choice::Entry { prepared, .. } => prepared.entry.result.clone(),
        Choice::NoEntries => {
            tracing::warn!("no on_pdk answer for {method}; replying nil (an empty frame)");
            Json::Null
        }
        Choice::NoMatch | Choice::NotThisCall(_) => {
            tracing::warn!("no on_pdk answer for {method} matches {args}; replying nil");
            Json::Null
        }
    }
}
