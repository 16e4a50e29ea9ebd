//! The checks about connections: an event spread over pooled
//! connections, events in flight at once, and bytes arriving on idle
//! connections. Split from [`super`] to keep each file to one concern.

use std::sync::Arc;

use serde_json::Value as Json;
use tokio::sync::Barrier;
use tokio_util::sync::CancellationToken;

use super::{Probes, WATCH, new_pdk, run_event};
use crate::check::CheckResult;
use crate::kong::canned::Canned;
use crate::kong::instance::Identity;
use crate::role::kong_event::{self, Event, phase_report};
use crate::role::kong_report::PhaseStatus;
use crate::role::kong_rpc::{Pool, Rpc};
use crate::role::unsolicited;

impl Probes<'_> {
    pub(super) async fn steps_across_connections(&mut self, id: &Json) -> CheckResult {
        const NAME: &str = "steps_across_connections";
        if self.pdk_calls == 0 {
            return CheckResult::skip(
                NAME,
                "the plugin made no PDK call, so its events send no Step",
            );
        }
        let mut pool = Pool::new(self.opts.socket.clone(), self.opts.limits).rotating();
        let mut rpc = Rpc::new(self.opts.timeout, self.opts.full_values);
        let (report, result) = run_event(
            &mut rpc,
            &mut pool,
            id,
            &self.phase,
            &self.identity,
            self.shutdown,
        )
        .await;
        self.used.push((pool, rpc));
        match result {
            Ok(_) => CheckResult::pass(
                NAME,
                format!(
                    "HandleEvent and {} Step(s), each on another connection than the call before",
                    report.calls.len()
                ),
            ),
            Err(f) => CheckResult::fail(
                NAME,
                format!(
                    "the event failed once its calls used different connections (after {} PDK call(s))",
                    report.calls.len()
                ),
                format!(
                    "Kong takes a connection from its pool for every call, so one event's Steps \
                     can arrive on any connection; such requests fail ({}), and Kong goes on \
                     without the plugin's effects",
                    f.detail()
                ),
            )
            .with_detail(f.detail()),
        }
    }

    pub(super) async fn concurrent_events(&mut self, id: &Json) -> CheckResult {
        const NAME: &str = "concurrent_events";
        let n = self.opts.connections.max(2);
        let barrier = Arc::new(Barrier::new(n));
        let mut tasks = Vec::new();
        for i in 0..n {
            let pool = Pool::new(self.opts.socket.clone(), self.opts.limits);
            let rpc = Rpc::new(self.opts.timeout, self.opts.full_values);
            let (id, phase, identity) = (id.clone(), self.phase.clone(), self.identity.clone());
            let (barrier, shutdown) = (barrier.clone(), self.shutdown.clone());
            tasks.push(tokio::spawn(async move {
                concurrent_one(i, pool, rpc, id, phase, identity, barrier, shutdown).await
            }));
        }
        let mut failures = Vec::new();
        for task in tasks {
            match task.await {
                Ok((pool, rpc, Ok(()))) => self.used.push((pool, rpc)),
                Ok((pool, rpc, Err(e))) => {
                    failures.push(e);
                    self.used.push((pool, rpc));
                }
                Err(e) => failures.push(format!("task failed: {e}")),
            }
        }
        if failures.is_empty() {
            CheckResult::pass(
                NAME,
                format!("{n} events in flight at once, on {n} connections, all completed"),
            )
        } else {
            CheckResult::fail(
                NAME,
                format!("{} of {n} concurrent events failed", failures.len()),
                "Kong opens a connection per plugin call in flight and runs them at once; \
                 under concurrent traffic such requests wait for Kong's 60 s timeout \
                 (`no data`) or fail",
            )
            .with_detail(failures.join("\n"))
        }
    }

    /// The `no_unsolicited_bytes` check, over every connection used.
    pub(in crate::check) async fn unsolicited(&mut self) -> CheckResult {
        const NAME: &str = "no_unsolicited_bytes";
        let mut findings: Vec<String> = std::mem::take(&mut self.rpc.discarded);
        let mut watched = 0;
        let full = self.opts.full_values;
        for conn in self.pool.idle_mut() {
            watched += 1;
            if let Some(c) = unsolicited::stray_bytes(conn, WATCH, full)
                .await
                .complaint()
            {
                findings.push(format!("{}: {c}", conn.id()));
            }
        }
        for (pool, rpc) in &mut self.used {
            findings.append(&mut rpc.discarded);
            for conn in pool.idle_mut() {
                watched += 1;
                if let Some(c) = unsolicited::stray_bytes(conn, WATCH, full)
                    .await
                    .complaint()
                {
                    findings.push(format!("{}: {c}", conn.id()));
                }
            }
        }
        if findings.is_empty() {
            CheckResult::pass(
                NAME,
                format!(
                    "nothing after any reply; {watched} idle connection(s) watched for {WATCH:?}"
                ),
            )
        } else {
            CheckResult::fail(
                NAME,
                format!("{} unsolicited write(s)", findings.len()),
                "Kong reads each reply with a fresh decoder: stray bytes in the same read are \
                 dropped, later ones are read as the reply to the next call on that pooled \
                 connection, which then fails with `unexpected RPC response ID from Go plugin \
                 server` (a 500)",
            )
            .with_detail(findings.join("\n"))
        }
    }
}

/// One of the concurrent events: HandleEvent, wait until every event got
/// its first reply, then finish.
#[allow(clippy::too_many_arguments)]
async fn concurrent_one(
    i: usize,
    mut pool: Pool,
    mut rpc: Rpc,
    id: Json,
    phase: String,
    identity: Identity,
    barrier: Arc<Barrier>,
    shutdown: CancellationToken,
) -> (Pool, Rpc, Result<(), String>) {
    let mut report = phase_report(&phase, PhaseStatus::Failed);
    let first =
        kong_event::handle_event(&mut rpc, &mut pool, &id, &phase, &mut report, &shutdown).await;
    barrier.wait().await;
    let result = match first {
        Err(f) => Err(format!("connection {}: HandleEvent: {}", i + 1, f.detail())),
        Ok(step_in) => {
            let mut pdk = new_pdk(&phase, &identity);
            let mut canned = Canned::default();
            let mut event = Event {
                pdk: &mut pdk,
                canned: &mut canned,
                report: &mut report,
            };
            match event.finish(&mut rpc, &mut pool, step_in, &shutdown).await {
                Ok(_) => Ok(()),
                Err(f) => Err(format!(
                    "connection {}: after {} PDK call(s): {}",
                    i + 1,
                    report.calls.len(),
                    f.detail()
                )),
            }
        }
    };
    (pool, rpc, result)
}
