//! Plugin instances as Kong manages them (reference §4.5, `plugin.lua`
//! `get_instance_id`).
//!
//! Kong starts an instance with `StartInstance {Name, Config}` where
//! `Config` is the plugin configuration as **JSON text**, with Kong's own
//! keys added (`__plugin_id`, `__ws_id`, `__key__`, `__seq__`, and the
//! route, service and consumer ids when set). It caches the returned `Id`
//! per worker and reuses it while the config's `__seq__` (and, since 3.6,
//! `__plugin_id`) stay the same. When the config changes it starts a new
//! instance and then closes the old one, ignoring errors. An error
//! containing `no plugin instance` makes it forget the id ("reset").

use serde_json::{Map, Value as Json};

use crate::spec::kong::IdsSpec;

/// Kong's ids for one plugin entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The plugin entity's id.
    pub plugin_id: String,
    /// Workspace id.
    pub ws_id: String,
    /// Route the plugin is scoped to, if any.
    pub route_id: Option<String>,
    /// Service the plugin is scoped to, if any.
    pub service_id: Option<String>,
    /// Consumer the plugin is scoped to, if any.
    pub consumer_id: Option<String>,
    /// The entity's `instance_name`, if any.
    pub instance_name: Option<String>,
}

/// The default plugin entity id.
pub const DEFAULT_PLUGIN_ID: &str = "0b1f0e7a-5a3c-4c3e-9f3d-000000000001";
/// The default workspace id.
pub const DEFAULT_WS_ID: &str = "0dc6f45b-8f8d-40d2-a504-473544ee190b";

impl Identity {
    /// The ids a spec gives, with defaults for the required ones.
    pub fn from_spec(ids: &IdsSpec) -> Identity {
        Identity {
            plugin_id: ids
                .plugin_id
                .clone()
                .unwrap_or_else(|| DEFAULT_PLUGIN_ID.into()),
            ws_id: ids.ws_id.clone().unwrap_or_else(|| DEFAULT_WS_ID.into()),
            route_id: ids.route_id.clone(),
            service_id: ids.service_id.clone(),
            consumer_id: ids.consumer_id.clone(),
            instance_name: ids.instance_name.clone(),
        }
    }

    /// Kong's cache key for the entity:
    /// `plugins:<name>:<route>:<service>:<consumer>::<ws_id>`.
    pub fn cache_key(&self, plugin: &str) -> String {
        let id = |o: &Option<String>| o.clone().unwrap_or_default();
        format!(
            "plugins:{plugin}:{}:{}:{}::{}",
            id(&self.route_id),
            id(&self.service_id),
            id(&self.consumer_id),
            self.ws_id
        )
    }
}

/// The config JSON text Kong sends in `StartInstance`: the plugin's own
/// fields first, then Kong's keys. Like lua-cjson's default encoder, `/`
/// is escaped as `\/`.
pub fn config_text(plugin: &str, config: &Json, identity: &Identity, seq: u64) -> String {
    let mut out: Map<String, Json> = config.as_object().cloned().unwrap_or_default();
    let mut put = |k: &str, v: Json| {
        out.insert(k.to_owned(), v);
    };
    if let Some(r) = &identity.route_id {
        put("route_id", r.as_str().into());
    }
    if let Some(s) = &identity.service_id {
        put("service_id", s.as_str().into());
    }
    if let Some(c) = &identity.consumer_id {
        put("consumer_id", c.as_str().into());
    }
    if let Some(n) = &identity.instance_name {
        put("plugin_instance_name", n.as_str().into());
    }
    put("__plugin_id", identity.plugin_id.as_str().into());
    put("__ws_id", identity.ws_id.as_str().into());
    put("__key__", identity.cache_key(plugin).into());
    put("__seq__", seq.into());
    // `/` appears only inside JSON strings, so this is exactly cjson's escape.
    Json::Object(out).to_string().replace('/', "\\/")
}

/// What to do before an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Use this cached instance id.
    Reuse(Json),
    /// Send `StartInstance` with this config text; after it succeeds,
    /// close `replaces` if set.
    Start {
        /// The config JSON text.
        config: String,
        /// The instance started for an older config.
        replaces: Option<Json>,
    },
}

/// One worker's instance cache for one plugin.
#[derive(Debug, Clone)]
pub struct Instances {
    plugin: String,
    identity: Identity,
    config: Json,
    seq: u64,
    cached: Option<(Json, u64)>,
    stale: Option<Json>,
}

impl Instances {
    /// A cache with nothing started yet; the first config has `__seq__`
    /// `seq`.
    pub fn new(plugin: &str, config: Json, identity: Identity, seq: u64) -> Instances {
        Instances {
            plugin: plugin.to_owned(),
            identity,
            config,
            seq,
            cached: None,
            stale: None,
        }
    }

    /// The plugin name.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The ids.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The current config's `__seq__`.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The current config text.
    pub fn config_text(&self) -> String {
        config_text(&self.plugin, &self.config, &self.identity, self.seq)
    }

    /// What Kong does before its next event.
    pub fn plan(&self) -> Plan {
        match &self.cached {
            Some((id, seq)) if *seq == self.seq => Plan::Reuse(id.clone()),
            _ => Plan::Start {
                config: self.config_text(),
                replaces: self.stale.clone(),
            },
        }
    }

    /// Records a successful `StartInstance`. Returns the old instance to
    /// close, if the start replaced one.
    pub fn started(&mut self, id: Json) -> Option<Json> {
        self.cached = Some((id, self.seq));
        self.stale.take()
    }

    /// A new config (Kong rebuilt its plugins iterator): the next event
    /// starts a new instance, then closes the current one.
    pub fn change_config(&mut self, config: Json) {
        self.config = config;
        self.seq += 1;
        if let Some((id, _)) = self.cached.take() {
            self.stale = Some(id);
        }
    }

    /// Forgets every cached id (Kong's `reset_instance`).
    pub fn reset(&mut self) {
        self.cached = None;
        self.stale = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_text_has_kong_keys() {
        let id = Identity::from_spec(&IdsSpec {
            route_id: Some("r1".into()),
            ..Default::default()
        });
        let text = config_text(
            "my-plugin",
            &json!({"message": "Kong!", "url": "http://x/y"}),
            &id,
            7,
        );
        assert!(text.contains(r#""url":"http:\/\/x\/y""#), "{text}");
        let v: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(v["message"], "Kong!");
        assert_eq!(v["__seq__"], 7);
        assert_eq!(v["route_id"], "r1");
        assert_eq!(v["__plugin_id"], DEFAULT_PLUGIN_ID);
        assert_eq!(
            v["__key__"],
            format!("plugins:my-plugin:r1::::{DEFAULT_WS_ID}")
        );
        let global = Identity::from_spec(&IdsSpec::default());
        assert_eq!(
            global.cache_key("my-plugin"),
            format!("plugins:my-plugin:::::{DEFAULT_WS_ID}")
        );
        assert!(text.starts_with("{\"message\""));
    }

    #[test]
    fn lifecycle() {
        let mut i = Instances::new("p", json!({}), Identity::from_spec(&IdsSpec::default()), 1);
        assert!(matches!(i.plan(), Plan::Start { replaces: None, .. }));
        assert_eq!(i.started(json!(0)), None);
        assert_eq!(i.plan(), Plan::Reuse(json!(0)));
        i.change_config(json!({"a": 1}));
        match i.plan() {
            Plan::Start { config, replaces } => {
                assert!(config.contains("\"__seq__\":2"));
                assert_eq!(replaces, Some(json!(0)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(i.started(json!(1)), Some(json!(0)));
        assert_eq!(i.plan(), Plan::Reuse(json!(1)));
        i.reset();
        assert!(matches!(i.plan(), Plan::Start { replaces: None, .. }));
    }
}
