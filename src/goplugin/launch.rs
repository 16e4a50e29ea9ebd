//! Starting a plugin the way a go-plugin host does, for the client role.
//!
//! The child inherits plugtap's environment plus the host's variables
//! (magic cookie, `PLUGIN_*`) and its stdin. stdout is read line by line:
//! the first line is the handshake, later lines are logged and dropped (as
//! the host drops them). stderr is read line by line and re-logged the
//! way the host does: a JSON line is an hclog entry logged at its
//! `@level` with its `@message`; other lines take their level from a
//! `[TRACE]`…`[ERROR]` prefix, a line starting `panic: ` or
//! `fatal error: ` turns the rest of the stream into errors, and anything
//! else is logged at info (the host uses debug; plugtap shows it).

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::oneshot;

use super::diagnose::look_path;
use crate::process::SpawnError;
use crate::spec::StartCmd;

/// A started plugin.
#[derive(Debug)]
pub struct Plugin {
    child: tokio::process::Child,
    /// The command as written.
    pub display: String,
    /// The program as resolved from `PATH` (for the host's diagnosis).
    pub program: PathBuf,
    first: Option<oneshot::Receiver<Option<String>>>,
    status: Option<ExitStatus>,
}

/// How waiting for the handshake line ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstLine {
    /// A line (without its newline).
    Line(String),
    /// stdout closed without a line.
    Eof,
    /// The process exited and stdout gave nothing.
    Exited,
    /// Nothing within the start timeout.
    Timeout,
}

impl Plugin {
    /// Starts `cmd` with `vars` added to the environment. A string command
    /// runs through `/bin/sh -c 'exec …'`, so the plugin is the process
    /// plugtap signals.
    pub fn spawn(cmd: &StartCmd, vars: &[(String, String)]) -> Result<Plugin, SpawnError> {
        let (mut command, program) = match cmd {
            StartCmd::Shell(line) => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(format!("exec {line}"));
                let first = line.split_whitespace().next().unwrap_or("sh");
                (c, look_path(first))
            }
            StartCmd::Argv(argv) => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                (c, look_path(&argv[0]))
            }
        };
        command
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::inherit())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let display = cmd.display();
        let mut child = command.spawn().map_err(|source| SpawnError {
            command: display.clone(),
            source,
        })?;
        let shown = &display;
        tracing::info!(
            "started plugin `{shown}` (pid {})",
            child.id().unwrap_or_default()
        );
        let (tx, rx) = oneshot::channel();
        if let Some(out) = child.stdout.take() {
            tokio::spawn(read_stdout(out, tx));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(relog_stderr(err));
        }
        Ok(Plugin {
            child,
            display,
            program,
            first: Some(rx),
            status: None,
        })
    }

    /// Waits for the handshake line as the host does.
    pub async fn first_line(&mut self, timeout: Duration) -> FirstLine {
        let Some(mut rx) = self.first.take() else {
            return FirstLine::Eof;
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        tokio::select! {
            line = &mut rx => match line {
                Ok(Some(l)) => FirstLine::Line(l),
                _ => FirstLine::Eof,
            },
            status = self.child.wait() => {
                self.status = status.ok();
                // stdout's end usually wins this race in go-plugin; give it a moment.
                match tokio::time::timeout(Duration::from_millis(100), rx).await {
                    Ok(Ok(Some(l))) => FirstLine::Line(l),
                    Ok(_) => FirstLine::Eof,
                    Err(_) => FirstLine::Exited,
                }
            }
            _ = &mut deadline => FirstLine::Timeout,
        }
    }

    /// Waits up to `grace` for the plugin to exit.
    pub async fn wait(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let s = tokio::time::timeout(grace, self.child.wait())
            .await
            .ok()?
            .ok();
        self.status = s;
        s
    }

    /// Kills the plugin (SIGKILL, as `Process.Kill`) and reaps it.
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let _ = self.child.start_kill();
        let s = self.child.wait().await.ok();
        self.status = s;
        s
    }
}

async fn read_stdout(out: impl AsyncRead + Unpin, tx: oneshot::Sender<Option<String>>) {
    let mut lines = BufReader::new(out).lines();
    let mut tx = Some(tx);
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => match tx.take() {
                Some(t) => {
                    let _ = t.send(Some(line));
                }
                None => tracing::debug!("[plugin stdout] {line}"),
            },
            _ => {
                if let Some(t) = tx.take() {
                    let _ = t.send(None);
                }
                return;
            }
        }
    }
}

async fn relog_stderr(err: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(err).lines();
    let mut panicking = false;
    while let Ok(Some(line)) = lines.next_line().await {
        if line.starts_with("panic: ") || line.starts_with("fatal error: ") {
            panicking = true;
        }
        let (level, text) = match hclog(&line) {
            Some(x) => x,
            None => (prefix_level(&line), line.clone()),
        };
        let level = if panicking { "error" } else { level };
        match level {
            "error" => tracing::error!("[plugin] {text}"),
            "warn" => tracing::warn!("[plugin] {text}"),
            "debug" | "trace" => tracing::debug!("[plugin] {text}"),
            _ => tracing::info!("[plugin] {text}"),
        }
    }
}

/// An hclog JSON line as (level, message with its other keys).
pub fn hclog(line: &str) -> Option<(&'static str, String)> {
    let Ok(Json::Object(map)) = serde_json::from_str::<Json>(line) else {
        return None;
    };
    let level = match map.get("@level").and_then(Json::as_str).unwrap_or("") {
        "trace" => "trace",
        "debug" => "debug",
        "warn" => "warn",
        "error" => "error",
        _ => "info",
    };
    let mut text = map
        .get("@message")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_owned();
    for (k, v) in &map {
        if !matches!(k.as_str(), "@message" | "@level" | "@timestamp") {
            text.push_str(&format!(" {k}={v}"));
        }
    }
    Some((level, text))
}

fn prefix_level(line: &str) -> &'static str {
    for (p, l) in [
        ("[TRACE]", "trace"),
        ("[DEBUG]", "debug"),
        ("[INFO]", "info"),
        ("[WARN]", "warn"),
        ("[ERROR]", "error"),
    ] {
        if line.starts_with(p) {
            return l;
        }
    }
    "info"
}
