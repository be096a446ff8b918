//! The real socks5d: started, its readiness lines parsed, killed on drop.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::*;

#[derive(Default)]
struct Log {
    text: String,
    eof: bool,
}

type SharedLog = Arc<(Mutex<Log>, Condvar)>;

/// A running socks5d; killed (SIGKILL) when dropped.
pub struct Daemon {
    child: Child,
    log: SharedLog,
    reader: Option<JoinHandle<()>>,
    /// The SOCKS address from "SOCKS5 listening on ADDR".
    pub socks: SocketAddr,
    /// The management port from "management (SCTP) listening on ... port N",
    /// `None` when the endpoint is not served.
    pub mgmt_port: Option<u16>,
    /// The addresses of that line, as printed.
    pub mgmt_addrs: String,
    args: Vec<String>,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// `socks5d -l 127.0.0.1 -p 0 -P 0 --admin root:rootpw --access-log off EXTRA`.
    pub fn start(extra: &[&str]) -> Daemon {
        let mut args = vec!["--admin".to_owned(), format!("{ADMIN}:{ADMIN_PW}")];
        args.extend(extra.iter().map(|s| s.to_string()));
        Daemon::spawn(args, &[])
    }

    /// Like [`Daemon::start`] without `--admin` (users come from a users file).
    pub fn start_without_admin(extra: &[&str]) -> Daemon {
        Daemon::spawn(extra.iter().map(|s| s.to_string()).collect(), &[])
    }

    /// Like [`Daemon::start`], with `env` added to socks5d's environment.
    pub fn start_with_env(env: &[(&str, &str)], extra: &[&str]) -> Daemon {
        let mut args = vec!["--admin".to_owned(), format!("{ADMIN}:{ADMIN_PW}")];
        args.extend(extra.iter().map(|s| s.to_string()));
        Daemon::spawn(args, env)
    }

    fn spawn(extra: Vec<String>, env: &[(&str, &str)]) -> Daemon {
        let mut args: Vec<String> = [
            "-l",
            "127.0.0.1",
            "-p",
            "0",
            "-P",
            "0",
            "--access-log",
            "off",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra);
        let mut child = Command::new(SOCKS5D)
            .args(&args)
            // The readiness lines are logged at info.
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {SOCKS5D}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log: SharedLog = Arc::default();
        let shared = Arc::clone(&log);
        // Keep draining stderr so socks5d never blocks on a full pipe.
        let reader = thread::spawn(move || {
            let mut r = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = r.read_until(b'\n', &mut line).unwrap_or(0);
                let (lock, cond) = &*shared;
                let mut l = lock.lock().unwrap_or_else(|e| e.into_inner());
                if n == 0 {
                    l.eof = true;
                    cond.notify_all();
                    return;
                }
                l.text.push_str(&String::from_utf8_lossy(&line));
                cond.notify_all();
            }
        });
        let mut d = Daemon {
            child,
            log,
            reader: Some(reader),
            socks: SocketAddr::from(([0, 0, 0, 0], 0)),
            mgmt_port: None,
            mgmt_addrs: String::new(),
            args,
            status: None,
        };
        d.wait_ready();
        d
    }

    /// Waits for the "SOCKS5 listening on" line, logged last at start-up;
    /// the management line, if any, comes before it.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let text = {
            let (lock, cond) = &*self.log;
            let mut l = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if l.text.contains(SOCKS_READY)
                    && l.text[l.text.find(SOCKS_READY).unwrap()..].contains('\n')
                {
                    break l.text.clone();
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if l.eof || left.is_zero() {
                    let why = if l.eof { "exited" } else { "timed out" };
                    let text = l.text.clone();
                    drop(l);
                    let _ = self.child.kill();
                    let st = self.child.wait();
                    panic!(
                        "socks5d {:?} {why} before 'SOCKS5 listening on' ({st:?}); stderr:\n{text}",
                        self.args
                    );
                }
                l = cond
                    .wait_timeout(l, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        };
        for line in text.lines() {
            if let Some((_, a)) = line.split_once(SOCKS_READY) {
                self.socks = a
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("bad SOCKS line {line:?}: {e}"));
                break;
            }
        }
        for line in text.lines() {
            if let Some((_, rest)) = line.split_once(MGMT_READY) {
                let (addrs, port) = rest
                    .trim()
                    .rsplit_once(" port ")
                    .unwrap_or_else(|| panic!("bad management line {line:?}"));
                self.mgmt_addrs = addrs.to_owned();
                self.mgmt_port = Some(
                    port.parse()
                        .unwrap_or_else(|e| panic!("bad port in {line:?}: {e}")),
                );
            }
        }
    }

    /// The process id of socks5d.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The management port; fails the test if the endpoint is not served.
    pub fn port(&self) -> u16 {
        match self.mgmt_port {
            Some(p) => p,
            None => panic!(
                "socks5d {:?} serves no management endpoint; stderr:\n{}",
                self.args,
                self.stderr()
            ),
        }
    }

    /// The management endpoint on 127.0.0.1.
    pub fn mgmt(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port())
    }

    /// The management endpoint on ::1.
    pub fn mgmt6(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), self.port())
    }

    /// Everything written to standard error so far.
    pub fn stderr(&self) -> String {
        self.log
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .text
            .clone()
    }

    /// Waits, at most `within`, for the `nth` line (from 1) of standard
    /// error that contains `needle`, and returns it; `None` if it did not
    /// come in time or socks5d's standard error ended first.
    pub fn wait_for_line(&self, needle: &str, nth: usize, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        let (lock, cond) = &*self.log;
        let mut l = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            // Whole lines only: the reader appends a line at a time.
            if let Some(line) = l.text.lines().filter(|t| t.contains(needle)).nth(nth - 1) {
                return Some(line.to_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if l.eof || left.is_zero() {
                return None;
            }
            l = cond
                .wait_timeout(l, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// SIGKILL, and reaped: returns once the process is gone.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = Some(self.child.wait().expect("reaping socks5d"));
        }
    }

    /// The WARN and ERROR lines of standard error so far.
    pub fn warnings(&self) -> String {
        self.stderr()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// An administrator session, logged in.
    pub fn admin(&self) -> Mgmt {
        Mgmt::admin(self.mgmt())
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).expect("kill(SIGTERM)");
        let deadline = Instant::now() + Duration::from_secs(30);
        let st = loop {
            match self.child.try_wait().expect("waiting for socks5d") {
                Some(st) => break st,
                None if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                None => panic!(
                    "socks5d still runs 30 s after SIGTERM; stderr:\n{}",
                    self.stderr()
                ),
            }
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.status = Some(st);
        st
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
