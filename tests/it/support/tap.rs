//! A byte-recording relay for tests, independent of plugtap: it accepts
//! connections on one socket, connects each to an upstream socket, copies
//! both ways with plain threads and keeps every byte it saw per direction.

use std::io::{Read as _, Write as _};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Bytes seen by a [`Tap`], per direction, all connections appended.
#[derive(Default)]
pub struct Seen {
    pub to_server: Vec<u8>,
    pub to_client: Vec<u8>,
}

/// A running tap.
pub struct Tap {
    pub seen: Arc<Mutex<Seen>>,
}

impl Tap {
    /// Listens on `listen`, relaying to `upstream`.
    pub fn start(listen: &Path, upstream: &Path) -> Tap {
        let listener = UnixListener::bind(listen).unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let upstream = upstream.to_owned();
        let s = seen.clone();
        std::thread::spawn(move || {
            for down in listener.incoming() {
                let Ok(down) = down else { return };
                let up = UnixStream::connect(&upstream).unwrap();
                let (d2, u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                let (s1, s2) = (s.clone(), s.clone());
                std::thread::spawn(move || copy(down, up, &s1, true));
                std::thread::spawn(move || copy(u2, d2, &s2, false));
            }
        });
        Tap { seen }
    }

    /// Copies of the bytes seen so far.
    pub fn bytes(&self) -> (Vec<u8>, Vec<u8>) {
        let s = self.seen.lock().unwrap();
        (s.to_server.clone(), s.to_client.clone())
    }
}

fn copy(mut from: UnixStream, mut to: UnixStream, seen: &Mutex<Seen>, to_server: bool) {
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                {
                    let mut s = seen.lock().unwrap();
                    let dst = if to_server {
                        &mut s.to_server
                    } else {
                        &mut s.to_client
                    };
                    dst.extend_from_slice(&buf[..n]);
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
