//! The prox wrapper's relays: the plugin's stdin and stdout lines, and the
//! sockets it listens on in place of the plugin's.
//!
//! Every line is decoded ([`stdio::decode`]), logged and recorded as it
//! passes, and forwarded with its exact bytes, with one exception: a
//! `ready` naming a socket is forwarded with that socket replaced by one of
//! plugtap's ([`Sockets::ours_for`]), bound *before* the line goes out,
//! since prox dials as soon as it reads `ready`. Each plugin socket gets
//! one plugtap socket, however many `ready` lines name it (the SDK sends
//! one per `configure`). Connections accepted there are proxied
//! byte for byte to the plugin's socket by the proxy role's
//! [`proxy_conn::serve`]; the recording's thread decodes them with
//! [`crate::conversation::ProxStream`].

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt as _;
use tokio::process::{ChildStdin, ChildStdout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::prox_wire::log;
use super::proxy::serve_accepted;
use super::proxy_conn::Shared;
use super::proxy_decode::DecodeSettings;
use crate::codec::{Limits, Line, LineCodec};
use crate::message::prox::stdio::{self, StdioMessage};
use crate::message::{Direction, MessageView};
use crate::net::stdio::{LineWriter, Stdin};
use crate::net::{self, Connection};
use crate::record::{Entry, RecordTx};

/// What every proxied socket shares.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    /// How the sockets' connections (and the stdio lines) are decoded and
    /// logged; `protocol` is prox.
    pub(crate) settings: Arc<DecodeSettings>,
    /// The recording's thread (also without a file: it decodes the
    /// proxied sockets).
    pub(crate) record: RecordTx,
    /// How long plugtap watches for a missing announced socket to appear.
    pub(crate) wait: Duration,
}

impl Base {
    pub(crate) async fn record(&self, entry: Entry) {
        self.record.send(entry).await;
    }
}

/// plugtap's sockets, one per socket the plugin announced.
pub(crate) struct Sockets {
    base: Base,
    /// The plugin's socket → plugtap's.
    map: HashMap<String, PathBuf>,
    /// `--listen`: the path of the first socket.
    listen: Option<PathBuf>,
    /// Stops the accept loops (their sockets are removed as they end).
    pub(crate) stop: CancellationToken,
    /// Ends proxied connections.
    pub(crate) connections: CancellationToken,
    /// Accept loops and connections.
    pub(crate) tracker: TaskTracker,
}

impl Sockets {
    pub(crate) fn new(base: Base, listen: Option<PathBuf>) -> Sockets {
        Sockets {
            base,
            map: HashMap::new(),
            listen,
            stop: CancellationToken::new(),
            connections: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    /// plugtap's socket for the plugin's `socket`, bound and accepting
    /// on first use.
    pub(crate) fn ours_for(&mut self, socket: &str) -> crate::error::Result<PathBuf> {
        if let Some(ours) = self.map.get(socket) {
            return Ok(ours.clone());
        }
        let path = self.path_for(Path::new(socket));
        let bound = net::bind(&path)?;
        tracing::info!(
            "listening on {} for the plugin's socket {socket}",
            path.display()
        );
        let shared = Arc::new(Shared {
            upstream: PathBuf::from(socket),
            settings: self.base.settings.clone(),
            record: self.base.record.clone(),
            spec_side: None,
        });
        let (stop, connections, tracker) = (
            self.stop.clone(),
            self.connections.clone(),
            self.tracker.clone(),
        );
        self.tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => break,
                    accepted = bound.listener().accept() => accepted,
                };
                serve_accepted(accepted, &shared, &connections, &tracker).await;
            }
            // Dropping `bound` removes the socket file.
            drop(bound);
        });
        tokio::spawn(check_announced(PathBuf::from(socket), self.base.clone()));
        self.map.insert(socket.to_owned(), path.clone());
        Ok(path)
    }

    /// `--listen` for the first socket (numbered after it for others);
    /// otherwise next to the plugin's socket, or in the temporary
    /// directory when that path would be too long.
    fn path_for(&self, socket: &Path) -> PathBuf {
        let n = self.map.len();
        if let Some(listen) = &self.listen {
            return if n == 0 {
                listen.clone()
            } else {
                let mut p = listen.clone().into_os_string();
                p.push(format!(".{n}"));
                p.into()
            };
        }
        let stem = socket
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".into());
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let beside = socket.with_file_name(format!("{stem}.plugtap{suffix}.sock"));
        if socket.is_absolute() && net::socket::check_path(&beside).is_ok() {
            return beside;
        }
        std::env::temp_dir().join(format!("plugtap-prox-{}-{n}.sock", std::process::id()))
    }
}

/// Says so, clearly, when the socket a `ready` names is not there: at
/// once (the SDK listens before it sends `ready`), and again if it shows up
/// within the wait.
async fn check_announced(socket: PathBuf, base: Base) {
    let is_socket = |p: &Path| std::fs::metadata(p).map(|m| m.file_type().is_socket()).ok();
    match is_socket(&socket) {
        Some(true) => return,
        Some(false) => {
            let error = format!(
                "the plugin's `ready` names {}, which is not a socket: prox's calls cannot \
                 dial it (on_request answers 500, on_connect closes the connection)",
                socket.display()
            );
            tracing::error!("{error}");
            return record_error(&base, error).await;
        }
        None => {
            let error = format!(
                "the plugin's `ready` names socket {}, which does not exist: prox's calls \
                 cannot dial it (on_request answers 500, on_connect closes the connection); \
                 plugtap's connections to it fail the same way",
                socket.display()
            );
            tracing::error!("{error}");
            record_error(&base, error).await;
        }
    }
    let deadline = Instant::now() + base.wait;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if is_socket(&socket) == Some(true) {
            tracing::info!("{} exists now", socket.display());
            return;
        }
    }
}

async fn record_error(base: &Base, error: String) {
    base.record(Entry::Error {
        conn: None,
        dir: None,
        error,
        at: Instant::now(),
    })
    .await;
}

/// The longest line relayed: prox reads at most 64 KiB, but the relay
/// passes longer lines on (flagged) so prox meets them as it would.
fn max_line(limits: Limits) -> usize {
    limits.max_message.max(Limits::DEFAULT_MAX_MESSAGE)
}

/// prox → plugin: plugtap's stdin to the plugin's, line by line, until
/// prox closes it (then the plugin's stdin is closed: prox's stop signal).
pub(crate) async fn relay_stdin(mut plugin: ChildStdin, base: Base) {
    let mut lines = Connection::new(
        Stdin::spawn(),
        LineCodec::new(max_line(base.settings.limits)),
    );
    loop {
        let line = match lines.read_frame().await {
            Ok(Some(line)) => line,
            Ok(None) => {
                tracing::info!("prox closed stdin; closing the plugin's stdin");
                break;
            }
            Err(e) => {
                let error = format!("cannot read stdin: {e}; closing the plugin's stdin");
                tracing::warn!("{error}");
                record_error(&base, error).await;
                break;
            }
        };
        let (view, _) = stdio::decode(Direction::ToServer, &line);
        note(&base, "stdin", Direction::ToServer, &line, view, None).await;
        if let Err(e) = plugin.write_all(&line.raw).await.and(plugin.flush().await) {
            let error = format!("cannot write to the plugin's stdin: {e}");
            tracing::warn!("{error}");
            record_error(&base, error).await;
            break;
        }
    }
    drop(plugin);
}

/// plugin → prox: the plugin's stdout to plugtap's, line by line, with
/// the socket in each `ready` replaced by plugtap's. Ends at end of stream.
pub(crate) async fn relay_stdout(
    stdout: ChildStdout,
    writer: LineWriter,
    mut sockets: Sockets,
    base: Base,
) -> Sockets {
    let mut lines = Connection::new(stdout, LineCodec::new(max_line(base.settings.limits)));
    loop {
        let line = match lines.read_frame().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                let error = format!(
                    "cannot read the plugin's stdout: {e}; nothing more is relayed (prox's own \
                     reader stops at a line over 64 KiB)"
                );
                tracing::error!("{error}");
                record_error(&base, error).await;
                break;
            }
        };
        let (view, msg) = stdio::decode(Direction::ToClient, &line);
        let mut out = line.raw.to_vec();
        let mut rewritten = None;
        if let StdioMessage::Ready { socket, .. } = &msg
            && !socket.is_empty()
        {
            match sockets.ours_for(socket) {
                Ok(ours) => match rewrite_ready(&line, &ours) {
                    Some(bytes) => {
                        tracing::info!(
                            "ready: prox is told {} instead of {socket}",
                            ours.display()
                        );
                        out = bytes;
                        rewritten = Some(ours.display().to_string());
                    }
                    None => tracing::warn!("cannot rewrite `ready`; forwarded unchanged"),
                },
                Err(e) => {
                    let error = format!(
                        "cannot listen in place of the plugin's socket {socket}: {e}; \
                         `ready` forwarded unchanged, so prox calls the plugin directly"
                    );
                    tracing::error!("{error}");
                    record_error(&base, error).await;
                }
            }
        }
        note(&base, "stdout", Direction::ToClient, &line, view, rewritten).await;
        if !writer.send_raw(out) {
            tracing::warn!("stdout is closed; lines from the plugin are dropped");
        }
    }
    sockets
}

/// The `ready` line with `params.socket` set to `ours`, other fields as
/// they were, ending as the original did.
fn rewrite_ready(line: &Line, ours: &Path) -> Option<Vec<u8>> {
    let mut json: serde_json::Value = serde_json::from_slice(line.text()).ok()?;
    let params = json.get_mut("params")?.as_object_mut()?;
    params.insert(
        "socket".into(),
        serde_json::Value::String(ours.display().to_string()),
    );
    let mut out = serde_json::to_vec(&json).ok()?;
    if line.terminated() {
        out.push(b'\n');
    }
    Some(out)
}

/// Logs and records one line.
async fn note(
    base: &Base,
    stream: &'static str,
    dir: Direction,
    line: &Line,
    mut view: MessageView,
    rewritten_socket: Option<String>,
) {
    let redactor = &base.settings.redactor;
    let redacted = !redactor.is_empty() && redactor.apply(&mut view);
    log(stream, dir, &view, base.settings.full_values);
    base.record(Entry::Stdio {
        stream,
        dir,
        offset: line.offset,
        raw: line.raw.clone(),
        msg: view,
        redacted,
        rewritten_socket,
        at: Instant::now(),
    })
    .await;
}
