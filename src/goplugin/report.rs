//! What a go-plugin client run found: the handshake, the health check,
//! each call with its responses and failures, and how the plugin ended.

use serde::Serialize;
use serde_json::Value as Json;

use crate::exit::Outcome;
use crate::spec::matcher::Mismatch;

/// The whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostReport {
    /// The handshake line as printed.
    pub handshake: Option<String>,
    /// Why the host rejected it (go-plugin's text).
    pub handshake_error: Option<String>,
    /// The negotiated app version.
    pub app_version: Option<i64>,
    /// Failures outside calls (connection, health).
    pub failures: Vec<String>,
    /// One entry per call.
    pub calls: Vec<CallReport>,
    /// How the plugin ended.
    pub shutdown: Option<String>,
}

/// One call.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallReport {
    /// Label.
    pub name: Option<String>,
    /// `/service/method`.
    pub path: String,
    /// Status code.
    pub status: Option<u32>,
    /// Status name.
    pub status_name: Option<String>,
    /// Status message.
    pub message: Option<String>,
    /// Responses decoded (protobuf JSON with a schema, raw fields without).
    pub responses: Vec<Json>,
    /// What did not match.
    pub failures: Vec<String>,
    /// Field-level differences.
    pub mismatches: Vec<Mismatch>,
    /// Milliseconds.
    pub elapsed_ms: Option<f64>,
    /// Whether it ran.
    pub ran: bool,
}

impl HostReport {
    /// Exit 0 when everything held.
    pub fn outcome(&self) -> Outcome {
        let bad = self.handshake_error.is_some()
            || !self.failures.is_empty()
            || self
                .calls
                .iter()
                .any(|c| !c.ran || !c.failures.is_empty() || !c.mismatches.is_empty());
        if bad {
            Outcome::Failed
        } else {
            Outcome::Passed
        }
    }

    /// The summary printed on stderr.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if let Some(e) = &self.handshake_error {
            s.push_str(&format!("  ✗ handshake rejected: {e}\n"));
        }
        for f in &self.failures {
            s.push_str(&format!("  ✗ {f}\n"));
        }
        let (mut passed, mut failed, mut not_run) = (0, 0, 0);
        for (i, c) in self.calls.iter().enumerate() {
            let label = c.name.clone().unwrap_or_else(|| c.path.clone());
            if !c.ran {
                not_run += 1;
                continue;
            }
            if c.failures.is_empty() && c.mismatches.is_empty() {
                passed += 1;
                continue;
            }
            failed += 1;
            s.push_str(&format!("  ✗ call {i} {label}\n"));
            for f in &c.failures {
                s.push_str(&format!("      {f}\n"));
            }
            for m in &c.mismatches {
                s.push_str(&format!("        {m}\n"));
            }
        }
        s.push_str(&format!(
            "{} calls: {passed} passed, {failed} failed, {not_run} not run\n",
            self.calls.len()
        ));
        s
    }
}
