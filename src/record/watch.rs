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
//! queues each chunk right after writing it, with no await in between, so
//! that is read order across both directions (a reply can only be read
//! after its request was written).
//!
//! [`Recorder::watch_only`]: super::Recorder::watch_only

use std::time::Instant;

use crate::conversation::Chunk;
use crate::message::Direction;

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
    /// The connection is done: ends what is open and records its close.
    fn finish(self: Box<Self>, out: &mut dyn FnMut(Entry));
}

impl std::fmt::Debug for dyn Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}
