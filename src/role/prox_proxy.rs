//! The prox wrapper: `plugtap proxy --protocol prox -- PLUGIN ARGS`.
//!
//! prox starts its plugins itself, so plugtap is configured as the plugin
//! command (through a small script: prox runs plugins without arguments).
//! plugtap starts the real plugin with piped stdin and stdout (its own
//! process group; stderr passes through, as prox forwards it to its log),
//! and then:
//!
//! * relays prox's `configure` lines to the plugin and the plugin's lines
//!   (acknowledgements, `ready`, pushes) to prox, decoded, logged and
//!   recorded, each with its exact bytes, except that the socket in a
//!   `ready` is replaced by one of plugtap's (`prox_relay.rs`);
//! * proxies every connection prox makes there to the plugin's socket,
//!   byte for byte, logging and recording each hook call, reply and
//!   `on_disconnect` with its envelope and payload decoded;
//! * passes SIGTERM and SIGINT on to the plugin, and closes the plugin's
//!   stdin when prox closes plugtap's (prox's way of stopping a plugin);
//! * when the plugin exits, removes its sockets, finishes the recording
//!   and exits with the plugin's exit code. prox then restarts it (that is,
//!   plugtap, which starts a fresh plugin) and sends `configure` again; the
//!   new `ready` gets a new socket of plugtap's. `{pid}` in the recording
//!   path keeps each run's recording.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};

use super::prox_relay::{self, Base, Sockets};
use super::proxy::{ProxyEnd, drain, on_signal, redact_rules, wait_child};
use super::proxy_decode::DecodeSettings;
use crate::codec::Limits;
use crate::error::{Error, Result};
use crate::net::stdio::LineWriter;
use crate::process::{self, Child};
use crate::protocol::Protocol;
use crate::record::redact::Redactor;
use crate::record::{Entry, HeaderInfo, Recorder};
use crate::spec::StartCmd;

/// How long the plugin's last lines get to arrive once it has exited.
const LAST_LINES: Duration = Duration::from_secs(1);

/// Settings of the prox wrapper.
#[derive(Debug, Clone)]
pub struct ProxWrapperOptions {
    /// The real plugin and its arguments.
    pub command: StartCmd,
    /// plugtap's first socket (by default next to the plugin's).
    pub listen: Option<PathBuf>,
    /// Recording file; `{pid}` becomes plugtap's process id.
    pub record: Option<PathBuf>,
    /// Close a connection when its bytes cannot be decoded.
    pub strict: bool,
    /// `--redact` rules, as written.
    pub redact: Vec<String>,
    /// Decoding limits (`max_message` is the frame limit).
    pub limits: Limits,
    /// Log values in full.
    pub full_values: bool,
    /// How long a socket named in `ready` may take to appear.
    pub wait: Duration,
}

/// The recording path with `{pid}` replaced.
pub fn record_path(path: &std::path::Path) -> PathBuf {
    let text = path.to_string_lossy();
    if text.contains("{pid}") {
        PathBuf::from(text.replace("{pid}", &std::process::id().to_string()))
    } else {
        path.to_owned()
    }
}

/// Runs the wrapper until the plugin exits.
pub async fn run(opts: ProxWrapperOptions) -> Result<ProxyEnd> {
    let rules = redact_rules(&opts.redact)?;
    // prox dials the path in `ready` from its own directory: make it absolute.
    let listen = match &opts.listen {
        Some(l) if l.is_relative() => Some(
            std::env::current_dir()
                .map_err(io("cannot resolve --listen"))?
                .join(l),
        ),
        other => other.clone(),
    };
    if let Some(listen) = &listen {
        crate::net::socket::check_path(listen)?;
    }
    let mut term = signal(SignalKind::terminate()).map_err(io("cannot watch SIGTERM"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io("cannot watch SIGINT"))?;
    let start = Instant::now();
    let recorder = match &opts.record {
        Some(path) => Recorder::create(
            &record_path(path),
            HeaderInfo {
                protocol: Protocol::Prox,
                listen: listen.clone().unwrap_or_default(),
                upstream: PathBuf::new(),
                redact: opts.redact.clone(),
                command: Some(opts.command.display()),
                mode: None,
                keep_raw: true,
            },
            start,
        ),
        // The thread still decodes the proxied sockets.
        None => Recorder::watch_only(),
    }
    .map_err(io("recording"))?;
    let base = Base {
        settings: DecodeSettings::new(
            Protocol::Prox,
            opts.limits,
            Redactor::new(rules),
            opts.strict,
            opts.full_values,
        ),
        record: recorder.tx(),
        wait: opts.wait,
    };
    let (child, stdin, stdout) = Child::spawn_piped(&opts.command)?;
    let mut child = Some(child);
    base.record(Entry::Child {
        event: "started",
        pid: child.as_ref().and_then(Child::pid),
        status: None,
        at: start,
    })
    .await;
    if let Some(path) = recorder.path() {
        tracing::info!("recording to {}", path.display());
    }

    let sockets = Sockets::new(base.clone(), listen);
    let (stop, connections, tracker) = (
        sockets.stop.clone(),
        sockets.connections.clone(),
        sockets.tracker.clone(),
    );
    let (writer, written) = LineWriter::spawn();
    let stdin_task = tokio::spawn(prox_relay::relay_stdin(stdin, base.clone()));
    let mut stdout_task = tokio::spawn(prox_relay::relay_stdout(
        stdout,
        writer,
        sockets,
        base.clone(),
    ));

    let mut forwarded: Option<&'static str> = None;
    let end = loop {
        tokio::select! {
            _ = term.recv() => { on_signal(&mut child, Signal::SIGTERM, &mut forwarded); }
            _ = int.recv() => { on_signal(&mut child, Signal::SIGINT, &mut forwarded); }
            status = wait_child(&mut child) => {
                let status = status.map_err(io("waiting for the plugin"))?;
                break ProxyEnd::ChildExited { status, forwarded };
            }
        }
    };
    let c = child.take().expect("the plugin was started");
    let ProxyEnd::ChildExited { status, .. } = &end else {
        unreachable!("the loop ends only when the plugin exits");
    };
    let how = process::describe(*status);
    tracing::info!("the plugin `{}` exited ({how})", c.display());
    // Lines it wrote before exiting; a grandchild holding its stdout open
    // does not keep plugtap running.
    if tokio::time::timeout(LAST_LINES, &mut stdout_task)
        .await
        .is_err()
    {
        tracing::debug!("the plugin's stdout is still open; not waiting for it");
        stdout_task.abort();
    }
    stdin_task.abort();
    stop.cancel();
    base.record(Entry::Child {
        event: "exited",
        pid: c.pid(),
        status: Some(how.clone()),
        at: Instant::now(),
    })
    .await;
    drain(&connections, &tracker).await;
    drop(base);
    recorder
        .finish(&format!("the plugin exited ({how})"))
        .await
        .map_err(io("recording"))?;
    written.wait(Duration::from_secs(1)).await;
    Ok(end)
}

fn io(context: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Io {
        context: context.into(),
        source,
    }
}
