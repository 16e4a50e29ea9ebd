//! The proxy under load: many connections and calls through it lose
//! nothing, and SIGTERM in the middle still leaves a complete recording.

use std::path::Path;
use std::time::Duration;

use plugtap::message::Direction;
use plugtap::record::Line;

use crate::proxy::{PING_CLIENT, PING_SERVER, lines, proxy, write_spec};
use crate::support::{self, Proc};

#[test]
fn sixty_four_connections_times_a_thousand_calls_lose_nothing() {
    let dir = support::tmpdir();
    let d = dir.path();
    let (mut server, mut proxy, mut client) =
        load_through_proxy(d, &["--concurrency", "64", "--repeat", "1000", "--json"]);
    let status = client
        .wait_for(Duration::from_secs(120))
        .expect("load run ends");
    assert_eq!(status.code(), Some(0), "{}", client.stderr());
    let report: serde_json::Value = serde_json::from_str(&client.stdout()).unwrap();
    assert_eq!(report["calls"], 64_000);
    assert_eq!(report["failures"], 0);
    assert!(client.stderr().contains("calls/s"), "{}", client.stderr());
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0, "{}", proxy.stderr());
    assert_eq!(server.interrupt(), 0);

    let lines = lines(&d.join("rec.jsonl"));
    let mut per_conn: std::collections::HashMap<u64, (u64, u64, u64, u64, u64)> =
        Default::default();
    let mut frames = 0;
    for l in &lines {
        match l {
            Line::Frame(f) => {
                frames += 1;
                let e = per_conn.entry(f.conn).or_default();
                match f.dir {
                    Direction::ToServer => {
                        e.0 += 1;
                        // Requests arrive in msgid order on each connection.
                        assert_eq!(f.msg.id, Some(e.0), "conn {}", f.conn);
                        e.2 += f.len;
                    }
                    Direction::ToClient => {
                        e.1 += 1;
                        assert_eq!(f.msg.id, Some(e.1), "conn {}", f.conn);
                        let r = f.reply.as_ref().expect("every response is paired");
                        assert_eq!(r.method.as_deref(), Some("bench.Ping"));
                        e.3 += f.len;
                    }
                }
            }
            Line::Close(c) => {
                let e = per_conn.get(&c.conn).copied().unwrap_or_default();
                assert_eq!(
                    (e.2, e.3),
                    (c.to_server, c.to_client),
                    "conn {}: recorded bytes == forwarded bytes",
                    c.conn
                );
                per_conn.entry(c.conn).or_default().4 += 1;
            }
            Line::Undecodable(u) => panic!("undecodable: {u:?}"),
            _ => {}
        }
    }
    assert_eq!(frames, 128_000);
    // wait_for_socket's probe connections carry no frames.
    per_conn.retain(|_, e| e.0 > 0);
    assert_eq!(per_conn.len(), 64);
    for (conn, (req, resp, _, _, closed)) in per_conn {
        assert_eq!((req, resp, closed), (1000, 1000, 1), "conn {conn}");
    }
    assert!(matches!(lines.last(), Some(Line::End(e)) if e.frames == 128_000));
}

#[test]
fn sigterm_under_load_leaves_a_complete_recording_and_no_socket() {
    let dir = support::tmpdir();
    let d = dir.path();
    let (mut server, mut proxy, mut client) =
        load_through_proxy(d, &["--concurrency", "16", "--duration", "20"]);
    std::thread::sleep(Duration::from_millis(1500));
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proxy.exit_code(), 0, "{}", proxy.stderr());
    assert!(!d.join("front.sock").exists());
    // The client sees its connections closed: exit 1, reported.
    assert_eq!(client.exit_code(), 1, "{}", client.stderr());
    assert!(
        client.stderr().contains("connections ended early"),
        "{}",
        client.stderr()
    );
    assert_eq!(server.interrupt(), 0);
    let lines = lines(&d.join("rec.jsonl"));
    let frames = lines.iter().filter(|l| matches!(l, Line::Frame(_))).count() as u64;
    assert!(frames > 100, "{frames} frames");
    assert!(
        matches!(lines.last(), Some(Line::End(e)) if e.frames == frames && e.reason.contains("SIGTERM"))
    );
    let opens = lines.iter().filter(|l| matches!(l, Line::Open(_))).count();
    let closes = lines.iter().filter(|l| matches!(l, Line::Close(_))).count();
    assert_eq!(opens, 17, "16 and wait_for_socket's probe");
    assert_eq!(closes, opens, "every connection recorded as closed");
}

/// The mock ping server on `back.sock`, the proxy in front of it
/// recording to `rec.jsonl`, and a load client with `load` options
/// through the proxy: (server, proxy, client).
fn load_through_proxy(d: &Path, load: &[&str]) -> (Proc, Proc, Proc) {
    let server_spec = write_spec(d, "server.json", PING_SERVER);
    let client_spec = write_spec(d, "client.json", PING_CLIENT);
    let server = support::mock_server(
        d,
        Path::new(&server_spec),
        "back.sock",
        &["-q", "--no-conversations"],
    );
    let proxy = proxy(d, "front.sock", "back.sock", "rec.jsonl", &["-q"]);
    let mut args = vec!["client", "--spec", &client_spec, "--socket", "front.sock"];
    args.extend_from_slice(load);
    let client = Proc::plugtap(d, &args);
    (server, proxy, client)
}
