//! HashiCorp go-plugin: plugins that print a handshake line on stdout and
//! serve gRPC on the socket it names (Terraform, Vault, Packer, Nomad).
//!
//! Layers, bottom up:
//!
//! * [`handshake`], [`goparse`], [`diagnose`], [`env`](mod@env): the handshake line,
//!   the host's checks and error texts, the environment between host and
//!   plugin.
//! * [`frame`]: gRPC's 5-byte message prefix (a codec, no I/O).
//! * [`wire`], [`schema`], [`reflection`]: protobuf messages without a
//!   schema, with one from `.proto` files or descriptor sets, or fetched by
//!   server reflection.
//! * [`grpc`], [`call`]: gRPC over HTTP/2 (`h2`, h2c with prior knowledge).
//! * [`event`], [`observer`]: what the proxy saw, decoded off the
//!   forwarding path into protocol-neutral views.
//! * Roles: [`proxy`] (the wrapper a host launches instead of the plugin,
//!   with [`forward`], [`broker`] and [`passthrough`], recording through
//!   [`recording`] and [`stderr`]), [`mock`] (a mock
//!   plugin from a spec, with [`services`]) and [`host`] (a stand-in host,
//!   with [`host_streams`], [`launch`] and [`report`]); their spec format is [`spec`].

pub mod broker;
pub mod call;
pub mod diagnose;
pub mod env;
pub mod event;
pub mod forward;
pub mod frame;
pub mod goparse;
pub mod grpc;
pub mod handshake;
pub mod host;
pub mod host_streams;
pub mod launch;
pub mod mock;
mod mock_broker;
pub mod observer;
pub mod passthrough;
pub mod proxy;
mod proxy_rec;
pub mod recording;
pub mod reflection;
pub mod report;
pub mod schema;
pub mod services;
pub mod spec;
mod spec_load;
pub mod stderr;
pub mod wire;
