//! The go-plugin handshake line: what a plugin prints on stdout, and how a
//! go-plugin host judges it.
//!
//! ```text
//! CORE-VERSION | APP-VERSION | NETWORK | ADDRESS | PROTOCOL [| SERVER-CERT [| MUX]]
//! 1|3|unix|/tmp/plugin123|grpc|
//! ```
//!
//! [`Fields`] keeps the fields exactly as written, so the wrapper can
//! rewrite the address and leave everything else alone. [`HostRules::judge`]
//! applies the host's checks in the host's order and fails with the host's
//! own error texts ([`HandshakeError`]), so a plugin author sees here what
//! Terraform, Vault or Nomad would say.

use std::fmt;

use base64::Engine as _;

use super::goparse::{go_atoi, go_parse_bool, go_quote};
use crate::net::Address;

/// The only core protocol version go-plugin has.
pub const CORE_PROTOCOL_VERSION: i64 = 1;

/// A handshake line split on every `|`, after trimming whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// The trimmed line.
    pub line: String,
    /// Its fields, as written.
    pub parts: Vec<String>,
}

impl Fields {
    /// Splits a line the way the host does.
    pub fn split(line: &str) -> Fields {
        let line = line.trim().to_owned();
        let parts = line.split('|').map(str::to_owned).collect();
        Fields { line, parts }
    }

    /// Field `i` (0-based), if present.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.parts.get(i).map(String::as_str)
    }

    /// The same line with fields 3 and 4 (network and address) replaced;
    /// every other field is kept byte for byte.
    pub fn with_address(&self, address: &Address) -> String {
        let mut parts = self.parts.clone();
        if parts.len() >= 4 {
            parts[2] = address.network().to_owned();
            parts[3] = address.addr_text();
        }
        parts.join("|")
    }

    /// The server certificate field, when the host would use it (longer
    /// than 50 characters: AutoMTLS is on).
    pub fn server_cert(&self) -> Option<&str> {
        self.get(5).filter(|c| c.len() > 50)
    }

    /// The protocol field, `netrpc` when it is missing (as the host assumes).
    pub fn protocol(&self) -> &str {
        self.get(4).unwrap_or("netrpc")
    }

    /// The multiplexing field, when present.
    pub fn mux(&self) -> Option<&str> {
        self.get(6)
    }
}

/// Writes a handshake line as a Go plugin does (with the always-present
/// certificate field, empty without AutoMTLS). No newline.
pub fn format_line(app_version: i64, address: &Address, protocol: &str, mux: bool) -> String {
    let mut line = format!(
        "{CORE_PROTOCOL_VERSION}|{app_version}|{}|{}|{protocol}|",
        address.network(),
        address.addr_text()
    );
    if mux {
        line.push_str("|true");
    }
    line
}

/// What a host accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRules {
    /// Supported app protocol versions, in the order error texts list them.
    pub versions: Vec<i64>,
    /// Allowed protocols (`grpc`, `netrpc`).
    pub allowed_protocols: Vec<String>,
    /// The host asks for gRPC broker multiplexing.
    pub multiplex: bool,
}

impl Default for HostRules {
    fn default() -> Self {
        HostRules {
            versions: vec![1],
            allowed_protocols: vec!["grpc".into()],
            multiplex: false,
        }
    }
}

/// A handshake the host accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The negotiated app protocol version.
    pub app_version: i64,
    /// Where to connect.
    pub address: Address,
    /// `grpc` or `netrpc`.
    pub protocol: String,
    /// The plugin's DER certificate (AutoMTLS), base64 without padding.
    pub server_cert: Option<String>,
}

/// How the host reacts to a bad or missing handshake. `Display` gives the
/// host's text exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// No line within the start timeout.
    #[error("timeout while waiting for plugin to start")]
    Timeout,
    /// The process ended before a line arrived.
    #[error("plugin exited before we could connect")]
    Exited,
    /// Fewer than 4 fields (also an empty line or end of output).
    #[error("{}", unrecognized(.line, *.no_lines, .notes))]
    Unrecognized {
        /// The trimmed line.
        line: String,
        /// stdout closed without any line.
        no_lines: bool,
        /// The host's diagnosis (see `diagnose`).
        notes: String,
    },
    /// Field 1 is not an integer.
    #[error("error parsing core protocol version: {0}")]
    CoreParse(String),
    /// Field 1 is not 1.
    #[error(
        "incompatible core API version with plugin. Plugin version: {0}, Core version: {CORE_PROTOCOL_VERSION}\n\nTo fix this, the plugin usually only needs to be recompiled.\nPlease report this to the plugin author"
    )]
    CoreIncompatible(String),
    /// Field 2 is not an integer.
    #[error("Error parsing protocol version {}: {err}", go_quote(.field))]
    VersionParse {
        /// The field.
        field: String,
        /// Go's strconv error.
        err: String,
    },
    /// Field 2 is not one of the host's versions.
    #[error("incompatible API version with plugin. Plugin version: {plugin}, Client versions: [{}]", join(.client))]
    VersionIncompatible {
        /// The plugin's version.
        plugin: i64,
        /// The host's versions.
        client: Vec<i64>,
    },
    /// Field 3 is neither `tcp` nor `unix`; Go prints the address here.
    #[error("unknown address type: {0}")]
    UnknownAddressType(String),
    /// Field 4 cannot be resolved.
    #[error("{0}")]
    Resolve(String),
    /// Field 5 is not an allowed protocol.
    #[error("unsupported plugin protocol {}. Supported: [{}]", go_quote(.protocol), .allowed.join(" "))]
    UnsupportedProtocol {
        /// The protocol (`netrpc` when missing).
        protocol: String,
        /// What the host allows.
        allowed: Vec<String>,
    },
    /// Field 6 is long enough to be a certificate but is not one.
    #[error("error parsing server cert: {0}")]
    ServerCert(String),
    /// Multiplexing asked for, field 7 missing.
    #[error(
        "client requested gRPC broker multiplexing but plugin does not support the feature; for Go plugins, you will need to update the github.com/hashicorp/go-plugin dependency and recompile"
    )]
    MuxMissing,
    /// Multiplexing asked for, field 7 not a boolean.
    #[error("error parsing {} as a boolean for gRPC broker multiplexing support", go_quote(.0))]
    MuxNotBool(String),
    /// Multiplexing asked for, field 7 false.
    #[error("client requested gRPC broker multiplexing but plugin does not support the feature")]
    MuxFalse,
}

fn unrecognized(line: &str, no_lines: bool, notes: &str) -> String {
    let mut s = format!("Unrecognized remote plugin message: {line}");
    if no_lines {
        s.push_str("\nFailed to read any lines from plugin's stdout");
    }
    if !notes.is_empty() {
        s.push('\n');
        s.push_str(notes);
    }
    s
}

fn join(v: &[i64]) -> String {
    v.iter().map(i64::to_string).collect::<Vec<_>>().join(" ")
}

impl HostRules {
    /// Judges the first stdout line (`None`: stdout closed without one) in
    /// the host's order: field count, core version, app version, network,
    /// protocol, certificate, multiplexing. `notes` supplies the host's
    /// diagnosis for unrecognized lines.
    pub fn judge(
        &self,
        line: Option<&str>,
        notes: impl FnOnce() -> String,
    ) -> Result<Accepted, HandshakeError> {
        let fields = Fields::split(line.unwrap_or(""));
        if fields.parts.len() < 4 {
            return Err(HandshakeError::Unrecognized {
                line: fields.line,
                no_lines: line.is_none(),
                notes: notes(),
            });
        }
        let p = &fields.parts;
        let core = go_atoi(&p[0]).map_err(HandshakeError::CoreParse)?;
        if core != CORE_PROTOCOL_VERSION {
            return Err(HandshakeError::CoreIncompatible(p[0].clone()));
        }
        let app_version = go_atoi(&p[1]).map_err(|err| HandshakeError::VersionParse {
            field: p[1].clone(),
            err,
        })?;
        if !self.versions.contains(&app_version) {
            return Err(HandshakeError::VersionIncompatible {
                plugin: app_version,
                client: self.versions.clone(),
            });
        }
        let address = match p[2].as_str() {
            "tcp" => Address::Tcp(resolve_tcp(&p[3])?),
            "unix" => Address::Unix(p[3].clone().into()),
            _ => return Err(HandshakeError::UnknownAddressType(p[3].clone())),
        };
        let protocol = fields.protocol().to_owned();
        if !self.allowed_protocols.contains(&protocol) {
            return Err(HandshakeError::UnsupportedProtocol {
                protocol,
                allowed: self.allowed_protocols.clone(),
            });
        }
        let server_cert = match fields.server_cert() {
            Some(cert) => {
                check_cert(cert).map_err(HandshakeError::ServerCert)?;
                Some(cert.to_owned())
            }
            None => None,
        };
        if self.multiplex && protocol == "grpc" {
            let Some(mux) = fields.mux() else {
                return Err(HandshakeError::MuxMissing);
            };
            match go_parse_bool(mux) {
                None => return Err(HandshakeError::MuxNotBool(mux.to_owned())),
                Some(false) => return Err(HandshakeError::MuxFalse),
                Some(true) => {}
            }
        }
        Ok(Accepted {
            app_version,
            address,
            protocol,
            server_cert,
        })
    }
}

/// The checks Go's TCP resolver makes before any lookup.
fn resolve_tcp(addr: &str) -> Result<String, HandshakeError> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(HandshakeError::Resolve(format!(
            "address {addr}: missing port in address"
        )));
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if !host.starts_with('[') && bare.contains(':') {
        return Err(HandshakeError::Resolve(format!(
            "address {addr}: too many colons in address"
        )));
    }
    if port.parse::<u16>().is_err() {
        return Err(HandshakeError::Resolve(format!(
            "lookup tcp/{port}: unknown port"
        )));
    }
    Ok(addr.to_owned())
}

/// Checks a certificate field: base64 without padding, then a DER
/// SEQUENCE (plugtap does not parse X.509 further).
fn check_cert(cert: &str) -> Result<(), String> {
    let der = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(cert)
        .map_err(|e| match e {
            base64::DecodeError::InvalidByte(at, _)
            | base64::DecodeError::InvalidLastSymbol { offset: at, .. } => {
                format!("illegal base64 data at input byte {at}")
            }
            other => other.to_string(),
        })?;
    if der.first() != Some(&0x30) {
        return Err("x509: malformed certificate".into());
    }
    Ok(())
}

impl fmt::Display for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}
