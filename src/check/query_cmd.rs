//! The `query_output` check: run the query command as Kong does
//! (`io.popen`: a shell, stdout read to the end, stderr not captured, the
//! exit status ignored) and judge its output with [`crate::kong::query`].

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::CheckResult;
use crate::kong::query::{self, QueryReport};

const NAME: &str = "query_output";

/// Runs `cmd` and checks what it prints for `plugin`.
pub(super) async fn check(
    cmd: &str,
    plugin: &str,
    wait: Duration,
) -> (CheckResult, Option<QueryReport>) {
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            return (
                CheckResult::fail(
                    NAME,
                    format!("cannot run `{cmd}`"),
                    "Kong cannot load the plugin's schema and refuses to start",
                )
                .with_detail(e.to_string()),
                None,
            );
        }
    };
    let output = match tokio::time::timeout(wait, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            return (
                CheckResult::fail(
                    NAME,
                    format!("`{cmd}` failed"),
                    "Kong cannot load the plugin's schema and refuses to start",
                )
                .with_detail(e.to_string()),
                None,
            );
        }
        Err(_) => {
            return (
                CheckResult::fail(
                    NAME,
                    format!("`{cmd}` did not finish within {wait:?}"),
                    "Kong waits for the query command during start-up: Kong hangs",
                ),
                None,
            );
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines() {
        tracing::info!("[query_cmd stderr] {line}");
    }
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut report = query::check_output(cmd, &stdout, plugin);
    if !output.status.success() {
        report.notes.push(format!(
            "`{cmd}` exited with {}; Kong ignores the exit status and reads stdout only",
            crate::process::describe(output.status)
        ));
    }
    let result = if report.problems.is_empty() {
        let info = report.info.clone().unwrap_or_default();
        let mut r = CheckResult::pass(
            NAME,
            format!(
                "{}, plugins {:?}, Version {}, Priority {}",
                report.protocol, report.plugins, info["Version"], info["Priority"]
            ),
        );
        if !report.notes.is_empty() {
            r = r.with_detail(report.notes.join("\n"));
        }
        r
    } else {
        let detail: Vec<String> = report
            .problems
            .iter()
            .map(|p| {
                let versions = if p.versions == "all" {
                    "all versions"
                } else {
                    p.versions
                };
                format!("Kong ({versions}): {}", p.kong_error)
            })
            .chain(report.notes.iter().cloned())
            .collect();
        CheckResult::fail(
            NAME,
            format!(
                "Kong rejects this output ({} problem(s))",
                report.problems.len()
            ),
            consequences(&report),
        )
        .with_detail(detail.join("\n"))
    };
    (result, Some(report))
}

/// The problems' consequences in one sentence, saying "Kong refuses to
/// start" once.
fn consequences(report: &QueryReport) -> String {
    let refuses = query::REFUSES_TO_START;
    let mut reasons: Vec<&str> = Vec::new();
    let mut others: Vec<&str> = Vec::new();
    let mut start = false;
    for p in &report.problems {
        match p.consequence.strip_prefix(refuses) {
            Some(rest) => {
                start = true;
                let rest = rest.trim_start_matches([':', ';', ' ']);
                if !rest.is_empty() && !reasons.contains(&rest) {
                    reasons.push(rest);
                }
            }
            None if !others.contains(&p.consequence.as_str()) => others.push(&p.consequence),
            None => {}
        }
    }
    let mut out = Vec::new();
    if start {
        out.push(if reasons.is_empty() {
            refuses.to_owned()
        } else {
            format!("{refuses}: {}", reasons.join("; "))
        });
    }
    out.extend(others.iter().map(|s| (*s).to_owned()));
    out.join("; ")
}
