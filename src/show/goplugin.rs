//! go-plugin recordings for people: the host, plugtap and the plugin
//! instead of Kong and a server, arrows named after who opened each
//! connection (a brokered connection may be opened by the plugin), gRPC
//! events as the wrapper logs them, and the handshake, broker rewrites
//! and the plugin's stderr.
//!
//! [`Names`] learns each connection's client and server from its `open`
//! line (before filtering, so a filtered view still draws arrows the
//! right way).

use std::collections::HashMap;
use std::io::Write;

use super::mermaid::escape;
use crate::goplugin::event::view_text;
use crate::message::{Direction, Kind, shorten};
use crate::record::{Header, Line};

/// Longest text on a diagram arrow.
const LABEL: usize = 60;

/// Who opened each connection and who serves it.
#[derive(Debug, Default)]
pub struct Names {
    conns: HashMap<u64, (String, String)>,
}

impl Names {
    /// Learns from an `open` line.
    pub fn learn(&mut self, line: &Line) {
        if let Line::Open(o) = line {
            let client = o.client.clone().unwrap_or_else(|| "host".into());
            let server = o.server.clone().unwrap_or_else(|| "plugin".into());
            self.conns.insert(o.conn, (client, server));
        }
    }

    /// (from, to) of an event on `conn` travelling `dir`.
    fn ends(&self, conn: u64, dir: Direction) -> (&str, &str) {
        let (c, s) = self
            .conns
            .get(&conn)
            .map_or(("host", "plugin"), |(c, s)| (c.as_str(), s.as_str()));
        match dir {
            Direction::ToServer => (c, s),
            Direction::ToClient => (s, c),
        }
    }
}

/// The text output's first line.
pub fn text_header(h: &Header) -> String {
    format!(
        "# go-plugin recording of `{}`: the host connects to {}, the plugin listens at {}; started {}",
        h.command.as_deref().unwrap_or("?"),
        h.listen.display(),
        h.upstream.display(),
        h.started_at
    )
}

/// One event as one line of text.
pub fn text_line(line: &Line, names: &Names, full: bool, colour: bool) -> String {
    let when = line
        .stamp()
        .map(|s| format!("+{:.6}", s.t_us as f64 / 1e6))
        .unwrap_or_default();
    let max = if full { usize::MAX } else { 160 };
    let what = match line {
        Line::Handshake(h) => {
            let mut s = format!("handshake: the plugin printed {}", h.original);
            match (&h.rewritten, &h.error) {
                (Some(r), _) => s.push_str(&format!("; the host was told {r}")),
                (None, Some(e)) => s.push_str(&format!(
                    "; passed on unchanged, a host refuses it: {}",
                    shorten(e, max)
                )),
                (None, None) => s.push_str("; passed on unchanged"),
            }
            if let Some(r) = &h.relay {
                s.push_str(&format!(" ({r})"));
            }
            s
        }
        Line::Open(o) => format!(
            "c{} open{} ({} → {}{})",
            o.conn,
            o.name
                .as_deref()
                .and_then(|n| n.split_once(' '))
                .map(|(_, rest)| format!(" {rest}"))
                .unwrap_or_default(),
            o.client.as_deref().unwrap_or("host"),
            o.server.as_deref().unwrap_or("plugin"),
            o.upstream
                .as_deref()
                .map(|u| format!(", forwarded to {u}"))
                .unwrap_or_default()
        ),
        Line::Frame(f) => {
            let (from, to) = names.ends(f.conn, f.dir);
            let code = if from == "host" { "36" } else { "35" };
            let arrow = super::paint(&format!("{from}→{to}"), code, colour);
            let took = f
                .reply
                .as_ref()
                .map(|r| format!(" after {:.2}ms", r.latency_us as f64 / 1000.0))
                .unwrap_or_default();
            let redacted = if f.redacted { " [redacted]" } else { "" };
            let text = view_text(&f.msg, full);
            let text = match (&f.msg.error, f.msg.kind) {
                (Some(_), Kind::GrpcTrailers) => super::paint(&text, "31", colour),
                _ => text,
            };
            format!(
                "c{} s{} {arrow} {text}{took}{redacted}",
                f.conn,
                f.msg.id.unwrap_or_default()
            )
        }
        Line::Broker(b) => {
            let other = if b.announcer == "host" {
                "plugin"
            } else {
                "host"
            };
            let mut s = format!(
                "c{} broker: the {} announced service {} at {}",
                b.conn, b.announcer, b.service_id, b.announced
            );
            match &b.told {
                Some(t) => s.push_str(&format!("; the {other} was told {t}")),
                None => s.push_str(&format!(
                    "; {}",
                    b.note.as_deref().unwrap_or("forwarded unchanged")
                )),
            }
            s
        }
        Line::Stderr(e) => format!("plugin stderr: {}", shorten(&e.text, max)),
        Line::Child(c) => format!(
            "plugin {}{}{}",
            c.event,
            c.pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
            c.status
                .as_ref()
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        ),
        Line::Close(c) => format!(
            "c{} close ({} DATA bytes to the server, {} to the client)",
            c.conn, c.to_server, c.to_client
        ),
        other => {
            // Generic lines read the same for every protocol.
            let text = super::text_line(other, full, colour);
            return text;
        }
    };
    format!("{when:>12}  {what}")
}

/// The diagram's opening lines.
pub fn mermaid_begin(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "sequenceDiagram")?;
    writeln!(out, "    participant H as host")?;
    writeln!(out, "    participant P as plugtap")?;
    writeln!(out, "    participant G as plugin")
}

fn letter(who: &str) -> &'static str {
    if who == "host" { "H" } else { "G" }
}

/// One event of the diagram.
pub fn mermaid_event(line: &Line, names: &Names, out: &mut impl Write) -> std::io::Result<()> {
    match line {
        Line::Header(_) => Ok(()),
        Line::Handshake(h) => {
            writeln!(
                out,
                "    Note over G: handshake {}",
                escape(&shorten(&h.original, 2 * LABEL))
            )?;
            match &h.rewritten {
                Some(r) => writeln!(
                    out,
                    "    P->>H: handshake {}",
                    escape(&shorten(r, 2 * LABEL))
                ),
                None => writeln!(
                    out,
                    "    G->>H: handshake passed on unchanged{}",
                    escape(
                        &h.error
                            .as_ref()
                            .map(|e| format!(" (refused: {})", shorten(e, LABEL)))
                            .unwrap_or_default()
                    )
                ),
            }
        }
        Line::Open(o) => writeln!(
            out,
            "    Note over H,G: c{} open ({} → {})",
            o.conn,
            o.client.as_deref().unwrap_or("host"),
            o.server.as_deref().unwrap_or("plugin")
        ),
        Line::Frame(f) => {
            let (from, to) = names.ends(f.conn, f.dir);
            let v = &f.msg;
            let what = match v.kind {
                Kind::GrpcMessage => {
                    let index = v.value["index"].as_u64().unwrap_or_default();
                    let body = v
                        .value
                        .get("json")
                        .or(v.value.get("fields"))
                        .map(|j| shorten(&j.to_string(), LABEL))
                        .unwrap_or_default();
                    format!("message #{index} {body}")
                }
                Kind::GrpcTrailers => match &v.error {
                    Some(e) => format!("trailers {}", shorten(e, LABEL)),
                    None => "trailers OK".into(),
                },
                _ => format!(
                    "{} {}",
                    v.kind.label(),
                    v.problem
                        .as_deref()
                        .map(|p| shorten(p, LABEL))
                        .unwrap_or_else(|| v.method.clone().unwrap_or_default())
                ),
            };
            let arrow = if f.dir == Direction::ToServer {
                "->>"
            } else {
                "-->>"
            };
            writeln!(
                out,
                "    {}{arrow}{}: c{} s{} {}",
                letter(from),
                letter(to),
                f.conn,
                v.id.unwrap_or_default(),
                escape(&what)
            )
        }
        Line::Broker(b) => writeln!(
            out,
            "    Note over P: c{} broker service {} of the {} at {}: {}",
            b.conn,
            b.service_id,
            b.announcer,
            escape(&b.announced),
            escape(
                &b.told
                    .as_ref()
                    .map(|t| format!("rewritten to {t}"))
                    .or(b.note.clone())
                    .unwrap_or_default()
            )
        ),
        Line::Stderr(e) => writeln!(
            out,
            "    Note over G: stderr {}",
            escape(&shorten(&e.text, LABEL))
        ),
        // prox's stdio lines do not occur in go-plugin recordings.
        Line::Stdio(_) => Ok(()),
        Line::Close(c) => writeln!(out, "    Note over H,G: c{} closed", c.conn),
        Line::Child(c) => writeln!(
            out,
            "    Note over G: plugin {}{}",
            c.event,
            escape(
                &c.status
                    .as_ref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            )
        ),
        Line::Error(e) => writeln!(
            out,
            "    Note over P: {}error: {}",
            e.conn.map(|c| format!("c{c} ")).unwrap_or_default(),
            escape(&shorten(&e.error, 2 * LABEL))
        ),
        Line::End(e) => writeln!(
            out,
            "    Note over H,G: end: {} frames ({})",
            e.frames,
            escape(&e.reason)
        ),
        Line::Undecodable(_) | Line::Eof(_) => super::mermaid::event(line, out),
    }
}
