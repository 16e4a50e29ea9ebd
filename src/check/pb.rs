//! The protocol checks of `plugtap check` over `ProtoBuf:1` (go-pdk
//! embedded servers), driven the way Kong's pb_rpc.lua drives them through
//! the Kong emulation's wire ([`crate::role::pb_kong::PbWire`]).
//!
//! Differences from `MsgPack:1`: PDK calls run on the event's own
//! connection, so `steps_across_connections` does not apply; a server
//! reports errors by closing the connection, which Kong reads as `closed`
//! and, for events, treats like `no plugin instance` (reset and retry).

use std::time::Duration;

use serde_json::Value as Json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use super::probes::new_pdk;
use super::{CheckOptions, CheckResult, Status};
use crate::kong::canned::Canned;
use crate::kong::instance::{Identity, config_text};
use crate::role::kong_client::KongWire;
use crate::role::kong_event::{Event, EventEnd, Failure, kong_reaction, phase_report};
use crate::role::kong_report::{PhaseReport, PhaseStatus};
use crate::role::pb_kong::PbWire;
use crate::spec::kong::IdsSpec;

/// How long idle connections are watched for stray frames.
const WATCH: Duration = Duration::from_millis(300);

/// An instance id no server has started.
const UNKNOWN: i64 = 2_000_000_017;

/// Runs `start_instance` to `malformed_request`.
pub(super) async fn run(
    opts: &CheckOptions,
    phase: &str,
    shutdown: &CancellationToken,
) -> Vec<CheckResult> {
    let identity = Identity::from_spec(&IdsSpec::default());
    let wire = || {
        PbWire::new(
            opts.socket.clone(),
            opts.limits,
            opts.timeout,
            opts.full_values,
        )
    };
    let mut main = wire();
    let mut out = Vec::new();
    let config = config_text(&opts.plugin, &opts.config, &identity, 1);
    let id = match main.start(&opts.plugin, &config, shutdown).await {
        Ok(id) if !id.is_null() => {
            out.push(CheckResult::pass(
                "start_instance",
                format!("instance {id} started"),
            ));
            Some(id)
        }
        Ok(_) => {
            out.push(CheckResult::fail(
                "start_instance",
                "the RpcReturn has no instance_status.instance_id",
                "Kong sends events for instance 0, which the server does not have: it closes \
                 the connection, Kong resets and retries without end",
            ));
            None
        }
        Err(e) => {
            out.push(
                CheckResult::fail("start_instance", "cmd_start_instance failed", e.kong())
                    .with_detail(e.detail()),
            );
            None
        }
    };
    let across = CheckResult::skip(
        "steps_across_connections",
        "ProtoBuf:1 runs an event's PDK calls on the event's own connection",
    );
    match &id {
        Some(id) => {
            let event = event(&mut main, id, phase, &identity, shutdown).await;
            let ok = event.status == Status::Pass;
            out.push(event);
            out.push(across);
            out.push(if ok {
                concurrent(opts, id, phase, &identity, shutdown).await
            } else {
                CheckResult::skip(
                    "concurrent_events",
                    "a single event does not work (see event)",
                )
            });
        }
        None => {
            let why = "no instance (start_instance failed)";
            out.push(CheckResult::skip("event", why));
            out.push(across);
            out.push(CheckResult::skip("concurrent_events", why));
        }
    }
    out.push(
        gone(
            &mut wire(),
            &Json::from(UNKNOWN),
            "unknown_instance",
            phase,
            &identity,
            shutdown,
        )
        .await,
    );
    out.push(match &id {
        Some(id) => match main.close(id, shutdown).await {
            Ok(()) => {
                let after = gone(
                    &mut wire(),
                    id,
                    "close_instance",
                    phase,
                    &identity,
                    shutdown,
                )
                .await;
                if after.status == Status::Pass {
                    CheckResult::pass(
                        "close_instance",
                        format!("instance {id} closed; an event for it then closes the connection"),
                    )
                } else {
                    after
                }
            }
            Err(e) => CheckResult::fail(
                "close_instance",
                "cmd_close_instance failed",
                "Kong ignores it; the old instance stays in the server",
            )
            .with_detail(e.detail()),
        },
        None => CheckResult::skip("close_instance", "no instance (start_instance failed)"),
    });
    out.push(match main.stray(WATCH).await {
        None => CheckResult::pass(
            "no_unsolicited_bytes",
            format!("nothing arrived on an idle connection within {WATCH:?}"),
        ),
        Some(what) => CheckResult::fail(
            "no_unsolicited_bytes",
            "a frame arrived on an idle connection",
            "Kong reads it as the answer to the next call on that pooled connection: a \
             sequence assertion fails (a Lua error, a 500)",
        )
        .with_detail(what),
    });
    out.push(malformed(opts, &config, shutdown).await);
    out
}

/// One event with a fresh request.
async fn run_event(
    wire: &mut PbWire,
    id: &Json,
    phase: &str,
    identity: &Identity,
    shutdown: &CancellationToken,
) -> (PhaseReport, Result<EventEnd, Failure>) {
    let mut report = phase_report(phase, PhaseStatus::Failed);
    let mut pdk = new_pdk(phase, identity);
    let mut canned = Canned::default();
    let event = Event {
        pdk: &mut pdk,
        canned: &mut canned,
        report: &mut report,
    };
    let result = wire.event(event, id, phase, shutdown).await;
    (report, result)
}

async fn event(
    wire: &mut PbWire,
    id: &Json,
    phase: &str,
    identity: &Identity,
    shutdown: &CancellationToken,
) -> CheckResult {
    let (report, result) = run_event(wire, id, phase, identity, shutdown).await;
    let calls: Vec<&str> = report.calls.iter().map(|c| c.method.as_str()).collect();
    match result {
        Ok(end) => CheckResult::pass(
            "event",
            format!(
                "{phase} event {} after {} PDK call(s){}",
                if end == EventEnd::Exit {
                    "exited"
                } else {
                    "completed"
                },
                calls.len(),
                if calls.is_empty() {
                    String::new()
                } else {
                    format!(": {}", calls.join(", "))
                }
            ),
        ),
        Err(e) => CheckResult::fail("event", format!("the {phase} event failed"), e.kong())
            .with_detail(e.detail()),
    }
}

async fn concurrent(
    opts: &CheckOptions,
    id: &Json,
    phase: &str,
    identity: &Identity,
    shutdown: &CancellationToken,
) -> CheckResult {
    let mut wires: Vec<PbWire> = (0..opts.connections)
        .map(|_| {
            PbWire::new(
                opts.socket.clone(),
                opts.limits,
                opts.timeout,
                opts.full_values,
            )
        })
        .collect();
    let runs = wires
        .iter_mut()
        .map(|w| run_event(w, id, phase, identity, shutdown));
    let results = futures_join(runs).await;
    let failed: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, (_, r))| {
            r.as_ref()
                .err()
                .map(|e| format!("event {}: {}", i + 1, e.detail()))
        })
        .collect();
    if failed.is_empty() {
        CheckResult::pass(
            "concurrent_events",
            format!(
                "{} events in flight at once all completed",
                opts.connections
            ),
        )
    } else {
        CheckResult::fail(
            "concurrent_events",
            format!(
                "{} of {} concurrent events failed",
                failed.len(),
                opts.connections
            ),
            "under load some requests run without the plugin (or reset its instances)",
        )
        .with_detail(failed.join("\n"))
    }
}

/// Runs the futures at once (one task; they only wait on sockets).
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

/// An event for an instance the server does not have must fail the way
/// Kong resets on: a closed connection (go-pdk) or `no plugin instance`.
async fn gone(
    wire: &mut PbWire,
    id: &Json,
    name: &'static str,
    phase: &str,
    identity: &Identity,
    shutdown: &CancellationToken,
) -> CheckResult {
    let (_, result) = run_event(wire, id, phase, identity, shutdown).await;
    match result {
        Err(Failure::Call(e)) if wire.is_reset(&e) => CheckResult::pass(
            name,
            format!(
                "an event for instance {id} got `{}`: Kong resets and starts a new instance",
                e.kong_log()
            ),
        ),
        Ok(_) => CheckResult::fail(
            name,
            format!("an event for instance {id}, which the server does not have, completed"),
            "Kong never learns that the instance is gone: requests run on a stale instance",
        ),
        Err(e) => CheckResult::fail(
            name,
            format!("an event for instance {id} failed without the reset signal"),
            format!(
                "Kong resets only on `closed` or `no plugin instance`; with this it {}",
                match &e {
                    Failure::Call(c) => kong_reaction(c),
                    other => other.kong(),
                }
                .trim_start_matches("Kong ")
            ),
        )
        .with_detail(e.detail()),
    }
}

/// Frames go-pdk cannot read must only cost their own connection.
async fn malformed(opts: &CheckOptions, config: &str, shutdown: &CancellationToken) -> CheckResult {
    let probes: [(&str, &[u8]); 3] = [
        (
            "bytes that are not protobuf",
            &[3, 0, 0, 0, 0xff, 0xff, 0xff],
        ),
        ("an RpcCall with no command", &[2, 0, 0, 0, 0x08, 0x02]),
        ("an empty frame", &[0, 0, 0, 0]),
    ];
    for (what, bytes) in probes {
        if let Ok(mut s) = tokio::net::UnixStream::connect(&opts.socket).await {
            let _ = s.write_all(bytes).await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(WATCH, s.read_to_end(&mut sink)).await;
        }
        let mut wire = PbWire::new(
            opts.socket.clone(),
            opts.limits,
            opts.timeout,
            opts.full_values,
        );
        if let Err(e) = wire.start(&opts.plugin, config, shutdown).await {
            return CheckResult::fail(
                "malformed_request",
                format!("after {what}, cmd_start_instance fails"),
                "one bad frame takes the server down: every request through the plugin gets a \
                 500 until Kong restarts it",
            )
            .with_detail(e.detail());
        }
    }
    CheckResult::pass(
        "malformed_request",
        "invalid protobuf, an RpcCall with no command and an empty frame cost only their connection",
    )
}
