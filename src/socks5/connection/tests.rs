//! The connection machine driven with a fake clock and scripted peers, no
//! socket: every timeout, every reply, early data, half-close each way, a
//! client that leaves in every state, and Happy Eyeballs.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::socks5::wire::tests::{
    AUTH_ALICE, GREETING_BOTH, GREETING_NO_AUTH, REQUEST_IPV4, REQUEST_IPV6,
};
use crate::users::Verdict;

/// `impl Context` for test authenticators that need nothing else of it:
/// rules that allow everything ([`allow_all`]), no administrators, the
/// client at [`client_ip`].
macro_rules! allow_all_context {
    ($ty:ty) => {
        impl Context for $ty {
            fn rules(&self) -> &Rules {
                crate::socks5::connection::tests::allow_all()
            }

            fn is_admin(&self, _user: &str) -> bool {
                false
            }

            fn client(&self) -> std::net::IpAddr {
                crate::socks5::connection::tests::client_ip()
            }
        }
    };
}

mod commands;
mod eyeballs;
mod handshake;
mod proxied;

// ------------------------------------------------------------------ peers

const GREETING_USERPASS: &[u8] = &[0x05, 0x01, 0x02];
const SELECT_NO_AUTH: &[u8] = &[0x05, 0x00];
const SELECT_USERPASS: &[u8] = &[0x05, 0x02];
const AUTH_OK: &[u8] = &[0x01, 0x00];
const PAYLOAD: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

/// Users for these tests: none, or alice/secret checked at once, or every
/// log in sent to the slow check.
#[derive(Debug, Clone, Copy)]
enum Users {
    None,
    Alice,
    Slow,
}

/// Rules that allow every request, for tests about everything else.
pub(super) fn allow_all() -> &'static Rules {
    static RULES: std::sync::OnceLock<Rules> = std::sync::OnceLock::new();
    RULES.get_or_init(|| Rules::parse("test", "allow").expect("a valid rules file"))
}

/// The client address of these tests.
pub(super) fn client_ip() -> std::net::IpAddr {
    Ipv4Addr::new(203, 0, 113, 5).into()
}

allow_all_context!(Users);

impl Authenticator for Users {
    fn requires_auth(&self) -> bool {
        !matches!(self, Users::None)
    }

    fn verify(&self, username: &[u8], password: &[u8]) -> Option<Arc<str>> {
        (username == b"alice" && password == b"secret").then(|| Arc::from("alice"))
    }

    fn check(&self, username: &[u8], password: &[u8]) -> Verdict {
        match (self, self.verify(username, password)) {
            (Users::Slow, _) => Verdict::Defer,
            (_, Some(name)) => Verdict::Accept(name),
            (_, None) => Verdict::Reject,
        }
    }
}

fn v4(last: u8, port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::new(192, 0, 2, last).into(), port)
}

fn v6(last: u16, port: u16) -> SocketAddr {
    SocketAddr::new(
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last).into(),
        port,
    )
}

/// REQUEST_IPV4's target.
fn ipv4_target() -> SocketAddr {
    v4(10, 80)
}

fn local() -> SocketAddr {
    SocketAddr::new(Ipv4Addr::new(198, 51, 100, 7).into(), 40000)
}

fn failure(code: u8) -> Vec<u8> {
    vec![0x05, code, 0x00, 0x01, 0, 0, 0, 0, 0x00, 0x00]
}

fn success_from_local() -> Vec<u8> {
    vec![0x05, 0x00, 0x00, 0x01, 198, 51, 100, 7, 0x9C, 0x40]
}

fn request_for_name(name: &[u8], port: u16) -> Vec<u8> {
    let mut r = vec![0x05, 0x01, 0x00, 0x03, name.len() as u8];
    r.extend_from_slice(name);
    r.extend_from_slice(&port.to_be_bytes());
    r
}

fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

// ----------------------------------------------------------------- driver

/// A connection, a fake clock, and everything it asked for.
struct Sim {
    conn: Connection,
    t0: Instant,
    now: Instant,
    users: Users,
    /// Every byte for the client, not yet looked at.
    sent: Vec<u8>,
    /// Every action, not yet looked at.
    actions: Vec<Action>,
    closed: bool,
}

impl Sim {
    fn new(users: Users) -> Sim {
        Sim::with(users, Config::default())
    }

    fn with(users: Users, config: Config) -> Sim {
        let t0 = Instant::now();
        Sim {
            conn: Connection::new(t0, Arc::new(config)),
            t0,
            now: t0,
            users,
            sent: Vec::new(),
            actions: Vec::new(),
            closed: false,
        }
    }

    /// Collects what the machine wants done, as a driver does after each
    /// event.
    fn pump(&mut self) {
        while let Some(t) = self.conn.poll_transmit() {
            assert!(!t.as_bytes().is_empty(), "an empty transmit");
            assert!(!self.closed, "sent after Close");
            self.sent.extend_from_slice(t.as_bytes());
        }
        if self.closed {
            assert_eq!(self.conn.poll_action(), Some(Action::Close));
            return;
        }
        while let Some(a) = self.conn.poll_action() {
            let close = a == Action::Close;
            self.actions.push(a);
            if close {
                self.closed = true;
                assert_eq!(self.conn.poll_timeout(), None, "a timer after Close");
                break;
            }
        }
    }

    fn input(&mut self, bytes: &[u8]) {
        let users = self.users;
        self.conn.handle_input(self.now, bytes, &users);
        self.pump();
    }

    /// Moves the clock by `d`, firing every deadline on the way at its time.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        let mut fired = 0;
        while let Some(at) = self.conn.poll_timeout() {
            if at > end || self.closed {
                break;
            }
            self.now = self.now.max(at);
            self.conn.handle_timeout(self.now);
            self.pump();
            if let Some(next) = self.conn.poll_timeout() {
                assert!(next > self.now, "a deadline that does not move on");
            }
            fired += 1;
            assert!(fired < 10_000, "timers that never settle");
        }
        self.now = end;
    }

    fn advance_ms(&mut self, ms: u64) {
        self.advance(Duration::from_millis(ms));
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    fn take_sent(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.sent)
    }

    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn connected(&mut self, id: u8, peer: SocketAddr) {
        self.conn
            .handle_connected(self.now, AttemptId(id), local(), peer);
        self.pump();
    }

    fn connect_failed(&mut self, id: u8, e: io::Error) {
        self.conn.handle_connect_failed(self.now, AttemptId(id), &e);
        self.pump();
    }

    fn resolved(&mut self, r: io::Result<Vec<SocketAddr>>) {
        let users = self.users;
        self.conn.handle_resolved(self.now, r, &users);
        self.pump();
    }

    fn verified(&mut self, user: Option<&str>) {
        let users = self.users;
        self.conn
            .handle_verified(self.now, user.map(Arc::from), &users);
        self.pump();
    }

    fn stream_end(&mut self, dir: Direction) {
        self.conn.handle_stream_end(self.now, dir);
        self.pump();
    }

    fn sent_all(&mut self) {
        self.conn.handle_sent(self.now);
        self.pump();
    }

    fn lost(&mut self) {
        self.conn.handle_lost(self.now);
        self.pump();
    }

    fn stop(&mut self) {
        self.conn.handle_stop(self.now);
        self.pump();
    }

    /// A client that asked to CONNECT to REQUEST_IPV4's target, attempt 0
    /// running, every earlier output taken.
    fn connecting(users: Users, config: Config) -> Sim {
        let mut s = Sim::with(users, config);
        s.input(&[GREETING_NO_AUTH, REQUEST_IPV4].concat());
        assert_eq!(s.take_sent(), SELECT_NO_AUTH);
        assert_eq!(
            s.take_actions(),
            [connect(0, ipv4_target())],
            "one attempt to an IP target"
        );
        s
    }

    /// A client whose request named `host` (no authentication), resolving.
    fn resolving(host: &str, config: Config) -> Sim {
        let mut s = Sim::with(Users::None, config);
        s.input(&[GREETING_NO_AUTH, &request_for_name(host.as_bytes(), 443)].concat());
        assert_eq!(s.take_sent(), SELECT_NO_AUTH);
        assert_eq!(
            s.take_actions(),
            [Action::Resolve {
                host: host.into(),
                port: 443
            }]
        );
        assert_eq!(s.conn.reading(), Reading::Paused);
        s
    }

    /// An open tunnel to REQUEST_IPV4's target.
    fn established(config: Config) -> Sim {
        let mut s = Sim::connecting(Users::None, config);
        s.connected(0, ipv4_target());
        assert_eq!(s.take_sent(), success_from_local());
        assert_eq!(
            s.take_actions(),
            [
                Action::Decided(Outcome::Succeeded),
                Action::Relay {
                    via: AttemptId(0),
                    early_data: Vec::new()
                }
            ]
        );
        assert_eq!(s.conn.reading(), Reading::Relay);
        s
    }

    fn assert_closed(&self) {
        assert!(self.closed, "not closed: {:?}", self.conn);
    }

    fn assert_open(&self) {
        assert!(!self.closed, "closed at {:?}", self.elapsed());
    }
}

fn connect(id: u8, addr: SocketAddr) -> Action {
    Action::Connect {
        id: AttemptId(id),
        addr,
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Asserts a refusal: `reply` sent, `outcome` counted, then the linger.
fn assert_refused(s: &mut Sim, reply: &[u8], outcome: Outcome) {
    assert_eq!(s.take_sent(), reply);
    let actions = s.take_actions();
    assert!(
        actions.contains(&Action::Decided(outcome)),
        "{actions:?} lacks {outcome:?}"
    );
    assert_eq!(s.conn.outcome(), Some(outcome));
    assert_eq!(s.conn.reading(), Reading::Discard);
    s.assert_open();
}

// ------------------------------------------------------------- the tunnel

#[test]
fn ip_target_connects_and_early_data_goes_first() {
    let mut s = Sim::new(Users::None);
    s.input(&[GREETING_NO_AUTH, REQUEST_IPV4, PAYLOAD].concat());
    assert_eq!(s.take_sent(), SELECT_NO_AUTH);
    assert_eq!(s.take_actions(), [connect(0, ipv4_target())]);
    assert_eq!(s.conn.reading(), Reading::Paused);
    assert!(!s.conn.is_anonymous(), "its request is made");
    // Attempt 0 has the connect timeout, the handshake its own: the earlier.
    assert_eq!(s.conn.poll_timeout(), Some(s.t0 + secs(10)));

    s.advance_ms(3);
    s.connected(0, ipv4_target());
    assert_eq!(s.take_sent(), success_from_local());
    assert_eq!(
        s.take_actions(),
        [
            Action::Decided(Outcome::Succeeded),
            Action::Relay {
                via: AttemptId(0),
                early_data: PAYLOAD.to_vec()
            }
        ]
    );
    assert_eq!(s.conn.connected(), Some(ipv4_target()));
    assert_eq!(s.conn.target(), Some(&TargetAddr::Ip(ipv4_target())));
    assert_eq!(s.conn.poll_timeout(), None, "no idle timeout configured");
    assert_eq!(s.conn.poll_action(), None);
}

#[test]
fn success_reply_carries_an_ipv6_bnd() {
    let mut s = Sim::new(Users::None);
    s.input(&[GREETING_NO_AUTH, REQUEST_IPV6].concat());
    s.take_sent();
    let target = v6(1, 8080);
    assert_eq!(s.take_actions(), [connect(0, target)]);
    let bound = v6(0xbad, 443);
    s.conn.handle_connected(s.now, AttemptId(0), bound, target);
    s.pump();
    let expected = [
        0x05, 0x00, 0x00, 0x04, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0b, 0xad, //
        0x01, 0xbb,
    ];
    assert_eq!(s.take_sent(), expected);
}

#[test]
fn early_data_sent_while_the_password_is_checked_is_kept() {
    let mut s = Sim::new(Users::Slow);
    // The greeting and half the log in, then the rest with the request and
    // payload: a pipelining client.
    s.input(&[GREETING_USERPASS, &AUTH_ALICE[..4]].concat());
    assert_eq!(s.take_sent(), SELECT_USERPASS);
    assert!(s.take_actions().is_empty());
    assert!(s.conn.is_anonymous(), "its log in is incomplete");
    s.input(&AUTH_ALICE[4..]);
    let actions = s.take_actions();
    assert!(
        matches!(&actions[..], [Action::Verify(c)] if c.username == b"alice" && c.password == b"secret"),
        "{actions:?}"
    );
    assert!(!s.conn.is_anonymous(), "its credentials are being checked");
    assert_eq!(s.conn.reading(), Reading::Handshake);
    // Nothing is parsed while the check runs.
    s.input(&[REQUEST_IPV4, &PAYLOAD[..5]].concat());
    s.input(&PAYLOAD[5..]);
    assert!(s.take_sent().is_empty());
    assert!(s.take_actions().is_empty());

    s.advance_ms(40);
    s.verified(Some("alice"));
    assert_eq!(s.take_sent(), AUTH_OK);
    assert_eq!(s.take_actions(), [connect(0, ipv4_target())]);
    assert_eq!(s.conn.user().map(|u| &**u), Some("alice"));
    s.connected(0, ipv4_target());
    assert_eq!(
        s.take_actions()[1],
        Action::Relay {
            via: AttemptId(0),
            early_data: PAYLOAD.to_vec()
        }
    );
}

#[test]
fn early_data_beyond_the_limit_closes() {
    let config = Config {
        max_unparsed: 8,
        ..Config::default()
    };
    let mut s = Sim::with(Users::None, config.clone());
    s.input(&[GREETING_NO_AUTH, REQUEST_IPV4, &[0u8; 8]].concat());
    s.assert_open();
    let mut s = Sim::with(Users::None, config.clone());
    s.input(&[GREETING_NO_AUTH, REQUEST_IPV4, &[0u8; 9]].concat());
    s.assert_closed();
    assert_eq!(s.conn.outcome(), None);
    // The same limit while a password is checked.
    let mut s = Sim::with(Users::Slow, config);
    s.input(&[GREETING_USERPASS, AUTH_ALICE].concat());
    s.input(&[0u8; 8]);
    s.assert_open();
    s.input(&[0u8; 1]);
    s.assert_closed();
}

#[test]
fn client_half_close_then_target_end_closes_without_a_second_shutdown() {
    let mut s = Sim::established(Config::default());
    s.stream_end(Direction::Up);
    assert_eq!(s.take_actions(), [Action::Shutdown(Direction::Up)]);
    // The target still answers: bytes move down.
    s.advance_ms(5);
    s.conn.handle_relayed(s.now);
    s.stream_end(Direction::Up);
    assert!(s.take_actions().is_empty(), "the end is passed on once");
    s.stream_end(Direction::Down);
    // close(2) sends the last FIN.
    assert_eq!(s.take_actions(), [Action::Close]);
}

#[test]
fn target_half_close_then_client_end_closes() {
    let mut s = Sim::established(Config::default());
    s.stream_end(Direction::Down);
    assert_eq!(s.take_actions(), [Action::Shutdown(Direction::Down)]);
    s.conn.handle_relayed(s.now);
    s.stream_end(Direction::Up);
    assert_eq!(s.take_actions(), [Action::Close]);
}

// --------------------------------------------------------------- timeouts

#[test]
fn idle_tunnel_closes_and_activity_moves_the_deadline() {
    let config = Config {
        idle_timeout: Some(secs(30)),
        ..Config::default()
    };
    let mut s = Sim::established(config);
    let opened = s.now;
    s.advance(secs(29));
    s.conn.handle_relayed(s.now);
    s.advance(secs(29));
    s.assert_open();
    s.advance(secs(2));
    s.assert_closed();
    assert_eq!(s.now - opened, secs(60));
    assert_eq!(s.take_actions(), [Action::Close]);
    assert_eq!(
        s.conn.outcome(),
        Some(Outcome::Succeeded),
        "the log says 00"
    );
}

#[test]
fn handshake_timeout_closes_each_state_before_the_request_silently() {
    let stages: [(&str, Users, &[&[u8]]); 5] = [
        ("greeting", Users::Alice, &[]),
        ("half a greeting", Users::Alice, &[&GREETING_BOTH[..2]]),
        ("log in", Users::Alice, &[GREETING_USERPASS]),
        ("check", Users::Slow, &[GREETING_USERPASS, AUTH_ALICE]),
        (
            "request",
            Users::Alice,
            &[GREETING_USERPASS, AUTH_ALICE, &REQUEST_IPV4[..5]],
        ),
    ];
    for (stage, users, input) in stages {
        let mut s = Sim::new(users);
        for bytes in input {
            s.input(bytes);
        }
        s.take_sent();
        s.take_actions();
        s.advance(Duration::from_millis(9_999));
        assert!(!s.closed, "{stage}: closed before the handshake timeout");
        s.advance_ms(1);
        assert!(s.closed, "{stage}: open after the handshake timeout");
        assert_eq!(s.elapsed(), secs(10), "{stage}");
        assert!(s.take_sent().is_empty(), "{stage}: nothing to answer");
        assert_eq!(s.take_actions(), [Action::Close], "{stage}");
        assert_eq!(s.conn.outcome(), None, "{stage}: incomplete");
    }
}

#[test]
fn handshake_timeout_while_resolving_answers_04_then_lingers() {
    let mut s = Sim::resolving("slow.example", Config::default());
    s.advance(secs(10));
    assert_refused(
        &mut s,
        &failure(0x04),
        Outcome::Rejected(Reply::HostUnreachable),
    );
    // A late answer changes nothing.
    s.resolved(Ok(vec![v4(1, 443)]));
    assert!(s.take_actions().is_empty());
    assert!(s.take_sent().is_empty());
    // Linger: the write side is shut once the reply is out, then the client
    // gets its moment.
    s.advance_ms(500);
    s.sent_all();
    assert_eq!(s.take_actions(), [Action::Shutdown(Direction::Down)]);
    s.sent_all();
    assert!(s.take_actions().is_empty(), "shut once");
    s.advance_ms(1_499);
    s.assert_open();
    s.advance_ms(1);
    s.assert_closed();
    assert_eq!(s.elapsed(), secs(12));
}

#[test]
fn handshake_timeout_while_connecting_cancels_the_attempts() {
    let config = Config {
        handshake_timeout: secs(3),
        connect_timeout: secs(60),
        ..Config::default()
    };
    let mut s = Sim::resolving("two.example", config);
    s.resolved(Ok(vec![v4(1, 443), v4(2, 443)]));
    assert_eq!(s.take_actions(), [connect(0, v4(1, 443))]);
    s.advance_ms(250);
    assert_eq!(s.take_actions(), [connect(1, v4(2, 443))]);
    s.advance_ms(2_749);
    assert!(s.take_sent().is_empty() && s.take_actions().is_empty());
    s.advance_ms(1);
    assert_eq!(s.elapsed(), secs(3));
    let sent = s.take_sent();
    assert_eq!(sent, failure(0x04));
    let actions = s.take_actions();
    assert_eq!(
        actions,
        [
            Action::Decided(Outcome::Rejected(Reply::HostUnreachable)),
            Action::Cancel(AttemptId(0)),
            Action::Cancel(AttemptId(1)),
        ]
    );
    // Stale news of a cancelled attempt changes nothing.
    s.connected(1, v4(2, 443));
    assert!(s.take_sent().is_empty() && s.take_actions().is_empty());
    assert_eq!(s.conn.reading(), Reading::Discard);
}

#[test]
fn connect_attempt_timeout_answers_04() {
    let config = Config {
        connect_timeout: secs(3),
        ..Config::default()
    };
    let mut s = Sim::connecting(Users::None, config);
    assert_eq!(s.conn.poll_timeout(), Some(s.t0 + secs(3)));
    s.advance_ms(2_999);
    assert!(s.take_actions().is_empty());
    s.advance_ms(1);
    assert_eq!(s.take_sent(), failure(0x04));
    assert_eq!(
        s.take_actions(),
        [
            Action::Decided(Outcome::Rejected(Reply::HostUnreachable)),
            Action::Cancel(AttemptId(0)),
        ]
    );
}

#[test]
fn linger_ends_at_its_timeout_or_when_the_client_leaves() {
    // A SOCKS4 client: refused at its first byte.
    let mut s = Sim::new(Users::None);
    s.input(&[0x04, 0x01]);
    assert_refused(&mut s, &[0x05, 0xFF], Outcome::BadVersion);
    // Not shut before the reply is written.
    s.advance(secs(1));
    assert!(s.take_actions().is_empty());
    s.sent_all();
    assert_eq!(s.take_actions(), [Action::Shutdown(Direction::Down)]);
    // What it still sends is dropped.
    s.input(b"more bytes");
    assert!(s.take_sent().is_empty() && s.take_actions().is_empty());
    s.advance(secs(1));
    s.assert_closed();
    assert_eq!(s.elapsed(), secs(2), "linger counts from the refusal");

    let mut s = Sim::new(Users::None);
    s.input(&[0x04]);
    s.take_sent();
    s.take_actions();
    s.sent_all();
    s.take_actions();
    s.advance_ms(10);
    s.stream_end(Direction::Up);
    assert_eq!(s.take_actions(), [Action::Close]);
    assert_eq!(s.conn.outcome(), Some(Outcome::BadVersion));
}

#[test]
fn grace_after_a_stop_closes_every_state() {
    let config = Config {
        grace: secs(1),
        idle_timeout: Some(secs(3600)),
        linger: secs(5),
        ..Config::default()
    };
    type Make = fn(Config) -> Sim;
    let states: [(&str, Make); 6] = [
        ("greeting", |c| Sim::with(Users::Alice, c)),
        ("check", |c| {
            let mut s = Sim::with(Users::Slow, c);
            s.input(&[GREETING_USERPASS, AUTH_ALICE].concat());
            s
        }),
        ("resolving", |c| Sim::resolving("r.example", c)),
        ("connecting", |c| Sim::connecting(Users::None, c)),
        ("established", Sim::established),
        ("lingering", |c| {
            let mut s = Sim::with(Users::None, c);
            s.input(&[0x04]);
            s
        }),
    ];
    for (state, make) in states {
        let mut s = make(config.clone());
        s.take_sent();
        s.take_actions();
        s.advance_ms(100);
        s.stop();
        s.advance_ms(999);
        assert!(!s.closed, "{state}: closed before the grace ended");
        s.advance_ms(1);
        assert!(s.closed, "{state}: open after the grace");
        assert_eq!(s.take_actions(), [Action::Close], "{state}");
        // A second stop does not move the end.
        let mut s = make(config.clone());
        s.stop();
        s.advance_ms(500);
        s.stop();
        s.advance_ms(500);
        assert!(s.closed, "{state}: a second stop moved the end");
    }
}

// --------------------------------------------------------------- replies

#[test]
fn every_connect_error_has_its_reply() {
    for (errno, code) in [
        (libc::ECONNREFUSED, 0x05),
        (libc::ENETUNREACH, 0x03),
        (libc::EHOSTUNREACH, 0x04),
        (libc::ETIMEDOUT, 0x04),
        (libc::EACCES, 0x02),
        (libc::EPERM, 0x02),
        (libc::EADDRNOTAVAIL, 0x01),
    ] {
        let mut s = Sim::connecting(Users::None, Config::default());
        s.connect_failed(0, err(errno));
        assert_refused(&mut s, &failure(code), Outcome::Rejected(Reply::from(code)));
        assert_eq!(s.conn.connected(), None);
    }
}

#[test]
fn resolution_failures_have_their_replies() {
    let cases: [(io::Result<Vec<SocketAddr>>, u8); 3] = [
        (
            Err(io::Error::new(io::ErrorKind::NotFound, "no name")),
            0x04,
        ),
        (Ok(Vec::new()), 0x04),
        // The resolver pool is gone.
        (Err(io::Error::other("stopped")), 0x01),
    ];
    for (result, code) in cases {
        let mut s = Sim::resolving("nowhere.example", Config::default());
        s.resolved(result);
        assert_refused(&mut s, &failure(code), Outcome::Rejected(Reply::from(code)));
    }
}

#[test]
fn names_that_are_not_resolved() {
    // Not UTF-8: X'04' at once.
    let mut s = Sim::new(Users::None);
    s.input(&[GREETING_NO_AUTH, &request_for_name(b"\xff\xfe", 80)].concat());
    assert_refused(
        &mut s,
        &[SELECT_NO_AUTH, &failure(0x04)].concat(),
        Outcome::Rejected(Reply::HostUnreachable),
    );
    // IP literals, with or without brackets, are connected to directly.
    for (name, addr) in [
        (&b"192.0.2.7"[..], v4(7, 80)),
        (b"[2001:db8::9]", v6(9, 80)),
        (b"2001:db8::9", v6(9, 80)),
    ] {
        let mut s = Sim::new(Users::None);
        s.input(&[GREETING_NO_AUTH, &request_for_name(name, 80)].concat());
        assert_eq!(s.take_actions(), [connect(0, addr)]);
    }
}

#[test]
fn refused_requests_and_greetings_have_their_replies() {
    let cmd = [0x05, 0x09, 0x00, 0x01, 192, 0, 2, 10, 0x00, 0x50];
    let atyp = [0x05, 0x01, 0x00, 0x05];
    let ver = [0x04, 0x01];
    let cases: [(&[u8], Vec<u8>, Outcome); 3] = [
        (
            &cmd,
            failure(0x07),
            Outcome::Rejected(Reply::CommandNotSupported),
        ),
        (
            &atyp,
            failure(0x08),
            Outcome::Rejected(Reply::AddressTypeNotSupported),
        ),
        (&ver, failure(0x01), Outcome::BadVersion),
    ];
    for (request, reply, outcome) in cases {
        let mut s = Sim::new(Users::None);
        s.input(&[GREETING_NO_AUTH, request].concat());
        assert_refused(&mut s, &[SELECT_NO_AUTH, &reply].concat(), outcome);
    }
    // Method and log in refusals.
    let mut s = Sim::new(Users::Alice);
    s.input(GREETING_NO_AUTH);
    assert_refused(&mut s, &[0x05, 0xFF], Outcome::NoAcceptableMethod);
    let mut s = Sim::new(Users::Alice);
    s.input(&[GREETING_USERPASS, b"\x01\x05alice\x05guess"].concat());
    assert_refused(&mut s, &[0x05, 0x02, 0x01, 0x01], Outcome::AuthFailed);
    assert_eq!(s.conn.user().map(|u| &**u), Some("alice"));
    let mut s = Sim::new(Users::Slow);
    s.input(&[GREETING_USERPASS, AUTH_ALICE].concat());
    s.take_sent();
    s.take_actions();
    s.verified(None);
    assert_refused(&mut s, &[0x01, 0x01], Outcome::AuthFailed);
    let mut s = Sim::new(Users::Alice);
    s.input(&[GREETING_USERPASS, b"\x05"].concat());
    assert_refused(&mut s, &[0x05, 0x02, 0x01, 0x01], Outcome::BadVersion);
}

// --------------------------------------------------------- leaving early

#[test]
fn a_client_that_leaves_in_any_state_is_closed() {
    // Before the request: its end of stream.
    let before: [(&str, Users, &[u8]); 5] = [
        ("greeting", Users::Alice, b""),
        ("half a greeting", Users::Alice, &GREETING_BOTH[..1]),
        ("log in", Users::Alice, GREETING_USERPASS),
        ("check", Users::Slow, &[0x05, 0x01, 0x02, 0x01, 0x00, 0x00]),
        ("request", Users::None, GREETING_NO_AUTH),
    ];
    for (state, users, input) in before {
        let mut s = Sim::new(users);
        s.input(input);
        s.take_sent();
        s.take_actions();
        s.stream_end(Direction::Up);
        assert_eq!(s.take_actions(), [Action::Close], "{state}");
        assert!(s.take_sent().is_empty(), "{state}");
        assert_eq!(s.conn.outcome(), None, "{state}");
        // A late answer of the slow check finds nobody.
        s.verified(Some("alice"));
        assert!(s.take_sent().is_empty(), "{state}");
    }
    // While resolving or connecting, only a failed socket tells.
    let mut s = Sim::resolving("gone.example", Config::default());
    s.lost();
    assert_eq!(s.take_actions(), [Action::Close]);
    s.resolved(Ok(vec![v4(1, 443)]));
    assert!(s.take_actions().is_empty(), "no attempt for a client gone");

    let mut s = Sim::resolving("gone.example", Config::default());
    s.resolved(Ok(vec![v4(1, 443), v4(2, 443)]));
    s.advance_ms(250);
    assert_eq!(s.take_actions().len(), 2);
    s.lost();
    // Close covers the attempts: the driver closes every socket.
    assert_eq!(s.take_actions(), [Action::Close]);
    s.connected(0, v4(1, 443));
    assert!(s.take_sent().is_empty());

    let mut s = Sim::established(Config::default());
    s.lost();
    assert_eq!(s.take_actions(), [Action::Close]);

    let mut s = Sim::new(Users::None);
    s.input(&[0x04]);
    s.take_actions();
    s.lost();
    assert_eq!(s.take_actions(), [Action::Close]);
}
