//! Fetching schemas from a server's gRPC reflection service.
//!
//! Go plugins register `grpc.reflection.v1alpha.ServerReflection` (and
//! `v1` in recent grpc-go); grpcio-reflection serves both. plugtap asks for
//! the file that defines a service, then for any dependency it does not
//! know yet, on its own short-lived connection, and adds the files to the
//! [`Schemas`].

use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use prost_reflect::{DynamicMessage, Value};

use super::call::call;
use super::schema::{Schemas, decode_dynamic};
use crate::net::Address;

/// How long one lookup may take in all.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches the file defining `symbol` and its dependencies. Returns how
/// many files were added.
pub async fn fetch(addr: &Address, symbol: &str, schemas: &mut Schemas) -> Result<usize, String> {
    tokio::time::timeout(TIMEOUT, fetch_inner(addr, symbol, schemas))
        .await
        .map_err(|_| format!("reflection did not answer within {TIMEOUT:?}"))?
}

async fn fetch_inner(addr: &Address, symbol: &str, schemas: &mut Schemas) -> Result<usize, String> {
    let io = addr
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let mut send = super::grpc::client(io)
        .await
        .map_err(|e| format!("HTTP/2 with {addr}: {e}"))?;
    let mut last = String::new();
    for version in ["v1alpha", "v1"] {
        match files_for(
            &mut send,
            version,
            "file_containing_symbol",
            symbol,
            schemas,
        )
        .await
        {
            Ok(mut files) => {
                let mut rounds = 0;
                loop {
                    let missing = missing_deps(&files, schemas);
                    if missing.is_empty() || rounds > 16 {
                        break;
                    }
                    rounds += 1;
                    for name in missing {
                        let more =
                            files_for(&mut send, version, "file_by_filename", &name, schemas)
                                .await?;
                        files.extend(more);
                    }
                }
                let n = files.len();
                schemas
                    .add_file_descriptor_protos(files)
                    .map_err(|e| e.to_string())?;
                return Ok(n);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Dependencies named by `files` that neither they nor the pool hold.
fn missing_deps(files: &[Vec<u8>], schemas: &Schemas) -> Vec<String> {
    let decoded: Vec<prost_types::FileDescriptorProto> = files
        .iter()
        .filter_map(|b| prost_types::FileDescriptorProto::decode(b.as_slice()).ok())
        .collect();
    let mut missing = Vec::new();
    for fd in &decoded {
        for dep in &fd.dependency {
            let have = decoded.iter().any(|d| d.name() == dep) || schemas.has_file(dep);
            if !have && !missing.contains(dep) {
                missing.push(dep.clone());
            }
        }
    }
    missing
}

async fn files_for(
    send: &mut h2::client::SendRequest<Bytes>,
    version: &str,
    field: &str,
    value: &str,
    schemas: &Schemas,
) -> Result<Vec<Vec<u8>>, String> {
    let pkg = format!("grpc.reflection.{version}");
    let req_desc = schemas
        .message(&format!("{pkg}.ServerReflectionRequest"))
        .ok_or("built-in reflection schema missing")?;
    let resp_desc = schemas
        .message(&format!("{pkg}.ServerReflectionResponse"))
        .ok_or("built-in reflection schema missing")?;
    let mut req = DynamicMessage::new(req_desc);
    req.set_field_by_name(field, Value::String(value.to_owned()));
    let path = format!("/{pkg}.ServerReflection/ServerReflectionInfo");
    let out = call(
        send,
        &path,
        &[Bytes::from(req.encode_to_vec())],
        Some(1),
        TIMEOUT,
        64 << 20,
    )
    .await;
    let Some(first) = out.messages.first() else {
        return Err(format!(
            "{path}: {} {}",
            super::grpc::status_name(out.code()),
            out.message()
        ));
    };
    let resp = decode_dynamic(&resp_desc, first)?;
    if let Some(err) = resp
        .get_field_by_name("error_response")
        .filter(|_| resp.has_field_by_name("error_response"))
    {
        let msg = err
            .as_message()
            .and_then(|m| {
                m.get_field_by_name("error_message")
                    .and_then(|v| v.as_str().map(str::to_owned))
            })
            .unwrap_or_default();
        return Err(format!("reflection: {msg}"));
    }
    let files = resp
        .get_field_by_name("file_descriptor_response")
        .and_then(|v| {
            v.as_message().and_then(|m| {
                m.get_field_by_name("file_descriptor_proto").and_then(|l| {
                    l.as_list().map(|items| {
                        items
                            .iter()
                            .filter_map(|i| i.as_bytes().map(|b| b.to_vec()))
                            .collect::<Vec<_>>()
                    })
                })
            })
        })
        .unwrap_or_default();
    if files.is_empty() {
        return Err("reflection answered without file descriptors".into());
    }
    Ok(files)
}
