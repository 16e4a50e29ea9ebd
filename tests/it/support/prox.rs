//! prox test helpers: the Python prox-style plugin (PyPI msgpack, see
//! scripts/setup-python-prox.sh), raw frames read and written with plain
//! std I/O (a big-endian u32 length, then the payload, independent of
//! plugtap's codec), and the mock plugin run as prox runs plugins: stdin
//! and stdout as pipes the test speaks on.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{bin, root};

/// The Python that has PyPI msgpack.
pub fn python() -> PathBuf {
    let exe = root().join(".venv-prox/bin/python");
    assert!(
        exe.exists(),
        "PyPI msgpack is not installed: run scripts/setup-python-prox.sh (scripts/test.sh does)"
    );
    exe
}

/// The shell command starting the Python plugin with `args`, listening in
/// `dir` (not under /tmp, where the SDK listens, so that a plugin a test
/// kills leaves nothing behind).
pub fn plugin_cmd(dir: &Path, args: &str) -> String {
    format!(
        "{} {} --socket {} {args}",
        python().display(),
        root().join("tests/peers/prox/prox_plugin.py").display(),
        dir.join("plugin.sock").display()
    )
}

/// Connects with read timeouts, so a test never hangs.
pub fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Writes one frame.
pub fn write_frame(s: &mut UnixStream, payload: &[u8]) {
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(payload);
    s.write_all(&bytes).unwrap();
}

/// Reads one frame; `None` at end of stream.
pub fn read_frame(s: &mut UnixStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            return None;
        }
        Err(e) => panic!("reading a frame: {e}"),
    }
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut payload).unwrap();
    Some(payload)
}

/// True when no frame arrives within `wait`.
pub fn silent_for(s: &mut UnixStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    let silent = matches!(
        s.read(&mut byte),
        Err(ref e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    );
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    silent
}

/// Hex digits (spaces allowed) to bytes.
pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `plugtap server` run as prox runs a plugin: the test writes its stdin
/// and reads its stdout lines; stderr goes to a file. Killed when dropped.
pub struct MockPlugin {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    err: PathBuf,
}

impl MockPlugin {
    /// Starts `plugtap server --spec SPEC ARGS` in `dir`.
    pub fn start(dir: &Path, spec: &Path, args: &[&str]) -> MockPlugin {
        let mut all = vec!["server", "--spec", spec.to_str().unwrap()];
        all.extend_from_slice(args);
        MockPlugin::plugtap(dir, &all)
    }

    /// Starts `plugtap ARGS` in `dir` as prox starts a plugin (the prox
    /// wrapper, for one).
    pub fn plugtap(dir: &Path, args: &[&str]) -> MockPlugin {
        let err = dir.join(format!("mock{}.err", std::process::id()));
        let mut child = Command::new(bin())
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        MockPlugin {
            stdin: child.stdin.take(),
            child,
            lines,
            err,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one line on the mock's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next line the mock writes on stdout (at most 10 s).
    pub fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no line on stdout; stderr:\n{}", self.stderr()))
    }

    /// The next line as JSON.
    pub fn json(&self) -> serde_json::Value {
        let line = self.line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    /// Sends `configure`, reads the acknowledgement and `ready`; returns
    /// the announced socket.
    pub fn configure(&mut self, params: &str) -> PathBuf {
        self.send(&format!(r#"{{"method":"configure","params":{params}}}"#));
        assert_eq!(self.line(), r#"{"result":"ok"}"#);
        let ready = self.json();
        assert_eq!(ready["method"], "ready", "{ready}");
        PathBuf::from(ready["params"]["socket"].as_str().unwrap())
    }

    /// Waits up to `limit` for the mock to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Closes stdin, as prox does to stop a plugin, and returns the exit code.
    pub fn close_stdin(&mut self) -> i32 {
        drop(self.stdin.take());
        for _ in 0..1000 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "the mock did not exit after stdin closed:\n{}",
            self.stderr()
        );
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits (at most 10 s) until stderr contains `needle`.
    pub fn wait_for_stderr(&self, needle: &str) {
        for _ in 0..500 {
            if self.stderr().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("stderr never showed {needle:?}:\n{}", self.stderr());
    }
}

impl Drop for MockPlugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
