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
use crate::record::msgpack_text;
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
        let mut conv = conversation::for_protocol(settings.protocol, settings.limits)?;
        // Values are written to the recording straight from the bytes;
        // only redaction needs them built.
        if settings.redactor.is_empty() {
            conv.scan_only();
        }
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
                let redacted = !shared.redactor.is_empty() && {
                    f.build_value();
                    shared.redactor.apply(&mut f.view)
                };
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
    // A scanned frame's payload is written from its bytes (unless the
    // summary shows an error instead).
    let scanned = f.scanned.as_ref().filter(|_| f.view.error.is_none());
    let payload = scanned.map(|scanned| {
        let mut text = Vec::new();
        msgpack_text::write_json(&mut text, &f.raw[scanned.payload()..], scanned);
        String::from_utf8_lossy(&text).into_owned()
    });
    let summary = summary(&f.view, f.reply.as_ref(), shared.full_values, payload);
    tracing::info!("{id} {arrow} {summary}");
}

fn summary(
    view: &MessageView,
    reply: Option<&conversation::Reply>,
    full: bool,
    payload: Option<String>,
) -> String {
    let Some(reply) = reply else {
        return view.summary_with(full, payload.as_deref());
    };
    let mut view = view.clone();
    let label = format!(
        "{} {:.2}ms",
        reply.method.as_deref().unwrap_or("?"),
        reply.latency.as_secs_f64() * 1000.0
    );
    view.method = Some(label);
    view.summary_with(full, payload.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{Chunk, MsgpackConversation};

    /// The frames of `raw` sent both ways (all read at `at`), decoded with
    /// values built or only scanned.
    fn frames(raw: &[u8], scan_only: bool, at: Instant) -> Vec<conversation::Frame> {
        let mut conv = MsgpackConversation::new(Limits::default());
        if scan_only {
            conv.scan_only();
        }
        let mut out = Vec::new();
        for dir in [Direction::ToServer, Direction::ToClient] {
            let chunk = Chunk {
                dir,
                bytes: bytes::Bytes::copy_from_slice(raw),
                at,
            };
            conv.observe(&chunk, &mut out);
        }
        out.into_iter()
            .map(|obs| match obs {
                Observed::Frame(f) => f,
                Observed::Undecodable(u) => panic!("{u:?}"),
            })
            .collect()
    }

    #[test]
    fn a_scanned_frame_logs_and_builds_what_a_decoded_one_does() {
        let long = "é\"x".repeat(100);
        // A request, then its response (same msgid, other direction).
        for (request, response) in [
            (
                rmpv::Value::Array(vec![
                    0.into(),
                    1.into(),
                    "m".into(),
                    vec![rmpv::Value::from(long.as_str()), (-7).into()].into(),
                ]),
                rmpv::Value::Array(vec![
                    1.into(),
                    1.into(),
                    rmpv::Value::Nil,
                    rmpv::Value::Map(vec![("ok".into(), true.into())]),
                ]),
            ),
            (
                rmpv::Value::Array(vec![0.into(), 2.into(), "n".into(), rmpv::Value::Nil]),
                rmpv::Value::Array(vec![1.into(), 2.into(), "boom".into(), rmpv::Value::Nil]),
            ),
        ] {
            let mut raw = Vec::new();
            rmpv::encode::write_value(&mut raw, &request).unwrap();
            let mut conv_raw = raw.clone();
            rmpv::encode::write_value(&mut conv_raw, &response).unwrap();
            // Sent both ways, each response answers the request that went
            // the other way.
            let at = Instant::now();
            let built = frames(&conv_raw, false, at);
            let mut scanned = frames(&conv_raw, true, at);
            assert_eq!(built.len(), 4);
            for (b, s) in built.iter().zip(&mut scanned) {
                assert!(b.scanned.is_none() && s.scanned.is_some());
                for full in [false, true] {
                    let payload = s.scanned.as_ref().map(|sc| {
                        let mut text = Vec::new();
                        assert!(msgpack_text::write_json(
                            &mut text,
                            &s.raw[sc.payload()..],
                            sc
                        ));
                        String::from_utf8(text).unwrap()
                    });
                    assert_eq!(
                        summary(&s.view, s.reply.as_ref(), full, payload),
                        summary(&b.view, b.reply.as_ref(), full, None)
                    );
                }
                s.build_value();
                assert!(s.scanned.is_none());
                assert_eq!(s.view, b.view);
            }
        }
    }
}
