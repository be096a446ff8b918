//! One SOCKS connection, from the client's first byte to its close, as a
//! state machine with no I/O (the shape of quinn-proto's `Connection`).
//!
//! The driver (the reactor) owns the sockets. It hands the machine what
//! happened, with the time: bytes from the client (`handle_input`), the
//! answers of slow work (`handle_verified`, `handle_resolved`), the fate of
//! connection attempts (`handle_connected`, `handle_connect_failed`), what
//! the relay saw (`handle_relayed`, `handle_stream_end`, `handle_sent`), and
//! its deadlines (`handle_timeout`). It asks what to do: bytes for the client
//! (`poll_transmit`), things to do (`poll_action`: verify, resolve, connect,
//! cancel, relay, shut down, close), when to wake it (`poll_timeout`), and
//! what to do with the client's bytes (`reading`). The machine never reads a
//! clock or touches a socket, so tests drive it with a fake clock.
//!
//! ```text
//! (ProxyHeader ->) Greeting -> Auth -> Verifying -> Request -> Resolving -> Connecting -> Established -> Closed
//!     \_________\_________\____________\_________\___________/
//!                                refusal: its answer, then Lingering -> Closed
//! ```
//! (ProxyHeader only from a balancer, `--proxy-protocol-from`; Auth and
//! Verifying only with users, Resolving only for a name.) Any
//! state closes when the client's socket fails or the grace period after a
//! stop ends; before the request, also when the client leaves or the
//! handshake timeout passes. docs/connection.md has the whole diagram.

mod attempts;
mod handshake;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::rules::{self, Cmd, NameRequest, NameVerdict, Origin, Rate, Rules, Verdict};
use crate::socks5::proxy_protocol;
use crate::socks5::reply_for_error;
use crate::socks5::wire::{self, Command, Reply, TargetAddr};
use crate::users::{Authenticator, Credentials};
use attempts::{Candidate, Schedule};
pub use attempts::{MAX_ATTEMPTS, interleave};

/// What the machine consults besides its own state: the users (to log
/// clients in) and the access rules (to judge their requests).
pub trait Context: Authenticator {
    /// The access rules in force.
    fn rules(&self) -> &Rules;
    /// Whether `user` is an administrator (`user @admins` in the rules).
    fn is_admin(&self, user: &str) -> bool;
    /// The client's address, as the rules see it (kept by the driver, not
    /// in every connection).
    fn client(&self) -> IpAddr;
    /// Takes one of `user`'s sessions (`--max-sessions-per-user`); false
    /// when the user has as many as allowed. The driver gives it back when
    /// the connection closes ([`Connection::holds_user_session`]).
    fn take_user_session(&self, user: &Arc<str>) -> bool {
        let _ = user;
        true
    }
}

/// Why a request of a user with as many sessions as allowed is refused
/// (X'02', like a rule's denial; the access log says `rule=default:...`).
pub const USER_LIMIT: Origin = Origin::Default("max-sessions-per-user");

/// Timeouts and limits every connection of a worker shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// From accept to the reply to the request.
    pub handshake_timeout: Duration,
    /// For each connection attempt.
    pub connect_timeout: Duration,
    /// RFC 8305's Connection Attempt Delay: how long an attempt runs alone
    /// before the next address is tried too.
    pub connection_attempt_delay: Duration,
    /// Close a tunnel that moved no byte for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// How long a refused client may take to read its reply and go away.
    pub linger: Duration,
    /// How long a connection may go on after a stop is asked for.
    pub grace: Duration,
    /// Client bytes held at most while they cannot be used yet: an
    /// incomplete message, what came while a password was checked, early
    /// data for the target. More is not a handshake.
    pub max_unparsed: usize,
    /// How long a BIND waits for its inbound connection.
    pub bind_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            connection_attempt_delay: Duration::from_millis(250),
            idle_timeout: None,
            linger: Duration::from_secs(2),
            grace: Duration::from_secs(10),
            max_unparsed: 32 * 1024,
            bind_timeout: Duration::from_secs(120),
        }
    }
}

/// A connection attempt, named so the driver can find its socket. At most
/// [`MAX_ATTEMPTS`] per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId(u8);

impl AttemptId {
    /// BIND's inbound connection, which takes the place of attempt 0.
    pub const INBOUND: AttemptId = AttemptId(0);

    /// 0 for the first address tried, 1 for the second, and so on.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One direction of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to target.
    Up,
    /// Target to client.
    Down,
}

/// What the driver must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Count the handshake's outcome (given once, when it is decided).
    Decided(Outcome),
    /// Check these credentials with the slow `Authenticator::verify` off
    /// the worker, then call `handle_verified`.
    Verify(Credentials),
    /// Resolve `host`, then call `handle_resolved` with addresses for `port`.
    Resolve {
        /// The name, UTF-8 and not an IP literal.
        host: String,
        /// DST.PORT.
        port: u16,
    },
    /// Open a non-blocking connection to `addr`; report how it ends with
    /// `handle_connected` or `handle_connect_failed`.
    Connect {
        /// The attempt.
        id: AttemptId,
        /// The address to connect to.
        addr: SocketAddr,
    },
    /// Close attempt `id`'s socket at once (it timed out, another attempt
    /// won, or the request ended).
    Cancel(AttemptId),
    /// UDP ASSOCIATE: open the association's relay socket (the request's
    /// DST, [`Connection::target`], says where the client will send from),
    /// then call `handle_associated`.
    Associate,
    /// BIND: listen on an ephemeral port of the local address that reaches
    /// `peer` (the unspecified address: the client's own local address),
    /// then call `handle_listening`; inbound connections go to
    /// `handle_incoming`.
    Listen {
        /// DST.ADDR and DST.PORT of the request, resolved.
        peer: SocketAddr,
    },
    /// BIND: close the listening socket.
    StopListening,
    /// Attempt `via` is the target now: relay between it and the client,
    /// `early_data` (what the client sent behind its request) first. For
    /// BIND, `via` is the inbound connection that was accepted.
    Relay {
        /// The attempt that connected.
        via: AttemptId,
        /// Bytes for the target that arrived before the tunnel was open.
        early_data: Vec<u8>,
    },
    /// Shut down the write side of this direction's destination (`Up`: the
    /// target, `Down`: the client): everything for it has been written.
    Shutdown(Direction),
    /// The PROXY protocol header came: the client is `SocketAddr` from now
    /// on (the balancer's own address when the header carries none). Apply
    /// what needs the client's address, then call `handle_proxied`.
    Client(SocketAddr),
    /// Close every socket of the connection. Nothing else follows.
    Close,
}

/// How a handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target is connected: the success reply is queued.
    Succeeded,
    /// The greeting or request had a VER other than X'05', or the RFC 1929
    /// request a VER other than X'01'.
    BadVersion,
    /// No method the client offered is acceptable (reply X'FF').
    NoAcceptableMethod,
    /// RFC 1929 authentication failed.
    AuthFailed,
    /// The request was refused, or no target address could be connected,
    /// with this reply (never `Succeeded`).
    Rejected(Reply),
    /// The access rules denied the request (reply X'02'): this rule.
    Denied(Origin),
    /// Closed for its PROXY protocol header.
    ProxyHeader(ProxyRefusal),
}

/// Why a connection was closed for a PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyRefusal {
    /// A header from a peer that is not a balancer: answered X'FF', as any
    /// greeting of another version (the header could name any client).
    Untrusted,
    /// A balancer sent bytes that are not a valid header.
    Invalid(proxy_protocol::Invalid),
    /// A balancer sent the start of a header and left, or no complete
    /// header within the handshake timeout.
    Missing,
}

/// What the driver does with what the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Read it and pass it to `handle_input`.
    Handshake,
    /// Leave it in the socket for now (the request is being served).
    Paused,
    /// Relay it to the target.
    Relay,
    /// Read it and drop it (a refused client is lingering).
    Discard,
}

/// Bytes queued for the client: at most a method selection, an RFC 1929
/// status and a reply.
#[derive(Clone, Copy)]
pub struct Transmit {
    buf: [u8; 2 + 2 + wire::MAX_REPLY_LEN],
    len: u8,
}

impl Transmit {
    const EMPTY: Transmit = Transmit {
        buf: [0; 2 + 2 + wire::MAX_REPLY_LEN],
        len: 0,
    };

    /// The bytes to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    fn push(&mut self, bytes: &[u8]) {
        let start = self.len as usize;
        self.buf[start..start + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len() as u8;
    }

    /// Every reply to a request is built here.
    fn push_reply(&mut self, reply: Reply, bound: SocketAddr) {
        let start = self.len as usize;
        let n = wire::emit_reply(reply, bound, &mut self.buf[start..]);
        self.len += n as u8;
    }
}

impl std::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transmit({:02x?})", self.as_bytes())
    }
}

/// Progress of one direction of an open tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Bytes may still come.
    Open,
    /// Its source ended and all was delivered: the driver is to shut the
    /// destination's write side.
    Shutting,
    /// Ended and passed on.
    Done,
}

#[derive(Debug)]
enum State {
    /// A balancer's connection: waiting for its PROXY protocol header.
    ProxyHeader {
        /// The balancer's address.
        balancer: SocketAddr,
    },
    /// The header came and names `client`; the driver is to apply it
    /// (`ask` until it has been told) and answer with `handle_proxied`.
    Proxied { client: SocketAddr, ask: bool },
    /// Waiting for the version identifier/method selection message.
    Greeting,
    /// Waiting for the RFC 1929 request.
    Auth,
    /// RFC 1929 credentials are being checked off the worker (`ask` until
    /// the driver has taken them).
    Verifying { ask: Option<Box<Credentials>> },
    /// Waiting for the SOCKS request.
    Request,
    /// The target is a name being resolved (`ask` until the driver took it).
    Resolving { ask: bool },
    /// Connection attempts run (to `Connection::candidates`).
    Connecting(Schedule),
    /// The success reply is queued; bytes flow both ways.
    Established {
        last_active: Instant,
        /// The winning attempt, until the driver is told.
        relay: Option<AttemptId>,
        up: End,
        down: End,
        /// The driver stopped reading for the tunnel's rate limit until the
        /// deadline.
        throttled: bool,
    },
    /// UDP ASSOCIATE: the driver is opening the relay socket (`ask` until
    /// it has been told).
    Associating { ask: bool },
    /// UDP ASSOCIATE: the success reply is queued and datagrams are relayed
    /// by the driver; the control connection's bytes are read and dropped.
    Associated { last_active: Instant },
    /// BIND: the driver is opening the listening socket for `peer` (`ask`
    /// until it has been told).
    Listening { peer: SocketAddr, ask: bool },
    /// BIND: the first reply is queued; waiting until the deadline (the
    /// bind timeout) for a connection from `expect` (any peer when it is
    /// unspecified). `reject`: the inbound connection the driver holds is
    /// not it, and is to be closed.
    Binding { expect: IpAddr, reject: bool },
    /// A refusal is queued; then the client gets `linger` to go away.
    Lingering { shut: End },
    /// Nothing more happens.
    Closed,
}

/// Whose connection it is, as the driver said at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// The client's own (the driver admitted its address at accept).
    Client,
    /// A balancer's, whose PROXY header has not named a client the driver
    /// admitted.
    Balancer,
    /// A balancer's, for the client its header named, which the driver
    /// admitted.
    Admitted,
    /// A balancer's own (its header was LOCAL or named no address: a
    /// health check, as a rule), the balancer admitted as the client.
    Own,
}

/// What few connections have, boxed so that the others pay one pointer.
#[derive(Debug, Default)]
struct Rare {
    /// The rate limits of the rule that allowed the request (boxed: a
    /// balancer's connections have `via` and seldom this).
    rate: Option<Box<Rate>>,
    /// The balancer a PROXY header that named the client came through.
    via: Option<SocketAddr>,
}

/// One client connection, from the greeting to the close.
#[derive(Debug)]
pub struct Connection {
    state: State,
    config: Arc<Config>,
    /// The handshake deadline, or while lingering the end of it.
    deadline: Instant,
    /// When the grace period after a stop ends.
    stop_at: Option<Instant>,
    started: Instant,
    out: Transmit,
    /// Client bytes not used yet (see [`Config::max_unparsed`]); after the
    /// request, early data for the target.
    unparsed: Vec<u8>,
    /// The addresses of the request and their attempts, kept until every
    /// attempt's socket is settled with the driver (empty: no allocation).
    candidates: Box<[Candidate]>,
    user: Option<Arc<str>>,
    /// CMD of the request, once it came.
    command: Option<Command>,
    /// The rule that allowed the request, when the rules decided on the
    /// name before it was resolved (its addresses are not judged again).
    allowed_by_name: bool,
    /// The rule that decided the request, and whether it asked for a log line.
    rule: Option<(Origin, bool)>,
    /// One of the user's sessions is taken (see `Context::take_user_session`).
    user_session: bool,
    /// The allowing rule's rate limits and the balancer's address: most
    /// tunnels have neither.
    rare: Option<Box<Rare>>,
    /// Whose connection it is.
    peer: Peer,
    target: Option<TargetAddr>,
    connected: Option<SocketAddr>,
    /// A BIND's listening socket is open with the driver.
    listening: bool,
    outcome: Option<Outcome>,
    /// The outcome is decided and the driver has not been told.
    report: bool,
}

impl Connection {
    /// A connection accepted at `now`, waiting for its greeting.
    pub fn new(now: Instant, config: Arc<Config>) -> Self {
        Connection {
            allowed_by_name: false,
            rule: None,
            user_session: false,
            rare: None,
            peer: Peer::Client,
            state: State::Greeting,
            deadline: now + config.handshake_timeout,
            config,
            stop_at: None,
            started: now,
            out: Transmit::EMPTY,
            unparsed: Vec::new(),
            candidates: Box::default(),
            user: None,
            command: None,
            target: None,
            connected: None,
            listening: false,
            outcome: None,
            report: false,
        }
    }

    /// A connection accepted at `now` from `balancer`, a peer of
    /// `--proxy-protocol-from`: a PROXY protocol header must come first,
    /// within the handshake timeout.
    pub fn behind_balancer(now: Instant, config: Arc<Config>, balancer: SocketAddr) -> Self {
        let mut c = Connection::new(now, config);
        c.state = State::ProxyHeader { balancer };
        c.peer = Peer::Balancer;
        c
    }

    // ------------------------------------------------------------ queries

    /// The balancer the connection came through, when its PROXY header
    /// named the client.
    pub fn via(&self) -> Option<SocketAddr> {
        self.rare.as_ref().and_then(|r| r.via)
    }

    /// Whether the driver admitted the client's address: at accept for a
    /// client's own connection, in `handle_proxied` for a balancer's. Its
    /// `--max-sessions-per-client` count is to be given back at the close.
    pub fn client_admitted(&self) -> bool {
        self.peer != Peer::Balancer
    }

    /// Whether this was a balancer's health check: a balancer's
    /// connection that left without a byte, or whose header was its own
    /// (LOCAL, or no address) and that left before the handshake came to
    /// anything. Such a connection is no client's: the access log leaves
    /// it out (a balancer checks every few seconds, for ever).
    pub fn is_health_check(&self) -> bool {
        match self.peer {
            Peer::Balancer => self.outcome.is_none(),
            Peer::Own => self.outcome.is_none() && self.command.is_none(),
            Peer::Client | Peer::Admitted => false,
        }
    }

    /// When the connection was accepted.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The authenticated user, or for a failed log in the name that was tried.
    pub fn user(&self) -> Option<&Arc<str>> {
        self.user.as_ref()
    }

    /// CMD of the request, once it came.
    pub fn command(&self) -> Option<Command> {
        self.command
    }

    /// The rate limits of the rule that allowed the request, if it set any.
    pub fn rate(&self) -> Option<&Rate> {
        self.rare.as_ref().and_then(|r| r.rate.as_deref())
    }

    /// Whether one of the user's sessions is taken, to give back when the
    /// connection closes.
    pub fn holds_user_session(&self) -> bool {
        self.user_session
    }

    /// The rule that allowed or denied the request, once the rules judged
    /// it, and whether it says `log`.
    pub fn rule(&self) -> Option<(Origin, bool)> {
        self.rule
    }

    /// The target as the client asked for it (for UDP ASSOCIATE, where the
    /// client said it would send from; for BIND, the peer it expects).
    pub fn target(&self) -> Option<&TargetAddr> {
        self.target.as_ref()
    }

    /// Takes the target, for a record written as the connection closes.
    pub fn take_target(&mut self) -> Option<TargetAddr> {
        self.target.take()
    }

    /// The address of the target that was connected (for BIND, the peer
    /// that connected).
    pub fn connected(&self) -> Option<SocketAddr> {
        self.connected
    }

    /// How the handshake ended; `None` while it has not (or never did: the
    /// client left or timed out).
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    /// Whether the client is still anonymous: no user name has come with
    /// it, neither logged in nor being checked, and it has made no request.
    /// Once false, never true again.
    pub fn is_anonymous(&self) -> bool {
        self.user.is_none()
            && matches!(
                self.state,
                State::ProxyHeader { .. }
                    | State::Proxied { .. }
                    | State::Greeting
                    | State::Auth
                    | State::Request
            )
    }

    /// What to do with the client's bytes now.
    #[inline]
    pub fn reading(&self) -> Reading {
        match self.state {
            // A BIND's client bytes before the second reply are kept as early
            // data; an association's control bytes are dropped (its end is
            // the association's).
            State::ProxyHeader { .. }
            | State::Greeting
            | State::Auth
            | State::Verifying { .. }
            | State::Request
            | State::Binding { .. }
            | State::Associated { .. } => Reading::Handshake,
            // The driver applies the client's address before more is read.
            State::Proxied { .. }
            | State::Resolving { .. }
            | State::Connecting(_)
            | State::Associating { .. }
            | State::Listening { .. }
            | State::Closed => Reading::Paused,
            State::Established { .. } => Reading::Relay,
            State::Lingering { .. } => Reading::Discard,
        }
    }

    // ------------------------------------------------------------ outputs

    /// Takes the bytes queued for the client, if any.
    #[inline]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.out.len == 0 {
            return None;
        }
        Some(std::mem::replace(&mut self.out, Transmit::EMPTY))
    }

    /// The next thing to do, if any. After [`Action::Close`] the connection
    /// is over; polling again gives `Close` again. An outcome decided as
    /// the connection closed (a balancer's bad header) comes first.
    #[inline]
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.report {
            self.report = false;
            if let Some(o) = self.outcome {
                return Some(Action::Decided(o));
            }
        }
        if let State::Closed = self.state {
            return Some(Action::Close);
        }
        if !self.candidates.is_empty() {
            if let Some(action) = attempts::poll_action(&mut self.candidates) {
                return Some(action);
            }
            if !matches!(self.state, State::Connecting(_)) && attempts::is_settled(&self.candidates)
            {
                self.candidates = Box::default();
            }
        }
        if self.listening && !matches!(self.state, State::Binding { .. }) {
            self.listening = false;
            return Some(Action::StopListening);
        }
        match &mut self.state {
            State::Proxied { client, ask } if *ask => {
                *ask = false;
                Some(Action::Client(*client))
            }
            State::Verifying { ask } => ask.take().map(|c| Action::Verify(*c)),
            State::Associating { ask } if *ask => {
                *ask = false;
                Some(Action::Associate)
            }
            State::Listening { peer, ask } if *ask => {
                *ask = false;
                Some(Action::Listen { peer: *peer })
            }
            State::Binding { reject, .. } if *reject => {
                *reject = false;
                Some(Action::Cancel(AttemptId::INBOUND))
            }
            State::Resolving { ask } if *ask => {
                *ask = false;
                match &self.target {
                    Some(TargetAddr::Domain(name, port)) => Some(Action::Resolve {
                        // Only valid UTF-8 is ever sent to the resolver.
                        host: String::from_utf8_lossy(name).into_owned(),
                        port: *port,
                    }),
                    _ => None,
                }
            }
            State::Established {
                relay, up, down, ..
            } => {
                if let Some(via) = relay.take() {
                    let early_data = std::mem::take(&mut self.unparsed);
                    return Some(Action::Relay { via, early_data });
                }
                for (end, dir) in [(up, Direction::Up), (down, Direction::Down)] {
                    if *end == End::Shutting {
                        *end = End::Done;
                        return Some(Action::Shutdown(dir));
                    }
                }
                None
            }
            State::Lingering { shut } if *shut == End::Shutting => {
                *shut = End::Done;
                Some(Action::Shutdown(Direction::Down))
            }
            _ => None,
        }
    }

    /// When `handle_timeout` must be called next, if ever.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = match &self.state {
            State::ProxyHeader { .. }
            | State::Proxied { .. }
            | State::Greeting
            | State::Auth
            | State::Verifying { .. }
            | State::Request
            | State::Resolving { .. }
            | State::Associating { .. }
            | State::Listening { .. }
            | State::Binding { .. }
            | State::Lingering { .. } => Some(self.deadline),
            State::Connecting(schedule) => Some(match schedule.poll_timeout(&self.candidates) {
                Some(t) => t.min(self.deadline),
                None => self.deadline,
            }),
            State::Established {
                last_active,
                throttled,
                ..
            } => {
                let idle = self.config.idle_timeout.map(|idle| *last_active + idle);
                match (idle, *throttled) {
                    (Some(i), true) => Some(i.min(self.deadline)),
                    (None, true) => Some(self.deadline),
                    (i, false) => i,
                }
            }
            State::Associated { last_active } => {
                self.config.idle_timeout.map(|idle| *last_active + idle)
            }
            State::Closed => return None,
        };
        match (own, self.stop_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ------------------------------------------------------------- events

    /// Bytes the client sent. During the handshake whole messages are used
    /// and an incomplete one is kept for later; bytes behind the request are
    /// early data for the target. In other states nothing is read.
    pub fn handle_input(&mut self, now: Instant, data: &[u8], ctx: &dyn Context) {
        match self.state {
            State::Greeting | State::Auth | State::Request => {}
            State::ProxyHeader { balancer } => return self.on_proxy_header(balancer, data),
            // Kept until the check answers (or, for BIND, as early data for
            // the peer), or the client's address is applied; nothing is
            // parsed meanwhile.
            State::Verifying { .. } | State::Binding { .. } | State::Proxied { .. } => {
                return self.keep(data);
            }
            _ => return,
        }
        if self.unparsed.is_empty() {
            let used = self.parse(now, data, ctx, true);
            self.keep(&data[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.unparsed);
            buf.extend_from_slice(data);
            let used = self.parse(now, &buf, ctx, true);
            buf.drain(..used);
            self.unparsed = buf;
            self.keep(&[]);
        }
    }

    /// The answer to [`Action::Client`]: `admitted` when the driver applied
    /// the client's address (took its `--max-sessions-per-client` count);
    /// then the greeting that came behind the header is read, judged as
    /// that client's. Not admitted: the connection closes.
    pub fn handle_proxied(&mut self, now: Instant, admitted: bool, ctx: &dyn Context) {
        if !matches!(self.state, State::Proxied { ask: false, .. }) {
            return;
        }
        if !admitted {
            return self.close();
        }
        self.peer = if self.via().is_some() {
            Peer::Admitted
        } else {
            Peer::Own
        };
        self.state = State::Greeting;
        let mut buf = std::mem::take(&mut self.unparsed);
        let used = self.parse(now, &buf, ctx, true);
        buf.drain(..used);
        self.unparsed = buf;
        self.keep(&[]);
    }

    /// The answer to [`Action::Verify`]: the user's name, or `None` when
    /// the credentials are wrong (or could not be checked).
    pub fn handle_verified(&mut self, now: Instant, user: Option<Arc<str>>, ctx: &dyn Context) {
        if !matches!(self.state, State::Verifying { .. }) {
            return;
        }
        match user {
            Some(name) => {
                self.user = Some(name);
                self.out.push(&wire::emit_auth_status(true));
                self.state = State::Request;
                // What the client sent while it waited.
                let buf = std::mem::take(&mut self.unparsed);
                let used = self.parse(now, &buf, ctx, false);
                self.unparsed = buf;
                self.unparsed.drain(..used);
                self.keep(&[]);
            }
            None => self.auth_failed(now),
        }
    }

    /// The answer to [`Action::Resolve`]: addresses in the resolver's
    /// order. Each is judged by the rules; a denied one is not tried.
    pub fn handle_resolved(
        &mut self,
        now: Instant,
        result: io::Result<Vec<SocketAddr>>,
        ctx: &dyn Context,
    ) {
        if !matches!(self.state, State::Resolving { .. }) {
            return;
        }
        let result = match result {
            Ok(addrs) if !self.allowed_by_name && !addrs.is_empty() => {
                match self.judge_addresses(ctx, addrs) {
                    Ok(allowed) => Ok(allowed),
                    Err(origin) => return self.deny(now, origin),
                }
            }
            other => other,
        };
        match result {
            Ok(addrs) if self.command == Some(Command::Bind) && !addrs.is_empty() => {
                self.listen(now, addrs[0]);
            }
            Ok(addrs) if !addrs.is_empty() => self.connect(now, &addrs),
            Ok(_) => self.fail(now, Reply::HostUnreachable),
            Err(e) => self.fail(now, reply_for_error(&e)),
        }
    }

    /// Attempt `id` connected from `local` to `peer`.
    pub fn handle_connected(
        &mut self,
        now: Instant,
        id: AttemptId,
        local: SocketAddr,
        peer: SocketAddr,
    ) {
        if !matches!(self.state, State::Connecting(_))
            || !attempts::connected(&mut self.candidates, id)
        {
            return;
        }
        // RFC 1928 section 6: "BND.ADDR contains the associated IP address"
        // of the socket the server uses to connect to the target.
        self.establish(now, local, peer, id);
    }

    /// Replies succeeded with BND `bound`, notes `peer` as the far end and
    /// relays over `relay` from now on.
    fn establish(&mut self, now: Instant, bound: SocketAddr, peer: SocketAddr, relay: AttemptId) {
        self.out.push_reply(Reply::Succeeded, bound);
        self.connected = Some(peer);
        self.decide(Outcome::Succeeded);
        self.state = State::Established {
            last_active: now,
            relay: Some(relay),
            up: End::Open,
            down: End::Open,
            throttled: false,
        };
    }

    /// Attempt `id` failed; the driver has closed its socket.
    pub fn handle_connect_failed(&mut self, now: Instant, id: AttemptId, err: &io::Error) {
        let State::Connecting(schedule) = &mut self.state else {
            return;
        };
        let reply = reply_for_error(err);
        if let Some(reply) = schedule.failed(&mut self.candidates, now, id, reply, &self.config) {
            self.fail(now, reply);
        }
    }

    /// Bytes moved through the tunnel, or a datagram through the
    /// association (either way).
    #[inline]
    pub fn handle_relayed(&mut self, now: Instant) {
        if let State::Established { last_active, .. } | State::Associated { last_active } =
            &mut self.state
        {
            *last_active = now;
        }
    }

    /// The driver stopped reading for the tunnel's rate limit: wake it at
    /// `until` (through `poll_timeout`) to read again.
    pub fn handle_throttled(&mut self, now: Instant, until: Instant) {
        let _ = now;
        if let State::Established { throttled, .. } = &mut self.state {
            if !*throttled || until < self.deadline {
                self.deadline = until;
            }
            *throttled = true;
        }
    }

    /// The answer to [`Action::Associate`]: the relay's address to announce
    /// to the client, or the reply that refuses the request.
    pub fn handle_associated(&mut self, now: Instant, result: Result<SocketAddr, Reply>) {
        if !matches!(self.state, State::Associating { .. }) {
            return;
        }
        match result {
            Ok(bound) => {
                self.out.push_reply(Reply::Succeeded, bound);
                self.decide(Outcome::Succeeded);
                self.state = State::Associated { last_active: now };
            }
            Err(reply) => self.fail(now, reply),
        }
    }

    /// The answer to [`Action::Listen`]: the address listened on (the
    /// first reply), or why there is none.
    pub fn handle_listening(&mut self, now: Instant, result: io::Result<SocketAddr>) {
        let State::Listening { peer, ask: false } = self.state else {
            return;
        };
        match result {
            Ok(bound) => {
                self.listening = true;
                self.out.push_reply(Reply::Succeeded, bound);
                self.deadline = now + self.config.bind_timeout;
                self.state = State::Binding {
                    expect: peer.ip(),
                    reject: false,
                };
            }
            Err(e) => self.fail(now, reply_for_error(&e)),
        }
    }

    /// BIND: the driver accepted a connection from `peer` and holds it as
    /// attempt 0. It becomes the tunnel's other end if it comes from the
    /// expected address (the second reply is queued); otherwise it is
    /// cancelled and the wait goes on.
    pub fn handle_incoming(&mut self, now: Instant, peer: SocketAddr) {
        let State::Binding { expect, reject, .. } = &mut self.state else {
            return;
        };
        if !expect.is_unspecified() && expect.to_canonical() != peer.ip().to_canonical() {
            *reject = true;
            return;
        }
        self.establish(now, peer, peer, AttemptId::INBOUND);
    }

    /// `Up`: the client's stream ended and everything it sent was used
    /// (during the handshake: the client left); `Down`: the target's stream
    /// ended and everything it sent was delivered to the client.
    pub fn handle_stream_end(&mut self, now: Instant, dir: Direction) {
        let _ = now;
        match (&mut self.state, dir) {
            // A balancer's health check connects and leaves without a byte.
            (State::ProxyHeader { .. }, Direction::Up) if !self.unparsed.is_empty() => {
                self.drop_balancer(ProxyRefusal::Missing);
            }
            (
                State::ProxyHeader { .. }
                | State::Proxied { .. }
                | State::Greeting
                | State::Auth
                | State::Verifying { .. }
                | State::Request
                | State::Binding { .. }
                | State::Associated { .. }
                | State::Lingering { .. },
                Direction::Up,
            ) => self.close(),
            (State::Established { up, down, .. }, _) => {
                let (this, other) = match dir {
                    Direction::Up => (up, down),
                    Direction::Down => (down, up),
                };
                if *this != End::Open {
                    return;
                }
                if *other != End::Open {
                    // Both streams ended: close(2) sends the last FIN.
                    self.close();
                } else {
                    *this = End::Shutting;
                }
            }
            _ => {}
        }
    }

    /// Everything `poll_transmit` gave has been written to the client.
    pub fn handle_sent(&mut self, now: Instant) {
        let _ = now;
        if let State::Lingering { shut } = &mut self.state
            && *shut == End::Open
        {
            *shut = End::Shutting;
        }
    }

    /// The client's connection failed or was reset: nothing more can be
    /// said to it.
    pub fn handle_lost(&mut self, now: Instant) {
        let _ = now;
        self.close();
    }

    /// The server stops: the connection may go on for the grace period.
    pub fn handle_stop(&mut self, now: Instant) {
        if self.stop_at.is_none() {
            self.stop_at = Some(now + self.config.grace);
        }
    }

    /// Deadlines that have passed by `now` take effect.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.stop_at.is_some_and(|t| now >= t) {
            return self.close();
        }
        match &self.state {
            State::ProxyHeader { .. } if now >= self.deadline => {
                self.drop_balancer(ProxyRefusal::Missing);
            }
            // No request yet: nothing to answer.
            State::Proxied { .. }
            | State::Greeting
            | State::Auth
            | State::Verifying { .. }
            | State::Request
                if now >= self.deadline =>
            {
                self.close();
            }
            // The client is owed an answer: the target did not come in time.
            State::Resolving { .. }
            | State::Connecting(_)
            | State::Associating { .. }
            | State::Listening { .. }
                if now >= self.deadline =>
            {
                self.fail(now, Reply::HostUnreachable);
            }
            // RFC 1928 section 6 has no "timed out" reply; TTL expired is
            // the nearest (Dante answers a BIND timeout the same way).
            State::Binding { .. } if now >= self.deadline => {
                self.fail(now, Reply::TtlExpired);
            }
            State::Connecting(_) => {
                if let State::Connecting(schedule) = &mut self.state
                    && let Some(reply) =
                        schedule.handle_timeout(&mut self.candidates, now, &self.config)
                {
                    self.fail(now, reply);
                }
            }
            State::Established { .. } | State::Associated { .. } => {
                if let State::Established { throttled, .. } = &mut self.state
                    && *throttled
                    && now >= self.deadline
                {
                    // The driver reads again (it steps after a timeout).
                    *throttled = false;
                }
                let last_active = match &self.state {
                    State::Established { last_active, .. } | State::Associated { last_active } => {
                        *last_active
                    }
                    _ => return,
                };
                if let Some(idle) = self.config.idle_timeout
                    && now >= last_active + idle
                {
                    self.close();
                }
            }
            State::Lingering { .. } if now >= self.deadline => self.close(),
            _ => {}
        }
    }

    // ------------------------------------------------------------- request

    /// CONNECT and BIND: `target` is where to connect to, or whom to
    /// expect, judged by the rules; a name is resolved first.
    fn request(&mut self, now: Instant, target: TargetAddr, ctx: &dyn Context) {
        let addr = match &target {
            TargetAddr::Ip(addr) => Some(*addr),
            TargetAddr::Domain(name, port) => match std::str::from_utf8(name) {
                Ok(host) => {
                    // An IP literal sent as a name never goes to the resolver.
                    wire::ip_literal(host).map(|ip| SocketAddr::new(ip, *port))
                }
                Err(_) => {
                    self.target = Some(target);
                    return self.fail(now, Reply::HostUnreachable);
                }
            },
        };
        let verdict = match (&addr, &target) {
            (Some(addr), _) => Some(self.judge(ctx, None, *addr)),
            (None, TargetAddr::Domain(name, port)) => {
                // Only UTF-8 names come here (checked above).
                let name = std::str::from_utf8(name).unwrap_or_default();
                let user = self.user.as_deref();
                let req = NameRequest {
                    client: ctx.client().to_canonical(),
                    user,
                    admin: user.is_some_and(|u| ctx.is_admin(u)),
                    cmd: self.rules_cmd(),
                    name,
                    port: *port,
                };
                match ctx.rules().judge_name(&req) {
                    NameVerdict::Decided(v) => {
                        self.allowed_by_name = v.is_allow();
                        Some(v)
                    }
                    NameVerdict::NeedsAddress => None,
                }
            }
            (None, TargetAddr::Ip(_)) => None,
        };
        self.target = Some(target);
        if let Some(v) = verdict {
            self.rule = Some((v.origin(), v.log()));
            if !v.is_allow() {
                return self.deny(now, v.origin());
            }
            self.keep_rate(v);
        }
        match addr {
            Some(addr) if self.command == Some(Command::Bind) => self.listen(now, addr),
            Some(addr) => self.connect(now, &[addr]),
            None => self.state = State::Resolving { ask: true },
        }
    }

    /// Takes one of the user's sessions for the request; past the user's
    /// limit, refuses it (X'02') and returns false.
    pub(super) fn admit_user(&mut self, now: Instant, ctx: &dyn Context) -> bool {
        if let Some(user) = &self.user {
            if !ctx.take_user_session(user) {
                self.rule = Some((USER_LIMIT, false));
                self.deny(now, USER_LIMIT);
                return false;
            }
            self.user_session = true;
        }
        true
    }

    /// The command as the rules name it.
    fn rules_cmd(&self) -> Cmd {
        match self.command {
            Some(Command::Bind) => Cmd::Bind,
            Some(Command::UdpAssociate) => Cmd::Udp,
            _ => Cmd::Connect,
        }
    }

    /// The rules' verdict on a request to `addr`, the address of `name`
    /// when it is one of a name's.
    fn judge(&self, ctx: &dyn Context, name: Option<&str>, addr: SocketAddr) -> Verdict {
        let user = self.user.as_deref();
        ctx.rules().judge(&rules::Request {
            client: ctx.client().to_canonical(),
            user,
            admin: user.is_some_and(|u| ctx.is_admin(u)),
            cmd: self.rules_cmd(),
            name,
            addr: addr.ip(),
            port: addr.port(),
        })
    }

    /// Keeps the addresses of the requested name the rules allow, in order;
    /// none: the rule that denied the first.
    fn judge_addresses(
        &mut self,
        ctx: &dyn Context,
        mut addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Origin> {
        let name = match &self.target {
            Some(TargetAddr::Domain(name, _)) => std::str::from_utf8(name).ok(),
            _ => None,
        };
        let mut first_denial = None;
        let mut first_allow = None;
        let mut first_verdict = None;
        addrs.retain(|a| {
            let v = self.judge(ctx, name, *a);
            if v.is_allow() {
                first_allow.get_or_insert((v.origin(), v.log()));
                first_verdict.get_or_insert(v);
                true
            } else {
                first_denial.get_or_insert((v.origin(), v.log()));
                false
            }
        });
        if let Some(v) = first_verdict {
            self.keep_rate(v);
        }
        match first_allow {
            Some(rule) => {
                self.rule = Some(rule);
                Ok(addrs)
            }
            None => {
                let (origin, log) = first_denial.unwrap_or((Origin::Default("no-rule"), false));
                self.rule = Some((origin, log));
                Err(origin)
            }
        }
    }

    /// Keeps an allowing rule's rate limits, if it sets any.
    fn keep_rate(&mut self, v: Verdict) {
        let rate = v.rate();
        if !rate.is_unlimited() {
            self.rare.get_or_insert_default().rate = Some(Box::new(rate));
        }
    }

    /// Refuses the request as the rules said: X'02'.
    fn deny(&mut self, now: Instant, origin: Origin) {
        self.out.push_reply(Reply::NotAllowed, wire::UNSPECIFIED);
        self.refuse(now, Outcome::Denied(origin));
    }

    /// UDP ASSOCIATE: `requested` says where the client will send from; a
    /// name there is not resolved (the client's own address is used).
    fn associate(&mut self, requested: TargetAddr) {
        self.target = Some(requested);
        self.state = State::Associating { ask: true };
    }

    fn listen(&mut self, now: Instant, peer: SocketAddr) {
        let _ = now;
        self.state = State::Listening { peer, ask: true };
    }

    fn connect(&mut self, now: Instant, addrs: &[SocketAddr]) {
        let (schedule, candidates) = attempts::start(now, addrs, &self.config);
        self.candidates = candidates;
        self.state = State::Connecting(schedule);
    }

    /// Answers the request with a failure `reply`, and lingers.
    fn fail(&mut self, now: Instant, reply: Reply) {
        debug_assert_ne!(reply, Reply::Succeeded);
        self.out.push_reply(reply, wire::UNSPECIFIED);
        self.refuse(now, Outcome::Rejected(reply));
    }

    // --------------------------------------------------------------- ends

    fn decide(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
        self.report = true;
    }

    /// The answer is queued: early data is dropped, running attempts are
    /// cancelled, and once the answer is sent the client's write side is
    /// shut and what it still sends is read and dropped for a moment, so
    /// that closing does not turn into a reset that could destroy the
    /// answer before the client reads it.
    fn refuse(&mut self, now: Instant, outcome: Outcome) {
        self.decide(outcome);
        self.unparsed = Vec::new();
        attempts::cancel_all(&mut self.candidates);
        self.deadline = now + self.config.linger;
        self.state = State::Lingering { shut: End::Open };
    }

    /// A balancer's connection without a valid PROXY header: no answer (a
    /// balancer does not read one), counted, closed.
    pub(super) fn drop_balancer(&mut self, why: ProxyRefusal) {
        self.decide(Outcome::ProxyHeader(why));
        self.close();
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.unparsed = Vec::new();
        // The driver closes every socket: no attempt needs a word.
        self.candidates = Box::default();
    }
}

#[cfg(test)]
mod tests;
