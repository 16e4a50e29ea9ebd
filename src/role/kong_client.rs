//! The client role emulating Kong (over `MsgPack:1` or, through
//! [`super::pb_kong`], `ProtoBuf:1`): a spec's `kong`
//! section runs requests through a plugin the way Kong 3.x does.
//!
//! For each request and phase: get an instance id (`StartInstance` with
//! the config JSON when none is cached or the config changed, then
//! `CloseInstance` of the old one), send `plugin.HandleEvent`, and answer
//! every `{Method, Args}` the server asks for with the Step method Kong
//! would use, until `Data` is `"ret"`. `kong.response.exit` and
//! `kong.response.error` get no answer and end the event. An error with
//! `no plugin instance` resets the instance and retries the event, at most
//! `max_resets` times (Kong never stops retrying).
//!
//! Kong's decisions come from [`crate::kong`]; the wire protocol is a
//! [`KongWire`]: [`MpWire`] here ([`super::kong_rpc`],
//! [`super::kong_wire`]), `ProtoBuf:1` in [`super::pb_kong`].

use rmpv::Value as Mp;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::client::ClientOptions;
use super::kong_event::{self, Event, EventEnd, Failure, phase_report};
use super::kong_report::{KongReport, LifecycleEntry, PhaseReport, PhaseStatus, RequestReport};
use super::kong_rpc::{CallError, Pool, Rpc};
use super::kong_wire::{field, lua_value, table};
use super::launch;
use crate::codec::MsgpackCodec;
use crate::error::{Error, Result};
use crate::kong::canned::Canned;
use crate::kong::instance::{Identity, Instances, Plan};
use crate::kong::pdk::Pdk;
use crate::kong::request::{HttpRequest, Upstream};
use crate::net::Connection;
use crate::spec::kong::{KongSpec, PHASES, RequestSpec, Requests};
use crate::spec::{Spec, matcher};
use crate::value_json;

/// Runs the spec's `kong` section against a server.
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
    let mut pool = Pool::new(launched.socket.clone(), opts.limits);
    pool.release(Connection::new(
        launched.first,
        MsgpackCodec::new(opts.limits),
    ));
    let wire = MpWire {
        rpc: Rpc::new(opts.call_timeout, opts.full_values),
        pool,
    };
    let mut emulation = Emulation::new(kong, wire);
    let report = emulation.run(&shutdown).await;
    launch::stop(launched.child.as_mut(), opts.grace).await;
    Ok(report)
}

/// How Kong talks to a server: what the emulation leaves to the wire
/// protocol (`MsgPack:1` here, `ProtoBuf:1` in [`super::pb_kong`]).
#[allow(async_fn_in_trait)]
pub trait KongWire {
    /// The protocol's name, for the report.
    fn protocol(&self) -> &'static str;

    /// Starts an instance with Kong's config JSON; returns its id (`null`
    /// when the server gave none).
    async fn start(
        &mut self,
        plugin: &str,
        config: &str,
        shutdown: &CancellationToken,
    ) -> std::result::Result<Json, Failure>;

    /// Closes an instance (Kong ignores the outcome).
    async fn close(
        &mut self,
        id: &Json,
        shutdown: &CancellationToken,
    ) -> std::result::Result<(), Failure>;

    /// Runs one event, answering PDK calls until it ends.
    async fn event(
        &mut self,
        event: Event<'_>,
        instance_id: &Json,
        phase: &str,
        shutdown: &CancellationToken,
    ) -> std::result::Result<EventEnd, Failure>;

    /// True when Kong resets its instances and retries after this error.
    fn is_reset(&self, e: &CallError) -> bool {
        e.is_reset()
    }

    /// A new server process was seen since the last call (Kong drops its
    /// instances then).
    fn take_pid_change(&mut self) -> Option<Json> {
        None
    }

    /// Notes for the report (messages read but not used, ...).
    fn take_notes(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// `MsgPack:1`: Kong's `Rpc` over a connection pool.
pub struct MpWire {
    rpc: Rpc,
    pool: Pool,
}

impl KongWire for MpWire {
    fn protocol(&self) -> &'static str {
        "MsgPack:1"
    }

    async fn start(
        &mut self,
        plugin: &str,
        config: &str,
        shutdown: &CancellationToken,
    ) -> std::result::Result<Json, Failure> {
        let arg = table(vec![
            ("Name", Mp::from(plugin)),
            ("Config", Mp::from(config)),
        ]);
        let status = self
            .rpc
            .call(&mut self.pool, "plugin.StartInstance", arg, shutdown)
            .await
            .map_err(Failure::Call)?;
        Ok(field(&status, "Id").map_or(Json::Null, value_json::to_json))
    }

    async fn close(
        &mut self,
        id: &Json,
        shutdown: &CancellationToken,
    ) -> std::result::Result<(), Failure> {
        self.rpc
            .call(
                &mut self.pool,
                "plugin.CloseInstance",
                lua_value(id),
                shutdown,
            )
            .await
            .map(drop)
            .map_err(Failure::Call)
    }

    async fn event(
        &mut self,
        mut event: Event<'_>,
        instance_id: &Json,
        phase: &str,
        shutdown: &CancellationToken,
    ) -> std::result::Result<EventEnd, Failure> {
        let step_in = kong_event::handle_event(
            &mut self.rpc,
            &mut self.pool,
            instance_id,
            phase,
            event.report,
            shutdown,
        )
        .await?;
        event
            .finish(&mut self.rpc, &mut self.pool, step_in, shutdown)
            .await
    }

    fn take_pid_change(&mut self) -> Option<Json> {
        self.rpc.take_pid_change()
    }

    fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.rpc.discarded)
    }
}

/// Kong's state for one plugin in one worker.
pub struct Emulation<'a, W> {
    spec: &'a KongSpec,
    wire: W,
    instances: Instances,
    canned: Canned,
    lifecycle: Vec<LifecycleEntry>,
    request: usize,
}

impl<'a, W: KongWire> Emulation<'a, W> {
    /// A worker that has not started any instance yet.
    pub fn new(spec: &'a KongSpec, wire: W) -> Emulation<'a, W> {
        Emulation {
            spec,
            wire,
            instances: Instances::new(
                &spec.plugin,
                spec.config.clone(),
                Identity::from_spec(&spec.ids),
                spec.seq,
            ),
            canned: Canned::new(&spec.pdk),
            lifecycle: Vec::new(),
            request: 0,
        }
    }

    /// Runs every request.
    pub async fn run(&mut self, shutdown: &CancellationToken) -> KongReport {
        let overrides: Box<dyn Iterator<Item = Option<&RequestSpec>>> = match &self.spec.requests {
            Requests::Count(n) => Box::new(std::iter::repeat_n(None, *n as usize)),
            Requests::List(list) => Box::new(list.iter().map(Some)),
        };
        let mut phases: Vec<&str> = self.spec.phases.iter().map(String::as_str).collect();
        phases.sort_by_key(|p| PHASES.iter().position(|k| k == p));
        let mut requests = Vec::new();
        for over in overrides {
            if shutdown.is_cancelled() {
                break;
            }
            self.request += 1;
            if let Some(config) = over.and_then(|o| o.config.clone()) {
                self.instances.change_config(config);
                self.note("config_change", None, "the plugin's config changed".into());
            }
            let mut pdk = Pdk::new(
                HttpRequest::from_spec(&self.spec.request, over),
                Upstream::from_spec(&self.spec.response),
                self.instances.identity().clone(),
            );
            let mut reports = Vec::new();
            for phase in &phases {
                if pdk.effects.exit.is_some() && *phase != "log" {
                    reports.push(phase_report(phase, PhaseStatus::Skipped));
                    continue;
                }
                pdk.set_phase(phase);
                reports.push(self.phase(&mut pdk, phase, shutdown).await);
            }
            requests.push(RequestReport {
                index: self.request,
                method: pdk.request.method.clone(),
                url: pdk.request.url(),
                phases: reports,
                response: pdk.effects.response(&pdk.upstream),
                upstream_request: pdk.effects.upstream_request(&pdk.request.headers),
                logs: pdk.effects.logs.clone(),
                ctx_shared: pdk.effects.ctx_shared.clone(),
            });
        }
        let mut notes = self.wire.take_notes();
        for (method, i) in self.canned.unused() {
            notes.push(format!(
                "canned answer kong.pdk[{method:?}][{i}] was never used"
            ));
        }
        let mut report = KongReport {
            plugin: self.spec.plugin.clone(),
            protocol: self.wire.protocol().into(),
            passed: false,
            requests,
            lifecycle: std::mem::take(&mut self.lifecycle),
            expectation: vec![],
            notes,
        };
        if let Some(pattern) = &self.spec.expect {
            let actual = serde_json::to_value(&report).unwrap_or_default();
            report.expectation = matcher::diff(pattern, &actual);
        }
        report.passed = report.expectation.is_empty()
            && report
                .requests
                .iter()
                .flat_map(|r| &r.phases)
                .all(|p| p.status != PhaseStatus::Failed);
        report
    }

    /// One phase, with Kong's reset-and-retry.
    async fn phase(
        &mut self,
        pdk: &mut Pdk,
        phase: &str,
        shutdown: &CancellationToken,
    ) -> PhaseReport {
        let mut report = phase_report(phase, PhaseStatus::Failed);
        loop {
            report.calls.clear();
            report.event_id = None;
            let outcome = match self.instance(shutdown).await {
                Ok(id) => {
                    report.instance_id = Some(id.clone());
                    self.event(pdk, &id, phase, &mut report, shutdown).await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(EventEnd::Ret) => report.status = PhaseStatus::Completed,
                Ok(EventEnd::Exit) => report.status = PhaseStatus::Exited,
                Err(Failure::Call(e)) if self.wire.is_reset(&e) => {
                    self.instances.reset();
                    self.note("reset", report.instance_id.clone(), e.kong_log());
                    if report.resets < self.spec.max_resets {
                        report.resets += 1;
                        continue;
                    }
                    report.error = Some(format!(
                        "still `{}` after {} reset(s); giving up",
                        e.kong_log(),
                        report.resets
                    ));
                    report.kong = Some(
                        "Kong resets and retries without limit: the request never finishes and \
                         the worker spins (kong#12364)"
                            .into(),
                    );
                }
                Err(other) => {
                    report.error = Some(other.detail());
                    report.kong = Some(other.kong());
                }
            }
            return report;
        }
    }

    /// The instance id for the next event, starting one if needed.
    async fn instance(
        &mut self,
        shutdown: &CancellationToken,
    ) -> std::result::Result<Json, Failure> {
        // A replaced instance comes back from `started` once the new one runs.
        let config = match self.instances.plan() {
            Plan::Reuse(id) => return Ok(id),
            Plan::Start { config, .. } => config,
        };
        let started = self.wire.start(&self.spec.plugin, &config, shutdown).await;
        self.check_pid();
        let id = started.map_err(|e| match e {
            // A reset error still resets and retries; any other failure
            // makes Kong raise.
            Failure::Call(c) if !self.wire.is_reset(&c) => Failure::Start(c),
            other => other,
        })?;
        let seq = Some(self.instances.seq());
        if id.is_null() {
            self.note(
                "start",
                None,
                "StartInstance returned no Id: Kong sends HandleEvent without InstanceId".into(),
            );
        } else {
            self.lifecycle.push(LifecycleEntry {
                request: self.request,
                action: "start".into(),
                instance_id: Some(id.clone()),
                seq,
                detail: None,
            });
        }
        if let Some(old) = self.instances.started(id.clone()) {
            let closed = self.wire.close(&old, shutdown).await;
            self.check_pid();
            let detail = match closed {
                Ok(()) => "replaced by the new config".to_string(),
                Err(e) => format!("error ignored by Kong: {}", e.detail()),
            };
            self.note("close", Some(old), detail);
        }
        Ok(id)
    }

    /// One event, with the wire's PDK answering.
    async fn event(
        &mut self,
        pdk: &mut Pdk,
        instance_id: &Json,
        phase: &str,
        report: &mut PhaseReport,
        shutdown: &CancellationToken,
    ) -> std::result::Result<EventEnd, Failure> {
        let event = Event {
            pdk,
            canned: &mut self.canned,
            report,
        };
        let result = self.wire.event(event, instance_id, phase, shutdown).await;
        self.check_pid();
        result
    }

    /// Kong drops its instances when `serverPid` names a new process.
    fn check_pid(&mut self) {
        if let Some(pid) = self.wire.take_pid_change() {
            self.instances.reset();
            self.note(
                "server_pid",
                None,
                format!("serverPid changed to {pid}: Kong drops its instances"),
            );
        }
    }

    fn note(&mut self, action: &str, instance_id: Option<Json>, detail: String) {
        self.lifecycle.push(LifecycleEntry {
            request: self.request,
            action: action.into(),
            instance_id,
            seq: None,
            detail: Some(detail),
        });
    }
}
