//! Shared test helpers: paths, temp dirs with short socket paths, the
//! built binary as a long-running process, a raw msgpack peer, and the real
//! Python pluginserver.

#![allow(dead_code)]

pub mod mp;
pub mod pb;
pub mod prox;
pub mod specfile;
pub mod tap;

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The built `plugtap` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_plugtap"))
}

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `specs/`.
pub fn spec(name: &str) -> PathBuf {
    root().join("specs").join(name)
}

/// A fresh temp dir with a short path (socket paths are limited to 107 bytes).
pub fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pt")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

/// Waits until something accepts connections on `path`.
pub fn wait_for_socket(path: &Path) {
    let start = Instant::now();
    while UnixStream::connect(path).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "nothing listens on {} after 15 s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `path` no longer exists.
pub fn wait_gone(path: &Path) -> bool {
    let start = Instant::now();
    while path.exists() {
        if start.elapsed() > Duration::from_secs(10) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// A process whose stdout and stderr go to files; killed when dropped.
pub struct Proc {
    child: std::process::Child,
    out: PathBuf,
    err: PathBuf,
    status: Option<ExitStatus>,
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Proc {
    /// Starts `plugtap ARGS` in `dir`.
    pub fn plugtap(dir: &Path, args: &[&str]) -> Proc {
        Proc::spawn(dir, &bin(), args)
    }

    /// Starts `program ARGS` in `dir`.
    pub fn spawn(dir: &Path, program: &Path, args: &[&str]) -> Proc {
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = dir.join(format!("proc{n}.out"));
        let err = dir.join(format!("proc{n}.err"));
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc {
            child,
            out,
            err,
            status: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal.
    pub fn signal(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), sig);
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.status = Some(status);
                return self.status;
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (at most 20 s) and returns the exit code.
    pub fn exit_code(&mut self) -> i32 {
        let status = self
            .wait_for(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("process still running; stderr:\n{}", self.stderr()));
        status.code().unwrap_or(-1)
    }

    /// Sends SIGINT and returns the exit code.
    pub fn interrupt(&mut self) -> i32 {
        self.signal(Signal::SIGINT);
        self.exit_code()
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits (at most 10 s) until stderr contains `needle`.
    pub fn wait_for_stderr(&self, needle: &str) {
        let start = Instant::now();
        while !self.stderr().contains(needle) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "stderr never showed {needle:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Output of a finished command.
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `plugtap ARGS` in `dir` to completion (at most 60 s).
pub fn run(dir: &Path, args: &[&str]) -> Output {
    let mut p = Proc::plugtap(dir, args);
    let status = p.wait_for(Duration::from_secs(60));
    let Some(status) = status else {
        panic!("plugtap {args:?} did not finish; stderr:\n{}", p.stderr());
    };
    Output {
        code: status.code().unwrap_or(-1),
        stdout: p.stdout(),
        stderr: p.stderr(),
    }
}

/// Runs `plugtap ARGS` with `input` on stdin.
pub fn run_with_stdin(dir: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Starts a mock server from `spec` on `dir/name` and waits for it.
pub fn mock_server(dir: &Path, spec: &Path, name: &str, extra: &[&str]) -> Proc {
    let socket = dir.join(name);
    let mut args = vec![
        "server",
        "--spec",
        spec.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let p = Proc::plugtap(dir, &args);
    wait_for_socket(&socket);
    p
}

/// The real Python pluginserver's executable (see scripts/setup-python-peer.sh).
pub fn python_pluginserver() -> PathBuf {
    let exe = root().join(".venv-peer/bin/kong-python-pluginserver");
    assert!(
        exe.exists(),
        "the Python peer is not installed: run scripts/setup-python-peer.sh (scripts/test.sh does)"
    );
    exe
}

/// The command line that starts the Python peer with the test plugin,
/// listening on `dir/name`.
pub fn python_peer_cmd(dir: &Path, name: &str) -> String {
    format!(
        "{} -d {} -p {} --socket-name {name}",
        python_pluginserver().display(),
        root().join("tests/peers/python").display(),
        dir.display()
    )
}

/// Starts the real Python pluginserver listening on `dir/name`.
pub fn python_peer(dir: &Path, name: &str) -> Proc {
    let exe = python_pluginserver();
    let plugins = root().join("tests/peers/python");
    let p = Proc::spawn(
        dir,
        &exe,
        &[
            "-d",
            plugins.to_str().unwrap(),
            "-p",
            dir.to_str().unwrap(),
            "--socket-name",
            name,
        ],
    );
    wait_for_socket(&dir.join(name));
    p
}
