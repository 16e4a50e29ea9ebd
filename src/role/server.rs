//! The server role: a mock pluginserver answering from a spec.
//!
//! It listens on the spec's socket, serves any number of connections at
//! once (each a sequential request/response loop, as Kong expects), logs
//! every message, and when a connection ends prints that connection's
//! conversation as one JSON line on stdout. On SIGINT/SIGTERM it stops
//! accepting, lets connections finish their current reply, removes the
//! socket, and reports what was never used or never matched
//! (`server_report.rs`).
//!
//! The same connection loop answers for the proxy's `replay` and `new`
//! modes (`serve_for_proxy`): there it sits on one end of a socket pair,
//! and in `new` mode forwards the requests the spec does not answer to the
//! real server, relaying its bytes back unchanged.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rmpv::Value as Mp;
use serde_json::{Value as Json, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::faults;
use super::log_message;
use super::replies::{Choice, Cursor, Replies};
use super::server_report::Misses;
use crate::codec::{CodecError, Limits, MsgpackCodec, hex, msgpack};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::message::msgpack_rpc::{self, RpcMessage};
use crate::message::{Direction, Kind};
use crate::net::{self, Connection, ReadHalf, WriteHalf};
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
    /// Log every message (the proxy's modes log frames themselves).
    pub log_messages: bool,
    /// Where to write the JSON report at exit (`-` for stdout).
    pub report: Option<PathBuf>,
    /// Exit 1 when an entry was never used or a request matched none.
    pub verify: bool,
}

/// The real server behind the proxy's `new` mode: requests the spec does
/// not answer go there, and everything it sends comes back unchanged.
pub(crate) struct Fallback {
    pub(crate) read: ReadHalf<()>,
    pub(crate) write: WriteHalf,
}

/// Runs the mock server until `shutdown` is cancelled.
pub async fn run(spec: &Spec, opts: ServerOptions, shutdown: CancellationToken) -> Result<Outcome> {
    let replies = Arc::new(Replies::new(&spec.server).map_err(Error::Other)?);
    let misses = Arc::new(Misses::default());
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
                    misses.clone(),
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
    drop(bound);
    let report = misses.report(&replies);
    eprint!("{}", report.render());
    if let Some(path) = &opts.report {
        report.write(path)?;
    }
    Ok(report.outcome(opts.verify))
}

/// Serves one proxied connection from the spec (`replay` mode), or from
/// the spec first and `fallback` for the rest (`new` mode).
pub(crate) async fn serve_for_proxy(
    stream: tokio::net::UnixStream,
    replies: Arc<Replies>,
    misses: Arc<Misses>,
    opts: ServerOptions,
    fallback: Option<Fallback>,
    cancel: CancellationToken,
) {
    let mut conn = Connection::new(stream, MsgpackCodec::new(opts.limits));
    let mut cursor = Cursor::default();
    let mut log = Vec::new();
    let mut fallback = fallback;
    let id = conn.id();
    let ctx = Ctx {
        replies: &replies,
        misses: &misses,
        opts: &opts,
        cancel: &cancel,
    };
    if let Err(e) = converse(&mut conn, &ctx, &mut cursor, &mut log, fallback.as_mut()).await {
        tracing::warn!("{id} (spec side) ended: {e}");
    }
}

/// What every connection of a run shares.
struct Ctx<'a> {
    replies: &'a Replies,
    misses: &'a Misses,
    opts: &'a ServerOptions,
    cancel: &'a CancellationToken,
}

/// One connection's loop; prints its conversation when it ends.
async fn serve(
    mut conn: Connection<MsgpackCodec>,
    replies: Arc<Replies>,
    misses: Arc<Misses>,
    opts: ServerOptions,
    cancel: CancellationToken,
) {
    let mut log = Vec::new();
    let mut cursor = Cursor::default();
    let id = conn.id();
    let ctx = Ctx {
        replies: &replies,
        misses: &misses,
        opts: &opts,
        cancel: &cancel,
    };
    let result = converse(&mut conn, &ctx, &mut cursor, &mut log, None).await;
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
    ctx: &Ctx<'_>,
    cursor: &mut Cursor,
    log: &mut Vec<Json>,
    mut fallback: Option<&mut Fallback>,
) -> Result<()> {
    let Ctx {
        replies,
        misses,
        opts,
        cancel,
    } = *ctx;
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
            chunk = upstream_chunk(&mut fallback) => {
                match chunk {
                    Some(bytes) => {
                        conn.write_all(&bytes).await.map_err(|source| Error::Io {
                            context: format!("{}: relaying the upstream's bytes", conn.id()),
                            source,
                        })?;
                        continue;
                    }
                    // The real server closed: so does this connection.
                    None => return Ok(()),
                }
            }
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            Err(e) => return Err(undecodable(conn, e, log)),
        };
        let view = msgpack_rpc::view_of(&frame.value);
        if opts.log_messages {
            log_message(conn.id(), Direction::ToServer, &view, opts.full_values);
        }
        if opts.print_conversations {
            log.push(entry(view.kind, &view.value, view.problem.as_deref()));
        }
        match RpcMessage::from_value(&frame.value) {
            Ok(RpcMessage::Request {
                msgid,
                method,
                params,
            }) => {
                let params_json = value_json::to_json(&params);
                let mut faults = None;
                let choice = replies.choose(cursor, &method, &params_json);
                if let (Some(up), false) =
                    (fallback.as_mut(), matches!(choice, Choice::Entry { .. }))
                {
                    misses.forwarded();
                    tracing::debug!(
                        "{} no entry answers {method}; forwarding it to the upstream",
                        conn.id()
                    );
                    up.write
                        .write_all(&frame.raw)
                        .await
                        .map_err(|source| Error::Io {
                            context: format!("{}: forwarding {method} to the upstream", conn.id()),
                            source,
                        })?;
                    continue;
                }
                misses.request();
                let (error, result, delay) = match choice {
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
                        if !prepared.entry.faults.is_empty() {
                            faults = Some(&prepared.entry.faults);
                        }
                        (
                            prepared.error.clone(),
                            prepared.result.clone(),
                            prepared.entry.delay_ms,
                        )
                    }
                    other => {
                        let why =
                            misses.miss(replies, conn.id(), msgid, &method, &params_json, &other);
                        tracing::warn!("{} {why}; replying `not implemented`", conn.id());
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
                match faults {
                    None => send(conn, &reply, opts, log).await?,
                    Some(f) => {
                        if faults::deliver(conn, reply, f, opts, log).await? == faults::Flow::Close
                        {
                            return Ok(());
                        }
                    }
                }
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

/// The next chunk the fallback upstream sends; never ready without one.
async fn upstream_chunk(fallback: &mut Option<&mut Fallback>) -> Option<bytes::Bytes> {
    match fallback {
        Some(f) => match f.read.read_chunk().await {
            Ok(Some(bytes)) => Some(bytes),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("{} reading from the upstream: {e}", f.read.id());
                None
            }
        },
        None => std::future::pending().await,
    }
}

pub(super) async fn send(
    conn: &mut Connection<MsgpackCodec>,
    msg: &RpcMessage,
    opts: &ServerOptions,
    log: &mut Vec<Json>,
) -> Result<()> {
    let view = msg.view();
    if opts.log_messages {
        log_message(conn.id(), Direction::ToClient, &view, opts.full_values);
    }
    // Kept only when printed, so a long-running mock does not grow.
    if opts.print_conversations {
        log.push(entry(view.kind, &view.value, None));
    }
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
