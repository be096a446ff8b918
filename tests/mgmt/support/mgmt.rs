//! A management client over either transport: one blocking session
//! (an SCTP one-to-one association or a Unix SOCK_SEQPACKET connection),
//! sending one message and receiving one message at a time.

use std::collections::BTreeMap;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use socks5d::mgmt::wire::{self, Command as Cmd, Login, Request, Response, Status};
use socks5d::users::Role;

use super::*;

/// A response's STATUS.
pub fn status_of(r: &Response) -> Status {
    match r {
        Response::Failed { status, .. } => *status,
        _ => Status::Success,
    }
}

/// A blocking management session.
pub struct Mgmt {
    /// The socket (tests that need raw sends use it directly).
    pub sock: Sock,
    /// Where it is connected.
    pub addr: Endpoint,
}

impl Mgmt {
    /// Connects, or says why not.
    pub fn try_connect(addr: Endpoint) -> io::Result<Mgmt> {
        let sock = addr.open()?;
        Ok(Mgmt { sock, addr })
    }

    /// Connects, failing the test on error.
    pub fn connect(addr: Endpoint) -> Mgmt {
        match Mgmt::try_connect(addr.clone()) {
            Ok(m) => m,
            Err(e) => panic!("connect to {addr}: {e}"),
        }
    }

    /// Connects and logs in as the default administrator.
    pub fn admin(addr: Endpoint) -> Mgmt {
        let m = Mgmt::connect(addr);
        let reply = m.login(ADMIN, ADMIN_PW);
        assert_eq!(reply, [0x01, 0x00], "log in as {ADMIN} at {}", m.addr);
        m
    }

    /// Sends a log-in message for `user`/`pass` and returns the raw reply.
    pub fn login(&self, user: &str, pass: &str) -> Vec<u8> {
        let mut out = Vec::new();
        Login {
            username: user.as_bytes(),
            password: pass.as_bytes(),
        }
        .emit(&mut out);
        // The fixed layout of docs/management-protocol.md section 3, checked by hand so that a
        // codec bug cannot hide behind itself.
        let mut expect = vec![0x01, user.len() as u8];
        expect.extend_from_slice(user.as_bytes());
        expect.push(pass.len() as u8);
        expect.extend_from_slice(pass.as_bytes());
        assert_eq!(out, expect, "Login::emit");
        self.raw(&out)
    }

    /// Sends one message.
    pub fn send_raw(&self, msg: &[u8]) {
        self.sock
            .send_message(msg)
            .unwrap_or_else(|e| panic!("send of {} bytes to {}: {e}", msg.len(), self.addr));
    }

    /// Receives one whole message; fails the test on error, timeout or close.
    pub fn recv_raw(&self) -> Vec<u8> {
        match self.sock.recv_message(wire::MAX_RESPONSE + 1) {
            Ok(Some(m)) => m,
            Ok(None) => panic!("{}: the server closed the session", self.addr),
            Err(e) => panic!("{}: receive: {e}", self.addr),
        }
    }

    /// One message out, one back.
    pub fn raw(&self, msg: &[u8]) -> Vec<u8> {
        self.send_raw(msg);
        self.recv_raw()
    }

    /// Sends a request and parses the response to it (failing the test if it
    /// is not a well-formed answer; the header is checked by hand too).
    pub fn request(&self, req: &Request<'_>) -> Response {
        let mut out = Vec::new();
        req.emit(&mut out);
        let reply = self.raw(&out);
        parse_response(&reply, req.command())
    }

    /// The next message must be the server's graceful close (the end of
    /// the association, or of the connection after its shutdown(SHUT_WR)),
    /// not data, not a reset and not a timeout.
    pub fn expect_closed(&self, what: &str) {
        match self.sock.recv_message(wire::MAX_RESPONSE + 1) {
            Ok(None) => {}
            Ok(Some(m)) => panic!("{what}: expected the session closed, got message {m:02x?}"),
            Err(e) => panic!("{what}: expected the session closed (end), got error {e}"),
        }
    }

    /// METRICS as ID → VALUE.
    pub fn metrics(&self) -> BTreeMap<u8, u64> {
        match self.request(&Request::Metrics) {
            Response::Metrics(v) => {
                let map: BTreeMap<u8, u64> = v.iter().copied().collect();
                assert_eq!(map.len(), v.len(), "METRICS repeats an ID: {v:?}");
                map
            }
            other => panic!("METRICS answered {other:?}"),
        }
    }

    /// A counter command's value.
    pub fn counter(&self, req: Request<'static>) -> u64 {
        match self.request(&req) {
            Response::Counter { value, .. } => value,
            other => panic!("{req:?} answered {other:?}"),
        }
    }

    /// One LIST_USERS page.
    pub fn list_page(&self, offset: u32) -> (u32, Vec<(Role, Vec<u8>)>) {
        match self.request(&Request::ListUsers { offset }) {
            Response::Users { total, users } => (total, users),
            other => panic!("LIST_USERS {offset} answered {other:?}"),
        }
    }

    /// Every user, paging as the protocol says.
    pub fn list_all(&self) -> Vec<(Role, Vec<u8>)> {
        let mut all = Vec::new();
        loop {
            let (total, page) = self.list_page(all.len() as u32);
            let got = page.len();
            all.extend(page);
            if all.len() >= total as usize {
                assert_eq!(
                    all.len(),
                    total as usize,
                    "LIST_USERS pages add up past TOTAL"
                );
                return all;
            }
            assert!(
                got > 0,
                "LIST_USERS gave COUNT 0 at offset {} < TOTAL {total}",
                all.len() - got
            );
        }
    }

    /// ADD_USER's status.
    pub fn add_user(&self, name: &str, pass: &str, role: Role) -> Status {
        status_of(&self.request(&Request::AddUser {
            role,
            username: name.as_bytes(),
            password: pass.as_bytes(),
        }))
    }

    /// DELETE_USER's status.
    pub fn delete_user(&self, name: &str) -> Status {
        status_of(&self.request(&Request::DeleteUser {
            username: name.as_bytes(),
        }))
    }

    /// SET_PASSWORD's status.
    pub fn set_password(&self, name: &str, pass: &str) -> Status {
        status_of(&self.request(&Request::SetPassword {
            username: name.as_bytes(),
            password: pass.as_bytes(),
        }))
    }

    /// Adds many proxy users, pipelining up to 128 requests at a time; every
    /// answer must be success.
    pub fn add_users_pipelined(&self, names: &[Vec<u8>], pass: &[u8]) {
        for batch in names.chunks(128) {
            for name in batch {
                let mut out = Vec::new();
                Request::AddUser {
                    role: Role::Proxy,
                    username: name,
                    password: pass,
                }
                .emit(&mut out);
                self.send_raw(&out);
            }
            for name in batch {
                let reply = self.recv_raw();
                assert_eq!(
                    reply,
                    [0x01, 0x00, 0x06],
                    "ADD_USER {:?}",
                    String::from_utf8_lossy(name)
                );
            }
        }
    }
}

/// Parses a response to a request of `cmd`, checking VER and the CMD echo
/// by hand and that a failure carries no DATA.
pub fn parse_response(reply: &[u8], cmd: Cmd) -> Response {
    assert!(
        reply.len() >= 3,
        "response shorter than VER STATUS CMD: {reply:02x?}"
    );
    assert_eq!(reply[0], 0x01, "response VER: {reply:02x?}");
    assert_eq!(
        reply[2],
        u8::from(cmd),
        "response CMD must echo the request's: {reply:02x?}"
    );
    if reply[1] != 0 {
        assert_eq!(
            reply.len(),
            3,
            "DATA is present only when STATUS is X'00': {reply:02x?}"
        );
    }
    Response::parse(reply, cmd)
        .unwrap_or_else(|| panic!("malformed response to {cmd:?}: {reply:02x?}"))
}

/// The log-in message bytes.
pub fn login_bytes(user: &[u8], pass: &[u8]) -> Vec<u8> {
    let mut v = vec![0x01, user.len() as u8];
    v.extend_from_slice(user);
    v.push(pass.len() as u8);
    v.extend_from_slice(pass);
    v
}

/// Polls `f` until it returns `Some` or `deadline` passes.
pub fn poll_until<T>(
    deadline: Instant,
    step: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(step);
    }
}
