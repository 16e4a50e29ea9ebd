//! The go-plugin wrapper's recording while it starts: the file is
//! created once the plugin's handshake says where it listens, so the
//! plugin's first stderr lines wait here until then; at the end, the
//! plugin's exit and the `end` line.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::proxy::WrapperOptions;
use super::recording::{Recording, WrapperRecording};
use super::stderr::{self, StderrLine};
use crate::error::Result;

/// The wrapper's recording, when there is one, and the plugin's stderr
/// lines waiting for it.
pub struct Rec {
    pub file: Option<WrapperRecording>,
    pub stderr: Option<mpsc::UnboundedReceiver<StderrLine>>,
    pub relay: Option<tokio::task::JoinHandle<()>>,
    pub drain: Option<tokio::task::JoinHandle<()>>,
}

impl Rec {
    /// Starts the recording (with `--record`), once the addresses are known.
    pub async fn open(
        &mut self,
        opts: &WrapperOptions,
        listen: &str,
        upstream: &str,
        start: Instant,
        pid: u32,
        spawned: Instant,
    ) -> Result<()> {
        let Some(path) = &opts.record else {
            return Ok(());
        };
        let file = WrapperRecording::create(
            path,
            listen.to_owned(),
            upstream.to_owned(),
            opts.redact.clone(),
            opts.command.join(" "),
            start,
        )?;
        let handle = file.handle.clone();
        handle.child("started", Some(pid), None, spawned).await;
        if let Some(lines) = self.stderr.take() {
            self.drain = Some(tokio::spawn(stderr::record(lines, handle)));
        }
        self.file = Some(file);
        Ok(())
    }

    pub fn handle(&self) -> Option<Recording> {
        self.file.as_ref().map(|f| f.handle.clone())
    }

    pub async fn error(&self, error: String) {
        if let Some(f) = &self.file {
            f.handle.error(error, Instant::now()).await;
        }
    }

    /// Waits for the plugin's stderr to end (briefly: a process the plugin
    /// started may keep it open), records the exit and ends the file.
    pub async fn finish(self, status: Option<ExitStatus>, why: &str) -> Result<()> {
        if let Some(relay) = self.relay {
            let _ = tokio::time::timeout(Duration::from_secs(1), relay).await;
        }
        let Some(file) = self.file else {
            return Ok(());
        };
        if let Some(drain) = self.drain {
            let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
        }
        let described = status.map(crate::process::describe);
        file.handle
            .child("exited", None, described.clone(), Instant::now())
            .await;
        let reason = match described {
            Some(d) => format!("{why} ({d})"),
            None => why.to_owned(),
        };
        file.finish(&reason).await
    }
}
