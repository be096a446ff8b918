//! One socks5d of several sharing a Redis user store: the daemon, its
//! management Unix socket, and the waits the tests of several instances
//! need (a user logging in or refused, a METRICS value).

use std::net::IpAddr;
use std::thread;
use std::time::{Duration, Instant};

use super::{Auth, Daemon, RedisServer, UnixMgmt, UnixSession, try_socks_login_from};

/// A socks5d on a Redis user store, managed over a Unix socket of its own.
pub struct Instance {
    /// The daemon.
    pub daemon: Daemon,
    /// Its management socket.
    pub mgmt: UnixMgmt,
    /// The administrator the store was seeded with, and the password.
    admin: (String, String),
    /// Where the test's own SOCKS clients connect from.
    client: IpAddr,
}

impl Instance {
    /// Starts socks5d on loopback with its users in `redis`, cheap password
    /// hashes, and `extra` arguments. `admin` (name, password) is an
    /// administrator in the store, for the management sessions.
    pub fn start(redis: &RedisServer, tag: &str, admin: (&str, &str), extra: &[&str]) -> Instance {
        let mgmt = UnixMgmt::new(tag);
        let url = redis.url();
        let socket = mgmt.socket.to_str().expect("a UTF-8 path").to_owned();
        let mut args = vec![
            "-l",
            "127.0.0.1",
            "-p",
            "0",
            "--users-redis",
            &url,
            "--mgmt-unix",
            &socket,
            "--hash-memory-kib",
            "64",
            "--hash-passes",
            "1",
        ];
        args.extend_from_slice(extra);
        Instance {
            daemon: Daemon::start(&args),
            mgmt,
            admin: (admin.0.to_owned(), admin.1.to_owned()),
            client: IpAddr::from([127, 0, 0, 1]),
        }
    }

    /// The test's SOCKS clients of this instance connect from `client`
    /// (one outside `--proxy-protocol-from`, behind a balancer).
    pub fn with_client(mut self, client: IpAddr) -> Instance {
        self.client = client;
        self
    }

    /// A management session logged in as the administrator.
    pub fn session(&self) -> UnixSession {
        UnixSession::login(&self.mgmt.socket, &self.admin.0, &self.admin.1)
    }

    /// Whether `user` logs in to the proxy with `password` now.
    pub fn logs_in(&self, user: &str, password: &str) -> bool {
        try_socks_login_from(self.client, self.daemon.addr, Auth::User(user, password)).is_ok()
    }

    /// Waits until `user` with `password` logs in (`true`) or is refused
    /// (`false`), polling; how long it took. Fails the test after `within`.
    pub fn wait_login(&self, user: &str, password: &str, want: bool, within: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            if self.logs_in(user, password) == want {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < within,
                "{user} {} within {within:?}; stderr:\n{}",
                if want {
                    "cannot log in"
                } else {
                    "still logs in"
                },
                self.daemon.stderr()
            );
        }
    }

    /// Polls METRICS until `id` is `want`; fails the test after `within`.
    pub fn wait_metric(&self, id: u8, want: u64, within: Duration) {
        let s = self.session();
        let t0 = Instant::now();
        loop {
            let m = s.metrics();
            if m.get(&id) == Some(&want) {
                return;
            }
            assert!(
                t0.elapsed() < within,
                "METRICS {id:#04x} is not {want} after {within:?}: {m:02x?}; stderr:\n{}",
                self.daemon.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}
