//! One event as Kong runs it over `MsgPack:1` (`bridge_loop` in Kong's
//! `mp_rpc.lua`): `plugin.HandleEvent`, then for every `{Method, Args}`
//! the server asks for, the PDK answer in the Step method Kong would use,
//! until `Data` is `"ret"`. `kong.response.exit` and `kong.response.error`
//! get no answer: the event ends there.
//!
//! Used by the Kong emulation ([`super::kong_client`]) and by `check`,
//! which also needs the two halves separately (start many events, then
//! finish them).

use rmpv::Value as Mp;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::kong_report::{PdkCall, PhaseReport, PhaseStatus};
use super::kong_rpc::{CallError, Pool, Rpc};
use super::kong_wire::{data_of, field, lua_value, table};
use crate::kong::canned::Canned;
use crate::kong::pdk::{Pdk, Reply, Source};
use crate::kong::step;
use crate::value_json;

/// Most PDK calls one event may make; a server that never says `ret` is
/// stopped there (Kong would go on for ever).
pub const MAX_PDK_CALLS: usize = 10_000;

/// How an event ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventEnd {
    /// The server said `ret`.
    Ret,
    /// The plugin exited (`kong.response.exit` / `error`).
    Exit,
}

/// Why an event failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// A call failed.
    Call(CallError),
    /// Kong raises a Lua error (the handler aborts, the client gets 500).
    Lua(String),
    /// Kong gets nothing back and silently stops.
    Silent(String),
    /// `StartInstance` failed: Kong raises an error.
    Start(CallError),
}

impl Failure {
    /// What went wrong, in plugtap's words.
    pub fn detail(&self) -> String {
        match self {
            Failure::Call(e) => e.detail(),
            Failure::Lua(e) | Failure::Silent(e) => e.clone(),
            Failure::Start(e) => format!("StartInstance failed: {}", e.detail()),
        }
    }

    /// What Kong logs and does in production.
    pub fn kong(&self) -> String {
        match self {
            Failure::Call(e) => kong_reaction(e),
            Failure::Lua(_) => {
                "Kong raises a Lua error: the plugin handler aborts and the client gets a 500"
                    .into()
            }
            Failure::Silent(_) => "Kong stops the event without logging anything; the plugin's \
                                   remaining effects are lost"
                .into(),
            Failure::Start(e) => format!(
                "Kong logs `starting instance: {}` and raises an error: the client gets a 500",
                e.kong_log()
            ),
        }
    }
}

/// The state one event's PDK calls use and fill in.
pub struct Event<'a> {
    /// The request's PDK.
    pub pdk: &'a mut Pdk,
    /// Canned answers.
    pub canned: &'a mut Canned,
    /// Where calls are recorded.
    pub report: &'a mut PhaseReport,
}

/// Sends `plugin.HandleEvent`; returns the first StepData.
pub async fn handle_event(
    rpc: &mut Rpc,
    pool: &mut Pool,
    instance_id: &Json,
    phase: &str,
    report: &mut PhaseReport,
    shutdown: &CancellationToken,
) -> Result<Mp, Failure> {
    let arg = table(vec![
        ("InstanceId", lua_value(instance_id)),
        ("EventName", Mp::from(phase)),
    ]);
    let step_in = rpc
        .call(pool, "plugin.HandleEvent", arg, shutdown)
        .await
        .map_err(Failure::Call)?;
    if step_in.is_nil() {
        return Err(Failure::Silent(
            "HandleEvent returned neither an error nor a result".into(),
        ));
    }
    let event_id = field(&step_in, "EventId").cloned().unwrap_or(Mp::Nil);
    report.event_id = Some(value_json::to_json(&event_id));
    Ok(step_in)
}

impl Event<'_> {
    /// Answers PDK calls from `step_in` on until the event ends.
    pub async fn finish(
        &mut self,
        rpc: &mut Rpc,
        pool: &mut Pool,
        mut step_in: Mp,
        shutdown: &CancellationToken,
    ) -> Result<EventEnd, Failure> {
        // Kong keeps the EventId of the HandleEvent reply for every Step.
        let event_id = field(&step_in, "EventId").cloned().unwrap_or(Mp::Nil);
        loop {
            let data = field(&step_in, "Data").cloned().unwrap_or(Mp::Nil);
            if data.as_str() == Some("ret") {
                return Ok(EventEnd::Ret);
            }
            if self.report.calls.len() >= MAX_PDK_CALLS {
                return Err(Failure::Silent(format!(
                    "the server asked for more than {MAX_PDK_CALLS} PDK calls without ending \
                     the event; plugtap stopped there (Kong would go on)"
                )));
            }
            let Some(method) = field(&data, "Method")
                .and_then(Mp::as_str)
                .map(str::to_owned)
            else {
                return Err(Failure::Lua(format!(
                    "the server's StepData has Data {}, neither \"ret\" nor {{Method, Args}}",
                    value_json::to_json(&data)
                )));
            };
            let args = field(&data, "Args").map_or(Json::Null, value_json::to_json);
            let mut call = PdkCall {
                method: method.clone(),
                args: args.clone(),
                answer: None,
                source: None,
                step: None,
            };
            let (answer, source) = match self.pdk.call(self.canned, &method, &args) {
                Reply::Terminal => {
                    self.report.calls.push(call);
                    return Ok(EventEnd::Exit);
                }
                Reply::LuaError(e) => {
                    self.report.calls.push(call);
                    return Err(Failure::Lua(e));
                }
                Reply::Answer { answer, source } => (answer, source),
            };
            if source == Source::Unknown {
                tracing::warn!("could not find pdk method: {method}");
            }
            let step_method = step::step_method(&method, &answer);
            call.answer = Some(answer.to_json());
            call.source = Some(source);
            call.step = Some(step_method.clone());
            self.report.calls.push(call);
            let arg = table(vec![
                ("EventId", event_id.clone()),
                ("Data", data_of(&answer).unwrap_or(Mp::Nil)),
            ]);
            step_in = rpc
                .call(pool, &step_method, arg, shutdown)
                .await
                .map_err(Failure::Call)?;
            if step_in.is_nil() {
                return Err(Failure::Silent(format!(
                    "{step_method} returned neither an error nor a result"
                )));
            }
        }
    }
}

/// A report for a phase that has not run yet.
pub fn phase_report(phase: &str, status: PhaseStatus) -> PhaseReport {
    PhaseReport {
        phase: phase.to_owned(),
        status,
        instance_id: None,
        event_id: None,
        calls: vec![],
        resets: 0,
        error: None,
        kong: None,
    }
}

/// What Kong does when a call fails (not a reset error).
pub fn kong_reaction(e: &CallError) -> String {
    match e {
        CallError::Connect(_) => format!(
            "Kong logs `{}`; the instance cannot start and the client gets a 500",
            e.kong_log()
        ),
        CallError::Error(text) => {
            format!("Kong logs `{text}` and goes on without the plugin's remaining effects")
        }
        CallError::NoData(_) => "Kong logs `no data` (after 60 s if the server stays silent) \
                                 and goes on without the plugin's remaining effects"
            .into(),
        CallError::Garbage(_) | CallError::Assert(_) => format!(
            "Kong raises a Lua error ({}): the plugin handler aborts and the client gets a 500",
            e.kong_log()
        ),
        CallError::Interrupted => "interrupted".into(),
    }
}
