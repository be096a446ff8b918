//! The real socks5d, launched by the tests' shared launcher (its readiness
//! line waited for on the capture thread's signal), serving the management
//! protocol over the case's transport, with the endpoint's readiness line
//! parsed and an administrator by default.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::*;
use crate::common;

/// The management phrase of socks5d's Unix readiness line.
const MGMT_UNIX_READY: &str = "management listening: transport=unix path=";

/// A running socks5d; killed (SIGKILL) when dropped.
pub struct Daemon {
    inner: common::Daemon,
    /// The transport its management endpoint is served over.
    pub transport: Transport,
    /// The SOCKS address from "socks5 listening: addr=ADDR".
    pub socks: SocketAddr,
    /// The SCTP management port from "management listening: transport=sctp
    /// addrs=... port=N", `None` when that endpoint is not served.
    pub mgmt_port: Option<u16>,
    /// The addresses of that line, as printed (comma-separated).
    pub mgmt_addrs: String,
    /// The Unix socket's path (when the transport is Unix).
    socket: Option<PathBuf>,
    /// The folder made for that socket, removed when dropped (after the
    /// daemon, which `inner` is, is killed).
    _folder: Option<Folder>,
    args: Vec<String>,
}

/// Where a Unix socket goes.
enum Place {
    /// A new folder of its own.
    Fresh,
    /// This path (the caller's folder).
    At(PathBuf),
}

impl Daemon {
    /// `socks5d -l 127.0.0.1 -p 0 -P 0 [--mgmt-unix PATH] --admin root:rootpw
    /// --access-log off EXTRA`.
    pub fn start(t: &Transport, extra: &[&str]) -> Daemon {
        Daemon::start_with_env(t, &[], extra)
    }

    /// Like [`Daemon::start`] without `--admin` (users come from a users file).
    pub fn start_without_admin(t: &Transport, extra: &[&str]) -> Daemon {
        let extra = extra.iter().map(|s| s.to_string()).collect();
        Daemon::spawn(*t, Place::Fresh, extra, &[])
    }

    /// Like [`Daemon::start`], with `env` added to socks5d's environment.
    pub fn start_with_env(t: &Transport, env: &[(&str, &str)], extra: &[&str]) -> Daemon {
        Daemon::spawn(*t, Place::Fresh, with_admin(extra), env)
    }

    /// Like [`Daemon::start`] over Unix, on the socket at `socket` (in a
    /// folder of the caller's).
    pub fn start_on(socket: &Path, extra: &[&str]) -> Daemon {
        let at = Place::At(socket.to_owned());
        Daemon::spawn(Transport::Unix, at, with_admin(extra), &[])
    }

    fn spawn(t: Transport, place: Place, extra: Vec<String>, env: &[(&str, &str)]) -> Daemon {
        let mut args: Vec<String> = ["-l", "127.0.0.1", "-p", "0", "-P", "0"]
            .map(String::from)
            .to_vec();
        let (socket, folder) = match (t, place) {
            (Transport::Sctp, _) => (None, None),
            (Transport::Unix, Place::At(path)) => (Some(path), None),
            (Transport::Unix, Place::Fresh) => {
                let folder = Folder::new("mgmt");
                (Some(folder.path.join("mgmt.sock")), Some(folder))
            }
        };
        if let Some(path) = &socket {
            let path = path.to_str().expect("a UTF-8 socket path");
            args.extend(["--mgmt-unix".to_owned(), path.to_owned()]);
        }
        args.extend(["--access-log", "off"].map(String::from));
        args.extend(extra);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        // Ready once "socks5 listening:" is logged, last at start-up: the
        // management lines come before it.
        let inner = common::Daemon::spawn(&argv, env, START_TIMEOUT);
        let mut d = Daemon {
            socks: inner.addr,
            inner,
            transport: t,
            mgmt_port: None,
            mgmt_addrs: String::new(),
            socket,
            _folder: folder,
            args,
        };
        let mut unix_ready = None;
        for line in d.inner.stderr().lines() {
            if let Some((_, rest)) = line.split_once(MGMT_READY) {
                let (addrs, port) = rest
                    .trim()
                    .rsplit_once(" port=")
                    .unwrap_or_else(|| panic!("bad management line {line:?}"));
                d.mgmt_addrs = addrs.to_owned();
                d.mgmt_port = Some(
                    port.parse()
                        .unwrap_or_else(|e| panic!("bad port in {line:?}: {e}")),
                );
            }
            if let Some((_, rest)) = line.split_once(MGMT_UNIX_READY) {
                unix_ready = Some(PathBuf::from(rest.trim()));
            }
        }
        if let Some(path) = &d.socket {
            assert_eq!(
                unix_ready.as_ref(),
                Some(path),
                "socks5d {:?} does not say it serves its Unix socket; stderr:\n{}",
                d.args,
                d.stderr()
            );
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

    /// The management endpoint over the daemon's transport: SCTP on
    /// 127.0.0.1, or the Unix socket.
    pub fn mgmt(&self) -> Endpoint {
        match self.transport {
            Transport::Sctp => Endpoint::Sctp(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                self.port(),
            )),
            Transport::Unix => Endpoint::Unix(self.socket().to_owned()),
        }
    }

    /// The SCTP management endpoint on ::1 (SCTP only).
    pub fn mgmt6(&self) -> Endpoint {
        Endpoint::Sctp(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            self.port(),
        ))
    }

    /// The Unix socket's path; fails the test over SCTP.
    pub fn socket(&self) -> &Path {
        match &self.socket {
            Some(p) => p,
            None => panic!("socks5d {:?} serves no Unix socket", self.args),
        }
    }

    /// socks5dctl's options that name this endpoint: `-L 127.0.0.1 -P
    /// PORT`, or `--unix PATH`.
    pub fn ctl_target(&self) -> Vec<String> {
        match self.transport {
            Transport::Sctp => vec![
                "-L".into(),
                "127.0.0.1".into(),
                "-P".into(),
                self.port().to_string(),
            ],
            Transport::Unix => vec!["--unix".into(), self.socket().display().to_string()],
        }
    }

    /// Runs `socks5dctl TARGET ARGS` (TARGET from [`Daemon::ctl_target`])
    /// with the administrator password `password` (and a new one) in the
    /// environment.
    pub fn ctl(&self, args: &[&str], password: &str, new_password: Option<&str>) -> Ctl {
        let target = self.ctl_target();
        let mut all: Vec<&str> = target.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        ctl(&all, password, new_password)
    }

    /// Runs socks5dctl ARGS from another source than this process's
    /// sessions: over SCTP from ::1 (`-L ::1`), over Unix as the local user
    /// [`UID_B`] (the daemon must have been started with
    /// [`Transport::open_to_others`]).
    pub fn ctl_from_elsewhere(&self, args: &[&str], password: &str) -> Ctl {
        match self.transport {
            Transport::Sctp => {
                let port = self.port().to_string();
                let mut all = vec!["-L", "::1", "-P", port.as_str()];
                all.extend_from_slice(args);
                ctl(&all, password, None)
            }
            Transport::Unix => {
                let mut cmd = ctl_command(password, None);
                cmd.arg("--unix").arg(self.socket()).args(args);
                std::os::unix::process::CommandExt::uid(&mut cmd, UID_B);
                std::os::unix::process::CommandExt::gid(&mut cmd, UID_B);
                Ctl::from(run_child(cmd, "socks5dctl"))
            }
        }
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

    /// Sends `sig` to socks5d.
    pub fn signal(&self, sig: Signal) {
        self.inner.signal(sig);
    }

    /// Waits, at most `within`, for a line of standard error holding
    /// `needle`; fails the test if none comes.
    pub fn stderr_line(&self, needle: &str, within: Duration) -> String {
        self.inner.stderr_line(needle, within)
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

/// `--admin root:rootpw` and `extra`.
fn with_admin(extra: &[&str]) -> Vec<String> {
    let mut args = vec!["--admin".to_owned(), format!("{ADMIN}:{ADMIN_PW}")];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A folder under the system's temporary directory (short paths: a Unix
/// socket's must fit in 108 bytes) that every user may enter, removed when
/// dropped.
pub struct Folder {
    /// Its path.
    pub path: PathBuf,
}

impl Folder {
    /// A new empty folder; `tag` names it.
    pub fn new(tag: &str) -> Folder {
        let path = common::temp_path(tag);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        Folder { path }
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
