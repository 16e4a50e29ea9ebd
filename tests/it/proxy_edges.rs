//! The proxy at the edges of ordinary use: a client that half-closes after
//! a request still gets the reply (and the recording says which side ended
//! when), the live log shortens long values unless `-v`, and the
//! recording thread yields the CPU to forwarding.

use std::io::{Read as _, Write as _};
use std::net::Shutdown;

use plugtap::message::Direction;
use plugtap::record::Line;
use rmpv::Value;

use crate::proxy::{encode, fake_upstream, lines, proxy};
use crate::support::{self, mp::request};

#[test]
fn a_client_half_close_reaches_the_server_and_the_reply_still_comes_back() {
    let dir = support::tmpdir();
    let d = dir.path();
    let (req, reply) = info_call("late");
    let sent = reply.clone();
    let want = req.clone();
    // The server reads the request, then waits for end of stream before it
    // answers: the reply only comes if the proxy passed the half-close on
    // and kept the other direction open.
    let upstream = fake_upstream(&d.join("back.sock"), move |s| {
        let mut got = vec![0; want.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, want);
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "nothing after the request");
        s.write_all(&sent).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
    });
    let mut p = proxy(d, "front.sock", "back.sock", "rec.jsonl", &[]);
    let mut c = std::os::unix::net::UnixStream::connect(d.join("front.sock")).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    c.write_all(&req).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got, reply, "the reply came back after the half-close");
    upstream.join().unwrap();
    p.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(p.exit_code(), 0);
    let lines = lines(&d.join("rec.jsonl"));
    let order: Vec<String> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Frame(f) => Some(format!("frame {:?}", f.dir)),
            Line::Eof(e) => Some(format!("eof {:?}", e.dir)),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            format!("frame {:?}", Direction::ToServer),
            format!("eof {:?}", Direction::ToServer),
            format!("frame {:?}", Direction::ToClient),
            format!("eof {:?}", Direction::ToClient),
        ],
        "{lines:?}"
    );
}

/// The live log shortens long values; `-v` shows them whole.
#[test]
fn the_live_log_shortens_values_unless_verbose() {
    let long = "x".repeat(600);
    for (extra, whole) in [(&[][..], false), (&["-v"][..], true)] {
        let dir = support::tmpdir();
        let d = dir.path();
        let req = encode(&request(
            1,
            "plugin.Step",
            Value::Array(vec![long.as_str().into()]),
        ));
        let reply = encode(&Value::Array(vec![
            1.into(),
            1.into(),
            Value::Nil,
            1.into(),
        ]));
        let upstream = answering_upstream(&d.join("back.sock"), req.len(), reply.clone());
        let mut p = proxy(d, "front.sock", "back.sock", "rec.jsonl", extra);
        let log = one_call_then_stop(&mut p, d, upstream, &req, &reply);
        let line = log
            .lines()
            .find(|l| l.contains("request #1 plugin.Step"))
            .unwrap_or_else(|| panic!("{log}"));
        assert_eq!(line.contains(&long), whole, "{extra:?}: {line}");
    }
}

#[test]
fn the_recording_thread_runs_ten_steps_nicer_than_the_forwarding_threads() {
    let dir = support::tmpdir();
    let d = dir.path();
    let mut p = proxy(d, "front.sock", "back.sock", "rec.jsonl", &["-q"]);
    // /proc/PID/task/TID/stat: field 19 is the nice value; the thread
    // name (field 2) has no spaces here.
    let nice_of = |name: &str| -> Option<i64> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", p.pid())).ok()?;
        tasks.flatten().find_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            let fields: Vec<&str> = stat.split_whitespace().collect();
            (fields.get(1)? == &format!("({name})")).then(|| fields.get(18)?.parse().ok())?
        })
    };
    let recorder = nice_of("plugtap-recorde").expect("a recording thread");
    let worker = nice_of("tokio-rt-worker").expect("a worker thread");
    // Nice values stop at 19 (if the tests already run niced).
    assert_eq!(recorder, (worker + 10).min(19));
    p.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(p.exit_code(), 0);
}

/// Without `--record` the frames are still decoded (on the recording's
/// thread, which then writes nothing) and logged.
#[test]
fn without_a_recording_every_frame_is_still_logged() {
    let dir = support::tmpdir();
    let d = dir.path();
    let (req, reply) = info_call("info");
    let upstream = answering_upstream(&d.join("back.sock"), req.len(), reply.clone());
    let mut p = support::Proc::plugtap(
        d,
        &["proxy", "--listen", "front.sock", "--upstream", "back.sock"],
    );
    p.wait_for_stderr("listening on");
    let log = one_call_then_stop(&mut p, d, upstream, &req, &reply);
    assert!(log.contains("request #1 plugin.GetPluginInfo"), "{log}");
    assert!(!log.contains("recorded"), "{log}");
    let files: Vec<_> = std::fs::read_dir(d).unwrap().flatten().collect();
    assert!(
        files
            .iter()
            .all(|f| f.path().extension().is_none_or(|e| e != "jsonl")),
        "{files:?}"
    );
}

/// A server that reads one request of `len` bytes and answers `reply`.
fn answering_upstream(
    path: &std::path::Path,
    len: usize,
    reply: Vec<u8>,
) -> std::thread::JoinHandle<Vec<u8>> {
    fake_upstream(path, move |s| {
        let mut got = vec![0; len];
        s.read_exact(&mut got).unwrap();
        s.write_all(&reply).unwrap();
    })
}

/// Sends `req` through the proxy at `front` and checks that `reply` comes
/// back.
fn round_trip(front: &std::path::Path, req: &[u8], reply: &[u8]) {
    let mut c = std::os::unix::net::UnixStream::connect(front).unwrap();
    c.write_all(req).unwrap();
    let mut got = vec![0; reply.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(got, reply);
}

/// One round trip through the proxy `p` (its front socket in `d`) to
/// `upstream`, then SIGTERM once the reply was logged: the proxy must exit
/// with 0. Returns its log.
fn one_call_then_stop(
    p: &mut support::Proc,
    d: &std::path::Path,
    upstream: std::thread::JoinHandle<Vec<u8>>,
    req: &[u8],
    reply: &[u8],
) -> String {
    round_trip(&d.join("front.sock"), req, reply);
    upstream.join().unwrap();
    p.wait_for_stderr("response #1");
    p.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(p.exit_code(), 0);
    p.stderr()
}

/// A `plugin.GetPluginInfo` request (msgid 1) and its reply, `answer`.
fn info_call(answer: &str) -> (Vec<u8>, Vec<u8>) {
    let req = encode(&request(1, "plugin.GetPluginInfo", Value::Array(vec![])));
    let reply = encode(&Value::Array(vec![
        1.into(),
        1.into(),
        Value::Nil,
        answer.into(),
    ]));
    (req, reply)
}
