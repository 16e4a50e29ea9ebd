//! The client role emulating Kong over `MsgPack:1`: a spec's `kong`
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
//! Kong's decisions come from [`crate::kong`]; this module only speaks
//! the wire protocol ([`super::kong_rpc`], [`super::kong_wire`]).

use std::time::Duration;

use rmpv::Value as Mp;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::client::ClientOptions;
use super::kong_event::{self, Event, EventEnd, Failure, phase_report};
use super::kong_report::{KongReport, LifecycleEntry, PhaseReport, PhaseStatus, RequestReport};
use super::kong_rpc::{Pool, Rpc};
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
    let mut emulation = Emulation::new(kong, opts.call_timeout, opts.full_values);
    let report = emulation.run(&mut pool, &shutdown).await;
    launch::stop(launched.child.as_mut(), opts.grace).await;
    Ok(report)
}

/// Kong's state for one plugin in one worker.
pub struct Emulation<'a> {
    spec: &'a KongSpec,
    rpc: Rpc,
    instances: Instances,
    canned: Canned,
    lifecycle: Vec<LifecycleEntry>,
    request: usize,
}

impl<'a> Emulation<'a> {
    /// A worker that has not started any instance yet.
    pub fn new(spec: &'a KongSpec, timeout: Duration, full_values: bool) -> Emulation<'a> {
        Emulation {
            spec,
            rpc: Rpc::new(timeout, full_values),
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
    pub async fn run(&mut self, pool: &mut Pool, shutdown: &CancellationToken) -> KongReport {
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
                reports.push(self.phase(pool, &mut pdk, phase, shutdown).await);
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
        let mut notes = std::mem::take(&mut self.rpc.discarded);
        for (method, i) in self.canned.unused() {
            notes.push(format!(
                "canned answer kong.pdk[{method:?}][{i}] was never used"
            ));
        }
        let mut report = KongReport {
            plugin: self.spec.plugin.clone(),
            protocol: "MsgPack:1".into(),
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
        pool: &mut Pool,
        pdk: &mut Pdk,
        phase: &str,
        shutdown: &CancellationToken,
    ) -> PhaseReport {
        let mut report = phase_report(phase, PhaseStatus::Failed);
        loop {
            report.calls.clear();
            report.event_id = None;
            let outcome = match self.instance(pool, shutdown).await {
                Ok(id) => {
                    report.instance_id = Some(id.clone());
                    self.event(pool, pdk, &id, phase, &mut report, shutdown)
                        .await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(EventEnd::Ret) => report.status = PhaseStatus::Completed,
                Ok(EventEnd::Exit) => report.status = PhaseStatus::Exited,
                Err(Failure::Call(e)) if e.is_reset() => {
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
        pool: &mut Pool,
        shutdown: &CancellationToken,
    ) -> std::result::Result<Json, Failure> {
        // A replaced instance comes back from `started` once the new one runs.
        let config = match self.instances.plan() {
            Plan::Reuse(id) => return Ok(id),
            Plan::Start { config, .. } => config,
        };
        let arg = table(vec![
            ("Name", Mp::from(self.spec.plugin.as_str())),
            ("Config", Mp::from(config.as_str())),
        ]);
        let status = self
            .call(pool, "plugin.StartInstance", arg, shutdown)
            .await
            .map_err(|e| match e {
                // A reset error still resets and retries; any other failure
                // makes Kong raise.
                Failure::Call(c) if !c.is_reset() => Failure::Start(c),
                other => other,
            })?;
        let id = field(&status, "Id").map_or(Json::Null, value_json::to_json);
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
            let detail = match self
                .call(pool, "plugin.CloseInstance", lua_value(&old), shutdown)
                .await
            {
                Ok(_) => "replaced by the new config".to_string(),
                Err(e) => format!("error ignored by Kong: {}", e.detail()),
            };
            self.note("close", Some(old), detail);
        }
        Ok(id)
    }

    /// One event: HandleEvent, then a Step per PDK call until `ret`.
    async fn event(
        &mut self,
        pool: &mut Pool,
        pdk: &mut Pdk,
        instance_id: &Json,
        phase: &str,
        report: &mut PhaseReport,
        shutdown: &CancellationToken,
    ) -> std::result::Result<EventEnd, Failure> {
        let step_in =
            kong_event::handle_event(&mut self.rpc, pool, instance_id, phase, report, shutdown)
                .await;
        let result = match step_in {
            Ok(step_in) => {
                let mut event = Event {
                    pdk,
                    canned: &mut self.canned,
                    report,
                };
                event.finish(&mut self.rpc, pool, step_in, shutdown).await
            }
            Err(e) => Err(e),
        };
        self.check_pid();
        result
    }

    async fn call(
        &mut self,
        pool: &mut Pool,
        method: &str,
        arg: Mp,
        shutdown: &CancellationToken,
    ) -> std::result::Result<Mp, Failure> {
        let result = self.rpc.call(pool, method, arg, shutdown).await;
        self.check_pid();
        result.map_err(Failure::Call)
    }

    /// Kong drops its instances when `serverPid` names a new process.
    fn check_pid(&mut self) {
        if let Some(pid) = self.rpc.take_pid_change() {
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
