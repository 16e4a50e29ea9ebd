//! The client role for `prox`: a stand-in for prox driving a plugin.
//!
//! As prox does, it starts the plugin command with pipes on stdin and
//! stdout, sends `configure` lines (`prox.configure`, by default one with
//! an empty route id), and waits for `ready`. It then calls hooks on the
//! socket `ready` names: each step of `try_methods` is a hook (`method`)
//! with its payload (`params`, short keys or readable names; fields prox
//! always sends are filled in), one call at a time per connection, over
//! `prox.connections` connections at once (`prox_calls.rs`). Lines
//! the plugin writes meanwhile (pushes, logs) are logged and reported.
//! At the end it closes the plugin's stdin, which is how prox stops a
//! plugin, and waits `--grace` for it to exit before terminating it: prox
//! itself would wait forever.
//!
//! Without a command to start, the client only connects to `--socket` and
//! makes the calls.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::client::ClientOptions;
use super::prox_calls::{self, Calls, HookStep};
use super::prox_report::{PluginReport, ProxReport};
use super::prox_stdio::{Plugin, read_stdout};
use super::report::{Failure, StepReport};
use crate::error::{Error, Result};
use crate::message::prox::stdio;
use crate::process::{self, Child};
use crate::spec::Spec;

/// Runs the spec's steps against a prox plugin.
pub async fn run(
    spec: &Spec,
    opts: ClientOptions,
    shutdown: CancellationToken,
) -> Result<ProxReport> {
    let steps = prepare(spec).map_err(|e| Error::Other(format!("{}: {e}", spec.source)))?;
    let slots = spec.prox.connections.unwrap_or(1);
    let Some(cmd) = opts.start_cmd.clone() else {
        let socket = opts.socket.clone().ok_or_else(|| {
            Error::Other(
                "no plugin to drive: give a command to start it (spec `start_cmd` or --start-cmd) \
                 or the socket of one already running (--socket)"
                    .into(),
            )
        })?;
        let (_tx, exit) = watch::channel(None);
        let calls = Calls {
            socket,
            limits: opts.limits,
            timeout: opts.call_timeout,
            wait: opts.wait,
            full: opts.full_values,
            announced: None,
            exit,
        };
        let reports = run_slots(Arc::new(calls), steps, slots, &shutdown).await;
        return Ok(ProxReport::new(reports, PluginReport::default()));
    };
    let (mut child, stdin, stdout) = Child::spawn_piped(&cmd)?;
    let mut plugin = Plugin {
        report: PluginReport {
            command: Some(cmd.display()),
            ..PluginReport::default()
        },
        events: read_stdout(stdout, opts.full_values),
        stdin: Some(stdin),
        full: opts.full_values,
    };
    let (exit_tx, exit_rx) = watch::channel(None);
    let run = async {
        let configures = spec
            .prox
            .configure
            .clone()
            .unwrap_or_else(|| vec![json!({"route_id": ""})]);
        for params in &configures {
            if let Err(e) = plugin.send(&stdio::configure_line(params)).await {
                let exited = tokio::time::timeout(Duration::from_millis(500), child.wait()).await;
                return Err(Error::Other(match exited {
                    Ok(Ok(status)) => format!(
                        "the plugin exited ({}) before sending `ready` ({e})",
                        process::describe(status)
                    ),
                    _ => e.to_string(),
                }));
            }
        }
        let ready = tokio::select! {
            _ = shutdown.cancelled() => return Err(Error::Other("interrupted".into())),
            ready = plugin.ready(opts.wait) => ready,
            status = child.wait() => {
                let how = status.map_or_else(|e| e.to_string(), process::describe);
                return Err(Error::Other(format!("the plugin exited ({how}) before sending `ready`")));
            }
        };
        let (socket, hooks) = match ready {
            Ok(ready) => ready,
            Err(e) => {
                // Say how the plugin ended, when it has.
                let exited = tokio::time::timeout(Duration::from_millis(500), child.wait()).await;
                return Err(match exited {
                    Ok(Ok(status)) => Error::Other(format!(
                        "{e}; the plugin exited ({})",
                        process::describe(status)
                    )),
                    _ => e,
                });
            }
        };
        let socket = match &opts.socket {
            Some(over) => {
                tracing::info!("connecting to {} instead of the announced {socket}", over.display());
                over.clone()
            }
            None => socket.into(),
        };
        plugin.report.socket = Some(socket.display().to_string());
        if let Err(e) = crate::net::connect_when_ready(&socket, opts.wait).await {
            return Err(Error::Other(format!(
                "the plugin's `ready` names socket {}, but it cannot be reached: {e}",
                socket.display()
            )));
        }
        let calls = Arc::new(Calls {
            socket,
            limits: opts.limits,
            timeout: opts.call_timeout,
            wait: opts.wait,
            full: opts.full_values,
            announced: Some(hooks),
            exit: exit_rx,
        });
        let steps_done = run_slots(calls, steps, slots, &shutdown);
        tokio::pin!(steps_done);
        let mut exited = false;
        let reports = loop {
            tokio::select! {
                reports = &mut steps_done => break reports,
                status = child.wait(), if !exited => {
                    exited = true;
                    let how = status.map_or_else(|e| e.to_string(), process::describe);
                    plugin.report.failures.push(Failure::new(format!(
                        "the plugin exited ({how}) while prox was calling it; prox restarts it after 1 s and sends `configure` again"
                    )));
                    plugin.report.exit = Some(format!("exited ({how}) during the calls"));
                    let _ = exit_tx.send(Some(how));
                }
            }
        };
        if spec.prox.linger_ms > 0 && !exited {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = child.wait() => {}
                _ = tokio::time::sleep(Duration::from_millis(spec.prox.linger_ms)) => {}
            }
        }
        Ok(reports)
    }
    .await;
    plugin.drain();
    plugin.stop(&mut child, opts.grace).await;
    let reports = run?;
    Ok(ProxReport::new(reports, plugin.report))
}

/// Checks a spec for this role: every step is a hook with a payload of its
/// type; `prox.configure` entries are objects.
pub fn check(spec: &Spec) -> std::result::Result<(), String> {
    prepare(spec).map(drop)
}

fn prepare(spec: &Spec) -> std::result::Result<Vec<HookStep>, String> {
    let slots = spec.prox.connections.unwrap_or(1);
    if slots == 0 {
        return Err("prox.connections must be at least 1".into());
    }
    let steps = spec
        .client
        .try_methods
        .iter()
        .enumerate()
        .map(|(i, s)| prox_calls::prepare(i, s))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if slots > 1 && steps.iter().any(|s| !s.step.capture.is_empty()) {
        return Err(
            "captures need one connection: with prox.connections above 1, steps run at the same time"
                .into(),
        );
    }
    for (i, c) in spec.prox.configure.iter().flatten().enumerate() {
        if !c.is_object() {
            return Err(format!("prox.configure[{i}]: not an object"));
        }
    }
    Ok(steps)
}

/// Runs the steps over `slots` connections at once; reports in step order.
async fn run_slots(
    calls: Arc<Calls>,
    steps: Vec<HookStep>,
    slots: usize,
    shutdown: &CancellationToken,
) -> Vec<StepReport> {
    let mut per_slot: Vec<Vec<HookStep>> = vec![Vec::new(); slots];
    for s in steps {
        per_slot[s.index % slots].push(s);
    }
    let tasks: Vec<_> = per_slot
        .into_iter()
        .map(|steps| tokio::spawn(prox_calls::run(calls.clone(), steps, shutdown.clone())))
        .collect();
    let mut reports = Vec::new();
    for task in tasks {
        match task.await {
            Ok(r) => reports.extend(r),
            Err(e) => tracing::warn!("a connection's task failed: {e}"),
        }
    }
    reports.sort_by_key(|r| r.index);
    reports
}
