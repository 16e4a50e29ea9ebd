//! plugtap: watch, mock and drive Kong's external plugin servers.
//!
//! Layers, bottom up (see ARCHITECTURE.md):
//!
//! * [`codec`]: bytes to frames, with limits; no I/O.
//! * [`message`]: frames to typed messages and a protocol-neutral view.
//! * [`conversation`]: per-connection state giving frames their meaning.
//! * [`value_json`]: the lossless msgpack ⇄ JSON mapping.
//! * [`net`]: socket paths and the one [`net::Connection`] type.
//! * [`spec`]: spec files (loading, matching, templating).
//! * [`kong`]: Kong's side of the protocols (PDK, instances, query output).
//! * [`role`]: the server and client roles.
//! * [`check`]: conformance checks of a pluginserver (`plugtap check`).
//! * [`export`]: recordings to specs (`plugtap export`).
//! * [`process`], [`shutdown`]: child processes and signals.
//! * [`goplugin`]: HashiCorp go-plugin (handshake, gRPC decoding, roles).
//!
//! The binary (`src/main.rs`) only parses arguments, sets up logging and
//! maps results to [`exit`] codes.

#![forbid(unsafe_code)]

pub mod check;
pub mod codec;
pub mod conversation;
pub mod error;
pub mod exit;
pub mod export;
pub mod goplugin;
pub mod kong;
pub mod message;
pub mod net;
pub mod process;
pub mod protocol;
pub mod record;
pub mod role;
pub mod show;
pub mod shutdown;
pub mod spec;
pub mod value_json;

pub use error::{Error, Result};
