//! Byte-for-byte relaying for go-plugin connections plugtap cannot decode:
//! AutoMTLS (TLS it does not terminate), yamux multiplexing, and legacy
//! net/rpc. Nothing is changed; how many bytes went each way is logged
//! when the connection ends, and recorded (`open`, `close`, `error`
//! lines; no frames) with `--record`.

use std::sync::Arc;
use std::time::Instant;

use super::event::ConnLabel;
use super::recording::Recording;
use crate::net::Stream;

/// Relays `downstream` to `label.upstream` until both directions are closed.
pub async fn relay(label: Arc<ConnLabel>, mut downstream: Stream, rec: Option<Recording>) {
    let (name, upstream) = (&label.name, &label.upstream);
    if let Some(r) = &rec {
        r.conn_open(&label, Instant::now()).await;
    }
    let (bytes, error) = match upstream.connect().await {
        Err(e) => {
            let e = format!("cannot connect to {upstream}: {e}");
            tracing::error!("{name}: {e}");
            ([0, 0], Some(e))
        }
        Ok(mut up) => {
            tracing::info!("{name}: connected; relaying bytes unchanged to {upstream}");
            match tokio::io::copy_bidirectional(&mut downstream, &mut up).await {
                Ok((to_plugin, to_host)) => {
                    tracing::info!(
                        "{name}: closed after {to_plugin} bytes host→plugin and {to_host} bytes plugin→host (not decoded)"
                    );
                    ([to_plugin, to_host], None)
                }
                Err(e) => {
                    tracing::warn!("{name}: relay ended: {e}");
                    ([0, 0], Some(format!("relay ended: {e}")))
                }
            }
        }
    };
    if let Some(r) = &rec {
        r.conn_close(&label, bytes, error, Instant::now()).await;
    }
}
