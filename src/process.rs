//! Child processes started from a spec's `start_cmd`.
//!
//! The child runs in its own process group so that terminating it also
//! reaches whatever a shell command started. Its stdout is read line by
//! line: the first line is kept (a go-plugin handshake there names the
//! socket), every line is logged. Its stderr passes through unchanged. The
//! child is killed if the [`Child`] is dropped, so it is never orphaned.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::watch;

use crate::spec::StartCmd;

/// A started child process.
#[derive(Debug)]
pub struct Child {
    inner: tokio::process::Child,
    pid: Option<u32>,
    display: String,
    first_line: watch::Receiver<Option<String>>,
    status: Option<ExitStatus>,
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start `{command}`: {source}")]
pub struct SpawnError {
    /// The command as written.
    pub command: String,
    /// The OS error.
    pub source: std::io::Error,
}

impl Child {
    /// Starts `cmd` with stdin closed, stdout read by plugtap and stderr
    /// inherited.
    pub fn spawn(cmd: &StartCmd) -> Result<Child, SpawnError> {
        let shown = cmd.display();
        let mut inner = start(cmd, &shown, Stdio::null())?;
        let pid = inner.id();
        let (tx, first_line) = watch::channel(None);
        if let Some(stdout) = inner.stdout.take() {
            let tag = program_name(cmd);
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                let mut first = true;
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!("[{tag}] {line}");
                    if first {
                        let _ = tx.send(Some(line));
                        first = false;
                    }
                }
            });
        }
        Ok(Child {
            inner,
            pid,
            display: shown,
            first_line,
            status: None,
        })
    }

    /// The process id, while it is known.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Starts `cmd` with its stdin and stdout as pipes the caller speaks
    /// on (a prox plugin reads JSON lines on stdin and writes them on
    /// stdout); stderr is inherited. [`Child::first_line`] sees nothing.
    pub fn spawn_piped(cmd: &StartCmd) -> Result<(Child, ChildStdin, ChildStdout), SpawnError> {
        let shown = cmd.display();
        let mut inner = start(cmd, &shown, Stdio::piped())?;
        let pid = inner.id();
        let pipes = inner.stdin.take().zip(inner.stdout.take());
        let child = Child {
            inner,
            pid,
            display: shown.clone(),
            first_line: watch::channel(None).1,
            status: None,
        };
        let Some((stdin, stdout)) = pipes else {
            return Err(SpawnError {
                command: shown,
                source: std::io::Error::other("the child's pipes are missing"),
            });
        };
        Ok((child, stdin, stdout))
    }

    /// The command as written.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// A handle that waits for the first line the child prints on stdout,
    /// usable while the child itself is borrowed elsewhere.
    pub fn first_line(&self) -> FirstLine {
        FirstLine(self.first_line.clone())
    }

    /// Waits for the child to exit.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = self.inner.wait().await?;
        self.status = Some(status);
        Ok(status)
    }

    /// Sends SIGTERM to the child's process group, waits up to `grace`, then
    /// sends SIGKILL. Returns the exit status.
    pub async fn terminate(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        self.signal(Signal::SIGTERM);
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(
                    "`{}` did not exit {grace:?} after SIGTERM; killing it",
                    self.display
                );
                self.signal(Signal::SIGKILL);
                self.wait().await
            }
        }
    }

    /// Sends a signal to the child's process group.
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok())
            && let Err(e) = killpg(Pid::from_raw(pid), signal)
        {
            tracing::debug!("signal {signal} to process group {pid}: {e}");
        }
    }
}

/// The program's file name, to tag the child's output in logs.
fn program_name(cmd: &StartCmd) -> String {
    let first = match cmd {
        StartCmd::Shell(line) => line.split_whitespace().next().unwrap_or("child"),
        StartCmd::Argv(argv) => argv[0].as_str(),
    };
    std::path::Path::new(first)
        .file_name()
        .map_or_else(|| first.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// Waits for a child's first line of output; see [`Child::first_line`].
#[derive(Debug)]
pub struct FirstLine(watch::Receiver<Option<String>>);

impl FirstLine {
    /// The first line, if one arrives within `wait`.
    pub async fn get(mut self, wait: Duration) -> Option<String> {
        let got = tokio::time::timeout(wait, self.0.wait_for(Option::is_some)).await;
        match got {
            Ok(Ok(line)) => line.clone(),
            _ => None,
        }
    }
}

/// The socket address in a go-plugin handshake line
/// (`CORE|APPVER|unix|/path/to.sock|grpc|...`), if the line is one.
pub fn go_plugin_address(line: &str) -> Option<PathBuf> {
    let fields: Vec<&str> = line.trim().split('|').collect();
    let core_ok = fields.first().is_some_and(|c| c.parse::<u32>().is_ok());
    if fields.len() >= 4 && core_ok && fields[2] == "unix" && !fields[3].is_empty() {
        Some(PathBuf::from(fields[3]))
    } else {
        None
    }
}

/// Describes an exit status the way a user wants to read it.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("signal {s}"),
            Err(_) => format!("signal {sig}"),
        },
        _ => status.to_string(),
    }
}

/// Spawns `cmd` (a shell line through `/bin/sh -c`, or an argv) in its
/// own process group, killed on drop, with `stdin` as given, stdout piped
/// and stderr inherited; logs its pid.
fn start(cmd: &StartCmd, shown: &str, stdin: Stdio) -> Result<tokio::process::Child, SpawnError> {
    let mut command = match cmd {
        StartCmd::Shell(line) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(line);
            c
        }
        StartCmd::Argv(argv) => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true);
    let inner = command.spawn().map_err(|source| SpawnError {
        command: shown.to_owned(),
        source,
    })?;
    tracing::info!("started `{shown}` (pid {})", inner.id().unwrap_or_default());
    Ok(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_lines() {
        assert_eq!(
            go_plugin_address("1|3|unix|/tmp/plugin123|grpc|\n"),
            Some(PathBuf::from("/tmp/plugin123"))
        );
        assert_eq!(go_plugin_address("1|3|tcp|127.0.0.1:1234|grpc"), None);
        assert_eq!(go_plugin_address("server started at path /x.sock"), None);
        assert_eq!(go_plugin_address("x|3|unix|/a|grpc"), None);
    }
}
