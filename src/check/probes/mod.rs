//! The protocol checks of `plugtap check`: instances, events, pooling and
//! concurrency, Kong's reset rule, and bytes nobody asked for. Each drives
//! the server the way Kong would, through the Kong emulation's pieces
//! ([`crate::role::kong_event`], [`crate::role::kong_rpc`]).

use std::time::Duration;

use rmpv::Value as Mp;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

mod pooling;

use super::{CheckOptions, CheckResult};
use crate::kong::canned::Canned;
use crate::kong::instance::{Identity, config_text};
use crate::kong::pdk::Pdk;
use crate::kong::request::{HttpRequest, Upstream};
use crate::kong::step::is_reset_error;
use crate::role::kong_event::{self, Event, EventEnd, Failure, phase_report};
use crate::role::kong_report::{PhaseReport, PhaseStatus};
use crate::role::kong_rpc::{CallError, Pool, Rpc};
use crate::role::kong_wire::{field, lua_value, table};
use crate::spec::kong::{IdsSpec, RequestSpec, UpstreamSpec};
use crate::value_json;

/// How long idle connections are watched for stray bytes.
const WATCH: Duration = Duration::from_millis(300);

/// State shared by the protocol checks.
pub(super) struct Probes<'a> {
    opts: &'a CheckOptions,
    phase: String,
    shutdown: &'a CancellationToken,
    identity: Identity,
    pool: Pool,
    rpc: Rpc,
    used: Vec<(Pool, Rpc)>,
    instance: Option<Json>,
    pdk_calls: usize,
}

impl<'a> Probes<'a> {
    pub(super) fn new(
        opts: &'a CheckOptions,
        phase: &str,
        shutdown: &'a CancellationToken,
    ) -> Probes<'a> {
        Probes {
            opts,
            phase: phase.to_owned(),
            shutdown,
            identity: Identity::from_spec(&IdsSpec::default()),
            pool: Pool::new(opts.socket.clone(), opts.limits),
            rpc: Rpc::new(opts.timeout, opts.full_values),
            used: Vec::new(),
            instance: None,
            pdk_calls: 0,
        }
    }

    /// The checks from `start_instance` to `close_instance`.
    pub(super) async fn run(&mut self) -> Vec<CheckResult> {
        let mut out = vec![self.start_instance().await];
        let Some(id) = self.instance.clone() else {
            let why = "no instance (start_instance failed)";
            out.push(CheckResult::skip("event", why));
            out.push(CheckResult::skip("steps_across_connections", why));
            out.push(CheckResult::skip("concurrent_events", why));
            out.push(self.unknown_instance().await);
            out.push(CheckResult::skip("close_instance", why));
            return out;
        };
        let event = self.event(&id).await;
        let event_ok = event.status == super::Status::Pass;
        out.push(event);
        if event_ok {
            out.push(self.steps_across_connections(&id).await);
            out.push(self.concurrent_events(&id).await);
        } else {
            let why = "a single event does not work (see event)";
            out.push(CheckResult::skip("steps_across_connections", why));
            out.push(CheckResult::skip("concurrent_events", why));
        }
        out.push(self.unknown_instance().await);
        out.push(self.close_instance(&id).await);
        out
    }

    async fn start_instance(&mut self) -> CheckResult {
        const NAME: &str = "start_instance";
        let config = config_text(&self.opts.plugin, &self.opts.config, &self.identity, 1);
        let arg = table(vec![
            ("Name", Mp::from(self.opts.plugin.as_str())),
            ("Config", Mp::from(config.as_str())),
        ]);
        match self
            .rpc
            .call(&mut self.pool, "plugin.StartInstance", arg, self.shutdown)
            .await
        {
            Ok(status) => match field(&status, "Id") {
                Some(id) if !id.is_nil() => {
                    let id = value_json::to_json(id);
                    let r = CheckResult::pass(NAME, format!("instance {id} started"));
                    self.instance = Some(id.clone());
                    if id.is_u64() || id.is_i64() {
                        r
                    } else {
                        r.with_detail(format!(
                            "the Id {id} is not an integer; Kong passes it back as it is"
                        ))
                    }
                }
                _ => CheckResult::fail(
                    NAME,
                    "the StartInstance result has no Id",
                    "Kong caches a nil id and sends HandleEvent without InstanceId: the plugin \
                     never runs",
                )
                .with_detail(format!("result: {}", value_json::to_json(&status))),
            },
            Err(e) => CheckResult::fail(
                NAME,
                "StartInstance failed",
                format!(
                    "Kong logs `starting instance: {}` and raises an error: every request \
                     through the plugin gets a 500",
                    e.kong_log()
                ),
            )
            .with_detail(e.detail()),
        }
    }

    async fn event(&mut self, id: &Json) -> CheckResult {
        const NAME: &str = "event";
        let (report, result) = run_event(
            &mut self.rpc,
            &mut self.pool,
            id,
            &self.phase,
            &self.identity,
            self.shutdown,
        )
        .await;
        self.pdk_calls = report.calls.len();
        let calls: Vec<&str> = report.calls.iter().map(|c| c.method.as_str()).collect();
        match result {
            Ok(end) => CheckResult::pass(
                NAME,
                format!(
                    "{}: {} PDK call(s) [{}], then {}",
                    self.phase,
                    calls.len(),
                    calls.join(", "),
                    if end == EventEnd::Ret { "ret" } else { "exit" }
                ),
            ),
            Err(f) => {
                let kong = if matches!(&f, Failure::Call(e) if e.is_reset()) {
                    "the server does not know the instance it just started: Kong resets and \
                     retries without limit, and the request never finishes"
                        .to_string()
                } else {
                    f.kong()
                };
                CheckResult::fail(
                    NAME,
                    format!(
                        "the {} event failed after [{}]",
                        self.phase,
                        calls.join(", ")
                    ),
                    kong,
                )
                .with_detail(f.detail())
            }
        }
    }

    async fn unknown_instance(&mut self) -> CheckResult {
        const NAME: &str = "unknown_instance";
        let unknown = match self.instance.as_ref().and_then(Json::as_u64) {
            Some(n) => Json::from(n.saturating_add(1_000_000)),
            None => Json::from(1_000_000u64),
        };
        let mut report = phase_report(&self.phase, PhaseStatus::Failed);
        let result = kong_event::handle_event(
            &mut self.rpc,
            &mut self.pool,
            &unknown,
            &self.phase,
            &mut report,
            self.shutdown,
        )
        .await;
        match result {
            Err(Failure::Call(CallError::Error(text))) if is_reset_error(&text) => {
                CheckResult::pass(NAME, format!("instance {unknown}: error {text:?}"))
            }
            Err(Failure::Call(CallError::Error(text))) => CheckResult::fail(
                NAME,
                format!("instance {unknown}: error {text:?} lacks `no plugin instance`"),
                "after a server restart Kong still sends the instance ids it cached; it resets \
                 and starts new instances only when the error contains `no plugin instance`, \
                 so with this error every request logs it and runs without the plugin until \
                 Kong restarts",
            ),
            Err(other) => CheckResult::fail(
                NAME,
                format!("instance {unknown}: {}", other.detail()),
                format!(
                    "{}; Kong cannot recover its instances after a server restart",
                    other.kong()
                ),
            ),
            Ok(step_in) => {
                let mut pdk = new_pdk(&self.phase, &self.identity);
                let mut canned = Canned::default();
                let mut event = Event {
                    pdk: &mut pdk,
                    canned: &mut canned,
                    report: &mut report,
                };
                let _ = event
                    .finish(&mut self.rpc, &mut self.pool, step_in, self.shutdown)
                    .await;
                CheckResult::fail(
                    NAME,
                    format!(
                        "the server ran an event for instance {unknown}, which it never started"
                    ),
                    "after a server restart Kong keeps using its cached ids and never resets: \
                     requests run on whatever instance has that id, possibly with another \
                     route's config (kong#8370)",
                )
            }
        }
    }

    async fn close_instance(&mut self, id: &Json) -> CheckResult {
        const NAME: &str = "close_instance";
        let leak = "Kong ignores CloseInstance errors, so nothing fails at once, but every \
                    config change leaves an instance behind in the server";
        if let Err(e) = self
            .rpc
            .call(
                &mut self.pool,
                "plugin.CloseInstance",
                lua_value(id),
                self.shutdown,
            )
            .await
        {
            return CheckResult::fail(NAME, format!("CloseInstance({id}) failed"), leak)
                .with_detail(e.detail());
        }
        let mut report = phase_report(&self.phase, PhaseStatus::Failed);
        let after = kong_event::handle_event(
            &mut self.rpc,
            &mut self.pool,
            id,
            &self.phase,
            &mut report,
            self.shutdown,
        )
        .await;
        match after {
            Err(Failure::Call(CallError::Error(text))) if is_reset_error(&text) => {
                CheckResult::pass(NAME, format!("instance {id} closed; then: error {text:?}"))
            }
            Ok(_) => CheckResult::fail(
                NAME,
                format!("instance {id} still runs events after CloseInstance"),
                leak,
            ),
            Err(other) => CheckResult::fail(
                NAME,
                format!(
                    "after CloseInstance({id}), HandleEvent got: {}",
                    other.detail()
                ),
                "a closed instance should fail with `no plugin instance`, Kong's signal to \
                 start a new one; with anything else Kong logs an error on every request that \
                 still uses the id",
            ),
        }
    }
}

/// One full event on `pool` with a fresh request.
async fn run_event(
    rpc: &mut Rpc,
    pool: &mut Pool,
    id: &Json,
    phase: &str,
    identity: &Identity,
    shutdown: &CancellationToken,
) -> (PhaseReport, Result<EventEnd, Failure>) {
    let mut report = phase_report(phase, PhaseStatus::Failed);
    let mut pdk = new_pdk(phase, identity);
    let mut canned = Canned::default();
    let result = match kong_event::handle_event(rpc, pool, id, phase, &mut report, shutdown).await {
        Ok(step_in) => {
            let mut event = Event {
                pdk: &mut pdk,
                canned: &mut canned,
                report: &mut report,
            };
            event.finish(rpc, pool, step_in, shutdown).await
        }
        Err(e) => Err(e),
    };
    (report, result)
}

pub(in crate::check) fn new_pdk(phase: &str, identity: &Identity) -> Pdk {
    let mut pdk = Pdk::new(
        HttpRequest::from_spec(&RequestSpec::default(), None),
        Upstream::from_spec(&UpstreamSpec::default()),
        identity.clone(),
    );
    pdk.set_phase(phase);
    pdk
}
