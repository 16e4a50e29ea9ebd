//! Kong's PDK, emulated for one request.
//!
//! A plugin server asks Kong for PDK calls (`{Method, Args}`); Kong runs
//! the Lua function and sends its first return value back. [`Pdk::call`]
//! does the same against an emulated request: getters answer from the
//! [`HttpRequest`] and [`Upstream`], setters record [`Effects`], canned
//! answers from the spec take precedence, and Kong's conversions apply
//! ([`super::step::convert`]). The answers are protocol-neutral: a
//! `MsgPack:1` or `ProtoBuf:1` driver encodes them.
//!
//! Methods Kong does not have get nil, as in Kong (which logs `could not
//! find pdk method`); real PDK methods without a default here also get nil
//! and are reported as not emulated, so a canned answer can be added.

use serde::Serialize;
use serde_json::{Map, Value as Json};

mod defaults;

use super::canned::Canned;
use super::effects::{Effects, apply};
use super::instance::Identity;
use super::request::{Headers, HttpRequest, Upstream};
use super::step::{self, Answer};

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Plugtap's emulation of the PDK function.
    Default,
    /// The spec's `kong.pdk` table.
    Canned,
    /// A real PDK function plugtap does not emulate: answered nil.
    NotEmulated,
    /// Not a PDK function: Kong logs `could not find pdk method` and
    /// answers nil.
    Unknown,
}

/// What Kong does with one PDK call.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Send this answer back.
    Answer {
        /// The converted answer.
        answer: Answer,
        /// Where it came from.
        source: Source,
    },
    /// Send nothing: `kong.response.exit` / `kong.response.error` end the
    /// event.
    Terminal,
    /// Kong raises a Lua error: the plugin handler aborts (500).
    LuaError(String),
}

/// The PDK's view of one request, across its phases.
#[derive(Debug, Clone)]
pub struct Pdk {
    /// The client's request.
    pub request: HttpRequest,
    /// The upstream's response.
    pub upstream: Upstream,
    /// What the plugin changed so far.
    pub effects: Effects,
    identity: Identity,
    phase: String,
    nginx_ctx: Map<String, Json>,
    consumer: Option<Json>,
    credential: Option<Json>,
    started_at: f64,
}

enum Default {
    Value(Option<Json>),
    NotEmulated,
    Unknown,
}

impl Pdk {
    /// A request about to enter its first phase.
    pub fn new(request: HttpRequest, upstream: Upstream, identity: Identity) -> Pdk {
        let started_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0);
        Pdk {
            request,
            upstream,
            effects: Effects::default(),
            identity,
            phase: "access".into(),
            nginx_ctx: Map::new(),
            consumer: None,
            credential: None,
            started_at,
        }
    }

    /// Enters a phase.
    pub fn set_phase(&mut self, phase: &str) {
        self.phase = phase.to_owned();
    }

    /// Answers one PDK call (`args` as the server sent them: an array, or
    /// one value).
    pub fn call(&mut self, canned: &mut Canned, method: &str, args: &Json) -> Reply {
        let list = match args {
            Json::Array(items) => items.clone(),
            Json::Null => vec![],
            other => vec![other.clone()],
        };
        let default = self.default(method, &list);
        if step::is_terminal(method) {
            return Reply::Terminal;
        }
        let (value, source) = match canned.take(method, &Json::Array(list)) {
            Some(v) => (Some(v), Source::Canned),
            None => match default {
                Default::Value(v) => (v, Source::Default),
                Default::NotEmulated => (None, Source::NotEmulated),
                // Kong returns before converting.
                Default::Unknown => {
                    return Reply::Answer {
                        answer: Answer::Nil,
                        source: Source::Unknown,
                    };
                }
            },
        };
        match step::convert(method, value) {
            Ok(answer) => Reply::Answer { answer, source },
            Err(e) => Reply::LuaError(e),
        }
    }

    fn late(&self) -> bool {
        matches!(self.phase.as_str(), "response" | "log") && self.effects.exit.is_none()
    }

    fn response_headers(&self) -> Headers {
        let base = if self.late() {
            self.upstream.headers.clone()
        } else {
            Headers::default()
        };
        apply(&base, &self.effects.response_headers)
    }
}

/// A log or header argument as text: strings as they are, the rest as JSON.
pub(super) fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}
