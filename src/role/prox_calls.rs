//! The prox client's hook calls on one socket connection, as prox makes
//! them: the frame written, one reply read (none for `on_disconnect`),
//! then the connection reused; a connection that failed a call is closed
//! and the next call dials a new one, as prox's pool does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::pb_outcome::blank;
use super::prox_wire::ProxConn;
use super::report::{Failure, StepReport, StepStatus, capture};
use crate::codec::Limits;
use crate::conversation::prox::{Observation, Observed};
use crate::message::Direction;
use crate::message::prox::{Encoding, Hook, envelope, payload};
use crate::net;
use crate::spec::template::{self, Vars};
use crate::spec::{ExpectError, Step, matcher};

/// Settings every connection of a run shares.
#[derive(Debug)]
pub(super) struct Calls {
    /// The plugin's socket.
    pub(super) socket: PathBuf,
    /// Frame and value limits.
    pub(super) limits: Limits,
    /// How long a reply may take.
    pub(super) timeout: Duration,
    /// How long dialing may retry.
    pub(super) wait: Duration,
    /// Log values in full.
    pub(super) full: bool,
    /// The hooks `ready` announced, when there was a `ready`.
    pub(super) announced: Option<Vec<String>>,
    /// How the plugin process ended, once it has.
    pub(super) exit: watch::Receiver<Option<String>>,
}

/// A step with its hook, its `expect.result` in short keys.
#[derive(Debug, Clone)]
pub(super) struct HookStep {
    pub(super) index: usize,
    pub(super) hook: Hook,
    pub(super) step: Step,
}

/// Checks a step of a prox client spec and translates its readable names.
pub(super) fn prepare(index: usize, step: &Step) -> Result<HookStep, String> {
    let at = format!("try_methods[{index}]");
    let hook = Hook::named(&step.method).ok_or_else(|| {
        format!(
            "{at}: `{}` is not a prox hook (valid: {})",
            step.method,
            Hook::names()
        )
    })?;
    let mut step = step.clone();
    if step.params.is_array() && step.params.as_array().is_some_and(Vec::is_empty) {
        // The loader's default for absent params.
        step.params = Json::Object(Default::default());
    }
    hook.request()
        .to_short(&step.params, &format!("{at}.params"))?;
    if let Some(expect) = step.expect.as_mut()
        && let Some(pattern) = expect.result.as_mut()
    {
        let Some(schema) = hook.result() else {
            return Err(format!("{at}.expect.result: {hook} gets no reply"));
        };
        *pattern = schema.to_short(pattern, &format!("{at}.expect.result"))?;
    }
    if !hook.expects_reply() && !step.capture.is_empty() {
        return Err(format!("{at}.capture: {hook} gets no reply"));
    }
    Ok(HookStep { index, hook, step })
}

/// Runs `steps` in order on one connection slot.
pub(super) async fn run(
    calls: Arc<Calls>,
    steps: Vec<HookStep>,
    shutdown: CancellationToken,
) -> Vec<StepReport> {
    let mut conn: Option<ProxConn> = None;
    let mut vars: Vars = template::builtins();
    let mut reports = Vec::with_capacity(steps.len());
    let mut stop = false;
    for hs in &steps {
        let mut report = blank((hs.index, &hs.step));
        if stop || shutdown.is_cancelled() {
            reports.push(report);
            continue;
        }
        if conn.is_none() {
            if let Some(how) = calls.exit.borrow().clone() {
                report.failures.push(Failure::new(format!(
                    "not sent: the plugin process has ended ({how}); prox would restart it first"
                )));
                report.status = StepStatus::Failed;
                reports.push(report);
                stop = true;
                continue;
            }
            match net::connect_when_ready(&calls.socket, calls.wait).await {
                Ok(stream) => conn = Some(ProxConn::new(stream, calls.limits, calls.full)),
                Err(e) => {
                    report.failures.push(Failure::new(format!(
                        "cannot connect to the plugin's socket: {e}"
                    )));
                    report.status = StepStatus::Failed;
                    reports.push(report);
                    stop = true;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let keep = call(&calls, c, hs, &mut report, &mut vars, &shutdown).await;
        if !keep {
            conn = None;
        }
        report.status = if report.failures.is_empty() {
            StepStatus::Passed
        } else {
            StepStatus::Failed
        };
        reports.push(report);
    }
    // A reply to a last on_disconnect would otherwise go unseen.
    if let (Some(c), Some(last)) = (conn.as_mut(), reports.last_mut())
        && steps.last().is_some_and(|s| !s.hook.expects_reply())
        && let Some(stray) = stray(c, Duration::from_millis(250)).await
    {
        last.failures.push(Failure::new(stray));
        last.status = StepStatus::Failed;
    }
    reports
}

/// Makes one call. False when prox would not reuse the connection.
async fn call(
    calls: &Calls,
    conn: &mut ProxConn,
    hs: &HookStep,
    report: &mut StepReport,
    vars: &mut Vars,
    shutdown: &CancellationToken,
) -> bool {
    let hook = hs.hook;
    if let Some(hooks) = &calls.announced
        && !hooks.iter().any(|h| h == hook.name())
    {
        tracing::warn!(
            "step {}: the plugin's `ready` does not announce {hook}; prox would never call it",
            hs.index
        );
    }
    if let Some(stray) = stray(conn, Duration::ZERO).await {
        report.failures.push(Failure::new(format!(
            "before this call: {stray}; the connection is dropped"
        )));
        return false;
    }
    let inner = template::substitute(&hs.step.params, vars)
        .and_then(|p| hook.request().to_short(&p, "params"))
        .map(|p| payload::fill(hook.request(), &p))
        .and_then(|p| {
            let bytes = payload::encode(hook.request(), &p, Encoding::Go)?;
            Ok((p, bytes))
        });
    let (sent, inner) = match inner {
        Ok(x) => x,
        Err(e) => {
            report.failures.push(Failure::new(format!(
                "cannot build the {hook} payload: {e}"
            )));
            return true;
        }
    };
    report.params = Some(sent);
    let frame = envelope::encode(hook.byte(), &inner, Encoding::Go);
    let started = Instant::now();
    if let Err(e) = conn.send(Direction::ToServer, &frame).await {
        report
            .failures
            .push(Failure::new(format!("cannot send the call: {e}")));
        return false;
    }
    if !hook.expects_reply() {
        // Fire-and-forget; the connection goes back to the pool.
        return true;
    }
    let read = tokio::select! {
        _ = shutdown.cancelled() => {
            report.failures.push(Failure::new("interrupted while waiting for the reply"));
            return false;
        }
        read = tokio::time::timeout(calls.timeout, conn.read(Direction::ToClient)) => read,
    };
    report.elapsed_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    let outcome = match read {
        Err(_) => Err(format!(
            "timeout: no reply within {:?}; {}",
            calls.timeout,
            hook.on_failure()
        )),
        Ok(Err(e)) => Err(format!("undecodable: {e}; {}", hook.on_failure())),
        Ok(Ok(None)) => {
            let how = exit_status(calls).await;
            Err(format!(
                "closed: the plugin closed the connection instead of answering{how}; {}",
                hook.on_failure()
            ))
        }
        Ok(Ok(Some(obs))) => match obs.what {
            Observed::Reply {
                usable: true,
                result: Some(result),
                ..
            } => Ok((result, obs.view.problem)),
            _ => Err(format!(
                "unusable reply: {}",
                obs.view.problem.unwrap_or_else(|| "not a reply".into())
            )),
        },
    };
    let keep = outcome.is_ok() || outcome.as_ref().is_err_and(|e| e.starts_with("unusable"));
    settle(&hs.step, report, outcome, vars);
    keep
}

/// Records the outcome of a call and checks the step's expectations.
fn settle(
    step: &Step,
    report: &mut StepReport,
    outcome: Result<(Json, Option<String>), String>,
    vars: &mut Vars,
) {
    let expected_error = step.expect.as_ref().and_then(|e| e.error.as_ref());
    match outcome {
        Err(text) => {
            let wanted = match expected_error {
                Some(ExpectError::Any) => true,
                Some(ExpectError::Contains(want)) => text.contains(want.as_str()),
                _ => false,
            };
            if !wanted {
                report.failures.push(Failure::new(text.clone()));
            }
            report.error = Some(Json::from(text));
        }
        Ok((result, note)) => {
            if let Some(ExpectError::Any | ExpectError::Contains(_)) = expected_error {
                report.failures.push(Failure::new(
                    "expected the call to fail, but the plugin replied",
                ));
            }
            if let Some(note) = note {
                tracing::warn!("step {}: {note}", report.index);
            }
            if let Some(pattern) = step.expect.as_ref().and_then(|e| e.result.as_ref()) {
                let pattern =
                    template::substitute(pattern, vars).unwrap_or_else(|_| pattern.clone());
                let mismatches = matcher::diff(&pattern, &result);
                if !mismatches.is_empty() {
                    report.failures.push(Failure {
                        message: "result does not match the expectation".into(),
                        mismatches,
                    });
                }
            }
            capture(&step.capture, &result, vars, &mut report.failures);
            report.result = Some(result);
        }
    }
}

/// A frame (or a close) from the plugin on an idle connection, waiting at
/// most `wait`; described for a failure.
async fn stray(conn: &mut ProxConn, wait: Duration) -> Option<String> {
    // With no wait, the read is polled once: whatever the socket holds.
    let read = tokio::time::timeout(wait, conn.read(Direction::ToClient)).await;
    describe_stray(read.ok()?)
}

fn describe_stray(read: crate::error::Result<Option<Observation>>) -> Option<String> {
    match read {
        Ok(Some(obs)) => Some(format!(
            "the plugin sent a frame nobody asked for: {}",
            obs.view
                .problem
                .unwrap_or_else(|| "a frame when no reply was due".into())
        )),
        Ok(None) => Some(
            "the plugin closed an idle connection; prox's next call on it (from its pool) fails"
                .into(),
        ),
        Err(e) => Some(format!("undecodable bytes on an idle connection: {e}")),
    }
}

/// ` (the plugin exited: ...)` once the plugin process has ended, waiting
/// briefly for the exit to be noticed.
async fn exit_status(calls: &Calls) -> String {
    let mut exit = calls.exit.clone();
    let got =
        tokio::time::timeout(Duration::from_millis(300), exit.wait_for(Option::is_some)).await;
    match got {
        Ok(Ok(status)) => format!(
            " (the plugin process ended: {})",
            status.clone().unwrap_or_default()
        ),
        _ => String::new(),
    }
}
