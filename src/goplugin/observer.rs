//! The observer: turns what the proxy forwarded into decoded events, off
//! the forwarding path.
//!
//! It runs as one task fed by a channel, so forwarding never waits for
//! decoding (or for a reflection lookup). Per stream and direction it
//! reassembles length-prefixed messages ([`super::frame`]) and decodes
//! each with the method's input or output type when a schema knows the
//! method, else by wire type ([`super::wire`]). With reflection on, the
//! first stream of a service no schema knows triggers one reflection
//! lookup against the server of that connection.
//!
//! `--redact` rules apply to each view before it is logged or recorded;
//! with `--record`, every event goes to the recording in the order it
//! was forwarded ([`super::recording`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use prost_reflect::MethodDescriptor;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::codec::Decoder as _;

use super::event::{ConnLabel, Decoded, Event, Observed, headers_json, trailers_view};
use super::frame::{Framed, MessageDecoder};
use super::grpc::split_path;
use super::recording::Recording;
use super::reflection;
use super::schema::{Schemas, decode_json};
use super::wire;
use crate::message::{Direction, Kind, MessageView};
use crate::net::{Address, ConnId};
use crate::record::redact::Redactor;

/// How the observer decodes.
#[derive(Debug, Clone)]
pub struct ObserverOptions {
    /// Schemas known up front.
    pub schemas: Schemas,
    /// Ask the server's reflection service for unknown services.
    pub reflection: bool,
    /// Largest message decoded (larger ones are forwarded, not decoded).
    pub max_message: usize,
    /// Log values in full.
    pub full_values: bool,
    /// `--redact` rules, applied before anything is logged or recorded.
    pub redact: Redactor,
    /// Where to record what was seen (`--record`).
    pub record: Option<Recording>,
}

#[derive(Default)]
struct Side {
    buf: BytesMut,
    decoder: Option<MessageDecoder>,
    index: u64,
    broken: bool,
    /// DATA bytes seen.
    seen: u64,
    /// DATA bytes the decoder has consumed (the next message's offset).
    consumed: u64,
}

struct StreamState {
    path: String,
    method: Option<MethodDescriptor>,
    sides: [Side; 2],
    opened: Instant,
}

/// One decoded event before it is logged and recorded.
struct Out {
    view: MessageView,
    raw: Option<bytes::Bytes>,
    offset: u64,
    /// For trailers: time since the stream opened.
    latency: Option<Duration>,
}

impl Out {
    fn new(view: MessageView) -> Out {
        Out {
            view,
            raw: None,
            offset: 0,
            latency: None,
        }
    }
}

/// DATA bytes per connection and direction (for `close` lines).
type Totals = HashMap<ConnId, [u64; 2]>;

/// Runs until every sender is dropped. Each decoded event is logged and,
/// when `sink` is given, sent there too.
pub async fn run(
    opts: ObserverOptions,
    mut rx: mpsc::UnboundedReceiver<Observed>,
    sink: Option<mpsc::UnboundedSender<Decoded>>,
) {
    let mut schemas = opts.schemas.clone();
    let mut streams: HashMap<(ConnId, u32), StreamState> = HashMap::new();
    let mut tried: HashSet<(Address, String)> = HashSet::new();
    let mut totals = Totals::new();
    let rec = opts.record.clone();
    while let Some(ob) = rx.recv().await {
        let key = (ob.conn.id, ob.stream);
        let mut out: Vec<Out> = Vec::new();
        match ob.event {
            Event::ConnOpen => {
                totals.insert(ob.conn.id, [0, 0]);
                if let Some(r) = &rec {
                    r.conn_open(&ob.conn, ob.at).await;
                }
                continue;
            }
            Event::ConnClose(error) => {
                let cut: Vec<(ConnId, u32)> = streams
                    .keys()
                    .filter(|(c, _)| *c == ob.conn.id)
                    .copied()
                    .collect();
                for k in cut {
                    if let Some(st) = streams.remove(&k) {
                        out.push(cut_short(
                            k.1,
                            st.path,
                            "the connection closed before the stream ended",
                        ));
                    }
                }
                let bytes = totals.remove(&ob.conn.id).unwrap_or_default();
                emit((&ob.conn, ob.dir, ob.at), out, &opts, &sink).await;
                if let Some(r) = &rec {
                    r.conn_close(&ob.conn, bytes, error, ob.at).await;
                }
                continue;
            }
            Event::Broker(note) => {
                if let Some(r) = &rec {
                    r.broker(&ob.conn, ob.dir, &note, ob.at).await;
                }
                continue;
            }
            Event::Open { path, headers } => {
                let mut method = None;
                if let Some((svc, m)) = split_path(&path) {
                    if !schemas.has_service(svc)
                        && opts.reflection
                        && tried.insert((ob.conn.upstream.clone(), svc.to_owned()))
                    {
                        match reflection::fetch(&ob.conn.upstream, svc, &mut schemas).await {
                            Ok(n) => tracing::info!(
                                "{}: schema for {svc} from server reflection ({n} files)",
                                ob.conn.name
                            ),
                            Err(e) => tracing::info!(
                                "{}: no schema for {svc} ({e}); decoding by wire type",
                                ob.conn.name
                            ),
                        }
                    }
                    method = schemas.method(svc, m);
                }
                out.push(Out::new(MessageView {
                    kind: Kind::GrpcOpen,
                    id: Some(u64::from(ob.stream)),
                    method: Some(path.clone()),
                    problem: None,
                    error: None,
                    value: json!({"headers": headers_json(&headers)}),
                }));
                streams.insert(
                    key,
                    StreamState {
                        path,
                        method,
                        sides: Default::default(),
                        opened: ob.at,
                    },
                );
            }
            Event::Data(chunk) => {
                if let Some(t) = totals.get_mut(&ob.conn.id) {
                    t[usize::from(ob.dir == Direction::ToClient)] += chunk.len() as u64;
                }
                if let Some(st) = streams.get_mut(&key) {
                    decode_chunk(st, ob.stream, ob.dir, &chunk, &opts, &mut out, false);
                }
            }
            Event::End => {
                if let Some(st) = streams.get_mut(&key) {
                    decode_chunk(st, ob.stream, ob.dir, &[], &opts, &mut out, true);
                }
            }
            Event::Headers { headers, end } => {
                let st = streams.get(&key);
                let path = st.map(|s| s.path.clone());
                let mut o = if end {
                    let mut o = Out::new(trailers_view(ob.stream, path, &headers));
                    o.latency = st.map(|s| ob.at.saturating_duration_since(s.opened));
                    o
                } else {
                    Out::new(MessageView {
                        kind: Kind::GrpcHeaders,
                        id: Some(u64::from(ob.stream)),
                        method: path,
                        problem: None,
                        error: None,
                        value: json!({"headers": headers_json(&headers)}),
                    })
                };
                o.offset = st.map_or(0, |s| side_of(s, ob.dir).seen);
                out.push(o);
                if end {
                    streams.remove(&key);
                }
            }
            Event::Trailers(headers) => {
                if let Some(st) = streams.get_mut(&key) {
                    decode_chunk(st, ob.stream, ob.dir, &[], &opts, &mut out, true);
                }
                let st = streams.remove(&key);
                let mut o = Out::new(trailers_view(
                    ob.stream,
                    st.as_ref().map(|s| s.path.clone()),
                    &headers,
                ));
                o.offset = st.as_ref().map_or(0, |s| side_of(s, ob.dir).seen);
                o.latency = st.map(|s| ob.at.saturating_duration_since(s.opened));
                out.push(o);
            }
            Event::Reset(reason) => {
                let Some(st) = streams.remove(&key) else {
                    // The other direction's reset of a stream already ended.
                    tracing::debug!("{} s{}: {reason}", ob.conn.name, ob.stream);
                    continue;
                };
                let st = Some(st);
                let mut o = Out::new(MessageView {
                    kind: Kind::GrpcReset,
                    id: Some(u64::from(ob.stream)),
                    method: st.as_ref().map(|s| s.path.clone()),
                    problem: Some(reason.clone()),
                    error: None,
                    value: json!({"reason": reason}),
                });
                o.offset = st.as_ref().map_or(0, |s| side_of(s, ob.dir).seen);
                out.push(o);
            }
        }
        emit((&ob.conn, ob.dir, ob.at), out, &opts, &sink).await;
    }
    // Streams still open when every forwarder is gone were cut short.
    for ((conn, stream), st) in streams {
        let view = cut_short(stream, st.path, "plugtap stopped before the stream ended");
        tracing::warn!(
            "c{} s{stream} {}",
            conn.0,
            view.view.problem.as_deref().unwrap_or("")
        );
        if let Some(r) = &rec {
            r.cut_short(conn, view.view, Instant::now()).await;
        }
    }
}

fn side_of(st: &StreamState, dir: Direction) -> &Side {
    &st.sides[usize::from(dir == Direction::ToClient)]
}

fn cut_short(stream: u32, path: String, why: &str) -> Out {
    Out::new(MessageView {
        kind: Kind::GrpcReset,
        id: Some(u64::from(stream)),
        method: Some(path),
        problem: Some(why.to_owned()),
        error: None,
        value: json!({"reason": why}),
    })
}

/// Redacts, logs, records and passes on what one event produced.
async fn emit(
    (conn, dir, at): (&Arc<ConnLabel>, Direction, Instant),
    out: Vec<Out>,
    opts: &ObserverOptions,
    sink: &Option<mpsc::UnboundedSender<Decoded>>,
) {
    for o in out {
        let mut view = o.view;
        let redacted = opts.redact.apply(&mut view);
        let d = Decoded {
            conn: conn.clone(),
            dir,
            view,
            raw: o.raw,
            offset: o.offset,
            at,
        };
        if d.view.problem.is_some() || d.view.kind == Kind::Malformed {
            tracing::warn!("{}", d.line(opts.full_values));
        } else {
            tracing::info!("{}", d.line(opts.full_values));
        }
        if let Some(r) = &opts.record {
            r.decoded(&d, redacted, o.latency).await;
        }
        if let Some(sink) = sink {
            let _ = sink.send(d);
        }
    }
}

fn decode_chunk(
    st: &mut StreamState,
    stream: u32,
    dir: Direction,
    chunk: &[u8],
    opts: &ObserverOptions,
    out: &mut Vec<Out>,
    eof: bool,
) {
    let side = &mut st.sides[usize::from(dir == Direction::ToClient)];
    side.seen += chunk.len() as u64;
    if side.broken {
        return;
    }
    let decoder = side
        .decoder
        .get_or_insert_with(|| MessageDecoder::new(opts.max_message));
    side.buf.extend_from_slice(chunk);
    loop {
        let before = side.buf.len() as u64;
        let offset = side.consumed;
        let next = if eof {
            decoder.decode_eof(&mut side.buf)
        } else {
            decoder.decode(&mut side.buf)
        };
        side.consumed += before.saturating_sub(side.buf.len() as u64);
        let at = |view| Out {
            view,
            raw: None,
            offset,
            latency: None,
        };
        let base = |kind, problem: Option<String>, value| MessageView {
            kind,
            id: Some(u64::from(stream)),
            method: Some(st.path.clone()),
            problem,
            error: None,
            value,
        };
        match next {
            Ok(None) => return,
            Ok(Some(Framed::Oversized { len, max })) => {
                let index = side.index;
                side.index += 1;
                out.push(at(base(
                    Kind::GrpcMessage,
                    Some(format!(
                        "{len} bytes, over the {max}-byte decoding limit: forwarded, not decoded"
                    )),
                    json!({"index": index, "size": len}),
                )));
            }
            Ok(Some(Framed::Message(m))) => {
                let index = side.index;
                side.index += 1;
                let ty = st.method.as_ref().map(|md| match dir {
                    Direction::ToServer => md.input(),
                    Direction::ToClient => md.output(),
                });
                let size = m.payload.len();
                let (value, problem) = if m.compressed {
                    (
                        json!({"index": index, "size": size, "note": "compressed: not decoded"}),
                        None,
                    )
                } else {
                    match &ty {
                        Some(desc) => match decode_json(desc, &m.payload) {
                            Ok(j) => (
                                json!({"index": index, "size": size, "type": desc.full_name(), "json": j}),
                                None,
                            ),
                            Err(e) => {
                                let fields = wire::decode(&m.payload)
                                    .unwrap_or_else(|_| json!(crate::codec::hex(&m.payload)));
                                (
                                    json!({"index": index, "size": size, "fields": fields}),
                                    Some(format!("not a valid {}: {e}", desc.full_name())),
                                )
                            }
                        },
                        None => match wire::decode(&m.payload) {
                            Ok(fields) => (
                                json!({"index": index, "size": size, "fields": fields}),
                                None,
                            ),
                            Err(e) => (
                                json!({"index": index, "size": size, "hex": crate::codec::hex(&m.payload)}),
                                Some(format!("not protobuf: {e}")),
                            ),
                        },
                    }
                };
                let mut o = at(base(Kind::GrpcMessage, problem, value));
                o.raw = Some(m.payload);
                out.push(o);
            }
            Err(e) => {
                side.broken = true;
                let rest = crate::codec::hex(&side.buf[..side.buf.len().min(64)]);
                out.push(at(base(
                    Kind::Malformed,
                    Some(e.to_string()),
                    json!({"hex": rest}),
                )));
                side.buf.clear();
                return;
            }
        }
    }
}
