//! `plugtap show`: a recording for people to read or look at.
//!
//! The recording streams through [`crate::record::Reader`] one line at a
//! time, so files of any size show in constant memory. A [`Filter`]
//! selects connections, methods and a time window; the output is one line
//! per event ([`text_line`]), the matching JSON lines unchanged, or a
//! Mermaid sequence diagram ([`mermaid`]). go-plugin recordings have
//! their own text and diagram ([`goplugin`]).

pub mod goplugin;
pub mod mermaid;

use std::io::Write;

use crate::codec::hex;
use crate::message::{Direction, shorten};
use crate::protocol::Protocol;
use crate::record::{Line, ReadError, Reader};

/// Which events to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these connections (all when empty).
    pub conns: Vec<u64>,
    /// Only frames whose method (or, for a reply, the request's method)
    /// contains this text. Other events are left out when set.
    pub method: Option<String>,
    /// Only events at or after this many seconds from the start.
    pub since: Option<f64>,
    /// Only events at or before this many seconds from the start.
    pub until: Option<f64>,
}

impl Filter {
    /// True when `line` passes. The header always passes.
    pub fn accepts(&self, line: &Line) -> bool {
        let Some(stamp) = line.stamp() else {
            return true;
        };
        let t = stamp.t_us as f64 / 1e6;
        if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t > u) {
            return false;
        }
        if !self.conns.is_empty() && !line.conn().is_some_and(|c| self.conns.contains(&c)) {
            return false;
        }
        match &self.method {
            None => true,
            Some(m) => match line {
                Line::Frame(f) => f
                    .msg
                    .method
                    .as_deref()
                    .or(f.reply.as_ref().and_then(|r| r.method.as_deref()))
                    .is_some_and(|name| name.contains(m.as_str())),
                Line::Stdio(l) => l
                    .msg
                    .method
                    .as_deref()
                    .is_some_and(|name| name.contains(m.as_str())),
                _ => false,
            },
        }
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One line per event.
    Text,
    /// The recording's own lines.
    Json,
    /// A Mermaid sequence diagram.
    Mermaid,
}

/// Shows a recording; returns how many events passed the filter.
pub fn show<R: std::io::BufRead>(
    mut reader: Reader<R>,
    filter: &Filter,
    format: Format,
    full: bool,
    colour: bool,
    out: &mut impl Write,
) -> Result<u64, ShowError> {
    let mut shown = 0;
    // go-plugin: who opened each connection decides the arrows.
    let mut go = (reader.header().protocol == crate::protocol::Protocol::GoPlugin)
        .then(goplugin::Names::default);
    match format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string(&Line::Header(reader.header().clone()))?
        )?,
        Format::Text if go.is_some() => {
            writeln!(out, "{}", goplugin::text_header(reader.header()))?
        }
        Format::Mermaid if go.is_some() => goplugin::mermaid_begin(out)?,
        Format::Text => {
            let h = reader.header();
            if h.protocol == Protocol::Prox {
                writeln!(
                    out,
                    "# prox recording of plugin `{}`, started {}",
                    h.command.as_deref().unwrap_or("?"),
                    h.started_at
                )?;
            } else {
                writeln!(
                    out,
                    "# {} recording of {} → {}, started {}",
                    h.protocol,
                    h.listen.display(),
                    h.upstream.display(),
                    h.started_at
                )?;
            }
        }
        Format::Mermaid => mermaid::begin_for(reader.header().protocol, out)?,
    }
    let protocol = reader.header().protocol;
    while let Some(line) = reader.next() {
        let line = line?;
        if let Some(names) = &mut go {
            names.learn(&line);
        }
        if !filter.accepts(&line) {
            continue;
        }
        shown += 1;
        match (format, &go) {
            (Format::Text, Some(names)) => {
                writeln!(out, "{}", goplugin::text_line(&line, names, full, colour))?
            }
            (Format::Mermaid, Some(names)) => goplugin::mermaid_event(&line, names, out)?,
            (format, _) => match format {
                Format::Json => writeln!(out, "{}", reader.text())?,
                Format::Text => writeln!(out, "{}", text_line_for(protocol, &line, full, colour))?,
                Format::Mermaid => mermaid::event_for(protocol, &line, out)?,
            },
        }
    }
    Ok(shown)
}

/// Why showing failed.
#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    /// The recording is unreadable.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    /// Serialising failed.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

pub(crate) fn paint(text: &str, code: &str, on: bool) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// One event as one line of text, with Kong's arrows (`K→S`, `S→K`).
pub fn text_line(line: &Line, full: bool, colour: bool) -> String {
    text_line_for(Protocol::MsgPack1, line, full, colour)
}

/// The arrow for a direction: Kong's, or prox's (`prox→plugin`).
pub fn arrow(protocol: Protocol, dir: Direction) -> &'static str {
    match (protocol, dir) {
        (Protocol::Prox, Direction::ToServer) => "prox→plugin",
        (Protocol::Prox, Direction::ToClient) => "plugin→prox",
        (_, dir) => dir.arrow(),
    }
}

/// One event of a `protocol` recording as one line of text.
pub fn text_line_for(protocol: Protocol, line: &Line, full: bool, colour: bool) -> String {
    let when = line
        .stamp()
        .map(|s| format!("+{:.6}", s.t_us as f64 / 1e6))
        .unwrap_or_default();
    let conn = line.conn().map(|c| format!("c{c} ")).unwrap_or_default();
    let max = if full { usize::MAX } else { 160 };
    let what = match line {
        Line::Header(h) => format!("header {} {}", h.format, h.version),
        Line::Open(_) => "open".into(),
        Line::Frame(f) => {
            let code = match f.dir {
                Direction::ToServer => "36",
                Direction::ToClient => "35",
            };
            let arrow = arrow(protocol, f.dir);
            let mut view = f.msg.clone();
            if let Some(r) = &f.reply {
                view.method = Some(format!(
                    "{} {:.2}ms",
                    r.method.as_deref().unwrap_or("?"),
                    r.latency_us as f64 / 1000.0
                ));
            }
            let redacted = if f.redacted { " [redacted]" } else { "" };
            format!(
                "{} {}{redacted}",
                paint(arrow, code, colour),
                view.summary(full)
            )
        }
        Line::Undecodable(u) => {
            let raw = base64_decode(&u.raw);
            format!(
                "{} {} undecodable bytes at offset {}: {} — {}",
                arrow(protocol, u.dir),
                paint(&u.len.to_string(), "31", colour),
                u.offset,
                u.error,
                shorten(&hex(&raw), max)
            )
        }
        Line::Eof(e) => format!(
            "{} end of stream after {} bytes",
            arrow(protocol, e.dir),
            e.offset
        ),
        Line::Close(c) => format!(
            "close ({} bytes {}, {} bytes {})",
            c.to_server,
            arrow(protocol, Direction::ToServer),
            c.to_client,
            arrow(protocol, Direction::ToClient)
        ),
        Line::Stdio(l) => {
            let code = match l.dir {
                Direction::ToServer => "36",
                Direction::ToClient => "35",
            };
            let rewritten = l
                .rewritten_socket
                .as_ref()
                .map(|s| format!(" [socket rewritten to {s}]"))
                .unwrap_or_default();
            let redacted = if l.redacted { " [redacted]" } else { "" };
            format!(
                "{} {} {}{redacted}{rewritten}",
                l.stream,
                paint(arrow(protocol, l.dir), code, colour),
                l.msg.summary(full)
            )
        }
        Line::Error(e) => paint(&format!("error: {}", e.error), "31", colour),
        Line::Child(c) => format!(
            "{} {}{}{}",
            if protocol == Protocol::Prox {
                "plugin"
            } else {
                "server"
            },
            c.event,
            c.pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
            c.status
                .as_ref()
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        ),
        Line::Handshake(h) => format!(
            "handshake {}{}",
            h.original,
            h.rewritten
                .as_ref()
                .map(|r| format!(" → {r}"))
                .unwrap_or_default()
        ),
        Line::Broker(b) => format!(
            "broker service {} at {}{}",
            b.service_id,
            b.announced,
            b.told
                .as_ref()
                .map(|t| format!(" → {t}"))
                .unwrap_or_default()
        ),
        Line::Stderr(e) => format!("stderr: {}", shorten(&e.text, max)),
        Line::End(e) => format!(
            "end of recording: {} frames, {} events ({})",
            e.frames, e.events, e.reason
        ),
    };
    format!("{when:>12}  {conn}{what}")
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_default()
}
