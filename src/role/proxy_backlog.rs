//! The order of one proxied connection's notes on their way to the
//! recording's thread.
//!
//! Both pumps of a connection queue a note right after each write, so
//! queuing order is read order across both directions. The channel is
//! bounded, and waiting for room must not let a later note overtake: tokio
//! hands room to the waiting sender first, but that sender only sends when
//! its task is polled again, and the other pump of the same task may find
//! more room freed meanwhile and send the answer first (the 64 × 1 000
//! load test saw replies recorded before their requests). So a note that
//! finds no room waits here, later notes line up behind it, and whichever
//! pump gets room sends the oldest.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::net::ConnId;
use crate::record::{Entry, Note, RecordTx};

/// One connection's notes on their way to the recording's thread, in the
/// order the pumps queue them.
pub(super) struct Backlog<'a> {
    conn: ConnId,
    tx: &'a RecordTx,
    /// Notes that found the channel full, oldest first. Each pump waits
    /// until it is empty again, so it holds at most a note or two per pump.
    /// (A pump whose note the other one sent may still wait for room once
    /// more; that happens only while the recording thread is behind.)
    waiting: Mutex<VecDeque<Entry>>,
}

impl<'a> Backlog<'a> {
    pub(super) fn new(conn: ConnId, tx: &'a RecordTx) -> Backlog<'a> {
        Backlog {
            conn,
            tx,
            waiting: Mutex::new(VecDeque::new()),
        }
    }

    /// The lock is held only for a push or a pop, never across an await.
    fn lock(&self) -> MutexGuard<'_, VecDeque<Entry>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `note` after every note queued before it; returns once
    /// nothing waits any more.
    pub(super) async fn put(&self, note: Note) {
        let entry = Entry::Note {
            conn: self.conn,
            note,
        };
        {
            let mut waiting = self.lock();
            if !waiting.is_empty() {
                waiting.push_back(entry);
            } else if let Err(entry) = self.tx.try_send(entry) {
                waiting.push_back(entry);
            }
        }
        while !self.lock().is_empty() {
            let Some(permit) = self.tx.reserve().await else {
                // The writer has stopped (only at the very end).
                self.lock().clear();
                return;
            };
            // Whichever pump got room sends the oldest note.
            if let Some(entry) = self.lock().pop_front() {
                permit.send(entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::Poll;
    use std::time::Instant;

    use bytes::Bytes;

    use super::*;
    use crate::conversation::Chunk;
    use crate::message::Direction;

    fn chunk(dir: Direction, text: &'static str) -> Note {
        Note::Chunk(Chunk {
            dir,
            bytes: Bytes::from_static(text.as_bytes()),
            at: Instant::now(),
        })
    }

    fn text(entry: Entry) -> String {
        match entry {
            Entry::Note {
                note: Note::Chunk(c),
                ..
            } => String::from_utf8_lossy(&c.bytes).into_owned(),
            other => format!("{other:?}"),
        }
    }

    async fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await
    }

    #[tokio::test]
    async fn an_answer_does_not_overtake_a_request_waiting_for_room() {
        let (tx, mut rx) = RecordTx::channel(2);
        let conn = ConnId(7);
        for filler in ["f1", "f2"] {
            tx.send(Entry::Note {
                conn,
                note: chunk(Direction::ToServer, filler),
            })
            .await;
        }
        let notes = Backlog::new(conn, &tx);
        let mut request = pin!(notes.put(chunk(Direction::ToServer, "request")));
        assert!(
            poll_once(request.as_mut()).await.is_pending(),
            "the channel is full"
        );
        // Room for two: one is handed to the waiting request, one is free.
        assert_eq!(text(rx.recv().await.unwrap()), "f1");
        assert_eq!(text(rx.recv().await.unwrap()), "f2");
        // The answer comes before the request's pump runs again.
        let mut answer = pin!(notes.put(chunk(Direction::ToClient, "answer")));
        let answered = poll_once(answer.as_mut()).await.is_ready();
        let answer = async {
            if !answered {
                answer.await;
            }
        };
        // A pump whose note the other one sent may still wait for room
        // once, so the receiver keeps going meanwhile.
        let receive = async {
            let first = text(rx.recv().await.unwrap());
            (first, text(rx.recv().await.unwrap()))
        };
        let ((), (), got) = tokio::join!(request, answer, receive);
        assert_eq!(got, ("request".to_owned(), "answer".to_owned()));
    }

    #[tokio::test]
    async fn with_room_a_note_goes_straight_through() {
        let (tx, mut rx) = RecordTx::channel(4);
        let notes = Backlog::new(ConnId(1), &tx);
        notes.put(chunk(Direction::ToServer, "a")).await;
        notes.put(chunk(Direction::ToClient, "b")).await;
        assert!(notes.lock().is_empty());
        assert_eq!(text(rx.recv().await.unwrap()), "a");
        assert_eq!(text(rx.recv().await.unwrap()), "b");
    }
}
