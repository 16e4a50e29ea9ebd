//! Kong's side of the plugin protocols, independent of the wire format.
//!
//! Everything here is what Kong *decides*, not how it encodes it:
//!
//! * [`pdk`]: the PDK emulated for one request (getters from a request
//!   model, setters recorded as [`effects`], canned answers from
//!   [`canned`]);
//! * [`step`]: Kong's conversions of PDK results, the Step method that
//!   carries them, the calls that get no answer, and the reset rule;
//! * [`instance`]: the instance lifecycle (config JSON with Kong's keys,
//!   reuse, close on config change, reset);
//! * [`query`]: what Kong accepts from a pluginserver's query command;
//! * [`request`]: the HTTP request and upstream response the PDK shows.
//!
//! The `MsgPack:1` driver in [`crate::role::kong_client`] encodes these
//! decisions on the wire; a `ProtoBuf:1` driver can reuse them unchanged.

pub mod canned;
pub mod effects;
pub mod instance;
pub mod pdk;
pub mod query;
pub mod request;
pub mod step;
