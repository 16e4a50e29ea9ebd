//! The JSON lines on a prox plugin's stdin (prox -> plugin) and stdout
//! (plugin -> prox).
//!
//! ```text
//! prox -> plugin  {"method":"configure","params":{"route_id":"web:0","match":{"domain":"a.example"}}}
//! plugin -> prox  {"result":"ok"}                                  (acknowledgement; prox ignores it)
//! plugin -> prox  {"method":"ready","params":{"socket":"/tmp/prox-p-42.sock","hooks":["on_request"]}}
//! plugin -> prox  {"method":"set_targets","params":{"route_id":"*","targets":["10.0.0.1:80"]}}
//! plugin -> prox  {"method":"log","params":{"level":"info","message":"hi","args":["k","v"]}}
//! ```
//!
//! Each line becomes a [`MessageView`]: `configure`, `ready` and pushes are
//! notifications named by their method, acknowledgements are responses,
//! and lines prox cannot use are malformed, with a `problem` saying what
//! prox does about them (skips them, logs them, or stops reading: a line
//! over 64 KiB stops prox's reader for good).

use serde_json::{Map, Value as Json, json};

use super::Hook;
use crate::codec::{Line, hex};
use crate::message::{Direction, Kind, MessageView};

/// What a line says.
#[derive(Debug, Clone, PartialEq)]
pub enum StdioMessage {
    /// prox -> plugin: a route bound to the plugin.
    Configure {
        /// The route id (`""` for an autostarted plugin without routes).
        route_id: String,
        /// The whole params object.
        params: Json,
    },
    /// plugin -> prox: the socket to call and the hooks to call there.
    Ready { socket: String, hooks: Vec<String> },
    /// plugin -> prox: `set_targets`, `set_speed`, `log` or another method.
    Push { method: String, params: Json },
    /// plugin -> prox: `{"result": ...}` or `{"error": ...}`.
    Ack,
    /// Nothing prox acts on (an empty line, an object without a method, a
    /// method the reader does not know); the view says which.
    Ignored,
    /// A line prox cannot read (not a JSON object, or fields of the wrong
    /// type); the view says why.
    Invalid,
}

/// Gives meaning to one line travelling `dir` (`ToServer`: prox -> plugin
/// on stdin; `ToClient`: plugin -> prox on stdout).
pub fn decode(dir: Direction, line: &Line) -> (MessageView, StdioMessage) {
    let (mut view, msg) = decode_text(dir, line.text());
    if line.over_prox_limit() {
        let size = line.text().len();
        let reader = match dir {
            Direction::ToClient => {
                "prox's reader stops for good (no more pushes are read until the plugin exits)"
            }
            Direction::ToServer => "the SDK's reader stops for good",
        };
        add_problem(
            &mut view,
            format!("a line of {size} bytes does not fit prox's 64 KiB line buffer: {reader}"),
        );
    }
    (view, msg)
}

fn decode_text(dir: Direction, text: &[u8]) -> (MessageView, StdioMessage) {
    if text.is_empty() {
        let view = view(
            Kind::Notification,
            None,
            json!(""),
            Some("an empty line; skipped"),
        );
        return (view, StdioMessage::Ignored);
    }
    let json: Json = match serde_json::from_slice(text) {
        Ok(j) => j,
        Err(e) => {
            let shown = match std::str::from_utf8(text) {
                Ok(s) => json!({"text": s}),
                Err(_) => json!({"hex": hex(text)}),
            };
            let problem = format!("not JSON ({e}); {} logs it and skips it", reader(dir));
            return (
                view(Kind::Malformed, None, shown, Some(&problem)),
                StdioMessage::Invalid,
            );
        }
    };
    let Some(obj) = json.as_object() else {
        let problem = format!("not a JSON object; {} skips it", reader(dir));
        return (
            view(Kind::Malformed, None, json, Some(&problem)),
            StdioMessage::Invalid,
        );
    };
    let method = match obj.get("method") {
        None | Some(Json::Null) => None,
        Some(Json::String(m)) => Some(m.clone()),
        Some(_) => {
            let problem = format!("`method` is not a string; {} skips the line", reader(dir));
            return (
                view(Kind::Malformed, None, json.clone(), Some(&problem)),
                StdioMessage::Invalid,
            );
        }
    };
    let params = obj.get("params").cloned().unwrap_or(Json::Null);
    match (dir, method) {
        (Direction::ToClient, None) if obj.contains_key("result") || obj.contains_key("error") => (
            view(Kind::Response, None, json.clone(), None),
            StdioMessage::Ack,
        ),
        (_, None) => {
            let problem = format!("no `method`; {} ignores the line", reader(dir));
            (
                view(Kind::Notification, None, json.clone(), Some(&problem)),
                StdioMessage::Ignored,
            )
        }
        (Direction::ToServer, Some(m)) => from_prox(&m, params, json.clone()),
        (Direction::ToClient, Some(m)) => from_plugin(&m, params, json.clone()),
    }
}

fn from_prox(method: &str, params: Json, json: Json) -> (MessageView, StdioMessage) {
    if method != "configure" {
        let problem =
            format!("prox sends only `configure`; the SDK logs `unknown method: {method}`");
        return (
            view(Kind::Notification, Some(method), json, Some(&problem)),
            StdioMessage::Ignored,
        );
    }
    let mut errors = Vec::new();
    let p = object(&params, "params", &mut errors);
    let route_id = string(&p, "route_id", &mut errors).unwrap_or_default();
    let matcher = object(p.get("match").unwrap_or(&Json::Null), "match", &mut errors);
    string(&matcher, "domain", &mut errors);
    string(&matcher, "path", &mut errors);
    if !errors.is_empty() {
        let problem = format!("the SDK cannot read it: {}", errors.join("; "));
        return (
            view(Kind::Malformed, Some(method), json, Some(&problem)),
            StdioMessage::Invalid,
        );
    }
    (
        view(Kind::Notification, Some(method), json, None),
        StdioMessage::Configure { route_id, params },
    )
}

fn from_plugin(method: &str, params: Json, json: Json) -> (MessageView, StdioMessage) {
    let mut errors = Vec::new();
    let p = object(&params, "params", &mut errors);
    // prox reads every push into one flat struct: a field of the wrong
    // type fails the whole line, whatever the method.
    let socket = string(&p, "socket", &mut errors).unwrap_or_default();
    let hooks = strings(&p, "hooks", &mut errors);
    for key in ["route_id", "action", "group_key", "level", "message"] {
        string(&p, key, &mut errors);
    }
    strings(&p, "targets", &mut errors);
    for key in ["download_mbps", "upload_mbps"] {
        if p.get(key).is_some_and(|v| !v.is_number() && !v.is_null()) {
            errors.push(format!("`{key}` is not a number"));
        }
    }
    if let Some(groups) = p.get("groups").filter(|g| !g.is_null()) {
        let ok = groups.as_object().is_some_and(|g| {
            g.values()
                .all(|v| v.is_null() || v.as_array().is_some_and(|a| a.iter().all(Json::is_string)))
        });
        if !ok {
            errors.push("`groups` is not a map of string lists".into());
        }
    }
    if !errors.is_empty() {
        let problem = format!(
            "prox cannot read it (it logs `plugin sent invalid JSON` and skips it): {}",
            errors.join("; ")
        );
        return (
            view(Kind::Malformed, Some(method), json, Some(&problem)),
            StdioMessage::Invalid,
        );
    }
    let mut notes = Vec::new();
    let msg = match method {
        "ready" => {
            if socket.is_empty() {
                notes.push(
                    "no socket: prox logs `plugin ready without socket` and ignores it".into(),
                );
            }
            for h in &hooks {
                if Hook::named(h).is_none() {
                    notes.push(format!(
                        "`{h}` is not a hook prox calls ({})",
                        Hook::names()
                    ));
                }
            }
            if hooks.is_empty() {
                notes.push("no hooks: prox will call none".into());
            }
            StdioMessage::Ready { socket, hooks }
        }
        "set_targets" | "set_speed" => {
            let has = |k: &str| {
                p.get(k)
                    .and_then(Json::as_str)
                    .is_some_and(|s| !s.is_empty())
            };
            if !has("route_id") && !has("action") {
                notes.push(
                    "neither `route_id` nor `action`: prox logs `plugin targets matched no routes`"
                        .into(),
                );
            }
            push(method, params)
        }
        "log" => {
            let level = p.get("level").and_then(Json::as_str).unwrap_or("");
            if !matches!(level, "debug" | "info" | "warn" | "error") {
                notes.push(format!(
                    "level `{level}` is not debug, info, warn or error: prox logs it at info"
                ));
            }
            push(method, params)
        }
        other => {
            notes.push(format!(
                "prox logs `plugin unknown push method` ({other}) and ignores it"
            ));
            push(method, params)
        }
    };
    let problem = (!notes.is_empty()).then(|| notes.join("; "));
    (
        view(Kind::Notification, Some(method), json, problem.as_deref()),
        msg,
    )
}

fn push(method: &str, params: Json) -> StdioMessage {
    StdioMessage::Push {
        method: method.to_owned(),
        params,
    }
}

fn reader(dir: Direction) -> &'static str {
    match dir {
        Direction::ToClient => "prox",
        Direction::ToServer => "the SDK",
    }
}

fn view(kind: Kind, method: Option<&str>, value: Json, problem: Option<&str>) -> MessageView {
    MessageView {
        kind,
        id: None,
        method: method.map(str::to_owned),
        problem: problem.map(str::to_owned),
        error: None,
        value,
    }
}

fn add_problem(view: &mut MessageView, problem: String) {
    view.problem = Some(match view.problem.take() {
        Some(p) => format!("{p}; {problem}"),
        None => problem,
    });
}

fn object(v: &Json, name: &str, errors: &mut Vec<String>) -> Map<String, Json> {
    match v {
        Json::Object(o) => o.clone(),
        Json::Null => Map::new(),
        _ => {
            errors.push(format!("`{name}` is not an object"));
            Map::new()
        }
    }
}

fn string(obj: &Map<String, Json>, key: &str, errors: &mut Vec<String>) -> Option<String> {
    match obj.get(key) {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(format!("`{key}` is not a string"));
            None
        }
    }
}

fn strings(obj: &Map<String, Json>, key: &str, errors: &mut Vec<String>) -> Vec<String> {
    match obj.get(key) {
        None | Some(Json::Null) => vec![],
        Some(Json::Array(items)) if items.iter().all(Json::is_string) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        Some(_) => {
            errors.push(format!("`{key}` is not a list of strings"));
            vec![]
        }
    }
}

/// A `configure` line as prox writes it.
pub fn configure_line(params: &Json) -> String {
    json!({"method": "configure", "params": params}).to_string()
}

/// A `ready` line as the SDK writes it.
pub fn ready_line(socket: &str, hooks: &[String]) -> String {
    json!({"method": "ready", "params": {"socket": socket, "hooks": hooks}}).to_string()
}

/// The SDK's acknowledgement of a `configure`.
pub const ACK_LINE: &str = r#"{"result":"ok"}"#;
