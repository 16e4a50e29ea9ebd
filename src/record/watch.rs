//! Decoding that a role leaves to the recording's thread.
//!
//! A proxy's forwarding threads should only move bytes: any work they do
//! after writing a chunk onward delays the peer it just woke, since the
//! kernel wakes a Unix-socket reader on the writer's CPU, expecting the
//! writer to sleep next. So the proxy hands each chunk it forwarded to the
//! recording's thread as a [`Note`], and a per-connection [`Watch`] there
//! decodes, logs and turns it into entries to write. The thread runs even
//! when nothing is recorded ([`Recorder::watch_only`]), for the live log.
//!
//! Notes of one connection arrive in the order they were queued; a proxy
//! queues each chunk as soon as any of it was written onward, with no
//! await in between, so that is read order across both directions (a reply
//! can only be read after its request, or part of it, was written).
//!
//! [`Recorder::watch_only`]: super::Recorder::watch_only

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use crate::conversation::Chunk;
use crate::message::Direction;
use crate::net::ConnId;

use super::Entry;

/// What a proxy saw on one connection.
#[derive(Debug)]
pub enum Note {
    /// Bytes read (and forwarded, or tried).
    Chunk(Chunk),
    /// One side ended its stream (passed on as a half-close).
    Eof { dir: Direction, at: Instant },
    /// Reading or writing failed; the connection is being closed.
    Error {
        dir: Direction,
        at: Instant,
        error: String,
    },
}

/// One connection's decoder, run on the recording's thread.
pub trait Watch: Send {
    /// Takes one note; what is to be recorded goes to `out`.
    fn note(&mut self, note: Note, out: &mut dyn FnMut(Entry));
    /// The connection is done (at `at`): ends what is open and records
    /// its close.
    fn finish(self: Box<Self>, at: Instant, out: &mut dyn FnMut(Entry));
}

impl std::fmt::Debug for dyn Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}

/// The connections being decoded on the recording's thread.
///
/// A watch that panics (a decoding bug) is dropped with an `error` entry
/// for its connection; the thread, the other connections and the recording
/// go on. Its connection is still forwarded, only no longer decoded.
#[derive(Default)]
pub(super) struct Watches {
    map: HashMap<ConnId, Box<dyn Watch>>,
}

impl Watches {
    pub(super) fn start(&mut self, conn: ConnId, watch: Box<dyn Watch>) {
        self.map.insert(conn, watch);
    }

    /// Hands `note` to its connection's watch, if it has one.
    pub(super) fn note(&mut self, conn: ConnId, note: Note, out: &mut dyn FnMut(Entry)) {
        let Some(watch) = self.map.get_mut(&conn) else {
            return;
        };
        if catch_unwind(AssertUnwindSafe(|| watch.note(note, &mut *out))).is_err() {
            self.map.remove(&conn);
            out(panicked(conn));
        }
    }

    /// Finishes the connection's watch, if it has one.
    pub(super) fn finish(&mut self, conn: ConnId, at: Instant, out: &mut dyn FnMut(Entry)) {
        if let Some(watch) = self.map.remove(&conn) {
            finish(conn, watch, at, out);
        }
    }

    /// Finishes every watch left (connections cut off at shutdown), in
    /// connection order.
    pub(super) fn finish_all(&mut self, at: Instant, out: &mut dyn FnMut(Entry)) {
        let mut left: Vec<_> = self.map.drain().collect();
        left.sort_by_key(|(conn, _)| conn.0);
        for (conn, watch) in left {
            finish(conn, watch, at, out);
        }
    }
}

fn finish(conn: ConnId, watch: Box<dyn Watch>, at: Instant, out: &mut dyn FnMut(Entry)) {
    if catch_unwind(AssertUnwindSafe(|| watch.finish(at, &mut *out))).is_err() {
        out(panicked(conn));
    }
}

fn panicked(conn: ConnId) -> Entry {
    let error = "decoding this connection panicked (a plugtap bug); its bytes are still \
                 forwarded but no longer decoded"
        .to_owned();
    tracing::error!("{conn} {error}");
    Entry::Error {
        conn: Some(conn),
        dir: None,
        error,
        at: Instant::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each note's direction; panics on a chunk saying "boom".
    struct Echo(ConnId);

    impl Watch for Echo {
        fn note(&mut self, note: Note, out: &mut dyn FnMut(Entry)) {
            let Note::Chunk(c) = note else { return };
            assert_ne!(&c.bytes[..], b"boom", "a decoding bug");
            out(Entry::Open {
                conn: self.0,
                at: c.at,
            });
        }
        fn finish(self: Box<Self>, at: Instant, out: &mut dyn FnMut(Entry)) {
            out(Entry::Close {
                conn: self.0,
                to_server: 0,
                to_client: 0,
                at,
            });
        }
    }

    fn chunk(text: &'static str) -> Note {
        Note::Chunk(Chunk {
            dir: Direction::ToServer,
            bytes: bytes::Bytes::from_static(text.as_bytes()),
            at: Instant::now(),
        })
    }

    fn names(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match e {
                Entry::Open { conn, .. } => format!("open {}", conn.0),
                Entry::Close { conn, .. } => format!("close {}", conn.0),
                Entry::Error { conn, .. } => format!("error {}", conn.unwrap().0),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_watch_that_panics_is_dropped_and_the_others_go_on() {
        let mut watches = Watches::default();
        for n in [1, 2] {
            watches.start(ConnId(n), Box::new(Echo(ConnId(n))));
        }
        let mut out = Vec::new();
        let mut push = |e| out.push(e);
        watches.note(ConnId(1), chunk("boom"), &mut push);
        watches.note(ConnId(1), chunk("later"), &mut push);
        watches.note(ConnId(2), chunk("fine"), &mut push);
        watches.finish(ConnId(1), Instant::now(), &mut push);
        watches.finish_all(Instant::now(), &mut push);
        assert_eq!(names(&out), ["error 1", "open 2", "close 2"]);
    }

    #[test]
    fn watches_left_at_the_end_finish_in_connection_order() {
        let mut watches = Watches::default();
        for n in [9, 3, 5] {
            watches.start(ConnId(n), Box::new(Echo(ConnId(n))));
        }
        let mut out = Vec::new();
        watches.finish_all(Instant::now(), &mut |e| out.push(e));
        assert_eq!(names(&out), ["close 3", "close 5", "close 9"]);
    }
}
