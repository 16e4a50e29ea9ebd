//! What each frame on one prox plugin socket connection is, from the frames
//! before it.
//!
//! prox is the client side ([`Direction::ToServer`] is prox -> plugin). On
//! one connection it sends one call at a time and reads one reply; replies
//! carry no hook and no id, so their meaning comes from the call they
//! follow. `on_disconnect` is fire-and-forget: no reply is due, and the
//! connection goes back to prox's pool, so such frames sit between calls.
//!
//! ```text
//! prox -> plugin  {t: 1, d: RequestInfo}        ─┐ call
//! plugin -> prox  AuthorizeResult               ─┘ decoded as on_request's reply
//! prox -> plugin  {t: 4, d: DisconnectInfo}        no reply
//! prox -> plugin  {t: 3, d: ConnInfo}           ─┐
//! plugin -> prox  ConnResult                    ─┘
//! ```
//!
//! [`ProxConversation`] is fed every frame of one connection with its
//! direction, in the order they were read across both directions, and
//! returns an [`Observation`]: the protocol-neutral [`MessageView`] plus
//! what roles act on. A frame that does not fit (no envelope, an unknown
//! hook byte, a reply nobody asked for) is kept and explained in the view's
//! `problem`; the conversation goes on. [`ProxConversation::closed`] says
//! what was due when a side closed.

use std::collections::VecDeque;

use serde_json::Value as Json;

use crate::codec::{Limits, ProxFrame};
use crate::message::prox::{self, Hook};
use crate::message::{Direction, Kind, MessageView};

/// What a frame turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// prox called a hook. `payload` is the decoded `d` (short keys), when
    /// it decodes; `readable` says whether the SDK can read it as the
    /// hook's type (if not, it answers the hook's error reply).
    Call {
        hook: Hook,
        payload: Option<Json>,
        readable: bool,
    },
    /// A frame from prox naming no hook: the envelope does not decode (the
    /// SDK closes the connection) or `t` is unknown (the SDK ignores it).
    BadCall {
        /// `t`, when the envelope decoded.
        t: Option<u64>,
    },
    /// The plugin's reply to a call of `hook`; `usable` says whether prox
    /// can decode it.
    Reply {
        hook: Hook,
        result: Option<Json>,
        usable: bool,
    },
    /// A frame from the plugin when no reply was due.
    Unexpected,
}

/// One observed frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The protocol-neutral view.
    pub view: MessageView,
    /// The decoded content.
    pub what: Observed,
}

/// Per-connection state; see the module docs.
#[derive(Debug, Clone)]
pub struct ProxConversation {
    limits: Limits,
    /// Calls whose replies are due, oldest first (prox has at most one).
    pending: VecDeque<Hook>,
    /// The last frame from prox was an `on_disconnect`.
    after_disconnect: bool,
}

impl ProxConversation {
    /// A conversation on a fresh connection, decoding within `limits`.
    pub fn new(limits: Limits) -> Self {
        ProxConversation {
            limits,
            pending: VecDeque::new(),
            after_disconnect: false,
        }
    }

    /// The hook whose reply is due next, if any.
    pub fn awaiting(&self) -> Option<Hook> {
        self.pending.front().copied()
    }

    /// Gives meaning to a frame as the codec split it off.
    pub fn observe_frame(&mut self, dir: Direction, frame: &ProxFrame) -> Observation {
        self.observe(dir, &frame.payload())
    }

    /// Gives meaning to the next frame's payload (length prefix removed),
    /// travelling `dir`.
    pub fn observe(&mut self, dir: Direction, payload: &[u8]) -> Observation {
        match dir {
            Direction::ToServer => self.call_from_prox(payload),
            Direction::ToClient => self.frame_from_plugin(payload),
        }
    }

    fn call_from_prox(&mut self, payload: &[u8]) -> Observation {
        let mut req = prox::decode_request(payload, self.limits);
        if let Some(due) = self.awaiting() {
            let note = format!(
                "sent while the reply to {due} was still due; prox never has two calls \
                 outstanding on one connection"
            );
            req.view.problem = Some(match req.view.problem.take() {
                Some(p) => format!("{note}; {p}"),
                None => note,
            });
        }
        self.after_disconnect = req.hook == Some(Hook::OnDisconnect);
        let what = match req.hook {
            Some(hook) => {
                if hook.expects_reply() {
                    self.pending.push_back(hook);
                }
                Observed::Call {
                    hook,
                    payload: req.payload,
                    readable: req.readable,
                }
            }
            None => Observed::BadCall { t: req.t },
        };
        Observation {
            view: req.view,
            what,
        }
    }

    fn frame_from_plugin(&mut self, payload: &[u8]) -> Observation {
        if let Some(hook) = self.pending.pop_front() {
            let reply = prox::decode_reply(hook, payload, self.limits);
            return Observation {
                view: reply.view,
                what: Observed::Reply {
                    hook,
                    result: reply.result,
                    usable: reply.usable,
                },
            };
        }
        let problem = if self.after_disconnect {
            "a frame from the plugin after on_disconnect, which gets no reply; prox would \
             read it as the reply to its next call on this connection"
        } else {
            "a frame from the plugin when no reply was due"
        };
        let value = match prox::decode_value(payload, self.limits) {
            Ok(v) => crate::value_json::to_json(&v),
            Err(_) => serde_json::json!({"hex": crate::codec::hex(payload)}),
        };
        Observation {
            view: MessageView {
                kind: Kind::Malformed,
                id: None,
                method: None,
                problem: Some(problem.to_owned()),
                error: None,
                value,
            },
            what: Observed::Unexpected,
        }
    }

    /// A side closed its end (`dir` is the direction it sent in). Returns
    /// what was due from it, if anything. No reply is due afterwards.
    pub fn closed(&mut self, dir: Direction) -> Option<MessageView> {
        let hook = self.pending.front().copied()?;
        self.pending.clear();
        let error = match dir {
            Direction::ToClient => format!(
                "the plugin closed the connection instead of answering {hook}; {}",
                hook.on_failure()
            ),
            Direction::ToServer => {
                format!("prox closed the connection while the reply to {hook} was due")
            }
        };
        Some(MessageView {
            kind: Kind::Closed,
            id: None,
            method: Some(hook.name().to_owned()),
            problem: None,
            error: Some(error),
            value: Json::Null,
        })
    }
}
