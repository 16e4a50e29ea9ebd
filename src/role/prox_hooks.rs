//! The mock prox plugin's socket side: `on_methods` checked and prepared
//! once, then each accepted connection served one frame at a time, as the
//! SDK does.
//!
//! `on_methods` is keyed by hook name; `match` applies to the hook's payload
//! and `result` is the reply map, both written with prox's short keys or
//! the readable names. The reply choice goes through the shared
//! [`Replies`] (match, then cycle), so entry options other roles add apply
//! here too. Where the spec has nothing to say, the mock does what the SDK
//! does: a hook without entries gets the SDK's no-handler reply, a payload
//! the SDK cannot read gets its error reply, an unknown hook byte gets no
//! reply, an envelope it cannot read closes the connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::prox_wire::ProxConn;
use super::replies::{Choice, Cursor, Replies};
use crate::conversation::prox::Observed;
use crate::error::Result;
use crate::message::Direction;
use crate::message::prox::{Encoding, Hook, payload};
use crate::spec::{Entry, ServerSpec, Spec};

/// `on_methods` ready to answer from.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The entries with short keys, for the shared reply choice.
    pub(crate) replies: Replies,
    /// Each entry's reply bytes, by hook name and index.
    encoded: HashMap<(Hook, usize), Vec<u8>>,
    /// Things worth a warning at start-up.
    pub(crate) warnings: Vec<String>,
}

/// Checks and prepares a spec's `on_methods` for the mock plugin.
pub(crate) fn prepare(spec: &Spec) -> std::result::Result<Prepared, String> {
    if !spec.server.on_connect.is_empty() {
        return Err(
            "prox has no notifications (`on_connect`); use `prox.pushes` for stdout lines".into(),
        );
    }
    let mut on_methods = indexmap::IndexMap::new();
    let mut encoded = HashMap::new();
    let mut warnings = Vec::new();
    for (name, entries) in &spec.server.on_methods {
        let hook = Hook::named(name).ok_or_else(|| {
            format!(
                "on_methods key `{name}` is not a prox hook (valid: {})",
                Hook::names()
            )
        })?;
        let mut short_entries = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("on_methods[{name:?}][{i}]");
            let (short, bytes) = prepare_entry(hook, entry, &at, &mut warnings)?;
            if let Some(bytes) = bytes {
                encoded.insert((hook, i), bytes);
            }
            short_entries.push(short);
        }
        on_methods.insert(name.clone(), short_entries);
    }
    let server = ServerSpec {
        on_methods,
        on_connect: vec![],
        cycle: spec.server.cycle,
        seed: spec.server.seed,
    };
    Ok(Prepared {
        replies: Replies::new(&server)?,
        encoded,
        warnings,
    })
}

fn prepare_entry(
    hook: Hook,
    entry: &Entry,
    at: &str,
    warnings: &mut Vec<String>,
) -> std::result::Result<(Entry, Option<Vec<u8>>), String> {
    if !entry.notify.is_empty() {
        return Err(format!("{at}: prox has no notifications (`notify`)"));
    }
    if !entry.pdk.is_empty() {
        return Err(format!("{at}: `pdk` is only for ProtoBuf:1"));
    }
    let mut short = entry.clone();
    if let Some(m) = &entry.matcher {
        short.matcher = Some(hook.request().to_short(m, &format!("{at}.match"))?);
    }
    let Some(schema) = hook.result() else {
        if !entry.result.is_null() {
            return Err(format!(
                "{at}.result: {hook} gets no reply, so a result is never sent"
            ));
        }
        return Ok((short, None));
    };
    if entry.result.is_null() {
        return Ok((short, None));
    }
    short.result = schema.to_short(&entry.result, &format!("{at}.result"))?;
    let bytes = payload::encode(schema, &short.result, Encoding::Go)
        .map_err(|e| format!("{at}.result: {e}"))?;
    if let Ok(value) = crate::message::prox::decode_value(&bytes, crate::codec::Limits::default()) {
        let check = payload::check(schema, &value);
        if !check.errors.is_empty() {
            warnings.push(format!(
                "{at}.result: prox cannot decode it as {} ({}); sent as written",
                schema.name,
                check.errors.join("; ")
            ));
        }
    }
    Ok((short, Some(bytes)))
}

/// Serves one connection until the peer closes it or `cancel` fires.
pub(crate) async fn serve(
    mut conn: ProxConn,
    prepared: Arc<Prepared>,
    cancel: CancellationToken,
) -> Result<()> {
    let mut cursor = Cursor::default();
    loop {
        let obs = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            read = conn.read(Direction::ToServer) => read?,
        };
        let Some(obs) = obs else {
            return Ok(());
        };
        let (hook, payload, readable) = match obs.what {
            Observed::Call {
                hook,
                payload,
                readable,
            } => (hook, payload, readable),
            Observed::BadCall { t: None } => {
                tracing::warn!(
                    "{} the envelope does not decode; closing the connection, as the SDK does",
                    conn.id()
                );
                return Ok(());
            }
            Observed::BadCall { t: Some(t) } => {
                tracing::warn!(
                    "{} unknown hook type: {t}; no reply, as from the SDK",
                    conn.id()
                );
                continue;
            }
            Observed::Reply { .. } | Observed::Unexpected => continue,
        };
        let params = payload.unwrap_or(Json::Null);
        if !readable {
            if hook.expects_reply() {
                send(&mut conn, hook, &hook.error_reply()).await?;
            }
            continue;
        }
        let choice = prepared.replies.choose(&mut cursor, hook.name(), &params);
        let (index, entry) = match choice {
            Choice::Entry { index, prepared } => (index, &prepared.entry),
            Choice::NoEntries => {
                if hook.expects_reply() {
                    tracing::debug!(
                        "{} no on_methods entry for {hook}: the SDK's reply for a plugin without a handler",
                        conn.id()
                    );
                    send(&mut conn, hook, &hook.default_reply()).await?;
                }
                continue;
            }
            Choice::NoMatch | Choice::NotThisCall(_) => {
                tracing::warn!(
                    "{} no entry for {hook} matches {params}; answering as the SDK does without a handler",
                    conn.id()
                );
                if hook.expects_reply() {
                    send(&mut conn, hook, &hook.default_reply()).await?;
                }
                continue;
            }
        };
        tracing::debug!("{} on_methods[{:?}][{index}]", conn.id(), hook.name());
        if !hook.expects_reply() {
            continue;
        }
        if entry.delay_ms > 0 {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(entry.delay_ms)) => {}
            }
        }
        match prepared.encoded.get(&(hook, index)) {
            Some(bytes) => {
                conn.send(Direction::ToClient, bytes).await?;
            }
            None => {
                tracing::warn!(
                    "{} on_methods[{:?}][{index}] has no result (error {}): closing the connection \
                     without a reply; {}",
                    conn.id(),
                    hook.name(),
                    entry.error,
                    hook.on_failure()
                );
                return Ok(());
            }
        }
    }
}

async fn send(conn: &mut ProxConn, hook: Hook, reply: &Json) -> Result<()> {
    let schema = hook.result().unwrap_or(hook.request());
    let bytes = payload::encode(schema, reply, Encoding::Go).map_err(crate::error::Error::Other)?;
    conn.send(Direction::ToClient, &bytes).await.map(drop)
}
