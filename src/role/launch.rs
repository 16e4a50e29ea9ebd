//! Starting the server under test and finding its socket, for roles that
//! open several connections (the Kong emulation, `check`).
//!
//! With a start command, the child is spawned first; its socket is the
//! one given, or the one a go-plugin handshake on its first output line
//! names. Either way plugtap waits until the socket accepts a connection,
//! failing early when the child exits before that.

use std::path::PathBuf;
use std::time::Duration;

use tokio::net::UnixStream;

use crate::error::{Error, Result};
use crate::net;
use crate::process::{self, Child};
use crate::spec::StartCmd;

/// A server that is accepting connections.
#[derive(Debug)]
pub struct Launched {
    /// The child plugtap started, if it started one.
    pub child: Option<Child>,
    /// The socket it listens on.
    pub socket: PathBuf,
    /// The first connection, proving the socket works.
    pub first: UnixStream,
}

/// Starts `start_cmd` (if any) and waits up to `wait` for the socket.
pub async fn launch(
    socket: Option<PathBuf>,
    start_cmd: Option<&StartCmd>,
    wait: Duration,
) -> Result<Launched> {
    let Some(cmd) = start_cmd else {
        let socket = socket
            .ok_or_else(|| Error::Other("no socket given (spec `socket` or --socket)".into()))?;
        let first = net::connect_when_ready(&socket, wait).await?;
        return Ok(Launched {
            child: None,
            socket,
            first,
        });
    };
    let mut child = Child::spawn(cmd)?;
    let (socket, first) = connect_child(&mut child, socket, wait).await?;
    Ok(Launched {
        child: Some(child),
        socket,
        first,
    })
}

/// Waits up to `wait` for the socket of a child plugtap started: the one
/// given, or the one a go-plugin handshake on its first output line names.
/// Fails early when the child exits first.
pub(crate) async fn connect_child(
    child: &mut Child,
    socket: Option<PathBuf>,
    wait: Duration,
) -> Result<(PathBuf, UnixStream)> {
    if socket.is_none() {
        tracing::info!("no socket given; waiting for a go-plugin handshake on stdout");
    }
    let deadline = tokio::time::Instant::now() + wait;
    // With a socket already known, only a handshake printed right away
    // can change it; without one, the handshake is the only way to learn it.
    let patience = if socket.is_some() {
        Duration::from_millis(300)
    } else {
        wait
    };
    let lines = child.first_line();
    let first_line = tokio::select! {
        line = lines.get(patience) => line,
        status = child.wait() => return Err(exited_early(child.display(), status)),
    };
    let mut socket = socket;
    if let Some(addr) = first_line.as_deref().and_then(process::go_plugin_address) {
        tracing::info!("go-plugin handshake names socket {}", addr.display());
        socket = Some(addr);
    }
    let socket = socket.ok_or_else(|| {
        Error::Other(format!(
            "no socket given and `{}` printed no go-plugin handshake",
            child.display()
        ))
    })?;
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let first = tokio::select! {
        stream = net::connect_when_ready(&socket, remaining) => stream?,
        status = child.wait() => return Err(exited_early(child.display(), status)),
    };
    Ok((socket, first))
}

/// Terminates a child plugtap started, logging how it ended.
pub async fn stop(child: Option<&mut Child>, grace: Duration) {
    if let Some(child) = child {
        match child.terminate(grace).await {
            Ok(status) => tracing::info!(
                "`{}` ended ({})",
                child.display(),
                process::describe(status)
            ),
            Err(e) => tracing::warn!("could not reap `{}`: {e}", child.display()),
        }
    }
}

fn exited_early(cmd: &str, status: std::io::Result<std::process::ExitStatus>) -> Error {
    match status {
        Ok(s) => Error::Other(format!(
            "`{cmd}` exited ({}) before its socket accepted connections",
            process::describe(s)
        )),
        Err(e) => Error::Other(format!("waiting for `{cmd}`: {e}")),
    }
}
