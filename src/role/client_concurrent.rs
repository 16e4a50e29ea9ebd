//! The client's concurrent mode (`"concurrent": true`): the steps of each
//! connection label run on their own connection at the same time, in
//! order within the connection, as a recording spanning Kong's pooled
//! connections ran them. Captures are shared: a step whose params or
//! expectation use `${name}` waits until some connection has captured
//! it. When every connection still running waits for a name nobody can
//! capture any more, the step fails instead of hanging.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::client::{ClientOptions, Failure, Report, StepReport, StepStatus, call};
use crate::codec::MsgpackCodec;
use crate::net::{self, Connection};
use crate::spec::Step;
use crate::spec::template::{self, Vars};

/// Steps of one connection, with their index in the spec.
type Steps = Vec<(usize, Step)>;

struct State {
    vars: Vars,
    running: usize,
    waiting: usize,
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The variables once every name in `names` is defined; `Err(name)`
    /// when it can no longer be.
    async fn wait_for(&self, names: &[String]) -> Result<Vars, String> {
        let mut counted = false;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                match names.iter().find(|n| !st.vars.contains_key(n.as_str())) {
                    None => {
                        if counted {
                            st.waiting -= 1;
                        }
                        return Ok(st.vars.clone());
                    }
                    Some(missing) => {
                        if !counted {
                            st.waiting += 1;
                            counted = true;
                        }
                        if st.waiting >= st.running {
                            st.waiting -= 1;
                            drop(st);
                            self.changed.notify_waiters();
                            return Err(missing.clone());
                        }
                    }
                }
            }
            notified.await;
        }
    }

    fn publish(&self, step: &Step, vars: &Vars) {
        let mut st = self.lock();
        for name in step.capture.keys() {
            if let Some(v) = vars.get(name) {
                st.vars.insert(name.clone(), v.clone());
            }
        }
        drop(st);
        self.changed.notify_waiters();
    }

    fn finish(&self) {
        self.lock().running -= 1;
        self.changed.notify_waiters();
    }
}

/// Runs the steps grouped by `conn` label, the groups at the same time.
pub(super) async fn drive(
    first: Connection<MsgpackCodec>,
    path: &Path,
    steps: &[Step],
    opts: &ClientOptions,
    shutdown: &CancellationToken,
) -> Report {
    let mut groups: Vec<(Option<u64>, Steps)> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match groups.iter_mut().find(|(label, _)| *label == step.conn) {
            Some((_, list)) => list.push((i, step.clone())),
            None => groups.push((step.conn, vec![(i, step.clone())])),
        }
    }
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            vars: template::builtins(),
            running: groups.len(),
            waiting: 0,
        }),
        changed: Notify::new(),
    });
    let mut first = Some(first);
    let mut tasks = JoinSet::new();
    for (label, list) in groups {
        tasks.spawn(run_connection(
            label,
            first.take(),
            path.to_owned(),
            list,
            opts.clone(),
            shutdown.clone(),
            shared.clone(),
        ));
    }
    let mut reports: Vec<StepReport> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepReport::blank(i, s))
        .collect();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(list) => {
                for r in list {
                    let i = r.index;
                    reports[i] = r;
                }
            }
            Err(e) => tracing::error!("a connection's task failed: {e}"),
        }
    }
    Report::new(reports)
}

async fn run_connection(
    label: Option<u64>,
    conn: Option<Connection<MsgpackCodec>>,
    path: PathBuf,
    steps: Steps,
    opts: ClientOptions,
    shutdown: CancellationToken,
    shared: Arc<Shared>,
) -> Vec<StepReport> {
    let mut out = Vec::new();
    let conn = match conn {
        Some(c) => Ok(c),
        None => net::connect_when_ready(&path, opts.wait)
            .await
            .map(|s| Connection::new(s, MsgpackCodec::new(opts.limits)))
            .map_err(|e| format!("cannot open connection {}: {e}", label.unwrap_or_default())),
    };
    let mut conn = match conn {
        Ok(c) => c,
        Err(e) => {
            // The first step reports it; the others did not run.
            if let Some((i, step)) = steps.first() {
                let mut report = StepReport::blank(*i, step);
                report.failures.push(Failure::new(e));
                report.status = StepStatus::Failed;
                out.push(report);
            }
            shared.finish();
            return out;
        }
    };
    if let Some(label) = label {
        tracing::info!("connection {label} of the spec is {}", conn.id());
    }
    let mut msgid = 0u32;
    for (i, step) in steps {
        if shutdown.is_cancelled() {
            break;
        }
        let mut report = StepReport::blank(i, &step);
        let mut names = template::references(&step.params);
        if let Some(r) = step.expect.as_ref().and_then(|e| e.result.as_ref()) {
            names.extend(template::references(r));
        }
        let mut vars = match shared.wait_for(&names).await {
            Ok(vars) => vars,
            Err(missing) => {
                report.failures.push(Failure::new(format!(
                    "`${{{missing}}}` is never captured: the step that captures it failed or did not run"
                )));
                report.status = StepStatus::Failed;
                out.push(report);
                break;
            }
        };
        msgid = msgid.wrapping_add(1);
        let go_on = call(
            &mut conn,
            &step,
            &mut report,
            msgid,
            &mut vars,
            &opts,
            &shutdown,
        )
        .await;
        shared.publish(&step, &vars);
        report.status = if report.failures.is_empty() {
            StepStatus::Passed
        } else {
            StepStatus::Failed
        };
        out.push(report);
        if !go_on {
            break;
        }
    }
    shared.finish();
    out
}
