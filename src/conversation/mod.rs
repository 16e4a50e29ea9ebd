//! Conversations: per-connection state that gives each frame its meaning
//! from what came before it, in both directions.
//!
//! [`protobuf`] follows a `ProtoBuf:1` connection, where what a frame is
//! (RpcCall, PDK method name, arguments, reply, end of calls, RpcReturn)
//! depends on the frames before it.

pub mod protobuf;
mod protobuf_decode;
