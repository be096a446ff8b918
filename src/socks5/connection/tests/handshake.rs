//! Whole handshakes driven through `Connection` with no socket: in one
//! buffer, one byte at a time, and at every split point into two and three
//! chunks.

use std::cell::Cell;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::time::Instant;

use super::super::*;
use super::{allow_all, client_ip};
// The byte fixtures both test modules use live with the wire tests.
use crate::socks5::wire::tests::{
    AUTH_ALICE, AUTH_EMPTY, GREETING_BOTH, GREETING_NO_AUTH, GREETING_NONE, REQUEST_DOMAIN,
    REQUEST_IPV4, REQUEST_IPV6,
};
use crate::users::{Role, UserTable, Verdict};

// ---------------------------------------------------------------- fixtures

const GREETING_USERPASS: &[u8] = &[0x05, 0x01, 0x02];
/// A SOCKS4 CONNECT to 127.0.0.1:80, user "", as a SOCKS4 client opens.
const SOCKS4_CONNECT: &[u8] = &[0x04, 0x01, 0x00, 0x50, 127, 0, 0, 1, 0x00];

const AUTH_ALICE_WRONG: &[u8] = b"\x01\x05alice\x05guess";
const AUTH_MALLORY: &[u8] = b"\x01\x07mallory\x06secret";
/// AUTH_ALICE with the SOCKS VER X'05' where X'01' belongs.
const AUTH_VER_5: &[u8] = b"\x05\x05alice\x06secret";

const REQUEST_CMD_09: &[u8] = &[0x05, 0x09, 0x00, 0x01, 192, 0, 2, 10, 0x00, 0x50];
/// ATYP X'05' is unassigned: known bad once the fourth byte is in.
const REQUEST_ATYP_05: &[u8] = &[0x05, 0x01, 0x00, 0x05, 192, 0, 2, 10, 0x00, 0x50];
const REQUEST_VER_4: &[u8] = &[0x04, 0x01, 0x00, 0x01, 192, 0, 2, 10, 0x00, 0x50];

/// Early payload a client sends right behind its request.
const PAYLOAD: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

const SELECT_NO_AUTH: &[u8] = &[0x05, 0x00];
const SELECT_USERPASS: &[u8] = &[0x05, 0x02];
const SELECT_NONE: &[u8] = &[0x05, 0xFF];
const AUTH_OK: &[u8] = &[0x01, 0x00];
const AUTH_FAILURE: &[u8] = &[0x01, 0x01];

/// A failure reply with the unspecified IPv4 BND.
fn failure(code: u8) -> Vec<u8> {
    vec![0x05, code, 0x00, 0x01, 0, 0, 0, 0, 0x00, 0x00]
}

fn target_ipv4() -> TargetAddr {
    TargetAddr::Ip(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(192, 0, 2, 10),
        80,
    )))
}

fn target_ipv6() -> TargetAddr {
    let ip = Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 1);
    TargetAddr::Ip(SocketAddr::V6(SocketAddrV6::new(ip, 8080, 0, 0)))
}

fn target_domain() -> TargetAddr {
    TargetAddr::Domain((*b"example.com").into(), 443)
}

// ----------------------------------------------------------- authenticators

/// An in-memory user list that counts how often it is asked.
struct TestUsers {
    users: &'static [(&'static str, &'static str)],
    calls: Cell<usize>,
}

impl TestUsers {
    fn none() -> Self {
        Self::with(&[])
    }

    fn alice() -> Self {
        Self::with(&[("alice", "secret"), ("bob", "hunter2")])
    }

    fn with(users: &'static [(&'static str, &'static str)]) -> Self {
        TestUsers {
            users,
            calls: Cell::new(0),
        }
    }
}

allow_all_context!(TestUsers);

impl Authenticator for TestUsers {
    fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    fn verify(&self, username: &[u8], password: &[u8]) -> Option<Arc<str>> {
        self.calls.set(self.calls.get() + 1);
        self.users
            .iter()
            .find(|(u, p)| u.as_bytes() == username && p.as_bytes() == password)
            .map(|(u, _)| Arc::from(*u))
    }
}

fn user_table_alice() -> UserTable {
    let mut t = UserTable::new();
    t.add(b"alice", b"secret", Role::Proxy).unwrap();
    t.add(b"root", b"toor", Role::Admin).unwrap();
    t
}

// ------------------------------------------------------------------ driving

/// What the handshake asked for, read from the actions a driver gets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// Nothing yet: more bytes are needed.
    Partial,
    /// The request is made: the target is resolved or connected to.
    Connect(TargetAddr),
    /// The handshake is refused with this outcome; the answer is queued.
    Close(Outcome),
    /// The credentials go to the slow check.
    Verify(Credentials),
}

/// The event in the actions `conn` has now (at most one).
fn next_event(conn: &mut Connection) -> Event {
    let mut event = Event::Partial;
    while let Some(action) = conn.poll_action() {
        let e = match action {
            Action::Verify(c) => Event::Verify(c),
            Action::Resolve { .. } | Action::Connect { .. } => {
                Event::Connect(conn.target().cloned().expect("a request has a target"))
            }
            Action::Decided(o) => Event::Close(o),
            // Sockets of attempts, not the handshake's business.
            Action::Cancel(_) => continue,
            other => panic!("{other:?} during a handshake"),
        };
        assert_eq!(event, Event::Partial, "two events at once, then {e:?}");
        event = e;
    }
    event
}

fn new_connection() -> Connection {
    Connection::new(Instant::now(), Arc::new(Config::default()))
}

/// What feeding a handshake produced.
#[derive(Debug)]
struct Fed {
    /// Each `poll_transmit` result, with how many input bytes had been fed.
    sent: Vec<(usize, Vec<u8>)>,
    event: Event,
    /// Input the machine holds unused (an incomplete message, or early data
    /// after the request) followed by the input not fed yet.
    rest: Vec<u8>,
    /// How many input bytes had been fed when the event came.
    fed: usize,
}

/// Feeds `input` cut at `cuts` (ascending) as a socket reader does, one
/// chunk per read. Stops at the first event other than `Partial`.
fn feed(conn: &mut Connection, auth: &dyn Context, input: &[u8], cuts: &[usize]) -> Fed {
    let now = conn.started();
    let mut sent = Vec::new();
    let mut fed = 0;
    for end in cuts.iter().copied().chain([input.len()]) {
        conn.handle_input(now, &input[fed..end], auth);
        fed = end;
        if let Some(t) = conn.poll_transmit() {
            assert!(!t.as_bytes().is_empty(), "poll_transmit gave no bytes");
            sent.push((fed, t.as_bytes().to_vec()));
        }
        assert!(conn.poll_transmit().is_none(), "poll_transmit must drain");
        let event = next_event(conn);
        if event != Event::Partial {
            return Fed {
                sent,
                event,
                rest: [&conn.unparsed[..], &input[fed..]].concat(),
                fed,
            };
        }
    }
    Fed {
        sent,
        event: Event::Partial,
        rest: conn.unparsed.clone(),
        fed,
    }
}

/// A handshake as the client sends it and as the server must answer.
#[derive(Debug)]
struct Script {
    input: Vec<u8>,
    /// Each reply, with how many input bytes must be in before it is due.
    replies: Vec<(usize, Vec<u8>)>,
    event: Event,
    /// How many input bytes must be in before `event` is returned.
    decided: usize,
    /// How many input bytes the handshake consumes.
    used: usize,
    user: Option<&'static str>,
}

impl Script {
    fn new() -> Self {
        Script {
            input: Vec::new(),
            replies: Vec::new(),
            event: Event::Partial,
            decided: 0,
            used: 0,
            user: None,
        }
    }

    /// The client sends a message; once it is all in, the server sends `reply`.
    fn msg(mut self, bytes: &[u8], reply: &[u8]) -> Self {
        self.input.extend_from_slice(bytes);
        if !reply.is_empty() {
            self.replies.push((self.input.len(), reply.to_vec()));
        }
        self.used = self.input.len();
        self.decided = self.input.len();
        self
    }

    /// The client sends its request and the server asks to connect.
    fn connect(mut self, request: &[u8], target: TargetAddr) -> Self {
        self = self.msg(request, &[]);
        self.event = Event::Connect(target);
        self
    }

    /// The client sends a message that ends the handshake once `after` of its
    /// bytes are in; the message is consumed only if `consumed`.
    fn close(
        mut self,
        bytes: &[u8],
        after: usize,
        consumed: bool,
        reply: &[u8],
        outcome: Outcome,
    ) -> Self {
        let start = self.input.len();
        self.input.extend_from_slice(bytes);
        self.decided = start + after;
        self.used = if consumed { self.input.len() } else { start };
        self.replies.push((self.decided, reply.to_vec()));
        self.event = Event::Close(outcome);
        self
    }

    /// Bytes after the handshake: early payload, or bytes never read.
    fn then(mut self, bytes: &[u8]) -> Self {
        self.input.extend_from_slice(bytes);
        if self.event == Event::Partial {
            self.decided = self.input.len();
        }
        self
    }

    fn user(mut self, name: &'static str) -> Self {
        self.user = Some(name);
        self
    }

    /// The `poll_transmit` results due when the input is cut at `cuts`:
    /// each reply comes with the first chunk that completes what it answers,
    /// and replies due with the same chunk come together.
    fn expected_sent(&self, cuts: &[usize]) -> Vec<(usize, Vec<u8>)> {
        let mut points = cuts.iter().copied().chain([self.input.len()]);
        let mut out: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut point = 0;
        for (due, bytes) in &self.replies {
            if point < *due {
                point = points
                    .find(|p| p >= due)
                    .expect("replies are due within input");
            }
            match out.last_mut() {
                Some((at, queued)) if *at == point => queued.extend_from_slice(bytes),
                _ => out.push((point, bytes.clone())),
            }
        }
        out
    }

    /// The chunk boundary at which the event is due when cut at `cuts`.
    fn decision_point(&self, cuts: &[usize]) -> usize {
        cuts.iter()
            .copied()
            .chain([self.input.len()])
            .find(|&p| p >= self.decided)
            .expect("decided within input")
    }

    /// Runs the script in one buffer, one byte at a time, and at every split
    /// into two and three chunks. Returns how many runs there were.
    fn check(&self, auth: &dyn Context) -> usize {
        let len = self.input.len();
        let mut cut_sets: Vec<Vec<usize>> = vec![Vec::new(), (1..len).collect()];
        cut_sets.extend((0..=len).map(|k| vec![k]));
        for i in 0..=len {
            cut_sets.extend((i..=len).map(|j| vec![i, j]));
        }
        for cuts in &cut_sets {
            let mut conn = new_connection();
            let fed = feed(&mut conn, auth, &self.input, cuts);
            let ctx = format!("cut at {cuts:?}: {fed:02x?}");
            assert_eq!(fed.sent, self.expected_sent(cuts), "{ctx}");
            assert_eq!(fed.event, self.event, "{ctx}");
            match self.event {
                // A refused client's bytes are dropped: what it sent after
                // the refusal is never read.
                Event::Close(_) => {
                    assert_eq!(fed.fed, self.decision_point(cuts), "{ctx}");
                    assert!(conn.unparsed.is_empty(), "{ctx}");
                    assert_eq!(fed.rest, &self.input[fed.fed..], "{ctx}");
                }
                _ => assert_eq!(fed.rest, &self.input[self.used..], "{ctx}"),
            }
            assert_eq!(conn.user().map(|u| &**u), self.user, "{ctx}");
            assert_ne!(conn.reading(), Reading::Relay, "{ctx}");
            if self.event != Event::Partial {
                // Nothing more is read, whatever arrives.
                let held = conn.unparsed.clone();
                let now = conn.started();
                conn.handle_input(now, &fed.rest, auth);
                conn.handle_input(now, REQUEST_IPV4, auth);
                assert!(conn.poll_transmit().is_none(), "{ctx}");
                assert_eq!(next_event(&mut conn), Event::Partial, "{ctx}");
                assert_eq!(conn.unparsed, held, "{ctx}");
            }
        }
        // One buffer, one byte at a time and the split at the very start are
        // distinct from the pairs; every run must be counted exactly once.
        cut_sets.len()
    }
}

/// The one-byte-at-a-time run must see each reply as soon as its message is in.
#[test]
fn expected_sent_model_matches_byte_at_a_time() {
    let s = Script::new()
        .msg(GREETING_USERPASS, SELECT_USERPASS)
        .msg(AUTH_ALICE, AUTH_OK)
        .connect(REQUEST_IPV4, target_ipv4());
    let cuts: Vec<usize> = (1..s.input.len()).collect();
    let g = GREETING_USERPASS.len();
    assert_eq!(
        s.expected_sent(&cuts),
        [
            (g, SELECT_USERPASS.to_vec()),
            (g + AUTH_ALICE.len(), AUTH_OK.to_vec())
        ]
    );
    assert_eq!(
        s.expected_sent(&[]),
        [(s.input.len(), [SELECT_USERPASS, AUTH_OK].concat())]
    );
}

// ----------------------------------------------------------- no auth method

#[test]
fn no_users_greeting_then_connect_ipv4() {
    let auth = TestUsers::none();
    Script::new()
        .msg(GREETING_NO_AUTH, SELECT_NO_AUTH)
        .connect(REQUEST_IPV4, target_ipv4())
        .then(PAYLOAD)
        .check(&auth);
    assert_eq!(auth.calls.get(), 0, "no password is asked for");
}

#[test]
fn no_users_connect_domainname_and_ipv6() {
    let auth = TestUsers::none();
    Script::new()
        .msg(GREETING_NO_AUTH, SELECT_NO_AUTH)
        .connect(REQUEST_DOMAIN, target_domain())
        .then(PAYLOAD)
        .check(&auth);
    Script::new()
        .msg(GREETING_NO_AUTH, SELECT_NO_AUTH)
        .connect(REQUEST_IPV6, target_ipv6())
        .check(&auth);
}

#[test]
fn no_users_client_offering_both_gets_no_auth() {
    Script::new()
        .msg(GREETING_BOTH, SELECT_NO_AUTH)
        .connect(REQUEST_IPV4, target_ipv4())
        .check(&TestUsers::none());
}

#[test]
fn no_users_client_offering_only_userpass_is_refused() {
    Script::new()
        .close(
            GREETING_USERPASS,
            GREETING_USERPASS.len(),
            true,
            SELECT_NONE,
            Outcome::NoAcceptableMethod,
        )
        .then(AUTH_ALICE)
        .check(&TestUsers::none());
}

#[test]
fn no_users_with_empty_user_table() {
    Script::new()
        .msg(GREETING_BOTH, SELECT_NO_AUTH)
        .connect(REQUEST_DOMAIN, target_domain())
        .then(PAYLOAD)
        .check(&UserTable::new());
}

// ------------------------------------------------ username/password method

#[test]
fn users_good_password_then_connect() {
    let auth = TestUsers::alice();
    let runs = Script::new()
        .msg(GREETING_BOTH, SELECT_USERPASS)
        .msg(AUTH_ALICE, AUTH_OK)
        .connect(REQUEST_DOMAIN, target_domain())
        .then(PAYLOAD)
        .user("alice")
        .check(&auth);
    assert_eq!(auth.calls.get(), runs, "one password check per handshake");
}

#[test]
fn users_bad_password_fails_and_remembers_the_name() {
    let auth = TestUsers::alice();
    let runs = Script::new()
        .msg(GREETING_USERPASS, SELECT_USERPASS)
        .close(
            AUTH_ALICE_WRONG,
            AUTH_ALICE_WRONG.len(),
            true,
            AUTH_FAILURE,
            Outcome::AuthFailed,
        )
        .then(REQUEST_IPV4)
        .user("alice")
        .check(&auth);
    assert_eq!(auth.calls.get(), runs, "one password check per handshake");
}

#[test]
fn users_unknown_user_fails() {
    Script::new()
        .msg(GREETING_USERPASS, SELECT_USERPASS)
        .close(
            AUTH_MALLORY,
            AUTH_MALLORY.len(),
            true,
            AUTH_FAILURE,
            Outcome::AuthFailed,
        )
        .user("mallory")
        .check(&TestUsers::alice());
}

#[test]
fn users_empty_username_and_password_fail() {
    // ULEN = 0, PLEN = 0 parse; they just match nobody.
    Script::new()
        .msg(GREETING_USERPASS, SELECT_USERPASS)
        .close(
            AUTH_EMPTY,
            AUTH_EMPTY.len(),
            true,
            AUTH_FAILURE,
            Outcome::AuthFailed,
        )
        .user("")
        .check(&TestUsers::alice());
}

#[test]
fn users_client_not_offering_userpass_is_refused() {
    let auth = TestUsers::alice();
    Script::new()
        .close(
            GREETING_NO_AUTH,
            GREETING_NO_AUTH.len(),
            true,
            SELECT_NONE,
            Outcome::NoAcceptableMethod,
        )
        .then(REQUEST_IPV4)
        .check(&auth);
    assert_eq!(auth.calls.get(), 0);
}

#[test]
fn nmethods_zero_is_refused() {
    for auth in [TestUsers::none(), TestUsers::alice()] {
        Script::new()
            .close(
                GREETING_NONE,
                GREETING_NONE.len(),
                true,
                SELECT_NONE,
                Outcome::NoAcceptableMethod,
            )
            .check(&auth);
    }
}

#[test]
fn auth_version_other_than_1_fails() {
    let auth = TestUsers::alice();
    Script::new()
        .msg(GREETING_USERPASS, SELECT_USERPASS)
        .close(AUTH_VER_5, 1, false, AUTH_FAILURE, Outcome::BadVersion)
        .check(&auth);
    assert_eq!(auth.calls.get(), 0, "no password check for a bad message");
    assert_eq!(
        new_connection().user(),
        None,
        "no name before authentication"
    );
}

#[test]
fn user_table_good_and_bad_password() {
    let table = user_table_alice();
    Script::new()
        .msg(GREETING_BOTH, SELECT_USERPASS)
        .msg(AUTH_ALICE, AUTH_OK)
        .connect(REQUEST_IPV6, target_ipv6())
        .then(PAYLOAD)
        .user("alice")
        .check(&table);
    // A wrong password, or a name the table does not have, is never refused
    // on the worker: the refusal comes from the slow check, which costs the
    // same whichever name was tried.
    for (auth, name) in [
        (AUTH_ALICE_WRONG, &b"alice"[..]),
        (AUTH_MALLORY, b"mallory"),
    ] {
        let mut conn = new_connection();
        let input = [GREETING_BOTH, auth].concat();
        let fed = feed(&mut conn, &table, &input, &[]);
        assert_eq!(fed.sent, [(input.len(), SELECT_USERPASS.to_vec())]);
        assert!(
            matches!(&fed.event, Event::Verify(c) if c.username == name),
            "{:?}",
            fed.event
        );
        conn.handle_verified(conn.started(), None, &TestUsers::none());
        assert_eq!(next_event(&mut conn), Event::Close(Outcome::AuthFailed));
        assert_eq!(conn.poll_transmit().unwrap().as_bytes(), AUTH_FAILURE);
    }
    Script::new()
        .close(
            GREETING_NO_AUTH,
            GREETING_NO_AUTH.len(),
            true,
            SELECT_NONE,
            Outcome::NoAcceptableMethod,
        )
        .check(&table);
}

// ---------------------------------------------------------- bad greetings

#[test]
fn greeting_version_4_is_refused_at_the_first_byte() {
    for auth in [TestUsers::none(), TestUsers::alice()] {
        Script::new()
            .close(SOCKS4_CONNECT, 1, false, SELECT_NONE, Outcome::BadVersion)
            .check(&auth);
    }
}

// --------------------------------------------------------------- requests

fn rejected(request: &[u8], code: u8, reply: Reply) -> Script {
    Script::new()
        .msg(GREETING_NO_AUTH, SELECT_NO_AUTH)
        .close(
            request,
            request.len(),
            true,
            &failure(code),
            Outcome::Rejected(reply),
        )
        .then(PAYLOAD)
}

#[test]
fn unknown_command_is_not_supported() {
    rejected(REQUEST_CMD_09, 0x07, Reply::CommandNotSupported).check(&TestUsers::none());
}

#[test]
fn unknown_command_after_authentication_is_not_supported() {
    Script::new()
        .msg(GREETING_USERPASS, SELECT_USERPASS)
        .msg(AUTH_ALICE, AUTH_OK)
        .close(
            REQUEST_CMD_09,
            REQUEST_CMD_09.len(),
            true,
            &failure(0x07),
            Outcome::Rejected(Reply::CommandNotSupported),
        )
        .user("alice")
        .check(&TestUsers::alice());
}

#[test]
fn unknown_address_type_is_refused_once_atyp_is_in() {
    Script::new()
        .msg(GREETING_NO_AUTH, SELECT_NO_AUTH)
        .close(
            REQUEST_ATYP_05,
            4,
            false,
            &failure(0x08),
            Outcome::Rejected(Reply::AddressTypeNotSupported),
        )
        .check(&TestUsers::none());
}

#[test]
fn request_version_other_than_5_is_a_bad_version() {
    // Outcome::BadVersion covers "the greeting or request had a VER other than
    // X'05'"; X'01' is the reply that tells the client.
    Script::new()
        .msg(GREETING_NO_AUTH, SELECT_NO_AUTH)
        .close(REQUEST_VER_4, 1, false, &failure(0x01), Outcome::BadVersion)
        .check(&TestUsers::none());
}

// -------------------------------------------------- incomplete handshakes

#[test]
fn incomplete_handshakes_wait() {
    let auth = TestUsers::alice();
    Script::new().then(&GREETING_BOTH[..3]).check(&auth);
    Script::new()
        .msg(GREETING_BOTH, SELECT_USERPASS)
        .then(&AUTH_ALICE[..7])
        .check(&auth);
    Script::new()
        .msg(GREETING_BOTH, SELECT_USERPASS)
        .msg(AUTH_ALICE, AUTH_OK)
        .then(&REQUEST_DOMAIN[..REQUEST_DOMAIN.len() - 1])
        .user("alice")
        .check(&auth);
    // No password check until the whole RFC 1929 request is in.
    let before = auth.calls.get();
    let mut conn = new_connection();
    let input = [GREETING_USERPASS, &AUTH_ALICE[..AUTH_ALICE.len() - 1]].concat();
    conn.handle_input(conn.started(), &input, &auth);
    assert_eq!(next_event(&mut conn), Event::Partial);
    assert_eq!(conn.unparsed, &AUTH_ALICE[..AUTH_ALICE.len() - 1]);
    assert_eq!(auth.calls.get(), before);
}

// ------------------------------------------------------- one buffer, used

#[test]
fn whole_handshake_in_one_buffer_keeps_the_payload_for_the_target() {
    let auth = TestUsers::alice();
    let input = [GREETING_BOTH, AUTH_ALICE, REQUEST_DOMAIN, PAYLOAD].concat();
    let mut conn = new_connection();
    conn.handle_input(conn.started(), &input, &auth);
    assert_eq!(next_event(&mut conn), Event::Connect(target_domain()));
    assert_eq!(conn.unparsed, PAYLOAD);
    assert_eq!(conn.user().map(|u| &**u), Some("alice"));
    let t = conn.poll_transmit().expect("replies queued");
    assert_eq!(t.as_bytes(), [0x05, 0x02, 0x01, 0x00]);
    assert!(conn.poll_transmit().is_none());
}

// -------------------------------------------------- connected and failed

/// A connection that asked to connect to REQUEST_DOMAIN's target, resolved
/// to one address, with its earlier replies drained.
fn connecting() -> Connection {
    let mut conn = new_connection();
    let input = [GREETING_NO_AUTH, REQUEST_DOMAIN].concat();
    let now = conn.started();
    conn.handle_input(now, &input, &TestUsers::none());
    assert_eq!(next_event(&mut conn), Event::Connect(target_domain()));
    assert_eq!(conn.poll_transmit().unwrap().as_bytes(), SELECT_NO_AUTH);
    conn.handle_resolved(now, Ok(vec![peer()]), &TestUsers::none());
    assert_eq!(
        conn.poll_action(),
        Some(Action::Connect {
            id: AttemptId(0),
            addr: peer()
        })
    );
    conn
}

/// The address REQUEST_DOMAIN's name resolves to here.
fn peer() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 80), 443))
}

fn connected(conn: &mut Connection, bound: SocketAddr) {
    conn.handle_connected(conn.started(), AttemptId(0), bound, peer());
}

#[test]
fn poll_transmit_is_none_when_nothing_is_queued() {
    let mut conn = new_connection();
    assert!(conn.poll_transmit().is_none());
    conn.handle_input(conn.started(), &[], &TestUsers::none());
    assert_eq!(next_event(&mut conn), Event::Partial);
    assert!(conn.poll_transmit().is_none());
    let mut conn = connecting();
    assert!(conn.poll_transmit().is_none());
    assert_ne!(conn.reading(), Reading::Relay);
}

#[test]
fn connected_queues_success_with_ipv4_bnd() {
    let mut conn = connecting();
    let bound = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 40000));
    connected(&mut conn, bound);
    assert_eq!(conn.reading(), Reading::Relay);
    let t = conn.poll_transmit().expect("success reply queued");
    assert_eq!(
        t.as_bytes(),
        [0x05, 0x00, 0x00, 0x01, 198, 51, 100, 7, 0x9C, 0x40]
    );
    assert!(conn.poll_transmit().is_none());
    // The tunnel is open: the machine reads nothing more.
    let held = conn.unparsed.clone();
    conn.handle_input(conn.started(), PAYLOAD, &TestUsers::none());
    assert_eq!(conn.unparsed, held);
    assert!(conn.poll_transmit().is_none());
}

#[test]
fn connected_queues_success_with_ipv6_bnd() {
    let mut conn = connecting();
    let ip = Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 0x0bad);
    connected(&mut conn, SocketAddr::V6(SocketAddrV6::new(ip, 443, 0, 0)));
    assert_eq!(conn.reading(), Reading::Relay);
    let expected = [
        0x05, 0x00, 0x00, 0x04, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0b, 0xad, //
        0x01, 0xbb,
    ];
    assert_eq!(conn.poll_transmit().unwrap().as_bytes(), expected);
    assert!(conn.poll_transmit().is_none());
}

#[test]
fn every_reply_queued_before_one_poll_comes_out_in_order() {
    // The largest queue: method selection, auth status and an IPv6 reply, all
    // before the driver polls once.
    let auth = TestUsers::alice();
    let mut conn = new_connection();
    let input = [GREETING_USERPASS, AUTH_ALICE, REQUEST_IPV4].concat();
    let now = conn.started();
    conn.handle_input(now, &input, &auth);
    assert_eq!(next_event(&mut conn), Event::Connect(target_ipv4()));
    let ip = Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 2);
    let TargetAddr::Ip(target) = target_ipv4() else {
        unreachable!("an IP target")
    };
    conn.handle_connected(
        now,
        AttemptId(0),
        SocketAddr::V6(SocketAddrV6::new(ip, 1, 0, 0)),
        target,
    );
    let t = conn.poll_transmit().expect("replies queued");
    let mut expected = vec![0x05, 0x02, 0x01, 0x00, 0x05, 0x00, 0x00, 0x04];
    expected.extend_from_slice(&ip.octets());
    expected.extend_from_slice(&[0x00, 0x01]);
    assert_eq!(t.as_bytes(), expected);
    assert!(format!("{t:?}").starts_with("Transmit([05, 02, 01, 00, 05"));
    assert!(conn.poll_transmit().is_none());
}

#[test]
fn failed_queues_that_reply_for_every_failure_code() {
    for code in 0x01..=0x08u8 {
        let reply = Reply::from(code);
        let mut conn = connecting();
        conn.fail(conn.started(), reply);
        assert_eq!(
            next_event(&mut conn),
            Event::Close(Outcome::Rejected(reply))
        );
        assert_eq!(conn.outcome(), Some(Outcome::Rejected(reply)));
        assert_ne!(conn.reading(), Reading::Relay);
        assert_eq!(conn.poll_transmit().unwrap().as_bytes(), failure(code));
        assert!(conn.poll_transmit().is_none());
        conn.handle_input(conn.started(), PAYLOAD, &TestUsers::none());
        assert!(conn.unparsed.is_empty());
        assert!(conn.poll_transmit().is_none());
    }
}

#[test]
fn failed_without_draining_keeps_earlier_replies_first() {
    let auth = TestUsers::alice();
    let mut conn = new_connection();
    let input = [GREETING_BOTH, AUTH_ALICE, REQUEST_DOMAIN].concat();
    let now = conn.started();
    conn.handle_input(now, &input, &auth);
    assert_eq!(next_event(&mut conn), Event::Connect(target_domain()));
    let no_name = io::Error::new(io::ErrorKind::NotFound, "no such name");
    conn.handle_resolved(now, Err(no_name), &TestUsers::none());
    assert_eq!(
        next_event(&mut conn),
        Event::Close(Outcome::Rejected(Reply::HostUnreachable))
    );
    let expected = [&[0x05, 0x02, 0x01, 0x00][..], &failure(0x04)].concat();
    assert_eq!(conn.poll_transmit().unwrap().as_bytes(), expected);
    assert!(conn.poll_transmit().is_none());
}

// ------------------------------------------------------------- anonymity

/// Answers every log in with "ask the slow check".
struct Deferring;

/// The real user table, with rules that allow everything.
impl Context for UserTable {
    fn rules(&self) -> &Rules {
        allow_all()
    }

    fn is_admin(&self, user: &str) -> bool {
        self.find(user.as_bytes())
            .is_some_and(|u| u.role == Role::Admin)
    }

    fn client(&self) -> std::net::IpAddr {
        client_ip()
    }
}

allow_all_context!(Deferring);

impl Authenticator for Deferring {
    fn requires_auth(&self) -> bool {
        true
    }

    fn verify(&self, username: &[u8], _password: &[u8]) -> Option<Arc<str>> {
        Some(String::from_utf8_lossy(username).into())
    }

    fn check(&self, _username: &[u8], _password: &[u8]) -> Verdict {
        Verdict::Defer
    }
}

#[test]
fn anonymous_until_a_user_name_or_a_request_comes() {
    // With users: the greeting and an incomplete log in are anonymous;
    // credentials being checked, or checked, are not.
    let mut conn = new_connection();
    let now = conn.started();
    assert!(conn.is_anonymous());
    conn.handle_input(now, &GREETING_USERPASS[..2], &Deferring);
    assert_eq!(next_event(&mut conn), Event::Partial);
    assert!(conn.is_anonymous());
    conn.handle_input(now, &GREETING_USERPASS[2..], &Deferring);
    assert_eq!(next_event(&mut conn), Event::Partial);
    assert!(conn.unparsed.is_empty(), "the greeting is used");
    assert!(conn.is_anonymous());
    conn.handle_input(now, &AUTH_ALICE[..4], &Deferring);
    assert_eq!(next_event(&mut conn), Event::Partial);
    assert!(conn.is_anonymous());
    conn.handle_input(now, &AUTH_ALICE[4..], &Deferring);
    let event = next_event(&mut conn);
    assert!(conn.unparsed.is_empty(), "the log in is used");
    assert!(matches!(event, Event::Verify(_)), "{event:?}");
    assert!(!conn.is_anonymous(), "its credentials are being checked");
    conn.handle_verified(now, Some("alice".into()), &Deferring);
    assert_eq!(next_event(&mut conn), Event::Partial);
    assert!(!conn.is_anonymous(), "logged in");

    // Checked at once, the same.
    let auth = TestUsers::alice();
    let mut conn = new_connection();
    let input = [GREETING_USERPASS, AUTH_ALICE].concat();
    conn.handle_input(now, &input, &auth);
    assert_eq!(next_event(&mut conn), Event::Partial);
    assert!(conn.unparsed.is_empty());
    assert!(!conn.is_anonymous(), "logged in");
    // A failed log in is not anonymous either (and is closing).
    let mut conn = new_connection();
    let input = [GREETING_USERPASS, AUTH_ALICE_WRONG].concat();
    conn.handle_input(now, &input, &auth);
    assert!(matches!(next_event(&mut conn), Event::Close(_)));
    assert!(!conn.is_anonymous());

    // No users: anonymous until the request is made.
    let none = TestUsers::none();
    let mut conn = new_connection();
    conn.handle_input(now, GREETING_NO_AUTH, &none);
    assert_eq!(next_event(&mut conn), Event::Partial);
    assert!(conn.is_anonymous());
    conn.handle_input(now, REQUEST_IPV4, &none);
    assert_eq!(next_event(&mut conn), Event::Connect(target_ipv4()));
    assert!(conn.unparsed.is_empty());
    assert!(!conn.is_anonymous(), "its request is made");
}
