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

use super::protobuf_decode as decode;
use crate::message::protobuf::envelope::HANDLE_EVENT;
use crate::message::protobuf::pdk::EXIT;
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

    /// Forgets the call in progress (a side that will never answer it, such
    /// as a mock server told not to): the next frame starts a new call.
    pub fn abandon(&mut self) {
        self.state = State::Idle;
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
            (State::Idle, Direction::ToServer) => after_call(decode::call(payload)),
            (State::Call { sequence, command }, Direction::ToClient) => (
                State::Idle,
                decode::ret(payload, sequence, command.as_deref()),
            ),
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
                decode::reply(&method, payload),
            ),
            (state, dir) => {
                let problem = format!("{} sent a frame while {}", sender(dir), state.describe());
                (state, decode::malformed(None, problem, payload))
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
            let obs = decode::args(method.as_deref(), payload);
            let next = match method {
                Some(m) => Phase::Reply(m),
                None => Phase::Name,
            };
            (at(next), obs)
        }
        Phase::Return => {
            let state = State::Idle;
            (
                state,
                decode::ret(payload, Some(sequence), Some(HANDLE_EVENT)),
            )
        }
    }
}

/// The state after Kong's RpcCall.
fn after_call(obs: Observation) -> (State, Observation) {
    let state = match &obs.what {
        Observed::Call {
            sequence,
            command: Some(command),
            ..
        } if command == HANDLE_EVENT => State::Event {
            sequence: *sequence,
            phase: Phase::Name,
        },
        Observed::Call {
            sequence, command, ..
        } => State::Call {
            sequence: Some(*sequence),
            command: command.clone(),
        },
        // The server will answer nothing useful; a close is still due.
        _ => State::Call {
            sequence: obs.view.id.and_then(|id| i64::try_from(id).ok()),
            command: None,
        },
    };
    (state, obs)
}

/// A method-name frame (or the end of PDK calls) and the phase after it.
fn name(sequence: i64, payload: &[u8]) -> (State, Observation) {
    let obs = decode::name(payload);
    let phase = match &obs.what {
        Observed::PdkEnd => Phase::Return,
        Observed::PdkCall { method, .. } => Phase::Args(Some(method.clone())),
        _ => Phase::Args(None),
    };
    (State::Event { sequence, phase }, obs)
}
