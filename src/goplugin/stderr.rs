//! The plugin's stderr while the wrapper records: copied to plugtap's
//! stderr line by line, byte for byte (hosts parse it as hclog JSON), and
//! each line handed on for the recording.
//!
//! Without `--record` the plugin inherits plugtap's stderr and nothing
//! here runs. Whole lines are written in one call each, so they do not
//! interleave with plugtap's own log lines.

use std::time::Instant;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::ChildStderr;
use tokio::sync::mpsc;

use super::recording::Recording;

/// One stderr line (with its newline, if it had one) and when it arrived.
pub type StderrLine = (Vec<u8>, Instant);

/// Copies `from` to plugtap's stderr until end of file, sending each line
/// to `lines`.
pub async fn relay(from: ChildStderr, lines: mpsc::UnboundedSender<StderrLine>) {
    let mut from = BufReader::new(from);
    let mut out = tokio::io::stderr();
    loop {
        let mut line = Vec::new();
        match from.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let at = Instant::now();
                let _ = out.write_all(&line).await;
                let _ = out.flush().await;
                let _ = lines.send((line, at));
            }
        }
    }
}

/// Records the lines `relay` sends until it stops.
pub async fn record(mut lines: mpsc::UnboundedReceiver<StderrLine>, rec: Recording) {
    while let Some((line, at)) = lines.recv().await {
        rec.stderr(&line, at).await;
    }
}
