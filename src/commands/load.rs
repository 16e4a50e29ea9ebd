//! Load mode of `plugtap client`: `--repeat`, `--duration`, `--concurrency`.

use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::client::ClientRunArgs;
use crate::cli::{CommonArgs, parse_secs};
use plugtap::exit::Outcome;
use plugtap::role::load::{self, LoadOptions};
use plugtap::spec::Spec;

/// Load-mode options of `client`.
#[derive(Debug, Args, Default)]
pub struct LoadArgs {
    /// Load mode: run the steps N times on each connection, then print
    /// calls/s and latency percentiles.
    #[arg(long, value_name = "N")]
    pub repeat: Option<u64>,

    /// Load mode: run the steps over and over for this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,

    /// Load mode: connections running the steps at once.
    #[arg(long, value_name = "C", default_value_t = 1)]
    pub concurrency: usize,
}

impl LoadArgs {
    /// True when load mode was asked for.
    pub fn active(&self) -> bool {
        self.repeat.is_some() || self.duration.is_some() || self.concurrency > 1
    }
}

pub async fn load(
    spec: &Spec,
    common: &CommonArgs,
    run: &ClientRunArgs,
    args: &LoadArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<Outcome> {
    let opts = run.options(spec, common, common.limits(), false);
    // Without --repeat or --duration, each connection runs the steps once.
    let repeat = match (args.repeat, args.duration) {
        (None, None) => Some(1),
        (r, _) => r,
    };
    let report = load::run(
        spec,
        opts,
        LoadOptions {
            repeat,
            duration: args.duration,
            concurrency: args.concurrency,
            progress: true,
        },
        shutdown,
    )
    .await?;
    eprint!("{}", report.render());
    if run.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if report.passed() {
        Outcome::Passed
    } else {
        Outcome::Failed
    })
}
