//! The proxy's `replay` and `new` modes: the spec side that stands for
//! the real server.
//!
//! Each proxied connection gets a socket pair instead of (in `new` mode,
//! besides) a connection to the real server; the server role's connection
//! loop (`server::serve_for_proxy`) serves the other end from the spec, so
//! replies come from the same machinery as `plugtap server` (match,
//! cycling, faults, notifications) and the proxy's pumps, decoder and
//! recording stay as they are. In `new` mode that loop forwards the
//! requests the spec does not answer to the real server and relays its
//! bytes back unchanged.

use std::path::Path;
use std::sync::Arc;

use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use super::proxy::{Mode, ProxyOptions};
use super::replies::Replies;
use super::server::{self, Fallback, ServerOptions};
use super::server_report::Misses;
use crate::error::{Error, Result};
use crate::net::{ConnId, Connection};
use crate::protocol::Protocol;

/// The server spec answering in `replay` and `new` modes.
#[derive(Debug)]
pub(crate) struct SpecSide {
    pub(crate) replies: Arc<Replies>,
    pub(crate) misses: Arc<Misses>,
    pub(crate) opts: ServerOptions,
    /// `new` mode: requests the spec does not answer go to the upstream.
    pub(crate) fallback: bool,
}

impl SpecSide {
    /// A socket pair whose other end the spec serves (with a connection
    /// to the real server at `upstream` in `new` mode).
    pub(crate) async fn connect(
        &self,
        upstream: &Path,
        id: ConnId,
        cancel: &CancellationToken,
    ) -> std::io::Result<UnixStream> {
        let fallback = if self.fallback {
            let real = UnixStream::connect(upstream).await?;
            let (read, write) = Connection::raw(real, id).into_split();
            Some(Fallback { read, write })
        } else {
            None
        };
        let (ours, theirs) = UnixStream::pair()?;
        tokio::spawn(server::serve_for_proxy(
            theirs,
            self.replies.clone(),
            self.misses.clone(),
            self.opts.clone(),
            fallback,
            cancel.child_token(),
        ));
        Ok(ours)
    }
}

/// The spec side of `replay` and `new` modes; refuses what they cannot do.
pub(crate) fn spec_side(opts: &ProxyOptions) -> Result<Option<SpecSide>> {
    if opts.mode == Mode::Record {
        return Ok(None);
    }
    let mode = opts.mode.name();
    if opts.protocol != Protocol::MsgPack1 {
        return Err(Error::Other(format!(
            "--mode {mode} is only available for MsgPack:1 so far, not {}",
            opts.protocol
        )));
    }
    if opts.mode == Mode::Replay && opts.start_cmd.is_some() {
        return Err(Error::Other(
            "--mode replay has no real server; it cannot start one (drop `-- CMD`)".into(),
        ));
    }
    let spec = opts.spec.as_ref().ok_or_else(|| {
        Error::Other(format!(
            "--mode {mode} needs --spec SERVER_SPEC to answer from"
        ))
    })?;
    let replies = Replies::new(spec).map_err(Error::Other)?;
    Ok(Some(SpecSide {
        replies: Arc::new(replies),
        misses: Arc::new(Misses::default()),
        opts: ServerOptions {
            socket: opts.listen.clone(),
            limits: opts.limits,
            full_values: opts.full_values,
            print_conversations: false,
            log_messages: false,
            report: None,
            verify: false,
        },
        fallback: opts.mode == Mode::New,
    }))
}
