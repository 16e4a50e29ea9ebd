//! The `plugtap` binary: parse arguments, set up logging, run a role, turn
//! the result into an exit code. Everything else lives in the library.

mod cli;
mod logging;

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{CommandFactory as _, Parser as _};
use tokio_util::sync::CancellationToken;

use cli::{Cli, ClientRunArgs, Command, CommonArgs, CycleArg};
use plugtap::exit::{self, Outcome};
use plugtap::role::client::{self, ClientOptions};
use plugtap::role::server::{self, ServerOptions};
use plugtap::spec::{self, Cycle, Role, Spec, StartCmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbosity.verbose, cli.verbosity.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plugtap: error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            eprintln!("plugtap: error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let full = cli.verbosity.verbose > 0;
    if cli.spec.is_some() && cli.command.is_some() {
        bail!("-s/--spec goes without a subcommand (for subcommands, use their own SPEC argument)");
    }
    let shutdown = plugtap::shutdown::on_signals().context("cannot install signal handlers")?;
    match cli.command {
        None => {
            let path = match cli.spec {
                Some(p) => p,
                None if std::io::stdin().is_terminal() => {
                    Cli::command().print_help()?;
                    bail!("no spec given: pass -s SPEC, pipe a spec on stdin, or use a subcommand");
                }
                None => "-".into(),
            };
            let spec = load(&path)?;
            run_spec(
                &spec,
                &CommonArgs::default(),
                &ClientRunArgs::default(),
                full,
                shutdown,
            )
            .await
        }
        Some(Command::Run(args)) => {
            let spec = load(&args.spec)?;
            run_spec(&spec, &args.common, &args.run, full, shutdown).await
        }
        Some(Command::Server(args)) => {
            let mut spec = load(&args.spec)?;
            check_role(&spec, Role::Server);
            if let Some(c) = args.cycle {
                spec.server.cycle = match c {
                    CycleArg::PerConnection => Cycle::PerConnection,
                    CycleArg::Global => Cycle::Global,
                };
            }
            serve(&spec, &args.common, !args.no_conversations, full, shutdown).await
        }
        Some(Command::Client(args)) => {
            let spec = load(&args.spec)?;
            check_role(&spec, Role::Client);
            drive(&spec, &args.common, &args.run, full, shutdown).await
        }
    }
}

fn load(path: &Path) -> anyhow::Result<Spec> {
    let spec = if path == Path::new("-") {
        spec::load_reader(std::io::stdin().lock(), "<stdin>")?
    } else {
        spec::load_file(path)?
    };
    for w in &spec.warnings {
        tracing::warn!("{}: {w}", spec.source);
    }
    Ok(spec)
}

fn check_role(spec: &Spec, wanted: Role) {
    if let Some(role) = spec.role.filter(|r| *r != wanted) {
        tracing::warn!(
            "{} says \"role\": \"{}\"; running it as {} as asked",
            spec.source,
            role.name(),
            wanted.name()
        );
    }
}

async fn run_spec(
    spec: &Spec,
    common: &CommonArgs,
    client: &ClientRunArgs,
    full: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<Outcome> {
    match spec.role {
        Some(Role::Server) => serve(spec, common, true, full, shutdown).await,
        Some(Role::Client) => drive(spec, common, client, full, shutdown).await,
        None => bail!(
            "{} names no role: add \"role\": \"server\" or \"client\", or use `plugtap server` / `plugtap client`",
            spec.source
        ),
    }
}

async fn serve(
    spec: &Spec,
    common: &CommonArgs,
    print_conversations: bool,
    full: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<Outcome> {
    let protocol = common.protocol.unwrap_or(spec.protocol);
    let socket = common
        .socket
        .clone()
        .or_else(|| spec.socket.clone())
        .unwrap_or_else(|| "mock.socket".into());
    let opts = ServerOptions {
        socket,
        limits: common.limits(),
        full_values: full,
        print_conversations,
    };
    tracing::debug!("protocol {protocol}");
    Ok(server::run(spec, opts, shutdown).await?)
}

async fn drive(
    spec: &Spec,
    common: &CommonArgs,
    args: &ClientRunArgs,
    full: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<Outcome> {
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
        limits: common.limits(),
        full_values: full,
    };
    let report = client::run(spec, opts, shutdown).await?;
    eprint!("{}", report.render());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(report.outcome())
}
