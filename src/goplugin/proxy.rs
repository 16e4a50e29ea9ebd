//! The go-plugin wrapper: `plugtap proxy --protocol go-plugin -- PLUGIN ARGS`.
//!
//! A host launches plugtap instead of the plugin. plugtap starts the real
//! plugin with the same environment (magic cookie, `PLUGIN_*` variables)
//! and stdin, lets its stderr through untouched (hosts parse it as hclog
//! JSON), reads its handshake line, listens on a socket of its own, and
//! prints the handshake with that address in place of the plugin's. Every
//! connection the host makes is forwarded at the HTTP/2 level
//! ([`super::forward`]) and decoded ([`super::observer`]); brokered
//! connections are rewritten and captured ([`super::broker`]). With
//! AutoMTLS, yamux multiplexing or net/rpc, bytes are relayed unchanged
//! ([`super::passthrough`]) and plugtap says why it cannot decode them.
//!
//! With `--record FILE` the handshake (both lines), every connection,
//! decoded event and broker rewrite, the plugin's stderr lines and its
//! exit go to a recording ([`super::recording`]); the plugin's stderr is
//! then copied line by line ([`super::stderr`]) instead of inherited.
//!
//! stdout belongs to the host: it carries the handshake, then whatever the
//! plugin prints after it. plugtap's own logs go to stderr, where the host
//! shows them among the plugin's logs. The wrapper exits with the plugin's
//! exit code (128 + signal number when a signal ended it). A plugin still
//! running [`SHUTDOWN_GRACE`] after the host's `GRPCController/Shutdown`
//! call is killed: the host kills the process it started (plugtap) 2 s
//! after Shutdown, which would leave the real plugin behind.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::broker::Broker;
use super::env;
use super::event::ConnLabel;
use super::forward::{self, ForwardCtx};
use super::handshake::{Fields, HostRules};
use super::observer::{self, ObserverOptions};
use super::passthrough;
use super::proxy_rec::Rec;
use super::stderr;
use crate::error::{Error, Result};
use crate::net::{Address, ConnId, Listener};

/// Settings of the wrapper.
#[derive(Debug, Clone)]
pub struct WrapperOptions {
    /// The real plugin and its arguments.
    pub command: Vec<String>,
    /// Where to listen; by default next to where the plugin listens.
    pub listen: Option<PathBuf>,
    /// Decoding settings.
    pub observer: ObserverOptions,
    /// How long to wait for the plugin's handshake (go-plugin: 1 minute).
    pub start_timeout: Duration,
    /// How long the plugin gets after SIGTERM before SIGKILL.
    pub grace: Duration,
    /// Record to this file (`--record`).
    pub record: Option<PathBuf>,
    /// The `--redact` rules as given, for the recording's header (the
    /// parsed rules are in `observer`).
    pub redact: Vec<String>,
}

/// Why plugtap cannot decode a plugin's traffic, if it cannot.
pub fn undecodable_reason(fields: &Fields, mux_env: bool) -> Option<String> {
    if fields.server_cert().is_some() {
        return Some(
            "AutoMTLS is on (the handshake carries the plugin's certificate): the connection is TLS-encrypted and plugtap cannot decode it without terminating TLS; bytes are relayed unchanged".into(),
        );
    }
    if fields.protocol() != "grpc" {
        return Some(format!(
            "the plugin speaks {} (net/rpc over yamux), which plugtap does not decode; bytes are relayed unchanged",
            fields.protocol()
        ));
    }
    let mux = fields
        .mux()
        .and_then(super::goparse::go_parse_bool)
        .unwrap_or(false);
    if mux_env && mux {
        return Some(
            "gRPC broker multiplexing is on (PLUGIN_MULTIPLEX_GRPC): the connection is a yamux session, which plugtap does not demultiplex; bytes are relayed unchanged".into(),
        );
    }
    None
}

/// Runs the wrapper until the plugin exits; returns its exit code.
pub async fn run(opts: WrapperOptions) -> Result<i32> {
    let start = Instant::now();
    let (program, args) = opts
        .command
        .split_first()
        .ok_or_else(|| Error::Other("no plugin command given (put it after `--`)".into()))?;
    if let Some(path) = &opts.record {
        // A clear error before the plugin starts, not after its handshake.
        std::fs::File::create(path).map_err(|source| Error::Io {
            context: format!("creating the recording {}", path.display()),
            source,
        })?;
    }
    // Before anything is printed: a host may signal as soon as it has the handshake.
    let mut term = signal(SignalKind::terminate()).map_err(io("installing signal handlers"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io("installing signal handlers"))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(if opts.record.is_some() {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| crate::process::SpawnError {
            command: opts.command.join(" "),
            source,
        })?;
    let pid = child.id().unwrap_or_default();
    let spawned = Instant::now();
    tracing::info!("started plugin `{}` (pid {pid})", opts.command.join(" "));
    let (err_tx, err_rx) = mpsc::unbounded_channel();
    let err_relay = child
        .stderr
        .take()
        .map(|e| tokio::spawn(stderr::relay(e, err_tx)));
    let mut rec = Rec {
        file: None,
        stderr: Some(err_rx),
        relay: err_relay,
        drain: None,
    };
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut out = tokio::io::stdout();

    let mut first = Vec::new();
    let read = tokio::select! {
        r = tokio::time::timeout(opts.start_timeout, stdout.read_until(b'\n', &mut first)) => r,
        status = child.wait() => {
            // Let a line written just before exiting arrive.
            let _ = tokio::time::timeout(Duration::from_millis(200), stdout.read_until(b'\n', &mut first)).await;
            if first.is_empty() {
                let status = status.ok();
                let code = exit_code(status);
                let said = "Unrecognized remote plugin message: \nFailed to read any lines from plugin's stdout (or, if it notices the exit first: plugin exited before we could connect)";
                tracing::error!(
                    "the plugin exited (code {code}) without printing a handshake; the host will say: {said}"
                );
                rec.open(&opts, "", "", start, pid, spawned).await?;
                rec.error(format!("the plugin printed no handshake; a host says: {said}")).await;
                rec.finish(status, "the plugin exited before its handshake").await?;
                return Ok(code);
            }
            Ok(Ok(first.len()))
        }
    };
    match read {
        Err(_) => {
            tracing::error!(
                "the plugin printed no handshake within {:?}; the host will say: timeout while waiting for plugin to start",
                opts.start_timeout
            );
            let _ = child.start_kill();
            let status = child.wait().await.ok();
            rec.open(&opts, "", "", start, pid, spawned).await?;
            rec.error(format!(
                "no handshake within {:?}; a host says: timeout while waiting for plugin to start",
                opts.start_timeout
            ))
            .await;
            rec.finish(status, "no handshake; the plugin was killed")
                .await?;
            return Ok(exit_code(status));
        }
        Ok(Err(e)) => {
            return Err(Error::Io {
                context: "reading the plugin's stdout".into(),
                source: e,
            });
        }
        Ok(Ok(_)) => {}
    }
    let text = String::from_utf8_lossy(&first).into_owned();
    let fields = Fields::split(&text);
    let rules = HostRules {
        versions: fields
            .get(1)
            .and_then(|v| v.parse().ok())
            .into_iter()
            .collect(),
        allowed_protocols: vec!["grpc".into(), "netrpc".into()],
        multiplex: false,
    };
    let accepted = match rules.judge((!first.is_empty()).then_some(text.as_str()), String::new) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(
                "the plugin's first line is not a handshake a host accepts; passing it through unchanged. The host will say: {e}"
            );
            rec.open(&opts, "", "", start, pid, spawned).await?;
            if let Some(r) = rec.handle() {
                r.handshake(&text, None, Some(e.to_string()), None, Instant::now())
                    .await;
            }
            out.write_all(&first).await.map_err(io("writing stdout"))?;
            out.flush().await.map_err(io("writing stdout"))?;
            let _ = tokio::io::copy(&mut stdout, &mut out).await;
            let status = child.wait().await.ok();
            rec.finish(status, "the plugin's handshake was refused")
                .await?;
            return Ok(exit_code(status));
        }
    };
    tracing::info!(
        "plugin handshake: {} (app protocol {}, {} at {})",
        fields.line,
        accepted.app_version,
        accepted.protocol,
        accepted.address
    );
    let mux_env = std::env::var(env::MULTIPLEX_GRPC)
        .ok()
        .as_deref()
        .and_then(super::goparse::go_parse_bool)
        .unwrap_or(false);
    let relay_reason = undecodable_reason(&fields, mux_env);
    if let Some(r) = &relay_reason {
        tracing::warn!("{r}");
    }

    let private = env::socket_dir().join(format!("plugtap-{}.d", std::process::id()));
    let listener = match (&opts.listen, &accepted.address) {
        (Some(p), _) => Listener::unix(p)?,
        (None, Address::Unix(_)) => {
            Listener::unix(&env::socket_dir().join(format!("plugtap-{}.sock", std::process::id())))?
        }
        (None, Address::Tcp(_)) => Listener::tcp("127.0.0.1:0").map_err(io("listening on TCP"))?,
    };
    let mine = listener.address();
    let line = fields.with_address(&mine);
    rec.open(
        &opts,
        &mine.to_string(),
        &accepted.address.to_string(),
        start,
        pid,
        spawned,
    )
    .await?;
    if let Some(r) = rec.handle() {
        r.handshake(
            &text,
            Some(line.clone()),
            None,
            relay_reason.clone(),
            Instant::now(),
        )
        .await;
    }
    out.write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(io("writing the handshake"))?;
    out.flush().await.map_err(io("writing the handshake"))?;
    tracing::info!("told the host: {line}");
    // Whatever the plugin prints after the handshake goes to the host as is.
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut stdout, &mut out).await;
    });

    let cancel = CancellationToken::new();
    let (tx, rx) = mpsc::unbounded_channel();
    let broker = if relay_reason.is_none() {
        match std::fs::create_dir_all(&private) {
            Ok(()) => Some(Broker::new(private.clone())),
            Err(e) => {
                tracing::warn!(
                    "cannot create {}: {e}; brokered connections will not be captured",
                    private.display()
                );
                None
            }
        }
    } else {
        None
    };
    let shutdown_called = Arc::new(tokio::sync::Notify::new());
    let ctx = Arc::new(ForwardCtx {
        events: tx,
        broker,
        cancel: cancel.clone(),
        shutdown_called: shutdown_called.clone(),
    });
    // Set once the host called Shutdown: the plugin must be gone before
    // the host's grace ends, or the host kills plugtap and not the plugin.
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut observing = opts.observer.clone();
    observing.record = rec.handle();
    let observer = tokio::spawn(observer::run(observing, rx, None));

    let upstream = accepted.address.clone();
    // Connection tasks, so their last lines reach the recording before it
    // is finished.
    let connections = tokio_util::task::TaskTracker::new();
    let mut why = "the plugin exited";
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.ok(),
            _ = int.recv() => tracing::info!("SIGINT ignored, as go-plugin plugins do (the host stops plugins through GRPCController.Shutdown)"),
            _ = shutdown_called.notified(), if kill_at.is_none() => {
                kill_at = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
            }
            _ = sleep_until(kill_at), if kill_at.is_some() => {
                tracing::warn!(
                    "the plugin did not exit {SHUTDOWN_GRACE:?} after the host's Shutdown call; killing it (the host kills plugtap after 2 s, which would leave the plugin running)"
                );
                why = "the plugin was killed: it did not exit after Shutdown";
                let _ = child.start_kill();
                break child.wait().await.ok();
            }
            _ = term.recv() => {
                tracing::info!("SIGTERM: passing it to the plugin");
                why = "SIGTERM received; the plugin exited";
                signal_child(pid, nix::sys::signal::Signal::SIGTERM);
                match tokio::time::timeout(opts.grace, child.wait()).await {
                    Ok(s) => break s.ok(),
                    Err(_) => {
                        tracing::warn!("the plugin did not exit {:?} after SIGTERM; killing it", opts.grace);
                        why = "SIGTERM received; the plugin was killed";
                        let _ = child.start_kill();
                        break child.wait().await.ok();
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    let id = ConnId::next();
                    let label = Arc::new(ConnLabel { id, name: id.to_string(), client: "host", server: "plugin", upstream: upstream.clone() });
                    match &relay_reason {
                        Some(_) => { connections.spawn(passthrough::relay(label, stream, rec.handle())); }
                        None => { connections.spawn(forward::connection(stream, label, ctx.clone())); }
                    }
                }
                Err(e) => tracing::warn!("accept failed: {e}"),
            },
        }
    };
    let code = exit_code(status);
    tracing::info!("the plugin exited (code {code})");
    cancel.cancel();
    drop(ctx);
    drop(listener);
    connections.close();
    if tokio::time::timeout(Duration::from_secs(2), connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open 2 s after the plugin exited; finishing the recording without them"
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), observer).await;
    let _ = std::fs::remove_dir_all(&private);
    rec.finish(status, why).await?;
    Ok(code)
}

/// How long the plugin gets to exit after the host's Shutdown call before
/// plugtap kills it: less than the host's 2 s, after which the host kills
/// plugtap (one process, not its children).
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn signal_child(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
    }
}

/// The exit code the wrapper passes on: the plugin's, or 128 + signal.
pub fn exit_code(status: Option<std::process::ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Some(s) => s
            .code()
            .or_else(|| s.signal().map(|n| 128 + n))
            .unwrap_or(1),
        None => 1,
    }
}

fn io(context: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Io {
        context: context.into(),
        source,
    }
}
