//! Bytes a server sends that nobody asked for.
//!
//! Kong reads each reply with a fresh decoder, so anything a server sends
//! after a response is dropped if it arrives in the same read, and
//! otherwise sits in the socket until Kong's next call on that pooled
//! connection reads it as the reply ("unexpected RPC response ID").
//! Notifications are the exception: Kong handles them whenever it reads.

use std::time::Duration;

use serde_json::Value as Json;

use super::log_message;
use crate::codec::{MsgpackCodec, hex};
use crate::message::{Direction, Kind, msgpack_rpc};
use crate::net::Connection;

/// What arrived on an idle connection.
#[derive(Debug, Default)]
pub struct Stray {
    /// Notifications (harmless), as JSON.
    pub notifications: Vec<Json>,
    /// Every other byte.
    pub bytes: Vec<u8>,
    /// True when the server closed the connection meanwhile.
    pub closed: bool,
}

impl Stray {
    /// A complaint about the stray bytes, if there are any.
    pub fn complaint(&self) -> Option<String> {
        if self.bytes.is_empty() {
            return None;
        }
        Some(format!(
            "the server sent {} byte(s) nobody asked for after its last reply: {} \
             (Kong drops them, or reads them as the reply to its next call on this connection \
             and fails with \"unexpected RPC response ID from Go plugin server\")",
            self.bytes.len(),
            hex(&self.bytes[..self.bytes.len().min(256)])
        ))
    }
}

/// Reads whatever arrives on an idle connection within `wait` (with
/// `Duration::ZERO`, only what the socket already holds).
pub async fn stray_bytes(
    conn: &mut Connection<MsgpackCodec>,
    wait: Duration,
    full_values: bool,
) -> Stray {
    let mut out = Stray::default();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, conn.read_frame()).await {
            Ok(Ok(Some(frame))) => {
                let view = msgpack_rpc::view_of(&frame.value);
                log_message(conn.id(), Direction::ToClient, &view, full_values);
                if view.kind == Kind::Notification {
                    out.notifications.push(view.value);
                } else {
                    out.bytes.extend_from_slice(&frame.raw);
                }
            }
            Ok(Ok(None)) => {
                out.closed = true;
                break;
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
    out.bytes.extend_from_slice(conn.pending());
    out
}
