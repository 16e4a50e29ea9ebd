//! A recording as a Mermaid sequence diagram: Kong, plugtap and the
//! server as participants, one arrow per frame (drawn from Kong to the
//! server through plugtap's lifeline), notes for connection events and
//! undecodable bytes. In a prox recording the participants are prox and
//! the plugin, and the lines on the plugin's stdin and stdout are arrows
//! too (`stdin configure ...`, `stdout ready ...`).
//!
//! Mermaid treats `;` and `#` specially and ends a message at a line
//! break, so labels are escaped with its `#code;` entities.

use std::io::Write;

use crate::message::{Direction, Kind, shorten};
use crate::protocol::Protocol;
use crate::record::Line;

/// Longest payload shown on an arrow.
const LABEL: usize = 48;

/// The diagram's opening lines.
pub fn begin(out: &mut impl Write) -> std::io::Result<()> {
    begin_for(Protocol::MsgPack1, out)
}

/// The opening lines for a `protocol` recording (prox: prox and the plugin).
pub fn begin_for(protocol: Protocol, out: &mut impl Write) -> std::io::Result<()> {
    let (client, server) = match protocol {
        Protocol::Prox => ("prox", "plugin"),
        _ => ("Kong", "server"),
    };
    writeln!(out, "sequenceDiagram")?;
    writeln!(out, "    participant K as {client}")?;
    writeln!(out, "    participant P as plugtap")?;
    writeln!(out, "    participant S as {server}")
}

/// Escapes text for a Mermaid message or note.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '#' => out.push_str("#35;"),
            ';' => out.push_str("#59;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One event of the diagram.
pub fn event(line: &Line, out: &mut impl Write) -> std::io::Result<()> {
    event_for(Protocol::MsgPack1, line, out)
}

/// One event of a `protocol` recording's diagram.
pub fn event_for(protocol: Protocol, line: &Line, out: &mut impl Write) -> std::io::Result<()> {
    let server = match protocol {
        Protocol::Prox => "plugin",
        _ => "server",
    };
    match line {
        Line::Header(_) => Ok(()),
        Line::Open(o) => writeln!(out, "    Note over K,S: c{} open", o.conn),
        Line::Frame(f) => {
            let v = &f.msg;
            let id = v.id.map(|i| format!(" #{i}")).unwrap_or_default();
            let label = match v.kind {
                Kind::Request | Kind::Notification => format!(
                    "{}{id} {} {}",
                    v.kind.label(),
                    v.method.as_deref().unwrap_or(""),
                    shorten(&v.payload().to_string(), LABEL)
                ),
                Kind::Response => {
                    let method = f
                        .reply
                        .as_ref()
                        .and_then(|r| r.method.as_deref())
                        .unwrap_or("");
                    match &v.error {
                        Some(e) => format!("error{id} {method} {}", shorten(e, LABEL)),
                        None => format!(
                            "ok{id} {method} {}",
                            shorten(&v.payload().to_string(), LABEL)
                        ),
                    }
                }
                // ProtoBuf:1: the method-name frame names it; args and
                // replies show their method and value.
                Kind::PdkCall => format!("pdk-call {}", v.method.as_deref().unwrap_or("")),
                Kind::PdkArgs | Kind::PdkReply => format!(
                    "{} {} {} {}",
                    v.kind.label(),
                    v.method.as_deref().unwrap_or("?"),
                    v.pdk_type().unwrap_or("?"),
                    shorten(&v.value.to_string(), LABEL)
                ),
                Kind::PdkEnd => "pdk-end".into(),
                Kind::Closed => format!(
                    "CLOSED{id} {}: {}",
                    v.method.as_deref().unwrap_or(""),
                    shorten(v.error.as_deref().unwrap_or(""), 2 * LABEL)
                ),
                _ => format!(
                    "{} {}",
                    v.kind.label(),
                    shorten(&v.value.to_string(), LABEL)
                ),
            };
            let label = match &v.problem {
                Some(p) => format!("{label} ({})", shorten(p, LABEL)),
                None => label,
            };
            let arrow = match (f.dir, v.kind) {
                (Direction::ToServer, Kind::Closed) => "K--xS",
                (Direction::ToClient, Kind::Closed) => "S--xK",
                (Direction::ToServer, _) => "K->>S",
                (Direction::ToClient, Kind::Notification) => "S-)K",
                (Direction::ToClient, _) => "S-->>K",
            };
            writeln!(out, "    {arrow}: c{} {}", f.conn, escape(&label))
        }
        Line::Undecodable(u) => {
            let side = match u.dir {
                Direction::ToServer => "from Kong",
                Direction::ToClient => "from the server",
            };
            writeln!(
                out,
                "    Note over P: c{} {} undecodable bytes {side}: {}",
                u.conn,
                u.len,
                escape(&shorten(&u.error, LABEL))
            )
        }
        Line::Eof(e) => {
            let (from, to) = match e.dir {
                Direction::ToServer => ("K", "S"),
                Direction::ToClient => ("S", "K"),
            };
            writeln!(out, "    {from}--x{to}: c{} end of stream", e.conn)
        }
        Line::Close(c) => writeln!(out, "    Note over K,S: c{} closed", c.conn),
        Line::Error(e) => writeln!(
            out,
            "    Note over P: {}error: {}",
            e.conn.map(|c| format!("c{c} ")).unwrap_or_default(),
            escape(&shorten(&e.error, 2 * LABEL))
        ),
        Line::Child(c) => writeln!(
            out,
            "    Note over S: {server} {}{}",
            c.event,
            escape(
                &c.status
                    .as_ref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            )
        ),
        Line::Stdio(l) => {
            let v = &l.msg;
            let label = format!(
                "{} {} {}",
                l.stream,
                v.method.as_deref().unwrap_or(v.kind.label()),
                shorten(&v.value.to_string(), LABEL)
            );
            let arrow = match l.dir {
                Direction::ToServer => "K->>S",
                Direction::ToClient => "S-)K",
            };
            writeln!(out, "    {arrow}: {}", escape(&label))?;
            match &l.rewritten_socket {
                Some(s) => writeln!(out, "    Note over P: socket rewritten to {}", escape(s)),
                None => Ok(()),
            }
        }
        Line::Handshake(h) => writeln!(
            out,
            "    Note over S: handshake {}",
            escape(&shorten(&h.original, 2 * LABEL))
        ),
        Line::Broker(b) => writeln!(
            out,
            "    Note over P: c{} broker service {}",
            b.conn, b.service_id
        ),
        Line::Stderr(e) => writeln!(
            out,
            "    Note over S: stderr {}",
            escape(&shorten(&e.text, LABEL))
        ),
        Line::End(e) => writeln!(
            out,
            "    Note over K,S: end: {} frames ({})",
            e.frames,
            escape(&e.reason)
        ),
    }
}
