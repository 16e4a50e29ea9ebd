//! What a prox client run found: the steps, as for every protocol, and the
//! plugin's side of the run: its stdio lines, its `ready`, its pushes and
//! how it ended.

use serde::Serialize;
use serde_json::Value as Json;

use super::report::{Failure, Report, StepReport, StepStatus};
use crate::exit::Outcome;
use crate::message::shorten;

/// What a prox client run found.
#[derive(Debug, Clone, Serialize)]
pub struct ProxReport {
    /// True when every step passed and the plugin behaved.
    pub passed: bool,
    /// One entry per step of the spec, in order.
    pub steps: Vec<StepReport>,
    /// The plugin process and its stdio channel.
    pub plugin: PluginReport,
}

/// The plugin's side of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PluginReport {
    /// The command that started it (absent when plugtap only connected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `configure` lines sent.
    pub configures: usize,
    /// `ready` lines received.
    pub readies: usize,
    /// The `ready` params used (socket and hooks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<Json>,
    /// The socket the steps used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// Pushes (`set_targets`, `set_speed`, `log`, ...): method and params.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pushes: Vec<Json>,
    /// Every stdio line, both ways: `{"direction", "view"}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<Json>,
    /// Lines left out of `lines` (past the first 10,000); they were logged.
    #[serde(skip_serializing_if = "is_zero")]
    pub lines_omitted: usize,
    /// How the plugin ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    /// Things prox would not accept from the plugin, outside the steps.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
}

impl ProxReport {
    /// Builds the report; `passed` comes from the steps and the plugin.
    pub fn new(steps: Vec<StepReport>, plugin: PluginReport) -> ProxReport {
        let passed =
            steps.iter().all(|s| s.status == StepStatus::Passed) && plugin.failures.is_empty();
        ProxReport {
            passed,
            steps,
            plugin,
        }
    }

    /// A readable summary: the steps' failures, then the plugin's side.
    pub fn render(&self) -> String {
        let steps = Report::new(self.steps.clone());
        let mut out = String::new();
        let p = &self.plugin;
        if let Some(ready) = &p.ready {
            let hooks = ready["hooks"]
                .as_array()
                .map(|h| {
                    h.iter()
                        .filter_map(Json::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            out.push_str(&format!(
                "  plugin ready on {} (hooks: {hooks}); {} configure, {} ready\n",
                ready["socket"].as_str().unwrap_or("?"),
                p.configures,
                p.readies
            ));
        }
        for push in &p.pushes {
            out.push_str(&format!(
                "  plugin pushed {} {}\n",
                push["method"].as_str().unwrap_or("?"),
                shorten(&push["params"].to_string(), 160)
            ));
        }
        if let Some(exit) = &p.exit {
            out.push_str(&format!("  plugin {exit}\n"));
        }
        for f in &p.failures {
            out.push_str(&format!("  ✗ plugin: {}\n", shorten(&f.message, 400)));
        }
        out.push_str(&steps.render());
        out
    }

    /// Exit outcome for this report.
    pub fn outcome(&self) -> Outcome {
        if self.passed {
            Outcome::Passed
        } else {
            Outcome::Failed
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
