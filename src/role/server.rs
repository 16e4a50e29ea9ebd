//! The server role: a mock pluginserver answering from a spec.
//!
//! It listens on the spec's socket, serves any number of connections at
//! once (each a sequential request/response loop, as Kong expects), logs
//! every message, and when a connection ends prints that connection's
//! conversation as one JSON line on stdout. On SIGINT/SIGTERM it stops
//! accepting, lets connections finish their current reply, and removes the
//! socket.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rmpv::Value as Mp;
use serde_json::{Value as Json, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::log_message;
use super::replies::{Choice, Cursor, Replies};
use crate::codec::{CodecError, Limits, MsgpackCodec, hex, msgpack};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::message::msgpack_rpc::{self, RpcMessage};
use crate::message::{Direction, Kind};
use crate::net::{self, Connection};
use crate::spec::Spec;
use crate::value_json;

/// How long connections get to finish after shutdown starts.
const DRAIN: Duration = Duration::from_secs(5);

/// Settings of a server run that do not come from the spec.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where to listen.
    pub socket: PathBuf,
    /// Decoding limits.
    pub limits: Limits,
    /// Log values in full instead of shortened.
    pub full_values: bool,
    /// Print each connection's conversation as JSON on stdout.
    pub print_conversations: bool,
}

/// Runs the mock server until `shutdown` is cancelled.
pub async fn run(spec: &Spec, opts: ServerOptions, shutdown: CancellationToken) -> Result<Outcome> {
    let replies = Arc::new(Replies::new(&spec.server).map_err(Error::Other)?);
    let bound = net::bind(&opts.socket)?;
    tracing::info!(
        "mock {} server listening on {}",
        spec.protocol,
        bound.path().display()
    );
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = bound.listener().accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let conn = Connection::new(stream, MsgpackCodec::new(opts.limits));
                tracing::debug!("{} connected", conn.id());
                tracker.spawn(serve(
                    conn,
                    replies.clone(),
                    opts.clone(),
                    shutdown.child_token(),
                ));
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
    for (method, index) in replies.unused() {
        tracing::info!("spec entry on_methods[{method:?}][{index}] was never used");
    }
    drop(bound);
    Ok(Outcome::Passed)
}

/// One connection's loop; prints its conversation when it ends.
async fn serve(
    mut conn: Connection<MsgpackCodec>,
    replies: Arc<Replies>,
    opts: ServerOptions,
    cancel: CancellationToken,
) {
    let mut log = Vec::new();
    let mut cursor = Cursor::default();
    let id = conn.id();
    let result = converse(&mut conn, &replies, &opts, &cancel, &mut cursor, &mut log).await;
    match &result {
        Ok(()) => tracing::debug!("{id} closed"),
        Err(e) => tracing::warn!("{id} ended: {e}"),
    }
    if log.is_empty() {
        // Kong 3.1-3.4 probe the socket with connections that say nothing.
        tracing::debug!("{id} closed without sending anything");
    } else if opts.print_conversations {
        let line = json!({"connection": id.0, "messages": log});
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

async fn converse(
    conn: &mut Connection<MsgpackCodec>,
    replies: &Replies,
    opts: &ServerOptions,
    cancel: &CancellationToken,
    cursor: &mut Cursor,
    log: &mut Vec<Json>,
) -> Result<()> {
    for (method, params) in replies.on_connect() {
        let note = RpcMessage::Notification {
            method: method.clone(),
            params: params.clone(),
        };
        send(conn, &note, opts, log).await?;
    }
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            frame = conn.read_frame() => frame,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            Err(e) => return Err(undecodable(conn, e, log)),
        };
        let view = msgpack_rpc::view_of(&frame.value);
        log_message(conn.id(), Direction::ToServer, &view, opts.full_values);
        log.push(entry(view.kind, &view.value, view.problem.as_deref()));
        match RpcMessage::from_value(&frame.value) {
            Ok(RpcMessage::Request {
                msgid,
                method,
                params,
            }) => {
                let params_json = value_json::to_json(&params);
                let (error, result, delay) = match replies.choose(cursor, &method, &params_json) {
                    Choice::Entry { index, prepared } => {
                        tracing::debug!(
                            "{} replying from on_methods[{method:?}][{index}]",
                            conn.id()
                        );
                        for (name, arg) in &prepared.notify {
                            let note = RpcMessage::Notification {
                                method: name.clone(),
                                params: arg.clone(),
                            };
                            send(conn, &note, opts, log).await?;
                        }
                        (
                            prepared.error.clone(),
                            prepared.result.clone(),
                            prepared.entry.delay_ms,
                        )
                    }
                    Choice::NoEntries => {
                        tracing::warn!(
                            "{} no entry for {method}; replying `not implemented`",
                            conn.id()
                        );
                        (Mp::from("not implemented"), Mp::Nil, 0)
                    }
                    Choice::NoMatch => {
                        tracing::warn!(
                            "{} no entry for {method} matches params {}; replying `not implemented`",
                            conn.id(),
                            params_json
                        );
                        (Mp::from("not implemented"), Mp::Nil, 0)
                    }
                };
                if delay > 0 {
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
                    }
                }
                let reply = RpcMessage::Response {
                    msgid,
                    error,
                    result,
                };
                send(conn, &reply, opts, log).await?;
            }
            Ok(other) => {
                tracing::warn!(
                    "{} unexpected {} from the client; ignored",
                    conn.id(),
                    other.kind().label()
                );
            }
            Err(_) => {
                tracing::warn!(
                    "{} malformed message ignored; raw bytes {}",
                    conn.id(),
                    hex(&frame.raw)
                );
            }
        }
    }
}

async fn send(
    conn: &mut Connection<MsgpackCodec>,
    msg: &RpcMessage,
    opts: &ServerOptions,
    log: &mut Vec<Json>,
) -> Result<()> {
    let view = msg.view();
    log_message(conn.id(), Direction::ToClient, &view, opts.full_values);
    log.push(entry(view.kind, &view.value, None));
    conn.write_all(&msgpack::encode(&msg.to_value()))
        .await
        .map_err(|source| Error::Io {
            context: format!("{}: writing {}", conn.id(), view.kind.label()),
            source,
        })
}

/// Records bytes that could not be decoded; the connection then ends
/// because a msgpack stream cannot be resynchronised reliably.
fn undecodable(conn: &Connection<MsgpackCodec>, e: CodecError, log: &mut Vec<Json>) -> Error {
    let pending = conn.pending();
    tracing::warn!(
        "{} undecodable bytes from the client: {e}; raw {}",
        conn.id(),
        hex(&pending[..pending.len().min(256)])
    );
    log.push(json!({"undecodable": hex(pending), "error": e.to_string()}));
    Error::Codec(e)
}

fn entry(kind: Kind, value: &Json, problem: Option<&str>) -> Json {
    let mut obj = serde_json::Map::new();
    obj.insert(
        match kind {
            Kind::Request => "request",
            Kind::Response => "response",
            Kind::Notification => "notification",
            Kind::Malformed => "malformed",
            other => other.label(),
        }
        .into(),
        value.clone(),
    );
    if let Some(p) = problem {
        obj.insert("problem".into(), Json::from(p));
    }
    Json::Object(obj)
}
