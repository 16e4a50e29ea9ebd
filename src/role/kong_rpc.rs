//! Kong's RPC call over `MsgPack:1` (`Rpc:call` in Kong's `mp_rpc.lua`),
//! on plugtap's [`Connection`]s, with a small connection pool.
//!
//! Each call takes a connection from the [`Pool`], sends one request
//! encoded as Kong encodes it, reads until the response (dispatching
//! notifications on the way), then puts the connection back. msgids count
//! up from 1 per [`Rpc`], as Kong counts them per plugin and worker. Every
//! way a call can fail is a [`CallError`] that says what Kong would log.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use rmpv::Value as Mp;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::log_message;
use crate::codec::kong_style::{Style, encode_styled};
use crate::codec::{Limits, MsgpackCodec, hex};
use crate::message::Direction;
use crate::message::msgpack_rpc::{self, RpcMessage, error_text};
use crate::net::Connection;
use crate::value_json;

/// A MsgPack connection.
pub type MpConn = Connection<MsgpackCodec>;

/// Why a call returned no result.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The socket refused the connection.
    Connect(String),
    /// The server answered with an error.
    Error(String),
    /// No complete reply: closed, reset, truncated or timed out. Kong
    /// logs `no data`.
    NoData(String),
    /// Bytes that are not msgpack: Kong's decoder raises a Lua error.
    Garbage(String),
    /// A reply of the wrong kind or with the wrong msgid: one of Kong's
    /// asserts fails (a Lua error).
    Assert(String),
    /// plugtap was interrupted.
    Interrupted,
}

impl CallError {
    /// What Kong would log, or the failure in Kong's terms.
    pub fn kong_log(&self) -> String {
        match self {
            CallError::Connect(e) => format!("trying to connect: {e}"),
            CallError::Error(e) => e.clone(),
            CallError::NoData(_) => "no data".into(),
            CallError::Garbage(_) => "a Lua error while unpacking the reply".into(),
            CallError::Assert(a) => a.clone(),
            CallError::Interrupted => "interrupted".into(),
        }
    }

    /// What happened, in plugtap's words.
    pub fn detail(&self) -> String {
        match self {
            CallError::Connect(e) => format!("cannot connect: {e}"),
            CallError::Error(e) => format!("error reply {e:?}"),
            CallError::NoData(d) | CallError::Garbage(d) | CallError::Assert(d) => d.clone(),
            CallError::Interrupted => "interrupted".into(),
        }
    }

    /// True for an error reply matching Kong's reset rule.
    pub fn is_reset(&self) -> bool {
        matches!(self, CallError::Error(e) if crate::kong::step::is_reset_error(e))
    }
}

/// Kong's per-worker connection pool for one socket.
#[derive(Debug)]
pub struct Pool {
    path: PathBuf,
    limits: Limits,
    idle: VecDeque<MpConn>,
    rotate: bool,
}

impl Pool {
    /// An empty pool for `path`.
    pub fn new(path: PathBuf, limits: Limits) -> Pool {
        Pool {
            path,
            limits,
            idle: VecDeque::new(),
            rotate: false,
        }
    }

    /// Makes every call take a different connection than the last one
    /// (Kong does not promise the same one; this makes sure it differs).
    pub fn rotating(mut self) -> Pool {
        self.rotate = true;
        self
    }

    /// The socket path.
    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    /// Adds an open connection.
    pub fn release(&mut self, conn: MpConn) {
        self.idle.push_back(conn);
    }

    /// Takes a connection: the most recently released one, as the cosocket
    /// pool does (the least recent one when rotating), or a new one.
    pub async fn checkout(&mut self) -> Result<MpConn, CallError> {
        let enough = if self.rotate { 2 } else { 1 };
        if self.idle.len() < enough {
            return self.connect().await;
        }
        let conn = if self.rotate {
            self.idle.pop_front()
        } else {
            self.idle.pop_back()
        };
        match conn {
            Some(c) => Ok(c),
            None => self.connect().await,
        }
    }

    /// Opens a new connection.
    pub async fn connect(&self) -> Result<MpConn, CallError> {
        let stream = tokio::net::UnixStream::connect(&self.path)
            .await
            .map_err(|e| CallError::Connect(format!("unix:{}: {e}", self.path.display())))?;
        let conn = Connection::new(stream, MsgpackCodec::new(self.limits));
        tracing::debug!("{} connected to {}", conn.id(), self.path.display());
        Ok(conn)
    }

    /// The idle connections (to look for bytes nobody asked for).
    pub fn idle_mut(&mut self) -> impl Iterator<Item = &mut MpConn> {
        self.idle.iter_mut()
    }
}

/// Kong's RPC object: msgid counter, timeout and what notifications said.
#[derive(Debug)]
pub struct Rpc {
    msg_id: u32,
    timeout: Duration,
    full_values: bool,
    server_pid: Option<Json>,
    pid_changed: bool,
    /// Bytes that followed a response in the same read; Kong drops them.
    pub discarded: Vec<String>,
}

impl Rpc {
    /// A fresh RPC object: the first call has msgid 1.
    pub fn new(timeout: Duration, full_values: bool) -> Rpc {
        Rpc {
            msg_id: 0,
            timeout,
            full_values,
            server_pid: None,
            pid_changed: false,
            discarded: Vec::new(),
        }
    }

    /// True once after a `serverPid` notification named a new pid.
    pub fn take_pid_change(&mut self) -> Option<Json> {
        if std::mem::take(&mut self.pid_changed) {
            self.server_pid.clone()
        } else {
            None
        }
    }

    /// One call on a pooled connection; the connection goes back to the
    /// pool unless the call broke it.
    pub async fn call(
        &mut self,
        pool: &mut Pool,
        method: &str,
        arg: Mp,
        shutdown: &CancellationToken,
    ) -> Result<Mp, CallError> {
        self.msg_id = self.msg_id.wrapping_add(1);
        let mut conn = pool.checkout().await?;
        let result = self.exchange(&mut conn, method, arg, shutdown).await;
        if matches!(&result, Ok(_) | Err(CallError::Error(_))) {
            pool.release(conn);
        }
        result
    }

    /// One call on a given connection.
    pub async fn call_on(
        &mut self,
        conn: &mut MpConn,
        method: &str,
        arg: Mp,
        shutdown: &CancellationToken,
    ) -> Result<Mp, CallError> {
        self.msg_id = self.msg_id.wrapping_add(1);
        self.exchange(conn, method, arg, shutdown).await
    }

    async fn exchange(
        &mut self,
        conn: &mut MpConn,
        method: &str,
        arg: Mp,
        shutdown: &CancellationToken,
    ) -> Result<Mp, CallError> {
        let msgid = self.msg_id;
        let request = RpcMessage::Request {
            msgid,
            method: method.to_owned(),
            params: Mp::Array(vec![arg]),
        };
        log_message(
            conn.id(),
            Direction::ToServer,
            &request.view(),
            self.full_values,
        );
        let bytes = encode_styled(&request.to_value(), Style::Kong);
        if let Err(e) = conn.write_all(&bytes).await {
            return Err(CallError::NoData(format!("cannot send {method}: {e}")));
        }
        // One deadline for the whole call, so a stream of notifications
        // cannot keep it waiting forever.
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let read = tokio::select! {
                _ = shutdown.cancelled() => return Err(CallError::Interrupted),
                read = tokio::time::timeout_at(deadline, conn.read_frame()) => read,
            };
            let frame = match read {
                Err(_) => {
                    return Err(CallError::NoData(format!(
                        "no reply to {method} within {:?}",
                        self.timeout
                    )));
                }
                Ok(Ok(Some(frame))) => frame,
                Ok(Ok(None)) => {
                    return Err(CallError::NoData(format!(
                        "the server closed the connection before replying to {method}"
                    )));
                }
                Ok(Err(crate::codec::CodecError::Truncated { pending, .. })) => {
                    return Err(CallError::NoData(format!(
                        "the server closed the connection in the middle of the reply to {method} \
                         ({pending} bytes of it arrived)"
                    )));
                }
                Ok(Err(e)) => {
                    let pending = conn.pending();
                    return Err(CallError::Garbage(format!(
                        "undecodable bytes in reply to {method}: {e}; raw {}",
                        hex(&pending[..pending.len().min(64)])
                    )));
                }
            };
            let view = msgpack_rpc::view_of(&frame.value);
            log_message(conn.id(), Direction::ToClient, &view, self.full_values);
            match RpcMessage::from_value(&frame.value) {
                Ok(RpcMessage::Notification {
                    method: label,
                    params,
                }) => {
                    if label == "serverPid" {
                        let pid = value_json::to_json(&params);
                        if self.server_pid.as_ref().is_some_and(|old| *old != pid) {
                            tracing::warn!("serverPid changed to {pid}: Kong drops its instances");
                            self.pid_changed = true;
                        }
                        self.server_pid = Some(pid);
                    }
                }
                Ok(RpcMessage::Response {
                    msgid: got,
                    error,
                    result,
                }) => {
                    if got != msgid {
                        return Err(CallError::Assert(format!(
                            "unexpected RPC response ID from Go plugin server (sent msgid {msgid}, got {got})"
                        )));
                    }
                    let extra = conn.codec_and_buffer().1.split();
                    if !extra.is_empty() {
                        let note = format!(
                            "{} bytes after the reply to {method} msgid {msgid} were dropped, as Kong drops them: {}",
                            extra.len(),
                            hex(&extra[..extra.len().min(64)])
                        );
                        tracing::warn!("{note}");
                        self.discarded.push(note);
                    }
                    return match error_text(&error) {
                        Some(text) => {
                            tracing::warn!("{method} returned an error: {text}");
                            Err(CallError::Error(text))
                        }
                        None => Ok(result),
                    };
                }
                Ok(RpcMessage::Request { .. }) | Err(_) => {
                    return Err(CallError::Assert(format!(
                        "RPC response expected from Go plugin server (got {}; raw {})",
                        view.summary(false),
                        hex(&frame.raw[..frame.raw.len().min(64)])
                    )));
                }
            }
        }
    }
}
