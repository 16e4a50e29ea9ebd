//! The server role for `ProtoBuf:1`: a mock go-pdk style plugin server.
//!
//! Each connection is a loop of RpcCalls. The reply comes from the spec's
//! `on_methods`, keyed by the call's command (`cmd_start_instance`,
//! `cmd_handle_event`, ...) and matched on its params in JSON; `result` is
//! the RpcReturn in protobuf's JSON form (the call's sequence is echoed
//! unless `result` sets one; `null` sends an empty frame, as go-pdk does for
//! commands it does not implement). For `cmd_handle_event`, the entry's
//! `pdk` list is played first: method name and arguments, Kong's reply
//! (checked and captured), then the empty frame and the RpcReturn.
//!
//! `ProtoBuf:1` has no error reply: an entry with an `error`, a call with
//! no entry and an undecodable call all close the connection, which is what
//! go-pdk does and what Kong reads as an error.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::pb_faults::{self, Flow};
use super::pb_wire::PbConn;
use super::replies::{Choice, Cursor, Replies};
use super::server::ServerOptions;
use crate::conversation::protobuf::Observed;
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::message::Direction;
use crate::message::protobuf::envelope::HANDLE_EVENT;
use crate::message::protobuf::{Envelope, EnvelopeKind, PdkMethod};
use crate::net;
use crate::spec::template::{self, Vars};
use crate::spec::{PdkStep, Spec, matcher};

/// How long connections get to finish after shutdown starts.
const DRAIN: Duration = Duration::from_secs(5);

/// Runs the mock server until `shutdown` is cancelled. The outcome is
/// `Failed` when a PDK reply from Kong did not match its `expect` or could
/// not be decoded.
pub async fn run(spec: &Spec, opts: ServerOptions, shutdown: CancellationToken) -> Result<Outcome> {
    check(spec).map_err(|e| Error::Other(format!("{}: {e}", spec.source)))?;
    let replies = Arc::new(Replies::new(&spec.server).map_err(Error::Other)?);
    let failures = Arc::new(AtomicU64::new(0));
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
                let conn = PbConn::new(stream, opts.limits, opts.full_values);
                tracing::debug!("{} connected", conn.id());
                tracker.spawn(serve(
                    conn,
                    replies.clone(),
                    failures.clone(),
                    opts.print_conversations,
                    shutdown.child_token(),
                ));
            }
            Err(e) => {
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
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        tracing::warn!("{failed} PDK replies from the client did not meet expectations");
        return Ok(Outcome::Failed);
    }
    Ok(Outcome::Passed)
}

/// Checks a spec for this role before anything listens: every key is an
/// RpcCall command, every result an RpcReturn, every PDK call a method of
/// `service Kong` with arguments of its input type.
pub fn check(spec: &Spec) -> std::result::Result<(), String> {
    let commands = EnvelopeKind::Call.members();
    for (command, entries) in &spec.server.on_methods {
        if !commands.contains(command) {
            return Err(format!(
                "on_methods key `{command}` is not an RpcCall command (valid: {})",
                commands.join(", ")
            ));
        }
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("on_methods[{command:?}][{i}]");
            if !entry.result.is_null() {
                Envelope::from_json(EnvelopeKind::Return, &entry.result)
                    .map_err(|e| format!("{at}.result: {e}"))?;
            }
            if !entry.pdk.is_empty() && command != HANDLE_EVENT {
                return Err(format!("{at}: `pdk` is only played for {HANDLE_EVENT}"));
            }
            if !entry.notify.is_empty() {
                return Err(format!("{at}: ProtoBuf:1 has no notifications (`notify`)"));
            }
            for (j, step) in entry.pdk.iter().enumerate() {
                let pdk = PdkMethod::named(&step.method).ok_or_else(|| {
                    format!(
                        "{at}.pdk[{j}]: `{}` is not a PDK method of service Kong",
                        step.method
                    )
                })?;
                if template::references(&step.args).is_empty() {
                    encode_args(pdk, &step.args).map_err(|e| format!("{at}.pdk[{j}].args: {e}"))?;
                }
                for (name, path) in &step.capture {
                    template::parse_path(path)
                        .map_err(|e| format!("{at}.pdk[{j}].capture.{name}: {e}"))?;
                }
            }
        }
    }
    if !spec.server.on_connect.is_empty() {
        return Err("ProtoBuf:1 has no notifications (`on_connect`)".into());
    }
    Ok(())
}

fn encode_args(pdk: &PdkMethod, args: &Json) -> std::result::Result<Vec<u8>, String> {
    if args.is_null() {
        Ok(Vec::new())
    } else {
        pdk.encode_args(args)
    }
}

/// One connection; prints its conversation when it ends.
async fn serve(
    mut conn: PbConn,
    replies: Arc<Replies>,
    failures: Arc<AtomicU64>,
    print: bool,
    cancel: CancellationToken,
) {
    let mut cursor = Cursor::default();
    let id = conn.id();
    let result = converse(&mut conn, &replies, &failures, &mut cursor, &cancel).await;
    match &result {
        Ok(()) => tracing::debug!("{id} closed"),
        Err(e) => tracing::warn!("{id} ended: {e}"),
    }
    let log = conn.into_record();
    if log.is_empty() {
        tracing::debug!("{id} closed without sending anything");
    } else if print {
        let line = json!({"connection": id.0, "messages": log});
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

async fn converse(
    conn: &mut PbConn,
    replies: &Replies,
    failures: &AtomicU64,
    cursor: &mut Cursor,
    cancel: &CancellationToken,
) -> Result<()> {
    loop {
        let obs = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            read = conn.read(Direction::ToServer) => read?,
        };
        let Some(obs) = obs else {
            return Ok(());
        };
        let Observed::Call {
            sequence,
            command: Some(command),
            params,
        } = obs.what
        else {
            conn.closing(
                "the call cannot be read; closing the connection, as go-pdk does",
                Direction::ToClient,
            );
            return Ok(());
        };
        let (index, entry) = match replies.choose(cursor, &command, &params) {
            Choice::Entry { index, prepared } => (index, &prepared.entry),
            Choice::NoEntries => {
                conn.closing(
                    &format!("no entry for {command}; closing the connection (ProtoBuf:1 has no error reply)"),
                    Direction::ToClient,
                );
                return Ok(());
            }
            Choice::NotThisCall(call) => {
                conn.closing(
                    &format!(
                        "the entries for {command} do not apply to call {call}; closing the connection"
                    ),
                    Direction::ToClient,
                );
                return Ok(());
            }
            Choice::NoMatch => {
                conn.closing(
                    &format!(
                        "no entry for {command} matches params {params}; closing the connection"
                    ),
                    Direction::ToClient,
                );
                return Ok(());
            }
        };
        tracing::debug!(
            "{} replying from on_methods[{command:?}][{index}]",
            conn.id()
        );
        if entry.delay_ms > 0 {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(entry.delay_ms)) => {}
            }
        }
        match pb_faults::before_reply(conn, entry, sequence) {
            Some(Flow::Close) => return Ok(()),
            Some(Flow::Continue) => continue,
            None => {}
        }
        // Garbage in place of the answer needs no result: an entry without
        // one has the default error, which is not meant here.
        let garbage = entry
            .faults
            .garbage
            .as_ref()
            .is_some_and(|g| !g.after_reply);
        if let Some(text) = error_text(&entry.error).filter(|_| !garbage) {
            conn.closing(
                &format!(
                    "on_methods[{command:?}][{index}] says error {text:?}: closing the connection, \
                     which is how ProtoBuf:1 servers report errors"
                ),
                Direction::ToClient,
            );
            return Ok(());
        }
        if command == HANDLE_EVENT {
            let played = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                played = play(conn, &entry.pdk, failures) => played?,
            };
            if !played {
                return Ok(());
            }
            conn.send(Direction::ToClient, &[]).await?;
        }
        if pb_faults::send_return(conn, entry, sequence).await? == Flow::Close {
            return Ok(());
        }
    }
}

/// Plays an event's PDK calls. False when the connection ended meanwhile.
async fn play(conn: &mut PbConn, steps: &[PdkStep], failures: &AtomicU64) -> Result<bool> {
    let mut vars: Vars = template::builtins();
    for (i, step) in steps.iter().enumerate() {
        let Some(pdk) = PdkMethod::named(&step.method) else {
            // check() refused these.
            continue;
        };
        let args = template::substitute(&step.args, &vars)
            .and_then(|a| encode_args(pdk, &a))
            .map_err(|e| Error::Other(format!("pdk[{i}] ({}): {e}", step.method)))?;
        conn.send(Direction::ToClient, step.method.as_bytes())
            .await?;
        conn.send(Direction::ToClient, &args).await?;
        if step.no_reply.unwrap_or(!pdk.expects_reply()) {
            continue;
        }
        let Some(obs) = conn.read(Direction::ToServer).await? else {
            return Ok(false);
        };
        let reply = match obs.what {
            Observed::PdkReply { reply, .. } => reply,
            _ => {
                failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "{} the reply to {} is unusable: {}",
                    conn.id(),
                    step.method,
                    obs.view.problem.as_deref().unwrap_or("not a reply")
                );
                continue;
            }
        };
        if let Some(pattern) = &step.expect {
            let pattern = template::substitute(pattern, &vars).unwrap_or_else(|_| pattern.clone());
            for m in matcher::diff(&pattern, &reply) {
                failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("{} reply to {}: {m}", conn.id(), step.method);
            }
        }
        for (name, path) in &step.capture {
            let found = template::parse_path(path)
                .ok()
                .and_then(|p| template::lookup(&reply, &p).cloned());
            match found {
                Some(value) => {
                    vars.insert(name.clone(), value);
                }
                None => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "{} capture `{name}`: nothing at `{path}` in the reply to {} ({reply})",
                        conn.id(),
                        step.method
                    );
                }
            }
        }
    }
    Ok(true)
}

fn error_text(error: &Json) -> Option<String> {
    match error {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}
