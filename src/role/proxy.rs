//! The proxy role: a byte-exact man in the middle between Kong and a real
//! pluginserver, logging and recording every frame.
//!
//! It listens on the socket Kong is configured with and, for each accepted
//! connection, opens one to the real server (1:1, so notifications sent
//! on accept and ProtoBuf's per-connection events keep their connection);
//! `proxy_conn.rs` does the forwarding, and the recording's thread the
//! decoding (`proxy_decode.rs`).
//!
//! **Wrapper mode.** With a start command the proxy starts the real server
//! as its child (its own process group), waits until the upstream socket
//! accepts connections, and only then listens, so Kong sees the same
//! "socket not there yet" it would see without plugtap. SIGTERM and SIGINT
//! are forwarded to the child (SIGKILL after the grace period); when the
//! child exits, by itself or after a forwarded signal, the proxy closes
//! every connection, flushes the recording, removes its socket and exits
//! with the child's status (see [`ProxyEnd::exit_code`]). The child is
//! killed if plugtap fails, so it is never left behind.
//!
//! **Modes** ([`Mode`], as VCR has them). `record` forwards everything to
//! the real server. `replay` has no real server: each connection is
//! answered by the server role's connection loop over a socket pair, from
//! a server spec, and recorded as usual. `new` answers from the spec what
//! it can and forwards the rest to the real server, so only new
//! interactions reach it. `MsgPack:1` only.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::net::UnixStream;
use tokio::net::unix::SocketAddr;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::proxy_conn::{self, Shared};
use super::proxy_decode::DecodeSettings;
use super::proxy_modes::spec_side;
use super::server_report::ServerReport;
use crate::codec::Limits;
use crate::conversation;
use crate::error::{Error, Result};
use crate::net;
use crate::process::{self, Child};
use crate::protocol::Protocol;
use crate::record::redact::{Redactor, Rule};
use crate::record::{Entry, HeaderInfo, Recorder};
pub use crate::spec::ProxyMode as Mode;
use crate::spec::{ServerSpec, StartCmd};

/// How long connections get to finish their queued decoding at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Settings of a proxy run.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Where Kong connects.
    pub listen: PathBuf,
    /// The real server's socket.
    pub upstream: PathBuf,
    /// Recording file, if any.
    pub record: Option<PathBuf>,
    /// Close a connection when its bytes cannot be decoded.
    pub strict: bool,
    /// Write raw bytes for every frame (`--keep-raw`).
    pub keep_raw: bool,
    /// `--redact` rules, as written.
    pub redact: Vec<String>,
    /// The real server's command (wrapper mode).
    pub start_cmd: Option<StartCmd>,
    /// The protocol to decode.
    pub protocol: Protocol,
    /// Decoding limits.
    pub limits: Limits,
    /// Log values in full.
    pub full_values: bool,
    /// How long to wait for the child's socket.
    pub wait: Duration,
    /// How long the child gets to exit after SIGTERM before SIGKILL.
    pub grace: Duration,
    /// Where answers come from.
    pub mode: Mode,
    /// The server spec answering in `replay` and `new` modes.
    pub spec: Option<ServerSpec>,
    /// `replay`/`new` modes: where to write the spec side's JSON report
    /// at exit (`-` for stdout).
    pub report: Option<PathBuf>,
}

/// Why a proxy run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyEnd {
    /// SIGINT or SIGTERM (no child, or the child then exited because of it).
    Signal(&'static str),
    /// The wrapped server exited; `forwarded` is the signal plugtap had
    /// passed on to it, if any.
    ChildExited {
        status: ExitStatus,
        forwarded: Option<&'static str>,
    },
}

impl ProxyEnd {
    /// The exit code: 0 after a signal; in wrapper mode the child's exit
    /// code (128 + N if signal N killed it), except that a child ending
    /// cleanly or by the signal plugtap forwarded gives 0.
    pub fn exit_code(&self) -> u8 {
        use std::os::unix::process::ExitStatusExt as _;
        match self {
            ProxyEnd::Signal(_) => 0,
            ProxyEnd::ChildExited { status, forwarded } => {
                let by_forwarded = forwarded.is_some()
                    && matches!(
                        status.signal().and_then(|s| Signal::try_from(s).ok()),
                        Some(Signal::SIGTERM | Signal::SIGINT)
                    );
                if by_forwarded {
                    return 0;
                }
                match (status.code(), status.signal()) {
                    (Some(code), _) => u8::try_from(code).unwrap_or(1),
                    (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
                    _ => 1,
                }
            }
        }
    }
}

/// Runs the proxy until a signal (or, in wrapper mode, the child's exit).
/// In `replay` and `new` modes it also returns what the spec side found.
pub async fn run(
    opts: ProxyOptions,
    shutdown: CancellationToken,
) -> Result<(ProxyEnd, Option<ServerReport>)> {
    if opts.report.is_some() && opts.mode == Mode::Record {
        return Err(Error::Other(
            "--report is for --mode replay and new (what the spec answered)".into(),
        ));
    }
    run_proxy(opts, shutdown).await
}

async fn run_proxy(
    opts: ProxyOptions,
    shutdown: CancellationToken,
) -> Result<(ProxyEnd, Option<ServerReport>)> {
    let rules = redact_rules(&opts.redact)?;
    if conversation::for_protocol(opts.protocol, opts.limits).is_none() {
        return Err(Error::Other(format!(
            "the byte-level proxy cannot decode {}; use its own wrapper (plugtap proxy --protocol {} -- CMD)",
            opts.protocol, opts.protocol
        )));
    }
    let spec_side = spec_side(&opts)?;
    net::socket::check_path(&opts.listen)?;
    if opts.mode != Mode::Replay {
        net::socket::check_path(&opts.upstream)?;
    }
    let mut term = signal(SignalKind::terminate()).map_err(io("cannot watch SIGTERM"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io("cannot watch SIGINT"))?;
    let start = Instant::now();

    let mut child = match &opts.start_cmd {
        Some(cmd) => Some(Child::spawn(cmd)?),
        None => None,
    };
    if let Some(c) = child.as_mut() {
        tracing::info!(
            "waiting up to {:?} for {} to accept connections",
            opts.wait,
            opts.upstream.display()
        );
        let ready = tokio::select! {
            ready = net::connect_when_ready(&opts.upstream, opts.wait) => ready,
            _ = term.recv() => return Ok((stop_early(c, "SIGTERM", opts.grace).await?, None)),
            _ = int.recv() => return Ok((stop_early(c, "SIGINT", opts.grace).await?, None)),
            status = c.wait() => {
                let status = status.map_err(io("waiting for the server"))?;
                tracing::error!(
                    "`{}` exited ({}) before {} accepted connections",
                    c.display(), process::describe(status), opts.upstream.display()
                );
                return Ok((ProxyEnd::ChildExited { status, forwarded: None }, None));
            }
        };
        if let Err(e) = ready {
            let _ = c.terminate(opts.grace).await;
            return Err(e.into());
        }
    }

    let bound = net::bind(&opts.listen)?;
    let recorder = match &opts.record {
        Some(path) => Recorder::create(
            path,
            HeaderInfo {
                protocol: opts.protocol,
                listen: opts.listen.clone(),
                upstream: opts.upstream.clone(),
                redact: opts.redact.clone(),
                command: opts.start_cmd.as_ref().map(StartCmd::display),
                mode: (opts.mode != Mode::Record).then(|| opts.mode.name().to_owned()),
                keep_raw: opts.keep_raw,
            },
            start,
        ),
        // The thread still decodes and logs.
        None => Recorder::watch_only(),
    }
    .map_err(io("recording"))?;
    let shared = Arc::new(Shared {
        upstream: opts.upstream.clone(),
        settings: DecodeSettings::new(
            opts.protocol,
            opts.limits,
            Redactor::new(rules),
            opts.strict,
            opts.full_values,
        ),
        record: recorder.tx(),
        spec_side,
    });
    if let Some(c) = &child {
        shared
            .record(Entry::Child {
                event: "started",
                pid: c.pid(),
                status: None,
                at: start,
            })
            .await;
    }
    tracing::info!(
        "proxy {} listening on {} → {}{}{}",
        opts.protocol,
        bound.path().display(),
        opts.upstream.display(),
        match opts.mode {
            Mode::Record => String::new(),
            m => format!(" ({} mode)", m.name()),
        },
        opts.record
            .as_ref()
            .map(|r| format!(", recording to {}", r.display()))
            .unwrap_or_default()
    );

    let connections = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut forwarded: Option<&'static str> = None;
    let end = loop {
        let accepted = tokio::select! {
            biased;
            _ = term.recv() => match on_signal(&mut child, Signal::SIGTERM, &mut forwarded) {
                Some(end) => break end,
                None => continue,
            },
            _ = int.recv() => match on_signal(&mut child, Signal::SIGINT, &mut forwarded) {
                Some(end) => break end,
                None => continue,
            },
            _ = shutdown.cancelled(), if child.is_none() => break ProxyEnd::Signal("SIGINT/SIGTERM"),
            status = wait_child(&mut child) => {
                let status = status.map_err(io("waiting for the server"))?;
                break ProxyEnd::ChildExited { status, forwarded };
            }
            accepted = bound.listener().accept() => accepted,
        };
        serve_accepted(accepted, &shared, &connections, &tracker).await;
    };
    // Stop listening first: the socket file goes away at once.
    drop(bound);
    if let (Some(c), ProxyEnd::ChildExited { status, .. }) = (&child, &end) {
        tracing::info!("`{}` exited ({})", c.display(), process::describe(*status));
        shared
            .record(Entry::Child {
                event: "exited",
                pid: c.pid(),
                status: Some(process::describe(*status)),
                at: Instant::now(),
            })
            .await;
    }
    drain(&connections, &tracker).await;
    let report = shared
        .spec_side
        .as_ref()
        .map(|side| side.misses.report(&side.replies));
    drop(shared);
    let reason = match &end {
        ProxyEnd::Signal(s) => format!("{s} received"),
        ProxyEnd::ChildExited { status, .. } => {
            format!("the server exited ({})", process::describe(*status))
        }
    };
    recorder.finish(&reason).await.map_err(io("recording"))?;
    // After the recording is finished, so a failed write leaves it whole.
    if let Some(r) = &report {
        eprint!("{}", r.render());
        if let Some(path) = &opts.report {
            r.write(path)?;
        }
    }
    Ok((end, report))
}

/// The `--redact` rules, parsed.
pub fn redact_rules(redact: &[String]) -> Result<Vec<Rule>> {
    redact
        .iter()
        .map(|r| r.parse::<Rule>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Other(format!("--redact: {e}")))
}

/// Serves an accepted connection (relayed by [`proxy_conn::serve`] on
/// `tracker`), or, when accepting failed, logs it and waits a little
/// before the next try.
pub(crate) async fn serve_accepted(
    accepted: std::io::Result<(UnixStream, SocketAddr)>,
    shared: &Arc<Shared>,
    connections: &CancellationToken,
    tracker: &TaskTracker,
) {
    match accepted {
        Ok((stream, _)) => {
            tracker.spawn(proxy_conn::serve(
                stream,
                shared.clone(),
                connections.clone(),
            ));
        }
        Err(e) => {
            tracing::warn!("accept failed: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Cancels the relayed connections and waits up to [`DRAIN`] for them.
pub(crate) async fn drain(connections: &CancellationToken, tracker: &TaskTracker) {
    connections.cancel();
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!("connections still busy after {DRAIN:?}; stopping anyway");
    }
}

/// Handles SIGTERM/SIGINT: without a child, stop; with one, pass the
/// signal on (a second one escalates to SIGKILL) and keep going until it
/// exits.
pub(crate) fn on_signal(
    child: &mut Option<Child>,
    sig: Signal,
    forwarded: &mut Option<&'static str>,
) -> Option<ProxyEnd> {
    let name = if sig == Signal::SIGTERM {
        "SIGTERM"
    } else {
        "SIGINT"
    };
    let Some(c) = child.as_ref() else {
        // crate::shutdown logs the signal.
        return Some(ProxyEnd::Signal(name));
    };
    if forwarded.is_some() {
        tracing::warn!("{name} received again; killing `{}`", c.display());
        c.signal(Signal::SIGKILL);
    } else {
        tracing::info!("{name} received; passing it on to `{}`", c.display());
        c.signal(sig);
        *forwarded = Some(name);
    }
    None
}

/// A signal arrived before the server was ready: stop it and report.
async fn stop_early(c: &mut Child, name: &'static str, grace: Duration) -> Result<ProxyEnd> {
    tracing::info!("{name} received; stopping `{}`", c.display());
    let status = c
        .terminate(grace)
        .await
        .map_err(io("stopping the server"))?;
    Ok(ProxyEnd::ChildExited {
        status,
        forwarded: Some(name),
    })
}

pub(crate) async fn wait_child(child: &mut Option<Child>) -> std::io::Result<ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

fn io(context: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Io {
        context: context.into(),
        source,
    }
}
