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

use std::collections::{HashMap, HashSet};

use bytes::BytesMut;
use prost_reflect::MethodDescriptor;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::codec::Decoder as _;

use super::event::{Decoded, Event, Observed, headers_json, trailers_view};
use super::frame::{Framed, MessageDecoder};
use super::grpc::split_path;
use super::reflection;
use super::schema::{Schemas, decode_json};
use super::wire;
use crate::message::{Direction, Kind, MessageView};
use crate::net::{Address, ConnId};

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
}

#[derive(Default)]
struct Side {
    buf: BytesMut,
    decoder: Option<MessageDecoder>,
    index: u64,
    broken: bool,
}

struct StreamState {
    path: String,
    method: Option<MethodDescriptor>,
    sides: [Side; 2],
}

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
    while let Some(ob) = rx.recv().await {
        let key = (ob.conn.id, ob.stream);
        let mut out: Vec<(MessageView, Option<bytes::Bytes>)> = Vec::new();
        match ob.event {
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
                out.push((
                    MessageView {
                        kind: Kind::GrpcOpen,
                        id: Some(u64::from(ob.stream)),
                        method: Some(path.clone()),
                        problem: None,
                        error: None,
                        value: json!({"headers": headers_json(&headers)}),
                    },
                    None,
                ));
                streams.insert(
                    key,
                    StreamState {
                        path,
                        method,
                        sides: Default::default(),
                    },
                );
            }
            Event::Data(chunk) => {
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
                let path = streams.get(&key).map(|s| s.path.clone());
                if end {
                    out.push((trailers_view(ob.stream, path, &headers), None));
                    streams.remove(&key);
                } else {
                    out.push((
                        MessageView {
                            kind: Kind::GrpcHeaders,
                            id: Some(u64::from(ob.stream)),
                            method: path,
                            problem: None,
                            error: None,
                            value: json!({"headers": headers_json(&headers)}),
                        },
                        None,
                    ));
                }
            }
            Event::Trailers(headers) => {
                if let Some(st) = streams.get_mut(&key) {
                    decode_chunk(st, ob.stream, ob.dir, &[], &opts, &mut out, true);
                }
                let path = streams.remove(&key).map(|s| s.path);
                out.push((trailers_view(ob.stream, path, &headers), None));
            }
            Event::Reset(reason) => {
                let path = streams.remove(&key).map(|s| s.path);
                out.push((
                    MessageView {
                        kind: Kind::GrpcReset,
                        id: Some(u64::from(ob.stream)),
                        method: path,
                        problem: Some(reason.clone()),
                        error: None,
                        value: json!({"reason": reason}),
                    },
                    None,
                ));
            }
        }
        for (view, raw) in out {
            let d = Decoded {
                conn: ob.conn.clone(),
                dir: ob.dir,
                view,
                raw,
            };
            if d.view.problem.is_some() || d.view.kind == Kind::Malformed {
                tracing::warn!("{}", d.line(opts.full_values));
            } else {
                tracing::info!("{}", d.line(opts.full_values));
            }
            if let Some(sink) = &sink {
                let _ = sink.send(d);
            }
        }
    }
}

fn decode_chunk(
    st: &mut StreamState,
    stream: u32,
    dir: Direction,
    chunk: &[u8],
    opts: &ObserverOptions,
    out: &mut Vec<(MessageView, Option<bytes::Bytes>)>,
    eof: bool,
) {
    let side = &mut st.sides[usize::from(dir == Direction::ToClient)];
    if side.broken {
        return;
    }
    let decoder = side
        .decoder
        .get_or_insert_with(|| MessageDecoder::new(opts.max_message));
    side.buf.extend_from_slice(chunk);
    loop {
        let next = if eof {
            decoder.decode_eof(&mut side.buf)
        } else {
            decoder.decode(&mut side.buf)
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
                out.push((
                    base(
                        Kind::GrpcMessage,
                        Some(format!("{len} bytes, over the {max}-byte decoding limit: forwarded, not decoded")),
                        json!({"index": index, "size": len}),
                    ),
                    None,
                ));
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
                out.push((base(Kind::GrpcMessage, problem, value), Some(m.payload)));
            }
            Err(e) => {
                side.broken = true;
                let rest = crate::codec::hex(&side.buf[..side.buf.len().min(64)]);
                out.push((
                    base(Kind::Malformed, Some(e.to_string()), json!({"hex": rest})),
                    None,
                ));
                side.buf.clear();
                return;
            }
        }
    }
}
