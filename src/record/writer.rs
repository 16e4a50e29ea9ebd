//! The recording's one writer: a thread that owns the file, fed by a
//! bounded channel.
//!
//! Senders wait only when the channel is full (so recording slows
//! forwarding down only beyond a bounded buffer, and never drops an
//! event). The thread gathers events for a couple of milliseconds, writes
//! them through a buffer and flushes once the channel stays empty, so
//! lines reach the file within milliseconds, in large writes under load.
//! Every line is written whole before the next one starts;
//! [`Recorder::finish`] drains what is queued, writes the `end` line and
//! flushes, so a recording stopped by a signal still parses.
//!
//! The same thread runs the proxies' per-connection decoding
//! ([`Watch`](super::Watch), see [`super::watch`]), with or without a file: the entries
//! a watch makes are written like any other.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::clock::{Clock, rfc3339};
use super::entry::{Converted, Entry, RecordTx};
use super::json_out::{self, ValueSource};
use super::reencode;
use super::watch::Watches;
use super::{End, FORMAT, Header, Line, Stamp, VERSION};
use crate::protocol::Protocol;

/// Events queued before senders wait.
const CAPACITY: usize = 8192;

/// Bytes of lines gathered before they are written to the file.
const BUFFER: usize = 256 * 1024;

/// How much nicer than the rest of plugtap the writer's thread runs.
#[cfg(target_os = "linux")]
const NICE: i32 = 10;

/// How long the writer waits for more events before writing a batch.
const BATCH: std::time::Duration = std::time::Duration::from_millis(2);

/// What the header line says besides the fixed fields.
#[derive(Debug, Clone)]
pub struct HeaderInfo {
    pub protocol: Protocol,
    pub listen: PathBuf,
    pub upstream: PathBuf,
    pub redact: Vec<String>,
    pub command: Option<String>,
    pub mode: Option<String>,
    /// Write every frame's raw bytes, even where `msg.value` gives them
    /// back exactly (`--keep-raw`).
    pub keep_raw: bool,
}

/// What a finished recording holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Event lines written (header excluded, `end` included).
    pub events: u64,
    /// `frame` lines.
    pub frames: u64,
}

/// The running writer.
#[derive(Debug)]
pub struct Recorder {
    tx: RecordTx,
    path: Option<PathBuf>,
    thread: std::thread::JoinHandle<std::io::Result<Stats>>,
}

impl Recorder {
    /// Creates (or truncates) `path`, writes the header and starts the
    /// writer thread. `start` is time zero for `t_us`.
    pub fn create(path: &Path, info: HeaderInfo, start: Instant) -> std::io::Result<Recorder> {
        let file = File::create(path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot create recording {}: {e}", path.display()),
            )
        })?;
        let mut file = file;
        let started = Utc::now();
        let header = Line::Header(Header {
            format: FORMAT.into(),
            version: VERSION,
            plugtap: env!("CARGO_PKG_VERSION").into(),
            protocol: info.protocol,
            listen: info.listen,
            upstream: info.upstream,
            started_at: rfc3339(started),
            redact: info.redact,
            command: info.command,
            mode: info.mode,
        });
        let mut text = serde_json::to_vec(&header)?;
        text.push(b'\n');
        file.write_all(&text)?;
        // Only MsgPack:1 frames are left without `raw` when they
        // re-encode (see `reencode`).
        let reencode = info.protocol == Protocol::MsgPack1 && !info.keep_raw;
        let out = Output::new(Some(file), start, started, reencode);
        Recorder::spawn(out, Some(path.to_owned()))
    }

    /// The thread without a file: it runs the [`Watch`](super::Watch)es queued to it
    /// (the proxy's decoding and live log) and writes nothing.
    pub fn watch_only() -> std::io::Result<Recorder> {
        let out = Output::new(None, Instant::now(), Utc::now(), false);
        Recorder::spawn(out, None)
    }

    fn spawn(out: Output, path: Option<PathBuf>) -> std::io::Result<Recorder> {
        let (tx, rx) = mpsc::channel(CAPACITY);
        let thread = std::thread::Builder::new()
            .name("plugtap-recorder".into())
            .spawn(move || {
                lower_priority();
                Writer {
                    out,
                    watches: Watches::default(),
                }
                .run(rx)
            })?;
        Ok(Recorder {
            tx: RecordTx(tx),
            path,
            thread,
        })
    }

    /// A handle for queuing entries.
    pub fn tx(&self) -> RecordTx {
        self.tx.clone()
    }

    /// The file written, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes everything queued so far (finishing any watch still open),
    /// then the `end` line, and closes the file (logging what it holds).
    /// Entries queued after this call are not written, so call it once
    /// every connection is done.
    pub async fn finish(self, reason: &str) -> std::io::Result<Stats> {
        self.tx
            .send(Entry::Finish {
                reason: reason.to_owned(),
            })
            .await;
        drop(self.tx);
        let thread = self.thread;
        let stats = tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(std::io::Error::other)?
            .map_err(|_| std::io::Error::other("the recording thread panicked"))??;
        if let Some(path) = &self.path {
            tracing::info!(
                "recorded {} frames ({} events) in {}",
                stats.frames,
                stats.events,
                path.display()
            );
        }
        Ok(stats)
    }
}

struct Writer {
    out: Output,
    /// The connections being decoded here.
    watches: Watches,
}

/// The file side: lines, numbering, the buffer.
struct Output {
    /// `None`: nothing is recorded (only watches run).
    file: Option<File>,
    /// Whole lines not yet written to the file: each line is serialised
    /// straight into it (no copy from a line buffer into a file buffer).
    buf: Vec<u8>,
    start: Instant,
    started: DateTime<Utc>,
    /// Leave out `raw` where `msg.value` re-encodes to it.
    reencode: bool,
    stats: Stats,
    error: Option<std::io::Error>,
    clock: Clock,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Entry>) -> std::io::Result<Stats> {
        let mut reason = None;
        'outer: while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            loop {
                while let Some(entry) = next.take() {
                    if let Entry::Finish { reason: r } = entry {
                        reason = Some(r);
                        // Whatever was queued before the finish still goes in.
                        while let Ok(entry) = rx.try_recv() {
                            if !matches!(entry, Entry::Finish { .. }) {
                                self.take(entry);
                            }
                        }
                        break 'outer;
                    }
                    self.take(entry);
                    next = rx.try_recv().ok();
                }
                // Let a batch gather instead of waking up for every event:
                // fewer wake-ups and write calls under load, at most a
                // couple of milliseconds of delay when idle.
                std::thread::sleep(BATCH);
                next = rx.try_recv().ok();
                if next.is_none() {
                    break;
                }
            }
            self.out.flush();
        }
        // Connections cut off without their `Unwatch` still get their end.
        let out = &mut self.out;
        self.watches
            .finish_all(Instant::now(), &mut |e| out.write(e));
        self.out.end(reason)
    }

    /// Runs watches; writes everything else.
    fn take(&mut self, entry: Entry) {
        match entry {
            Entry::Watch { conn, watch } => self.watches.start(conn, watch),
            Entry::Note { conn, note } => {
                let out = &mut self.out;
                self.watches.note(conn, note, &mut |e| out.write(e));
            }
            Entry::Unwatch { conn, at } => {
                let out = &mut self.out;
                self.watches.finish(conn, at, &mut |e| out.write(e));
            }
            entry => self.out.write(entry),
        }
    }
}

impl Output {
    fn new(file: Option<File>, start: Instant, started: DateTime<Utc>, reencode: bool) -> Output {
        let capacity = if file.is_some() {
            BUFFER + 64 * 1024
        } else {
            0
        };
        Output {
            file,
            buf: Vec::with_capacity(capacity),
            start,
            started,
            reencode,
            stats: Stats::default(),
            error: None,
            clock: Clock::default(),
        }
    }

    /// Writes the `end` line and flushes.
    fn end(mut self, reason: Option<String>) -> std::io::Result<Stats> {
        if self.file.is_none() {
            return Ok(self.stats);
        }
        let end = Line::End(End {
            stamp: self.stamp(Instant::now()),
            events: self.stats.events,
            frames: self.stats.frames,
            reason: reason.unwrap_or_else(|| "stopped".into()),
        });
        self.line(&end);
        self.flush();
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.stats),
        }
    }

    fn stamp(&mut self, at: Instant) -> Stamp {
        self.stats.events += 1;
        let since = at.saturating_duration_since(self.start);
        let wall = self.started + chrono::TimeDelta::from_std(since).unwrap_or_default();
        Stamp {
            seq: self.stats.events,
            t_us: since.as_micros() as u64,
            at: self.clock.text(wall),
        }
    }

    fn write(&mut self, entry: Entry) {
        if self.file.is_none() {
            return;
        }
        let mut stamps = |at| self.stamp(at);
        match entry.into_line(&mut stamps) {
            Converted::Frame {
                mut event,
                raw,
                scanned,
            } => {
                self.stats.frames += 1;
                // A scanned frame knows whether its value re-encodes; any
                // other is encoded again and compared.
                let reencodes = self.reencode
                    && raw.as_ref().is_some_and(|bytes| match &scanned {
                        Some(s) => s.canonical(),
                        None => reencode::msgpack_reencodes(&event.msg.value, bytes),
                    });
                event.reencodes = reencodes;
                let shown = if reencodes { None } else { raw.as_deref() };
                let value = match (&scanned, &raw) {
                    (Some(s), Some(bytes)) => ValueSource::Scanned(bytes, s),
                    _ => ValueSource::Built,
                };
                // The hot path: written by hand, base64 straight into the
                // buffer (this cannot fail, so no half line is left).
                json_out::write_frame(&mut self.buf, &event, shown, value);
                self.buf.push(b'\n');
                self.spill();
            }
            Converted::Line(line) => {
                if matches!(line, Line::Frame(_)) {
                    self.stats.frames += 1;
                }
                self.line(&line);
            }
            Converted::Nothing => {}
        }
    }

    /// Serialises into the buffer; a failed serialisation is cut off
    /// again, so it never leaves half a line in the file.
    fn line(&mut self, line: &Line) {
        let start = self.buf.len();
        if let Err(e) = serde_json::to_writer(&mut self.buf, line) {
            self.buf.truncate(start);
            tracing::error!("cannot serialise a recording line: {e}");
            return;
        }
        self.buf.push(b'\n');
        self.spill();
    }

    /// Writes the buffer out once it is full.
    fn spill(&mut self) {
        if self.buf.len() >= BUFFER {
            self.flush();
        }
    }

    /// Writes every buffered line to the file.
    fn flush(&mut self) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if self.buf.is_empty() {
            return;
        }
        if let Err(e) = file.write_all(&self.buf) {
            self.fail(e);
        }
        self.buf.clear();
    }

    fn fail(&mut self, e: std::io::Error) {
        if self.error.is_none() {
            tracing::error!("writing the recording failed: {e}");
            self.error = Some(e);
        }
    }
}

/// Makes the calling thread (the writer's) [`NICE`] steps nicer, so the
/// scheduler lets a woken forwarding thread or peer run before it instead
/// of after it: every few milliseconds the writer wakes with a batch to
/// decode and write, and at normal priority it could take the CPU a
/// proxied call was about to get (scripts/bench.sh: one connection's added
/// p99 latency). The thread still gets its share when the CPUs are busy,
/// and if it falls behind, its bounded channel slows forwarding down
/// rather than dropping anything. On Linux the nice value is per thread.
fn lower_priority() {
    // Elsewhere it would renice the whole process (and a server started
    // after it).
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::nice(NICE) {
        tracing::debug!("cannot lower the recording thread's priority: {e}");
    }
}
