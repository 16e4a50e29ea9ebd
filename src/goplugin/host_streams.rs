//! The long-lived streams a go-plugin host opens right after connecting:
//! `GRPCBroker/StartStream` (the plugin's announcements are kept so calls
//! can be made on brokered connections) and `GRPCStdio/StreamStdio` (what
//! the plugin writes there is logged). Both are optional for plugins: the
//! host ignores their errors, and says so for stdio.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use tokio_util::codec::Decoder as _;

use super::frame::{Framed, MessageDecoder};
use super::grpc;
use super::schema::Schemas;

/// How long a broker dial waits for the announcement (go-plugin: 5 s).
pub const BROKER_WAIT: Duration = Duration::from_secs(5);

/// Broker announcements received from the plugin, by service id.
#[derive(Debug, Default)]
pub struct Announced {
    addrs: Mutex<HashMap<u64, crate::net::Address>>,
    changed: tokio::sync::Notify,
}

/// Opens `GRPCBroker/StartStream` and leaves it open; the returned handle
/// ends it. Announcements from the plugin are noted for [`dial_broker`].
/// Errors are ignored, as the host ignores them.
pub async fn open_broker(
    send: &mut SendRequest<Bytes>,
    announced: Arc<Announced>,
    max: usize,
) -> Option<h2::SendStream<Bytes>> {
    let ready = send.clone().ready().await.ok()?;
    *send = ready;
    let (resp, body) = send
        .send_request(grpc::request(super::forward::BROKER_PATH), false)
        .ok()?;
    tokio::spawn(async move {
        let Ok(r) = resp.await else { return };
        let mut b = r.into_body();
        let mut dec = MessageDecoder::new(max);
        let mut buf = BytesMut::new();
        while let Some(Ok(chunk)) = b.data().await {
            let _ = b.flow_control().release_capacity(chunk.len());
            buf.extend_from_slice(&chunk);
            while let Ok(Some(Framed::Message(m))) = dec.decode(&mut buf) {
                let Some(info) = super::broker::parse(&m.payload) else {
                    continue;
                };
                let addr = match info.network.as_str() {
                    "unix" => crate::net::Address::Unix(info.address.clone().into()),
                    "tcp" => crate::net::Address::Tcp(info.address.clone()),
                    _ => continue,
                };
                tracing::info!(
                    "the plugin announced broker service {} at {addr}",
                    info.service_id
                );
                announced
                    .addrs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(info.service_id, addr);
                announced.changed.notify_waiters();
            }
        }
    });
    Some(body)
}

/// Connects to the brokered server announced with `id`, once.
pub async fn dial_broker<'a>(
    id: u64,
    announced: &Announced,
    conns: &'a mut HashMap<u64, SendRequest<Bytes>>,
) -> std::result::Result<(&'a mut SendRequest<Bytes>, crate::net::Address), String> {
    let deadline = tokio::time::Instant::now() + BROKER_WAIT;
    let addr = loop {
        let wait = announced.changed.notified();
        if let Some(a) = announced
            .addrs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
        {
            break a;
        }
        if tokio::time::timeout_at(deadline, wait).await.is_err() {
            return Err(format!(
                "broker service {id}: timeout waiting for connection info"
            ));
        }
    };
    let conn = match conns.entry(id) {
        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => {
            let io = addr
                .connect()
                .await
                .map_err(|e| format!("broker service {id}: cannot connect to {addr}: {e}"))?;
            let s = grpc::client(io)
                .await
                .map_err(|e| format!("broker service {id}: HTTP/2 with {addr}: {e}"))?;
            v.insert(s)
        }
    };
    Ok((conn, addr))
}

/// Calls `GRPCStdio/StreamStdio` and logs what arrives on it.
pub async fn start_stdio(send: &mut SendRequest<Bytes>, schemas: &Schemas, max: usize) {
    let Ok(ready) = send.clone().ready().await else {
        return;
    };
    *send = ready;
    let Ok((resp, mut body)) =
        send.send_request(grpc::request("/plugin.GRPCStdio/StreamStdio"), false)
    else {
        return;
    };
    let _ = grpc::send_data(&mut body, super::frame::encode(&[]), true).await;
    let desc = schemas.message("plugin.StdioData");
    tokio::spawn(async move {
        let Ok(r) = resp.await else { return };
        let (head, mut b) = r.into_parts();
        if let Some((code, _)) = grpc::status_of(&head.headers)
            .filter(|(c, _)| *c == grpc::UNIMPLEMENTED || *c == grpc::UNAVAILABLE)
        {
            let _ = code;
            tracing::warn!("stdio service not available, stdout/stderr syncing unavailable");
            return;
        }
        let mut dec = MessageDecoder::new(max);
        let mut buf = BytesMut::new();
        while let Some(Ok(chunk)) = b.data().await {
            let _ = b.flow_control().release_capacity(chunk.len());
            buf.extend_from_slice(&chunk);
            while let Ok(Some(Framed::Message(m))) = dec.decode(&mut buf) {
                let shown = desc
                    .as_ref()
                    .and_then(|d| super::schema::decode_dynamic(d, &m.payload).ok());
                if let Some(msg) = shown {
                    let ch = msg
                        .get_field_by_name("channel")
                        .and_then(|v| v.as_enum_number())
                        .unwrap_or(0);
                    let data = msg
                        .get_field_by_name("data")
                        .and_then(|v| {
                            v.as_bytes()
                                .map(|b| String::from_utf8_lossy(b).into_owned())
                        })
                        .unwrap_or_default();
                    let name = if ch == 2 { "stderr" } else { "stdout" };
                    tracing::info!("[plugin {name} via GRPCStdio] {}", data.trim_end());
                }
            }
        }
        if let Ok(Some(t)) = b.trailers().await
            && let Some((code, _)) = grpc::status_of(&t)
            && (code == grpc::UNIMPLEMENTED || code == grpc::UNAVAILABLE)
        {
            tracing::warn!("stdio service not available, stdout/stderr syncing unavailable");
        }
    });
}
