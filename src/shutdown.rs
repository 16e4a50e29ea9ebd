//! SIGINT/SIGTERM turned into a [`CancellationToken`].
//!
//! Roles select their work against `token.cancelled()` and clean up on the
//! way out (sockets removed, children terminated, recordings flushed).

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Returns a token cancelled by the first SIGINT or SIGTERM. Must be called
/// inside a tokio runtime.
pub fn on_signals() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let fired = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        tracing::info!("{name} received, shutting down");
        fired.cancel();
    });
    Ok(token)
}
