//! The server role for go-plugin: a mock plugin that a host (or plugtap's
//! own client role) launches like a real one.
//!
//! It checks the magic cookie the way a Go plugin does (wrong cookie: Go's
//! text on stderr, exit 1), negotiates the app version from
//! `PLUGIN_PROTOCOL_VERSIONS`, listens on a fresh `plugin<digits>` socket
//! (or the spec's), prints a valid handshake line and serves gRPC: the
//! built-in services of [`super::services`] and the spec's methods, each
//! request answered by the next matching entry (cycling). Every call is
//! logged through the observer, so logs look the same as the proxy's.
//! `GRPCController/Shutdown` or SIGTERM stops it; SIGINT is ignored while a
//! host runs it (as Go plugins do).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use serde_json::Value as Json;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::env;
use super::event::{ConnLabel, Event, Observed};
use super::grpc::{self, split_path};
use super::handshake::format_line;
use super::observer::{self, ObserverOptions};
use super::services::{Answer, Builtin, builtin};
use super::spec::{Body, Entry, GoSpec};
use crate::error::{Error, Result};
use crate::message::Direction;
use crate::net::{ConnId, Listener};
use crate::spec::matcher;

/// Settings that do not come from the spec.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Socket path; overrides the spec's.
    pub socket: Option<PathBuf>,
    /// Largest request decoded.
    pub max_message: usize,
    /// Log values in full.
    pub full_values: bool,
}

struct Shared {
    spec: GoSpec,
    opts: MockOptions,
    cursors: Mutex<HashMap<(String, Vec<usize>), usize>>,
    events: mpsc::UnboundedSender<Observed>,
    stop: CancellationToken,
    known: Vec<String>,
    /// What the mock announces on the broker stream.
    announce: Vec<Bytes>,
}

/// Runs the mock until it is shut down; returns the exit code.
pub async fn run(spec: GoSpec, opts: MockOptions) -> Result<i32> {
    let hs = &spec.handshake;
    if !hs.magic_cookie_key.is_empty()
        && std::env::var(&hs.magic_cookie_key).ok().as_deref()
            != Some(hs.magic_cookie_value.as_str())
    {
        eprint!("{}", env::NOT_A_PLUGIN);
        return Ok(1);
    }
    let host_list = std::env::var(env::PROTOCOL_VERSIONS).ok();
    let (version, warnings) = env::negotiate(&hs.app_versions, host_list.as_deref());
    for w in warnings {
        eprint!("{w}");
        eprintln!();
    }
    if std::env::var_os(env::MULTIPLEX_GRPC).is_some() {
        tracing::warn!(
            "the host asks for gRPC broker multiplexing; the mock does not support it and says so by leaving out handshake field 7"
        );
    }
    if std::env::var_os(env::CLIENT_CERT).is_some() {
        tracing::warn!(
            "the host asks for AutoMTLS; the mock serves plain h2c and prints no certificate"
        );
    }
    let path = opts
        .socket
        .clone()
        .or_else(|| spec.socket.clone())
        .unwrap_or_else(|| env::socket_path(&env::socket_dir()));
    let listener = Listener::unix(&path)?;
    // Before the handshake: a host may signal as soon as it has it.
    let mut term = signal(SignalKind::terminate()).map_err(|source| Error::Io {
        context: "signals".into(),
        source,
    })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| Error::Io {
        context: "signals".into(),
        source,
    })?;
    let line = format_line(version, &listener.address(), "grpc", false);
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|source| Error::Io {
                context: "printing the handshake".into(),
                source,
            })?;
    }
    tracing::info!("mock plugin listening; handshake {line}");

    let (tx, rx) = mpsc::unbounded_channel();
    let observer = tokio::spawn(observer::run(
        ObserverOptions {
            schemas: spec.schemas.clone(),
            reflection: false,
            max_message: opts.max_message,
            full_values: opts.full_values,
            redact: Default::default(),
            record: None,
        },
        rx,
        None,
    ));
    let stop = CancellationToken::new();
    let mut known: Vec<String> = spec.services.keys().cloned().collect();
    known.extend(spec.schemas.service_names());
    let brokered = super::mock_broker::open(&spec.brokered, &path)?;
    let shared = Arc::new(Shared {
        spec,
        opts,
        cursors: Mutex::new(HashMap::new()),
        events: tx,
        stop: stop.clone(),
        known,
        announce: brokered.announce,
    });
    for (id, l) in brokered.listeners {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = shared.stop.cancelled() => break,
                    a = l.accept() => a,
                };
                match accepted {
                    Ok(stream) => {
                        let shared = shared.clone();
                        tokio::spawn(async move { connection(stream, shared).await });
                    }
                    Err(e) => {
                        tracing::warn!("broker#{id}: accept failed: {e}");
                        break;
                    }
                }
            }
        });
    }
    let hosted = std::env::var_os(env::PROTOCOL_VERSIONS).is_some();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => {
                if hosted {
                    tracing::info!("SIGINT ignored, as go-plugin plugins do while a host runs them");
                } else {
                    tracing::info!("SIGINT: stopping");
                    break;
                }
            }
            a = listener.accept() => match a {
                Ok(stream) => {
                    let shared = shared.clone();
                    tokio::spawn(async move { connection(stream, shared).await });
                }
                Err(e) => tracing::warn!("accept failed: {e}"),
            }
        }
    }
    stop.cancel();
    drop(listener);
    // Let answers in flight (the Shutdown reply) reach the host.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(shared);
    let _ = tokio::time::timeout(Duration::from_secs(1), observer).await;
    Ok(0)
}

async fn connection(io: crate::net::Stream, shared: Arc<Shared>) {
    let id = ConnId::next();
    let label = Arc::new(ConnLabel {
        id,
        name: id.to_string(),
        client: "host",
        server: "mock",
        upstream: crate::net::Address::Unix(PathBuf::new()),
    });
    let mut conn = match grpc::server(io).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("{id}: not an HTTP/2 connection: {e}");
            return;
        }
    };
    loop {
        let next = tokio::select! {
            _ = shared.stop.cancelled() => break,
            n = conn.accept() => n,
        };
        match next {
            Some(Ok((req, respond))) => {
                let (shared, label) = (shared.clone(), label.clone());
                tokio::spawn(async move { serve_stream(req, respond, label, shared).await });
            }
            Some(Err(e)) => {
                tracing::warn!("{id}: connection failed: {e}");
                break;
            }
            None => break,
        }
    }
    conn.graceful_shutdown();
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        std::future::poll_fn(|cx| conn.poll_closed(cx)),
    )
    .await;
}

async fn serve_stream(
    req: http::Request<RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
    label: Arc<ConnLabel>,
    shared: Arc<Shared>,
) {
    let id = respond.stream_id().as_u32();
    let (parts, mut body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let mut shown = vec![
        (":method".to_owned(), parts.method.to_string()),
        (":path".to_owned(), path.clone()),
    ];
    shown.extend(grpc::header_pairs(&parts.headers));
    let _ = shared.events.send(Observed::now(
        label.clone(),
        id,
        Direction::ToServer,
        Event::Open {
            path: path.clone(),
            headers: shown,
        },
    ));
    let answer = Answer {
        conn: label,
        id,
        events: shared.events.clone(),
        respond,
    };
    let Some((svc, m)) = split_path(&path) else {
        answer
            .reply(
                &[],
                grpc::UNIMPLEMENTED,
                &format!("malformed method name: {path:?}"),
                None,
            )
            .await;
        return;
    };
    let (svc, m) = (svc.to_owned(), m.to_owned());
    let entries = shared.spec.services.get(&svc).and_then(|ms| ms.get(&m));
    if entries.is_none() && path == super::forward::BROKER_PATH {
        // Bidirectional and open-ended: answer at once, log what arrives.
        let stop = shared.stop.clone();
        let mut b = body;
        let reader_events = answer.events.clone();
        let reader_conn = answer.conn.clone();
        tokio::spawn(async move {
            while let Some(Ok(chunk)) = b.data().await {
                let _ = b.flow_control().release_capacity(chunk.len());
                let _ = reader_events.send(Observed::now(
                    reader_conn.clone(),
                    id,
                    Direction::ToServer,
                    Event::Data(chunk),
                ));
            }
        });
        let announce = shared.announce.clone();
        answer.reply(&announce, 0, "", Some(stop)).await;
        return;
    }
    let requests = match answer
        .read_requests(&mut body, shared.opts.max_message)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("{} s{id} {path}: {e}", answer.conn.name);
            answer.reply(&[], grpc::INTERNAL, &e, None).await;
            return;
        }
    };
    let Some(entries) = entries else {
        match builtin(
            &svc,
            &m,
            requests.first(),
            &shared.spec.schemas,
            &shared.known,
            &shared.spec.stdio,
        ) {
            Some(Builtin::Reply(msgs, status, text)) => {
                answer.reply(&msgs, status, &text, None).await
            }
            Some(Builtin::Hold(msgs)) => {
                answer.reply(&msgs, 0, "", Some(shared.stop.clone())).await
            }
            Some(Builtin::Shutdown) => {
                answer.reply(&[Bytes::new()], 0, "", None).await;
                tracing::info!("GRPCController.Shutdown called: stopping");
                shared.stop.cancel();
            }
            None => {
                let text = if shared.spec.services.contains_key(&svc) {
                    format!("unknown method {m} for service {svc}")
                } else {
                    format!("unknown service {svc}")
                };
                answer.reply(&[], grpc::UNIMPLEMENTED, &text, None).await;
            }
        }
        return;
    };
    let decoded = requests
        .first()
        .map(|r| decode_request(&shared, &svc, &m, r));
    let Some(entry) = pick(&shared, &path, entries, decoded.as_ref()) else {
        let got = decoded
            .map(|d| d.to_string())
            .unwrap_or_else(|| "no request message".into());
        answer
            .reply(
                &[],
                grpc::UNIMPLEMENTED,
                &format!("plugtap mock: no entry for {path} matches the request {got}"),
                None,
            )
            .await;
        return;
    };
    if entry.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(entry.delay_ms)).await;
    }
    let md = shared.spec.schemas.method(&svc, &m);
    let mut msgs = Vec::new();
    for b in &entry.responses {
        let bytes = match b {
            Body::Hex(h) => Ok(h.clone()),
            Body::Raw(r) => super::wire::encode(r),
            Body::Json(j) => match &md {
                Some(md) => super::schema::encode_json(&md.output(), j),
                None => Err(format!("no schema for {path}")),
            },
        };
        match bytes {
            Ok(b) => msgs.push(Bytes::from(b)),
            Err(e) => {
                answer
                    .reply(&[], grpc::INTERNAL, &format!("plugtap mock: {e}"), None)
                    .await;
                return;
            }
        }
    }
    answer
        .reply(&msgs, entry.status, &entry.message, None)
        .await;
}

/// A request as JSON: protobuf JSON with a schema, raw fields without.
fn decode_request(shared: &Shared, svc: &str, m: &str, bytes: &Bytes) -> Json {
    if let Some(md) = shared.spec.schemas.method(svc, m)
        && let Ok(j) = super::schema::decode_json(&md.input(), bytes)
    {
        return j;
    }
    super::wire::decode(bytes).unwrap_or(Json::Null)
}

/// The next entry among those matching the request, cycling per set of
/// candidates across all connections.
fn pick<'a>(
    shared: &Shared,
    path: &str,
    entries: &'a [Entry],
    request: Option<&Json>,
) -> Option<&'a Entry> {
    let candidates: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| match (&e.matcher, request) {
            (None, _) => true,
            (Some(p), Some(r)) => matcher::matches(p, r),
            (Some(_), None) => false,
        })
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let mut cursors = shared.cursors.lock().unwrap_or_else(|e| e.into_inner());
    let pos = cursors
        .entry((path.to_owned(), candidates.clone()))
        .or_insert(0);
    let chosen = candidates[*pos % candidates.len()];
    *pos += 1;
    Some(&entries[chosen])
}
