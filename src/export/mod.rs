//! `plugtap export`: a recording becomes a spec (a server mock or a
//! scripted Kong session) in the format users write by hand.
//!
//! The core here is protocol-neutral. It streams the recording through
//! [`crate::record::Reader`] once, hands each `frame` line to the
//! recording protocol's [`Dialect`], which pairs requests with replies per
//! connection and yields [`Item`]s: [`Exchange`]s (one call: connection,
//! method, params, reply, notifications that arrived meanwhile) and
//! notifications sent outside a call. The core then builds the output:
//!
//! * [`server`]: replies per method, with `match` predicates when the same
//!   method got different replies for different params, global cycling,
//!   `on_connect` notifications;
//! * [`client`]: the calls in recorded order per connection, `expect` from
//!   the recorded replies, values the server generated and Kong sent back
//!   turned into `capture` + `${name}` ([`captures`]), volatile fields left
//!   out of expectations ([`leaves`]).
//!
//! [`output`] writes the spec as deterministic pretty JSON. Memory grows
//! with the output, not with the recording: the server export keeps one
//! entry per distinct reply and one small index per call; the client
//! export keeps the steps it writes.
//!
//! Adding a protocol means implementing [`Dialect`] (see ARCHITECTURE.md)
//! and naming it in [`dialect_for`]. go-plugin ([`goplugin`]) pairs its
//! streams through the same trait but writes its own spec format
//! ([`goplugin_spec`]).

pub mod captures;
pub mod client;
pub mod goplugin;
pub mod goplugin_spec;
pub mod leaves;
pub mod msgpack;
pub mod output;
pub mod protobuf;
pub mod prox;
pub mod server;

use std::io::BufRead;
use std::path::Path;

use indexmap::IndexMap;
use serde_json::{Map, Value as Json};

use crate::protocol::Protocol;
use crate::record::{FrameEvent, Header, Line, Reader};
use crate::spec::Notification;

/// Which spec to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A mock server answering as the recorded server did.
    Server,
    /// Kong's side: the recorded calls, with expectations.
    Client,
}

/// Export settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Which spec to write.
    pub target: Target,
    /// Keep volatile fields (timestamps, pids) in expectations and
    /// notifications instead of leaving them out.
    pub keep_volatile: bool,
    /// Client specs: replay the connections at the same time, as recorded
    /// (`"concurrent": true`), instead of one call at a time.
    pub concurrent: bool,
}

/// Why a recording cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The file could not be read or a line is not valid.
    #[error(transparent)]
    Read(#[from] crate::record::ReadError),
    /// A frame does not make sense in its place.
    #[error("{file}:{line}: {message}")]
    Frame {
        /// File name.
        file: String,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// A reply as the core sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The error (`null` for success).
    pub error: Json,
    /// The result.
    pub result: Json,
}

/// One call and its reply, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// Connection id in the recording.
    pub conn: u64,
    /// `seq` of the request's line: exchanges come in the order their
    /// replies arrived, steps and reply cycles use the order of requests.
    pub request_seq: u64,
    /// `seq` of the reply's line (0 without a reply).
    pub reply_seq: u64,
    /// Method name.
    pub method: String,
    /// Params exactly as sent.
    pub params: Json,
    /// The reply; `None` when the connection ended without one.
    pub reply: Option<Reply>,
    /// Notifications the server sent while the call was in flight.
    pub notifications: Vec<Notification>,
}

/// What a dialect makes of the frames it is fed.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A completed call (or one its connection abandoned).
    Exchange(Exchange),
    /// A notification sent while no call was in flight.
    Notification {
        /// Connection id.
        conn: u64,
        /// The notification.
        notification: Notification,
    },
}

/// How one protocol's recorded frames become [`Item`]s and how its spec
/// entries are written. Implement it to export another protocol.
pub trait Dialect {
    /// The protocol it handles.
    fn protocol(&self) -> Protocol;

    /// Feeds one recorded frame (connections interleave; frames of one
    /// connection come in order). Returns the items it completes; an
    /// `Err` is a frame that makes no sense here (reported with its line).
    fn frame(&mut self, frame: &FrameEvent) -> Result<Vec<Item>, String>;

    /// The connection ended: calls still waiting for a reply, if any.
    fn close(&mut self, conn: u64) -> Vec<Item>;

    /// Bytes of `conn` travelling `dir` could not be decoded (the core
    /// warns): a later reply may answer a request nobody saw.
    fn lost(&mut self, _conn: u64, _dir: crate::message::Direction) {}

    /// Any other line of the recording (`open`, go-plugin's `handshake`
    /// and `broker`, ...), for dialects that need them.
    fn line(&mut self, _line: &Line) -> Vec<Item> {
        vec![]
    }

    /// Key names whose values change from run to run (timestamps, pids).
    fn volatile_keys(&self) -> &'static [&'static str];

    /// True when a notification carries only a volatile value (a pid);
    /// its params are then written as `${pid}`.
    fn volatile_notification(&self, notification: &Notification) -> bool;

    /// The reply part of a server entry (`result`, `error`, ...), added to
    /// the `match` the core writes.
    fn server_reply(&self, reply: Option<&Reply>, entry: &mut Map<String, Json>);

    /// The `expect` of a client step from the recorded reply and the
    /// result as the core prepared it (captures and volatile fields taken
    /// out; `None`: no expectation on the result).
    fn client_expect(&self, reply: &Reply, result: Option<Json>) -> Json;

    /// True when the protocol's client runs steps on the connections
    /// their `conn` labels name (`ProtoBuf:1`'s runs them one after the
    /// other, opening a new connection after a close, as Kong's pool).
    fn conn_labels(&self) -> bool {
        true
    }

    /// Spec-level keys a client spec needs besides its steps (for
    /// `ProtoBuf:1`, Kong's recorded PDK answers in `on_pdk`).
    fn client_extra(&self) -> Map<String, Json> {
        Map::new()
    }

    /// True when `method` is one-way: it gets no reply by design (prox's
    /// `on_disconnect`), so an exchange without one is complete. Clients
    /// send such steps without an expectation.
    fn one_way(&self, _method: &str) -> bool {
        false
    }

    /// Feeds a recorded line that is neither a frame nor a connection's
    /// end (prox's `stdio` lines, `child` events), for protocols whose
    /// specs need more than the calls.
    fn other_line(&mut self, _line: &Line) {}

    /// Last touches to the finished spec (sections of the protocol's own,
    /// such as prox's `prox`), with the recording's header.
    fn finish_spec(&self, _target: Target, _header: &Header, _spec: &mut Map<String, Json>) {}

    /// A notification as a spec writes it (`on_connect`, `notify`).
    fn notification(&self, notification: &Notification) -> Json {
        Json::Array(vec![
            Json::String(notification.method.clone()),
            notification.params.clone(),
        ])
    }
}

/// A dialect's error for a frame that has no place in its protocol's
/// traffic; `ways` names the two directions (to the server, to the client)
/// as that protocol's people say them.
pub(crate) fn out_of_place(
    kind: crate::message::Kind,
    dir: crate::message::Direction,
    traffic: &str,
    ways: [&str; 2],
) -> String {
    let way = match dir {
        crate::message::Direction::ToServer => ways[0],
        crate::message::Direction::ToClient => ways[1],
    };
    format!(
        "a {} travelling {way} is not {traffic} traffic",
        kind.label().trim()
    )
}

/// The dialect for a protocol.
pub fn dialect_for(protocol: Protocol) -> Box<dyn Dialect> {
    match protocol {
        Protocol::MsgPack1 => Box::new(msgpack::MsgpackDialect::default()),
        Protocol::ProtoBuf1 => Box::new(protobuf::ProtobufDialect::default()),
        Protocol::Prox => Box::new(prox::ProxDialect::default()),
        Protocol::GoPlugin => Box::new(goplugin::GoPluginDialect::default()),
    }
}

/// Exports a recording file; returns the spec text.
pub fn export_file(path: &Path, opts: Options) -> Result<String, ExportError> {
    let reader = Reader::open(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    export(reader, &path.display().to_string(), &name, opts)
}

/// Exports from an open reader; `file` names it in errors, `name` in the
/// spec's first comment.
pub fn export<R: BufRead>(
    mut reader: Reader<R>,
    file: &str,
    name: &str,
    opts: Options,
) -> Result<String, ExportError> {
    let header = reader.header().clone();
    let mut dialect = dialect_for(header.protocol);
    if !header.redact.is_empty() {
        tracing::warn!(
            "{file} was recorded with --redact {}: the spec has \"[redacted]\" where the values were",
            header.redact.join(", ")
        );
    }
    let socket = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut sink: Box<dyn SinkOut> = match (header.protocol, opts.target) {
        // go-plugin specs have a format of their own.
        (Protocol::GoPlugin, target) => goplugin_spec::sink(target, &header),
        (_, Target::Server) => Box::new(server::ServerExport::new(socket(&header.listen), opts)),
        (_, Target::Client) => Box::new(client::ClientExport::new(socket(&header.listen), opts)),
    };
    let mut open: IndexMap<u64, ()> = IndexMap::new();
    let mut items = 0u64;
    while let Some(line) = reader.next() {
        let produced = match line? {
            Line::Frame(frame) => {
                open.insert(frame.conn, ());
                dialect
                    .frame(&frame)
                    .map_err(|message| ExportError::Frame {
                        file: file.to_owned(),
                        line: reader.line_no(),
                        message,
                    })?
            }
            Line::Close(c) => {
                open.shift_remove(&c.conn);
                dialect.close(c.conn)
            }
            Line::Undecodable(u) => {
                dialect.lost(u.conn, u.dir);
                tracing::warn!(
                    "{file}:{}: connection {}: {} undecodable byte(s) left out ({})",
                    reader.line_no(),
                    u.conn,
                    u.len,
                    u.error
                );
                vec![]
            }
            other => {
                dialect.other_line(&other);
                dialect.line(&other)
            }
        };
        for item in produced {
            items += 1;
            sink.item(item, dialect.as_ref());
        }
    }
    // Connections the recording never saw close (a recording cut short).
    for conn in open.keys().copied().collect::<Vec<_>>() {
        for item in dialect.close(conn) {
            items += 1;
            sink.item(item, dialect.as_ref());
        }
    }
    let comment = format!(
        "Exported by `plugtap export --as {}` from {name} ({}, {items} item(s)).",
        match opts.target {
            Target::Server => "server",
            Target::Client => "client",
        },
        header.protocol
    );
    let mut spec = sink.finish(dialect.as_ref());
    if let Some(map) = spec.as_object_mut() {
        dialect.finish_spec(opts.target, &header, map);
    }
    Ok(output::render(&comment, &spec))
}

/// A spec builder: fed items, gives the spec's JSON.
pub(crate) trait SinkOut {
    fn item(&mut self, item: Item, dialect: &dyn Dialect);
    fn finish(self: Box<Self>, dialect: &dyn Dialect) -> Json;
}
