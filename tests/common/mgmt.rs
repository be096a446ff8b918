//! METRICS and USER_METRICS read over socks5d's management Unix socket
//! (--mgmt-unix) by a raw client of its own: log in, request X'04' or
//! X'09', the ID and VALUE pairs parsed by hand
//! (docs/management-protocol.md, Sections 4.9 and 4.19); user changes on
//! a logged-in session ([`UnixSession`]); and a socket in a folder of its
//! own with the administrator to give socks5d.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use socks5d::mgmt::wire::Request;
use socks5d::sys::seqpacket::Conn;

use super::daemon::{Daemon, temp_path};
use super::socks::IO_TIMEOUT;

/// METRICS ID X'01': SOCKS connections accepted since start.
pub const M_HISTORIC: u8 = 0x01;
/// METRICS ID X'02': SOCKS connections open now.
pub const M_CONCURRENT: u8 = 0x02;
/// METRICS ID X'03': bytes transferred (X'04' plus X'05').
pub const M_BYTES: u8 = 0x03;
/// METRICS ID X'04': payload bytes from clients to targets.
pub const M_BYTES_UP: u8 = 0x04;
/// METRICS ID X'05': payload bytes from targets to clients.
pub const M_BYTES_DOWN: u8 = 0x05;
/// METRICS ID X'06': failed SOCKS authentications.
pub const M_AUTH_FAILED: u8 = 0x06;
/// METRICS ID X'07': failed CONNECT requests.
pub const M_CONNECT_FAILED: u8 = 0x07;
/// METRICS ID X'09': UDP associations.
pub const M_UDP_ASSOCIATIONS: u8 = 0x09;
/// METRICS ID X'0A': UDP datagrams relayed, both ways.
pub const M_UDP_DATAGRAMS: u8 = 0x0A;
/// METRICS ID X'0B': UDP datagrams dropped.
pub const M_UDP_DROPPED: u8 = 0x0B;
/// METRICS ID X'0D': BIND requests accepted.
pub const M_BINDS: u8 = 0x0D;

/// One METRICS request on the management socket at `socket`, logged in as
/// the administrator `admin`: ID to VALUE. Fails the test on any refusal
/// or malformed answer.
pub fn unix_metrics(socket: &Path, admin: &str, password: &str) -> BTreeMap<u8, u64> {
    UnixSession::login(socket, admin, password).metrics()
}

/// A management session over the Unix socket, logged in as an
/// administrator.
pub struct UnixSession(Conn);

impl UnixSession {
    /// Connects to `socket` and logs in as `admin`; fails the test if
    /// either fails.
    pub fn login(socket: &Path, admin: &str, password: &str) -> UnixSession {
        let c = Conn::connect(socket, Some(IO_TIMEOUT))
            .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
        let mut login = vec![0x01, admin.len() as u8];
        login.extend_from_slice(admin.as_bytes());
        login.push(password.len() as u8);
        login.extend_from_slice(password.as_bytes());
        c.send(&login).expect("send the log in");
        assert_eq!(answer(&c), [0x01, 0x00], "management log in as {admin}");
        UnixSession(c)
    }

    /// Sends `req` and returns the STATUS of the answer (X'00' success,
    /// X'04' exists, X'05' no such user, X'07' server error...).
    pub fn status(&self, req: &Request<'_>) -> u8 {
        let mut out = Vec::new();
        req.emit(&mut out);
        self.0.send(&out).expect("send a management request");
        let r = answer(&self.0);
        assert!(
            r.len() >= 2 && r[0] == 0x01,
            "an answer to {req:?}: {r:02x?}"
        );
        r[1]
    }

    /// METRICS on this session: ID to VALUE.
    pub fn metrics(&self) -> BTreeMap<u8, u64> {
        self.0.send(&[0x01, 0x04]).expect("send METRICS");
        parse_metrics(&answer(&self.0))
    }
}

/// USER_METRICS IDs X'01' to X'06': sessions opened, sessions open, bytes
/// up, bytes down, failed log ins, requests denied.
pub const UM_SESSIONS: u8 = 0x01;
/// USER_METRICS X'02': the user's sessions open now.
pub const UM_OPEN: u8 = 0x02;
/// USER_METRICS X'03': bytes client to target.
pub const UM_BYTES_UP: u8 = 0x03;
/// USER_METRICS X'04': bytes target to client.
pub const UM_BYTES_DOWN: u8 = 0x04;
/// USER_METRICS X'05': failed authentications with the user's name.
pub const UM_AUTH_FAILED: u8 = 0x05;
/// USER_METRICS X'06': the user's requests denied by the rules.
pub const UM_DENIED: u8 = 0x06;

/// Every user's USER_METRICS (X'09', paged from OFFSET 0 until TOTAL) on
/// the management socket at `socket`, parsed by hand (Section 4.19): name
/// to ID to VALUE.
pub fn unix_user_metrics(
    socket: &Path,
    admin: &str,
    password: &str,
) -> BTreeMap<String, BTreeMap<u8, u64>> {
    let c = UnixSession::login(socket, admin, password).0;
    let mut users = BTreeMap::new();
    loop {
        let mut req = vec![0x01, 0x09];
        req.extend_from_slice(&(users.len() as u32).to_be_bytes());
        c.send(&req).expect("send USER_METRICS");
        let r = answer(&c);
        assert_eq!(
            r.get(..3),
            Some(&[0x01, 0x00, 0x09][..]),
            "USER_METRICS: {r:02x?}"
        );
        let total = u32::from_be_bytes(r[3..7].try_into().expect("4 bytes")) as usize;
        let count = u16::from_be_bytes(r[7..9].try_into().expect("2 bytes"));
        let mut at = 9;
        for _ in 0..count {
            let len = usize::from(r[at]);
            let name = String::from_utf8(r[at + 1..at + 1 + len].to_vec()).expect("a UTF-8 name");
            at += 1 + len;
            let n = usize::from(r[at]);
            at += 1;
            let mut values = BTreeMap::new();
            for e in r[at..at + 9 * n].chunks_exact(9) {
                let v = u64::from_be_bytes(e[1..].try_into().expect("8 bytes"));
                assert!(
                    values.insert(e[0], v).is_none(),
                    "{name}: ID {} twice",
                    e[0]
                );
            }
            at += 9 * n;
            users.insert(name, values);
        }
        assert_eq!(at, r.len(), "USER_METRICS: trailing bytes: {r:02x?}");
        if users.len() >= total || count == 0 {
            return users;
        }
    }
}

/// The next whole message on `c`.
fn answer(c: &Conn) -> Vec<u8> {
    c.recv_message(65_535)
        .expect("receive a management answer")
        .expect("an answer, not the end")
}

/// A METRICS response (VER, STATUS X'00', CMD X'04', N, N times ID and
/// VALUE) as ID to VALUE; an ID must not repeat.
fn parse_metrics(r: &[u8]) -> BTreeMap<u8, u64> {
    assert_eq!(
        r.get(..3),
        Some(&[0x01, 0x00, 0x04][..]),
        "METRICS: {r:02x?}"
    );
    let n = usize::from(r[3]);
    assert_eq!(r.len(), 4 + 9 * n, "METRICS with N={n}: {r:02x?}");
    let mut m = BTreeMap::new();
    for e in r[4..].chunks_exact(9) {
        let v = u64::from_be_bytes(e[1..].try_into().expect("8 bytes"));
        assert!(m.insert(e[0], v).is_none(), "METRICS repeats ID {}", e[0]);
    }
    m
}

/// Polls METRICS until `want` holds (counters are published as the
/// workers get to them); fails the test, with the last values, after
/// `within`.
pub fn wait_unix_metrics(
    socket: &Path,
    admin: &str,
    password: &str,
    within: Duration,
    want: impl Fn(&BTreeMap<u8, u64>) -> bool,
) -> BTreeMap<u8, u64> {
    let deadline = Instant::now() + within;
    loop {
        let m = unix_metrics(socket, admin, password);
        if want(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "METRICS did not reach the expected values within {within:?}; last: {m:02x?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// The administrator a [`UnixMgmt`] gives socks5d.
pub const MGMT_ADMIN: &str = "root";
/// Its password.
pub const MGMT_ADMIN_PW: &str = "root-pw-M3x";

/// A management Unix socket's path in a folder of its own (removed when
/// dropped), and the administrator socks5d is to have.
#[derive(Debug)]
pub struct UnixMgmt {
    dir: PathBuf,
    /// The socket's path.
    pub socket: PathBuf,
}

impl UnixMgmt {
    /// A new folder for the socket; `tag` names it.
    pub fn new(tag: &str) -> UnixMgmt {
        let dir = temp_path(tag);
        fs::create_dir_all(&dir).expect("create the folder of the management socket");
        let socket = dir.join("mgmt.sock");
        UnixMgmt { dir, socket }
    }

    /// The arguments that give socks5d the administrator and the socket.
    pub fn args(&self) -> Vec<String> {
        let socket = self.socket.to_str().expect("a UTF-8 temporary path");
        vec![
            "--admin".to_owned(),
            format!("{MGMT_ADMIN}:{MGMT_ADMIN_PW}"),
            "--mgmt-unix".to_owned(),
            socket.to_owned(),
        ]
    }

    /// `socks5d -l 127.0.0.1 -p 0 -u USER:PASS`, this administrator and
    /// socket, then `extra` ([`Daemon::start_as`] with [`UnixMgmt::args`]).
    pub fn start_as(&self, user: &str, pass: &str, extra: &[&str]) -> Daemon {
        let mut args = self.args();
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Daemon::start_as(user, pass, &args)
    }

    /// METRICS now.
    pub fn metrics(&self) -> BTreeMap<u8, u64> {
        unix_metrics(&self.socket, MGMT_ADMIN, MGMT_ADMIN_PW)
    }

    /// Every user's USER_METRICS now.
    pub fn user_metrics(&self) -> BTreeMap<String, BTreeMap<u8, u64>> {
        unix_user_metrics(&self.socket, MGMT_ADMIN, MGMT_ADMIN_PW)
    }

    /// Polls METRICS until `want` holds; fails the test after `within`.
    pub fn wait_metrics(
        &self,
        within: Duration,
        want: impl Fn(&BTreeMap<u8, u64>) -> bool,
    ) -> BTreeMap<u8, u64> {
        wait_unix_metrics(&self.socket, MGMT_ADMIN, MGMT_ADMIN_PW, within, want)
    }
}

impl Drop for UnixMgmt {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// ADD_USER of a proxy user.
pub fn add_proxy_user<'a>(name: &'a str, password: &'a str) -> Request<'a> {
    Request::AddUser {
        role: socks5d::users::Role::Proxy,
        username: name.as_bytes(),
        password: password.as_bytes(),
    }
}
