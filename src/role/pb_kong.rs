//! The Kong emulation over `ProtoBuf:1` (Kong's pb_rpc.lua): the same
//! requests, phases, instance lifecycle and PDK answers as over
//! `MsgPack:1` ([`super::kong_client`]), on go-pdk's framing.
//!
//! * `cmd_start_instance` carries the config JSON as bytes; the id is the
//!   `instance_status.instance_id` of the RpcReturn.
//! * `cmd_handle_event` runs the PDK calls on its own connection: the
//!   server names a method and sends its arguments, Kong answers with the
//!   method's output type (`pb_kong_wire.rs`), until the empty frame
//!   and the RpcReturn. `kong.response.exit` gets no reply and ends the
//!   event (Kong abandons the connection).
//! * Sequences count from 2, and a RpcReturn that does not echo its call's
//!   fails Kong's assertion (a Lua error).
//! * A server closing the connection is its error signal: Kong reads
//!   `closed`, and for events resets its instances and retries, as for
//!   `no plugin instance` (bounded here by `max_resets`); for
//!   `cmd_start_instance` it raises (a 500).
//! * A PDK method Kong does not know fails the event with
//!   `method "x" not found`, with no reply (Kong 3.8+ answers the client
//!   with a 500).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio_util::sync::CancellationToken;

use super::client::ClientOptions;
use super::kong_client::{Emulation, KongWire};
use super::kong_event::{EventEnd, Failure, MAX_PDK_CALLS};
use super::kong_report::{KongReport, PdkCall};
use super::kong_rpc::CallError;
use super::launch;
use super::pb_client::FIRST_SEQUENCE;
use super::pb_kong_wire::{lua_args, reply};
use super::pb_wire::PbConn;
use crate::codec::Limits;
use crate::conversation::protobuf::{Observation, Observed};
use crate::error::{Error, Result};
use crate::kong::pdk::{Reply, Source};
use crate::message::protobuf::envelope::HANDLE_EVENT;
use crate::message::protobuf::{Envelope, PdkMethod};
use crate::message::{Direction, Kind};
use crate::net;
use crate::spec::Spec;

/// Runs the spec's `kong` section against a `ProtoBuf:1` server.
pub async fn run(
    spec: &Spec,
    opts: ClientOptions,
    shutdown: CancellationToken,
) -> Result<KongReport> {
    let kong = spec
        .client
        .kong
        .as_ref()
        .ok_or_else(|| Error::Other(format!("{} has no `kong` section", spec.source)))?;
    let mut launched = tokio::select! {
        _ = shutdown.cancelled() => return Err(Error::Other("interrupted".into())),
        l = launch::launch(opts.socket.clone(), opts.start_cmd.as_ref(), opts.wait) => l?,
    };
    let mut wire = PbWire::new(
        launched.socket.clone(),
        opts.limits,
        opts.call_timeout,
        opts.full_values,
    );
    wire.idle = Some(PbConn::new(launched.first, opts.limits, opts.full_values));
    let mut emulation = Emulation::new(kong, wire);
    let report = emulation.run(&shutdown).await;
    launch::stop(launched.child.as_mut(), opts.grace).await;
    Ok(report)
}

/// Kong's `ProtoBuf:1` RPC for one plugin in one worker: a sequence
/// counter and a pooled connection.
pub struct PbWire {
    socket: PathBuf,
    limits: Limits,
    timeout: Duration,
    full_values: bool,
    idle: Option<PbConn>,
    sequence: i64,
}

/// How one call went, before Kong's reading of it.
enum Read {
    Frame(Box<Observation>),
    Closed,
}

impl PbWire {
    /// A wire to `socket` with no connection open yet.
    pub fn new(socket: PathBuf, limits: Limits, timeout: Duration, full_values: bool) -> PbWire {
        PbWire {
            socket,
            limits,
            timeout,
            full_values,
            idle: None,
            sequence: FIRST_SEQUENCE - 1,
        }
    }

    /// Watches the pooled connection for `watch`: what arrived when no
    /// call was pending (`None`: nothing, or the server closed it).
    pub async fn stray(&mut self, watch: Duration) -> Option<String> {
        let conn = self.idle.as_mut()?;
        match tokio::time::timeout(watch, conn.read(Direction::ToClient)).await {
            Err(_) | Ok(Ok(None)) => None,
            Ok(Ok(Some(obs))) => Some(obs.view.summary(false)),
            Ok(Err(e)) => Some(format!("undecodable bytes: {e}")),
        }
    }

    async fn conn(&mut self) -> std::result::Result<PbConn, CallError> {
        if let Some(c) = self.idle.take() {
            return Ok(c);
        }
        let stream = net::connect_when_ready(&self.socket, Duration::ZERO)
            .await
            .map_err(|e| CallError::Connect(e.to_string()))?;
        Ok(PbConn::new(stream, self.limits, self.full_values))
    }

    /// Sends an RpcCall on a pooled connection.
    async fn send_call(
        &mut self,
        command: &str,
        params: &Json,
    ) -> std::result::Result<(PbConn, i64), CallError> {
        self.sequence += 1;
        let sequence = self.sequence;
        let call = Envelope::call(sequence, command, params).map_err(CallError::Assert)?;
        let mut conn = self.conn().await?;
        conn.send(Direction::ToServer, &call.encode())
            .await
            .map_err(|e| CallError::Error(format!("closed ({e})")))?;
        Ok((conn, sequence))
    }

    async fn read(
        &self,
        conn: &mut PbConn,
        shutdown: &CancellationToken,
    ) -> std::result::Result<Read, CallError> {
        let read = tokio::select! {
            _ = shutdown.cancelled() => return Err(CallError::Interrupted),
            r = tokio::time::timeout(self.timeout, conn.read(Direction::ToClient)) => r,
        };
        match read {
            Err(_) => Err(CallError::Error("timeout".into())),
            Ok(Err(e)) => Err(CallError::Garbage(format!(
                "undecodable bytes from the server: {e}"
            ))),
            Ok(Ok(None)) => Ok(Read::Closed),
            Ok(Ok(Some(obs))) => Ok(Read::Frame(Box::new(obs))),
        }
    }

    /// A simple call: the RpcCall, then its RpcReturn.
    async fn call(
        &mut self,
        command: &str,
        params: &Json,
        shutdown: &CancellationToken,
    ) -> std::result::Result<Json, CallError> {
        let (mut conn, _) = self.send_call(command, params).await?;
        let obs = match self.read(&mut conn, shutdown).await? {
            Read::Closed => return Err(closed()),
            Read::Frame(obs) => obs,
        };
        let value = returned(*obs)?;
        self.idle = Some(conn);
        Ok(value)
    }
}

/// The error Kong reads when the server closes: its reset signal here.
fn closed() -> CallError {
    CallError::Error("closed".into())
}

/// The RpcReturn's value, or why Kong cannot take it.
fn returned(obs: Observation) -> std::result::Result<Json, CallError> {
    match obs.what {
        Observed::Return { value, .. } => match obs.view.problem {
            // A sequence that is not echoed fails Kong's assertion.
            Some(p) => Err(CallError::Assert(p)),
            None => Ok(value),
        },
        _ => Err(CallError::Garbage(format!(
            "{} from the server where the RpcReturn was due: {}",
            if obs.view.kind == Kind::Malformed {
                "a malformed frame"
            } else {
                "an unexpected frame"
            },
            obs.view.problem.unwrap_or_default()
        ))),
    }
}

impl KongWire for PbWire {
    fn protocol(&self) -> &'static str {
        "ProtoBuf:1"
    }

    async fn start(
        &mut self,
        plugin: &str,
        config: &str,
        shutdown: &CancellationToken,
    ) -> std::result::Result<Json, Failure> {
        use base64::Engine as _;
        let params = json!({
            "name": plugin,
            "config": base64::engine::general_purpose::STANDARD.encode(config),
        });
        // Any error, `closed` included, makes Kong raise.
        let ret = self
            .call("cmd_start_instance", &params, shutdown)
            .await
            .map_err(Failure::Start)?;
        Ok(ret
            .pointer("/instanceStatus/instanceId")
            .cloned()
            .unwrap_or(Json::Null))
    }

    async fn close(
        &mut self,
        id: &Json,
        shutdown: &CancellationToken,
    ) -> std::result::Result<(), Failure> {
        self.call("cmd_close_instance", &json!({"instanceId": id}), shutdown)
            .await
            .map(drop)
            .map_err(Failure::Call)
    }

    async fn event(
        &mut self,
        event: super::kong_event::Event<'_>,
        instance_id: &Json,
        phase: &str,
        shutdown: &CancellationToken,
    ) -> std::result::Result<EventEnd, Failure> {
        let params = json!({"instanceId": instance_id, "eventName": phase});
        let (mut conn, _) = self
            .send_call(HANDLE_EVENT, &params)
            .await
            .map_err(Failure::Call)?;
        loop {
            if event.report.calls.len() > MAX_PDK_CALLS {
                return Err(Failure::Silent(format!(
                    "the server made more than {MAX_PDK_CALLS} PDK calls without ending the \
                     event; plugtap stopped there (Kong would go on)"
                )));
            }
            let obs = match self
                .read(&mut conn, shutdown)
                .await
                .map_err(Failure::Call)?
            {
                Read::Closed => return Err(Failure::Call(closed())),
                Read::Frame(obs) => obs,
            };
            match obs.what {
                Observed::PdkCall { known: true, .. } | Observed::PdkEnd => {}
                Observed::PdkCall {
                    method,
                    known: false,
                } => {
                    tracing::warn!("could not find pdk method: {method}");
                    event.report.calls.push(PdkCall {
                        method: method.clone(),
                        args: Json::Null,
                        answer: None,
                        source: Some(Source::Unknown),
                        step: None,
                    });
                    return Err(Failure::Call(CallError::Error(format!(
                        "method \"{method}\" not found"
                    ))));
                }
                Observed::PdkArgs { method, args } => {
                    let Some(pdk) = PdkMethod::named(&method) else {
                        continue;
                    };
                    let lua = lua_args(pdk, &args);
                    let mut call = PdkCall {
                        method: method.clone(),
                        args: lua.clone(),
                        answer: None,
                        source: None,
                        step: None,
                    };
                    let (answer, source) = match event.pdk.call(event.canned, &method, &lua) {
                        Reply::Terminal => {
                            // No reply; Kong abandons the connection.
                            event.report.calls.push(call);
                            return Ok(EventEnd::Exit);
                        }
                        Reply::LuaError(e) => {
                            event.report.calls.push(call);
                            return Err(Failure::Lua(e));
                        }
                        Reply::Answer { answer, source } => (answer, source),
                    };
                    let json = reply(pdk, &answer);
                    call.answer = Some(answer.to_json());
                    call.source = Some(source);
                    event.report.calls.push(call);
                    let bytes = pdk.encode_reply(&json).map_err(|e| {
                        Failure::Lua(format!(
                            "Kong cannot encode its answer to {method} as {}: {e}",
                            pdk.output.full_name()
                        ))
                    })?;
                    conn.send(Direction::ToServer, &bytes)
                        .await
                        .map_err(|e| Failure::Call(CallError::Error(format!("closed ({e})"))))?;
                }
                Observed::Return { .. } => {
                    let value = returned(*obs).map_err(Failure::Call)?;
                    event.report.event_id = value.get("sequence").cloned();
                    self.idle = Some(conn);
                    return Ok(EventEnd::Ret);
                }
                Observed::Malformed | Observed::Call { .. } | Observed::PdkReply { .. } => {
                    return Err(Failure::Call(CallError::Garbage(format!(
                        "a malformed frame from the server during the event: {}",
                        obs.view.problem.unwrap_or_default()
                    ))));
                }
            }
        }
    }

    fn is_reset(&self, e: &CallError) -> bool {
        e.is_reset() || matches!(e, CallError::Error(t) if t.to_lowercase().contains("closed"))
    }
}
