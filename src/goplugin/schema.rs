//! Schemas for decoding gRPC messages: a protobuf descriptor pool fed from
//! plugtap's built-in protos (go-plugin's services, health, reflection),
//! from `.proto` files (compiled in-process with protox, no `protoc`),
//! from descriptor sets, and from a plugin's server reflection.
//!
//! With a schema a message decodes to protobuf's canonical JSON; without
//! one, [`super::wire`] shows it by wire type.

use std::path::{Path, PathBuf};

use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor, SerializeOptions,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use serde_json::Value as Json;

const BUILTIN: &[(&str, &str)] = &[
    ("plugtap/plugin.proto", include_str!("protos/plugin.proto")),
    ("plugtap/health.proto", include_str!("protos/health.proto")),
    (
        "plugtap/reflection_v1alpha.proto",
        include_str!("protos/reflection_v1alpha.proto"),
    ),
    (
        "plugtap/reflection_v1.proto",
        include_str!("protos/reflection_v1.proto"),
    ),
];

/// A schema source that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(pub String);

/// Known message types and services.
#[derive(Debug, Clone)]
pub struct Schemas {
    pool: DescriptorPool,
}

struct Builtin;

impl FileResolver for Builtin {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => File::from_source(n, text),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

impl Default for Schemas {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Schemas {
    /// The built-in protos only.
    pub fn builtin() -> Schemas {
        let mut resolver = ChainFileResolver::new();
        resolver.add(Builtin);
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        for (name, _) in BUILTIN {
            compiler
                .open_file(name)
                .unwrap_or_else(|e| panic!("built-in proto {name} is invalid: {e:?}"));
        }
        Schemas {
            pool: compiler.descriptor_pool(),
        }
    }

    /// Adds `.proto` files; imports are looked up next to each file, in
    /// `includes`, and among Google's well-known types. Errors name
    /// `file:line:column`.
    pub fn add_proto_files(
        &mut self,
        files: &[PathBuf],
        includes: &[PathBuf],
    ) -> Result<(), SchemaError> {
        for file in files {
            if let Err(e) = std::fs::metadata(file) {
                return Err(SchemaError(format!("cannot read {}: {e}", file.display())));
            }
            let mut dirs: Vec<PathBuf> = includes.to_vec();
            let parent = file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            dirs.push(parent.to_owned());
            let set = protox::compile([file], &dirs).map_err(|e| {
                SchemaError(format!("{}: {e:?}", file.display()).replace(
                    &format!("{}: {}:", file.display(), file_name(file)),
                    &format!("{}:", file.display()),
                ))
            })?;
            self.pool
                .add_file_descriptor_set(set)
                .map_err(|e| SchemaError(format!("{}: {e}", file.display())))?;
        }
        Ok(())
    }

    /// Adds a serialized `FileDescriptorSet` (`protoc --descriptor_set_out`,
    /// `buf build -o`).
    pub fn add_descriptor_set(&mut self, path: &Path) -> Result<(), SchemaError> {
        let bytes = std::fs::read(path).map_err(|e| {
            SchemaError(format!(
                "cannot read descriptor set {}: {e}",
                path.display()
            ))
        })?;
        self.pool
            .decode_file_descriptor_set(bytes.as_slice())
            .map_err(|e| {
                SchemaError(format!(
                    "{}: not a usable descriptor set: {e}",
                    path.display()
                ))
            })
    }

    /// Adds serialized `FileDescriptorProto`s (from server reflection), in
    /// any order: dependencies are added first where they are present.
    pub fn add_file_descriptor_protos(&mut self, files: Vec<Vec<u8>>) -> Result<(), SchemaError> {
        let mut pending = Vec::new();
        for b in files {
            let fd = prost_types::FileDescriptorProto::decode(b.as_slice()).map_err(|e| {
                SchemaError(format!(
                    "reflection sent an undecodable file descriptor: {e}"
                ))
            })?;
            if self.pool.get_file_by_name(fd.name()).is_none() {
                pending.push(fd);
            }
        }
        // Add files whose dependencies are known, until nothing moves.
        while !pending.is_empty() {
            let before = pending.len();
            let mut rest = Vec::new();
            for fd in pending {
                let ready = fd
                    .dependency
                    .iter()
                    .all(|d| self.pool.get_file_by_name(d).is_some());
                if ready {
                    self.pool
                        .add_file_descriptor_proto(fd)
                        .map_err(|e| SchemaError(format!("reflection: {e}")))?;
                } else {
                    rest.push(fd);
                }
            }
            if rest.len() == before {
                let missing: Vec<String> = rest.iter().map(|f| f.name().to_owned()).collect();
                return Err(SchemaError(format!(
                    "reflection: missing dependencies for {}",
                    missing.join(", ")
                )));
            }
            pending = rest;
        }
        Ok(())
    }

    /// The method `service/method`, if known.
    pub fn method(&self, service: &str, method: &str) -> Option<MethodDescriptor> {
        self.pool
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)
    }

    /// True when the service is known.
    pub fn has_service(&self, service: &str) -> bool {
        self.pool.get_service_by_name(service).is_some()
    }

    /// True when a file of that name is known.
    pub fn has_file(&self, name: &str) -> bool {
        self.pool.get_file_by_name(name).is_some()
    }

    /// A message type by full name.
    pub fn message(&self, name: &str) -> Option<MessageDescriptor> {
        self.pool.get_message_by_name(name)
    }

    /// Service names, for messages.
    pub fn service_names(&self) -> Vec<String> {
        self.pool
            .services()
            .map(|s| s.full_name().to_owned())
            .collect()
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Decodes bytes as `desc` into canonical protobuf JSON.
pub fn decode_json(desc: &MessageDescriptor, bytes: &[u8]) -> Result<Json, String> {
    let msg = DynamicMessage::decode(desc.clone(), bytes).map_err(|e| e.to_string())?;
    to_json(&msg)
}

/// A dynamic message as canonical protobuf JSON.
pub fn to_json(msg: &DynamicMessage) -> Result<Json, String> {
    msg.serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .map_err(|e| e.to_string())
}

/// Encodes canonical protobuf JSON as `desc`.
pub fn encode_json(desc: &MessageDescriptor, json: &Json) -> Result<Vec<u8>, String> {
    let msg = DynamicMessage::deserialize(desc.clone(), json.clone())
        .map_err(|e| format!("not a valid {}: {e}", desc.full_name()))?;
    Ok(msg.encode_to_vec())
}

/// Decodes bytes as `desc` into a dynamic message.
pub fn decode_dynamic(desc: &MessageDescriptor, bytes: &[u8]) -> Result<DynamicMessage, String> {
    DynamicMessage::decode(desc.clone(), bytes).map_err(|e| e.to_string())
}
