//! What Kong accepts from a pluginserver's query command (reference §4.2).
//!
//! Kong runs `pluginserver_<name>_query_cmd`, reads all of stdout and
//! decodes it as JSON: a list of plugin infos, or `{Protocol, SocketPath,
//! Plugins}`. Kong 3.9+ takes only the first info. The info's `Priority`
//! must be an integer and its `Version` must parse as at most three
//! dot-separated numbers, or Kong refuses to start. The messages below
//! are Kong's own wording, so a user can grep Kong's log for them.

use serde::Serialize;
use serde_json::Value as Json;

/// One reason Kong would reject the output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryProblem {
    /// Kong versions affected (`all`, `3.9+`, `<=3.8`).
    pub versions: &'static str,
    /// The error Kong logs.
    pub kong_error: String,
    /// What happens in production.
    pub consequence: String,
}

/// What the query output says and what Kong would think of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueryReport {
    /// `Protocol`, or Kong's default `MsgPack:1`.
    pub protocol: String,
    /// Plugin names in the order listed.
    pub plugins: Vec<String>,
    /// The info of the plugin asked about, if listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<Json>,
    /// Reasons Kong would fail.
    pub problems: Vec<QueryProblem>,
    /// Things worth knowing that do not fail.
    pub notes: Vec<String>,
}

/// How every fatal problem begins: Kong stops at start-up.
pub const REFUSES_TO_START: &str = "Kong refuses to start (init_by_lua error)";
const START: &str = REFUSES_TO_START;

/// Checks a query command's stdout for the plugin `plugin`.
pub fn check_output(cmd: &str, output: &str, plugin: &str) -> QueryReport {
    let mut r = QueryReport {
        protocol: "MsgPack:1".into(),
        ..Default::default()
    };
    let problem = |versions, kong_error: String, consequence: &str| QueryProblem {
        versions,
        kong_error,
        consequence: consequence.to_owned(),
    };
    let dump: Json = match serde_json::from_str(output) {
        Ok(v) => v,
        Err(e) => {
            r.problems.push(problem(
                "3.9+",
                format!("failed loading external plugins: failed decoding plugin info: {e}"),
                START,
            ));
            r.problems.push(problem(
                "<=3.8",
                format!("Not a plugin info table: \n{cmd}\n{output}"),
                START,
            ));
            return r;
        }
    };
    let list = match &dump {
        Json::Array(list) => list.clone(),
        Json::Object(obj) => {
            match obj.get("Protocol") {
                None => {}
                Some(Json::String(p)) if p == "MsgPack:1" || p == "ProtoBuf:1" => {
                    r.protocol = p.clone();
                }
                Some(other) => r.problems.push(problem(
                    "all",
                    format!("unknown Protocol {other}"),
                    "Kong speaks only MsgPack:1 and ProtoBuf:1 and cannot talk to this server",
                )),
            }
            if obj.contains_key("SocketPath") {
                r.notes.push(
                    "Kong ignores SocketPath: the socket is pluginserver_<name>_socket".into(),
                );
            }
            match obj.get("Plugins") {
                Some(Json::Array(list)) => list.clone(),
                _ => vec![],
            }
        }
        _ => {
            r.problems.push(problem(
                "all",
                format!("not a plugin info table: \n{cmd}\n{output}"),
                START,
            ));
            return r;
        }
    };
    r.plugins = list
        .iter()
        .map(|i| match i.get("Name") {
            Some(Json::String(n)) => n.clone(),
            Some(other) => other.to_string(),
            None => "<no Name>".into(),
        })
        .collect();
    let Some(first) = list.first() else {
        r.problems.push(problem(
            "3.9+",
            "attempt to index local 'info' (a nil value)".into(),
            &format!("{START}: the output lists no plugin"),
        ));
        r.problems.push(problem(
            "<=3.8",
            format!("{plugin} plugin is enabled but not installed;\nno plugin found"),
            START,
        ));
        return r;
    };
    let position = r.plugins.iter().position(|n| n == plugin);
    match position {
        None => {
            r.problems.push(problem(
                "all",
                format!(
                    "error loading plugin schemas: on plugin '{plugin}': {plugin} plugin is enabled but not installed;\nno plugin found"
                ),
                &format!("{START}: the output does not list {plugin:?}"),
            ));
            if first.is_object() {
                r.info = Some(first.clone());
            }
            return r;
        }
        Some(0) => {}
        Some(i) => r.problems.push(problem(
            "3.9+",
            format!(
                "error loading plugin schemas: on plugin '{plugin}': {plugin} plugin is enabled but not installed;\nno plugin found"
            ),
            &format!(
                "{START}: Kong 3.9+ registers only the first plugin a server lists \
                 ({:?}), and {plugin:?} is number {} (kong#14701); Kong <=3.8 registers all",
                r.plugins[0],
                i + 1
            ),
        )),
    }
    let info = &list[position.unwrap_or(0)];
    r.info = Some(info.clone());
    check_info(plugin, info, &mut r);
    r
}

fn check_info(plugin: &str, info: &Json, r: &mut QueryReport) {
    let cannot = |what: &str, v: Option<&Json>| {
        format!(
            "error loading plugin schemas: on plugin '{plugin}': Plugin \"{plugin}\" cannot be loaded because its {what}, got: \"{}\".",
            lua_tostring(v)
        )
    };
    if !info.is_object() {
        r.problems.push(QueryProblem {
            versions: "all",
            kong_error: format!("plugin info for {plugin} is {info}, not a table"),
            consequence: START.into(),
        });
        return;
    }
    let priority = info.get("Priority");
    if !priority.is_some_and(valid_priority) {
        r.problems.push(QueryProblem {
            versions: "all",
            kong_error: cannot("PRIORITY field is not a valid integer number", priority),
            consequence: START.into(),
        });
    }
    let version = info.get("Version");
    if !version.is_some_and(valid_version) {
        r.problems.push(QueryProblem {
            versions: "all",
            kong_error: cannot(
                "VERSION field does not follow the \"x.y.z\" format",
                version,
            ),
            consequence: format!(
                "{START}; the Python PDK's default `version = None` gives exactly this"
            ),
        });
    }
    if let Err(e) = check_schema(info.get("Schema")) {
        r.problems.push(QueryProblem {
            versions: "all",
            kong_error: format!("error loading plugin schemas: on plugin '{plugin}': {e}"),
            consequence: format!(
                "{START}: Kong expects Schema = {{name, fields: [{{config: {{type: \"record\", fields: [...]}}}}]}}"
            ),
        });
    }
    match info.get("Phases") {
        Some(Json::Array(phases)) => {
            if phases.is_empty() {
                r.notes
                    .push("Phases is empty: Kong never runs the plugin".into());
            }
            for p in phases {
                let known = p
                    .as_str()
                    .is_some_and(|s| crate::spec::kong::PHASES.contains(&s));
                if !known {
                    r.notes.push(format!(
                        "phase {p} is not one Kong runs external plugins in"
                    ));
                }
            }
        }
        other => r.problems.push(QueryProblem {
            versions: "all",
            kong_error: format!(
                "Phases is {}, not a list of phase names",
                lua_tostring(other)
            ),
            consequence: "Kong builds no phase handlers: the plugin never runs (or init fails)"
                .into(),
        }),
    }
}

fn check_schema(schema: Option<&Json>) -> Result<(), String> {
    let schema = schema.ok_or("the plugin info has no Schema")?;
    let name = schema.get("name");
    if name.is_none() {
        return Err("schema validation error (missing name)".into());
    }
    if !name.is_some_and(Json::is_string) {
        return Err("schema validation error (invalid name)".into());
    }
    let fields = schema
        .get("fields")
        .and_then(Json::as_array)
        .ok_or("schema validation error (fields: expected an array)")?;
    let config = fields
        .iter()
        .find_map(|f| f.get("config"))
        .ok_or("schema validation error (no `config` field)")?;
    if config.get("type").and_then(Json::as_str) != Some("record") {
        return Err("schema validation error (config: the type must be \"record\")".into());
    }
    match config.get("fields") {
        Some(Json::Array(list))
            if list
                .iter()
                .all(|f| f.as_object().is_some_and(|o| o.len() == 1)) =>
        {
            Ok(())
        }
        _ => Err(
            "schema validation error (config.fields: expected a list of {name: {type: ...}})"
                .into(),
        ),
    }
}

/// Kong's `validate_priority`: a finite integral number.
pub fn valid_priority(v: &Json) -> bool {
    match v {
        Json::Number(n) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

/// Kong's `validate_version`: a string whose first run of digits and dots
/// splits into at most three numbers (`1.0`, `0.1.0`, `v2.3.4-beta`).
pub fn valid_version(v: &Json) -> bool {
    let Json::String(s) = v else {
        return false;
    };
    let Some(start) = s.find(|c: char| c.is_ascii_digit()) else {
        return false;
    };
    let run: &str = s[start..]
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap_or("");
    let run = run.strip_suffix('.').unwrap_or(run);
    let parts: Vec<&str> = run.split('.').collect();
    parts.len() <= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.parse::<u64>().is_ok())
}

/// How Lua's `tostring` shows a decoded JSON value in Kong's messages.
fn lua_tostring(v: Option<&Json>) -> String {
    match v {
        None | Some(Json::Null) => "nil".into(),
        Some(Json::String(s)) => s.clone(),
        Some(Json::Bool(b)) => b.to_string(),
        Some(Json::Number(n)) => n.to_string(),
        Some(Json::Array(_) | Json::Object(_)) => "table: 0x…".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_like_kong() {
        for ok in ["0.1.0", "1.0", "1", "v1.2.3-beta", "1.2."] {
            assert!(valid_version(&json!(ok)), "{ok}");
        }
        for bad in ["1.0.0.0", "abc", "1..2", ""] {
            assert!(!valid_version(&json!(bad)), "{bad}");
        }
        assert!(!valid_version(&json!(123)));
        assert!(!valid_version(&Json::Null));
    }

    #[test]
    fn priorities_like_kong() {
        assert!(valid_priority(&json!(100)));
        assert!(valid_priority(&json!(-5)));
        assert!(valid_priority(&json!(10.0)));
        assert!(!valid_priority(&json!(10.5)));
        assert!(!valid_priority(&json!("10")));
    }
}
