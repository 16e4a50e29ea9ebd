//! Glue for go-plugin in the `server`, `client`, `run` and `proxy`
//! subcommands: options that only go-plugin has, and the calls into
//! `plugtap::goplugin`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::cli::parse_secs;
use plugtap::exit::Outcome;
use plugtap::goplugin::{host, mock, observer, proxy, schema::Schemas, spec};
use plugtap::record::redact::{Redactor, Rule};
use plugtap::spec::{Role, StartCmd};

/// Options of the go-plugin wrapper.
#[derive(Debug, Args)]
pub struct GoPluginArgs {
    /// go-plugin: a .proto file for the plugin's services (repeatable).
    #[arg(long, value_name = "FILE")]
    pub proto: Vec<PathBuf>,

    /// go-plugin: a directory to find imported .proto files in (repeatable).
    #[arg(long, value_name = "DIR")]
    pub proto_path: Vec<PathBuf>,

    /// go-plugin: a serialized FileDescriptorSet (repeatable).
    #[arg(long, value_name = "FILE")]
    pub descriptor_set: Vec<PathBuf>,

    /// go-plugin: do not ask the plugin's server reflection for schemas.
    #[arg(long)]
    pub no_reflection: bool,

    /// go-plugin: seconds to wait for the plugin's handshake.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub start_timeout: Duration,

    /// go-plugin: largest gRPC message decoded (larger ones pass undecoded).
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_grpc_message: usize,
}

impl Default for GoPluginArgs {
    fn default() -> Self {
        GoPluginArgs {
            proto: vec![],
            proto_path: vec![],
            descriptor_set: vec![],
            no_reflection: false,
            start_timeout: Duration::from_secs(60),
            max_grpc_message: 64 * 1024 * 1024,
        }
    }
}

/// True when the spec file says `"protocol": "go-plugin"`.
pub fn is_go_plugin_spec(path: &Path) -> bool {
    path != Path::new("-") && std::fs::read_to_string(path).is_ok_and(|t| spec::is_go_plugin(&t))
}

/// Loads a go-plugin spec and logs its warnings.
pub fn load(path: &Path) -> anyhow::Result<spec::GoSpec> {
    let s = spec::load_file(path)?;
    for w in &s.warnings {
        tracing::warn!("{}: {w}", s.source);
    }
    Ok(s)
}

/// `plugtap proxy --protocol go-plugin -- CMD`.
pub async fn wrap(
    command: Vec<String>,
    listen: Option<PathBuf>,
    record: Option<PathBuf>,
    redact: Vec<String>,
    args: &GoPluginArgs,
    full: bool,
) -> anyhow::Result<Outcome> {
    if command.is_empty() {
        bail!(
            "give the plugin to wrap after `--`: plugtap proxy --protocol go-plugin -- PLUGIN ARGS"
        );
    }
    let rules = redact
        .iter()
        .map(|r| r.parse::<Rule>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--redact: {e}"))?;
    let mut schemas = Schemas::builtin();
    schemas
        .add_proto_files(&args.proto, &args.proto_path)
        .context("loading --proto")?;
    for d in &args.descriptor_set {
        schemas.add_descriptor_set(d)?;
    }
    let code = proxy::run(proxy::WrapperOptions {
        command,
        listen,
        observer: observer::ObserverOptions {
            schemas,
            reflection: !args.no_reflection,
            max_message: args.max_grpc_message,
            full_values: full,
            redact: Redactor::new(rules),
            record: None,
        },
        start_timeout: args.start_timeout,
        grace: Duration::from_secs(3),
        record,
        redact,
    })
    .await?;
    Ok(Outcome::Code(u8::try_from(code).unwrap_or(1)))
}

/// The server role for a go-plugin spec.
pub async fn serve(
    spec: spec::GoSpec,
    socket: Option<PathBuf>,
    max_message: usize,
    full: bool,
) -> anyhow::Result<Outcome> {
    let code = mock::run(
        spec,
        mock::MockOptions {
            socket,
            max_message,
            full_values: full,
        },
    )
    .await?;
    Ok(if code == 0 {
        Outcome::Passed
    } else {
        Outcome::Failed
    })
}

/// The client role for a go-plugin spec.
pub async fn drive(
    spec: &spec::GoSpec,
    start_cmd: Option<String>,
    json: bool,
    max_message: usize,
    shutdown: CancellationToken,
) -> anyhow::Result<Outcome> {
    let run = host::run(
        spec,
        host::HostOptions {
            start_cmd: start_cmd.map(StartCmd::Shell),
            start_timeout: None,
            max_message,
        },
    );
    // Dropping the run kills the plugin it started.
    let report = tokio::select! {
        r = run => r?,
        _ = shutdown.cancelled() => bail!("interrupted; the plugin was killed"),
    };
    eprint!("{}", report.render());
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(report.outcome())
}

/// `run`/`-s` for a go-plugin spec: the role it names.
pub async fn run_spec(
    path: &Path,
    json: bool,
    full: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<Outcome> {
    let s = load(path)?;
    match s.role {
        Some(Role::Server) => serve(s, None, 64 << 20, full).await,
        Some(Role::Client) => drive(&s, None, json, 64 << 20, shutdown).await,
        _ => bail!(
            "{} names no role: add \"role\": \"server\" or \"client\"",
            s.source
        ),
    }
}
