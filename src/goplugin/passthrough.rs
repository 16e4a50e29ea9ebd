//! Byte-for-byte relaying for go-plugin connections plugtap cannot decode:
//! AutoMTLS (TLS it does not terminate), yamux multiplexing, and legacy
//! net/rpc. Nothing is changed; how many bytes went each way is logged
//! when the connection ends.

use crate::net::{Address, Stream};

/// Relays `downstream` to `upstream` until both directions are closed.
pub async fn relay(name: String, mut downstream: Stream, upstream: Address) {
    let mut up = match upstream.connect().await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{name}: cannot connect to {upstream}: {e}");
            return;
        }
    };
    tracing::info!("{name}: connected; relaying bytes unchanged to {upstream}");
    match tokio::io::copy_bidirectional(&mut downstream, &mut up).await {
        Ok((to_plugin, to_host)) => tracing::info!(
            "{name}: closed after {to_plugin} bytes host→plugin and {to_host} bytes plugin→host (not decoded)"
        ),
        Err(e) => tracing::warn!("{name}: relay ended: {e}"),
    }
}
