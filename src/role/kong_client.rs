//! The client role emulating Kong (over `MsgPack:1` or, through
//! [`super::pb_kong`], `ProtoBuf:1`): a spec's `kong`
//! section runs requests through a plugin the way Kong 3.x does.
//!
//! For each request and phase: get an instance id (`StartInstance` with
//! the config JSON when none is cached or the config changed, then
//! `CloseInstance` of the old one), send `plugin.HandleEvent`, and answer
//! every `{Method, Args}` the server asks for with the Step method Kong
//! would use, until `Data` is `"ret"`. `kong.response.exit` and
//! `kong.response.error` get no answer and end the event. An error with
//! `no plugin instance` resets the instance and retries the event, at most
//! `max_resets` times (Kong never stops retrying).
//!
//! Kong's decisions come from [`crate::kong`]; the emulation itself is
//! [`super::kong_emulation`], and the wire protocol a [`KongWire`]:
//! [`MpWire`] here ([`super::kong_rpc`], [`super::kong_wire`]),
//! `ProtoBuf:1` in [`super::pb_kong`].

use rmpv::Value as Mp;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::client::ClientOptions;
use super::kong_emulation::{KongWire, emulate};
use super::kong_event::{self, Event, EventEnd, Failure};
use super::kong_report::KongReport;
use super::kong_rpc::{Pool, Rpc};
use super::kong_wire::{field, lua_value, table};
use crate::codec::MsgpackCodec;
use crate::error::Result;
use crate::net::Connection;
use crate::spec::Spec;
use crate::value_json;

/// Runs the spec's `kong` section against a server.
pub async fn run(
    spec: &Spec,
    opts: ClientOptions,
    shutdown: CancellationToken,
) -> Result<KongReport> {
    emulate(spec, &opts, shutdown, |socket, first| {
        let mut pool = Pool::new(socket, opts.limits);
        pool.release(Connection::new(first, MsgpackCodec::new(opts.limits)));
        MpWire {
            rpc: Rpc::new(opts.call_timeout, opts.full_values),
            pool,
        }
    })
    .await
}

/// `MsgPack:1`: Kong's `Rpc` over a connection pool.
pub struct MpWire {
    rpc: Rpc,
    pool: Pool,
}

impl KongWire for MpWire {
    fn protocol(&self) -> &'static str {
        "MsgPack:1"
    }

    async fn start(
        &mut self,
        plugin: &str,
        config: &str,
        shutdown: &CancellationToken,
    ) -> std::result::Result<Json, Failure> {
        let arg = table(vec![
            ("Name", Mp::from(plugin)),
            ("Config", Mp::from(config)),
        ]);
        let status = self
            .rpc
            .call(&mut self.pool, "plugin.StartInstance", arg, shutdown)
            .await
            .map_err(Failure::Call)?;
        Ok(field(&status, "Id").map_or(Json::Null, value_json::to_json))
    }

    async fn close(
        &mut self,
        id: &Json,
        shutdown: &CancellationToken,
    ) -> std::result::Result<(), Failure> {
        self.rpc
            .call(
                &mut self.pool,
                "plugin.CloseInstance",
                lua_value(id),
                shutdown,
            )
            .await
            .map(drop)
            .map_err(Failure::Call)
    }

    async fn event(
        &mut self,
        mut event: Event<'_>,
        instance_id: &Json,
        phase: &str,
        shutdown: &CancellationToken,
    ) -> std::result::Result<EventEnd, Failure> {
        let step_in = kong_event::handle_event(
            &mut self.rpc,
            &mut self.pool,
            instance_id,
            phase,
            event.report,
            shutdown,
        )
        .await?;
        event
            .finish(&mut self.rpc, &mut self.pool, step_in, shutdown)
            .await
    }

    fn take_pid_change(&mut self) -> Option<Json> {
        self.rpc.take_pid_change()
    }

    fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.rpc.discarded)
    }
}
