//! The environment between a go-plugin host and its plugin.
//!
//! The host sets the magic cookie, `PLUGIN_MIN_PORT`/`PLUGIN_MAX_PORT`
//! (10000 and 25000 by default) and `PLUGIN_PROTOCOL_VERSIONS` on the
//! child, which also inherits the host's environment. The plugin checks the
//! cookie first, then picks the highest app version both sides have
//! (falling back to its lowest), and listens in `PLUGIN_UNIX_SOCKET_DIR`
//! or the temp dir on a socket named `plugin<digits>`.

use std::path::PathBuf;

/// Versions the host supports, comma-separated.
pub const PROTOCOL_VERSIONS: &str = "PLUGIN_PROTOCOL_VERSIONS";
/// Lowest TCP port (used by plugins on Windows only).
pub const MIN_PORT: &str = "PLUGIN_MIN_PORT";
/// Highest TCP port.
pub const MAX_PORT: &str = "PLUGIN_MAX_PORT";
/// Set when the host asks for gRPC broker multiplexing.
pub const MULTIPLEX_GRPC: &str = "PLUGIN_MULTIPLEX_GRPC";
/// The host's PEM certificate when AutoMTLS is on.
pub const CLIENT_CERT: &str = "PLUGIN_CLIENT_CERT";
/// Directory for the plugin's socket.
pub const UNIX_SOCKET_DIR: &str = "PLUGIN_UNIX_SOCKET_DIR";

/// What a Go plugin prints (stderr, exit 1) when the cookie is wrong.
pub const NOT_A_PLUGIN: &str = "This binary is a plugin. These are not meant to be executed directly.\nPlease execute the program that consumes these plugins, which will\nload any plugins automatically\n";

/// The host side of the handshake configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEnv {
    /// Magic cookie name (e.g. `BASIC_PLUGIN`).
    pub cookie_key: String,
    /// Magic cookie value (e.g. `hello`).
    pub cookie_value: String,
    /// App protocol versions the host supports.
    pub versions: Vec<i64>,
    /// Port range.
    pub min_port: u16,
    /// Port range.
    pub max_port: u16,
    /// Ask for gRPC broker multiplexing.
    pub multiplex: bool,
}

impl HostEnv {
    /// The variables the host adds to the child's environment.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut v = vec![
            (self.cookie_key.clone(), self.cookie_value.clone()),
            (MIN_PORT.into(), self.min_port.to_string()),
            (MAX_PORT.into(), self.max_port.to_string()),
            (
                PROTOCOL_VERSIONS.into(),
                self.versions
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ];
        if self.multiplex {
            v.push((MULTIPLEX_GRPC.into(), "true".into()));
        }
        v
    }
}

/// Picks the app version as a Go plugin does: the highest version both
/// sides list, else the plugin's lowest. Entries of the host's list that
/// are not integers are skipped with Go's warning text.
pub fn negotiate(plugin_versions: &[i64], host_list: Option<&str>) -> (i64, Vec<String>) {
    let mut warnings = Vec::new();
    let mut mine = plugin_versions.to_vec();
    mine.sort_unstable_by(|a, b| b.cmp(a));
    let mut theirs: Vec<i64> = Vec::new();
    for entry in host_list.unwrap_or("").split(',').filter(|s| !s.is_empty()) {
        match entry.parse::<i64>() {
            Ok(v) => theirs.push(v),
            Err(_) => warnings.push(format!(
                "server sent invalid plugin version {}",
                super::goparse::go_quote(entry)
            )),
        }
    }
    let chosen = mine
        .iter()
        .copied()
        .find(|v| theirs.contains(v))
        .or_else(|| mine.last().copied())
        .unwrap_or(1);
    (chosen, warnings)
}

/// Where a plugin puts its socket: `PLUGIN_UNIX_SOCKET_DIR`, else the temp
/// dir.
pub fn socket_dir() -> PathBuf {
    std::env::var_os(UNIX_SOCKET_DIR)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// A fresh `plugin<digits>` path in `dir` that does not exist yet.
pub fn socket_path(dir: &std::path::Path) -> PathBuf {
    use std::hash::{BuildHasher as _, RandomState};
    loop {
        let n = RandomState::new().hash_one(std::time::SystemTime::now()) % 1_000_000_000;
        let p = dir.join(format!("plugin{n}"));
        if !p.exists() {
            return p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_like_go() {
        assert_eq!(negotiate(&[1, 2, 3], Some("2,1")).0, 2);
        assert_eq!(negotiate(&[3, 2], Some("5,6")).0, 2);
        assert_eq!(negotiate(&[4], None).0, 4);
        let (v, w) = negotiate(&[1], Some("x,1"));
        assert_eq!(v, 1);
        assert_eq!(w, vec!["server sent invalid plugin version \"x\""]);
    }
}
