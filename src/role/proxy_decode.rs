//! The decoding side of one proxied connection, run on the recording's
//! thread as a [`Watch`] (see [`crate::record::watch`]): what the pumps of
//! [`proxy_conn`](super::proxy_conn) forwarded goes through the
//! connection's [`Conversation`] here, in read order across both
//! directions. Each frame is redacted, logged (one line, coloured on a
//! TTY) and handed on for the recording; undecodable bytes are logged and
//! recorded with their offset and, under `--strict`, close the connection.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::codec::{Limits, hex};
use crate::conversation::{self, Conversation, Observed};
use crate::message::{Direction, MessageView};
use crate::net::ConnId;
use crate::protocol::Protocol;
use crate::record::redact::Redactor;
use crate::record::{Entry, Note, Watch};

/// How every connection of one proxy is decoded and logged.
#[derive(Debug)]
pub(crate) struct DecodeSettings {
    pub(crate) protocol: Protocol,
    pub(crate) limits: Limits,
    pub(crate) redactor: Redactor,
    /// Close a connection that sends undecodable bytes.
    pub(crate) strict: bool,
    /// `-v`: log full values.
    pub(crate) full_values: bool,
    pub(crate) colour: bool,
}

impl DecodeSettings {
    /// Settings with colour when stderr is a terminal.
    pub(crate) fn new(
        protocol: Protocol,
        limits: Limits,
        redactor: Redactor,
        strict: bool,
        full_values: bool,
    ) -> Arc<DecodeSettings> {
        use std::io::IsTerminal as _;
        Arc::new(DecodeSettings {
            protocol,
            limits,
            redactor,
            strict,
            full_values,
            colour: std::io::stderr().is_terminal(),
        })
    }
}

/// One connection's decoding state.
pub(super) struct Decoder {
    id: ConnId,
    conv: Box<dyn Conversation>,
    settings: Arc<DecodeSettings>,
    /// Closes the connection (`--strict`).
    cancel: CancellationToken,
    out: Vec<Observed>,
    to_server: u64,
    to_client: u64,
    /// When the last note was read: the time of the final events.
    last: Instant,
}

impl Decoder {
    /// `None` for a protocol without a conversation (`proxy::run` refuses
    /// those before any connection is accepted).
    pub(super) fn new(
        id: ConnId,
        settings: Arc<DecodeSettings>,
        cancel: CancellationToken,
    ) -> Option<Decoder> {
        let conv = conversation::for_protocol(settings.protocol, settings.limits)?;
        Some(Decoder {
            id,
            conv,
            settings,
            cancel,
            out: Vec::new(),
            to_server: 0,
            to_client: 0,
            last: Instant::now(),
        })
    }
}

impl Watch for Decoder {
    /// Decodes, logs and records one note.
    fn note(&mut self, note: Note, record: &mut dyn FnMut(Entry)) {
        let id = self.id;
        let mut after = None;
        match note {
            Note::Chunk(chunk) => {
                match chunk.dir {
                    Direction::ToServer => self.to_server += chunk.bytes.len() as u64,
                    Direction::ToClient => self.to_client += chunk.bytes.len() as u64,
                }
                self.last = chunk.at;
                self.conv.observe(&chunk, &mut self.out);
            }
            Note::Eof { dir, at } => {
                self.last = at;
                self.conv.end(dir, at, &mut self.out);
                let offset = match dir {
                    Direction::ToServer => self.to_server,
                    Direction::ToClient => self.to_client,
                };
                tracing::debug!("{id} {} end of stream after {offset} bytes", dir.arrow());
                after = Some(Entry::Eof {
                    conn: id,
                    dir,
                    offset,
                    at,
                });
            }
            Note::Error { dir, at, error } => {
                self.last = at;
                tracing::warn!("{id} {error}; closing both sides");
                after = Some(Entry::Error {
                    conn: Some(id),
                    dir: Some(dir),
                    error,
                    at,
                });
            }
        }
        let mut out = std::mem::take(&mut self.out);
        for mut obs in out.drain(..) {
            let redacted = self.inspect(&mut obs);
            record(Entry::Observed {
                conn: id,
                obs,
                redacted,
            });
        }
        self.out = out;
        if let Some(entry) = after {
            record(entry);
        }
    }

    /// Both pumps are gone: ends both streams (whatever the reason),
    /// records what was cut short, the requests never answered and the
    /// connection's close.
    fn finish(mut self: Box<Self>, at: Instant, record: &mut dyn FnMut(Entry)) {
        let (id, last) = (self.id, self.last);
        let mut out = std::mem::take(&mut self.out);
        for dir in [Direction::ToServer, Direction::ToClient] {
            self.conv.end(dir, last, &mut out);
        }
        for obs in out {
            record(Entry::Observed {
                conn: id,
                obs,
                redacted: false,
            });
        }
        for (dir, error) in self.conv.unanswered() {
            tracing::warn!("{id} {error}");
            record(Entry::Error {
                conn: Some(id),
                dir: Some(dir),
                error,
                at: last,
            });
        }
        let (to_server, to_client) = (self.to_server, self.to_client);
        tracing::debug!("{id} closed ({to_server} bytes K→S, {to_client} bytes S→K)");
        record(Entry::Close {
            conn: id,
            to_server,
            to_client,
            at,
        });
    }
}

impl Decoder {
    /// Redacts, logs and applies `--strict`; true when redaction changed
    /// the frame.
    fn inspect(&self, obs: &mut Observed) -> bool {
        let (id, shared) = (self.id, &*self.settings);
        match obs {
            Observed::Frame(f) => {
                let redacted = !shared.redactor.is_empty() && shared.redactor.apply(&mut f.view);
                if tracing::enabled!(tracing::Level::INFO) {
                    log_frame(id, f, shared);
                }
                if let Some(problem) = &f.view.problem {
                    tracing::warn!("{id} {} {problem}", f.dir.arrow());
                }
                redacted
            }
            Observed::Undecodable(u) => {
                tracing::warn!(
                    "{id} {} undecodable bytes at offset {} ({}): {}{}",
                    paint(
                        crate::show::arrow(shared.protocol, u.dir),
                        RED,
                        shared.colour
                    ),
                    u.offset,
                    u.error,
                    hex(&u.raw[..u.raw.len().min(64)]),
                    if u.raw.len() > 64 { "…" } else { "" }
                );
                if shared.strict && !self.cancel.is_cancelled() {
                    tracing::warn!("{id} --strict: closing the connection");
                    self.cancel.cancel();
                }
                false
            }
        }
    }
}

const CYAN: &str = "36";
const MAGENTA: &str = "35";
const RED: &str = "31";

fn paint(text: &str, colour: &str, on: bool) -> String {
    if on {
        format!("\x1b[{colour}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// One line per frame: connection, direction, kind, msgid, method (for a
/// reply, the request's method and latency) and a summary.
fn log_frame(id: ConnId, f: &conversation::Frame, shared: &DecodeSettings) {
    let colour = match f.dir {
        Direction::ToServer => CYAN,
        Direction::ToClient => MAGENTA,
    };
    let arrow = paint(
        crate::show::arrow(shared.protocol, f.dir),
        colour,
        shared.colour,
    );
    let summary = summary(&f.view, f.reply.as_ref(), shared.full_values);
    tracing::info!("{id} {arrow} {summary}");
}

fn summary(view: &MessageView, reply: Option<&conversation::Reply>, full: bool) -> String {
    let Some(reply) = reply else {
        return view.summary(full);
    };
    let mut view = view.clone();
    let label = format!(
        "{} {:.2}ms",
        reply.method.as_deref().unwrap_or("?"),
        reply.latency.as_secs_f64() * 1000.0
    );
    view.method = Some(label);
    view.summary(full)
}
