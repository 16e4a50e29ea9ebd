//! How a `ProtoBuf:1` client step is reported: its blank report, then its
//! outcome (a return, an exit, or the closed connection that is the
//! protocol's error) checked against `expect`, and values captured.

use serde_json::Value as Json;

use super::report::{Failure, StepReport};
use crate::spec::template::{self, Vars};
use crate::spec::{ExpectError, Step, matcher};

pub(super) fn blank((index, s): (usize, &Step)) -> StepReport {
    StepReport::blank(index, s)
}

/// Records the outcome, checks expectations and captures values.
pub(super) fn settle(
    step: &Step,
    report: &mut StepReport,
    error: Option<&str>,
    result: Option<Json>,
    vars: &mut Vars,
) {
    if let Some(text) = error {
        report.error = Some(Json::from(text));
    }
    report.result = result.clone();
    if let Some(expect) = &step.expect {
        match (&expect.error, error) {
            (Some(ExpectError::None), Some(text)) => report.failures.push(Failure::new(format!(
                "expected success, got error {text:?}"
            ))),
            (Some(ExpectError::Any), None) => report.failures.push(Failure::new(
                "expected an error (a closed connection), got success",
            )),
            (Some(ExpectError::Contains(want)), None) => report.failures.push(Failure::new(
                format!("expected an error containing {want:?}, got success"),
            )),
            (Some(ExpectError::Contains(want)), Some(text)) if !text.contains(want.as_str()) => {
                report.failures.push(Failure::new(format!(
                    "expected an error containing {want:?}, got {text:?}"
                )))
            }
            _ => {}
        }
        if let (Some(pattern), Some(actual)) = (&expect.result, &result) {
            let pattern = template::substitute(pattern, vars).unwrap_or_else(|_| pattern.clone());
            let mismatches = matcher::diff(&pattern, actual);
            report.expected = Some(pattern);
            if !mismatches.is_empty() {
                report.failures.push(Failure {
                    message: "result does not match the expectation".into(),
                    mismatches,
                });
            }
        }
    }
    let Some(result) = result else {
        return;
    };
    for (name, path) in &step.capture {
        let found = template::parse_path(path)
            .ok()
            .and_then(|p| template::lookup(&result, &p).cloned());
        match found {
            Some(value) => {
                vars.insert(name.clone(), value);
            }
            None => report.failures.push(Failure::new(format!(
                "capture `{name}`: nothing at `{path}` in the result"
            ))),
        }
    }
}
