//! Rewriting `plugin.GRPCBroker` announcements so brokered connections
//! pass through plugtap too.
//!
//! Either side of a go-plugin connection can expose an extra gRPC server
//! (callbacks) by sending `ConnInfo{service_id, network, address}` on the
//! `StartStream` stream; the other side dials that address. For each
//! announcement plugtap opens a listener of its own (a Unix socket in its
//! private directory, or TCP on 127.0.0.1), forwards connections made to
//! it to the announced address with [`super::forward`], and passes the
//! message on with its own address in place of the original. Every other
//! field (the service id, multiplexing knocks, unknown fields) is kept as
//! it was.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use h2::SendStream;
use tokio_util::codec::Decoder as _;

use super::event::{BrokerNote, ConnLabel, Event};
use super::forward::{self, ForwardCtx};
use super::frame::{self, Framed, MessageDecoder};
use super::grpc;
use super::wire::put_varint;
use crate::message::Direction;
use crate::net::{Address, ConnId, Listener};

/// Opens listeners for announced broker services.
#[derive(Debug)]
pub struct Broker {
    dir: PathBuf,
    next: AtomicU64,
}

/// The fields of a `ConnInfo` that matter here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnInfo {
    /// Broker service id.
    pub service_id: u64,
    /// `unix` or `tcp`.
    pub network: String,
    /// Where the announcing side listens.
    pub address: String,
    /// A multiplexing knock rides along.
    pub knock: bool,
}

impl Broker {
    /// Sockets for brokered listeners go in `dir` (short, private).
    pub fn new(dir: PathBuf) -> Broker {
        Broker {
            dir,
            next: AtomicU64::new(1),
        }
    }

    /// Rewrites one `ConnInfo` travelling `dir` on `conn`; anything that is
    /// not an announcement of a listener is returned unchanged.
    pub fn rewrite(
        &self,
        payload: &Bytes,
        dir: Direction,
        conn: &Arc<ConnLabel>,
        ctx: &Arc<ForwardCtx>,
    ) -> Bytes {
        let Some(info) = parse(payload) else {
            tracing::warn!(
                "{}: broker message is not a ConnInfo; forwarded unchanged",
                conn.name
            );
            return payload.clone();
        };
        let announcer = match dir {
            Direction::ToServer => conn.client,
            Direction::ToClient => conn.server,
        };
        let other = if announcer == conn.client {
            conn.server
        } else {
            conn.client
        };
        let note = |told: Option<String>, why: Option<&str>| {
            let announced = format!("{}:{}", info.network, info.address);
            let note = BrokerNote {
                service_id: info.service_id,
                announcer,
                announced,
                told,
                note: why.map(str::to_owned),
            };
            ctx.emit(conn, 0, dir, Event::Broker(note));
        };
        if info.knock || info.address.is_empty() {
            note(
                None,
                Some("a multiplexing knock or no address: forwarded unchanged"),
            );
            tracing::info!(
                "{}: broker message for service {} from the {announcer} (knock or no address); forwarded unchanged",
                conn.name,
                info.service_id
            );
            return payload.clone();
        }
        let target = match info.network.as_str() {
            "unix" => Address::Unix(info.address.clone().into()),
            "tcp" => Address::Tcp(info.address.clone()),
            other_net => {
                note(
                    None,
                    Some(
                        "a network plugtap cannot listen on: forwarded unchanged, that connection is not seen",
                    ),
                );
                tracing::warn!(
                    "{}: broker service {} announced on network {other_net:?}; plugtap cannot listen there, forwarded unchanged (that connection will not be seen)",
                    conn.name,
                    info.service_id
                );
                return payload.clone();
            }
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let listener = match &target {
            Address::Unix(_) => {
                Listener::unix(&self.dir.join(format!("broker{n}.sock"))).map_err(|e| e.to_string())
            }
            Address::Tcp(_) => Listener::tcp("127.0.0.1:0").map_err(|e| e.to_string()),
        };
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                note(
                    None,
                    Some(&format!(
                        "plugtap cannot listen ({e}): forwarded unchanged, that connection is not seen"
                    )),
                );
                tracing::error!(
                    "{}: cannot listen for broker service {}: {e}; announcement forwarded unchanged (that connection will not be seen)",
                    conn.name,
                    info.service_id
                );
                return payload.clone();
            }
        };
        let mine = listener.address();
        tracing::info!(
            "{}: the {announcer} announced broker service {} at {target}; the {other} is told {mine} instead",
            conn.name,
            info.service_id
        );
        note(Some(mine.to_string()), None);
        let rewritten = with_address(payload, mine.network(), &mine.addr_text());
        let (ctx, id) = (ctx.clone(), info.service_id);
        let (client, server) = (other, announcer);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = ctx.cancel.cancelled() => break,
                    a = listener.accept() => a,
                };
                match accepted {
                    Ok(stream) => {
                        let cid = ConnId::next();
                        let label = Arc::new(ConnLabel {
                            id: cid,
                            name: format!("{cid} broker#{id}"),
                            client,
                            server,
                            upstream: target.clone(),
                        });
                        tokio::spawn(forward::connection(stream, label, ctx.clone()));
                    }
                    Err(e) => {
                        tracing::warn!("broker#{id}: accept failed: {e}");
                        break;
                    }
                }
            }
        });
        rewritten
    }
}

/// How a broker stream is forwarded after a chunk.
pub enum BrokerMode {
    /// Message by message, rewritten.
    Framed,
    /// Unchanged from now on (not gRPC framing, or a message too large).
    Raw,
    /// The receiving side is gone.
    Gone,
}

/// Largest broker message plugtap rewrites (ConnInfo is a few dozen bytes).
pub const BROKER_MAX: usize = 1 << 20;

/// Forwards every whole broker message in `buf`, rewritten. Bytes that do
/// not look like gRPC framing switch the stream to unchanged forwarding
/// without losing any.
pub async fn forward_broker_messages(
    decoder: &mut MessageDecoder,
    buf: &mut BytesMut,
    send: &mut SendStream<Bytes>,
    label: &Arc<ConnLabel>,
    ctx: &Arc<ForwardCtx>,
    dir: Direction,
) -> BrokerMode {
    loop {
        if buf.len() >= frame::PREFIX {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf[0] > 1 || len > BROKER_MAX {
                tracing::warn!(
                    "{}: the broker stream carries something other than small gRPC messages (prefix {}); forwarding the rest of it unchanged, without rewriting",
                    label.name,
                    crate::codec::hex(&buf[..frame::PREFIX])
                );
                let ok = grpc::send_data(send, buf.split().freeze(), false)
                    .await
                    .is_ok();
                return if ok {
                    BrokerMode::Raw
                } else {
                    BrokerMode::Gone
                };
            }
        }
        match decoder.decode(buf) {
            Ok(None) => return BrokerMode::Framed,
            Ok(Some(Framed::Message(m))) => {
                let out = match &ctx.broker {
                    Some(b) => b.rewrite(&m.payload, dir, label, ctx),
                    None => m.payload.clone(),
                };
                if grpc::send_data(send, frame::encode(&out), false)
                    .await
                    .is_err()
                {
                    return BrokerMode::Gone;
                }
            }
            // Both are excluded by the check above.
            Ok(Some(Framed::Oversized { .. })) | Err(_) => return BrokerMode::Raw,
        }
    }
}

/// Reads a `ConnInfo` by field number; `None` when the bytes are not one.
pub fn parse(b: &[u8]) -> Option<ConnInfo> {
    let mut info = ConnInfo::default();
    for (n, wire, value) in fields(b)? {
        match (n, wire) {
            (1, 0) => info.service_id = varint_of(value)?,
            (2, 2) => info.network = String::from_utf8(value.to_vec()).ok()?,
            (3, 2) => info.address = String::from_utf8(value.to_vec()).ok()?,
            (4, 2) => {
                // Knock { bool knock = 1; ... }
                info.knock = fields(value)?
                    .iter()
                    .any(|(n, w, v)| *n == 1 && *w == 0 && varint_of(v) == Some(1));
            }
            _ => {}
        }
    }
    Some(info)
}

/// The same message with fields 2 and 3 replaced, other fields in place.
pub fn with_address(b: &[u8], network: &str, address: &str) -> Bytes {
    let Some(list) = spans(b) else {
        return Bytes::copy_from_slice(b);
    };
    let mut out = Vec::with_capacity(b.len() + address.len());
    let mut seen = (false, false);
    for (n, wire, _, whole) in &list {
        let replace = match (n, wire) {
            (2, 2) => Some(network),
            (3, 2) => Some(address),
            _ => None,
        };
        match replace {
            Some(text) => {
                put_varint(&mut out, (n << 3) | 2);
                put_varint(&mut out, text.len() as u64);
                out.extend_from_slice(text.as_bytes());
                if *n == 2 {
                    seen.0 = true
                } else {
                    seen.1 = true
                }
            }
            None => out.extend_from_slice(whole),
        }
    }
    for (missing, n, text) in [(!seen.0, 2u64, network), (!seen.1, 3, address)] {
        if missing {
            put_varint(&mut out, (n << 3) | 2);
            put_varint(&mut out, text.len() as u64);
            out.extend_from_slice(text.as_bytes());
        }
    }
    Bytes::from(out)
}

/// Splits a message into (field number, wire type, value bytes). For
/// VARINT the value is the varint's bytes; for LEN the payload.
fn fields(b: &[u8]) -> Option<Vec<(u64, u64, &[u8])>> {
    Some(
        spans(b)?
            .into_iter()
            .map(|(n, w, v, _)| (n, w, v))
            .collect(),
    )
}

/// Like [`fields`], with each field's whole encoding (key included).
#[allow(clippy::type_complexity)]
fn spans(b: &[u8]) -> Option<Vec<(u64, u64, &[u8], &[u8])>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let field_start = pos;
        let key = read_varint(b, &mut pos)?;
        let (n, wire) = (key >> 3, key & 7);
        let start = pos;
        let value = match wire {
            0 => {
                read_varint(b, &mut pos)?;
                &b[start..pos]
            }
            1 => {
                pos = pos.checked_add(8).filter(|p| *p <= b.len())?;
                &b[start..pos]
            }
            5 => {
                pos = pos.checked_add(4).filter(|p| *p <= b.len())?;
                &b[start..pos]
            }
            2 => {
                let len = usize::try_from(read_varint(b, &mut pos)?).ok()?;
                let s = pos;
                pos = pos.checked_add(len).filter(|p| *p <= b.len())?;
                &b[s..pos]
            }
            _ => return None,
        };
        out.push((n, wire, value, &b[field_start..pos]));
    }
    Some(out)
}

fn read_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn varint_of(b: &[u8]) -> Option<u64> {
    read_varint(b, &mut 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_the_address() {
        // service_id 7, network "unix", address "/tmp/plugin1", unknown field 9 = 1
        let mut b = vec![0x08, 0x07, 0x12, 0x04];
        b.extend_from_slice(b"unix");
        b.extend_from_slice(&[0x1a, 12]);
        b.extend_from_slice(b"/tmp/plugin1");
        b.extend_from_slice(&[0x48, 0x01]);
        let info = parse(&b).unwrap();
        assert_eq!(info.service_id, 7);
        assert_eq!(info.address, "/tmp/plugin1");
        let out = with_address(&b, "unix", "/tmp/pt/broker1.sock");
        let again = parse(&out).unwrap();
        assert_eq!(again.service_id, 7);
        assert_eq!(again.address, "/tmp/pt/broker1.sock");
        assert!(out.ends_with(&[0x48, 0x01]));
        assert!(parse(&[0x0a, 0x05, 1]).is_none());
    }
}
