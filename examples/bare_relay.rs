//! The bench's ceiling for any proxy: a Unix-socket relay that only copies
//! bytes (`tokio::io::copy_bidirectional`), one task per connection, no
//! decoding, no logging. `scripts/bench.sh` runs it next to plugtap's proxy
//! and socat.
//!
//! Usage: `bare_relay LISTEN UPSTREAM` (stops on SIGINT/SIGTERM).

use tokio::net::{UnixListener, UnixStream};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream] = args.as_slice() else {
        eprintln!("usage: bare_relay LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let _ = std::fs::remove_file(listen);
    let listener = UnixListener::bind(listen)?;
    let upstream = upstream.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (mut down, _) = tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            accepted = listener.accept() => accepted?,
        };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Ok(mut up) = UnixStream::connect(&upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            }
        });
    }
    let _ = std::fs::remove_file(listen);
    Ok(())
}
