//! Forwarding one gRPC connection at the HTTP/2 level.
//!
//! plugtap terminates HTTP/2 on both sides (an `h2` server toward the
//! peer that connected, an `h2` client toward the real server) and
//! forwards each stream: request headers, DATA chunks as they arrive (not
//! re-framed), trailers, end of stream and resets, both ways, with flow
//! control. Every step is also handed to the observer as an
//! [`Observed`] event, after it was forwarded. Streams of
//! `plugin.GRPCBroker/StartStream` are the exception: their messages are
//! forwarded whole, after [`super::broker`] rewrote listener addresses.

use std::future::poll_fn;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use http::{Request, Response};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::broker::{Broker, BrokerMode, forward_broker_messages};
use super::event::{ConnLabel, Event, Observed};
use super::frame::MessageDecoder;
use super::grpc;
use crate::message::Direction;
use crate::net::Stream;

/// The broker stream's path.
pub const BROKER_PATH: &str = "/plugin.GRPCBroker/StartStream";

/// The path of the call a host stops a plugin with.
pub const SHUTDOWN_PATH: &str = "/plugin.GRPCController/Shutdown";

/// What every forwarded connection shares.
#[derive(Debug)]
pub struct ForwardCtx {
    /// Where observed events go.
    pub events: mpsc::UnboundedSender<Observed>,
    /// Rewrites broker announcements; `None` forwards them unchanged.
    pub broker: Option<Broker>,
    /// Stops accepting and forwarding.
    pub cancel: CancellationToken,
    /// Told when the host calls `GRPCController/Shutdown`.
    pub shutdown_called: Arc<tokio::sync::Notify>,
}

impl ForwardCtx {
    /// Hands an event to the observer.
    pub fn emit(&self, conn: &Arc<ConnLabel>, stream: u32, dir: Direction, event: Event) {
        let _ = self
            .events
            .send(Observed::now(conn.clone(), stream, dir, event));
    }
}

/// Forwards one accepted connection to `label.upstream` until either side
/// closes it or `ctx.cancel` fires.
pub async fn connection(downstream: Stream, label: Arc<ConnLabel>, ctx: Arc<ForwardCtx>) {
    ctx.emit(&label, 0, Direction::ToServer, Event::ConnOpen);
    let error = forward_connection(downstream, &label, &ctx).await.err();
    if let Some(e) = &error {
        tracing::error!("{}: {e}", label.name);
    }
    ctx.emit(&label, 0, Direction::ToServer, Event::ConnClose(error));
}

async fn forward_connection(
    downstream: Stream,
    label: &Arc<ConnLabel>,
    ctx: &Arc<ForwardCtx>,
) -> Result<(), String> {
    let up = label.upstream.connect().await.map_err(|e| {
        format!(
            "cannot connect to {}: {e}; closing the {}'s connection",
            label.upstream, label.client
        )
    })?;
    let mut server = grpc::server(downstream).await.map_err(|e| {
        format!(
            "HTTP/2 handshake with the {} failed: {e} (is it speaking h2c gRPC?)",
            label.client
        )
    })?;
    let send = grpc::client(up).await.map_err(|e| {
        format!(
            "HTTP/2 handshake with the {} at {} failed: {e}",
            label.server, label.upstream
        )
    })?;
    tracing::info!(
        "{}: {} connected; forwarding to {}",
        label.name,
        label.client,
        label.upstream
    );
    let mut failed = None;
    // Stream tasks, so the connection's close is reported after them.
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let next = tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            next = server.accept() => next,
        };
        match next {
            Some(Ok((req, respond))) => {
                let (send, label, ctx) = (send.clone(), label.clone(), ctx.clone());
                tasks.spawn(async move { stream(req, respond, send, label, ctx).await });
            }
            Some(Err(e)) => {
                failed = Some(format!("connection from the {} failed: {e}", label.client));
                break;
            }
            None => break,
        }
    }
    server.graceful_shutdown();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        poll_fn(|cx| server.poll_closed(cx)),
    )
    .await;
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(2), all_done)
        .await
        .is_err()
    {
        tasks.detach_all();
    }
    tracing::info!("{}: closed", label.name);
    failed.map_or(Ok(()), Err)
}

async fn stream(
    req: Request<RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    send: h2::client::SendRequest<Bytes>,
    label: Arc<ConnLabel>,
    ctx: Arc<ForwardCtx>,
) {
    let id = respond.stream_id().as_u32();
    let (parts, req_body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let mut shown = vec![
        (":method".to_owned(), parts.method.to_string()),
        (":path".to_owned(), path.clone()),
    ];
    if let Some(a) = parts.uri.authority() {
        shown.push((":authority".into(), a.to_string()));
    }
    shown.extend(grpc::header_pairs(&parts.headers));
    ctx.emit(
        &label,
        id,
        Direction::ToServer,
        Event::Open {
            path: path.clone(),
            headers: shown,
        },
    );

    let uri = match (parts.uri.scheme(), parts.uri.authority()) {
        (Some(_), Some(_)) => parts.uri.clone(),
        _ => format!(
            "http://unused{}",
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        )
        .parse()
        .unwrap_or_else(|_| parts.uri.clone()),
    };
    let mut up_req = Request::new(());
    *up_req.method_mut() = parts.method.clone();
    *up_req.uri_mut() = uri;
    *up_req.version_mut() = http::Version::HTTP_2;
    *up_req.headers_mut() = parts.headers.clone();
    let end = req_body.is_end_stream();
    let sent = match send.ready().await {
        Ok(mut s) => s.send_request(up_req, end),
        Err(e) => Err(e),
    };
    let (resp_fut, up_body) = match sent {
        Ok(x) => x,
        Err(e) => {
            let msg = format!(
                "plugtap could not forward the call to the {}: {e}",
                label.server
            );
            tracing::warn!("{} s{id}: {msg}", label.name);
            ctx.emit(&label, id, Direction::ToClient, Event::Reset(msg.clone()));
            let trailers_only = Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .header("grpc-status", grpc::UNAVAILABLE.to_string())
                .header("grpc-message", grpc::percent_encode(&msg))
                .body(())
                .expect("static parts");
            let _ = respond.send_response(trailers_only, true);
            return;
        }
    };
    let broker = path == BROKER_PATH;
    if path == SHUTDOWN_PATH {
        ctx.shutdown_called.notify_one();
    }
    let req_task = if end {
        None
    } else {
        let (label, ctx) = (label.clone(), ctx.clone());
        Some(tokio::spawn(async move {
            pump(
                req_body,
                up_body,
                &label,
                &ctx,
                id,
                Direction::ToServer,
                broker,
            )
            .await;
        }))
    };
    let resp = tokio::select! {
        r = resp_fut => r,
        reason = poll_fn(|cx| respond.poll_reset(cx)) => {
            let why = reason.map_or_else(|e| e.to_string(), |r| format!("{r:?}"));
            ctx.emit(&label, id, Direction::ToServer, Event::Reset(format!("the {} reset the stream ({why})", label.client)));
            if let Some(t) = req_task { t.abort(); }
            return;
        }
    };
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            let reason = e.reason().unwrap_or(h2::Reason::INTERNAL_ERROR);
            ctx.emit(
                &label,
                id,
                Direction::ToClient,
                Event::Reset(format!("the {} failed the stream: {e}", label.server)),
            );
            respond.send_reset(reason);
            if let Some(t) = req_task {
                t.abort();
            }
            return;
        }
    };
    let (rparts, rbody) = resp.into_parts();
    let rend = rbody.is_end_stream();
    let mut shown = vec![(":status".to_owned(), rparts.status.as_u16().to_string())];
    shown.extend(grpc::header_pairs(&rparts.headers));
    let down = respond.send_response(Response::from_parts(rparts, ()), rend);
    ctx.emit(
        &label,
        id,
        Direction::ToClient,
        Event::Headers {
            headers: shown,
            end: rend,
        },
    );
    match down {
        Ok(down) if !rend => pump(rbody, down, &label, &ctx, id, Direction::ToClient, broker).await,
        Ok(_) => {}
        Err(e) => tracing::debug!("{} s{id}: cannot send the response head: {e}", label.name),
    }
    if let Some(t) = req_task {
        // The request side ends on its own (or was reset); do not leave it
        // running once the call is over.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), t).await;
    }
}

/// Copies one direction of a stream: DATA, then trailers or end of stream.
async fn pump(
    mut recv: RecvStream,
    mut send: SendStream<Bytes>,
    label: &Arc<ConnLabel>,
    ctx: &Arc<ForwardCtx>,
    id: u32,
    dir: Direction,
    broker: bool,
) {
    let (from, to) = match dir {
        Direction::ToServer => (label.client, label.server),
        Direction::ToClient => (label.server, label.client),
    };
    let mut framing = broker.then(|| {
        (
            MessageDecoder::new(super::broker::BROKER_MAX),
            BytesMut::new(),
        )
    });
    loop {
        let next = tokio::select! {
            d = recv.data() => d,
            r = poll_fn(|cx| send.poll_reset(cx)) => {
                // gRPC servers send RST_STREAM(NO_ERROR) after their
                // trailers when the client has not finished sending: the
                // call is over, not failed.
                if !matches!(r, Ok(h2::Reason::NO_ERROR)) {
                    let why = r.map_or_else(|e| e.to_string(), |r| format!("{r:?}"));
                    ctx.emit(label, id, dir.reverse(), Event::Reset(format!("the {to} reset the stream ({why})")));
                }
                return;
            }
        };
        match next {
            Some(Ok(chunk)) => {
                let len = chunk.len();
                let ok = match &mut framing {
                    None => grpc::send_data(&mut send, chunk.clone(), false)
                        .await
                        .is_ok(),
                    Some((decoder, buf)) => {
                        buf.extend_from_slice(&chunk);
                        match forward_broker_messages(decoder, buf, &mut send, label, ctx, dir)
                            .await
                        {
                            BrokerMode::Framed => true,
                            BrokerMode::Raw => {
                                framing = None;
                                true
                            }
                            BrokerMode::Gone => false,
                        }
                    }
                };
                ctx.emit(label, id, dir, Event::Data(chunk));
                let _ = recv.flow_control().release_capacity(len);
                if !ok {
                    tracing::debug!("{} s{id}: the {to} no longer takes data", label.name);
                    return;
                }
            }
            Some(Err(e)) => {
                let reason = e.reason().unwrap_or(h2::Reason::CANCEL);
                ctx.emit(
                    label,
                    id,
                    dir,
                    Event::Reset(format!("the {from} reset the stream: {e}")),
                );
                send.send_reset(reason);
                return;
            }
            None => break,
        }
    }
    if let Some((_, buf)) = &mut framing
        && !buf.is_empty()
    {
        // Bytes that never formed a message go on as they are.
        let _ = grpc::send_data(&mut send, buf.split().freeze(), false).await;
    }
    match recv.trailers().await {
        Ok(Some(t)) => {
            let pairs = grpc::header_pairs(&t);
            let _ = send.send_trailers(t);
            ctx.emit(label, id, dir, Event::Trailers(pairs));
        }
        Ok(None) => {
            let _ = send.send_data(Bytes::new(), true);
            ctx.emit(label, id, dir, Event::End);
        }
        Err(e) => {
            let reason = e.reason().unwrap_or(h2::Reason::CANCEL);
            send.send_reset(reason);
            ctx.emit(
                label,
                id,
                dir,
                Event::Reset(format!("the {from} reset the stream: {e}")),
            );
        }
    }
}
