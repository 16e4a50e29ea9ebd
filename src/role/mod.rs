//! The roles: mock server, Kong stand-in (client) and the proxy between
//! Kong and a real server; for `prox`, a mock plugin, a stand-in for
//! prox and a wrapper recording a real plugin.
//!
//! Roles sit on top of the lower layers: they read and write through
//! [`crate::net::Connection`], decode with [`crate::codec`], give frames
//! meaning with [`crate::message`] and take their script from a
//! [`crate::spec::Spec`]. They never parse bytes themselves.

mod accept;
pub mod client;
mod client_concurrent;
mod faults;
pub mod kong_client;
pub mod kong_emulation;
pub mod kong_event;
pub mod kong_report;
pub mod kong_rpc;
pub mod kong_wire;
pub mod launch;
pub mod load;
mod load_report;
pub mod near_miss;
pub mod pb_client;
mod pb_faults;
pub mod pb_kong;
mod pb_kong_wire;
mod pb_outcome;
pub mod pb_server;
mod pb_wire;
mod prox_calls;
pub mod prox_client;
mod prox_hooks;
pub mod prox_proxy;
mod prox_relay;
pub mod prox_report;
pub mod prox_server;
mod prox_stdio;
mod prox_wire;
pub mod proxy;
mod proxy_backlog;
mod proxy_conn;
mod proxy_decode;
mod proxy_modes;
mod replies;
pub mod report;
pub mod server;
pub mod server_report;
pub mod unsolicited;

use crate::message::{Direction, MessageView};
use crate::net::ConnId;

/// Logs one message as a single line: connection, direction, kind, id,
/// method and a (with `full`, unshortened) value.
pub fn log_message(conn: ConnId, dir: Direction, view: &MessageView, full: bool) {
    tracing::info!("{conn} {} {}", dir.arrow(), view.summary(full));
}
