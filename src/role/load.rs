//! Load mode of the client role: C connections, each running the spec's
//! steps over and over (`--repeat N` times, or for `--duration S`), with
//! calls/s and latency percentiles from an HDR histogram. It is also the
//! driver of `scripts/bench.sh`.
//!
//! Each connection behaves like Kong: one call at a time, msgids counting
//! up, notifications skipped. The steps are the client's: captures and
//! `${name}` substitution work per connection, and `expect` is checked
//! with the client's own `client::settle`. To keep the driver
//! cheap, a step whose params use no captured value is encoded once and
//! only its msgid changes per call, and nothing is logged per message.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut as _, BytesMut};
use tokio_util::sync::CancellationToken;

use super::client::{self, ClientOptions, StepReport};
pub use super::load_report::{LoadReport, Percentiles};
use super::load_report::{MAX_PROBLEMS, Tally, histogram, problem};
use crate::codec::{MsgpackCodec, msgpack};
use crate::error::{Error, Result};
use crate::message::RpcMessage;
use crate::net::{self, Connection};
use crate::process::{self, Child};
use crate::spec::template::{self, Vars};
use crate::spec::{Spec, Step};
use crate::value_json;

/// How much load to make.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Runs of the step list per connection.
    pub repeat: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Connections, each running the steps.
    pub concurrency: usize,
    /// Show progress on stderr (when it is a terminal).
    pub progress: bool,
}

/// Runs the load.
pub async fn run(
    spec: &Spec,
    opts: ClientOptions,
    load: LoadOptions,
    shutdown: CancellationToken,
) -> Result<LoadReport> {
    if spec.client.try_methods.is_empty() {
        return Err(Error::Other("the spec has no try_methods to repeat".into()));
    }
    let mut child = match &opts.start_cmd {
        Some(cmd) => Some(Child::spawn(cmd)?),
        None => None,
    };
    let result = drive(spec, &opts, &load, child.as_mut(), &shutdown).await;
    if let Some(child) = child.as_mut() {
        match child.terminate(opts.grace).await {
            Ok(status) => tracing::info!(
                "`{}` ended ({})",
                child.display(),
                process::describe(status)
            ),
            Err(e) => tracing::warn!("could not reap `{}`: {e}", child.display()),
        }
    }
    result
}

async fn drive(
    spec: &Spec,
    opts: &ClientOptions,
    load: &LoadOptions,
    child: Option<&mut Child>,
    shutdown: &CancellationToken,
) -> Result<LoadReport> {
    let concurrency = load.concurrency.max(1);
    let first = tokio::select! {
        _ = shutdown.cancelled() => return Err(Error::Other("interrupted".into())),
        s = client::connect(opts, child) => s?,
    };
    let mut streams = vec![first];
    if concurrency > 1 {
        let path = opts
            .socket
            .as_ref()
            .ok_or_else(|| Error::Other("load mode needs the socket path".into()))?;
        for _ in 1..concurrency {
            streams.push(net::connect_when_ready(path, opts.wait).await?);
        }
    }
    let steps = Arc::new(spec.client.try_methods.clone());
    let calls = Arc::new(AtomicU64::new(0));
    let stop = shutdown.child_token();
    let started = Instant::now();
    let deadline = load.duration.map(|d| started + d);
    let mut tasks = Vec::with_capacity(concurrency);
    for stream in streams {
        let conn = Connection::new(stream, MsgpackCodec::new(opts.limits));
        tasks.push(tokio::spawn(worker(
            conn,
            steps.clone(),
            opts.clone(),
            load.repeat,
            deadline,
            calls.clone(),
            stop.clone(),
        )));
    }
    let progress = (load.progress && std::io::stderr().is_terminal())
        .then(|| tokio::spawn(progress(calls.clone(), started)));
    let mut total = histogram();
    let (mut error_replies, mut failures, mut broken) = (0, 0, 0);
    let mut problems = Vec::new();
    for task in tasks {
        let tally = task
            .await
            .map_err(|e| Error::Other(format!("a load connection failed: {e}")))?;
        let _ = total.add(&tally.hist);
        error_replies += tally.error_replies;
        failures += tally.failures;
        broken += u64::from(tally.broken);
        for p in tally.problems {
            if problems.len() < MAX_PROBLEMS {
                problems.push(p);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[2K");
    }
    let n = total.len();
    let q = |x: f64| {
        if n == 0 {
            0
        } else {
            total.value_at_quantile(x)
        }
    };
    Ok(LoadReport {
        connections: concurrency,
        calls: n,
        error_replies,
        failures,
        broken,
        seconds,
        calls_per_sec: if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        },
        latency_us: Percentiles {
            min: if n == 0 { 0 } else { total.min() },
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: if n == 0 { 0 } else { total.max() },
            mean: if n == 0 { 0.0 } else { total.mean() },
        },
        problems,
    })
}

/// Redraws one status line on stderr four times a second.
async fn progress(calls: Arc<AtomicU64>, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last = (0u64, Instant::now());
    loop {
        tick.tick().await;
        let now = Instant::now();
        let n = calls.load(Ordering::Relaxed);
        let rate = (n - last.0) as f64 / now.duration_since(last.1).as_secs_f64().max(1e-6);
        last = (n, now);
        eprint!(
            "\r\x1b[2K{n} calls, {rate:.0} calls/s, {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// A step ready to send: fixed steps keep their encoded method and params.
struct Ready<'a> {
    step: &'a Step,
    tail: Option<BytesMut>,
}

/// `method` then `params`, encoded: everything of a request after its msgid.
fn encode_tail(method: &str, params: &rmpv::Value) -> BytesMut {
    let mut tail = BytesMut::new();
    let mut w = (&mut tail).writer();
    let _ = msgpack::write(&mut w, &rmpv::Value::from(method));
    let _ = msgpack::write(&mut w, params);
    tail
}

/// One connection's loop.
async fn worker(
    mut conn: Connection<MsgpackCodec>,
    steps: Arc<Vec<Step>>,
    opts: ClientOptions,
    repeat: Option<u64>,
    deadline: Option<Instant>,
    calls: Arc<AtomicU64>,
    stop: CancellationToken,
) -> Tally {
    let mut tally = Tally {
        hist: histogram(),
        error_replies: 0,
        failures: 0,
        broken: false,
        problems: vec![],
    };
    let ready: Vec<Ready<'_>> = steps
        .iter()
        .map(|step| Ready {
            step,
            tail: template::references(&step.params)
                .is_empty()
                .then(|| value_json::from_json(&step.params).ok())
                .flatten()
                .map(|p| encode_tail(&step.method, &p)),
        })
        .collect();
    let mut vars = template::builtins();
    let mut msgid = 0u32;
    let mut out = BytesMut::with_capacity(256);
    let mut round = 0u64;
    'rounds: while repeat.is_none_or(|n| round < n) {
        round += 1;
        for r in &ready {
            if stop.is_cancelled() || deadline.is_some_and(|d| Instant::now() >= d) {
                break 'rounds;
            }
            msgid = msgid.wrapping_add(1);
            out.clear();
            out.put_u8(0x94);
            out.put_u8(0x00);
            let _ = rmp::encode::write_uint(&mut (&mut out).writer(), u64::from(msgid));
            match &r.tail {
                Some(tail) => out.extend_from_slice(tail),
                None => match build(r.step, &vars) {
                    Ok(tail) => out.extend_from_slice(&tail),
                    Err(e) => {
                        problem(&mut tally, format!("{}: {e}", r.step.method));
                        tally.failures += 1;
                        continue;
                    }
                },
            }
            let sent = Instant::now();
            if let Err(e) = conn.write_all(&out).await {
                problem(&mut tally, format!("{} sending: {e}", conn.id()));
                tally.broken = true;
                break 'rounds;
            }
            match reply(&mut conn, msgid, &opts, &stop).await {
                Ok((error, result)) => {
                    let micros = sent.elapsed().as_micros() as u64;
                    let _ = tally.hist.record(micros.max(1));
                    calls.fetch_add(1, Ordering::Relaxed);
                    if !error.is_nil() {
                        tally.error_replies += 1;
                    }
                    if r.step.expect.is_some() || !r.step.capture.is_empty() {
                        let mut report = scratch(r.step);
                        // settle() logs error replies; under load that is noise.
                        tracing::subscriber::with_default(
                            tracing::subscriber::NoSubscriber::default(),
                            || client::settle(r.step, &mut report, &error, &result, &mut vars),
                        );
                        if !report.failures.is_empty() {
                            tally.failures += 1;
                            let why = &report.failures[0].message;
                            problem(&mut tally, format!("{}: {why}", r.step.method));
                        }
                    }
                }
                Err(e) => {
                    if !stop.is_cancelled() {
                        problem(&mut tally, format!("{} {}: {e}", conn.id(), r.step.method));
                        tally.broken = true;
                    }
                    break 'rounds;
                }
            }
        }
    }
    tally
}

/// Method and params of a step that uses captured values.
fn build(step: &Step, vars: &Vars) -> std::result::Result<BytesMut, String> {
    let params = template::substitute(&step.params, vars)?;
    let params = value_json::from_json(&params).map_err(|e| e.to_string())?;
    Ok(encode_tail(&step.method, &params))
}

fn scratch(step: &Step) -> StepReport {
    let mut r = StepReport::blank(0, step);
    r.name = None;
    r
}

/// Waits for the response to `msgid`, skipping notifications.
async fn reply(
    conn: &mut Connection<MsgpackCodec>,
    msgid: u32,
    opts: &ClientOptions,
    stop: &CancellationToken,
) -> std::result::Result<(rmpv::Value, rmpv::Value), String> {
    loop {
        let read = tokio::select! {
            _ = stop.cancelled() => return Err("interrupted".into()),
            read = tokio::time::timeout(opts.call_timeout, conn.read_frame()) => read,
        };
        let frame = match read {
            Err(_) => return Err(format!("no reply within {:?}", opts.call_timeout)),
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return Err("the server closed the connection".into()),
            Ok(Err(e)) => return Err(format!("undecodable reply: {e}")),
        };
        match RpcMessage::from_value(&frame.value) {
            Ok(RpcMessage::Notification { .. }) => continue,
            Ok(RpcMessage::Response {
                msgid: got,
                error,
                result,
            }) if got == msgid => return Ok((error, result)),
            Ok(RpcMessage::Response { msgid: got, .. }) => {
                return Err(format!(
                    "response with msgid {got} while waiting for {msgid}"
                ));
            }
            Ok(RpcMessage::Request { .. }) => return Err("the server sent a request".into()),
            Err(m) => return Err(format!("malformed reply: {m}")),
        }
    }
}
