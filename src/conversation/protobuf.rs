//! What each frame of a `ProtoBuf:1` connection is, from the frames before
//! it.
//!
//! Frames carry no type tag, so their meaning comes from their position:
//!
//! ```text
//! K→S RpcCall{sequence, cmd_*}            ─┐ simple call
//! S→K RpcReturn{sequence, ...}            ─┘
//!
//! K→S RpcCall{sequence, cmd_handle_event} ─┐ event
//!     S→K method name                      │  ┐ once per PDK call
//!     S→K arguments (method's input type)  │  │
//!     K→S reply (method's output type)     │  ┘ (none after kong.response.exit)
//! S→K empty frame                          │
//! S→K RpcReturn{sequence}                 ─┘
//! ```
//!
//! [`ProtobufConversation`] is fed every frame of one connection with its
//! direction, in the order they were read across both directions, and
//! returns an [`Observation`]: a protocol-neutral [`MessageView`] for logs
//! and recordings plus the decoded content roles act on. Frames that do not
//! fit (undecodable payloads, a frame from the side that should be silent)
//! are [`Kind::Malformed`] with a `problem`; the state still advances where
//! the frame's position is clear, so one bad frame does not garble the rest.
//! When a side closes, [`ProtobufConversation::closed`] says whether a frame
//! was due: a server that closes instead of answering is how `ProtoBuf:1`
//! signals an error.

use serde_json::Value as Json;

use crate::message::protobuf::envelope::HANDLE_EVENT;
use crate::message::protobuf::pdk::{self, EXIT};
use crate::message::protobuf::{Envelope, EnvelopeKind, PdkMethod};
use crate::message::{Direction, Kind, MessageView};

/// What a frame turned out to be, with what roles need from it.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// An RpcCall. `command` is the oneof member set (`None` if none is).
    Call {
        sequence: i64,
        command: Option<String>,
        params: Json,
    },
    /// An RpcReturn; `value` is all of it as JSON.
    Return { sequence: i64, value: Json },
    /// A PDK method-name frame; `known` says whether `service Kong` has it.
    PdkCall { method: String, known: bool },
    /// A PDK call's arguments, decoded with the method's input type.
    PdkArgs { method: String, args: Json },
    /// Kong's reply, decoded with the method's output type.
    PdkReply { method: String, reply: Json },
    /// The empty frame ending the PDK calls.
    PdkEnd,
    /// A frame that could not be given meaning; the view says why.
    Malformed,
}

/// One observed frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The protocol-neutral view.
    pub view: MessageView,
    /// The decoded content.
    pub what: Observed,
}

/// Where an event is.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// The server names a PDK method or sends the empty frame.
    Name,
    /// The server sends the arguments of `method` (`None`: unreadable name).
    Args(Option<String>),
    /// Kong replies to `method`.
    Reply(String),
    /// The server sends the RpcReturn.
    Return,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// No call pending: Kong speaks next.
    Idle,
    /// A simple call is pending: the server owes the RpcReturn.
    Call {
        sequence: Option<i64>,
        command: Option<String>,
    },
    /// A `cmd_handle_event` is running.
    Event { sequence: i64, phase: Phase },
}

/// Per-connection `ProtoBuf:1` state; see the module docs.
#[derive(Debug, Clone)]
pub struct ProtobufConversation {
    state: State,
}

impl Default for ProtobufConversation {
    fn default() -> Self {
        ProtobufConversation { state: State::Idle }
    }
}

impl ProtobufConversation {
    /// A conversation on a fresh connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no call is pending (Kong may send the next RpcCall).
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// The PDK method whose reply Kong owes, if any.
    pub fn awaiting_reply(&self) -> Option<&str> {
        match &self.state {
            State::Event {
                phase: Phase::Reply(method),
                ..
            } => Some(method),
            _ => None,
        }
    }

    /// Gives meaning to the next frame's payload, travelling `dir`.
    pub fn observe(&mut self, dir: Direction, payload: &[u8]) -> Observation {
        let state = std::mem::replace(&mut self.state, State::Idle);
        let (next, obs) = match (state, dir) {
            (State::Idle, Direction::ToServer) => call(payload),
            (State::Call { sequence, command }, Direction::ToClient) => {
                (State::Idle, ret(payload, sequence, command.as_deref()))
            }
            (State::Event { sequence, phase }, Direction::ToClient) => {
                event_from_server(sequence, phase, payload)
            }
            (
                State::Event {
                    sequence,
                    phase: Phase::Reply(method),
                },
                Direction::ToServer,
            ) => (
                State::Event {
                    sequence,
                    phase: Phase::Name,
                },
                reply(&method, payload),
            ),
            (state, dir) => {
                let problem = format!("{} sent a frame while {}", sender(dir), state.describe());
                (state, malformed(None, problem, payload))
            }
        };
        self.state = next;
        obs
    }

    /// A side closed its end (`dir` is the direction it sent in). Returns
    /// what was due from it, if anything: for the server, that is
    /// `ProtoBuf:1`'s error signal. The conversation is idle afterwards.
    pub fn closed(&mut self, dir: Direction) -> Option<MessageView> {
        let state = std::mem::replace(&mut self.state, State::Idle);
        let (id, method, due) = match (&state, dir) {
            (State::Idle, _) => return None,
            (State::Call { sequence, command }, Direction::ToClient) => (
                *sequence,
                command.clone(),
                format!(
                    "the server closed the connection instead of answering {}; \
                     this is how ProtoBuf:1 servers report errors (Kong sees `closed`)",
                    state.describe_call()
                ),
            ),
            (
                State::Event {
                    sequence,
                    phase: Phase::Reply(method),
                },
                Direction::ToServer,
            ) => (
                Some(*sequence),
                Some(method.clone()),
                if method == EXIT {
                    format!("Kong closed the connection after {EXIT}, without a reply, as it does")
                } else {
                    format!("Kong closed the connection without replying to {method}")
                },
            ),
            (State::Event { sequence, .. }, Direction::ToClient) => (
                Some(*sequence),
                Some(HANDLE_EVENT.to_owned()),
                format!(
                    "the server closed the connection instead of answering RpcCall #{sequence} \
                     ({HANDLE_EVENT}) while {}; \
                     this is how ProtoBuf:1 servers report errors (Kong sees `closed`)",
                    state.describe()
                ),
            ),
            (_, Direction::ToServer) => (
                None,
                None,
                format!("Kong closed the connection while {}", state.describe()),
            ),
        };
        Some(MessageView {
            kind: Kind::Closed,
            id: id.and_then(|s| u64::try_from(s).ok()),
            method,
            problem: None,
            error: Some(due),
            value: Json::Null,
        })
    }
}

impl State {
    fn describe(&self) -> String {
        match self {
            State::Idle => "no call was pending".into(),
            State::Call { .. } => format!("the RpcReturn for {} was due", self.describe_call()),
            State::Event { sequence, phase } => match phase {
                Phase::Name => format!(
                    "a PDK method name or the end of PDK calls of event #{sequence} was due"
                ),
                Phase::Args(Some(m)) => format!("the arguments of {m} were due"),
                Phase::Args(None) => "the arguments of a PDK call were due".into(),
                Phase::Reply(m) => format!("Kong's reply to {m} was due"),
                Phase::Return => format!("the RpcReturn of event #{sequence} was due"),
            },
        }
    }

    fn describe_call(&self) -> String {
        match self {
            State::Call { sequence, command } => {
                let seq = sequence.map_or_else(|| "?".to_owned(), |s| s.to_string());
                match command {
                    Some(c) => format!("RpcCall #{seq} ({c})"),
                    None => format!("RpcCall #{seq}"),
                }
            }
            other => other.describe(),
        }
    }
}

fn sender(dir: Direction) -> &'static str {
    match dir {
        Direction::ToServer => "Kong",
        Direction::ToClient => "the server",
    }
}

fn malformed(method: Option<&str>, problem: String, payload: &[u8]) -> Observation {
    Observation {
        view: pdk::malformed_view(method, problem, payload),
        what: Observed::Malformed,
    }
}

/// Kong's RpcCall, from an idle connection.
fn call(payload: &[u8]) -> (State, Observation) {
    let env = match Envelope::decode(EnvelopeKind::Call, payload) {
        Ok(env) => env,
        Err(e) => {
            // The server will answer nothing useful; a close is still due.
            let state = State::Call {
                sequence: None,
                command: None,
            };
            return (state, malformed(None, e.to_string(), payload));
        }
    };
    let sequence = env.sequence();
    let command = env.member();
    let params = env.member_json().unwrap_or(Json::Null);
    let state = match command.as_deref() {
        Some(HANDLE_EVENT) => State::Event {
            sequence,
            phase: Phase::Name,
        },
        _ => State::Call {
            sequence: Some(sequence),
            command: command.clone(),
        },
    };
    let view = env.view();
    let what = if view.kind == Kind::Malformed {
        Observed::Malformed
    } else {
        Observed::Call {
            sequence,
            command,
            params,
        }
    };
    (state, Observation { view, what })
}

/// The server's RpcReturn for the call with `expected` sequence.
fn ret(payload: &[u8], expected: Option<i64>, command: Option<&str>) -> Observation {
    let env = match Envelope::decode(EnvelopeKind::Return, payload) {
        Ok(env) => env,
        Err(e) => return malformed(None, e.to_string(), payload),
    };
    let mut view = env.view();
    let sequence = env.sequence();
    if let Some(expected) = expected.filter(|e| *e != sequence) {
        let what = if payload.is_empty() {
            format!(
                "an empty frame instead of an RpcReturn (go-pdk's answer to {}, which it does not implement)",
                command.unwrap_or("a command")
            )
        } else {
            format!("sequence {sequence}")
        };
        view.problem = Some(format!(
            "{what} does not echo the call's sequence {expected}; Kong fails its check"
        ));
    }
    let what = match view.kind {
        Kind::Response => Observed::Return {
            sequence,
            value: view.value.clone(),
        },
        _ => Observed::Malformed,
    };
    Observation { view, what }
}

/// A frame from the server during an event.
fn event_from_server(sequence: i64, phase: Phase, payload: &[u8]) -> (State, Observation) {
    let at = |phase| State::Event { sequence, phase };
    match phase {
        Phase::Name => name(sequence, payload),
        Phase::Reply(method) => {
            // The server went on without Kong's reply: expected after
            // kong.response.exit (Kong never answers it), a bug otherwise.
            let (state, mut obs) = name(sequence, payload);
            if method != EXIT && obs.view.problem.is_none() {
                obs.view.problem = Some(format!(
                    "the server went on without waiting for Kong's reply to {method}"
                ));
            }
            (state, obs)
        }
        Phase::Args(method) => {
            let obs = args(method.as_deref(), payload);
            let next = match method {
                Some(m) => Phase::Reply(m),
                None => Phase::Name,
            };
            (at(next), obs)
        }
        Phase::Return => {
            let state = State::Idle;
            (state, ret(payload, Some(sequence), Some(HANDLE_EVENT)))
        }
    }
}

/// A method-name frame, or the empty frame ending the PDK calls.
fn name(sequence: i64, payload: &[u8]) -> (State, Observation) {
    let at = |phase| State::Event { sequence, phase };
    if payload.is_empty() {
        let obs = Observation {
            view: pdk::end_view(),
            what: Observed::PdkEnd,
        };
        return (at(Phase::Return), obs);
    }
    let Ok(method) = std::str::from_utf8(payload) else {
        let problem = "a PDK method name that is not UTF-8".to_owned();
        return (at(Phase::Args(None)), malformed(None, problem, payload));
    };
    let known = PdkMethod::named(method).is_some();
    let problem = (!known).then(|| {
        format!(
            "not a method of service Kong; Kong fails the event with \
             `method \"{method}\" not found` and never replies"
        )
    });
    let obs = Observation {
        view: pdk::call_view(method, problem),
        what: Observed::PdkCall {
            method: method.to_owned(),
            known,
        },
    };
    (at(Phase::Args(Some(method.to_owned()))), obs)
}

fn args(method: Option<&str>, payload: &[u8]) -> Observation {
    let Some(name) = method else {
        return malformed(
            None,
            "arguments of an unreadable PDK method name".into(),
            payload,
        );
    };
    let Some(pdk) = PdkMethod::named(name) else {
        return malformed(
            Some(name),
            format!("arguments of {name}, which service Kong does not have; not decoded"),
            payload,
        );
    };
    match pdk.decode_args(payload) {
        Ok(args) => Observation {
            view: pdk::args_view(name, args.clone()),
            what: Observed::PdkArgs {
                method: name.to_owned(),
                args,
            },
        },
        Err(e) => malformed(
            Some(name),
            format!("arguments of {name} do not decode: {e}"),
            payload,
        ),
    }
}

fn reply(method: &str, payload: &[u8]) -> Observation {
    let Some(pdk) = PdkMethod::named(method) else {
        return malformed(
            Some(method),
            format!("reply to {method}, which service Kong does not have; not decoded"),
            payload,
        );
    };
    match pdk.decode_reply(payload) {
        Ok(reply) => Observation {
            view: pdk::reply_view(method, reply.clone()),
            what: Observed::PdkReply {
                method: method.to_owned(),
                reply,
            },
        },
        Err(e) => malformed(
            Some(method),
            format!("reply to {method} does not decode: {e}"),
            payload,
        ),
    }
}
