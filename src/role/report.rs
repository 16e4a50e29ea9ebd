//! What a client run found: per-step outcome, the reply, failures with
//! field-level diffs, near misses (see `near_miss.rs`) and expectations
//! never exercised. Rendered for people on stderr, serialised as JSON for
//! machines (`--json`).

use serde::Serialize;
use serde_json::Value as Json;

use super::near_miss::{self, NearMiss, NotExercised};
use crate::exit::Outcome;
use crate::spec::Step;
use crate::spec::matcher::Mismatch;

/// What a client run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when every step ran and every expectation held.
    pub passed: bool,
    /// One entry per step of the spec, in order.
    pub steps: Vec<StepReport>,
    /// For failed expectations: the closest message the run did receive
    /// (another step's reply, a response with another msgid, a
    /// notification), when it is closer than the step's own reply.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub near_misses: Vec<NearMiss>,
    /// Steps whose expectations were never checked, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_exercised: Vec<NotExercised>,
}

/// How one step went.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Position in `try_methods`, from 0.
    pub index: usize,
    /// The step's label, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The method called.
    pub method: String,
    /// `passed`, `failed` or `not_run`.
    pub status: StepStatus,
    /// msgid used, once sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgid: Option<u32>,
    /// Params as sent (after substitution).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Json>,
    /// The reply's error, if the reply had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Json>,
    /// The reply's result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Json>,
    /// Notifications that arrived while waiting for the reply.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<Json>,
    /// Why the step failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
    /// Time from sending the request to the reply, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<f64>,
    /// ProtoBuf:1 events: the PDK calls the plugin made and Kong's answers
    /// (`{"method", "args", "reply"}`), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pdk: Vec<Json>,
    /// The result pattern of `expect`, after `${name}` substitution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Json>,
    /// Responses with another msgid that arrived while waiting for this
    /// step's reply (`{"msgid", "error", "result"}`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub strays: Vec<Json>,
}

impl StepReport {
    /// The report of a step that has not run yet.
    pub fn blank(index: usize, step: &Step) -> StepReport {
        StepReport {
            index,
            name: step.name.clone(),
            method: step.method.clone(),
            status: StepStatus::NotRun,
            msgid: None,
            params: None,
            error: None,
            result: None,
            notifications: vec![],
            failures: vec![],
            elapsed_ms: None,
            pdk: vec![],
            expected: None,
            strays: vec![],
        }
    }
}

/// Step outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Ran, and every expectation held.
    Passed,
    /// Ran, and something was wrong.
    Failed,
    /// Never ran (an earlier failure ended the connection).
    NotRun,
}

/// One reason a step failed.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// What went wrong, in words.
    pub message: String,
    /// Field-by-field differences, for expectation failures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<Mismatch>,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            mismatches: vec![],
        }
    }
}

impl Report {
    /// The report of a run from its steps: whether it passed, near misses
    /// and expectations never exercised.
    pub fn new(steps: Vec<StepReport>) -> Report {
        let passed = steps.iter().all(|r| r.status == StepStatus::Passed);
        Report {
            passed,
            near_misses: near_miss::near_misses(&steps),
            not_exercised: near_miss::not_exercised(&steps),
            steps,
        }
    }

    /// A readable summary with a diff per failed expectation, the closest
    /// message for each, and what was never exercised.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.steps {
            let label = s.name.as_deref().unwrap_or(&s.method);
            match s.status {
                StepStatus::Passed | StepStatus::NotRun => {}
                StepStatus::Failed => {
                    out.push_str(&format!("  ✗ step {} {label}\n", s.index));
                    for f in &s.failures {
                        out.push_str(&format!("      {}\n", f.message));
                        for m in &f.mismatches {
                            out.push_str(&format!("        {m}\n"));
                        }
                    }
                    for n in self.near_misses.iter().filter(|n| n.step == s.index) {
                        out.push_str(&n.render());
                    }
                }
            }
        }
        out.push_str(&near_miss::render_not_exercised(&self.not_exercised));
        let count = |st| self.steps.iter().filter(|s| s.status == st).count();
        out.push_str(&format!(
            "{} steps: {} passed, {} failed, {} not run\n",
            self.steps.len(),
            count(StepStatus::Passed),
            count(StepStatus::Failed),
            count(StepStatus::NotRun)
        ));
        out
    }
}

impl Report {
    /// Exit outcome for this report.
    pub fn outcome(&self) -> Outcome {
        if self.passed {
            Outcome::Passed
        } else {
            Outcome::Failed
        }
    }
}
