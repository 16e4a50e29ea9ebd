//! What the go-plugin proxy observes on a gRPC connection, before and
//! after decoding.
//!
//! Forwarding tasks emit [`Observed`] events (a stream opened with its
//! `:path`, a DATA chunk, response headers, trailers, a reset) in the
//! order they forwarded them; the observer turns them into [`Decoded`]
//! events, each with a protocol-neutral [`MessageView`]:
//!
//! | event | `kind` | `id` | `method` | `value` |
//! |-------|--------|------|----------|---------|
//! | stream opened | `grpc_open` | stream id | `/pkg.Service/Method` | `{"headers": {…}}` |
//! | one length-prefixed message | `grpc_message` | stream id | path | `{"index", "size", "type", "json"}` or `{"index", "size", "fields"}` (schema-less) |
//! | response headers | `grpc_headers` | stream id | path | `{"headers": {…}}` |
//! | trailers (status) | `grpc_trailers` | stream id | path | `{"status", "code", "message", "trailers"}`, `error` set when not OK |
//! | reset / undecodable | `grpc_reset` / `malformed` | stream id | path | details, `problem` set |
//!
//! Connection events (`ConnOpen`, `ConnClose`) and broker rewrites travel
//! the same channel, so a recording ([`super::recording`]) sees them in
//! forwarding order; each `Decoded` is stored with its raw bytes.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Map, Value as Json, json};

use super::grpc::status_name;
use crate::message::{Direction, Kind, MessageView};
use crate::net::{Address, ConnId};

/// One proxied HTTP/2 connection, as logs name it.
#[derive(Debug, Clone)]
pub struct ConnLabel {
    /// Unique id.
    pub id: ConnId,
    /// `c1`, or `c3 broker#1` for a brokered connection.
    pub name: String,
    /// Who opened it (the gRPC client): `host` or `plugin`.
    pub client: &'static str,
    /// Who serves it: `plugin` or `host`.
    pub server: &'static str,
    /// Where the proxy forwards it.
    pub upstream: Address,
}

impl ConnLabel {
    /// Arrow for a direction, e.g. `host→plugin`.
    pub fn arrow(&self, dir: Direction) -> String {
        match dir {
            Direction::ToServer => format!("{}→{}", self.client, self.server),
            Direction::ToClient => format!("{}→{}", self.server, self.client),
        }
    }
}

/// Something the forwarding side saw, in forwarding order.
#[derive(Debug, Clone)]
pub enum Event {
    /// A new stream with its request headers.
    Open {
        /// `:path`.
        path: String,
        /// Request headers (pseudo-headers first).
        headers: Vec<(String, String)>,
    },
    /// A chunk of DATA, exactly as received.
    Data(Bytes),
    /// Response headers; `end` when they also end the stream (trailers-only).
    Headers {
        /// The headers.
        headers: Vec<(String, String)>,
        /// Also the end of the stream.
        end: bool,
    },
    /// Trailers ending the stream.
    Trailers(Vec<(String, String)>),
    /// End of stream without trailers (a client finishing its request).
    End,
    /// The stream was reset or failed.
    Reset(String),
    /// The connection was accepted (stream 0).
    ConnOpen,
    /// The connection ended (stream 0); with why, when it failed.
    ConnClose(Option<String>),
    /// A broker announcement was rewritten (or could not be).
    Broker(BrokerNote),
}

/// What plugtap did with one `plugin.GRPCBroker` announcement.
#[derive(Debug, Clone)]
pub struct BrokerNote {
    /// Broker service id.
    pub service_id: u64,
    /// `host` or `plugin`: who announced it.
    pub announcer: &'static str,
    /// The announced address (`unix:/path`, `tcp:host:port`).
    pub announced: String,
    /// What the other side was told instead; `None` when forwarded unchanged.
    pub told: Option<String>,
    /// Why it was left unchanged.
    pub note: Option<String>,
}

/// An [`Event`] with where it happened.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The connection.
    pub conn: Arc<ConnLabel>,
    /// HTTP/2 stream id.
    pub stream: u32,
    /// Which way it went.
    pub dir: Direction,
    /// What happened.
    pub event: Event,
    /// When it was forwarded.
    pub at: Instant,
}

impl Observed {
    /// An event that happens now.
    pub fn now(conn: Arc<ConnLabel>, stream: u32, dir: Direction, event: Event) -> Observed {
        Observed {
            conn,
            stream,
            dir,
            event,
            at: Instant::now(),
        }
    }
}

/// A decoded event.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The connection.
    pub conn: Arc<ConnLabel>,
    /// Which way it went.
    pub dir: Direction,
    /// The protocol-neutral view.
    pub view: MessageView,
    /// The message bytes, for messages (without the 5-byte prefix).
    pub raw: Option<Bytes>,
    /// Where it starts among the stream's DATA bytes in its direction
    /// (for events other than messages: the DATA bytes seen so far).
    pub offset: u64,
    /// When it was forwarded.
    pub at: Instant,
}

impl Decoded {
    /// One log line: `c1 s1 host→plugin message #0 /proto.KV/Get proto.GetRequest {"key":"a"}`.
    pub fn line(&self, full: bool) -> String {
        format!(
            "{} s{} {} {}",
            self.conn.name,
            self.view.id.unwrap_or_default(),
            self.conn.arrow(self.dir),
            view_text(&self.view, full)
        )
    }
}

/// A decoded event without its connection and direction:
/// `message #0 /proto.KV/Get proto.GetRequest {"key":"a"}` (logs and
/// `plugtap show`).
pub fn view_text(v: &MessageView, full: bool) -> String {
    let max = if full { usize::MAX } else { 200 };
    let mut s = v.kind.label().to_owned();
    let m = v.method.as_deref().unwrap_or("");
    match v.kind {
        Kind::GrpcOpen => s.push_str(&format!(" {m}")),
        Kind::GrpcMessage => {
            let index = v.value["index"].as_u64().unwrap_or_default();
            s.push_str(&format!(" #{index} {m}"));
            if let Some(t) = v.value.get("type").and_then(Json::as_str) {
                s.push_str(&format!(
                    " {t} {}",
                    crate::message::shorten(&v.value["json"].to_string(), max)
                ));
            } else if let Some(f) = v.value.get("fields") {
                s.push_str(&format!(
                    " (no schema) {}",
                    crate::message::shorten(&f.to_string(), max)
                ));
            } else if let Some(n) = v.value.get("note").and_then(Json::as_str) {
                s.push_str(&format!(" ({n})"));
            }
        }
        Kind::GrpcHeaders => s.push_str(&format!(" {m} {}", v.value["headers"])),
        Kind::GrpcTrailers => match &v.error {
            Some(e) => s.push_str(&format!(" {m} {e}")),
            None => s.push_str(&format!(
                " {m} {}",
                v.value["status"].as_str().unwrap_or("?")
            )),
        },
        _ => s.push_str(&format!(" {m}")),
    }
    if let Some(p) = &v.problem {
        s.push_str(&format!(" ({p})"));
    }
    s
}

/// Headers as a JSON object (repeated names become arrays).
pub fn headers_json(headers: &[(String, String)]) -> Json {
    let mut m = Map::new();
    for (k, v) in headers {
        match m.get_mut(k) {
            Some(Json::Array(a)) => a.push(json!(v)),
            Some(prev) => {
                let first = prev.take();
                *prev = json!([first, v]);
            }
            None => {
                m.insert(k.clone(), json!(v));
            }
        }
    }
    Json::Object(m)
}

/// The view of trailers (or trailers-only headers).
pub fn trailers_view(
    stream: u32,
    path: Option<String>,
    headers: &[(String, String)],
) -> MessageView {
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let code = find("grpc-status").and_then(|c| c.trim().parse::<u32>().ok());
    let message = find("grpc-message")
        .map(|m| super::grpc::percent_decode(&m))
        .unwrap_or_default();
    let status = code.map_or_else(|| "no grpc-status".to_owned(), status_name);
    let error = match code {
        Some(0) => None,
        Some(_) => Some(format!("{status}: {message}")),
        None => Some("the stream ended without a grpc-status".to_owned()),
    };
    MessageView {
        kind: Kind::GrpcTrailers,
        id: Some(u64::from(stream)),
        method: path,
        problem: None,
        error,
        value: json!({"status": status, "code": code, "message": message, "trailers": headers_json(headers)}),
    }
}
