//! The checks behind every fuzz target, one public function per target.
//!
//! Each takes arbitrary bytes and panics if an invariant breaks. The fuzz
//! targets (fuzz/fuzz_targets/*.rs) include this file with
//! `#[path = "../checks.rs"] mod checks;`, and tests/fuzz_corpus.rs includes it
//! the same way to run every file of fuzz/corpus/<target>/ under plain
//! `cargo test`, so the seed corpus and every crash ever found stay regression
//! tests without cargo-fuzz or a nightly compiler.
//!
//! The parser targets check, beyond "never panics", the httparse contract
//! (`Partial` on every strict prefix of a message, `Complete` exactly when its
//! last byte arrives, and more bytes never change a final answer) and that
//! `emit` writes back the bytes `parse` read. The session targets and the UDP
//! association read their input as a script; its layout is documented on
//! `socks5_handshake`, `socks5_udp` and `mgmt_session`. `rules_parse` reads its
//! input as a rules file and checks the compiled rules against the
//! rule-by-rule walk.

// Each fuzz target uses one of these functions; the test uses them all.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socks5d::metrics::Snapshot;
use socks5d::mgmt::session::{
    Action, Backend, MAX_PENDING, Session, TooManyPending, UserChange, command_of, status_of,
};
use socks5d::mgmt::wire::{
    self as mgmt, Command as MgmtCommand, Login, LoginStatus, MAX_LIST, MAX_REQUEST, MAX_RESPONSE,
    Request as MgmtRequest, Response, Status as MgmtStatus, UserMetrics, metric,
};
use socks5d::rules::{self, NameRequest, NameVerdict, Rules};
use socks5d::socks5::connection::{
    Action as SocksAction, Config, Connection, Context, Outcome, Reading,
};
use socks5d::socks5::proxy_protocol::{self, Parse as ProxyParse};
use socks5d::socks5::reply_for_error;
use socks5d::socks5::udp::{self, Association, Dest, Drop as UdpDrop, Header, Limits, Route};
use socks5d::socks5::wire::{
    self, AuthRequest, Command, Greeting, Method, Reply, ReplyMessage, Request, Status, TargetAddr,
    WireError,
};
use socks5d::users::store::Store;
use socks5d::users::{
    Authenticator, Credentials, Directory, Role, UserTable, Verdict, valid_name, valid_password,
};

/// A target's check: panics if `data` breaks an invariant.
pub type Check = fn(data: &[u8]);

/// Every target, by the name of its fuzz target and corpus directory.
pub const TARGETS: &[(&str, Check)] = &[
    ("socks5_greeting", socks5_greeting),
    ("socks5_auth", socks5_auth),
    ("socks5_request", socks5_request),
    ("socks5_handshake", socks5_handshake),
    ("socks5_udp", socks5_udp),
    ("proxy_header", proxy_header),
    ("mgmt_login", mgmt_login),
    ("mgmt_request", mgmt_request),
    ("mgmt_response", mgmt_response),
    ("mgmt_session", mgmt_session),
    ("rules_parse", rules_parse),
];

// ------------------------------------------------------------ PROXY header

/// `proxy_protocol::parse`, split-point consistency: the answer for the
/// whole input is the answer the worker gets feeding it in pieces (the
/// bytes received so far after each piece, until an answer is final), cut
/// at every point and byte by byte. Every prefix is `Incomplete` or already
/// the whole's answer; `Complete` comes exactly when its last byte
/// arrives, within the limits; what it says matches the bytes.
pub fn proxy_header(data: &[u8]) {
    let whole = proxy_protocol::parse(data);
    let fed = |cuts: &mut dyn Iterator<Item = usize>| {
        for end in cuts.chain([data.len()]) {
            let p = proxy_protocol::parse(&data[..end]);
            if p != ProxyParse::Incomplete {
                return p;
            }
        }
        ProxyParse::Incomplete
    };
    for k in 0..data.len() {
        let p = proxy_protocol::parse(&data[..k]);
        assert!(
            p == ProxyParse::Incomplete || p == whole,
            "{k} bytes gave {p:?}, the whole {whole:?}"
        );
        assert_eq!(fed(&mut [k].into_iter()), whole, "split at {k}");
    }
    assert_eq!(fed(&mut (0..data.len())), whole, "byte by byte");
    match whole {
        ProxyParse::Incomplete => {
            // Only a prefix of a header within the limits is undecided.
            assert!(data.len() < proxy_protocol::MAX_HEADER_LEN);
            if data.first() == Some(&b'P') {
                assert!(data.len() < proxy_protocol::V1_MAX_LEN);
            }
        }
        ProxyParse::Complete { consumed, header } => {
            assert!(consumed <= data.len() && consumed <= proxy_protocol::MAX_HEADER_LEN);
            assert!(proxy_protocol::starts_like_header(data));
            assert_eq!(
                proxy_protocol::parse(&data[..consumed - 1]),
                ProxyParse::Incomplete,
                "complete before its last byte"
            );
            if data[0] == b'P' {
                assert!(consumed <= proxy_protocol::V1_MAX_LEN);
                assert_eq!(&data[consumed - 2..consumed], b"\r\n");
                assert!(!data[..consumed - 2].contains(&b'\n'));
            }
            if let proxy_protocol::Header::Proxy {
                source,
                destination,
            } = header
            {
                assert_eq!(source.is_ipv4(), destination.is_ipv4());
                // A version 2 header without TLVs is what emit_v2 writes
                // (an IPv4 one of 52 bytes has 24 bytes of TLVs).
                let bare = if source.is_ipv4() { 28 } else { 52 };
                if data[0] == b'\r' && consumed == bare {
                    let mut out = [0u8; 52];
                    let n = proxy_protocol::emit_v2(source, destination, &mut out);
                    assert_eq!(n, consumed);
                    assert_eq!(&out[..n], &data[..n], "emit is not what was parsed");
                }
            }
        }
        ProxyParse::Invalid(why) => {
            assert!(!why.as_str().is_empty());
        }
    }
}

// ------------------------------------------------------------ SOCKS5 wire

/// Feeds `parse` every prefix of `data` up to its first final answer, then a
/// longer one and the whole, and checks the httparse contract:
///
/// - the empty input and every prefix before the answer are `Partial`;
/// - `Complete(_, n)` comes exactly when the n-th byte arrives;
/// - once an answer is final (`Complete` or `Err`), more bytes leave it as is.
///
/// Returns the answer for the whole of `data`.
fn incremental<'a, T: PartialEq + Debug>(
    data: &'a [u8],
    parse: impl Fn(&'a [u8]) -> Result<Status<T>, WireError>,
) -> Result<Status<T>, WireError> {
    let mut k = 0;
    let (k, settled) = loop {
        let r = parse(&data[..k]);
        match r {
            Ok(Status::Partial) if k == data.len() => return r,
            Ok(Status::Partial) => k += 1,
            Ok(Status::Complete(_, n)) => {
                assert_eq!(
                    n, k,
                    "Complete after {k} bytes claims {n}: it was complete before"
                );
                break (k, r);
            }
            Err(_) => break (k, r),
        }
    };
    for longer in [k + 1, data.len()] {
        if longer <= data.len() {
            assert_eq!(
                parse(&data[..longer]),
                settled,
                "{k} bytes gave a final answer that {longer} bytes changed"
            );
        }
    }
    settled
}

/// `Greeting::parse`: VER NMETHODS METHODS.
pub fn socks5_greeting(data: &[u8]) {
    match incremental(data, Greeting::parse) {
        Ok(Status::Partial) => {}
        Ok(Status::Complete(g, n)) => {
            assert_eq!(n, 2 + g.methods.len());
            assert_eq!(usize::from(data[1]), g.methods.len());
            let mut out = [0u8; 2 + 255];
            let len = g.emit(&mut out);
            assert_eq!(&out[..len], &data[..n], "emit is not what was parsed");
            for &m in g.methods {
                assert_eq!(u8::from(Method::from(m)), m);
                assert!(g.offers(Method::from(m)));
            }
            for m in [Method::NoAuth, Method::UsernamePassword] {
                assert_eq!(g.offers(m), g.methods.contains(&u8::from(m)));
            }
        }
        Err(e) => assert_eq!(e, WireError::Version(data[0])),
    }
}

/// `AuthRequest::parse` (RFC 1929): VER ULEN UNAME PLEN PASSWD.
pub fn socks5_auth(data: &[u8]) {
    match incremental(data, AuthRequest::parse) {
        Ok(Status::Partial) => {}
        Ok(Status::Complete(req, n)) => {
            assert_eq!(n, 3 + req.username.len() + req.password.len());
            let mut out = [0u8; 3 + 255 + 255];
            let len = req.emit(&mut out);
            assert_eq!(&out[..len], &data[..n], "emit is not what was parsed");
            // Debug never shows the password; it must not panic either.
            assert!(format!("{req:?}").contains("<redacted>"));
        }
        Err(e) => assert_eq!(e, WireError::Version(data[0])),
    }
}

/// `Request::parse`, and `ReplyMessage::parse`, which reads the same layout.
pub fn socks5_request(data: &[u8]) {
    let request = incremental(data, Request::parse);
    let reply = incremental(data, ReplyMessage::parse);
    match (request, reply) {
        (Ok(Status::Partial), Ok(Status::Partial)) => {}
        (Ok(Status::Complete(req, n)), Ok(Status::Complete(rep, m))) => {
            assert_eq!(
                n, m,
                "a reply and a request of the same bytes differ in length"
            );
            assert_eq!(n, req.buffer_len());
            assert_eq!(u8::from(req.command), data[1]);
            assert_eq!(u8::from(Reply::from(data[1])), data[1]);
            assert_eq!(u8::from(Command::from(data[1])), data[1]);
            assert_eq!(rep.reply, Reply::from(data[1]));
            assert_eq!(rep.bound, req.target);
            check_target(&req.target, &data[3..n]);

            let mut out = vec![0u8; req.buffer_len()];
            assert_eq!(req.emit(&mut out), n);
            // RSV is not checked on parse and always written as X'00'.
            assert_eq!(out[2], 0x00);
            assert_eq!((&out[..2], &out[3..]), (&data[..2], &data[3..n]));
            assert_eq!(Request::parse(&out), Ok(Status::Complete(req.clone(), n)));

            if let TargetAddr::Ip(bound) = rep.bound {
                let mut out = [0u8; wire::MAX_REPLY_LEN];
                let len = wire::emit_reply(rep.reply, bound, &mut out);
                assert_eq!(len, n);
                assert_eq!((&out[..2], &out[3..len]), (&data[..2], &data[3..n]));
            }
        }
        (Err(e), Err(f)) => {
            assert_eq!(e, f);
            match e {
                WireError::Version(v) => {
                    assert_eq!(v, data[0]);
                    assert_ne!(v, wire::SOCKS_VERSION);
                }
                WireError::AddressType(a) => assert_eq!(a, data[3]),
            }
        }
        (req, rep) => panic!("request {req:?} and reply {rep:?} disagree on the same bytes"),
    }
}

/// ATYP DST.ADDR DST.PORT as parsed from `raw`: its accessors and its log form.
fn check_target(target: &TargetAddr, raw: &[u8]) {
    assert_eq!(target.buffer_len(), raw.len());
    let port = u16::from_be_bytes([raw[raw.len() - 2], raw[raw.len() - 1]]);
    assert_eq!(target.port(), port);
    let mut out = vec![0u8; target.buffer_len()];
    assert_eq!(target.emit(&mut out), raw.len());
    assert_eq!(out, raw);
    // A name from the network is one printable token in a log line.
    let shown = target.to_string();
    assert!(
        shown.bytes().all(|b| b.is_ascii_graphic()),
        "{shown:?} is not log-safe"
    );
}

// ------------------------------------------------------- SOCKS5 handshake

/// Users of the handshake target: alice is checked quickly; carol only by
/// the slow path (`Verdict::Defer`), as a user known by a stored hash.
struct Users {
    requires_auth: bool,
}

impl Context for Users {
    fn rules(&self) -> &Rules {
        static ALLOW: std::sync::OnceLock<Rules> = std::sync::OnceLock::new();
        ALLOW.get_or_init(|| Rules::parse("fuzz", "allow").expect("a valid rules file"))
    }

    fn is_admin(&self, _user: &str) -> bool {
        false
    }

    fn client(&self) -> std::net::IpAddr {
        std::net::IpAddr::from([198, 51, 100, 1])
    }
}

impl Authenticator for Users {
    fn requires_auth(&self) -> bool {
        self.requires_auth
    }

    fn verify(&self, username: &[u8], password: &[u8]) -> Option<Arc<str>> {
        match (username, password) {
            (b"alice", b"secret") => Some("alice".into()),
            (b"carol", b"carolpw") => Some("carol".into()),
            _ => None,
        }
    }

    fn check(&self, username: &[u8], password: &[u8]) -> Verdict {
        if username == b"carol" {
            return Verdict::Defer;
        }
        match self.verify(username, password) {
            Some(name) => Verdict::Accept(name),
            None => Verdict::Reject,
        }
    }
}

/// How the driver of the handshake target answers.
#[derive(Debug, Clone, Copy)]
struct Reactor {
    /// Every target connects from `bound`, or fails with `failure`.
    connects: bool,
    bound: SocketAddr,
    failure: io::ErrorKind,
}

impl Reactor {
    /// What a name resolves to.
    fn resolved(&self, port: u16) -> SocketAddr {
        SocketAddr::new(Ipv4Addr::new(192, 0, 2, 80).into(), port)
    }

    /// The reply a failed connection gets.
    fn failure_reply(&self) -> Reply {
        reply_for_error(&io::Error::from(self.failure))
    }
}

/// What the handshake asked for, as its actions tell it.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// The request is made (resolve or connect).
    Connect(TargetAddr),
    /// The handshake is refused with this outcome.
    Close(Outcome),
    /// Credentials go to the slow check.
    Verify(Credentials),
}

/// Everything a handshake did, to compare runs of the same bytes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Transcript {
    /// Every event, in order.
    events: Vec<Event>,
    /// Every byte queued for the client, in order.
    sent: Vec<u8>,
    /// Once the tunnel is open: bytes the handshake used (the rest, up to
    /// what had been read, is early data for the target).
    consumed: Option<usize>,
    user: Option<Arc<str>>,
    /// The request succeeded: a tunnel, a BIND's peer or a UDP association.
    established: bool,
    /// A BIND's peer, which connected at once (its second reply names it).
    bind_peer: Option<SocketAddr>,
}

/// Drives one connection over `input` cut at `cuts` (ascending), one chunk
/// per read, the way the worker does, answering its actions at once.
fn drive(input: &[u8], cuts: &[usize], users: &Users, reactor: Reactor) -> Transcript {
    let now = Instant::now();
    let mut conn = Connection::new(now, Arc::new(Config::default()));
    let mut t = Transcript::default();
    let mut ended = false;
    let mut answered = false;
    let mut fed = 0;
    for end in cuts.iter().copied().chain([input.len()]) {
        let chunk = &input[fed..end];
        fed = end;
        if ended {
            // After the request or a refusal, nothing more is read (a UDP
            // association's control bytes are read and dropped).
            if conn.command() != Some(Command::UdpAssociate) {
                assert_ne!(conn.reading(), Reading::Handshake, "still reading");
            }
            conn.handle_input(now, chunk, users);
            assert!(conn.poll_transmit().is_none(), "sent after the end");
            assert_eq!(conn.poll_action(), None, "acted after the end");
            continue;
        }
        conn.handle_input(now, chunk, users);
        loop {
            t.sent
                .extend(conn.poll_transmit().iter().flat_map(|x| x.as_bytes()));
            let Some(action) = conn.poll_action() else {
                break;
            };
            match action {
                SocksAction::Verify(creds) => {
                    let answer = users.verify(&creds.username, &creds.password);
                    t.events.push(Event::Verify(creds));
                    conn.handle_verified(now, answer, users);
                }
                SocksAction::Decided(o) if answered => {
                    // The answer to the connection attempt, not a refusal.
                    let want = if reactor.connects {
                        Outcome::Succeeded
                    } else {
                        Outcome::Rejected(reactor.failure_reply())
                    };
                    assert_eq!(o, want);
                }
                SocksAction::Decided(o) => {
                    assert_ne!(o, Outcome::Succeeded, "succeeded with no connection");
                    t.events.push(Event::Close(o));
                    ended = true;
                }
                SocksAction::Resolve { port, .. } => {
                    let target = conn.target().cloned().expect("a request has a target");
                    assert!(matches!(target, TargetAddr::Domain(..)), "{target:?}");
                    t.events.push(Event::Connect(target));
                    conn.handle_resolved(now, Ok(vec![reactor.resolved(port)]), users);
                }
                SocksAction::Connect { id, addr } => {
                    // Resolved just now, or an IP address (or literal).
                    if !matches!(t.events.last(), Some(Event::Connect(_))) {
                        let target = conn.target().cloned().expect("a request has a target");
                        if let TargetAddr::Ip(a) = target {
                            assert_eq!(a, addr);
                        }
                        t.events.push(Event::Connect(target));
                    }
                    ended = true;
                    answered = true;
                    if reactor.connects {
                        conn.handle_connected(now, id, reactor.bound, addr);
                    } else {
                        conn.handle_connect_failed(now, id, &io::Error::from(reactor.failure));
                    }
                }
                SocksAction::Relay { early_data, .. } => {
                    t.consumed = Some(fed - early_data.len());
                }
                SocksAction::Associate => {
                    let target = conn.target().cloned().expect("a request has a target");
                    t.events.push(Event::Connect(target));
                    ended = true;
                    answered = true;
                    let result = if reactor.connects {
                        Ok(reactor.bound)
                    } else {
                        Err(reactor.failure_reply())
                    };
                    conn.handle_associated(now, result);
                }
                SocksAction::Listen { peer } => {
                    // As for Connect: resolved just now, or an IP address.
                    if !matches!(t.events.last(), Some(Event::Connect(_))) {
                        let target = conn.target().cloned().expect("a request has a target");
                        t.events.push(Event::Connect(target));
                    }
                    ended = true;
                    answered = true;
                    if reactor.connects {
                        // The expected peer connects at once: two replies.
                        conn.handle_listening(now, Ok(reactor.bound));
                        conn.handle_incoming(now, peer);
                        t.bind_peer = Some(peer);
                    } else {
                        conn.handle_listening(now, Err(io::Error::from(reactor.failure)));
                    }
                }
                SocksAction::StopListening => {}
                other => panic!("{other:?} during a handshake"),
            }
        }
    }
    t.user = conn.user().cloned();
    t.established = conn.outcome() == Some(Outcome::Succeeded);
    t
}

/// Checks that what the client got is a valid server side of a handshake:
/// a method selection, perhaps an RFC 1929 status, perhaps a reply, and that
/// it agrees with the events.
fn check_server_side(t: &Transcript, users: &Users, reactor: Reactor) {
    let closed = t.events.iter().find_map(|e| match e {
        Event::Close(o) => Some(*o),
        _ => None,
    });
    let connect = t.events.iter().any(|e| matches!(e, Event::Connect(_)));
    let ended = closed.is_some() || connect;
    assert!(
        t.events
            .iter()
            .rev()
            .skip(1)
            .all(|e| matches!(e, Event::Verify(_))),
        "an event after the end: {:?}",
        t.events
    );
    let mut s = &t.sent[..];
    let Some((selection, rest)) = s.split_first_chunk::<2>() else {
        assert!(s.is_empty() && !ended, "{t:?}");
        return;
    };
    s = rest;
    let wanted = if users.requires_auth {
        Method::UsernamePassword
    } else {
        Method::NoAuth
    };
    match Method::from(selection[1]) {
        Method::NoAcceptable => {
            assert!(s.is_empty());
            assert!(matches!(
                closed,
                Some(Outcome::BadVersion | Outcome::NoAcceptableMethod)
            ));
            return;
        }
        m => assert_eq!((selection[0], m), (wire::SOCKS_VERSION, wanted)),
    }
    if wanted == Method::UsernamePassword {
        let Some((status, rest)) = s.split_first_chunk::<2>() else {
            // Logged in or being checked: a final answer would have a status.
            assert!(s.is_empty() && !ended, "{t:?}");
            return;
        };
        s = rest;
        if *status == wire::emit_auth_status(false) {
            assert!(s.is_empty());
            assert!(matches!(
                closed,
                Some(Outcome::AuthFailed | Outcome::BadVersion)
            ));
            return;
        }
        assert_eq!(*status, wire::emit_auth_status(true));
        assert!(t.user.is_some(), "logged in with no user");
    } else {
        assert!(t.user.is_none(), "a user with no log in");
    }
    if s.is_empty() {
        assert!(!ended, "ended with no reply: {t:?}");
        return;
    }
    match ReplyMessage::parse(s) {
        Ok(Status::Complete(reply, n)) => {
            if let Some(peer) = t.bind_peer {
                // BIND's second reply follows the first.
                let second = ReplyMessage::parse(&s[n..]);
                let Ok(Status::Complete(second, m)) = second else {
                    panic!("no second BIND reply: {second:?} in {t:?}");
                };
                assert_eq!(n + m, s.len(), "bytes after the replies: {t:?}");
                assert_eq!(second.reply, Reply::Succeeded);
                assert_eq!(second.bound, TargetAddr::Ip(peer));
                assert!(t.established);
                assert_eq!(reply.bound, TargetAddr::Ip(reactor.bound));
                return;
            }
            assert_eq!(n, s.len(), "bytes after the reply: {t:?}");
            assert_eq!(reply.reply == Reply::Succeeded, t.established);
            if t.established {
                assert!(connect && reactor.connects);
                assert_eq!(reply.bound, TargetAddr::Ip(reactor.bound));
            } else {
                assert_eq!(reply.bound, TargetAddr::Ip(wire::UNSPECIFIED));
                match closed {
                    Some(Outcome::Rejected(r)) => assert_eq!(r, reply.reply),
                    Some(Outcome::BadVersion) => assert_eq!(reply.reply, Reply::GeneralFailure),
                    None => assert!(
                        connect && !reactor.connects && reply.reply == reactor.failure_reply()
                    ),
                    Some(o) => panic!("{o:?} with reply {reply:?}"),
                }
            }
        }
        other => panic!("not a reply: {other:?} in {t:?}"),
    }
}

/// A whole handshake against an in-memory authenticator.
///
/// Input: `FLAGS CUT1 CUT2 BYTES...`. FLAGS bit 0: users are configured
/// (RFC 1929 required); bit 1: the CONNECT succeeds; bit 2: bound to IPv6
/// rather than IPv4; bits 3 to 7: why a connection fails (refused, timed
/// out, not permitted, other: X'05', X'04', X'02', X'01'). BYTES are the
/// client's, run three ways that must agree: at once, cut at CUT1 and CUT2
/// (each modulo the length + 1), and one byte at a time.
///
/// Checks: nothing panics; nothing is read after a refusal or the request;
/// what the client gets is a valid server side that agrees with the events.
pub fn socks5_handshake(data: &[u8]) {
    let Some(([flags, cut1, cut2], input)) = data.split_first_chunk::<3>() else {
        return;
    };
    let users = Users {
        requires_auth: flags & 1 != 0,
    };
    let reactor = Reactor {
        connects: flags & 2 != 0,
        bound: if flags & 4 != 0 {
            SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7).into(), 40000)
        } else {
            SocketAddr::new(Ipv4Addr::new(192, 0, 2, 7).into(), 40000)
        },
        failure: [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::TimedOut,
            io::ErrorKind::PermissionDenied,
            io::ErrorKind::Other,
        ][usize::from(flags >> 3) % 4],
    };
    let whole = drive(input, &[], &users, reactor);
    check_server_side(&whole, &users, reactor);

    let mut cuts = [
        usize::from(*cut1) % (input.len() + 1),
        usize::from(*cut2) % (input.len() + 1),
    ];
    cuts.sort_unstable();
    assert_eq!(
        drive(input, &cuts, &users, reactor),
        whole,
        "cut at {cuts:?}"
    );

    let bytewise: Vec<usize> = (1..input.len()).collect();
    assert_eq!(
        drive(input, &bytewise, &users, reactor),
        whole,
        "one byte at a time"
    );
}

// ------------------------------------------------------- SOCKS5 UDP relay

/// The control connection's peer of the `socks5_udp` association.
const UDP_CONTROL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// The address a `socks5_udp` client may have asked to send from.
const UDP_REQUESTED_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

/// `addr` as the association compares and sends: an IPv4-mapped address as
/// IPv4, no flow label or scope.
fn udp_canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// `ip` as an IPv4-mapped IPv6 address.
fn udp_mapped(ip: Ipv4Addr) -> IpAddr {
    ip.to_ipv6_mapped().into()
}

/// One of a few IP addresses: the association's client, mapped or not,
/// others, and targets of either family.
fn udp_ip(b: u8) -> IpAddr {
    match b % 8 {
        0 => UDP_CONTROL_IP.into(),
        1 => udp_mapped(UDP_CONTROL_IP),
        2 => UDP_REQUESTED_IP.into(),
        3 => udp_mapped(UDP_REQUESTED_IP),
        4 => Ipv4Addr::new(198, 51, 100, 8).into(),
        5 => Ipv4Addr::new(192, 0, 2, 1).into(),
        6 => udp_mapped(Ipv4Addr::new(192, 0, 2, 1)),
        _ => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
    }
}

/// Names the structured datagrams go to: ones to resolve, IP literals, and
/// names that are never asked for.
const UDP_NAMES: [&[u8]; 8] = [
    b"a.example",
    b"b.example",
    b"c.example",
    b"192.0.2.9",
    b"[2001:db8::9]",
    b"::ffff:192.0.2.9",
    b"",
    b"\xff.example",
];

/// The header of `datagram`, checked against the httparse contract, and its
/// emit against the bytes it came from (RSV is written as X'0000').
fn udp_header(datagram: &[u8]) -> Result<Status<Header<'_>>, WireError> {
    let parsed = incremental(datagram, Header::parse);
    match parsed {
        Ok(Status::Partial) => {}
        Ok(Status::Complete(h, n)) => {
            assert_eq!(n, h.buffer_len());
            assert!(n <= udp::MAX_HEADER_LEN);
            assert_eq!(h.frag, datagram[2]);
            let mut out = [0u8; udp::MAX_HEADER_LEN];
            assert_eq!(h.emit(&mut out), n);
            assert_eq!((&out[..2], &out[2..n]), (&[0u8, 0][..], &datagram[2..n]));
            assert_eq!(Header::parse(&out[..n]), Ok(Status::Complete(h, n)));
            check_target(&TargetAddr::from(h.dest), &datagram[3..n]);
            if let Dest::Ip(addr) = h.dest {
                udp_reply_header(addr);
            }
        }
        Err(e) => assert_eq!(e, WireError::AddressType(datagram[3])),
    }
    parsed
}

/// The header a reply from `from` gets reads back as `from`, canonical,
/// written right before where the reply's DATA starts.
fn udp_reply_header(from: SocketAddr) {
    let mut buf = [0xEEu8; udp::MAX_IP_HEADER_LEN + 2];
    let end = udp::MAX_IP_HEADER_LEN;
    let len = udp::emit_header_before(from, &mut buf, end);
    assert!(len <= end);
    assert!(buf[..end - len].iter().all(|&b| b == 0xEE), "wrote before");
    assert!(buf[end..].iter().all(|&b| b == 0xEE), "wrote after");
    let want = Header {
        frag: 0,
        dest: Dest::Ip(udp_canonical(from)),
    };
    assert_eq!(
        Header::parse(&buf[end - len..]),
        Ok(Status::Complete(want, len))
    );
}

/// What an association should do, written plainly: a reference for
/// `udp::Association` that keeps everything in vectors and scans them.
struct UdpModel {
    limits: Limits,
    client_ip: IpAddr,
    client_port: Option<u16>,
    client: Option<SocketAddr>,
    resolving: Vec<String>,
    /// (name, port, DATA), in arrival order.
    waiting: Vec<(String, u16, Vec<u8>)>,
    ready: VecDeque<(SocketAddr, Vec<u8>)>,
    /// (name, first address, stale from), oldest first.
    answers: Vec<(String, IpAddr, Option<Instant>)>,
    /// Peers sent to, the most recent last.
    peers: Vec<SocketAddr>,
    unresolved: u64,
}

impl UdpModel {
    fn held_bytes(&self) -> usize {
        let waiting = self.waiting.iter().map(|w| w.2.len());
        waiting.chain(self.ready.iter().map(|r| r.1.len())).sum()
    }

    fn accepts_client(&mut self, from: SocketAddr) -> bool {
        let ok = from.ip().to_canonical() == self.client_ip
            && self.client_port.is_none_or(|p| p == from.port());
        if ok && self.client.is_none() {
            self.client = Some(from);
            self.client_port = Some(from.port());
        }
        ok
    }

    fn touch(&mut self, peer: SocketAddr) {
        self.peers.retain(|p| *p != peer);
        self.peers.push(peer);
        while self.peers.len() > self.limits.max_peers {
            self.peers.remove(0);
        }
    }

    fn send(&mut self, to: SocketAddr, data: usize) -> Route {
        self.touch(to);
        Route::Send { to, data }
    }

    fn on_client_datagram(&mut self, now: Instant, datagram: &[u8]) -> Route {
        let Ok(Status::Complete(h, n)) = Header::parse(datagram) else {
            return Route::Drop(UdpDrop::Malformed);
        };
        if h.frag != 0 {
            return Route::Drop(UdpDrop::Fragmented);
        }
        let (name, port) = match h.dest {
            Dest::Ip(a) => return self.send(udp_canonical(a), n),
            Dest::Domain(name, port) => (name, port),
        };
        let Some(host) = std::str::from_utf8(name).ok().filter(|h| !h.is_empty()) else {
            return Route::Drop(UdpDrop::Malformed);
        };
        if let Some(ip) = wire::ip_literal(host) {
            return self.send(udp_canonical(SocketAddr::new(ip, port)), n);
        }
        if let Some(i) = self.answers.iter().position(|a| a.0 == host) {
            let (_, ip, stale) = self.answers[i];
            if stale.is_none_or(|t| now < t) {
                return self.send(SocketAddr::new(ip, port), n);
            }
            self.answers.remove(i);
        }
        let data = &datagram[n..];
        if self.waiting.len() + self.ready.len() >= self.limits.max_waiting
            || self.held_bytes() + data.len() > self.limits.max_waiting_bytes
        {
            return Route::Drop(UdpDrop::WaitFull);
        }
        self.waiting.push((host.into(), port, data.to_vec()));
        if self.resolving.iter().any(|r| r == host) {
            return Route::Held;
        }
        self.resolving.push(host.into());
        Route::Resolve {
            host: host.into(),
            port,
        }
    }

    fn handle_resolved(&mut self, now: Instant, host: &str, ip: Option<IpAddr>) {
        let Some(i) = self.resolving.iter().position(|r| r == host) else {
            return;
        };
        self.resolving.remove(i);
        if let Some(ip) = ip {
            self.answers.retain(|a| a.0 != host);
            if self.limits.max_names > 0 {
                if self.answers.len() == self.limits.max_names {
                    self.answers.remove(0);
                }
                let stale = now.checked_add(self.limits.name_ttl);
                self.answers.push((host.into(), ip, stale));
            }
        }
        let (mine, others) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition::<Vec<_>, _>(|w| w.0 == host);
        self.waiting = others;
        for (_, port, data) in mine {
            match ip {
                Some(ip) => self.ready.push_back((SocketAddr::new(ip, port), data)),
                None => self.unresolved += 1,
            }
        }
    }

    fn poll_ready(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let (to, data) = self.ready.pop_front()?;
        self.touch(to);
        Some((to, data))
    }
}

/// Checks a `Route` the association gave `datagram` on its own terms,
/// beyond agreeing with the model: a Send's DATA offset is where the header
/// ends, inside the datagram, its destination is canonical with the
/// header's port (and the header's address, if an IP), and replies from it
/// are let in; a Resolve names what the header names, never an IP literal.
fn udp_check_route(datagram: &[u8], route: &Route, association: &Association, limits: &Limits) {
    match route {
        Route::Send { to, data } => {
            assert!(*data <= datagram.len());
            let Ok(Status::Complete(h, n)) = Header::parse(datagram) else {
                panic!("sent a datagram with no header")
            };
            assert_eq!((h.frag, n), (0, *data));
            assert_eq!(*to, udp_canonical(*to), "a destination not canonical");
            assert_eq!(to.port(), h.dest.port());
            if let Dest::Ip(addr) = h.dest {
                assert_eq!(*to, udp_canonical(addr));
            }
            assert_eq!(association.accepts_reply(*to), limits.max_peers > 0);
        }
        Route::Resolve { host, port } => {
            let Ok(Status::Complete(h, _)) = Header::parse(datagram) else {
                panic!("resolving a datagram with no header")
            };
            assert_eq!(h.dest, Dest::Domain(host.as_bytes(), *port));
            assert!(wire::ip_literal(host).is_none(), "resolving {host:?}");
        }
        Route::Held | Route::Drop(_) => {}
    }
}

/// Splits LEN and that many bytes (X'FF': the rest) off `rest`.
fn udp_chunk<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let all: &'a [u8] = rest;
    let (chunk, tail) = match all.split_first() {
        None => (all, all),
        Some((0xFF, tail)) => (tail, &tail[tail.len()..]),
        Some((&len, tail)) => tail.split_at(usize::from(len).min(tail.len())),
    };
    *rest = tail;
    chunk
}

/// Splits one byte off `rest` (0 once it is empty).
fn udp_byte(rest: &mut &[u8]) -> u8 {
    match rest.split_first() {
        Some((&b, tail)) => {
            *rest = tail;
            b
        }
        None => 0,
    }
}

/// A datagram with a made header: DST % 16 picks a name of `UDP_NAMES`
/// (below 8) or an IP (`udp_ip`); DST bit 4 sets FRAG to X'01'.
fn udp_made(dst: u8, port: u8, data: &[u8]) -> Vec<u8> {
    let dest = match dst % 16 {
        d @ 0..8 => Dest::Domain(UDP_NAMES[usize::from(d)], u16::from(port)),
        d => Dest::Ip(SocketAddr::new(udp_ip(d), u16::from(port))),
    };
    let header = Header {
        frag: (dst >> 4) & 1,
        dest,
    };
    let mut out = vec![0u8; header.buffer_len() + data.len()];
    let n = header.emit(&mut out);
    out[n..].copy_from_slice(data);
    out
}

/// The resolver's answer ANS: an error, no address, an IPv4 address, or an
/// IPv4-mapped and an IPv6 address (bits 5-6), each 192.0.2.(ANS & 31) or
/// 2001:db8::(ANS & 31), with port 53.
fn udp_answer(ans: u8) -> io::Result<Vec<SocketAddr>> {
    let v4 = Ipv4Addr::new(192, 0, 2, ans & 31);
    let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(ans & 31));
    match (ans >> 5) & 3 {
        0 => Err(io::Error::from(io::ErrorKind::NotFound)),
        1 => Ok(Vec::new()),
        2 => Ok(vec![SocketAddr::new(v4.into(), 53)]),
        _ => Ok(vec![
            SocketAddr::new(udp_mapped(v4), 53),
            SocketAddr::new(v6.into(), 53),
        ]),
    }
}

/// `Header::parse` on the whole input, and one UDP association driven by a
/// script against `UdpModel`.
///
/// Input: `REQ LIM PEERS STEPS...`. REQ bits 0-1: the UDP ASSOCIATE's
/// DST.ADDR: unspecified, `UDP_REQUESTED_IP`, a name, or the control peer's
/// own IP; bit 2: that IP IPv4-mapped (the unspecified one IPv6); bit 3:
/// DST.PORT 5000 rather than 0; bit 4: the control peer (198.51.100.7) seen
/// IPv4-mapped. LIM: max_waiting (bits 0-2), max_waiting_bytes (bits 3-4:
/// 0, 16, 100 or 64 KiB), max_names (bits 5-7). PEERS: max_peers (bits 0-2),
/// name_ttl in seconds (bits 3-7). Each step is OP % 8 and its bytes:
/// - 0 `SRC LEN BYTES`: a datagram of LEN bytes (X'FF': the rest) from SRC;
/// - 1 `SRC DST PORT LEN BYTES`: a datagram with a made header (`udp_made`)
///   and LEN bytes of DATA, from SRC;
/// - 2 `ANS`: the resolver answers (`udp_answer`) the (ANS % n)-th name being
///   resolved, or with ANS bit 7 one of `[abcd].example`, asked or not;
/// - 3 `SECS`: the clock moves on SECS seconds;
/// - 4 `IP PORT`: a reply from `udp_ip(IP)`:PORT;
/// - 5: the driver polls one ready datagram; 6: it takes the unresolved
///   count; 7: it polls every ready datagram.
///
/// SRC is `udp_ip(SRC)` with port 5000, 5001 or 4000 ((SRC >> 3) % 3).
///
/// Checks: nothing panics; every header parses by the httparse contract and
/// emits back as read; every answer of the association is the model's, and
/// its Sends and Resolves are right on their own (`udp_check_route`); the
/// datagrams held stay within the limits.
pub fn socks5_udp(data: &[u8]) {
    let _ = udp_header(data);
    let Some(([req, lim, peers], mut rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let mapped = req & 4 != 0;
    let ip = |v4: Ipv4Addr| if mapped { udp_mapped(v4) } else { v4.into() };
    let port = if req & 8 != 0 { 5000 } else { 0 };
    let requested = match req & 3 {
        0 if mapped => TargetAddr::Ip(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)),
        0 => TargetAddr::Ip(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port)),
        1 => TargetAddr::Ip(SocketAddr::new(ip(UDP_REQUESTED_IP), port)),
        2 => TargetAddr::Domain((*b"client.example").into(), port),
        _ => TargetAddr::Ip(SocketAddr::new(ip(UDP_CONTROL_IP), port)),
    };
    let control: IpAddr = if req & 16 != 0 {
        udp_mapped(UDP_CONTROL_IP)
    } else {
        UDP_CONTROL_IP.into()
    };
    let limits = Limits {
        max_waiting: usize::from(lim & 7),
        max_waiting_bytes: [0, 16, 100, 64 * 1024][usize::from((lim >> 3) & 3)],
        max_names: usize::from(lim >> 5),
        name_ttl: Duration::from_secs(u64::from(peers >> 3)),
        max_peers: usize::from(peers & 7),
    };
    let mut association = Association::new(&requested, control, limits);
    let mut model = UdpModel {
        limits,
        client_ip: match &requested {
            TargetAddr::Ip(a) if !a.ip().to_canonical().is_unspecified() => a.ip().to_canonical(),
            _ => control.to_canonical(),
        },
        client_port: Some(port).filter(|&p| p != 0),
        client: None,
        resolving: Vec::new(),
        waiting: Vec::new(),
        ready: VecDeque::new(),
        answers: Vec::new(),
        peers: Vec::new(),
        unresolved: 0,
    };
    let mut now = Instant::now();
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 8 {
            0 | 1 => {
                let src = udp_byte(&mut rest);
                let from =
                    SocketAddr::new(udp_ip(src), [5000, 5001, 4000][usize::from(src >> 3) % 3]);
                let datagram = if op % 8 == 0 {
                    udp_chunk(&mut rest).to_vec()
                } else {
                    let (dst, port) = (udp_byte(&mut rest), udp_byte(&mut rest));
                    udp_made(dst, port, udp_chunk(&mut rest))
                };
                let _ = udp_header(&datagram);
                let accepted = association.accepts_client(from);
                assert_eq!(accepted, model.accepts_client(from), "from {from}");
                if accepted {
                    let route = association.on_client_datagram(now, &datagram);
                    udp_check_route(&datagram, &route, &association, &limits);
                    assert_eq!(
                        route,
                        model.on_client_datagram(now, &datagram),
                        "{datagram:02x?}"
                    );
                }
            }
            2 => {
                let ans = udp_byte(&mut rest);
                let host = if ans & 0x80 != 0 {
                    ["a.example", "b.example", "c.example", "d.example"][usize::from(ans & 3)]
                        .to_string()
                } else if model.resolving.is_empty() {
                    continue;
                } else {
                    model.resolving[usize::from(ans) % model.resolving.len()].clone()
                };
                let result = udp_answer(ans);
                let ip = match &result {
                    Ok(addrs) => addrs.first().map(|a| a.ip().to_canonical()),
                    Err(_) => None,
                };
                association.handle_resolved(now, &host, result);
                model.handle_resolved(now, &host, ip);
            }
            3 => now += Duration::from_secs(u64::from(udp_byte(&mut rest))),
            4 => {
                let from =
                    SocketAddr::new(udp_ip(udp_byte(&mut rest)), u16::from(udp_byte(&mut rest)));
                assert_eq!(
                    association.accepts_reply(from),
                    model.peers.contains(&udp_canonical(from)),
                    "a reply from {from}"
                );
            }
            5 => assert_eq!(association.poll_ready(), model.poll_ready()),
            6 => assert_eq!(association.take_unresolved(), model.unresolved),
            _ => loop {
                let next = association.poll_ready();
                assert_eq!(next, model.poll_ready());
                if next.is_none() {
                    break;
                }
            },
        }
        if op % 8 == 6 {
            model.unresolved = 0;
        }
        assert_eq!(association.client(), model.client);
        assert_eq!(association.held(), model.waiting.len() + model.ready.len());
        assert!(association.held() <= limits.max_waiting);
        assert!(model.held_bytes() <= limits.max_waiting_bytes);
        for peer in &model.peers {
            assert!(association.accepts_reply(*peer), "forgot {peer}");
        }
    }
    loop {
        let next = association.poll_ready();
        assert_eq!(next, model.poll_ready());
        if next.is_none() {
            break;
        }
    }
    assert_eq!(association.take_unresolved(), model.unresolved);
}

// ------------------------------------------------------- management wire

/// `Login::parse`, and `parse_login_reply` (the other log-in message).
pub fn mgmt_login(data: &[u8]) {
    match Login::parse(data) {
        Ok(login) => {
            assert_eq!(data[0], mgmt::VERSION);
            assert!((1..=255).contains(&login.username.len()));
            assert!((1..=255).contains(&login.password.len()));
            assert_eq!(login.buffer_len(), data.len());
            let mut out = Vec::new();
            login.emit(&mut out);
            assert_eq!(out, data, "emit is not what was parsed");
            assert!(format!("{login:?}").contains("<redacted>"));
            // "the lengths do not add up to the message length": one byte
            // more or less is malformed.
            out.push(0);
            assert_eq!(Login::parse(&out), Err(LoginStatus::Malformed));
            assert_eq!(
                Login::parse(&data[..data.len() - 1]),
                Err(LoginStatus::Malformed)
            );
        }
        Err(LoginStatus::BadVersion) => assert_ne!(data[0], mgmt::VERSION),
        Err(LoginStatus::Malformed) => assert!(data.first().is_none_or(|&v| v == mgmt::VERSION)),
        Err(other) => panic!("Login::parse refused with {other:?}"),
    }

    match mgmt::parse_login_reply(data) {
        Some(status) => {
            assert_eq!(mgmt::emit_login_reply(status), data);
            assert_eq!(LoginStatus::from(u8::from(status)), status);
        }
        None => assert!(data.len() != 2 || data[0] != mgmt::VERSION),
    }
}

/// `Request::parse`: if it parses, emit gives the same bytes back; if not,
/// the error is the one the protocol prescribes, echoing CMD.
pub fn mgmt_request(data: &[u8]) {
    let echoed = data.get(1).copied().unwrap_or(0);
    match MgmtRequest::parse(data) {
        Ok(req) => {
            assert_eq!(u8::from(req.command()), echoed);
            assert_eq!(req.buffer_len(), data.len());
            let mut out = Vec::new();
            req.emit(&mut out);
            assert_eq!(out, data, "emit is not what was parsed");
            assert_eq!(MgmtRequest::parse(&out), Ok(req));
            match req {
                MgmtRequest::AddUser {
                    username, password, ..
                }
                | MgmtRequest::SetPassword { username, password } => {
                    assert!(valid_name(username) && valid_password(password));
                    assert!(format!("{req:?}").contains("<redacted>"));
                }
                MgmtRequest::DeleteUser { username } => assert!(valid_name(username)),
                _ => {}
            }
            // Lengths must add up exactly: a trailing byte is malformed.
            out.push(0);
            let err = MgmtRequest::parse(&out).expect_err("a trailing byte");
            assert_eq!(err.status, MgmtStatus::Malformed);
        }
        Err(e) => {
            assert_eq!(e.command, echoed);
            let expected = if data.len() > MAX_REQUEST || data.is_empty() {
                MgmtStatus::Malformed
            } else if data[0] != mgmt::VERSION {
                MgmtStatus::UnsupportedVersion
            } else if data.len() < 2 {
                MgmtStatus::Malformed
            } else if let MgmtCommand::Unknown(_) = MgmtCommand::from(data[1]) {
                MgmtStatus::UnknownCommand
            } else {
                MgmtStatus::Malformed
            };
            assert_eq!(e.status, expected, "{e}");
        }
    }
}

/// Writes `resp` back with the server's emitters, as an answer to `expected`.
fn emit_response(resp: &Response, expected: MgmtCommand) -> Vec<u8> {
    let mut out = Vec::new();
    match resp {
        Response::Failed { status, command } => {
            assert_ne!(*status, MgmtStatus::Success);
            mgmt::emit_response(*status, *command, &[], &mut out);
        }
        Response::Done { command } => {
            assert!(matches!(
                expected,
                MgmtCommand::AddUser
                    | MgmtCommand::DeleteUser
                    | MgmtCommand::SetPassword
                    | MgmtCommand::Reload
            ));
            mgmt::emit_response(MgmtStatus::Success, *command, &[], &mut out);
        }
        Response::Counter { command, value } => {
            assert!(matches!(
                expected,
                MgmtCommand::HistoricConnections
                    | MgmtCommand::ConcurrentConnections
                    | MgmtCommand::BytesTransferred
            ));
            mgmt::emit_counter(MgmtCommand::from(*command), *value, &mut out);
        }
        Response::Metrics(values) => {
            assert_eq!(expected, MgmtCommand::Metrics);
            mgmt::emit_metrics(values, &mut out);
        }
        Response::Users { total, users } => {
            assert_eq!(expected, MgmtCommand::ListUsers);
            assert!(users.len() <= MAX_LIST && users.len() as u64 <= u64::from(*total));
            let entries = users.iter().map(|(role, name)| (*role, &name[..]));
            let count = mgmt::emit_list_users(*total, entries, &mut out);
            assert_eq!(
                usize::from(count),
                users.len(),
                "emit_list_users dropped users"
            );
        }
        Response::UserMetrics { total, users } => {
            assert_eq!(expected, MgmtCommand::UserMetrics);
            assert!(users.len() <= MAX_LIST && users.len() as u64 <= u64::from(*total));
            let entries = users.iter().map(|u| (&u.name[..], &u.values[..]));
            let count = mgmt::emit_user_metrics(*total, entries, &mut out);
            assert_eq!(
                usize::from(count),
                users.len(),
                "emit_user_metrics dropped users"
            );
        }
    }
    out
}

/// `Response::parse` against every CMD: only the echoed one can match, and
/// what parses is written back identically by the server's emitters.
pub fn mgmt_response(data: &[u8]) {
    for b in 0..=u8::MAX {
        let expected = MgmtCommand::from(b);
        let Some(resp) = Response::parse(data, expected) else {
            continue;
        };
        assert!(data.len() <= MAX_RESPONSE);
        assert_eq!((data[0], data[2]), (mgmt::VERSION, b), "{resp:?}");
        assert_eq!(emit_response(&resp, expected), data, "{resp:?}");
    }
}

// ---------------------------------------------------- management session

/// The management target's server: the real users' writer (`Store`) without
/// a users file, over a small table.
struct Server {
    dir: Arc<Directory>,
    store: Store,
    metrics: Snapshot,
}

impl Backend for Server {
    fn metrics(&self) -> Snapshot {
        self.metrics
    }

    fn users(&self) -> Arc<UserTable> {
        self.dir.snapshot()
    }

    /// One made-up value per user, derived from its name, so that the
    /// check can tell each entry got its own.
    fn user_metrics(&self, user: &[u8]) -> Vec<(u8, u64)> {
        vec![(0x01, user.len() as u64)]
    }
}

impl Server {
    fn new() -> Self {
        let mut t = UserTable::new();
        for (name, password, role) in [
            (&b"root"[..], &b"rootpw"[..], Role::Admin),
            (b"bob", b"bobpw", Role::Proxy),
            (b"eve", b"evepw", Role::Proxy),
        ] {
            t.add(name, password, role).expect("a valid user");
        }
        let dir = Directory::new(t);
        Server {
            store: Store::new(Arc::clone(&dir), None),
            dir,
            metrics: Snapshot {
                historic: 42,
                concurrent: 3,
                bytes_up: u64::MAX - 1,
                bytes_down: 2,
                auth_failed: 5,
                connect_failed: 6,
                refused: 8,
                evicted: 9,
                uptime_secs: 77,
                mgmt_aborted: 9,
                ..Snapshot::default()
            },
        }
    }
}

/// What a request handed to the session should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A response with this status and no DATA (a refused request).
    Error(MgmtStatus),
    /// A query: a success response with DATA.
    Query,
    /// A user change: `Action::Change`, then the status of `change_done`.
    Change,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    LoggingIn,
    Checking,
    Established,
    Changing,
    Closed,
}

/// The test's model of one association: what the session has been handed
/// and what it owes.
struct Model {
    phase: Phase,
    /// The stream of the log in still to be answered.
    login_stream: Option<u16>,
    /// The user name of the log in being checked.
    checking: Option<Vec<u8>>,
    /// The request messages not answered yet, in order.
    owed: VecDeque<(u16, Vec<u8>, Expect)>,
    /// The status `change_done` was given, for the response it causes.
    change_status: Option<MgmtStatus>,
    /// Whether the endpoint has no session place left: a good log in then
    /// gets X'03'.
    full: bool,
    /// The answer given to the session's claim of a place, until the
    /// log-in reply that follows it.
    claimed: Option<bool>,
}

impl Model {
    /// Takes every action the session has queued and checks it.
    fn take_actions(&mut self, session: &mut Session, server: &Server) {
        while let Some(action) = session.poll_action() {
            match action {
                Action::Send { stream, message } => self.on_send(stream, &message, server),
                Action::Shutdown => {
                    assert_eq!(self.phase, Phase::Closed, "shutdown while {:?}", self.phase)
                }
                Action::ClaimSlot => self.claim(session, server),
                Action::CheckLogin(creds) => {
                    assert_eq!(self.phase, Phase::LoggingIn);
                    assert!(self.login_stream.is_some());
                    self.phase = Phase::Checking;
                    self.checking = Some(creds.username.clone());
                }
                Action::Change(change) => {
                    assert_eq!(self.phase, Phase::Established);
                    let (_, msg, expect) = self.owed.front().expect("a change nobody asked for");
                    assert_eq!(*expect, Expect::Change);
                    assert_eq!(u8::from(command_of(&change)), msg[1]);
                    match &change {
                        UserChange::Add { name, .. }
                        | UserChange::Delete { name }
                        | UserChange::SetPassword { name, .. } => assert!(valid_name(name)),
                        UserChange::Reload => {}
                    }
                    self.phase = Phase::Changing;
                    // The writer applies it now; its status goes back when the
                    // script says so (`change_done`). Nothing reads the table
                    // in between: later requests wait while Changing.
                    let status = status_of(server.store.apply(&change));
                    self.change_status = Some(status);
                }
            }
        }
        assert_eq!(session.is_closed(), self.phase == Phase::Closed);
        assert_eq!(session.is_checking(), self.phase == Phase::Checking);
        assert_eq!(
            session.admin().is_some(),
            matches!(self.phase, Phase::Established | Phase::Changing)
        );
    }

    /// The session's log in is good and it asks for a session place: the
    /// endpoint answers at once, as the real one does.
    fn claim(&mut self, session: &mut Session, server: &Server) {
        assert!(
            matches!(self.phase, Phase::LoggingIn | Phase::Checking),
            "a place claimed while {:?}",
            self.phase
        );
        assert!(self.login_stream.is_some());
        assert!(session.admin().is_none());
        self.claimed = Some(!self.full);
        session.slot_claimed(!self.full, server);
    }

    fn on_send(&mut self, stream: u16, message: &[u8], server: &Server) {
        if let Some(login_stream) = self.login_stream {
            assert_eq!(stream, login_stream, "log-in reply on another stream");
            let status = mgmt::parse_login_reply(message).expect("a log-in reply");
            match self.claimed.take() {
                Some(true) => assert_eq!(status, LoginStatus::Success),
                Some(false) => assert_eq!(status, LoginStatus::ServerError),
                None => assert_ne!(status, LoginStatus::Success, "success without a place"),
            }
            self.login_stream = None;
            self.checking = None;
            if status == LoginStatus::Success {
                self.phase = Phase::Established;
            } else {
                // Pending requests are dropped unanswered.
                self.phase = Phase::Closed;
                self.owed.clear();
            }
            return;
        }
        let (want_stream, msg, expect) = self.owed.pop_front().expect("a response with no request");
        assert_eq!(stream, want_stream, "response on another stream");
        let cmd = msg.get(1).copied().unwrap_or(0);
        let resp = Response::parse(message, MgmtCommand::from(cmd))
            .unwrap_or_else(|| panic!("not a response to {msg:02x?}: {message:02x?}"));
        match expect {
            Expect::Error(status) => {
                assert_eq!(
                    resp,
                    Response::Failed {
                        status,
                        command: cmd
                    }
                )
            }
            Expect::Change => {
                assert_eq!(self.phase, Phase::Changing);
                self.phase = Phase::Established;
                let status = self.change_status.take().expect("a change status");
                match resp {
                    Response::Done { command } => {
                        assert_eq!((status, command), (MgmtStatus::Success, cmd))
                    }
                    Response::Failed { status: s, command } => {
                        assert_eq!((s, command), (status, cmd))
                    }
                    other => panic!("{other:?} answers a change"),
                }
            }
            Expect::Query => {
                assert_eq!(self.phase, Phase::Established);
                let m = server.metrics;
                match (MgmtRequest::parse(&msg).expect("a query"), resp) {
                    (MgmtRequest::HistoricConnections, Response::Counter { value, .. }) => {
                        assert_eq!(value, m.historic)
                    }
                    (MgmtRequest::ConcurrentConnections, Response::Counter { value, .. }) => {
                        assert_eq!(value, m.concurrent)
                    }
                    (MgmtRequest::BytesTransferred, Response::Counter { value, .. }) => {
                        assert_eq!(value, m.bytes())
                    }
                    (MgmtRequest::Metrics, Response::Metrics(values)) => {
                        for (id, value) in [
                            (metric::HISTORIC, m.historic),
                            (metric::CONCURRENT, m.concurrent),
                            (metric::BYTES, m.bytes()),
                            (metric::UPTIME, m.uptime_secs),
                        ] {
                            assert!(values.contains(&(id, value)), "metric {id}: {values:?}");
                        }
                    }
                    (MgmtRequest::ListUsers { offset }, Response::Users { total, users }) => {
                        let table = server.dir.snapshot();
                        assert_eq!(total as usize, table.len());
                        let all: Vec<(Role, Vec<u8>)> = table
                            .entries()
                            .skip(offset as usize)
                            .map(|(name, u)| (u.role, name.to_vec()))
                            .collect();
                        assert_eq!(users[..], all[..users.len().min(all.len())]);
                        assert!(users.len() == all.len().min(MAX_LIST) || message.len() > 60000);
                    }
                    (
                        MgmtRequest::UserMetrics { offset },
                        Response::UserMetrics { total, users },
                    ) => {
                        let table = server.dir.snapshot();
                        assert_eq!(total as usize, table.len());
                        let all: Vec<UserMetrics> = table
                            .entries()
                            .skip(offset as usize)
                            .map(|(name, _)| UserMetrics {
                                name: name.to_vec(),
                                values: server.user_metrics(name),
                            })
                            .collect();
                        assert_eq!(users[..], all[..users.len().min(all.len())]);
                        assert!(users.len() == all.len().min(MAX_LIST) || message.len() > 60000);
                    }
                    (req, resp) => panic!("{resp:?} answers {req:?}"),
                }
            }
        }
    }
}

/// A management association driven by a script.
///
/// Input: a sequence of steps, each starting with a byte OP.
/// - OP & 3 is 0 or 1: a message on stream OP >> 2, then LEN and LEN bytes
///   (LEN X'FF': the rest of the input).
/// - OP & 3 is 2: with OP & 8, the endpoint's session places become full
///   (or free again); otherwise the slow log-in check answers: the user is
///   an administrator if OP & 4, else refused. A good log in claims a
///   session place and gets one unless they are full.
/// - OP & 3 is 3: the users' writer answers the pending change (it was applied
///   to the table when asked; its real status is sent unless OP & 4, which
///   sends Status OP >> 3 instead).
///
/// Checks: nothing panics; each log in is answered (or checked) as
/// `Login::parse` says; every request gets exactly one response, in order,
/// on its stream, that `Response::parse` reads as an answer to it with the
/// status or data the request calls for; `TooManyPending` exactly when more
/// than `MAX_PENDING` wait.
pub fn mgmt_session(data: &[u8]) {
    let server = Server::new();
    let mut session = Session::new();
    let mut model = Model {
        phase: Phase::LoggingIn,
        login_stream: None,
        checking: None,
        owed: VecDeque::new(),
        change_status: None,
        full: false,
        claimed: None,
    };
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op & 3 {
            0 | 1 => {
                let stream = u16::from(op >> 2);
                let (msg, tail) = match rest.split_first() {
                    None => (rest, rest),
                    Some((0xFF, tail)) => (tail, &tail[tail.len()..]),
                    Some((&len, tail)) => tail.split_at(usize::from(len).min(tail.len())),
                };
                rest = tail;
                if handed(&mut model, &mut session, &server, stream, msg).is_err() {
                    // The endpoint aborts the association.
                    return;
                }
            }
            2 if op & 8 != 0 => model.full = !model.full,
            2 => {
                let admin = match (&model.checking, op & 4 != 0) {
                    (Some(name), true) => Some(String::from_utf8_lossy(name).into()),
                    _ => None,
                };
                session.login_checked(admin, &server);
            }
            _ => {
                if let (Some(status), true) = (model.change_status.as_mut(), op & 4 != 0) {
                    *status = MgmtStatus::from(op >> 3);
                }
                let status = model.change_status.unwrap_or(MgmtStatus::Success);
                session.change_done(status, &server);
            }
        }
        model.take_actions(&mut session, &server);
    }
    if model.phase == Phase::Established {
        assert!(model.owed.is_empty(), "requests left unanswered");
    }
}

/// Hands one message to the session and the model.
fn handed(
    model: &mut Model,
    session: &mut Session,
    server: &Server,
    stream: u16,
    msg: &[u8],
) -> Result<(), TooManyPending> {
    let waiting = match model.phase {
        Phase::Checking => model.owed.len(),
        Phase::Changing => model.owed.len() - 1,
        _ => 0,
    };
    let result = session.handle_message(stream, msg, server);
    if waiting >= MAX_PENDING {
        assert_eq!(result, Err(TooManyPending));
        return result;
    }
    assert_eq!(result, Ok(()));
    match model.phase {
        Phase::Closed => assert!(session.poll_action().is_none(), "answered after close"),
        Phase::LoggingIn => {
            model.login_stream = Some(stream);
            let first = session.poll_action().expect("an answer to a log in");
            match (Login::parse(msg), first) {
                (Err(status), Action::Send { stream: s, message }) => {
                    assert_eq!(
                        (s, &message[..]),
                        (stream, &mgmt::emit_login_reply(status)[..])
                    );
                    model.on_send(stream, &message, server);
                }
                (Ok(login), Action::CheckLogin(creds)) => {
                    assert_eq!(
                        (&creds.username[..], &creds.password[..]),
                        (login.username, login.password)
                    );
                    model.phase = Phase::Checking;
                    model.checking = Some(creds.username.clone());
                }
                (Ok(login), Action::ClaimSlot) => {
                    // Only a known administrator's right password is quick.
                    let user = server
                        .dir
                        .snapshot()
                        .find(login.username)
                        .cloned()
                        .expect("a user");
                    assert_eq!(user.role, Role::Admin);
                    assert_eq!(user.secret.quick(login.password), Some(true));
                    model.claim(session, server);
                }
                (parsed, action) => panic!("{parsed:?} answered with {action:?}"),
            }
        }
        Phase::Checking | Phase::Established | Phase::Changing => {
            let expect = match MgmtRequest::parse(msg) {
                Err(e) => Expect::Error(e.status),
                Ok(
                    MgmtRequest::AddUser { .. }
                    | MgmtRequest::DeleteUser { .. }
                    | MgmtRequest::SetPassword { .. }
                    | MgmtRequest::Reload,
                ) => Expect::Change,
                Ok(_) => Expect::Query,
            };
            model.owed.push_back((stream, msg.to_vec(), expect));
        }
    }
    Ok(())
}

// ----------------------------------------------------------- access rules

/// A small deterministic generator (xorshift64*) seeded from the input.
struct Rng(u64);

impl Rng {
    fn of(data: &[u8]) -> Rng {
        let seed = data.iter().fold(0x9e37_79b9_7f4a_7c15u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[(self.next() % from.len() as u64) as usize]
    }
}

/// The values a file's words suggest, for requests that meet its rules:
/// addresses (each block's first address, and its neighbours), names (as
/// written, in another case, as a subdomain, with a trailing dot), users and
/// ports (and their neighbours), with a few of every kind besides.
struct Pools {
    addrs: Vec<IpAddr>,
    names: Vec<String>,
    users: Vec<String>,
    ports: Vec<u16>,
}

impl Pools {
    fn of(text: &str) -> Pools {
        let mut p = Pools {
            addrs: [
                "127.0.0.1",
                "::1",
                "::ffff:10.0.0.1",
                "10.0.0.1",
                "2001:db8::1",
            ]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect(),
            names: vec!["example.com".into(), "a.example.com".into(), "".into()],
            users: vec!["alice".into()],
            ports: vec![0, 1, 80, 443, 65535],
        };
        let words = text
            .split(|c: char| c.is_whitespace() || c == ',' || c == '"')
            .filter(|w| !w.is_empty())
            .take(64);
        for w in words {
            let addr = w.split('/').next().unwrap_or(w);
            if let Ok(ip) = addr.parse::<IpAddr>() {
                let next = |ip: IpAddr, d: i32| match ip {
                    IpAddr::V4(a) => IpAddr::V4(u32::from(a).wrapping_add_signed(d).into()),
                    IpAddr::V6(a) => IpAddr::V6(u128::from(a).wrapping_add_signed(d.into()).into()),
                };
                p.addrs.extend([ip, next(ip, 1), next(ip, -1)]);
            }
            for part in w.split('-') {
                if let Ok(n) = part.parse::<u16>() {
                    p.ports.extend([n, n.wrapping_add(1), n.wrapping_sub(1)]);
                }
            }
            let name = w.trim_start_matches('.');
            p.names.extend([
                name.to_owned(),
                name.to_ascii_uppercase(),
                format!("x.{name}"),
                format!("{name}."),
                format!("bad{name}"),
            ]);
            p.users.push(w.to_owned());
        }
        p
    }
}

/// Parses `data` as a rules file (invalid UTF-8 replaced), and checks:
///
/// - an error names the file and a line of the text, and is that line's own:
///   the lines before it parse, and the line alone fails the same way;
/// - rules print as text that parses to rules printing the same text, and
///   judging the same (verdict, rate, log);
/// - the index agrees with the rule-by-rule walk on requests made of the
///   file's own values, for `judge` and `judge_name`;
/// - a name decided before resolution gets that verdict for every address.
pub fn rules_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let rules = match Rules::parse("fuzz.rules", &text) {
        Ok(r) => r,
        Err(e) => {
            assert_eq!(&*e.file, "fuzz.rules");
            let lines: Vec<&str> = text.lines().collect();
            let n = e.line as usize;
            assert!((1..=lines.len()).contains(&n), "{e}");
            assert!(e.to_string().starts_with(&format!("fuzz.rules:{n}: ")));
            assert!(!e.message.is_empty());
            let before = lines[..n - 1].join("\n");
            assert!(Rules::parse("fuzz.rules", &before).is_ok(), "{e}");
            let alone = Rules::parse("fuzz.rules", lines[n - 1]).expect_err("the line alone");
            assert_eq!((alone.line, &alone.message), (1, &e.message));
            return;
        }
    };
    let printed = rules.to_string();
    let again = Rules::parse("printed", &printed)
        .unwrap_or_else(|e| panic!("{e} in the printed rules:\n{printed}"));
    assert_eq!(again.len(), rules.len());
    assert_eq!(again.to_string(), printed);

    let p = Pools::of(&text);
    let mut rng = Rng::of(data);
    let same = |a: rules::Verdict, b: rules::Verdict| {
        assert_eq!(
            (a.is_allow(), a.rate(), a.log()),
            (b.is_allow(), b.rate(), b.log())
        );
    };
    for _ in 0..32 {
        let user = rng.pick(&p.users);
        let nr = NameRequest {
            client: *rng.pick(&p.addrs),
            user: (!rng.next().is_multiple_of(4)).then_some(user.as_str()),
            admin: rng.next().is_multiple_of(3),
            cmd: *rng.pick(&[rules::Cmd::Connect, rules::Cmd::Bind, rules::Cmd::Udp]),
            name: rng.pick(&p.names).as_str(),
            port: *rng.pick(&p.ports),
        };
        let early = rules.judge_name(&nr);
        assert_eq!(early, rules.judge_name_linear(&nr), "{nr:?}");
        for _ in 0..4 {
            let r = nr.resolved(*rng.pick(&p.addrs));
            let v = rules.judge(&r);
            assert_eq!(v, rules.judge_linear(&r), "{r:?}");
            if let NameVerdict::Decided(d) = early {
                assert_eq!(v, d, "{r:?}");
            }
            same(v, again.judge(&r));
            let by_address = rules::Request { name: None, ..r };
            let v = rules.judge(&by_address);
            assert_eq!(v, rules.judge_linear(&by_address), "{by_address:?}");
            same(v, again.judge(&by_address));
        }
    }
}
