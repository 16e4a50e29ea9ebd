//! `plugtap export`: a recording becomes a server or client spec.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use plugtap::exit::Outcome;
use plugtap::export::{self, Options, Target};

pub const EXAMPLES: &str = "\
Examples:
  # A mock that answers as the recorded server did:
  plugtap export calls.jsonl --as server -o mock.json
  plugtap server --spec mock.json --socket /tmp/mock.sock

  # Kong's side of the recording, replayable against a fresh server:
  plugtap export calls.jsonl --as client -o replay.json
  plugtap client --spec replay.json --socket /tmp/real.sock";

/// Arguments of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The recording (JSON Lines, from `plugtap proxy --record`).
    #[arg(value_name = "RECORDING")]
    pub file: PathBuf,

    /// Which spec to write.
    #[arg(long = "as", value_enum, value_name = "ROLE")]
    pub target: TargetArg,

    /// Write the spec here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Keep volatile fields (StartTime, pids) in expectations and
    /// notifications.
    #[arg(long)]
    pub keep_volatile: bool,

    /// Client specs: replay each connection's calls at the same time, as
    /// they were recorded, instead of one call at a time in recorded
    /// order (steps wait for the captures they use).
    #[arg(long)]
    pub concurrent: bool,
}

/// `--as` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    /// A mock server spec (`on_methods`).
    Server,
    /// A client spec (`try_methods`).
    Client,
}

pub fn export(args: ExportArgs) -> anyhow::Result<Outcome> {
    let opts = Options {
        target: match args.target {
            TargetArg::Server => Target::Server,
            TargetArg::Client => Target::Client,
        },
        keep_volatile: args.keep_volatile,
        concurrent: args.concurrent,
    };
    let text = export::export_file(&args.file, opts)?;
    match &args.output {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(Outcome::Passed)
}
