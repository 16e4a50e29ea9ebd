//! The `malformed_request` check: send messages Kong never sends, each on
//! its own connection, and make sure the server is still there afterwards
//! (its process still runs, and a new connection still gets answers).

use std::time::Duration;

use rmpv::Value as Mp;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::{CheckOptions, CheckResult};
use crate::codec::{hex, msgpack};
use crate::kong::step::is_reset_error;
use crate::process::{self, Child};
use crate::role::kong_event;
use crate::role::kong_event::Failure;
use crate::role::kong_report::PhaseStatus;
use crate::role::kong_rpc::{CallError, Pool, Rpc};

const NAME: &str = "malformed_request";

/// How long to listen for the server's answer to a malformed message.
const LISTEN: Duration = Duration::from_millis(300);

/// Runs the check; `child` is the server process, if plugtap started it.
pub(super) async fn malformed(
    opts: &CheckOptions,
    phase: &str,
    mut child: Option<&mut Child>,
    shutdown: &CancellationToken,
) -> CheckResult {
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("bytes that are not msgpack", vec![0xc1, 0xc1, 0xc1, 0xc1]),
        (
            "a msgpack value that is not a request",
            msgpack::encode(&Mp::Array(vec![0.into(), "x".into()])).to_vec(),
        ),
        (
            "a HandleEvent request whose params are not a one-element array",
            msgpack::encode(&Mp::Array(vec![
                0.into(),
                1.into(),
                "plugin.HandleEvent".into(),
                "x".into(),
            ]))
            .to_vec(),
        ),
    ];
    let pool = Pool::new(opts.socket.clone(), opts.limits);
    let mut answers = Vec::new();
    for (what, bytes) in &inputs {
        let mut conn = match pool.connect().await {
            Ok(c) => c,
            Err(e) => return died(what, &e.detail(), None),
        };
        tracing::info!("{} sending {what}: {}", conn.id(), hex(bytes));
        if let Err(e) = conn.write_all(bytes).await {
            tracing::debug!("writing {what}: {e}");
        }
        let heard = match tokio::time::timeout(LISTEN, conn.read_frame()).await {
            Ok(Ok(Some(frame))) => format!("answered {}", crate::value_json::to_json(&frame.value)),
            Ok(Ok(None)) => "closed the connection".into(),
            Ok(Err(e)) => format!("sent something undecodable ({e})"),
            Err(_) => "said nothing".into(),
        };
        answers.push(format!("{what}: the server {heard}"));
        drop(conn);
        if let Some(c) = child.as_deref_mut()
            && let Ok(status) = tokio::time::timeout(Duration::from_millis(200), c.wait()).await
        {
            let how = status.map_or_else(|e| e.to_string(), process::describe);
            return died(
                what,
                &format!("the server process exited ({how})"),
                Some(&answers),
            );
        }
        if let Err(e) = alive(opts, phase, shutdown).await {
            return died(what, &e, Some(&answers));
        }
    }
    CheckResult::pass(
        NAME,
        format!(
            "{} malformed messages; the server still answers",
            inputs.len()
        ),
    )
    .with_detail(answers.join("\n"))
}

/// Asks a fresh connection something every server answers.
async fn alive(
    opts: &CheckOptions,
    phase: &str,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut pool = Pool::new(opts.socket.clone(), opts.limits);
    let mut rpc = Rpc::new(opts.timeout, opts.full_values);
    let mut report = kong_event::phase_report(phase, PhaseStatus::Failed);
    let probe = Json::from(987_654_321u64);
    match kong_event::handle_event(&mut rpc, &mut pool, &probe, phase, &mut report, shutdown).await
    {
        Err(Failure::Call(CallError::Error(text))) if is_reset_error(&text) => Ok(()),
        Err(Failure::Call(CallError::Error(_))) | Ok(_) => Ok(()),
        Err(f) => Err(format!("a new connection gets no answer: {}", f.detail())),
    }
}

fn died(what: &str, how: &str, answers: Option<&[String]>) -> CheckResult {
    let mut r = CheckResult::fail(
        NAME,
        format!("the server did not survive {what}"),
        "one bad message takes the whole server down: every call in flight fails with \
         `no data`, all instances are lost, and Kong respawns the server only if it \
         manages it (pluginserver_<name>_start_cmd)",
    );
    let mut detail = vec![how.to_owned()];
    detail.extend(answers.unwrap_or_default().iter().cloned());
    r = r.with_detail(detail.join("\n"));
    r
}
