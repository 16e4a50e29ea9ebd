//! go-plugin: the stand-in host, the mock plugin and the wrapper, end to
//! end with the built binary, against a real gRPC implementation written by
//! others (PyPI grpcio, grpcio-health-checking, grpcio-reflection, in
//! tests/peers/goplugin/kv_plugin.py); plus the handshake rules and the
//! decoders through the public API.

mod decode;
mod export;
mod handshake;
mod host;
mod observe;
mod proxy;
mod record;
mod schema;

use std::path::{Path, PathBuf};

use crate::support;

/// The Python with grpcio (see scripts/setup-goplugin-peer.sh).
pub fn python() -> PathBuf {
    let exe = support::root().join(".venv-goplugin/bin/python");
    assert!(
        exe.exists(),
        "the go-plugin peer is not installed: run scripts/setup-goplugin-peer.sh (scripts/test.sh does)"
    );
    exe
}

/// The command line starting the Python KV plugin.
pub fn kv_plugin_cmd() -> String {
    format!(
        "{} {}",
        python().display(),
        support::root()
            .join("tests/peers/goplugin/kv_plugin.py")
            .display()
    )
}

/// The command line starting `plugtap proxy --protocol go-plugin -- CMD`.
pub fn wrapped(cmd: &str, extra: &str) -> String {
    format!(
        "{} proxy --protocol go-plugin {extra} -- {cmd}",
        support::bin().display()
    )
}

/// Writes a go-plugin client spec into `dir` and returns its path.
pub fn client_spec(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}
