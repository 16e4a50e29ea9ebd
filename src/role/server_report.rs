//! What a mock server run found, as WireMock's near-miss and unmatched-stub
//! reports have it: spec entries no request used, and requests no entry
//! answered, each with the nearest entry and why it missed (the diff of
//! its `match` against the params, the call numbers it is limited to, or a
//! method name that looks like a typo).
//!
//! Connections record misses into a shared `Misses` as they happen; at
//! exit the server turns it into a [`ServerReport`]: JSON for `--report`,
//! a summary on stderr, and with `--verify` exit code 1 when anything was
//! unused or unmatched.

use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value as Json;

use super::replies::{Choice, Replies};
use crate::error::{Error, Result};
use crate::exit::Outcome;
use crate::net::ConnId;
use crate::spec::matcher::{self, Mismatch};

/// Unmatched requests kept in detail; later ones are only counted.
const MAX_KEPT: usize = 1000;

/// What a server run found.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    /// True when every entry was used and every request matched one.
    pub passed: bool,
    /// Requests the spec answered or failed to answer.
    pub requests: u64,
    /// Proxy `new` mode: requests the spec had no entry for, forwarded to
    /// the real server (they are not misses).
    #[serde(skip_serializing_if = "is_zero")]
    pub forwarded: u64,
    /// Spec entries no request used.
    pub unused: Vec<UnusedEntry>,
    /// Requests no entry answered (the first 1000).
    pub unmatched: Vec<Unmatched>,
    /// Unmatched requests beyond those listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub unmatched_not_listed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A spec entry no request used.
#[derive(Debug, Clone, Serialize)]
pub struct UnusedEntry {
    /// The method it is listed under.
    pub method: String,
    /// Its position in the method's list, from 0.
    pub index: usize,
    /// Its `match` pattern, if it has one.
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Json>,
}

/// A request no entry answered (it got `not implemented`).
#[derive(Debug, Clone, Serialize)]
pub struct Unmatched {
    /// The connection it came on.
    pub connection: u64,
    /// Its msgid.
    pub msgid: u32,
    /// Its method.
    pub method: String,
    /// Its params.
    pub params: Json,
    /// Why no entry answered it.
    pub reason: String,
    /// The entry that came closest, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nearest: Option<Nearest>,
}

/// The entry closest to an unmatched request.
#[derive(Debug, Clone, Serialize)]
pub struct Nearest {
    /// The method the entry is listed under.
    pub method: String,
    /// Its position, when one entry is meant (not for a method name that
    /// only looks like the request's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Why it did not answer, in words.
    pub why: String,
    /// Its `match` against the params, where it differs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<Mismatch>,
}

/// Misses collected by all connections of one run.
#[derive(Debug, Default)]
pub(crate) struct Misses {
    requests: AtomicU64,
    forwarded: AtomicU64,
    unmatched: Mutex<(Vec<Unmatched>, u64)>,
}

impl Misses {
    /// Counts a request.
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request forwarded to the real server (proxy `new` mode).
    pub(crate) fn forwarded(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a request no entry answered; returns the reason, for logs.
    pub(crate) fn miss(
        &self,
        replies: &Replies,
        conn: ConnId,
        msgid: u32,
        method: &str,
        params: &Json,
        choice: &Choice<'_>,
    ) -> String {
        let (reason, nearest) = explain(replies, method, params, choice);
        let mut text = reason.clone();
        if let Some(n) = &nearest {
            text.push_str(&format!("; nearest: {}", n.label()));
        }
        let mut kept = self.unmatched.lock().unwrap_or_else(|e| e.into_inner());
        if kept.0.len() < MAX_KEPT {
            kept.0.push(Unmatched {
                connection: conn.0,
                msgid,
                method: method.to_owned(),
                params: params.clone(),
                reason,
                nearest,
            });
        } else {
            kept.1 += 1;
        }
        text
    }

    /// The report, with the entries `replies` says were never used.
    pub(crate) fn report(&self, replies: &Replies) -> ServerReport {
        let (unmatched, not_listed) = {
            let kept = self.unmatched.lock().unwrap_or_else(|e| e.into_inner());
            (kept.0.clone(), kept.1)
        };
        let unused: Vec<UnusedEntry> = replies
            .unused()
            .into_iter()
            .map(|(method, index)| UnusedEntry {
                pattern: replies
                    .entries(&method)
                    .and_then(|e| e.get(index))
                    .and_then(|p| p.entry.matcher.clone()),
                method,
                index,
            })
            .collect();
        ServerReport {
            passed: unused.is_empty() && unmatched.is_empty(),
            requests: self.requests.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            unused,
            unmatched,
            unmatched_not_listed: not_listed,
        }
    }
}

impl Nearest {
    fn label(&self) -> String {
        match self.index {
            Some(i) => format!("on_methods[{:?}][{i}] ({})", self.method, self.why),
            None => format!("{:?} ({})", self.method, self.why),
        }
    }
}

/// Why `choice` is not an entry, and the nearest entry.
fn explain(
    replies: &Replies,
    method: &str,
    params: &Json,
    choice: &Choice<'_>,
) -> (String, Option<Nearest>) {
    match choice {
        Choice::Entry { index, .. } => {
            (format!("answered by on_methods[{method:?}][{index}]"), None)
        }
        Choice::NoEntries => {
            let reason = format!("no entry for {method}");
            let nearest = replies
                .method_names()
                .filter_map(|m| {
                    let d = distance(&m.to_lowercase(), &method.to_lowercase());
                    (d <= 3.max(method.len() / 4)).then_some((d, m))
                })
                .min()
                .map(|(_, m)| Nearest {
                    method: m.to_owned(),
                    index: None,
                    why: "a method with a similar name".into(),
                    mismatches: vec![],
                });
            (reason, nearest)
        }
        Choice::NoMatch => {
            let reason = format!("no entry for {method} matches params {params}");
            let nearest = replies
                .entries(method)
                .into_iter()
                .flatten()
                .enumerate()
                .filter_map(|(i, p)| {
                    let m = p.entry.matcher.as_ref()?;
                    Some((matcher::diff(m, params), i))
                })
                .min_by_key(|(d, i)| (d.len(), *i))
                .map(|(mismatches, index)| Nearest {
                    method: method.to_owned(),
                    index: Some(index),
                    why: format!("its match differs in {} place(s)", mismatches.len()),
                    mismatches,
                });
            (reason, nearest)
        }
        Choice::NotThisCall(call) => {
            let reason = format!("no entry for {method} applies to call {call}");
            let nearest = replies
                .entries(method)
                .into_iter()
                .flatten()
                .enumerate()
                .find(|(_, p)| {
                    !p.entry.when.is_always()
                        && p.entry
                            .matcher
                            .as_ref()
                            .is_none_or(|m| matcher::matches(m, params))
                })
                .map(|(index, _)| Nearest {
                    method: method.to_owned(),
                    index: Some(index),
                    why: format!("its `calls`/`probability` did not select call {call}"),
                    mismatches: vec![],
                });
            (reason, nearest)
        }
    }
}

/// Levenshtein distance between two short strings.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

impl ServerReport {
    /// Writes the JSON report to `path` (`-`: one line on stdout).
    pub fn write(&self, path: &Path) -> Result<()> {
        let io = |source| Error::Io {
            context: format!("writing the report to {}", path.display()),
            source,
        };
        if path == Path::new("-") {
            let line = serde_json::to_string(self).map_err(|e| Error::Other(e.to_string()))?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}").map_err(io)?;
            out.flush().map_err(io)
        } else {
            let text =
                serde_json::to_string_pretty(self).map_err(|e| Error::Other(e.to_string()))?;
            std::fs::write(path, text + "\n").map_err(io)
        }
    }

    /// Exit outcome: with `verify`, 1 when anything was unused or unmatched.
    pub fn outcome(&self, verify: bool) -> Outcome {
        if verify && !self.passed {
            Outcome::Failed
        } else {
            Outcome::Passed
        }
    }

    /// The summary printed on stderr at exit.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for u in &self.unused {
            out.push_str(&format!(
                "  - on_methods[{:?}][{}] was never used\n",
                u.method, u.index
            ));
        }
        for u in &self.unmatched {
            out.push_str(&format!(
                "  ✗ c{} #{} {}: {}\n",
                u.connection, u.msgid, u.method, u.reason
            ));
            if let Some(n) = &u.nearest {
                out.push_str(&format!("      nearest: {}\n", n.label()));
                for m in &n.mismatches {
                    out.push_str(&format!("        {m}\n"));
                }
            }
        }
        let unmatched = self.unmatched.len() as u64 + self.unmatched_not_listed;
        let forwarded = if self.forwarded > 0 {
            format!(" ({} more forwarded to the upstream)", self.forwarded)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{} requests{forwarded}: {} unmatched; {} spec entries never used\n",
            self.requests,
            unmatched,
            self.unused.len()
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(distance("plugin.step", "plugin.step"), 0);
        assert_eq!(distance("plugin.stpe", "plugin.step"), 2);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
