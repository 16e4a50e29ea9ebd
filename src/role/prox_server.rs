//! The server role for `prox`: a mock plugin, started by prox (or by
//! plugtap's client) as a child process.
//!
//! Like the SDK, it listens on its socket first (by default
//! `/tmp/prox-p-<pid>.sock`), then reads JSON lines on stdin. Each
//! `configure` is answered on stdout with `{"result":"ok"}` and `ready`
//! (the socket and the hooks: `prox.hooks`, or the `on_methods` keys).
//! Lines in `prox.pushes` are written at their time after the first
//! `ready`. Socket connections are served from `on_methods`
//! (`prox_hooks.rs`). The mock stops when stdin closes, which is how
//! prox stops plugins, or on SIGINT/SIGTERM; it removes its socket.
//!
//! Its stdout belongs to the protocol, so connections' conversations are
//! not printed there: every message is logged on stderr, which prox
//! forwards to its own log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::prox_hooks;
use super::prox_wire::{ProxConn, log};
use super::server::ServerOptions;
use crate::codec::{Limits, Line, LineCodec};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::message::Direction;
use crate::message::prox::Hook;
use crate::message::prox::stdio::{self, StdioMessage};
use crate::net::stdio::{LineWriter, Stdin};
use crate::net::{self, Connection};
use crate::spec::Spec;
use crate::spec::prox::Push;

/// How long connections get to finish after the mock starts stopping.
const DRAIN: Duration = Duration::from_secs(2);

/// The socket the SDK uses: `/tmp/prox-p-<pid>.sock`.
pub fn default_socket() -> PathBuf {
    PathBuf::from(format!("/tmp/prox-p-{}.sock", std::process::id()))
}

/// Runs the mock plugin until stdin closes or `shutdown` is cancelled.
pub async fn run(spec: &Spec, opts: ServerOptions, shutdown: CancellationToken) -> Result<Outcome> {
    let prepared =
        prox_hooks::prepare(spec).map_err(|e| Error::Other(format!("{}: {e}", spec.source)))?;
    let hooks = hooks(spec).map_err(|e| Error::Other(format!("{}: {e}", spec.source)))?;
    check_pushes(&spec.prox.pushes).map_err(|e| Error::Other(format!("{}: {e}", spec.source)))?;
    for w in &prepared.warnings {
        tracing::warn!("{}: {w}", spec.source);
    }
    for name in spec.server.on_methods.keys() {
        if !hooks.iter().any(|h| h == name) {
            tracing::warn!(
                "on_methods has {name}, but `ready` does not announce it: prox will not call it"
            );
        }
    }
    let prepared = Arc::new(prepared);
    let bound = net::bind(&opts.socket)?;
    let announced = absolute(bound.path());
    tracing::info!(
        "mock prox plugin listening on {} (hooks: {})",
        announced,
        hooks.join(", ")
    );
    let (writer, written) = LineWriter::spawn();
    let mut stdin = Connection::new(
        Stdin::spawn(),
        LineCodec::new(opts.limits.max_message.max(Limits::DEFAULT_MAX_MESSAGE)),
    );
    let tracker = TaskTracker::new();
    let stop = shutdown.child_token();
    let mut readies = 0usize;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                tracing::info!("stopping on a signal");
                break;
            }
            line = stdin.read_frame() => match line {
                Ok(Some(line)) => {
                    if configure(&line, opts.full_values) {
                        if spec.prox.ack.unwrap_or(true) {
                            emit(&writer, stdio::ACK_LINE.to_owned(), opts.full_values);
                        }
                        emit(&writer, stdio::ready_line(&announced, &hooks), opts.full_values);
                        readies += 1;
                        if readies == 1 && !spec.prox.pushes.is_empty() {
                            tracker.spawn(push(spec.prox.pushes.clone(), writer.clone(), opts.full_values, stop.clone()));
                        }
                    }
                }
                Ok(None) => {
                    tracing::info!("stdin closed: stopping, as prox's SDK does");
                    break;
                }
                Err(e) => {
                    tracing::warn!("cannot read stdin ({e}): stopping, as the SDK's reader does");
                    break;
                }
            },
            accepted = bound.listener().accept() => match accepted {
                Ok((stream, _)) => {
                    let conn = ProxConn::new(stream, opts.limits, opts.full_values);
                    let id = conn.id();
                    tracing::debug!("{id} connected");
                    let prepared = prepared.clone();
                    let cancel = stop.clone();
                    tracker.spawn(async move {
                        match prox_hooks::serve(conn, prepared, cancel).await {
                            Ok(()) => tracing::debug!("{id} closed"),
                            Err(e) => tracing::warn!("{id} ended: {e}"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
    drop(writer);
    if !written.wait(Duration::from_secs(1)).await {
        tracing::warn!("stdout lines still unwritten after 1s (is the parent reading?)");
    }
    for (method, index) in prepared.replies.unused() {
        tracing::info!("spec entry on_methods[{method:?}][{index}] was never used");
    }
    drop(bound);
    Ok(Outcome::Passed)
}

/// The hooks `ready` announces: `prox.hooks`, or the `on_methods` keys in
/// the SDK's order.
fn hooks(spec: &Spec) -> std::result::Result<Vec<String>, String> {
    match &spec.prox.hooks {
        Some(list) => {
            for h in list {
                if Hook::named(h).is_none() {
                    tracing::warn!(
                        "prox.hooks names `{h}`, which is not a prox hook ({}); announced anyway",
                        Hook::names()
                    );
                }
            }
            Ok(list.clone())
        }
        None => Ok(Hook::ALL
            .into_iter()
            .filter(|h| spec.server.on_methods.contains_key(h.name()))
            .map(|h| h.name().to_owned())
            .collect()),
    }
}

fn check_pushes(pushes: &[Push]) -> std::result::Result<(), String> {
    for (i, p) in pushes.iter().enumerate() {
        if p.method.is_empty() {
            return Err(format!("prox.pushes[{i}]: `method` is empty"));
        }
        if !p.params.is_null() && !p.params.is_object() {
            return Err(format!("prox.pushes[{i}].params: not an object"));
        }
    }
    Ok(())
}

/// Logs a line from prox; true for a `configure` to answer.
fn configure(line: &Line, full: bool) -> bool {
    let (view, msg) = stdio::decode(Direction::ToServer, line);
    log("stdin", Direction::ToServer, &view, full);
    matches!(msg, StdioMessage::Configure { .. })
}

/// Writes a line to prox, logging it.
fn emit(writer: &LineWriter, text: String, full: bool) {
    let line = Line {
        offset: 0,
        raw: bytes::Bytes::from(format!("{text}\n")),
    };
    let (view, _) = stdio::decode(Direction::ToClient, &line);
    log("stdout", Direction::ToClient, &view, full);
    if !writer.send(text) {
        tracing::warn!("stdout is closed; the line is lost");
    }
}

async fn push(pushes: Vec<Push>, writer: LineWriter, full: bool, stop: CancellationToken) {
    let start = tokio::time::Instant::now();
    let mut pushes = pushes;
    pushes.sort_by_key(|p| p.after_ms);
    for p in pushes {
        let at = start + Duration::from_millis(p.after_ms);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(at) => {}
        }
        let params = if p.params.is_null() {
            serde_json::json!({})
        } else {
            p.params
        };
        let text = serde_json::json!({"method": p.method, "params": params}).to_string();
        emit(&writer, text, full);
    }
}

fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}
