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
use tokio::io::AsyncWriteExt as _;
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::client::ClientOptions;
use super::prox_calls::{self, Calls, HookStep};
use super::prox_report::{PluginReport, ProxReport};
use super::prox_wire::log;
use super::report::{Failure, StepReport};
use crate::codec::{Limits, Line, LineCodec};
use crate::error::{Error, Result};
use crate::message::prox::stdio::{self, StdioMessage};
use crate::message::{Direction, Kind, MessageView};
use crate::net::Connection;
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

/// What the plugin's stdout reader hands over.
enum Event {
    Line(Box<(MessageView, StdioMessage, bool)>),
    End(Option<String>),
}

fn read_stdout(stdout: ChildStdout, full: bool) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = Connection::new(stdout, LineCodec::new(Limits::DEFAULT_MAX_MESSAGE));
        loop {
            let event = match lines.read_frame().await {
                Ok(Some(line)) => {
                    let (view, msg) = stdio::decode(Direction::ToClient, &line);
                    log("stdout", Direction::ToClient, &view, full);
                    Event::Line(Box::new((view, msg, line.over_prox_limit())))
                }
                Ok(None) => Event::End(None),
                Err(e) => Event::End(Some(e.to_string())),
            };
            let end = matches!(event, Event::End(_));
            if tx.send(event).is_err() || end {
                break;
            }
        }
    });
    rx
}

/// The plugin's stdio channel and what it said.
struct Plugin {
    report: PluginReport,
    events: mpsc::UnboundedReceiver<Event>,
    stdin: Option<ChildStdin>,
    full: bool,
}

impl Plugin {
    /// Writes a line on the plugin's stdin.
    async fn send(&mut self, text: &str) -> Result<()> {
        let line = Line {
            offset: 0,
            raw: format!("{text}\n").into(),
        };
        let (view, _) = stdio::decode(Direction::ToServer, &line);
        log("stdin", Direction::ToServer, &view, self.full);
        self.report.configures += 1;
        self.report
            .lines
            .push(json!({"direction": Direction::ToServer, "view": view}));
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(Error::Other("the plugin's stdin is closed".into()));
        };
        stdin
            .write_all(&line.raw)
            .await
            .map_err(|e| Error::Other(format!("cannot write to the plugin's stdin: {e}")))
    }

    /// Waits for a `ready` naming a socket; returns it and the hooks.
    async fn ready(&mut self, wait: Duration) -> Result<(String, Vec<String>)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv()).await;
            match event {
                Err(_) => {
                    return Err(Error::Other(format!(
                        "the plugin sent no `ready` with a socket within {wait:?} (a plugin \
                         without hooks sends none, and prox then never calls it)"
                    )));
                }
                Ok(None) | Ok(Some(Event::End(None))) => {
                    self.report.exit = Some("closed its stdout".into());
                    return Err(Error::Other(
                        "the plugin closed its stdout before sending `ready`".into(),
                    ));
                }
                Ok(Some(Event::End(Some(e)))) => {
                    return Err(Error::Other(format!(
                        "cannot read the plugin's stdout before `ready`: {e}"
                    )));
                }
                Ok(Some(Event::Line(line))) => {
                    let (view, msg, over) = *line;
                    let ready = match &msg {
                        StdioMessage::Ready { socket, hooks } if !socket.is_empty() => {
                            Some((socket.clone(), hooks.clone()))
                        }
                        _ => None,
                    };
                    self.note((view, msg, over));
                    if let Some(ready) = ready {
                        return Ok(ready);
                    }
                }
            }
        }
    }

    /// Takes in what the plugin wrote so far.
    fn drain(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Line(line) => self.note(*line),
                Event::End(Some(e)) => self.report.failures.push(Failure::new(format!(
                    "cannot read the plugin's stdout: {e}"
                ))),
                Event::End(None) => {}
            }
        }
    }

    fn note(&mut self, (view, msg, over_limit): (MessageView, StdioMessage, bool)) {
        match &msg {
            StdioMessage::Ready { socket, hooks } => {
                self.report.readies += 1;
                if socket.is_empty() {
                    self.report.failures.push(Failure::new(
                        "a `ready` without a socket: prox logs `plugin ready without socket` and ignores it",
                    ));
                } else {
                    self.report.ready = Some(json!({"socket": socket, "hooks": hooks}));
                }
            }
            StdioMessage::Push { method, params } => self
                .report
                .pushes
                .push(json!({"method": method, "params": params})),
            _ => {}
        }
        if over_limit || view.kind == Kind::Malformed {
            self.report.failures.push(Failure::new(format!(
                "stdout line: {}",
                view.problem.clone().unwrap_or_default()
            )));
        }
        self.report
            .lines
            .push(json!({"direction": Direction::ToClient, "view": view}));
    }

    /// Closes the plugin's stdin, as prox does to stop it, and waits
    /// `grace` for it to exit; then terminates it.
    async fn stop(&mut self, child: &mut Child, grace: Duration) {
        if self.stdin.take().is_some() {
            tracing::info!("closing the plugin's stdin");
        }
        let exited = tokio::time::timeout(grace, child.wait()).await;
        match exited {
            Ok(status) => {
                let how = status.map_or_else(|e| e.to_string(), process::describe);
                self.report
                    .exit
                    .get_or_insert(format!("exited ({how}) after its stdin closed"));
            }
            Err(_) => {
                self.report.failures.push(Failure::new(format!(
                    "the plugin did not exit within {grace:?} after its stdin closed; prox stops \
                     plugins that way and waits for them without a time limit"
                )));
                let how = child
                    .terminate(grace)
                    .await
                    .map_or_else(|e| e.to_string(), process::describe);
                self.report.exit = Some(format!("terminated by plugtap ({how})"));
            }
        }
        // Lines written before the exit; the reader ends at end of stream.
        let end = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Some(event)) = tokio::time::timeout_at(end, self.events.recv()).await {
            match event {
                Event::Line(line) => self.note(*line),
                Event::End(_) => break,
            }
        }
    }
}
