//! Verifying a client run beyond pass/fail: for each failed expectation
//! the *near miss* (the closest message the run did receive, when it is
//! closer than the step's own reply: replies out of order, a response with
//! the wrong msgid, a notification carrying what was expected), and the
//! expectations never exercised (steps not reached because the run
//! stopped, steps whose reply never came).

use serde::Serialize;
use serde_json::Value as Json;

use super::report::{StepReport, StepStatus};
use crate::spec::matcher::{self, Mismatch};

/// The closest message to a failed step's expectation.
#[derive(Debug, Clone, Serialize)]
pub struct NearMiss {
    /// The failed step's index.
    pub step: usize,
    /// Where the closest message came from, in words (`reply to step 3
    /// (plugin.Step)`, `response with msgid 77 during step 1`,
    /// `notification serverPid during step 0`).
    pub closest: String,
    /// The closest message's value that was compared.
    pub value: Json,
    /// How it differs from the expectation; empty when it matches.
    pub mismatches: Vec<Mismatch>,
}

impl NearMiss {
    /// Lines under the failed step in the human summary.
    pub fn render(&self) -> String {
        let mut out = if self.mismatches.is_empty() {
            format!(
                "      near miss: the {} matches this expectation\n",
                self.closest
            )
        } else {
            format!(
                "      near miss: the {} differs in {} place(s)\n",
                self.closest,
                self.mismatches.len()
            )
        };
        for m in &self.mismatches {
            out.push_str(&format!("        {m}\n"));
        }
        out
    }
}

/// A step whose expectations were never checked.
#[derive(Debug, Clone, Serialize)]
pub struct NotExercised {
    /// The step's index.
    pub step: usize,
    /// Its method.
    pub method: String,
    /// Why it was never checked.
    pub reason: String,
}

/// Messages the run received, as candidates for near misses.
struct Candidate<'a> {
    from: String,
    value: &'a Json,
    same_method: bool,
}

fn candidates<'a>(steps: &'a [StepReport], failed: &StepReport) -> Vec<Candidate<'a>> {
    let mut out = Vec::new();
    for s in steps {
        if s.index != failed.index
            && let Some(result) = &s.result
        {
            out.push(Candidate {
                from: format!("reply to step {} ({})", s.index, s.method),
                value: result,
                same_method: s.method == failed.method,
            });
        }
        for stray in &s.strays {
            out.push(Candidate {
                from: format!(
                    "response with msgid {} during step {}",
                    stray["msgid"], s.index
                ),
                value: &stray["result"],
                same_method: s.index == failed.index,
            });
        }
        for n in &s.notifications {
            let name = n.get(1).and_then(Json::as_str).unwrap_or("?");
            out.push(Candidate {
                from: format!("notification {name} during step {}", s.index),
                value: n.get(2).unwrap_or(&Json::Null),
                same_method: false,
            });
        }
    }
    out
}

/// The near miss of every failed step that has a result expectation, when
/// some other message comes closer to it than the step's own reply.
pub fn near_misses(steps: &[StepReport]) -> Vec<NearMiss> {
    let mut out = Vec::new();
    for s in steps.iter().filter(|s| s.status == StepStatus::Failed) {
        let Some(pattern) = &s.expected else { continue };
        let own = s
            .result
            .as_ref()
            .map(|r| matcher::diff(pattern, r).len())
            .unwrap_or(usize::MAX);
        if own == 0 {
            continue;
        }
        let leaves = leaves(pattern);
        let best = candidates(steps, s)
            .into_iter()
            .map(|c| {
                let d = matcher::diff(pattern, c.value);
                (d.len(), !c.same_method, c, d)
            })
            .filter(|(n, ..)| *n < own && *n < leaves)
            .min_by_key(|(n, other_method, ..)| (*n, *other_method));
        if let Some((_, _, c, mismatches)) = best {
            out.push(NearMiss {
                step: s.index,
                closest: c.from,
                value: c.value.clone(),
                mismatches,
            });
        }
    }
    out
}

/// Number of values a pattern checks (a tagged value counts once).
fn leaves(pattern: &Json) -> usize {
    match pattern {
        Json::Object(o) if !o.is_empty() && !is_tag(o) => o.values().map(leaves).sum(),
        Json::Array(a) if !a.is_empty() => a.iter().map(leaves).sum(),
        _ => 1,
    }
}

fn is_tag(o: &serde_json::Map<String, Json>) -> bool {
    o.len() == 1 && o.keys().all(|k| k.starts_with('$'))
}

/// Steps whose expectations were never checked: those never run (with the
/// step that stopped the run), and those that ran but got no reply.
pub fn not_exercised(steps: &[StepReport]) -> Vec<NotExercised> {
    let mut out = Vec::new();
    let mut stopper: Option<String> = None;
    for s in steps {
        match s.status {
            StepStatus::NotRun => {
                let reason = stopper.clone().unwrap_or_else(|| {
                    "not run: the run was interrupted or could not start".into()
                });
                out.push(NotExercised {
                    step: s.index,
                    method: s.method.clone(),
                    reason,
                });
            }
            StepStatus::Failed if s.result.is_none() && s.error.is_none() => {
                let why = s
                    .failures
                    .first()
                    .map(|f| f.message.clone())
                    .unwrap_or_default();
                stopper = Some(format!(
                    "not run: the run stopped at step {} ({}): {why}",
                    s.index, s.method
                ));
                if s.expected.is_some() {
                    out.push(NotExercised {
                        step: s.index,
                        method: s.method.clone(),
                        reason: format!("its expectation was never checked: {why}"),
                    });
                }
            }
            StepStatus::Failed => {
                let why = s
                    .failures
                    .last()
                    .map(|f| f.message.clone())
                    .unwrap_or_default();
                stopper = Some(format!(
                    "not run: the run stopped after step {} ({}): {why}",
                    s.index, s.method
                ));
            }
            StepStatus::Passed => {
                stopper = Some(format!(
                    "not run: the run stopped after step {} ({})",
                    s.index, s.method
                ));
            }
        }
    }
    out
}

/// The human summary's lines for expectations never exercised.
pub fn render_not_exercised(list: &[NotExercised]) -> String {
    let mut out = String::new();
    for n in list {
        out.push_str(&format!("  - step {} {}: {}\n", n.step, n.method, n.reason));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::report::Failure;
    use crate::spec::Step;
    use serde_json::json;

    fn step(index: usize, method: &str, status: StepStatus, result: Option<Json>) -> StepReport {
        let spec_step = Step {
            name: None,
            method: method.into(),
            params: json!([]),
            expect: None,
            capture: Default::default(),
            conn: None,
        };
        let mut r = StepReport::blank(index, &spec_step);
        r.status = status;
        r.result = result;
        r
    }

    #[test]
    fn closest_reply_of_the_same_method_wins() {
        let mut a = step(
            0,
            "plugin.Step",
            StepStatus::Failed,
            Some(json!({"Data": "x"})),
        );
        a.expected = Some(json!({"EventId": 1, "Data": "ret"}));
        a.failures.push(Failure::new("result does not match"));
        let b = step(
            1,
            "plugin.Other",
            StepStatus::Passed,
            Some(json!({"Data": "ret"})),
        );
        let c = step(
            2,
            "plugin.Step",
            StepStatus::Passed,
            Some(json!({"EventId": 2, "Data": "ret"})),
        );
        let near = near_misses(&[a, b, c]);
        assert_eq!(near.len(), 1);
        assert_eq!(near[0].closest, "reply to step 2 (plugin.Step)");
        assert_eq!(near[0].mismatches[0].path, "$.EventId");
    }

    #[test]
    fn nothing_near_when_nothing_is_closer() {
        let mut a = step(0, "m", StepStatus::Failed, Some(json!({"Data": "x"})));
        a.expected = Some(json!({"Data": "ret"}));
        let b = step(1, "m", StepStatus::Passed, Some(json!({"Data": "y"})));
        assert!(near_misses(&[a, b]).is_empty());
    }

    #[test]
    fn steps_after_a_dead_connection_are_listed_with_the_reason() {
        let mut a = step(0, "m", StepStatus::Failed, None);
        a.expected = Some(json!(1));
        a.failures
            .push(Failure::new("the server closed the connection"));
        let b = step(1, "n", StepStatus::NotRun, None);
        let list = not_exercised(&[a, b]);
        assert_eq!(list.len(), 2);
        assert!(list[0].reason.contains("never checked"), "{list:?}");
        assert!(
            list[1]
                .reason
                .contains("stopped at step 0 (m): the server closed"),
            "{list:?}"
        );
    }
}
