//! `plugtap server`: the mock pluginserver.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::cli::CommonArgs;
use plugtap::exit::Outcome;
use plugtap::protocol::Protocol;
use plugtap::role::server::{self, ServerOptions};
use plugtap::role::{pb_server, prox_server};
use plugtap::spec::Spec;

/// Arguments of `server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Spec file ("-" reads stdin).
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,

    #[command(flatten)]
    pub common: CommonArgs,

    /// How replies cycle; overrides the spec's `cycle`.
    #[arg(long, value_enum)]
    pub cycle: Option<CycleArg>,

    /// Do not print each connection's conversation on stdout.
    #[arg(long)]
    pub no_conversations: bool,

    #[command(flatten)]
    pub verify: VerifyArgs,
}

/// What the server reports at exit (MsgPack:1).
#[derive(Debug, Clone, Default, Args)]
pub struct VerifyArgs {
    /// At exit, write a JSON report (entries never used, requests no entry
    /// matched with the nearest entry and why) to FILE, or as the last
    /// line on stdout with `-` or no value.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub report: Option<PathBuf>,

    /// Exit 1 when a spec entry was never used or a request matched no
    /// entry.
    #[arg(long)]
    pub verify: bool,
}

/// `--cycle` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CycleArg {
    /// Each connection walks the reply list on its own.
    PerConnection,
    /// One position per method shared by all connections.
    Global,
}

pub async fn serve(
    spec: &Spec,
    common: &CommonArgs,
    print_conversations: bool,
    verify: &VerifyArgs,
    full: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<Outcome> {
    let protocol = common.protocol.unwrap_or(spec.protocol);
    let socket = common
        .socket
        .clone()
        .or_else(|| spec.socket.clone())
        .unwrap_or_else(|| match protocol {
            Protocol::Prox => prox_server::default_socket(),
            _ => "mock.socket".into(),
        });
    let opts = ServerOptions {
        socket,
        limits: common.limits_for(protocol),
        full_values: full,
        print_conversations,
        log_messages: true,
        report: verify.report.clone(),
        verify: verify.verify,
    };
    tracing::debug!("protocol {protocol}");
    if protocol != Protocol::MsgPack1 && (verify.report.is_some() || verify.verify) {
        anyhow::bail!("--report and --verify are only available for MsgPack:1 so far");
    }
    match protocol {
        Protocol::MsgPack1 => Ok(server::run(spec, opts, shutdown).await?),
        Protocol::ProtoBuf1 => Ok(pb_server::run(spec, opts, shutdown).await?),
        Protocol::GoPlugin => anyhow::bail!(super::client::GO_PLUGIN_SPEC),
        Protocol::Prox => Ok(prox_server::run(spec, opts, shutdown).await?),
    }
}
