//! What the mock plugin serves besides the spec's methods: the services
//! every go-plugin plugin has, and the plumbing to answer a stream.
//!
//! * `grpc.health.v1.Health/Check`: SERVING for `""`, `"plugin"` and the
//!   spec's services, `NOT_FOUND` otherwise; `Watch` sends SERVING and
//!   holds the stream open.
//! * `plugin.GRPCController/Shutdown`: answers `Empty`, then the mock
//!   exits (as a Go plugin stops its server).
//! * `plugin.GRPCStdio/StreamStdio`: sends the spec's `stdio` lines, then
//!   holds the stream open.
//! * `plugin.GRPCBroker/StartStream`: accepts announcements (logged) and
//!   holds the stream open; the mock announces nothing itself.
//!
//! A spec entry for one of these methods replaces the built-in answer.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use h2::RecvStream;
use h2::server::SendResponse;
use prost::Message as _;
use prost_reflect::{DynamicMessage, Value};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder as _;
use tokio_util::sync::CancellationToken;

use super::event::{ConnLabel, Event, Observed};
use super::frame::{self, Framed, MessageDecoder};
use super::grpc;
use super::schema::Schemas;
use crate::message::Direction;

/// One stream being answered, with what its events need.
pub struct Answer {
    /// The connection.
    pub conn: Arc<ConnLabel>,
    /// Stream id.
    pub id: u32,
    /// Where events go (the observer logs them).
    pub events: mpsc::UnboundedSender<Observed>,
    /// The response handle.
    pub respond: SendResponse<Bytes>,
}

impl Answer {
    fn emit(&self, dir: Direction, event: Event) {
        let _ = self
            .events
            .send(Observed::now(self.conn.clone(), self.id, dir, event));
    }

    /// Reads request messages until the client ends its side (or `max`
    /// bytes of framing error). Events are emitted as they arrive.
    pub async fn read_requests(
        &self,
        body: &mut RecvStream,
        max_message: usize,
    ) -> Result<Vec<Bytes>, String> {
        let mut decoder = MessageDecoder::new(max_message);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| format!("the host reset the stream: {e}"))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            self.emit(Direction::ToServer, Event::Data(chunk.clone()));
            buf.extend_from_slice(&chunk);
            while let Some(f) = decoder.decode(&mut buf).map_err(|e| e.to_string())? {
                match f {
                    Framed::Message(m) => out.push(m.payload),
                    Framed::Oversized { len, max } => {
                        return Err(format!("a {len}-byte request exceeds the {max}-byte limit"));
                    }
                }
            }
        }
        decoder.decode_eof(&mut buf).map_err(|e| e.to_string())?;
        self.emit(Direction::ToServer, Event::End);
        Ok(out)
    }

    /// Answers with `messages` then `status`; holds the stream open until
    /// `hold` fires when given (server streams that never end on their own).
    pub async fn reply(
        mut self,
        messages: &[Bytes],
        status: u32,
        message: &str,
        hold: Option<CancellationToken>,
    ) {
        if messages.is_empty() && hold.is_none() {
            // Trailers-only response.
            let mut head = grpc::response();
            head.headers_mut()
                .extend(grpc::status_trailers(status, message));
            let shown = pairs_with_status(&head);
            if self.respond.send_response(head, true).is_ok() {
                self.emit(
                    Direction::ToClient,
                    Event::Headers {
                        headers: shown,
                        end: true,
                    },
                );
            }
            return;
        }
        let head = grpc::response();
        let shown = pairs_with_status(&head);
        let mut send = match self.respond.send_response(head, false) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("{} s{}: cannot answer: {e}", self.conn.name, self.id);
                return;
            }
        };
        self.emit(
            Direction::ToClient,
            Event::Headers {
                headers: shown,
                end: false,
            },
        );
        for m in messages {
            let framed = frame::encode(m);
            if grpc::send_data(&mut send, framed.clone(), false)
                .await
                .is_err()
            {
                return;
            }
            self.emit(Direction::ToClient, Event::Data(framed));
        }
        if let Some(hold) = hold {
            tokio::select! {
                _ = hold.cancelled() => {}
                r = std::future::poll_fn(|cx| send.poll_reset(cx)) => {
                    let why = r.map_or_else(|e| e.to_string(), |r| format!("{r:?}"));
                    self.emit(Direction::ToServer, Event::Reset(format!("the host cancelled the stream ({why})")));
                    return;
                }
            }
        }
        let trailers = grpc::status_trailers(status, message);
        let shown = grpc::header_pairs(&trailers);
        if send.send_trailers(trailers).is_ok() {
            self.emit(Direction::ToClient, Event::Trailers(shown));
        }
    }
}

fn pairs_with_status(head: &http::Response<()>) -> Vec<(String, String)> {
    let mut v = vec![(":status".to_owned(), head.status().as_u16().to_string())];
    v.extend(grpc::header_pairs(head.headers()));
    v
}

/// A built-in method's answer.
pub enum Builtin {
    /// Answer these messages with this status.
    Reply(Vec<Bytes>, u32, String),
    /// Send these messages, then hold the stream open until shutdown.
    Hold(Vec<Bytes>),
    /// Answer `Empty`, then shut down.
    Shutdown,
}

/// The built-in answer for `service/method`, if it is a built-in.
pub fn builtin(
    service: &str,
    method: &str,
    first_request: Option<&Bytes>,
    schemas: &Schemas,
    known_services: &[String],
    stdio: &[super::spec::StdioLine],
) -> Option<Builtin> {
    match (service, method) {
        ("grpc.health.v1.Health", "Check" | "Watch") => {
            let asked = first_request
                .and_then(|b| {
                    schemas
                        .message("grpc.health.v1.HealthCheckRequest")
                        .and_then(|d| super::schema::decode_dynamic(&d, b).ok())
                })
                .and_then(|m| {
                    m.get_field_by_name("service")
                        .and_then(|v| v.as_str().map(str::to_owned))
                })
                .unwrap_or_default();
            let serving = asked.is_empty() || asked == "plugin" || known_services.contains(&asked);
            if !serving && method == "Check" {
                return Some(Builtin::Reply(
                    vec![],
                    grpc::NOT_FOUND,
                    "unknown service".into(),
                ));
            }
            let desc = schemas.message("grpc.health.v1.HealthCheckResponse")?;
            let mut resp = DynamicMessage::new(desc);
            // SERVING = 1, SERVICE_UNKNOWN = 3 (for Watch).
            resp.set_field_by_name("status", Value::EnumNumber(if serving { 1 } else { 3 }));
            let bytes = Bytes::from(resp.encode_to_vec());
            Some(if method == "Check" {
                Builtin::Reply(vec![bytes], 0, String::new())
            } else {
                Builtin::Hold(vec![bytes])
            })
        }
        ("plugin.GRPCController", "Shutdown") => Some(Builtin::Shutdown),
        ("plugin.GRPCStdio", "StreamStdio") => {
            let desc = schemas.message("plugin.StdioData")?;
            let lines = stdio
                .iter()
                .map(|l| {
                    let mut m = DynamicMessage::new(desc.clone());
                    let channel = if l.channel.eq_ignore_ascii_case("stderr") {
                        2
                    } else {
                        1
                    };
                    m.set_field_by_name("channel", Value::EnumNumber(channel));
                    m.set_field_by_name("data", Value::Bytes(Bytes::from(l.data.clone())));
                    Bytes::from(m.encode_to_vec())
                })
                .collect();
            Some(Builtin::Hold(lines))
        }
        _ => None,
    }
}
