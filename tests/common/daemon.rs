//! The real `socks5d` binary under test: started, ready once it printed its
//! "socks5 listening: addr=ADDR" line (the capture thread signals each line it
//! reads), signalled, its output read; short runs that must exit on their
//! own; the access log's fields.
//!
//! Every wait has a deadline and fails loudly with what the daemon wrote to
//! standard error: a hung test is worse than a failed one.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The binary under test, built by cargo for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_socks5d");

/// A rules file that allows every target: the tests relay to loopback,
/// which socks5d's safe default denies. Every daemon started here gets it
/// unless its arguments name rules of their own, or it is started with
/// [`Daemon::start_with_default_rules`].
pub const ALLOW_ALL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/allow.rules");

/// How long start-up may take (a debug build on a loaded machine).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a short-lived invocation (bad arguments, -h) may take.
pub const BRIEF_TIMEOUT: Duration = Duration::from_secs(15);

/// The phrase socks5d logs once per bound SOCKS address.
const READY: &str = "socks5 listening: addr=";

/// Text a child wrote on one pipe, filled by a background thread so that the
/// pipe never fills up and blocks the child.
#[derive(Debug, Default)]
struct Captured {
    text: String,
    eof: bool,
}

type Capture = Arc<(Mutex<Captured>, Condvar)>;

fn capture<R: Read + Send + 'static>(pipe: R) -> (Capture, JoinHandle<()>) {
    let cap: Capture = Arc::default();
    let shared = Arc::clone(&cap);
    let reader = thread::spawn(move || {
        let mut pipe = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = pipe.read_until(b'\n', &mut line).unwrap_or(0);
            let (lock, cond) = &*shared;
            let mut c = lock.lock().unwrap_or_else(|e| e.into_inner());
            if n == 0 {
                c.eof = true;
                cond.notify_all();
                return;
            }
            c.text.push_str(&String::from_utf8_lossy(&line));
            cond.notify_all();
        }
    });
    (cap, reader)
}

/// Waits, at most `within`, for the `nth` line (from 1) of `cap` that
/// contains `needle`; `None` if it did not come in time or the pipe ended
/// first.
fn wait_for_line(cap: &Capture, needle: &str, nth: usize, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    let (lock, cond) = &**cap;
    let mut c = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(l) = c.text.lines().filter(|l| l.contains(needle)).nth(nth - 1) {
            return Some(l.to_owned());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if c.eof || left.is_zero() {
            return None;
        }
        c = cond
            .wait_timeout(c, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

fn snapshot(cap: &Capture) -> String {
    cap.0.lock().unwrap_or_else(|e| e.into_inner()).text.clone()
}

/// A running `socks5d`; killed when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// The first SOCKS address from the "socks5 listening: addr=ADDR" line.
    pub addr: SocketAddr,
    stdout: Capture,
    stderr: Capture,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// Starts `socks5d ARGS` with RUST_LOG=info and waits until it listens.
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::start_with_env(args, &[])
    }

    /// `socks5d -l 127.0.0.1 -p 0 -u USER:PASS EXTRA`: one proxy user on a
    /// port of its own.
    pub fn start_as(user: &str, pass: &str, extra: &[&str]) -> Daemon {
        let cred = format!("{user}:{pass}");
        let mut args = vec!["-l", "127.0.0.1", "-p", "0", "-u", &cred];
        args.extend_from_slice(extra);
        Daemon::start(&args)
    }

    /// Like `start`, with extra environment variables (they win over the
    /// RUST_LOG=info default).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(args, env, START_TIMEOUT)
    }

    /// Like `start`, with socks5d's own default rules (no `--rules`).
    pub fn start_with_default_rules(args: &[&str]) -> Daemon {
        Daemon::launch(args, &[], START_TIMEOUT, false)
    }

    /// Like `start_with_env`, allowing start-up `start_timeout` (the SCTP
    /// suite's single UML CPU is slower).
    pub fn spawn(args: &[&str], env: &[(&str, &str)], start_timeout: Duration) -> Daemon {
        Daemon::launch(args, env, start_timeout, true)
    }

    fn launch(
        args: &[&str],
        env: &[(&str, &str)],
        start_timeout: Duration,
        allow_all: bool,
    ) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        if allow_all && !args.iter().any(|a| a.starts_with("--rules")) {
            cmd.args(["--rules", ALLOW_ALL]);
        }
        cmd
            // The readiness line is logged at info: an inherited RUST_LOG=warn
            // would hide it.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
        let out: ChildStdout = child.stdout.take().expect("stdout was piped");
        let err: ChildStderr = child.stderr.take().expect("stderr was piped");
        let (stdout, r1) = capture(out);
        let (stderr, r2) = capture(err);

        // Readiness: the "socks5 listening: addr=ADDR" line, never a sleep.
        let deadline = Instant::now() + start_timeout;
        let found = {
            let (lock, cond) = &*stderr;
            let mut c = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(addr) = listening_addr(&c.text) {
                    break Ok(addr);
                }
                if c.eof {
                    break Err("socks5d closed its standard error before listening");
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break Err("socks5d did not print 'socks5 listening: addr=' in time");
                }
                c = cond
                    .wait_timeout(c, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        };
        let mut d = Daemon {
            child,
            addr: "0.0.0.0:0".parse().expect("a valid literal"),
            stdout,
            stderr,
            readers: vec![r1, r2],
            status: None,
        };
        match found {
            Ok(addr) => d.addr = addr,
            Err(why) => {
                let status = d.wait_timeout(Duration::from_secs(2));
                panic!(
                    "{why} (args {args:?}, exit {status:?}); stderr:\n{}",
                    d.stderr()
                );
            }
        }
        d
    }

    /// The child's process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Sends `sig` to socks5d.
    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap_or_else(|e| panic!("kill({sig}): {e}"));
    }

    /// Waits up to `timeout` for socks5d to exit; `None` if it still runs.
    /// Once it has exited, everything it wrote has been read.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            let deadline = Instant::now() + timeout;
            loop {
                match self.child.try_wait() {
                    Ok(Some(st)) => {
                        self.status = Some(st);
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Ok(None) => return None,
                    Err(e) => panic!("waiting for socks5d: {e}"),
                }
            }
            // The pipes close with the process: the readers end.
            for r in self.readers.drain(..) {
                let _ = r.join();
            }
        }
        self.status
    }

    /// Waits for exit, failing the test if it takes longer than `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_timeout(timeout) {
            Some(st) => st,
            None => panic!(
                "socks5d still runs after {timeout:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        if self.status.is_none() {
            self.signal(Signal::SIGTERM);
        }
        self.wait_exit(Duration::from_secs(30))
    }

    /// Everything written to standard output so far (the access log).
    pub fn stdout(&self) -> String {
        snapshot(&self.stdout)
    }

    /// Everything written to standard error so far.
    pub fn stderr(&self) -> String {
        snapshot(&self.stderr)
    }

    /// Waits, at most `within`, for the `nth` line (from 1) of standard
    /// error that contains `needle`, and returns it; `None` if it did not
    /// come in time or socks5d's standard error ended first. The reader
    /// thread signals each line it appends.
    pub fn wait_for_line(&self, needle: &str, nth: usize, within: Duration) -> Option<String> {
        wait_for_line(&self.stderr, needle, nth, within)
    }

    /// The first access-log line (standard output) holding `needle`,
    /// waiting for it as the lines come in; fails the test after `within`.
    pub fn access_line(&self, needle: &str, within: Duration) -> String {
        wait_for_line(&self.stdout, needle, 1, within).unwrap_or_else(|| {
            panic!(
                "socks5d did not log {needle:?} to the access log within {within:?}; \
                 stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }

    /// SIGKILL, and reaped: returns once the process is gone.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = Some(self.child.wait().expect("reaping socks5d"));
            for r in self.readers.drain(..) {
                let _ = r.join();
            }
        }
    }

    /// The first line of standard error holding `needle`, waiting for it
    /// as the lines come in (the reader thread signals each one); fails
    /// the test after `within`.
    pub fn stderr_line(&self, needle: &str, within: Duration) -> String {
        self.wait_for_line(needle, 1, within).unwrap_or_else(|| {
            panic!(
                "socks5d did not log {needle:?} within {within:?}; stderr:\n{}",
                self.stderr()
            )
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The address in the first "socks5 listening: addr=ADDR" line of `text`.
fn listening_addr(text: &str) -> Option<SocketAddr> {
    text.lines()
        .filter_map(|l| l.split_once(READY))
        .find_map(|(_, a)| a.trim().parse().ok())
}

/// What a short-lived socks5d run produced.
#[derive(Debug)]
pub struct Outcome {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `socks5d ARGS` expecting it to exit on its own (usage errors, -h,
/// -v); kills it and fails the test if it is still running after
/// `BRIEF_TIMEOUT` (it started serving when it should not have).
pub fn run_brief(args: &[&str]) -> Outcome {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
    let (out, r1) = capture(child.stdout.take().expect("stdout was piped"));
    let (err, r2) = capture(child.stderr.take().expect("stderr was piped"));
    let deadline = Instant::now() + BRIEF_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "socks5d {args:?} was still running after {BRIEF_TIMEOUT:?}; stderr:\n{}",
                    snapshot(&err)
                );
            }
            Err(e) => panic!("waiting for socks5d: {e}"),
        }
    };
    let _ = r1.join();
    let _ = r2.join();
    Outcome {
        status,
        stdout: snapshot(&out),
        stderr: snapshot(&err),
    }
}

/// One access-log line as its `key=value` fields (the leading timestamp is
/// stored under `time`).
pub fn access_fields(line: &str) -> HashMap<String, String> {
    let mut words = line.split_whitespace();
    let mut fields = HashMap::new();
    if let Some(t) = words.next() {
        fields.insert("time".to_owned(), t.to_owned());
    }
    for w in words {
        if let Some((k, v)) = w.split_once('=') {
            fields.insert(k.to_owned(), v.to_owned());
        }
    }
    fields
}

/// The non-empty lines of an access log.
pub fn access_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Polls `addr` until a TCP connect is refused; fails the test after
/// `timeout`.
pub fn wait_until_refused(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
            // A handshake caught in a listener that is closing is reset;
            // the next attempt shows whether every listener is gone.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connect {addr} failed, but not with 'refused': {e}"),
            Ok(s) => drop(s),
        }
        assert!(
            Instant::now() < deadline,
            "{addr} still accepted connections {timeout:?} after the signal"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// A path in the temporary directory no other test uses.
pub fn temp_path(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("socks5d-test-{}-{tag}-{n}", std::process::id()))
}

/// Sends `probe` from `sock`, connected to `relay` (a UDP relay's port),
/// until the kernel reports the ICMP port unreachable that a closed port
/// answers with (ECONNREFUSED on the connected socket); answers from a relay
/// still open are read and ignored. Fails the test after `timeout`.
pub fn wait_until_udp_refused(
    sock: &UdpSocket,
    relay: SocketAddr,
    probe: &[u8],
    timeout: Duration,
) {
    sock.connect(relay)
        .unwrap_or_else(|e| panic!("connect UDP to {relay}: {e}"));
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("UDP read timeout");
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 2048];
    loop {
        let refused = match sock.send(probe) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => true,
            Err(e) => panic!("send to {relay}: {e}"),
            // One read: the answer of an open relay, the refusal, or a
            // timeout (a relay that drops the probe).
            Ok(_) => match sock.recv(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => true,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    false
                }
                Err(e) => panic!("receive from {relay}: {e}"),
                Ok(_) => false,
            },
        };
        if refused {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the UDP port {relay} still took datagrams {timeout:?} later"
        );
    }
}
