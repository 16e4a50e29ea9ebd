//! Command-line interface: the top-level clap definitions and the options
//! several subcommands share. Each subcommand's own arguments live next to
//! its code in `src/commands/`.

use std::path::PathBuf;
use std::time::Duration;

use crate::commands::check::CheckArgs;
use crate::commands::client::ClientArgs;
use crate::commands::export::{self, ExportArgs};
use crate::commands::kong_conf::{self, KongConfArgs};
use crate::commands::proxy::{self, ProxyArgs};
use crate::commands::run::RunArgs;
use crate::commands::server::ServerArgs;
use crate::commands::show::{self, ShowArgs};

use clap::{ArgAction, Args, Parser, Subcommand};

use plugtap::codec::Limits;
use plugtap::protocol::Protocol;

const EXAMPLES: &str = "\
Examples:
  # A mock pluginserver from a spec, on the spec's socket:
  plugtap server --spec specs/mock-hello.json --socket /tmp/hello.sock

  # Drive a real pluginserver the way Kong would, starting it first:
  plugtap client --spec specs/client-event-cycle.json --socket /tmp/hello.sock \\
      --start-cmd 'kong-python-pluginserver -d plugins -p /tmp --socket-name hello.sock'

  # Load: 16 connections running the steps 1000 times each:
  plugtap client --spec specs/client-event-cycle.json --socket /tmp/hello.sock \\
      --concurrency 16 --repeat 1000

  # Run a request through a plugin as Kong would (a spec with a `kong` section):
  plugtap client --spec specs/kong-hello.json --socket /tmp/hello.sock

  # Check that a pluginserver behaves the way Kong needs:
  plugtap check --socket /tmp/hello.sock --plugin hello_peer

  # Wrap a HashiCorp go-plugin plugin: give this to the host as the plugin
  # command; every gRPC call is decoded on stderr:
  plugtap proxy --protocol go-plugin -- ./my-plugin

  # The original tool's interface: role from the spec, spec from a file or stdin:
  plugtap -s specs/original-server.json
  plugtap < specs/original-server.json

  # A ProtoBuf:1 (go-pdk) mock and Kong's side of an event cycle against it:
  plugtap server --spec specs/pb-mock-go-peer.json --socket /tmp/go-peer.socket
  plugtap client --spec specs/pb-client-event-cycle.json --socket /tmp/go-peer.socket

  # Sit between Kong and a real server, recording; then look at it:
  plugtap proxy --listen /tmp/front.sock --upstream /tmp/back.sock --record calls.jsonl
  plugtap show calls.jsonl

  # Turn it into a mock server spec, or into Kong's side to replay:
  plugtap export calls.jsonl --as server -o mock.json
  plugtap export calls.jsonl --as client -o replay.json

  # prox plugins: drive a plugin as prox would (start it, configure, call hooks),
  # here the mock plugin, which prox could also run as a plugin command:
  plugtap client --spec specs/prox-client-mock.json
  plugtap client --spec specs/prox-client.json --start-cmd ./my-prox-plugin

Exit codes: 0 all passed, 1 an expectation failed or a malformed message
arrived, 2 usage or runtime error.";

/// Watch, mock and drive Kong's external plugin servers.
///
/// plugtap speaks Kong's pluginserver protocols (MsgPack:1, ProtoBuf:1),
/// prox's plugin protocol (prox) and HashiCorp's go-plugin (go-plugin). As
/// a server it mocks a pluginserver (or a plugin) from a JSON spec; as a
/// client it stands in for Kong (or prox, or a go-plugin host) and drives a
/// real one; as a proxy it sits between them, decoding and recording every
/// message; `export` turns a recording into specs that replay it.
#[derive(Debug, Parser)]
#[command(name = "plugtap", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Spec file to run in the role it names ("-" reads stdin). Without a
    /// subcommand and without -s, the spec is read from stdin.
    #[arg(short = 's', long = "spec", value_name = "SPEC")]
    pub spec: Option<PathBuf>,

    #[command(flatten)]
    pub verbosity: Verbosity,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Log verbosity, shared by all subcommands.
#[derive(Debug, Args)]
pub struct Verbosity {
    /// More detail on stderr: -v shows values in full, -vv adds debug logs.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a spec in the role it names ("role": "server" or "client").
    #[command(after_help = "Example:\n  plugtap run specs/original-server.json")]
    Run(RunArgs),

    /// Mock pluginserver: answer requests from a spec's `on_methods`.
    ///
    /// Serves many connections at once; prints each connection's
    /// conversation as one JSON line on stdout when it closes. A stale
    /// socket file is replaced; a live listener or a non-socket file is
    /// refused. The socket is removed on exit (SIGINT/SIGTERM).
    #[command(
        after_help = "Example:\n  plugtap server --spec specs/mock-hello.json --socket /tmp/hello.sock"
    )]
    Server(ServerArgs),

    /// Stand-in for Kong: run a spec's `try_methods` (or `kong` section)
    /// against a pluginserver.
    ///
    /// Sends one call at a time, waits for each reply, checks `expect`,
    /// keeps `capture`d values for `${name}` in later steps. With a `kong`
    /// section, runs requests through a plugin as Kong does and shows what
    /// the plugin asked Kong and what it set. Prints a summary on stderr;
    /// --json prints the full report on stdout.
    #[command(
        after_help = "Example:\n  plugtap client --spec specs/client-event-cycle.json --socket /tmp/hello.sock \\\n      --start-cmd 'kong-python-pluginserver -d plugins -p /tmp --socket-name hello.sock'"
    )]
    Client(ClientArgs),

    /// Man in the middle between Kong and a real pluginserver: forward
    /// every byte unchanged, log every frame, record to JSON Lines.
    ///
    /// With `-- CMD ARGS...` it starts the real server itself (drop-in
    /// wrapper for Kong's `pluginserver_<name>_start_cmd`), passes
    /// SIGTERM/SIGINT on to it and exits when it exits.
    ///
    /// With `--protocol go-plugin`, plugtap is the plugin command a
    /// go-plugin host launches: it starts the real plugin, rewrites its
    /// handshake to point at plugtap, and decodes every gRPC call
    /// (schema-less, or with --proto / --descriptor-set / server
    /// reflection).
    #[command(after_help = proxy::EXAMPLES)]
    Proxy(ProxyArgs),

    /// Show a recording: one line per event, JSON, or a Mermaid diagram.
    #[command(after_help = show::EXAMPLES)]
    Show(ShowArgs),

    /// Print the kong.conf lines that put `plugtap proxy` in front of a
    /// pluginserver.
    #[command(name = "kong-conf", after_help = kong_conf::EXAMPLES)]
    KongConf(KongConfArgs),

    /// Check that a pluginserver behaves the way Kong needs.
    ///
    /// Runs a fixed list of checks (listed below) against one server and
    /// prints a pass/fail table on stderr; every failure says what Kong
    /// would do in production. --json prints the report on stdout.
    #[command(after_help = crate::commands::check::help())]
    Check(CheckArgs),

    /// Turn a recording into a spec: a mock server that answers as the
    /// recorded server did (--as server), or Kong's side, replayable
    /// against a fresh server (--as client).
    ///
    /// Server-generated values Kong sent back (instance and event ids)
    /// become captures; volatile fields (StartTime, pids) are left out of
    /// expectations unless --keep-volatile. The output is deterministic.
    #[command(after_help = export::EXAMPLES)]
    Export(ExportArgs),
}

/// Options every role takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Socket path; overrides the spec's `socket`.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Protocol; overrides the spec's `protocol`.
    #[arg(long, value_name = "NAME", value_parser = parse_protocol)]
    pub protocol: Option<Protocol>,

    /// Largest accepted message in bytes [default: 16 MiB; prox: 1 MiB, prox's frame limit].
    #[arg(long, value_name = "BYTES")]
    pub max_message: Option<usize>,

    /// Deepest accepted nesting of arrays and maps.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_MAX_DEPTH)]
    pub max_depth: usize,
}

impl Default for CommonArgs {
    fn default() -> Self {
        CommonArgs {
            socket: None,
            protocol: None,
            max_message: None,
            max_depth: Limits::DEFAULT_MAX_DEPTH,
        }
    }
}

impl CommonArgs {
    /// The decoding limits these options set for Kong's protocols. Kept for
    /// subcommands that have no protocol to ask about.
    #[allow(dead_code)]
    pub fn limits(&self) -> Limits {
        self.limits_for(Protocol::MsgPack1)
    }

    /// The decoding limits for `protocol`: its own message limit unless
    /// --max-message says otherwise.
    pub fn limits_for(&self, protocol: Protocol) -> Limits {
        let default = match protocol {
            Protocol::Prox => plugtap::codec::prox::MAX_FRAME,
            _ => Limits::DEFAULT_MAX_MESSAGE,
        };
        Limits {
            max_message: self.max_message.unwrap_or(default),
            max_depth: self.max_depth,
        }
    }
}

pub fn parse_protocol(s: &str) -> Result<Protocol, String> {
    s.parse()
}

pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("`{s}` is not a usable number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
