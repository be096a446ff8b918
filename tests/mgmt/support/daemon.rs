//! The real socks5d, launched by the tests' shared launcher (its readiness
//! line waited for on the capture thread's signal), with the management
//! endpoint's readiness line parsed and an administrator by default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitStatus;
use std::time::Duration;

use nix::unistd::Pid;

use super::*;
use crate::common;

/// A running socks5d; killed (SIGKILL) when dropped.
pub struct Daemon {
    inner: common::Daemon,
    /// The SOCKS address from "SOCKS5 listening on ADDR".
    pub socks: SocketAddr,
    /// The management port from "management (SCTP) listening on ... port N",
    /// `None` when the endpoint is not served.
    pub mgmt_port: Option<u16>,
    /// The addresses of that line, as printed.
    pub mgmt_addrs: String,
    args: Vec<String>,
}

impl Daemon {
    /// `socks5d -l 127.0.0.1 -p 0 -P 0 --admin root:rootpw --access-log off EXTRA`.
    pub fn start(extra: &[&str]) -> Daemon {
        Daemon::start_with_env(&[], extra)
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
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        // Ready once "SOCKS5 listening on" is logged, last at start-up: the
        // management line, if any, comes before it.
        let inner = common::Daemon::spawn(&argv, env, START_TIMEOUT);
        let mut d = Daemon {
            socks: inner.addr,
            inner,
            mgmt_port: None,
            mgmt_addrs: String::new(),
            args,
        };
        for line in d.inner.stderr().lines() {
            if let Some((_, rest)) = line.split_once(MGMT_READY) {
                let (addrs, port) = rest
                    .trim()
                    .rsplit_once(" port ")
                    .unwrap_or_else(|| panic!("bad management line {line:?}"));
                d.mgmt_addrs = addrs.to_owned();
                d.mgmt_port = Some(
                    port.parse()
                        .unwrap_or_else(|e| panic!("bad port in {line:?}: {e}")),
                );
            }
        }
        d
    }

    /// The process id of socks5d.
    pub fn pid(&self) -> Pid {
        self.inner.pid()
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
        self.inner.stderr()
    }

    /// Waits, at most `within`, for the `nth` line (from 1) of standard
    /// error that contains `needle`, and returns it; `None` if it did not
    /// come in time or socks5d's standard error ended first.
    pub fn wait_for_line(&self, needle: &str, nth: usize, within: Duration) -> Option<String> {
        self.inner.wait_for_line(needle, nth, within)
    }

    /// SIGKILL, and reaped: returns once the process is gone.
    pub fn kill(&mut self) {
        self.inner.kill();
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
        self.inner.terminate()
    }
}
