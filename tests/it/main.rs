//! The one integration-test binary. Roles are tested end to end: the built
//! `plugtap` binary runs on temporary Unix sockets, against raw peers,
//! against its own other role, and against the real Python pluginserver.

mod check;
mod cli;
mod client;
mod codec;
mod export;
mod export_prox;
mod export_roundtrip;
mod faults;
mod goplugin;
mod kong;
mod kong_mock;
mod kong_query;
mod kong_wire;
mod pb_codec;
mod pb_conversation;
mod pb_export;
mod pb_faults;
mod pb_inject;
mod pb_kong;
mod pb_proxy;
mod pb_roles;
mod pb_vectors;
mod peer;
mod props;
mod prox_codec;
mod prox_conversation;
mod prox_faults;
mod prox_mock;
mod prox_proxy;
mod prox_proxy_faults;
mod prox_roles;
mod prox_vectors;
mod proxy;
mod proxy_edges;
mod proxy_faults;
mod recordings;
mod server;
mod spec_load;
mod specs;
mod support;
mod tidy;
mod value_json;
mod verify;
mod verify_modes;
