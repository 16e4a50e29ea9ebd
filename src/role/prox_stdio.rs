//! The prox client's side of a plugin's stdio channel: `configure` lines
//! written on the plugin's stdin, its stdout read line by line (logged as
//! they arrive, by a task of their own), `ready` awaited, pushes and lines
//! prox cannot read collected for the report, and the plugin stopped the
//! way prox stops it: by closing its stdin.

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::mpsc;

use super::prox_report::PluginReport;
use super::prox_wire::log;
use super::report::Failure;
use crate::codec::{Limits, Line, LineCodec};
use crate::error::{Error, Result};
use crate::message::prox::stdio::{self, StdioMessage};
use crate::message::{Direction, Kind, MessageView};
use crate::net::Connection;
use crate::process::{self, Child};

/// Lines kept for the report; a chatty plugin's later lines are counted
/// (every line is logged as it arrives).
const MAX_LINES: usize = 10_000;

/// What the plugin's stdout reader hands over.
pub(super) enum Event {
    Line(Box<(MessageView, StdioMessage, bool)>),
    End(Option<String>),
}

pub(super) fn read_stdout(stdout: ChildStdout, full: bool) -> mpsc::UnboundedReceiver<Event> {
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
pub(super) struct Plugin {
    pub(super) report: PluginReport,
    pub(super) events: mpsc::UnboundedReceiver<Event>,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) full: bool,
}

impl Plugin {
    /// Writes a line on the plugin's stdin.
    pub(super) async fn send(&mut self, text: &str) -> Result<()> {
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
    pub(super) async fn ready(&mut self, wait: Duration) -> Result<(String, Vec<String>)> {
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
    pub(super) fn drain(&mut self) {
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
        if self.report.lines.len() < MAX_LINES {
            self.report
                .lines
                .push(json!({"direction": Direction::ToClient, "view": view}));
        } else {
            self.report.lines_omitted += 1;
        }
    }

    /// Closes the plugin's stdin, as prox does to stop it, and waits
    /// `grace` for it to exit; then terminates it.
    pub(super) async fn stop(&mut self, child: &mut Child, grace: Duration) {
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
