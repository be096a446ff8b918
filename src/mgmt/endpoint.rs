//! The management endpoint: the sessions of the management protocol on
//! each transport served, with their send queues, timers and limits. The
//! management thread ([`super::service`]) drives it.
//!
//! A session comes over a [`Link`]: an association of the SCTP one-to-many
//! socket ([`sctp`]: notifications, reassembly, the shared send buffer) or
//! a connection to the Unix-domain SOCK_SEQPACKET socket ([`unix`]: one
//! connection per session, one packet per message). Only moving bytes
//! differs; the session state machine, log-in checks and penalties, the
//! cap and grace time of those not logged in, send queues, stall and idle
//! timers are this file's, for both.
//!
//! Associations and connections that have not logged in are limited apart
//! from sessions, so that ones held open without credentials cannot keep an
//! administrator out:
//! - each must log in within the log-in grace time (--mgmt-login-grace,
//!   like sshd's LoginGraceTime) or is aborted;
//! - at most --max-mgmt-unauthenticated may wait at once, over both
//!   transports; past that the oldest is aborted to make room for the
//!   newcomer ([`Arrivals::victim`] says which). Held ones thus only push
//!   out each other: to push out an administrator's, a peer must open more
//!   than the cap of new ones between its arrival and its log in, one round
//!   trip later. (sshd's MaxStartups refuses newcomers instead, which lets
//!   whoever holds the places keep everyone else out.)
//! - logged-in sessions are capped by --max-admin-sessions: a good log in
//!   past it is refused with X'03' and closed gracefully
//!   ([`Session::slot_claimed`] says why), and the sessions open are not
//!   touched.
//!
//! So at most max-admin-sessions + max-mgmt-unauthenticated sessions are
//! kept, plus those one turn of reading admits before the cap is applied.
//!
//! A peer that stops reading cannot make the server buffer without bound
//! on either transport: what waits for it is bounded by [`QUEUE_LIMIT`],
//! and a peer that takes nothing for [`STALL_LIMIT`] is aborted.

mod sctp;
mod unix;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::{Registry, Token, Waker};

use super::arrivals::{AbortLog, Arrivals, Cause, Standing};
use super::audit::{Audit, ChangeLine, Login};
use super::session::{Action, Backend, Session, status_of};
use super::wire::{self, MAX_REQUEST, Status};
use crate::blocking::{Answer, Pool};
use crate::logfmt::{LogSafe, Quoted};
use crate::metrics::{Snapshot, Totals};
use crate::sys::sctp::{AssocId, SctpSocket, SendKind};
use crate::sys::seqpacket::{Conn, Listener};
use crate::users::penalty::{Peer, Penalties};
use crate::users::store::ChangeRequest;
use crate::users::{Directory, UserTable};

/// Unacknowledged bytes one SCTP association may have in the shared send
/// buffer.
pub const SHARE: usize = 64 * 1024;
/// Bytes a session may have queued beyond what the kernel holds for it
/// before it is aborted.
pub const QUEUE_LIMIT: usize = 256 * 1024;
/// How long a peer may take no data before it is aborted: SCTP data sent
/// and not acknowledged, or a Unix connection whose buffer stays full.
pub const STALL_LIMIT: Duration = Duration::from_secs(10);
/// The send buffer the SCTP socket asks for.
pub const SEND_BUFFER: usize = 4 * 1024 * 1024;
/// docs/management-protocol.md section 7: "The server closes an association that sends nothing
/// for 5 minutes."
pub const IDLE_LIMIT: Duration = Duration::from_secs(300);
/// How long a Unix peer has to close its end once the server has closed
/// its own gracefully; then the connection is closed regardless. (An SCTP
/// association's SHUTDOWN is the kernel's to finish.)
pub const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// The SCTP socket's poll token.
pub const SCTP_TOKEN: Token = Token(0);
/// The management thread's waker.
pub const WAKER_TOKEN: Token = Token(1);
/// The Unix listener's.
pub const LISTENER_TOKEN: Token = Token(2);
/// The first Unix connection's token; each connection has the next one.
const FIRST_CONN: usize = 16;

/// What a management session's bytes come in and go out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// An association of the SCTP one-to-many socket.
    Sctp(AssocId),
    /// A connection to the Unix-domain socket, numbered in order of
    /// arrival. Numbers are never reused, so a late answer for a closed
    /// connection cannot reach a newer one.
    Unix(usize),
}

impl Link {
    /// The transport's name in the audit trail.
    pub fn transport(self) -> &'static str {
        match self {
            Link::Sctp(_) => "sctp",
            Link::Unix(_) => "unix",
        }
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Link::Sctp(assoc) => write!(f, "sctp:{assoc}"),
            Link::Unix(n) => write!(f, "unix:{n}"),
        }
    }
}

/// Answers to the management sessions, from other threads.
#[derive(Debug)]
pub enum Reply {
    /// A log in was checked: the administrator's name, or `None`.
    LoginChecked {
        /// The session's link.
        link: Link,
        /// The name the log in tried (for the audit trail).
        tried: Box<[u8]>,
        /// The administrator, when the log in is good.
        admin: Option<Arc<str>>,
    },
    /// A user change finished with this status.
    ChangeDone {
        /// The session's link.
        link: Link,
        /// What was changed (for the audit trail).
        what: ChangeLine,
        /// The response status.
        status: Status,
    },
}

/// Where an answer from another thread goes: the management thread's inbox,
/// as `wrap` makes it, followed by a wake-up.
fn inbox<T: 'static>(
    tx: &Sender<Reply>,
    waker: &Arc<Waker>,
    wrap: impl FnOnce(T) -> Reply + Send + 'static,
) -> Answer<T> {
    let (tx, waker) = (tx.clone(), Arc::clone(waker));
    Box::new(move |v| {
        // The management thread may have stopped; then nobody wants it.
        if tx.send(wrap(v)).is_ok() {
            let _ = waker.wake();
        }
    })
}

/// What the endpoint shares with the rest of the server, and its limits.
#[derive(Debug)]
pub struct Shared {
    /// Counter totals.
    pub totals: Arc<Totals>,
    /// The user table.
    pub users: Arc<Directory>,
    /// The users' writer.
    pub changes: Sender<ChangeRequest>,
    /// Slow password checks.
    pub pool: Pool,
    /// The most sessions not logged in at once; past it the oldest is
    /// aborted.
    pub max_unauthenticated: usize,
    /// How long a session may take to log in before it is aborted.
    pub login_grace: Duration,
    /// The most management sessions logged in at once.
    pub max_sessions: usize,
    /// Refused log ins per source (an address, or a local uid), and the
    /// penalties they earn: while one lasts, every log in from that source
    /// is refused unchecked.
    pub penalties: Arc<Penalties>,
    /// Where administrator log ins and user changes are recorded.
    pub audit: Arc<Audit>,
}

impl Backend for Shared {
    fn metrics(&self) -> Snapshot {
        self.totals.snapshot()
    }

    fn users(&self) -> Arc<UserTable> {
        self.users.snapshot()
    }

    /// The user's counters as the workers last reported them (within
    /// their flush period); a user with none yet has zeros.
    fn user_metrics(&self, user: &[u8]) -> Vec<(u8, u64)> {
        use super::wire::user_metric as id;
        let c = std::str::from_utf8(user)
            .ok()
            .and_then(|name| self.totals.user(name))
            .unwrap_or_default();
        vec![
            (id::SESSIONS, c.sessions),
            (id::OPEN, c.open),
            (id::BYTES_UP, c.bytes_up),
            (id::BYTES_DOWN, c.bytes_down),
            (id::AUTH_FAILED, c.auth_failed),
            (id::DENIED, c.denied),
        ]
    }
}

enum Out {
    Message(u16, Vec<u8>),
    Eof,
}

/// How a session's bytes leave.
enum Io {
    /// An association of the SCTP socket, and the payload bytes sent on it
    /// since its last SENDER_DRY.
    Sctp { assoc: AssocId, in_kernel: usize },
    /// A connection of its own; `read_closed` once its peer has shut its
    /// side down (what it sent is still answered).
    Unix { conn: Conn, read_closed: bool },
}

/// One session and the state of its link.
struct Entry {
    session: Session,
    io: Io,
    /// Its entry in `Endpoint::arrivals` (see [`Arrivals::push`]).
    serial: u64,
    /// Whether it holds one of the --max-admin-sessions places.
    logged_in: bool,
    /// The message being reassembled (at most MAX_REQUEST + 1 bytes kept).
    rx: Vec<u8>,
    rx_stream: u16,
    queue: VecDeque<Out>,
    queued: usize,
    /// Since when the peer has had data waiting that it has not taken:
    /// SCTP data sent and not acknowledged, or a Unix send that found the
    /// connection's buffer full.
    unacked_since: Option<Instant>,
    /// Who the peer is: its address, from its first data, or its uid.
    peer: Option<Peer>,
    last_rx: Instant,
    /// When the server closed its side gracefully; nothing more is read or
    /// sent after that.
    closing: Option<Instant>,
}

impl Entry {
    fn new(io: Io, peer: Option<Peer>, now: Instant, serial: u64) -> Self {
        Entry {
            session: Session::new(),
            io,
            serial,
            logged_in: false,
            rx: Vec::new(),
            rx_stream: 0,
            queue: VecDeque::new(),
            queued: 0,
            unacked_since: None,
            peer,
            last_rx: now,
            closing: None,
        }
    }
}

/// The endpoint.
pub struct Endpoint {
    sctp: Option<SctpSocket>,
    unix: Option<Listener>,
    registry: Registry,
    links: HashMap<Link, Entry>,
    buf: Box<[u8]>,
    notification: Vec<u8>,
    shared: Shared,
    inbox: Sender<Reply>,
    waker: Arc<Waker>,
    /// The sessions not logged in, oldest first.
    arrivals: Arrivals<Link>,
    /// Sessions logged in, and not, in `links`.
    logged_in: usize,
    unauthenticated: usize,
    aborts: AbortLog,
    /// Input that may wait: on the SCTP socket, on the listener, on these
    /// Unix connections. Readiness is edge-triggered, so what a turn's
    /// budget leaves is remembered here.
    sctp_ready: bool,
    accept_ready: bool,
    unix_ready: Vec<usize>,
    next_conn: usize,
}

/// What the session on `link` with entry `serial` in the arrivals is doing.
fn standing(links: &HashMap<Link, Entry>, link: Link, serial: u64) -> Standing {
    match links.get(&link) {
        Some(a) if a.serial == serial && !a.logged_in => {
            if a.session.is_checking() {
                Standing::Checking
            } else {
                Standing::Waiting
            }
        }
        _ => Standing::Gone,
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("sctp", &self.sctp.is_some())
            .field("unix", &self.unix.as_ref().map(Listener::path))
            .field("logged_in", &self.logged_in)
            .field("unauthenticated", &self.unauthenticated)
            .finish()
    }
}

impl Endpoint {
    /// Serves the listening one-to-many SCTP socket and the listening Unix
    /// socket, either or both, registering them with `registry`.
    pub fn new(
        sctp: Option<SctpSocket>,
        unix: Option<Listener>,
        registry: Registry,
        shared: Shared,
        inbox: Sender<Reply>,
        waker: Arc<Waker>,
    ) -> io::Result<Self> {
        if let Some(s) = &sctp {
            sctp::register(s, &registry)?;
        }
        if let Some(l) = &unix {
            unix::register(l, &registry)?;
        }
        Ok(Endpoint {
            sctp,
            unix,
            registry,
            links: HashMap::new(),
            buf: vec![0u8; 64 * 1024].into_boxed_slice(),
            notification: Vec::new(),
            shared,
            inbox,
            waker,
            arrivals: Arrivals::default(),
            logged_in: 0,
            unauthenticated: 0,
            aborts: AbortLog::default(),
            sctp_ready: false,
            accept_ready: false,
            unix_ready: Vec::new(),
            next_conn: FIRST_CONN,
        })
    }

    /// A readiness event for `token` arrived.
    pub fn on_event(&mut self, token: Token) {
        match token {
            SCTP_TOKEN => self.sctp_ready = true,
            LISTENER_TOKEN => self.accept_ready = true,
            WAKER_TOKEN => {}
            Token(n) => {
                if !self.unix_ready.contains(&n) {
                    self.unix_ready.push(n);
                }
            }
        }
    }

    /// Whether input may be waiting: call `on_ready` without sleeping (no
    /// new edge will come for it).
    pub fn has_input(&self) -> bool {
        self.sctp_ready || self.accept_ready || !self.unix_ready.is_empty()
    }

    /// Reads what is waiting, within one turn's budget per socket, then
    /// applies the cap on sessions not logged in and sends what can be
    /// sent.
    pub fn on_ready(&mut self, now: Instant) {
        if self.sctp_ready {
            self.sctp_ready = self.read_sctp(now);
        }
        if self.accept_ready {
            self.accept_ready = self.accept_unix(now);
        }
        for n in std::mem::take(&mut self.unix_ready) {
            if self.read_unix(n, now) {
                self.unix_ready.push(n);
            }
        }
        self.make_room(now);
        self.flush_all(now);
    }

    /// A new session, not logged in. The cap on those is applied by
    /// `make_room` once the turn's input is read.
    fn admit(&mut self, link: Link, io: Io, peer: Option<Peer>, now: Instant) {
        if self.links.contains_key(&link) {
            return;
        }
        let serial = self.arrivals.push(link, now);
        self.unauthenticated += 1;
        self.links.insert(link, Entry::new(io, peer, now, serial));
    }

    fn forget(&mut self, link: Link) {
        let Some(a) = self.links.remove(&link) else {
            return;
        };
        if a.logged_in {
            self.logged_in -= 1;
        } else {
            self.unauthenticated -= 1;
        }
        if let Io::Unix { conn, .. } = &a.io {
            unix::deregister(conn, &self.registry);
        }
    }

    /// Aborts sessions that have not logged in, oldest first, until no more
    /// than --max-mgmt-unauthenticated remain.
    ///
    /// This runs once per turn, after everything the sockets held was read,
    /// rather than as each session arrives: an administrator's log in that
    /// is already in the socket behind its arrival has then been handled,
    /// so a burst of honest connections is judged by what they sent, not by
    /// the order the kernel queued the events in. A turn reads at most a
    /// budget of pieces per socket, which bounds how far past the cap the
    /// count can go between.
    fn make_room(&mut self, now: Instant) {
        while self.unauthenticated > self.shared.max_unauthenticated {
            let Some(link) = self
                .arrivals
                .victim(|link, serial| standing(&self.links, link, serial))
            else {
                // Every counted session has a live entry; none left would
                // be a bug in the counting, not a reason to loop.
                log::error!(
                    "management sessions miscounted: unauthenticated={} queued=0",
                    self.unauthenticated
                );
                break;
            };
            self.abort_before_login(link, Cause::Room, now);
        }
        self.arrivals.compact(self.unauthenticated, |link, serial| {
            standing(&self.links, link, serial)
        });
    }

    /// Aborts a session that has not logged in, counts it (METRICS ID
    /// X'85') and logs it, at most one line per interval: these are caused
    /// by peers without credentials, whose number we do not choose.
    fn abort_before_login(&mut self, link: Link, cause: Cause, now: Instant) {
        log::debug!(
            "management session aborted before log in: link={link} cause={}",
            match cause {
                Cause::Grace => "grace-over",
                Cause::Room => "to-make-room",
            }
        );
        self.abort(link);
        self.shared.totals.add_mgmt_aborted(1);
        if let Some(line) = self.aborts.record(cause, now) {
            log::warn!("{line}");
        }
    }

    /// `len` bytes of a message that came on `link`'s `stream` are in
    /// `self.buf` (fewer when the message was cut to fit: `len` is its
    /// whole length); `eor` when they end the message. `from` is the
    /// address they came from, if the transport tells.
    fn on_data(
        &mut self,
        link: Link,
        stream: u16,
        len: usize,
        eor: bool,
        from: Option<IpAddr>,
        now: Instant,
    ) {
        let Some(a) = self.links.get_mut(&link) else {
            return;
        };
        if a.closing.is_some() {
            return;
        }
        if a.peer.is_none() {
            a.peer = from.map(Peer::Addr);
        }
        a.last_rx = now;
        if a.rx.is_empty() {
            a.rx_stream = stream;
        }
        // Keep one byte past the limit: enough for the parsers to see that the
        // message is too long (docs/management-protocol.md section 2: "A longer request is
        // malformed"), without buffering whatever a peer sends.
        let room = (MAX_REQUEST + 1).saturating_sub(a.rx.len());
        a.rx.extend_from_slice(&self.buf[..len.min(room).min(self.buf.len())]);
        if !eor {
            return;
        }
        let msg = std::mem::take(&mut a.rx);
        // A penalised source's log in is refused unchecked; the penalty was
        // logged once when it started.
        if a.session.awaits_login()
            && a.peer
                .is_some_and(|p| self.shared.penalties.is_penalised(p, now))
        {
            a.session.throttle();
            let tried = wire::Login::parse(&msg).map_or(&b"-"[..], |l| l.username);
            self.shared
                .audit
                .login(Login::Penalised, tried, a.peer, link.transport(), now);
        }
        if a.session
            .handle_message(a.rx_stream, &msg, &self.shared)
            .is_err()
        {
            log::warn!("management session aborted: link={link} reason=too-many-requests");
            self.abort(link);
            return;
        }
        a.rx = msg;
        a.rx.clear();
        self.run_actions(link);
    }

    /// Carries out what the session on `link` asks for.
    fn run_actions(&mut self, link: Link) {
        loop {
            let Some(a) = self.links.get_mut(&link) else {
                return;
            };
            let Some(action) = a.session.poll_action() else {
                return;
            };
            match action {
                Action::Send { stream, message } => {
                    a.queued += message.len();
                    a.queue.push_back(Out::Message(stream, message));
                    if a.queued > QUEUE_LIMIT {
                        log::warn!("management session aborted: link={link} reason=does-not-read");
                        self.abort(link);
                        return;
                    }
                }
                Action::Shutdown => a.queue.push_back(Out::Eof),
                Action::ClaimSlot => {
                    let granted = self.logged_in < self.shared.max_sessions;
                    if granted {
                        a.logged_in = true;
                        self.logged_in += 1;
                        self.unauthenticated -= 1;
                    } else {
                        // Only an administrator with good credentials gets
                        // here, so one line each does not let strangers
                        // flood the log.
                        log::warn!(
                            "management log in refused: link={link} reason=sessions-full \
                             max_sessions={} status=x03",
                            self.shared.max_sessions
                        );
                    }
                    if let Some(admin) = a.session.claiming() {
                        let result = if granted { Login::Ok } else { Login::NoRoom };
                        let now = Instant::now();
                        let name = admin.as_bytes();
                        self.shared
                            .audit
                            .login(result, name, a.peer, link.transport(), now);
                    }
                    a.session.slot_claimed(granted, &self.shared);
                }
                Action::CheckLogin(creds) => {
                    let tried: Box<[u8]> = creds.username.clone().into();
                    let answer = inbox(&self.inbox, &self.waker, move |admin| {
                        Reply::LoginChecked { link, tried, admin }
                    });
                    let lane = a.peer.map(Peer::source);
                    if self.shared.pool.check_admin(creds, lane, answer).is_err() {
                        a.session.login_checked(None, &self.shared);
                    }
                }
                Action::Change(change) => {
                    let what = ChangeLine::of(&change);
                    let answer = inbox(&self.inbox, &self.waker, move |result| Reply::ChangeDone {
                        link,
                        what,
                        status: status_of(result),
                    });
                    let req = ChangeRequest { change, answer };
                    if let Err(e) = self.shared.changes.send(req) {
                        log::error!(
                            "user change not made: {} reason=writer-gone",
                            e.into_inner().change
                        );
                        a.session.change_done(Status::ServerError, &self.shared);
                    }
                }
            }
        }
    }

    /// An answer from another thread.
    pub fn on_reply(&mut self, reply: Reply, now: Instant) {
        match reply {
            Reply::LoginChecked { link, tried, admin } => {
                let Some(a) = self.links.get_mut(&link) else {
                    return;
                };
                if admin.is_none() {
                    self.shared
                        .audit
                        .login(Login::Refused, &tried, a.peer, link.transport(), now);
                }
                // One line per penalty, not per refusal: refusals are what
                // anyone can cause.
                if admin.is_none()
                    && let Some(peer) = a.peer
                    && !self.shared.penalties.is_penalised(peer, now)
                    && let Some(p) = self.shared.penalties.failure(peer, now)
                {
                    log::warn!(
                        "management log ins refused unchecked: source={} failures={} \
                         penalty_s={}",
                        LogSafe(p.source),
                        p.failures,
                        p.length.as_secs()
                    );
                }
                a.session.login_checked(admin, &self.shared);
                self.run_actions(link);
                self.flush(link, now);
            }
            Reply::ChangeDone { link, what, status } => {
                let Some(a) = self.links.get_mut(&link) else {
                    return;
                };
                let by = a.session.admin().map_or("-", |n| &**n);
                self.shared
                    .audit
                    .change(by, &what, link.transport(), status);
                a.session.change_done(status, &self.shared);
                self.run_actions(link);
                self.flush(link, now);
            }
        }
    }

    fn flush_all(&mut self, now: Instant) {
        let links: Vec<Link> = self
            .links
            .iter()
            .filter(|(_, a)| !a.queue.is_empty())
            .map(|(link, _)| *link)
            .collect();
        for link in links {
            self.flush(link, now);
        }
    }

    fn flush(&mut self, link: Link, now: Instant) {
        loop {
            let Some(a) = self.links.get_mut(&link) else {
                return;
            };
            let Some(front) = a.queue.front() else {
                self.close_if_done(link);
                return;
            };
            let len = match front {
                Out::Message(_, m) => m.len(),
                Out::Eof => 0,
            };
            let result = match (&a.io, front) {
                // Over its share of the SCTP socket's buffer: wait for
                // SENDER_DRY. A message always goes out when nothing else
                // is in flight, however large.
                (Io::Sctp { in_kernel, .. }, _) if *in_kernel > 0 && *in_kernel + len > SHARE => {
                    return;
                }
                (Io::Sctp { assoc, .. }, out) => match &self.sctp {
                    Some(s) => match out {
                        Out::Message(stream, m) => s.send(*assoc, *stream, m, SendKind::Data),
                        Out::Eof => s.send(*assoc, 0, &[], SendKind::Eof),
                    },
                    None => Err(io::ErrorKind::NotConnected.into()),
                },
                (Io::Unix { conn, .. }, Out::Message(_, m)) => conn.send(m),
                (Io::Unix { conn, .. }, Out::Eof) => conn.shutdown_write().map(|()| 0),
            };
            match result {
                Ok(n) => {
                    let sent = a.queue.pop_front();
                    a.queued -= len;
                    match &mut a.io {
                        Io::Sctp { in_kernel, .. } => {
                            if n > 0 {
                                a.unacked_since.get_or_insert(now);
                            }
                            *in_kernel += n;
                        }
                        // The kernel took it: the peer is reading.
                        Io::Unix { .. } => a.unacked_since = None,
                    }
                    if matches!(sent, Some(Out::Eof)) {
                        a.closing = Some(now);
                        a.queue.clear();
                        a.queued = 0;
                        if let Io::Unix {
                            read_closed: true, ..
                        } = a.io
                        {
                            // Both sides are done.
                            self.forget(link);
                        }
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match a.io {
                        // The SCTP socket's shared buffer is full: nobody's
                        // fault; wait for a writable edge.
                        Io::Sctp { .. } => {}
                        // This connection's own buffer is full: its peer
                        // is not reading.
                        Io::Unix { .. } => {
                            a.unacked_since.get_or_insert(now);
                        }
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EPIPE and friends: the peer is gone.
                    log::debug!("management send failed: link={link} error={}", Quoted(e));
                    self.forget(link);
                    return;
                }
            }
        }
    }

    /// Closes a Unix connection whose peer has shut its side down, once
    /// everything it asked for is answered and sent.
    fn close_if_done(&mut self, link: Link) {
        if let Some(a) = self.links.get(&link)
            && let Io::Unix {
                read_closed: true, ..
            } = a.io
            && a.queue.is_empty()
            && a.session.is_idle()
        {
            log::debug!("management session closed: link={link} reason=peer-done");
            self.forget(link);
        }
    }

    fn abort(&mut self, link: Link) {
        if let Some(a) = self.links.get(&link)
            && let Io::Sctp { assoc, .. } = a.io
            && let Some(s) = &self.sctp
        {
            let _ = s.send(assoc, 0, &[], SendKind::Abort);
        }
        // A Unix connection is aborted by closing it.
        self.forget(link);
    }

    /// When `tick` must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let per_link = self
            .links
            .values()
            .filter_map(|a| {
                let end = match (a.closing, &a.io) {
                    (Some(t), Io::Unix { .. }) => Some(t + CLOSE_LIMIT),
                    (Some(_), Io::Sctp { .. }) => None,
                    (None, _) => Some(a.last_rx + IDLE_LIMIT),
                };
                let stall = a.unacked_since.map(|s| s + STALL_LIMIT);
                [end, stall].into_iter().flatten().min()
            })
            .min();
        [
            per_link,
            self.arrivals.next_expiry(self.shared.login_grace),
            self.aborts.due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Aborts sessions whose log-in grace time is over and those that do
    /// not drain, closes idle ones and Unix ones whose peer does not close,
    /// and retries blocked sends.
    pub fn tick(&mut self, now: Instant) {
        while let Some(link) =
            self.arrivals
                .expired(now, self.shared.login_grace, |link, serial| {
                    standing(&self.links, link, serial)
                })
        {
            self.abort_before_login(link, Cause::Grace, now);
        }
        if let Some(line) = self.aborts.flush(now) {
            log::warn!("{line}");
        }
        let mut stalled = Vec::new();
        let mut unclosed = Vec::new();
        let mut idle = Vec::new();
        for (link, a) in &self.links {
            if a.unacked_since.is_some_and(|s| now >= s + STALL_LIMIT) {
                stalled.push(*link);
            } else if let Some(t) = a.closing {
                if matches!(a.io, Io::Unix { .. }) && now >= t + CLOSE_LIMIT {
                    unclosed.push(*link);
                }
            } else if now >= a.last_rx + IDLE_LIMIT {
                idle.push(*link);
            }
        }
        for link in stalled {
            log::warn!("management session aborted: link={link} reason=peer-takes-no-data");
            self.abort(link);
        }
        for link in unclosed {
            log::debug!("management session closed: link={link} reason=peer-did-not-close");
            self.forget(link);
        }
        for link in idle {
            if let Some(a) = self.links.get_mut(&link) {
                a.last_rx = now;
                a.queue.push_back(Out::Eof);
            }
        }
        self.flush_all(now);
    }
}
