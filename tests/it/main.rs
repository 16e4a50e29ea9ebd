//! The one integration-test binary. Roles are tested end to end: the built
//! `plugtap` binary runs on temporary Unix sockets, against raw peers,
//! against its own other role, and against the real Python pluginserver.

mod cli;
mod client;
mod codec;
mod goplugin;
mod peer;
mod props;
mod server;
mod spec_load;
mod specs;
mod support;
mod tidy;
mod value_json;
