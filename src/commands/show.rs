//! `plugtap show`: read a recording.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use plugtap::exit::Outcome;
use plugtap::record::Reader;
use plugtap::show::{self, Filter, Format};

pub const EXAMPLES: &str = "\
Examples:
  plugtap show calls.jsonl                          # one line per event
  plugtap show calls.jsonl --conn 3 --method Step   # connection 3, plugin.Step* calls
  plugtap show calls.jsonl --since 1.5 --until 2    # a time window, in seconds
  plugtap show calls.jsonl --json | jq .            # the matching JSON lines
  plugtap show calls.jsonl --format mermaid > calls.mmd   # a sequence diagram";

/// Arguments of `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The recording (JSON Lines, from `plugtap proxy --record`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Only this connection (repeatable).
    #[arg(long = "conn", value_name = "ID")]
    pub conns: Vec<u64>,

    /// Only frames whose method (or, for a reply, its request's method)
    /// contains this text.
    #[arg(long, value_name = "TEXT")]
    pub method: Option<String>,

    /// Only events at or after this many seconds from the start.
    #[arg(long, value_name = "SECS")]
    pub since: Option<f64>,

    /// Only events at or before this many seconds from the start.
    #[arg(long, value_name = "SECS")]
    pub until: Option<f64>,

    /// Print the matching recording lines as they are (JSON Lines).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// One line per event.
    Text,
    /// A Mermaid sequence diagram (Kong, plugtap, server).
    Mermaid,
}

pub fn show(args: ShowArgs, full: bool) -> anyhow::Result<Outcome> {
    let reader = Reader::open(&args.file)?;
    let filter = Filter {
        conns: args.conns,
        method: args.method,
        since: args.since,
        until: args.until,
    };
    let format = match (args.json, args.format) {
        (true, _) => Format::Json,
        (false, FormatArg::Text) => Format::Text,
        (false, FormatArg::Mermaid) => Format::Mermaid,
    };
    let stdout = std::io::stdout();
    let colour = stdout.is_terminal();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match show::show(reader, &filter, format, full, colour, &mut out) {
        Ok(n) => tracing::debug!("{n} events shown"),
        // A closed pipe (`| head`) is not an error.
        Err(show::ShowError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e.into()),
    }
    use std::io::Write as _;
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(Outcome::Passed),
    }
}
