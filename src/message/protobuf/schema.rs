//! The `ProtoBuf:1` schema: Kong's `pluginsocket.proto`, compiled at build
//! time (see `build.rs`) and embedded, and the table of PDK methods Kong
//! derives from its `service Kong`.
//!
//! Kong names each PDK method after its rpc: `Kong.Request_GetHeader`
//! becomes `kong.request.get_header` (underscores become dots, an
//! underscore goes wherever a lowercase letter, possibly followed by
//! digits, meets an uppercase one, then everything is lowercased). An rpc
//! with the `MethodName` option is named by the option instead
//! (`Ctx_SetShared` is `kong.ctx.shared.set`). These names are what the
//! server writes in its method-name frames.

use std::sync::LazyLock;

use indexmap::IndexMap;
use prost_reflect::{DescriptorPool, MessageDescriptor, Value};

use super::pdk::PdkMethod;

/// The descriptor set `build.rs` compiled from `proto/pluginsocket.proto`.
const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pluginsocket.bin"));

/// The proto package.
pub const PACKAGE: &str = "kong_plugin_protocol";

/// Everything plugtap knows about `ProtoBuf:1` messages.
#[derive(Debug)]
pub struct Schema {
    pool: DescriptorPool,
    rpc_call: MessageDescriptor,
    rpc_return: MessageDescriptor,
    methods: IndexMap<String, PdkMethod>,
}

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    // The bytes were produced by protox in build.rs from the file in this
    // repository, so they always describe a valid pool with these types.
    Schema::from_descriptor_set(DESCRIPTOR_SET)
        .unwrap_or_else(|e| panic!("the embedded ProtoBuf:1 schema is unusable: {e}"))
});

impl Schema {
    /// The embedded schema.
    pub fn get() -> &'static Schema {
        &SCHEMA
    }

    /// Builds a schema from an encoded `FileDescriptorSet` that contains
    /// Kong's `pluginsocket.proto`.
    pub fn from_descriptor_set(bytes: &[u8]) -> Result<Schema, String> {
        let pool = DescriptorPool::decode(bytes).map_err(|e| e.to_string())?;
        let message = |name: &str| {
            pool.get_message_by_name(&format!("{PACKAGE}.{name}"))
                .ok_or_else(|| format!("message {PACKAGE}.{name} is missing"))
        };
        let rpc_call = message("RpcCall")?;
        let rpc_return = message("RpcReturn")?;
        let service = pool
            .get_service_by_name(&format!("{PACKAGE}.Kong"))
            .ok_or_else(|| format!("service {PACKAGE}.Kong is missing"))?;
        let option = pool
            .get_extension_by_name(&format!("{PACKAGE}.MethodName"))
            .ok_or_else(|| format!("extension {PACKAGE}.MethodName is missing"))?;
        let mut methods = IndexMap::new();
        for method in service.methods() {
            let options = method.options();
            let name = match options.get_extension(&option).as_ref() {
                Value::String(s) if options.has_extension(&option) && !s.is_empty() => s.clone(),
                _ => kong_method_name(method.name()),
            };
            let pdk = PdkMethod {
                name: name.clone(),
                rpc: method.full_name().to_owned(),
                input: method.input(),
                output: method.output(),
            };
            if let Some(dup) = methods.insert(name.clone(), pdk) {
                return Err(format!(
                    "{} and {} are both named {name}",
                    dup.rpc,
                    method.name()
                ));
            }
        }
        Ok(Schema {
            pool,
            rpc_call,
            rpc_return,
            methods,
        })
    }

    /// The descriptor pool.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// `RpcCall`.
    pub fn rpc_call(&self) -> &MessageDescriptor {
        &self.rpc_call
    }

    /// `RpcReturn`.
    pub fn rpc_return(&self) -> &MessageDescriptor {
        &self.rpc_return
    }

    /// The PDK method a method-name frame names.
    pub fn method(&self, name: &str) -> Option<&PdkMethod> {
        self.methods.get(name)
    }

    /// Every PDK method, in the order of `service Kong`.
    pub fn methods(&self) -> impl Iterator<Item = &PdkMethod> {
        self.methods.values()
    }

    /// A message type of the package by its short name (`KV`) or any type
    /// of the pool by its full name (`google.protobuf.Value`).
    pub fn message(&self, name: &str) -> Option<MessageDescriptor> {
        self.pool
            .get_message_by_name(&format!("{PACKAGE}.{name}"))
            .or_else(|| self.pool.get_message_by_name(name))
    }
}

/// Kong's name for the rpc `rpc` of `service Kong` when it has no
/// `MethodName` option: `Request_GetHeader` -> `kong.request.get_header`.
pub fn kong_method_name(rpc: &str) -> String {
    let dotted = format!("Kong.{}", rpc.replace('_', "."));
    let chars: Vec<char> = dotted.chars().collect();
    let mut out = String::with_capacity(dotted.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            // Look back over digits for a lowercase letter.
            let before = chars[..i].iter().rev().find(|p| !p.is_ascii_digit());
            if before.is_some_and(char::is_ascii_lowercase) {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kong_names() {
        for (rpc, name) in [
            ("Request_GetHeader", "kong.request.get_header"),
            ("Nginx_GetTls1VersionStr", "kong.nginx.get_tls1_version_str"),
            (
                "Service_Request_SetRawBody",
                "kong.service.request.set_raw_body",
            ),
            ("Ip_IsTrusted", "kong.ip.is_trusted"),
            ("Log_Err", "kong.log.err"),
            ("A1B2Cd", "kong.a1b2cd"),
            ("Node_Get2Xy", "kong.node.get2_xy"),
        ] {
            assert_eq!(kong_method_name(rpc), name, "{rpc}");
        }
    }

    #[test]
    fn method_table_uses_the_option_and_the_types() {
        let s = Schema::get();
        let set = s.method("kong.ctx.shared.set").expect("MethodName option");
        assert_eq!(set.rpc, "kong_plugin_protocol.Kong.Ctx_SetShared");
        assert_eq!(set.input.full_name(), "kong_plugin_protocol.KV");
        assert_eq!(set.output.full_name(), "google.protobuf.Empty");
        assert!(s.method("kong.ctx.set_shared").is_none());
        let get = s.method("kong.request.get_header").unwrap();
        assert_eq!(get.input.full_name(), "kong_plugin_protocol.String");
        assert_eq!(s.methods().count(), 74);
    }
}
