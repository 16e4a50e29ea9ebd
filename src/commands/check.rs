//! `plugtap check`: conformance checks of a pluginserver.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::cli::parse_secs;
use plugtap::check::{self, CheckOptions};
use plugtap::codec::Limits;
use plugtap::exit::Outcome;
use plugtap::spec::StartCmd;

/// Arguments of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The socket Kong is configured with (pluginserver_<name>_socket).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,

    /// The plugin to check, as the server names it.
    #[arg(long, value_name = "NAME")]
    pub plugin: String,

    /// Command starting the server (pluginserver_<name>_start_cmd; run by
    /// /bin/sh). Without it the server must already run.
    #[arg(long, value_name = "CMD")]
    pub start_cmd: Option<String>,

    /// Kong's query command for the server (pluginserver_<name>_query_cmd).
    #[arg(long, value_name = "CMD")]
    pub query_cmd: Option<String>,

    /// The plugin's config as JSON (Kong adds its own keys).
    #[arg(long, value_name = "JSON", default_value = "{}")]
    pub config: String,

    /// Phase to run events in [default: access, or the plugin's first phase].
    #[arg(long, value_name = "PHASE")]
    pub phase: Option<String>,

    /// Seconds to wait for each reply.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub timeout: Duration,

    /// Seconds to wait for the socket and for the query command.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub wait: Duration,

    /// Seconds a started server gets to exit after SIGTERM before SIGKILL.
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = parse_secs)]
    pub grace: Duration,

    /// Connections used by the concurrent_events check.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub connections: usize,

    /// Protocol to speak (default: what the query output says, else
    /// MsgPack:1).
    #[arg(long, value_name = "NAME", value_parser = crate::cli::parse_protocol)]
    pub protocol: Option<plugtap::protocol::Protocol>,

    /// Print the full report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn check(
    args: &CheckArgs,
    full: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<Outcome> {
    let config: serde_json::Value =
        serde_json::from_str(&args.config).context("--config is not JSON")?;
    anyhow::ensure!(config.is_object(), "--config must be a JSON object");
    if let Some(p) = &args.phase {
        anyhow::ensure!(
            plugtap::spec::kong::PHASES.contains(&p.as_str()),
            "--phase {p:?} is not a phase Kong runs external plugins in ({})",
            plugtap::spec::kong::PHASES.join(", ")
        );
    }
    anyhow::ensure!(
        (2..=256).contains(&args.connections),
        "--connections must be between 2 and 256 (Kong's lua_socket_pool_size)"
    );
    let opts = CheckOptions {
        socket: args.socket.clone(),
        start_cmd: args.start_cmd.clone().map(StartCmd::Shell),
        query_cmd: args.query_cmd.clone(),
        plugin: args.plugin.clone(),
        config,
        phase: args.phase.clone(),
        timeout: args.timeout,
        wait: args.wait,
        grace: args.grace,
        limits: Limits::default(),
        full_values: full,
        connections: args.connections,
        protocol: args.protocol,
    };
    let report = check::run(&opts, shutdown).await;
    eprint!("{}", report.render());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(report.outcome())
}

/// The `after_help` of `check`: examples and the list of checks.
pub fn help() -> String {
    let mut s = String::from(
        "Examples:\n  \
         # The Python server, started by plugtap, with Kong's query command:\n  \
         plugtap check --socket /tmp/ps/py.sock --plugin my-plugin \\\n      \
         --start-cmd 'kong-python-pluginserver -d plugins -p /tmp/ps --socket-name py.sock' \\\n      \
         --query-cmd 'kong-python-pluginserver -d plugins --dump-all-plugins'\n\n  \
         # A server that is already running, report as JSON:\n  \
         plugtap check --socket /usr/local/kong/my-plugin.socket --plugin my-plugin --json\n\n  \
         # A go-pdk (ProtoBuf:1) plugin; its -dump output names the protocol:\n  \
         plugtap check --socket /tmp/k/my-plugin.socket --plugin my-plugin \\\n      \
         --start-cmd 'my-plugin -kong-prefix /tmp/k' --query-cmd 'my-plugin -dump'\n\n\
         Checks, in order:\n",
    );
    for (name, what) in check::CHECKS {
        s.push_str(&format!("  {name:26} {what}\n"));
    }
    s.push_str("\nExit codes: 0 no check failed, 1 a check failed, 2 usage or runtime error.");
    s
}
