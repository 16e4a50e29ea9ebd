//! The mock plugin's brokered servers: for each service id a spec lists
//! in `brokered`, a socket of its own serving the spec's services, and a
//! `ConnInfo` announcing it on `plugin.GRPCBroker/StartStream`, as a
//! plugin that offers callbacks does.

use std::path::Path;

use bytes::Bytes;

use super::wire::put_varint;
use crate::error::Result;
use crate::net::{Address, Listener};

/// The listeners and the announcements for them.
pub struct Brokered {
    /// One listener per service id.
    pub listeners: Vec<(u64, Listener)>,
    /// `ConnInfo{service_id, network, address}` payloads, in spec order.
    pub announce: Vec<Bytes>,
}

/// Opens a socket next to `main` for each id.
pub fn open(ids: &[u64], main: &Path) -> Result<Brokered> {
    let mut listeners = Vec::new();
    let mut announce = Vec::new();
    for id in ids {
        let name = format!(
            "{}-broker{id}",
            main.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "plugin".into())
        );
        let listener = Listener::unix(&main.with_file_name(name))?;
        announce.push(conn_info(*id, &listener.address()));
        listeners.push((*id, listener));
    }
    Ok(Brokered {
        listeners,
        announce,
    })
}

/// A `ConnInfo` message (fields 1 service_id, 2 network, 3 address).
pub fn conn_info(id: u64, address: &Address) -> Bytes {
    let mut out = vec![0x08];
    put_varint(&mut out, id);
    for (key, text) in [
        (0x12u8, address.network().to_owned()),
        (0x1a, address.addr_text()),
    ] {
        out.push(key);
        put_varint(&mut out, text.len() as u64);
        out.extend_from_slice(text.as_bytes());
    }
    Bytes::from(out)
}
