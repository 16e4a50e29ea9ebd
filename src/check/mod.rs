//! `plugtap check`: does a pluginserver behave the way Kong needs?
//!
//! A fixed list of named checks ([`CHECKS`]), run in order against one
//! server. Each gives pass, fail or skip; a failure says what happened and
//! what Kong would do with such a server in production. Checks that need
//! something an earlier check could not provide (a reachable socket, a
//! started instance) are skipped with the reason.
//!
//! The calls, in order (mock servers used as broken peers in tests count
//! on it): `StartInstance`; an event (`HandleEvent` + Steps) on one
//! connection; the same event with every call on another connection;
//! [`CheckOptions::connections`] events at once, each on its own
//! connection; `HandleEvent` for an unknown instance; `CloseInstance`,
//! then `HandleEvent` for the closed instance; then malformed messages,
//! each followed by a `HandleEvent` on a fresh connection to see whether
//! the server survived.

mod pb;
mod probes;
mod query_cmd;
mod robustness;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use crate::codec::Limits;
use crate::exit::Outcome;
use crate::kong::query::QueryReport;
use crate::protocol::Protocol;
use crate::role::launch;
use crate::spec::StartCmd;

/// The checks, in the order they run, with what each one verifies.
pub const CHECKS: &[(&str, &str)] = &[
    (
        "query_output",
        "the query command prints JSON Kong accepts (shape, Version, Priority, Schema)",
    ),
    (
        "socket",
        "the server listens on the socket Kong is configured with",
    ),
    (
        "start_instance",
        "StartInstance with Kong's config JSON returns an Id",
    ),
    (
        "event",
        "an event completes, PDK calls answered as Kong answers them",
    ),
    (
        "steps_across_connections",
        "an event works when its Steps arrive on other connections than its HandleEvent",
    ),
    (
        "concurrent_events",
        "events in flight at once on several connections all complete",
    ),
    (
        "unknown_instance",
        "HandleEvent for an unknown instance fails with `no plugin instance` (Kong's reset rule)",
    ),
    (
        "close_instance",
        "CloseInstance works, and the closed instance is gone",
    ),
    (
        "no_unsolicited_bytes",
        "nothing but notifications arrives after a reply",
    ),
    (
        "malformed_request",
        "malformed messages do not kill the server",
    ),
];

/// Settings of a check run.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The socket Kong would connect to.
    pub socket: PathBuf,
    /// Command starting the server.
    pub start_cmd: Option<StartCmd>,
    /// Kong's query command for the server.
    pub query_cmd: Option<String>,
    /// The plugin to check.
    pub plugin: String,
    /// The plugin's config (schema fields).
    pub config: Json,
    /// The phase to run events in (default: `access` if the plugin has
    /// it, else its first phase).
    pub phase: Option<String>,
    /// How long to wait for each reply.
    pub timeout: Duration,
    /// How long to wait for the socket (and the query command).
    pub wait: Duration,
    /// How long a started server gets after SIGTERM.
    pub grace: Duration,
    /// Decoding limits.
    pub limits: Limits,
    /// Log values in full.
    pub full_values: bool,
    /// Connections for `concurrent_events`.
    pub connections: usize,
    /// The protocol to speak; by default the one the query output names,
    /// else `MsgPack:1`.
    pub protocol: Option<Protocol>,
}

/// pass, fail or skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The server behaves as Kong needs.
    Pass,
    /// It does not.
    Fail,
    /// Not run.
    Skip,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// The check's name (see [`CHECKS`]).
    pub name: &'static str,
    /// Its outcome.
    pub status: Status,
    /// What was found, in one line.
    pub summary: String,
    /// More about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What Kong would do with this server in production.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kong: Option<String>,
}

impl CheckResult {
    pub(crate) fn pass(name: &'static str, summary: impl Into<String>) -> CheckResult {
        CheckResult {
            name,
            status: Status::Pass,
            summary: summary.into(),
            detail: None,
            kong: None,
        }
    }

    pub(crate) fn fail(
        name: &'static str,
        summary: impl Into<String>,
        kong: impl Into<String>,
    ) -> CheckResult {
        CheckResult {
            name,
            status: Status::Fail,
            summary: summary.into(),
            detail: None,
            kong: Some(kong.into()),
        }
    }

    pub(crate) fn skip(name: &'static str, why: impl Into<String>) -> CheckResult {
        CheckResult {
            name,
            status: Status::Skip,
            summary: why.into(),
            detail: None,
            kong: None,
        }
    }

    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> CheckResult {
        self.detail = Some(detail.into());
        self
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The plugin checked.
    pub plugin: String,
    /// The socket.
    pub socket: PathBuf,
    /// The protocol the checks spoke.
    pub protocol: String,
    /// True when no check failed.
    pub passed: bool,
    /// Every check, in order.
    pub checks: Vec<CheckResult>,
    /// The query command's findings, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<QueryReport>,
}

impl CheckReport {
    /// Exit outcome.
    pub fn outcome(&self) -> Outcome {
        if self.passed {
            Outcome::Passed
        } else {
            Outcome::Failed
        }
    }

    /// The pass/fail table, with an explanation under every failure.
    pub fn render(&self) -> String {
        let width = CHECKS.iter().map(|(n, _)| n.len()).max().unwrap_or(10);
        let mut out = format!(
            "plugtap check: plugin {} on {} ({})\n",
            self.plugin,
            self.socket.display(),
            self.protocol
        );
        for c in &self.checks {
            let mark = match c.status {
                Status::Pass => "✓ pass",
                Status::Fail => "✗ FAIL",
                Status::Skip => "- skip",
            };
            out.push_str(&format!("{:width$}  {mark}  {}\n", c.name, c.summary));
            if let Some(d) = &c.detail {
                for line in d.lines() {
                    out.push_str(&format!("{:width$}          {line}\n", ""));
                }
            }
            if let Some(k) = &c.kong {
                out.push_str(&format!("{:width$}          in production: {k}\n", ""));
            }
        }
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        out.push_str(&format!(
            "{} checks: {} passed, {} failed, {} skipped\n",
            self.checks.len(),
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Skip)
        ));
        out
    }
}

/// Runs every check.
pub async fn run(opts: &CheckOptions, shutdown: CancellationToken) -> CheckReport {
    let mut checks = Vec::new();
    let mut query = None;
    let mut phases: Vec<String> = Vec::new();
    let mut protocol = "MsgPack:1".to_string();
    match &opts.query_cmd {
        Some(cmd) => {
            let (result, report) = query_cmd::check(cmd, &opts.plugin, opts.wait).await;
            if let Some(r) = &report {
                protocol = r.protocol.clone();
                if let Some(Json::Array(p)) = r.info.as_ref().and_then(|i| i.get("Phases")) {
                    phases = p
                        .iter()
                        .filter_map(Json::as_str)
                        .map(str::to_owned)
                        .collect();
                }
            }
            checks.push(result);
            query = report;
        }
        None => checks.push(CheckResult::skip("query_output", "no --query-cmd given")),
    }
    let phase = opts.phase.clone().unwrap_or_else(|| {
        if phases.is_empty() || phases.iter().any(|p| p == "access") {
            "access".into()
        } else {
            phases[0].clone()
        }
    });
    let launched = tokio::select! {
        _ = shutdown.cancelled() => Err(crate::Error::Other("interrupted".into())),
        l = launch::launch(Some(opts.socket.clone()), opts.start_cmd.as_ref(), opts.wait) => l,
    };
    let mut launched = match launched {
        Ok(l) => {
            checks.push(socket_result(opts));
            l
        }
        Err(e) => {
            checks.push(
                CheckResult::fail(
                    "socket",
                    format!("nothing accepts connections on {}", opts.socket.display()),
                    "Kong logs `connect() to unix:<socket> failed` for every call: no instance \
                     starts and every request through the plugin gets a 500",
                )
                .with_detail(format!("{e}{}", other_sockets(&opts.socket))),
            );
            skip_rest(&mut checks, "the server is not reachable");
            return finish(opts, protocol, checks, query);
        }
    };
    if let Some(p) = opts.protocol {
        protocol = p.name().to_owned();
    }
    if protocol == "ProtoBuf:1" {
        drop(launched.first);
        checks.extend(pb::run(opts, &phase, &shutdown).await);
    } else if protocol != "MsgPack:1" {
        skip_rest(
            &mut checks,
            &format!(
                "the query output says {protocol}; these checks speak MsgPack:1 and ProtoBuf:1"
            ),
        );
    } else {
        drop(launched.first);
        let mut probes = probes::Probes::new(opts, &phase, &shutdown);
        checks.extend(probes.run().await);
        checks.push(probes.unsolicited().await);
        checks.push(robustness::malformed(opts, &phase, launched.child.as_mut(), &shutdown).await);
    }
    launch::stop(launched.child.as_mut(), opts.grace).await;
    finish(opts, protocol, checks, query)
}

fn socket_result(opts: &CheckOptions) -> CheckResult {
    let result = CheckResult::pass(
        "socket",
        format!("{} accepts connections", opts.socket.display()),
    );
    let name = opts
        .socket
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    if name.as_deref() == Some(&format!("{}.socket", opts.plugin)) {
        return result;
    }
    result.with_detail(format!(
        "Kong's default socket is <prefix>/<pluginserver name>.socket; set \
         pluginserver_<name>_socket = {} in kong.conf",
        opts.socket.display()
    ))
}

/// Sockets next to the expected one: a server listening on another name
/// (`.sock` instead of `.socket`, kong#9733) shows up here.
fn other_sockets(expected: &std::path::Path) -> String {
    use std::os::unix::fs::FileTypeExt as _;
    let dir = match expected.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
        .map(|e| e.path().display().to_string())
        .collect();
    found.sort();
    if found.is_empty() {
        String::new()
    } else {
        format!(
            "\nsockets in {}: {} (is the server listening on another name?)",
            dir.display(),
            found.join(", ")
        )
    }
}

fn skip_rest(checks: &mut Vec<CheckResult>, why: &str) {
    for (name, _) in CHECKS {
        if !checks.iter().any(|c| c.name == *name) {
            checks.push(CheckResult::skip(name, why));
        }
    }
}

fn finish(
    opts: &CheckOptions,
    protocol: String,
    checks: Vec<CheckResult>,
    query: Option<QueryReport>,
) -> CheckReport {
    CheckReport {
        plugin: opts.plugin.clone(),
        socket: opts.socket.clone(),
        protocol,
        passed: checks.iter().all(|c| c.status != Status::Fail),
        checks,
        query,
    }
}
