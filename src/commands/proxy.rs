//! `plugtap proxy`: the man in the middle, and its drop-in wrapper mode.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use super::goplugin::{GoPluginArgs, wrap};
use crate::cli::{CommonArgs, parse_protocol, parse_secs};
use plugtap::codec::Limits;
use plugtap::exit::Outcome;
use plugtap::protocol::Protocol;
use plugtap::role::prox_proxy::{self, ProxWrapperOptions};
use plugtap::role::proxy::{self, Mode, ProxyOptions};
use plugtap::spec::{Spec, StartCmd};

pub const EXAMPLES: &str = "\
Examples:
  # Between Kong and a running server: Kong connects to front.sock.
  plugtap proxy --listen /tmp/front.sock --upstream /tmp/back.sock --record calls.jsonl

  # Drop-in wrapper: start the real server, proxy to it, record, hide secrets.
  plugtap proxy --listen /usr/local/kong/py.sock --upstream /tmp/py-real.sock \\
      --record /tmp/py.jsonl --redact authorization --redact '$[3][0].Config' -- \\
      kong-python-pluginserver -d /plugins -p /tmp --socket-name py-real.sock

  # Look at what was recorded:
  plugtap show /tmp/py.jsonl

  # No real server: answer from a server spec (e.g. an exported one), recording:
  plugtap proxy --mode replay --spec specs/mock-hello.json --listen /tmp/front.sock \
      --record /tmp/replay.jsonl

  # Answer from the spec what it can; only new requests reach the real server:
  plugtap proxy --mode new --spec specs/mock-hello.json --listen /tmp/front.sock \
      --upstream /tmp/back.sock --record /tmp/new.jsonl

  # Use plugtap as the plugin command of a HashiCorp go-plugin host
  # (Terraform, Vault, Nomad...): it starts the real plugin and decodes every
  # gRPC call on stderr (stdout carries the handshake to the host).
  plugtap proxy --protocol go-plugin -- ./terraform-provider-foo
  plugtap proxy --protocol go-plugin --proto kv.proto -- python3 plugin.py
  plugtap proxy --protocol go-plugin --record /tmp/kv.jsonl -- python3 plugin.py

  # Use plugtap as a prox plugin command (from a script: prox passes no
  # arguments): relays its stdin/stdout lines, proxies its hook socket.
  plugtap proxy --protocol prox --record /tmp/prox-{pid}.jsonl -- ./my-plugin

Exit codes: 0 stopped by SIGINT/SIGTERM; 2 usage or runtime error. In wrapper
mode plugtap exits when the server exits, with the server's exit code
(128+N if signal N killed it; 0 if it ended because of the SIGINT/SIGTERM
plugtap passed on). The go-plugin and prox wrappers exit with their plugin's
exit code.";

/// Arguments of `proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Socket to listen on: the path Kong is configured with.
    #[arg(long, value_name = "PATH")]
    pub listen: Option<PathBuf>,

    /// The real server's socket.
    #[arg(long, value_name = "PATH")]
    pub upstream: Option<PathBuf>,

    /// Record every frame to this file (JSON Lines; see README).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Close a connection as soon as its bytes cannot be decoded (by
    /// default they are logged, recorded and forwarded as they are).
    #[arg(long)]
    pub strict: bool,

    /// Write every frame's raw bytes (base64) into the recording. By
    /// default a MsgPack:1 frame whose decoded form encodes back to
    /// exactly its bytes is written with `"reencodes": true` instead,
    /// which halves the file for large params; `show` and export read both.
    #[arg(long)]
    pub keep_raw: bool,

    /// Hide values in logs and recordings: a key name (`authorization`,
    /// any depth, case-insensitive; also inside JSON config strings) or a
    /// path like `$[3][0].Config`. Repeatable.
    #[arg(long, value_name = "RULE")]
    pub redact: Vec<String>,

    /// Spec with `"role": "proxy"` to take settings from (options override
    /// it); with --mode replay or new, the server spec that answers.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,

    /// Where answers come from: `record` forwards everything to the real
    /// server; `replay` answers from --spec with no real server; `new`
    /// answers from --spec what it can and forwards the rest (MsgPack:1).
    /// [default: record, or the spec's `mode`]
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,

    /// --mode replay/new: write the spec side's report at exit (entries
    /// never used, requests no entry matched) to FILE, or `-` for stdout.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub report: Option<PathBuf>,

    /// --mode replay/new: exit 1 when a spec entry was never used or a
    /// request matched none.
    #[arg(long)]
    pub verify: bool,

    /// Protocol to decode.
    #[arg(long, value_name = "NAME", value_parser = parse_protocol)]
    pub protocol: Option<Protocol>,

    /// Largest decoded message in bytes (bigger ones are forwarded and
    /// recorded as undecodable).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::DEFAULT_MAX_MESSAGE)]
    pub max_message: usize,

    /// Deepest decoded nesting.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_MAX_DEPTH)]
    pub max_depth: usize,

    /// Seconds to wait for the started server's socket.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub wait: Duration,

    /// Seconds the started server gets to exit after SIGTERM before SIGKILL.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub grace: Duration,

    #[command(flatten)]
    pub go: GoPluginArgs,

    /// The real server's command line (wrapper mode), after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

/// `--mode` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Forward everything to the real server and record it.
    #[default]
    Record,
    /// No real server: answer from the server spec, recording as usual.
    Replay,
    /// Answer from the server spec when it can; forward the rest.
    New,
}

/// Runs `plugtap proxy`.
pub async fn proxy(
    args: ProxyArgs,
    spec: Option<&Spec>,
    full: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<Outcome> {
    let protocol = args
        .protocol
        .or(spec.map(|s| s.protocol))
        .unwrap_or_default();
    if protocol == Protocol::GoPlugin {
        if matches!(args.mode, Some(ModeArg::Replay | ModeArg::New)) {
            bail!(
                "--mode replay and new are not available for go-plugin; to answer without the real plugin, export a mock (plugtap export REC --as server) and run it with plugtap server --spec"
            );
        }
        if args.upstream.is_some() {
            bail!(
                "--upstream does not apply to go-plugin: the plugin's handshake names its address"
            );
        }
        let mut redact = spec.map(|s| s.proxy.redact.clone()).unwrap_or_default();
        redact.extend(args.redact);
        let record = args
            .record
            .or_else(|| spec.and_then(|s| s.proxy.record.clone()));
        return wrap(args.cmd, args.listen, record, redact, &args.go, full).await;
    }
    let mode = match args.mode {
        Some(ModeArg::Record) => Mode::Record,
        Some(ModeArg::Replay) => Mode::Replay,
        Some(ModeArg::New) => Mode::New,
        None => spec.map(|s| s.proxy.mode).unwrap_or_default(),
    };
    if mode != Mode::Record && spec.is_none() {
        bail!(
            "--mode {} needs --spec SERVER_SPEC to answer from",
            mode.name()
        );
    }
    if protocol == Protocol::Prox && !args.cmd.is_empty() {
        if mode != Mode::Record {
            bail!(
                "--mode {} is not available for the prox wrapper yet; it records",
                mode.name()
            );
        }
        if args.upstream.is_some() {
            bail!(
                "--upstream does not apply to the prox wrapper: the plugin's `ready` names its socket"
            );
        }
        let end = prox_proxy::run(ProxWrapperOptions {
            command: StartCmd::Argv(args.cmd),
            listen: args.listen,
            record: args.record,
            strict: args.strict,
            redact: args.redact,
            limits: Limits {
                max_message: args.max_message.min(plugtap::codec::prox::MAX_FRAME),
                max_depth: args.max_depth,
            },
            full_values: full,
            wait: args.wait,
        })
        .await?;
        return Ok(match end.exit_code() {
            0 => Outcome::Passed,
            code => Outcome::Code(code),
        });
    }
    let listen = args.listen.or_else(|| spec.and_then(|s| s.socket.clone()));
    let upstream = args
        .upstream
        .or_else(|| spec.and_then(|s| s.proxy.upstream.clone()));
    // Replay has no real server; the recording names the spec instead.
    let upstream = match (mode, upstream) {
        (Mode::Replay, Some(u)) => {
            tracing::warn!(
                "--mode replay ignores the upstream {}: answers come from the spec",
                u.display()
            );
            spec.map(|s| PathBuf::from(&s.source))
        }
        (Mode::Replay, None) => spec.map(|s| PathBuf::from(&s.source)),
        (_, u) => u,
    };
    let (Some(listen), Some(upstream)) = (listen, upstream) else {
        bail!(
            "the proxy needs --listen and --upstream (or a spec's `socket` and `upstream`; \
             --mode replay needs no upstream)"
        );
    };
    if listen == upstream {
        bail!(
            "--listen and --upstream are the same path ({}); the real server must listen elsewhere",
            listen.display()
        );
    }
    let start_cmd = if args.cmd.is_empty() {
        spec.and_then(|s| s.proxy.start_cmd.clone())
    } else {
        Some(StartCmd::Argv(args.cmd))
    };
    let mut redact = spec.map(|s| s.proxy.redact.clone()).unwrap_or_default();
    redact.extend(args.redact);
    let opts = ProxyOptions {
        listen,
        upstream,
        record: args
            .record
            .or_else(|| spec.and_then(|s| s.proxy.record.clone())),
        strict: args.strict || spec.is_some_and(|s| s.proxy.strict),
        keep_raw: args.keep_raw || spec.is_some_and(|s| s.proxy.keep_raw),
        redact,
        start_cmd,
        protocol,
        limits: Limits {
            max_message: match protocol {
                Protocol::Prox => args.max_message.min(plugtap::codec::prox::MAX_FRAME),
                _ => args.max_message,
            },
            max_depth: args.max_depth,
        },
        full_values: full,
        wait: args.wait,
        grace: args.grace,
        mode,
        spec: spec.map(|s| s.server.clone()),
        report: args.report,
    };
    if args.verify && mode == Mode::Record {
        bail!("--verify is for --mode replay and new (what the spec answered)");
    }
    let (end, report) = proxy::run(opts, shutdown).await?;
    Ok(match end.exit_code() {
        0 if args.verify && report.is_some_and(|r| !r.passed) => Outcome::Failed,
        0 => Outcome::Passed,
        code => Outcome::Code(code),
    })
}

/// Runs a spec with `"role": "proxy"` (`plugtap run`, `-s`, stdin).
pub async fn from_spec(
    spec: &Spec,
    common: &CommonArgs,
    full: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<Outcome> {
    let args = ProxyArgs {
        listen: common.socket.clone(),
        upstream: None,
        record: None,
        strict: false,
        keep_raw: false,
        redact: vec![],
        spec: None,
        protocol: common.protocol,
        max_message: common.limits_for(spec.protocol).max_message,
        max_depth: common.max_depth,
        wait: Duration::from_secs(10),
        grace: Duration::from_secs(5),
        go: GoPluginArgs::default(),
        mode: None,
        report: None,
        verify: false,
        cmd: vec![],
    };
    proxy(args, Some(spec), full, shutdown).await
}
