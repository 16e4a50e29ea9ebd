//! Reading spec text: lenient JSON, positions in errors, warnings for
//! unknown keys, and checks that need the whole spec.
//!
//! Parsing goes straight from text into typed structs through
//! `serde_json_lenient` (comments and trailing commas allowed), so syntax
//! errors *and* type errors ("unknown variant `sever`") carry the line and
//! column where they were found. `serde_ignored` reports every key the
//! structs do not consume.

use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value as Json;

use super::template;
use super::{
    ClientSpec, Cycle, Entry, Notification, ProxSpec, ProxySpec, Role, ServerSpec, Spec, StartCmd,
    Step,
};
use crate::protocol::Protocol;
use crate::value_json;

/// A spec that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// File name, or `<stdin>`.
    pub file: String,
    /// 1-based line and column, when the error has a position.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Loads a spec file.
pub fn load_file(path: &Path) -> Result<Spec, SpecError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| SpecError {
        file: source.clone(),
        position: None,
        message: format!("cannot read spec: {e}"),
    })?;
    load_str(&text, &source)
}

/// Loads a spec from a reader (standard input).
pub fn load_reader(mut reader: impl std::io::Read, source: &str) -> Result<Spec, SpecError> {
    let mut text = String::new();
    reader.read_to_string(&mut text).map_err(|e| SpecError {
        file: source.into(),
        position: None,
        message: format!("cannot read spec: {e}"),
    })?;
    load_str(&text, source)
}

/// Loads a spec from text; `source` names it in messages.
pub fn load_str(text: &str, source: &str) -> Result<Spec, SpecError> {
    let mut de = serde_json_lenient::Deserializer::from_str(text);
    let mut unknown = Vec::new();
    // serde_ignored writes `?` for an `Option` level; it means nothing to users.
    let raw: RawSpec = serde_ignored::deserialize(&mut de, |path| {
        unknown.push(path.to_string().replace(".?", ""))
    })
    .map_err(|e| positioned(source, &e))?;
    de.end().map_err(|e| positioned(source, &e))?;

    let mut spec = Spec {
        source: source.to_owned(),
        version: raw.version.unwrap_or(1),
        protocol: raw.protocol.unwrap_or_default(),
        socket: raw.socket,
        role: raw.role,
        server: ServerSpec {
            on_methods: raw.on_methods.unwrap_or_default(),
            on_connect: raw.on_connect.unwrap_or_default(),
            cycle: raw.cycle.unwrap_or_default(),
            seed: raw.seed.unwrap_or(0),
        },
        proxy: ProxySpec {
            upstream: raw.upstream,
            record: raw.record,
            redact: raw.redact.unwrap_or_default(),
            strict: raw.strict.unwrap_or_default(),
            keep_raw: raw.keep_raw.unwrap_or_default(),
            start_cmd: raw.start_cmd.clone(),
            mode: raw.mode.unwrap_or_default(),
        },
        client: ClientSpec {
            try_methods: raw.try_methods.unwrap_or_default(),
            start_cmd: raw.start_cmd,
            on_pdk: raw.on_pdk.unwrap_or_default(),
            kong: raw.kong,
            concurrent: raw.concurrent.unwrap_or_default(),
        },
        prox: raw.prox.unwrap_or_default(),
        warnings: unknown
            .into_iter()
            .map(|k| format!("unknown key `{k}` is ignored"))
            .collect(),
    };
    if spec.version != 1 {
        return Err(plain(
            source,
            format!("spec version {} is not supported (only 1)", spec.version),
        ));
    }
    check(&mut spec).map_err(|m| plain(source, m))?;
    Ok(spec)
}

/// Checks that need the whole spec: values map to the protocol, captures
/// are defined before use. Adds warnings for keys the role will not use.
fn check(spec: &mut Spec) -> Result<(), String> {
    let Spec { server, client, .. } = &*spec;
    let mut values: Vec<(String, &Json)> = Vec::new();
    for (method, entries) in &server.on_methods {
        for (i, e) in entries.iter().enumerate() {
            let at = format!("on_methods[{method:?}][{i}]");
            values.push((format!("{at}.error"), &e.error));
            values.push((format!("{at}.result"), &e.result));
            for (j, n) in e.notify.iter().enumerate() {
                values.push((format!("{at}.notify[{j}]"), &n.params));
            }
        }
    }
    for (i, n) in server.on_connect.iter().enumerate() {
        values.push((format!("on_connect[{i}]"), &n.params));
    }
    let mut defined: Vec<&str> = template::BUILTINS.to_vec();
    for (i, step) in client.try_methods.iter().enumerate() {
        values.push((format!("try_methods[{i}].params"), &step.params));
        let expected = step.expect.as_ref().and_then(|e| e.result.as_ref());
        let mut refs = template::references(&step.params);
        refs.extend(expected.map(template::references).unwrap_or_default());
        for name in refs {
            if !defined.contains(&name.as_str()) {
                return Err(format!(
                    "try_methods[{i}] ({}) uses ${{{name}}}, but no earlier step captures `{name}`",
                    step.method
                ));
            }
        }
        for (name, path) in &step.capture {
            template::parse_path(path)
                .map_err(|e| format!("try_methods[{i}].capture.{name}: {e}"))?;
            defined.push(name);
        }
    }
    for (at, value) in values {
        // `${...}` placeholders are strings, so they map fine before substitution.
        value_json::from_json(value).map_err(|e| format!("{at}: {}", e.reason_at()))?;
    }

    if let Some(k) = &client.kong {
        super::kong::validate(k)?;
        if !client.try_methods.is_empty() {
            return Err("a client spec has `try_methods` or `kong`, not both".into());
        }
    }

    let role = spec.role;
    let mut unused = Vec::new();
    if role == Some(Role::Client) {
        if !spec.server.on_methods.is_empty() {
            unused.push(("on_methods", Role::Server));
        }
        if !spec.server.on_connect.is_empty() {
            unused.push(("on_connect", Role::Server));
        }
    }
    if role == Some(Role::Server) {
        if !spec.client.try_methods.is_empty() {
            unused.push(("try_methods", Role::Client));
        }
        if spec.client.start_cmd.is_some() {
            unused.push(("start_cmd", Role::Client));
        }
        if spec.client.kong.is_some() {
            unused.push(("kong", Role::Client));
        }
        if !spec.client.on_pdk.is_empty() {
            unused.push(("on_pdk", Role::Client));
        }
    }
    let has_pdk = spec
        .server
        .on_methods
        .values()
        .flatten()
        .any(|e| !e.pdk.is_empty());
    if spec.protocol != Protocol::ProtoBuf1 && (has_pdk || !spec.client.on_pdk.is_empty()) {
        spec.warnings.push(format!(
            "`pdk` and `on_pdk` are only used with \"protocol\": \"{}\" (or --protocol)",
            Protocol::ProtoBuf1
        ));
    }
    if spec.protocol != Protocol::MsgPack1
        && spec.client.try_methods.iter().any(|s| s.conn.is_some())
    {
        spec.warnings.push(format!(
            "step `conn` labels are only used with \"protocol\": \"{}\"; all steps run on one connection",
            Protocol::MsgPack1
        ));
    }
    if spec.protocol != Protocol::Prox && spec.prox != ProxSpec::default() {
        spec.warnings.push(format!(
            "`prox` is only used with \"protocol\": \"{}\" (or --protocol)",
            Protocol::Prox
        ));
    }
    let proxy_keys = [
        ("upstream", spec.proxy.upstream.is_some()),
        ("record", spec.proxy.record.is_some()),
        ("redact", !spec.proxy.redact.is_empty()),
        ("strict", spec.proxy.strict),
        ("keep_raw", spec.proxy.keep_raw),
        ("mode", spec.proxy.mode != super::ProxyMode::Record),
    ];
    if matches!(role, Some(Role::Client | Role::Server)) {
        for (key, present) in proxy_keys {
            if present {
                unused.push((key, Role::Proxy));
            }
        }
    }
    if role == Some(Role::Proxy) {
        if !spec.server.on_methods.is_empty() && spec.proxy.mode == super::ProxyMode::Record {
            unused.push(("on_methods", Role::Server));
        }
        if !spec.client.try_methods.is_empty() {
            unused.push(("try_methods", Role::Client));
        }
    }
    for (key, used_by) in unused {
        spec.warnings.push(format!(
            "`{key}` is only used by the {} role and is ignored here",
            used_by.name()
        ));
    }
    Ok(())
}

impl value_json::MappingError {
    fn reason_at(&self) -> String {
        if self.path == "$" {
            self.reason.clone()
        } else {
            format!("{}: {}", self.path.trim_start_matches('$'), self.reason)
        }
    }
}

fn positioned(source: &str, e: &serde_json_lenient::Error) -> SpecError {
    let (line, col) = (e.line(), e.column());
    let text = e.to_string();
    let suffix = format!(" at line {line} column {col}");
    let message = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    SpecError {
        file: source.to_owned(),
        position: (line > 0).then_some((line, col)),
        message,
    }
}

fn plain(source: &str, message: String) -> SpecError {
    SpecError {
        file: source.to_owned(),
        position: None,
        message,
    }
}

// ---- the raw, serde-facing shapes ----------------------------------------

#[derive(Deserialize)]
struct RawSpec {
    version: Option<u32>,
    protocol: Option<Protocol>,
    socket: Option<PathBuf>,
    role: Option<Role>,
    on_methods: Option<IndexMap<String, Vec<Entry>>>,
    on_connect: Option<Vec<Notification>>,
    cycle: Option<Cycle>,
    seed: Option<u64>,
    try_methods: Option<Vec<Step>>,
    start_cmd: Option<StartCmd>,
    on_pdk: Option<IndexMap<String, Vec<Entry>>>,
    upstream: Option<PathBuf>,
    record: Option<PathBuf>,
    redact: Option<Vec<String>>,
    strict: Option<bool>,
    keep_raw: Option<bool>,
    mode: Option<super::ProxyMode>,
    kong: Option<super::kong::KongSpec>,
    concurrent: Option<bool>,
    prox: Option<ProxSpec>,
}
