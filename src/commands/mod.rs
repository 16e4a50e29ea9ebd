//! One module per subcommand: its clap arguments and the glue that turns
//! them into a library call. `dispatch` picks the subcommand.

pub mod check;
pub mod client;
pub mod export;
pub mod goplugin;
pub mod kong_conf;
pub mod load;
pub mod proxy;
pub mod run;
pub mod server;
pub mod show;

use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use clap::CommandFactory as _;

use crate::cli::{Cli, Command, CommonArgs};
use plugtap::exit::Outcome;
use plugtap::protocol::Protocol;
use plugtap::spec::{self, Cycle, Role, Spec};

/// Runs what the command line asks for.
pub async fn dispatch(cli: Cli) -> anyhow::Result<Outcome> {
    if cli.spec.is_some() && cli.command.is_some() {
        bail!("-s/--spec goes without a subcommand (for subcommands, use their own SPEC argument)");
    }
    let full = cli.verbosity.verbose > 0;
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
            if goplugin::is_go_plugin_spec(&path) {
                return goplugin::run_spec(&path, false, full, shutdown).await;
            }
            let spec = load(&path)?;
            let client = client::ClientRunArgs::default();
            run::run_spec(&spec, &CommonArgs::default(), &client, full, shutdown).await
        }
        Some(Command::Run(args)) if goplugin::is_go_plugin_spec(&args.spec) => {
            goplugin::run_spec(&args.spec, args.run.json, full, shutdown).await
        }
        Some(Command::Server(args)) if goplugin::is_go_plugin_spec(&args.spec) => {
            let spec = goplugin::load(&args.spec)?;
            check_go_role(&spec, Role::Server);
            goplugin::serve(
                spec,
                args.common.socket.clone(),
                args.common.limits_for(Protocol::GoPlugin).max_message,
                full,
            )
            .await
        }
        Some(Command::Client(args)) if goplugin::is_go_plugin_spec(&args.spec) => {
            let spec = goplugin::load(&args.spec)?;
            check_go_role(&spec, Role::Client);
            goplugin::drive(
                &spec,
                args.run.start_cmd.clone(),
                args.run.json,
                args.common.limits_for(Protocol::GoPlugin).max_message,
                shutdown,
            )
            .await
        }
        Some(Command::Run(args)) => {
            let spec = load(&args.spec)?;
            run::run_spec(&spec, &args.common, &args.run, full, shutdown).await
        }
        Some(Command::Server(args)) => {
            let mut spec = load(&args.spec)?;
            check_role(&spec, Role::Server);
            if let Some(c) = args.cycle {
                spec.server.cycle = match c {
                    server::CycleArg::PerConnection => Cycle::PerConnection,
                    server::CycleArg::Global => Cycle::Global,
                };
            }
            server::serve(
                &spec,
                &args.common,
                !args.no_conversations,
                &args.verify,
                full,
                shutdown,
            )
            .await
        }
        Some(Command::Check(args)) => check::check(&args, full, shutdown).await,
        Some(Command::Client(args)) => {
            let spec = load(&args.spec)?;
            check_role(&spec, Role::Client);
            if args.load.active() {
                if spec.client.try_methods.iter().any(|s| s.conn.is_some()) {
                    tracing::warn!(
                        "load mode runs all the steps on each of its connections; step `conn` labels are ignored"
                    );
                }
                return load::load(&spec, &args.common, &args.run, &args.load, shutdown).await;
            }
            client::drive(&spec, &args.common, &args.run, full, shutdown).await
        }
        Some(Command::Proxy(args)) => {
            let spec = args.spec.as_deref().map(load).transpose()?;
            if let Some(spec) = &spec {
                // A server spec answers in replay and new modes.
                let replaying = args.mode.is_some_and(|m| m != proxy::ModeArg::Record);
                if !(replaying && spec.role == Some(Role::Server)) {
                    check_role(spec, Role::Proxy);
                }
            }
            proxy::proxy(args, spec.as_ref(), full, shutdown).await
        }
        Some(Command::Show(args)) => show::show(args, full),
        Some(Command::KongConf(args)) => kong_conf::kong_conf(args),
        Some(Command::Export(args)) => export::export(args),
    }
}

/// Loads a spec file ("-" for stdin) and logs its warnings.
pub fn load(path: &Path) -> anyhow::Result<Spec> {
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

/// Warns when a spec written for another role runs in `wanted`.
pub fn check_role(spec: &Spec, wanted: Role) {
    if let Some(role) = spec.role.filter(|r| *r != wanted) {
        tracing::warn!(
            "{} says \"role\": \"{}\"; running it as {} as asked",
            spec.source,
            role.name(),
            wanted.name()
        );
    }
}

/// Warns when a go-plugin spec written for another role runs in `wanted`.
fn check_go_role(spec: &plugtap::goplugin::spec::GoSpec, wanted: Role) {
    if let Some(role) = spec.role.filter(|r| *r != wanted) {
        tracing::warn!(
            "{} says \"role\": \"{}\"; running it as {} as asked",
            spec.source,
            role.name(),
            wanted.name()
        );
    }
}
