//! `plugtap run SPEC`, `plugtap -s SPEC` and a spec on stdin: run a spec
//! in the role it names.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::client::{ClientRunArgs, drive};
use super::server::serve;
use crate::cli::CommonArgs;
use plugtap::exit::Outcome;
use plugtap::spec::{Role, Spec};

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Spec file ("-" reads stdin).
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,

    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub run: ClientRunArgs,
}

pub async fn run_spec(
    spec: &Spec,
    common: &CommonArgs,
    client: &ClientRunArgs,
    full: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<Outcome> {
    match spec.role {
        Some(Role::Server) => {
            let verify = super::server::VerifyArgs::default();
            serve(spec, common, true, &verify, full, shutdown).await
        }
        Some(Role::Client) => drive(spec, common, client, full, shutdown).await,
        Some(Role::Proxy) => super::proxy::from_spec(spec, common, full, shutdown).await,
        None => bail!(
            "{} names no role: add \"role\": \"server\", \"client\" or \"proxy\", or use `plugtap server` / `plugtap client`",
            spec.source
        ),
    }
}
