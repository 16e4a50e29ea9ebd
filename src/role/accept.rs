//! The mock servers' accept loop: every connection served on its own
//! task until shutdown, then a bounded wait for them to finish.

use std::time::Duration;

use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::net::BoundSocket;

/// How long connections get to finish after shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Accepts connections on `bound` until `shutdown`, running what `serve`
/// makes of each on its own task; then waits up to [`DRAIN`] for them.
pub(crate) async fn accept_all<F>(
    bound: &BoundSocket,
    shutdown: &CancellationToken,
    mut serve: impl FnMut(UnixStream) -> F,
) where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = bound.listener().accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                tracker.spawn(serve(stream));
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
}
