//! What a Kong-emulated run found: per request and phase, every PDK call
//! the plugin made (arguments, Kong's answer, the Step that carried it),
//! what the plugin set, the instance lifecycle, and why anything failed.
//! Rendered for people on stderr, serialised as JSON with `--json`.

use serde::Serialize;
use serde_json::Value as Json;

use crate::exit::Outcome;
use crate::kong::effects::LogLine;
use crate::kong::pdk::Source;
use crate::message::shorten;
use crate::spec::matcher::Mismatch;

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct KongReport {
    /// The plugin's name.
    pub plugin: String,
    /// The wire protocol used.
    pub protocol: String,
    /// True when every phase completed (or exited) and every expectation
    /// held.
    pub passed: bool,
    /// One entry per request.
    pub requests: Vec<RequestReport>,
    /// Instances started, closed and reset, in order.
    pub lifecycle: Vec<LifecycleEntry>,
    /// Mismatches with the spec's `expect`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expectation: Vec<Mismatch>,
    /// Things worth knowing that did not fail the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One request through the plugin.
#[derive(Debug, Clone, Serialize)]
pub struct RequestReport {
    /// 1-based.
    pub index: usize,
    /// HTTP method.
    pub method: String,
    /// Full URL.
    pub url: String,
    /// One entry per phase.
    pub phases: Vec<PhaseReport>,
    /// The response the client gets.
    pub response: Json,
    /// Changes to the request Kong sends upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_request: Option<Json>,
    /// `kong.log.*` lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
    /// `kong.ctx.shared` values at the end.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub ctx_shared: serde_json::Map<String, Json>,
}

/// How a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    /// The server said `ret`.
    Completed,
    /// The plugin called `kong.response.exit` or `kong.response.error`.
    Exited,
    /// The event failed (see `error` and `kong`).
    Failed,
    /// Not run: an earlier phase exited, and Kong runs only `log` after
    /// an exit.
    Skipped,
}

/// One phase of one request.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// Phase name.
    pub phase: String,
    /// How it ended.
    pub status: PhaseStatus,
    /// The instance the event ran on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<Json>,
    /// The server's event id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Json>,
    /// PDK calls in order (of the last attempt, after resets).
    pub calls: Vec<PdkCall>,
    /// How many times the event was retried after `no plugin instance`.
    #[serde(skip_serializing_if = "is_zero")]
    pub resets: u32,
    /// What went wrong, in plugtap's words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What Kong would log and do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kong: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One PDK call the plugin made.
#[derive(Debug, Clone, Serialize)]
pub struct PdkCall {
    /// PDK method.
    pub method: String,
    /// Its arguments.
    pub args: Json,
    /// Kong's answer (`null` for nil); absent when Kong sends none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Json>,
    /// Where the answer came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// The RPC method that carried the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// One instance-lifecycle event.
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleEntry {
    /// 1-based request it happened in.
    pub request: usize,
    /// `start`, `close`, `reset`, `config_change` or `server_pid`.
    pub action: String,
    /// The instance concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<Json>,
    /// The config's `__seq__`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Details (errors, reasons).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl KongReport {
    /// Exit outcome.
    pub fn outcome(&self) -> Outcome {
        if self.passed {
            Outcome::Passed
        } else {
            Outcome::Failed
        }
    }

    /// A readable account of the run.
    pub fn render(&self, full: bool) -> String {
        let max = if full { usize::MAX } else { 120 };
        let short = |v: &Json| shorten(&v.to_string(), max);
        let mut out = format!("plugin {} ({})\n", self.plugin, self.protocol);
        for r in &self.requests {
            out.push_str(&format!("request {}: {} {}\n", r.index, r.method, r.url));
            for l in self.lifecycle.iter().filter(|l| l.request == r.index) {
                out.push_str(&format!("  {}\n", lifecycle_line(l)));
            }
            for p in &r.phases {
                let event = p
                    .event_id
                    .as_ref()
                    .map(|e| format!(", event {e}"))
                    .unwrap_or_default();
                let instance = p
                    .instance_id
                    .as_ref()
                    .map(|i| format!(" (instance {i}{event})"))
                    .unwrap_or_default();
                out.push_str(&format!("  {}{instance}\n", p.phase));
                for c in &p.calls {
                    let args = match &c.args {
                        Json::Array(items) => items
                            .iter()
                            .map(|a| shorten(&a.to_string(), max))
                            .collect::<Vec<_>>()
                            .join(", "),
                        other => short(other),
                    };
                    // ProtoBuf:1 answers on the event's connection: no Step.
                    let answer = match (&c.answer, &c.step) {
                        (Some(a), step) => {
                            let from = match c.source {
                                Some(Source::Canned) => "canned",
                                Some(Source::NotEmulated) => "not emulated",
                                Some(Source::Unknown) => "unknown to Kong",
                                _ => "",
                            };
                            let how = [step.as_deref().unwrap_or(""), from]
                                .into_iter()
                                .filter(|s| !s.is_empty())
                                .collect::<Vec<_>>()
                                .join(", ");
                            let how = if how.is_empty() {
                                String::new()
                            } else {
                                format!(" ({how})")
                            };
                            format!(
                                " → {}{how}",
                                if a.is_null() { "nil".into() } else { short(a) }
                            )
                        }
                        _ => " (no answer: the event ends)".into(),
                    };
                    out.push_str(&format!("    {}({args}){answer}\n", c.method));
                }
                let resets = if p.resets > 0 {
                    format!(" after {} reset(s)", p.resets)
                } else {
                    String::new()
                };
                match p.status {
                    PhaseStatus::Completed => out.push_str(&format!("    ✓ done{resets}\n")),
                    PhaseStatus::Exited => out.push_str(&format!("    ✓ exited{resets}\n")),
                    PhaseStatus::Skipped => {
                        out.push_str("    - skipped (an earlier phase exited)\n")
                    }
                    PhaseStatus::Failed => {
                        out.push_str(&format!(
                            "    ✗ failed{resets}: {}\n",
                            p.error.as_deref().unwrap_or("?")
                        ));
                        if let Some(k) = &p.kong {
                            out.push_str(&format!("      Kong: {k}\n"));
                        }
                    }
                }
            }
            out.push_str(&format!("  response: {}\n", short(&r.response)));
            if let Some(u) = &r.upstream_request {
                out.push_str(&format!("  upstream request changes: {}\n", short(u)));
            }
            for l in &r.logs {
                out.push_str(&format!("  log [{}] {}: {}\n", l.phase, l.level, l.message));
            }
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        if !self.expectation.is_empty() {
            out.push_str("✗ the outcome does not match `expect`\n");
            for m in &self.expectation {
                out.push_str(&format!("    {m}\n"));
            }
        }
        let phases: Vec<&PhaseReport> = self.requests.iter().flat_map(|r| &r.phases).collect();
        let count = |s| phases.iter().filter(|p| p.status == s).count();
        out.push_str(&format!(
            "{} request(s), {} phase(s): {} completed, {} exited, {} failed, {} skipped{}\n",
            self.requests.len(),
            phases.len(),
            count(PhaseStatus::Completed),
            count(PhaseStatus::Exited),
            count(PhaseStatus::Failed),
            count(PhaseStatus::Skipped),
            if self.expectation.is_empty() {
                ""
            } else {
                "; expectation failed"
            }
        ));
        out
    }
}

fn lifecycle_line(l: &LifecycleEntry) -> String {
    let mut s = l.action.clone();
    if let Some(i) = &l.instance_id {
        s.push_str(&format!(" instance {i}"));
    }
    if let Some(seq) = l.seq {
        s.push_str(&format!(" (config __seq__ {seq})"));
    }
    if let Some(d) = &l.detail {
        s.push_str(&format!(": {d}"));
    }
    s
}
