//! Conversations: per-connection state that gives each frame its meaning
//! from what came before it, in both directions.
//!
//! [`protobuf`] follows a `ProtoBuf:1` connection, where what a frame is
//! (RpcCall, PDK method name, arguments, reply, end of calls, RpcReturn)
//! depends on the frames before it. [`prox`] follows a prox plugin socket
//! connection, where a reply is decoded with the hook of the call before it.

pub mod protobuf;
mod protobuf_decode;
pub mod prox;
