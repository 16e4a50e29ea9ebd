//! `plugtap client`: the stand-in for Kong.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::cli::{CommonArgs, parse_secs};
use plugtap::exit::Outcome;
use plugtap::protocol::Protocol;
use plugtap::role::client::{self, ClientOptions};
use plugtap::role::{pb_client, prox_client};
use plugtap::spec::{Spec, StartCmd};

/// Why `--protocol go-plugin` cannot run a Kong spec.
pub const GO_PLUGIN_SPEC: &str = "go-plugin specs have their own format: write \"protocol\": \"go-plugin\" in the spec file (see README, HashiCorp go-plugin)";

/// Arguments of `client`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Spec file ("-" reads stdin).
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,

    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub run: ClientRunArgs,

    #[command(flatten)]
    pub load: super::load::LoadArgs,
}

/// Client options also accepted by `run`.
#[derive(Debug, Args)]
pub struct ClientRunArgs {
    /// Command starting the server under test (run by /bin/sh); overrides
    /// the spec's `start_cmd`.
    #[arg(long, value_name = "CMD", conflicts_with = "no_start")]
    pub start_cmd: Option<String>,

    /// Do not run the spec's `start_cmd`; the server is already running.
    #[arg(long)]
    pub no_start: bool,

    /// Seconds to wait for each reply.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub timeout: Duration,

    /// Seconds to wait for the socket to accept connections.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub wait: Duration,

    /// Seconds the started server gets to exit after SIGTERM before SIGKILL.
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = parse_secs)]
    pub grace: Duration,

    /// Print the full report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl Default for ClientRunArgs {
    fn default() -> Self {
        ClientRunArgs {
            start_cmd: None,
            no_start: false,
            timeout: Duration::from_secs(60),
            wait: Duration::from_secs(10),
            grace: Duration::from_secs(3),
            json: false,
        }
    }
}

pub async fn drive(
    spec: &Spec,
    common: &CommonArgs,
    args: &ClientRunArgs,
    full: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<Outcome> {
    let protocol = common.protocol.unwrap_or(spec.protocol);
    let start_cmd = if args.no_start {
        None
    } else {
        args.start_cmd
            .clone()
            .map(StartCmd::Shell)
            .or_else(|| spec.client.start_cmd.clone())
    };
    let opts = ClientOptions {
        socket: common.socket.clone().or_else(|| spec.socket.clone()),
        start_cmd,
        call_timeout: args.timeout,
        wait: args.wait,
        grace: args.grace,
        limits: common.limits_for(protocol),
        full_values: full,
    };
    if spec.client.kong.is_some() {
        let report = match protocol {
            Protocol::ProtoBuf1 => plugtap::role::pb_kong::run(spec, opts, shutdown).await?,
            _ => plugtap::role::kong_client::run(spec, opts, shutdown).await?,
        };
        eprint!("{}", report.render(full));
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        return Ok(report.outcome());
    }
    let report = match protocol {
        Protocol::MsgPack1 => client::run(spec, opts, shutdown).await?,
        Protocol::ProtoBuf1 => pb_client::run(spec, opts, shutdown).await?,
        Protocol::GoPlugin => anyhow::bail!(GO_PLUGIN_SPEC),
        Protocol::Prox => {
            let report = prox_client::run(spec, opts, shutdown).await?;
            eprint!("{}", report.render());
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            return Ok(report.outcome());
        }
    };
    eprint!("{}", report.render());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(report.outcome())
}
