//! The `plugtap` binary: parse arguments, set up logging, run a subcommand,
//! turn the result into an exit code. Everything else lives in the library.

mod cli;
mod commands;
mod logging;

use std::process::ExitCode;

use clap::Parser as _;

use cli::Cli;
use plugtap::exit;

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
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            eprintln!("plugtap: error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}
