//! The management endpoint: one SCTP one-to-many socket, its associations,
//! their reassembly buffers and their send queues. The management thread
//! ([`super::service`]) drives it.
//!
//! SCTP-NOTES.md: with the default `net.sctp.sndbuf_policy=0` the send
//! buffer is shared by every association of the socket, so one peer that
//! stops reading could make sends to all others fail. So:
//! - each association may have at most [`SHARE`] payload bytes in the kernel
//!   not yet acknowledged (counted from its last SENDER_DRY notification,
//!   which Linux gives each time an association's sent data is all acked);
//!   the rest waits in its own queue, bounded by [`QUEUE_LIMIT`];
//! - an association whose peer takes nothing for [`STALL_LIMIT`] is aborted;
//! - EAGAIN from the shared buffer is nobody's fault: the association waits
//!   for the socket to become writable and is never blamed for it;
//! - the socket asks for a large send buffer, so that many stuck peers fit.
//!
//! Associations that have not logged in are limited apart from sessions,
//! so that associations held open without credentials cannot keep an
//! administrator out:
//! - each must log in within the log-in grace time (--mgmt-login-grace,
//!   like sshd's LoginGraceTime) or is aborted;
//! - at most --max-mgmt-unauthenticated may wait at once; past that the
//!   oldest is aborted to make room for the newcomer ([`Arrivals::victim`]
//!   says which). Held associations thus only push out each other: to
//!   push out an administrator's, a peer must open more than the cap of
//!   new ones between its arrival and its log in, one round trip later.
//!   (sshd's MaxStartups refuses newcomers instead, which lets whoever
//!   holds the places keep everyone else out.)
//! - logged-in sessions are capped by --max-admin-sessions: a good log in
//!   past it is refused with X'03' and closed gracefully
//!   ([`Session::slot_claimed`] says why), and the sessions open are not
//!   touched.
//!
//! So at most max-admin-sessions + max-mgmt-unauthenticated associations
//! are kept, plus those one turn of reading admits before the cap is
//! applied.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::Waker;

use super::arrivals::{AbortLog, Arrivals, Cause, Standing};
use super::session::{Action, Backend, Session, status_of};
use super::wire::{MAX_REQUEST, Status};
use crate::blocking::{Answer, Pool};
use crate::metrics::{Snapshot, Totals};
use crate::sys::sctp::{AssocId, Notification, SctpSocket, SendKind, assoc_state};
use crate::users::penalty::Penalties;
use crate::users::store::ChangeRequest;
use crate::users::{Directory, UserTable};

/// Unacknowledged bytes one association may have in the shared send buffer.
pub const SHARE: usize = 64 * 1024;
/// Bytes an association may have queued beyond its share before it is aborted.
pub const QUEUE_LIMIT: usize = 256 * 1024;
/// How long sent data may stay unacknowledged before the association is
/// aborted: its peer has stopped reading.
pub const STALL_LIMIT: Duration = Duration::from_secs(10);
/// The send buffer the socket asks for.
pub const SEND_BUFFER: usize = 4 * 1024 * 1024;
/// PROTOCOL section 6: "The server closes an association that sends nothing
/// for 5 minutes."
pub const IDLE_LIMIT: Duration = Duration::from_secs(300);

/// Answers to the management associations, from other threads.
#[derive(Debug)]
pub enum Reply {
    /// A log in was checked: the administrator's name, or `None`.
    LoginChecked {
        /// The association.
        assoc: AssocId,
        /// The administrator, when the log in is good.
        admin: Option<Arc<str>>,
    },
    /// A user change finished with this status.
    ChangeDone {
        /// The association.
        assoc: AssocId,
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
    /// The most associations not logged in at once; past it the oldest is
    /// aborted.
    pub max_unauthenticated: usize,
    /// How long an association may take to log in before it is aborted.
    pub login_grace: Duration,
    /// The most management sessions logged in at once.
    pub max_sessions: usize,
    /// Refused log ins per source address, and the penalties they earn:
    /// while one lasts, every log in from that source is refused unchecked.
    pub penalties: Arc<Penalties>,
}

impl Backend for Shared {
    fn metrics(&self) -> Snapshot {
        self.totals.snapshot()
    }

    fn users(&self) -> Arc<UserTable> {
        self.users.snapshot()
    }
}

enum Out {
    Message(u16, Vec<u8>),
    Eof,
}

struct Assoc {
    session: Session,
    /// Its entry in `Endpoint::arrivals` (see [`Arrivals::push`]).
    serial: u64,
    /// Whether it holds one of the --max-admin-sessions places.
    logged_in: bool,
    /// The message being reassembled (at most MAX_REQUEST + 1 bytes kept).
    rx: Vec<u8>,
    rx_stream: u16,
    queue: VecDeque<Out>,
    queued: usize,
    /// Payload bytes sent since the last SENDER_DRY.
    in_kernel: usize,
    /// When the oldest unacknowledged byte was sent.
    unacked_since: Option<Instant>,
    /// The peer's address, from its first data.
    peer: Option<IpAddr>,
    last_rx: Instant,
    /// SCTP_EOF was sent; nothing more is read or sent.
    closing: bool,
}

/// The endpoint.
pub struct Endpoint {
    sock: SctpSocket,
    assocs: HashMap<AssocId, Assoc>,
    buf: Box<[u8]>,
    notification: Vec<u8>,
    shared: Shared,
    inbox: Sender<Reply>,
    waker: Arc<Waker>,
    /// The associations not logged in, oldest first.
    arrivals: Arrivals,
    /// Associations logged in, and not, in `assocs`.
    logged_in: usize,
    unauthenticated: usize,
    aborts: AbortLog,
}

/// What the association `id` with entry `serial` in the arrivals is doing.
fn standing(assocs: &HashMap<AssocId, Assoc>, id: AssocId, serial: u64) -> Standing {
    match assocs.get(&id) {
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

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("logged_in", &self.logged_in)
            .field("unauthenticated", &self.unauthenticated)
            .finish()
    }
}

impl Endpoint {
    /// Wraps a listening one-to-many socket.
    pub fn new(sock: SctpSocket, shared: Shared, inbox: Sender<Reply>, waker: Arc<Waker>) -> Self {
        if let Err(e) = sock.set_send_buffer(SEND_BUFFER) {
            log::warn!("management socket: cannot set its send buffer: {e}");
        }
        Endpoint {
            sock,
            assocs: HashMap::new(),
            buf: vec![0u8; 64 * 1024].into_boxed_slice(),
            notification: Vec::new(),
            shared,
            inbox,
            waker,
            arrivals: Arrivals::default(),
            logged_in: 0,
            unauthenticated: 0,
            aborts: AbortLog::default(),
        }
    }

    /// Reads until the socket is drained or a turn's budget is used, then
    /// sends what can be sent. Returns `true` when the budget ran out with
    /// input left: call again soon (no new edge will come for it).
    pub fn on_ready(&mut self, now: Instant) -> bool {
        let mut more = true;
        for _ in 0..256 {
            let r = match self.sock.recv(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    more = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("management socket: recv: {e}");
                    more = false;
                    break;
                }
            };
            if r.notification {
                self.notification.extend_from_slice(&self.buf[..r.len]);
                if r.eor {
                    let n = std::mem::take(&mut self.notification);
                    self.on_notification(&n, now);
                }
            } else {
                self.on_data(r.assoc, r.stream, r.len, r.eor, r.from, now);
            }
        }
        self.make_room(now);
        self.flush_all(now);
        more
    }

    fn on_notification(&mut self, n: &[u8], now: Instant) {
        match Notification::parse(n) {
            Some(Notification::AssocChange { assoc, state }) => match state {
                assoc_state::COMM_UP => self.admit(assoc, now),
                assoc_state::RESTART => {
                    // The peer restarted: a new session, logged out.
                    self.forget(assoc);
                    self.admit(assoc, now);
                }
                _ => self.forget(assoc),
            },
            Some(Notification::SenderDry { assoc }) => {
                log::debug!("management association {assoc}: sender dry");
                if let Some(a) = self.assocs.get_mut(&assoc) {
                    a.in_kernel = 0;
                    a.unacked_since = None;
                }
            }
            Some(Notification::PartialDeliveryAborted { assoc }) => {
                if let Some(a) = self.assocs.get_mut(&assoc) {
                    a.rx.clear();
                }
            }
            Some(Notification::Shutdown { .. } | Notification::SendFailed { .. })
            | Some(Notification::Other(_))
            | None => {}
        }
    }

    /// A new association, not logged in. The cap on those is applied by
    /// `make_room` once the turn's input is read.
    fn admit(&mut self, assoc: AssocId, now: Instant) {
        if self.assocs.contains_key(&assoc) {
            return;
        }
        let serial = self.arrivals.push(assoc, now);
        self.unauthenticated += 1;
        self.assocs.insert(assoc, Assoc::new(now, serial));
    }

    fn forget(&mut self, assoc: AssocId) {
        if let Some(a) = self.assocs.remove(&assoc) {
            if a.logged_in {
                self.logged_in -= 1;
            } else {
                self.unauthenticated -= 1;
            }
        }
    }

    /// Aborts associations that have not logged in, oldest first, until no
    /// more than --max-mgmt-unauthenticated remain.
    ///
    /// This runs once per turn, after everything the socket held was read,
    /// rather than at each COMM_UP: an administrator's log in that is
    /// already in the socket behind its COMM_UP has then been handled, so a
    /// burst of honest connections is judged by what they sent, not by the
    /// order the kernel queued the events in. A turn reads at most 256
    /// pieces, which bounds how far past the cap the count can go between.
    fn make_room(&mut self, now: Instant) {
        while self.unauthenticated > self.shared.max_unauthenticated {
            let Some(id) = self
                .arrivals
                .victim(|id, serial| standing(&self.assocs, id, serial))
            else {
                // Every counted association has a live entry; none left
                // would be a bug in the counting, not a reason to loop.
                log::error!(
                    "management: {} associations counted as not logged in, none queued",
                    self.unauthenticated
                );
                break;
            };
            self.abort_before_login(id, Cause::Room, now);
        }
        self.arrivals.compact(self.unauthenticated, |id, serial| {
            standing(&self.assocs, id, serial)
        });
    }

    /// Aborts an association that has not logged in, counts it (METRICS
    /// ID X'85') and logs it, at most one line per interval: these are
    /// caused by peers without credentials, whose number we do not choose.
    fn abort_before_login(&mut self, assoc: AssocId, cause: Cause, now: Instant) {
        log::debug!("management association {assoc}: not logged in; aborting ({cause:?})");
        self.abort(assoc);
        self.shared.totals.add_mgmt_aborted(1);
        if let Some(line) = self.aborts.record(cause, now) {
            log::warn!("{line}");
        }
    }

    fn on_data(
        &mut self,
        assoc: AssocId,
        stream: u16,
        len: usize,
        eor: bool,
        from: Option<IpAddr>,
        now: Instant,
    ) {
        // Data before (or without) COMM_UP still makes a session.
        self.admit(assoc, now);
        let Some(a) = self.assocs.get_mut(&assoc) else {
            return;
        };
        if a.closing {
            return;
        }
        if a.peer.is_none() {
            a.peer = from;
        }
        a.last_rx = now;
        if a.rx.is_empty() {
            a.rx_stream = stream;
        }
        // Keep one byte past the limit: enough for the parsers to see that the
        // message is too long (PROTOCOL section 1: "A longer request is
        // malformed"), without buffering whatever a peer sends.
        let room = (MAX_REQUEST + 1).saturating_sub(a.rx.len());
        a.rx.extend_from_slice(&self.buf[..len.min(room)]);
        if !eor {
            return;
        }
        let msg = std::mem::take(&mut a.rx);
        // A penalised source's log in is refused unchecked; the penalty was
        // logged once when it started.
        if a.session.awaits_login()
            && a.peer
                .is_some_and(|ip| self.shared.penalties.is_penalised(ip, now))
        {
            a.session.throttle();
        }
        if a.session
            .handle_message(a.rx_stream, &msg, &self.shared)
            .is_err()
        {
            log::warn!("management association {assoc}: too many requests in flight; aborting");
            self.abort(assoc);
            return;
        }
        a.rx = msg;
        a.rx.clear();
        self.run_actions(assoc);
    }

    /// Carries out what the session of `assoc` asks for.
    fn run_actions(&mut self, assoc: AssocId) {
        loop {
            let Some(a) = self.assocs.get_mut(&assoc) else {
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
                        log::warn!("management association {assoc}: does not read; aborting");
                        self.abort(assoc);
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
                            "management association {assoc}: {} sessions already open; \
                             log in refused with X'03'",
                            self.shared.max_sessions
                        );
                    }
                    a.session.slot_claimed(granted, &self.shared);
                }
                Action::CheckLogin(creds) => {
                    let answer = inbox(&self.inbox, &self.waker, move |admin| {
                        Reply::LoginChecked { assoc, admin }
                    });
                    if self.shared.pool.check_admin(creds, a.peer, answer).is_err() {
                        a.session.login_checked(None, &self.shared);
                    }
                }
                Action::Change(change) => {
                    let answer = inbox(&self.inbox, &self.waker, move |result| Reply::ChangeDone {
                        assoc,
                        status: status_of(result),
                    });
                    let req = ChangeRequest { change, answer };
                    if let Err(e) = self.shared.changes.send(req) {
                        log::error!("users writer is gone: {:?}", e.into_inner().change);
                        a.session.change_done(Status::ServerError, &self.shared);
                    }
                }
            }
        }
    }

    /// An answer from another thread.
    pub fn on_reply(&mut self, reply: Reply, now: Instant) {
        match reply {
            Reply::LoginChecked { assoc, admin } => {
                let Some(a) = self.assocs.get_mut(&assoc) else {
                    return;
                };
                // One line per penalty, not per refusal: refusals are what
                // anyone can cause.
                if admin.is_none()
                    && let Some(ip) = a.peer
                    && !self.shared.penalties.is_penalised(ip, now)
                    && let Some(p) = self.shared.penalties.failure(ip, now)
                {
                    log::warn!(
                        "management log in: {} refusals from {}: its log ins are refused \
                         unchecked for {} s",
                        p.failures,
                        p.source,
                        p.length.as_secs()
                    );
                }
                a.session.login_checked(admin, &self.shared);
                self.run_actions(assoc);
                self.flush(assoc, now);
            }
            Reply::ChangeDone { assoc, status } => {
                let Some(a) = self.assocs.get_mut(&assoc) else {
                    return;
                };
                a.session.change_done(status, &self.shared);
                self.run_actions(assoc);
                self.flush(assoc, now);
            }
        }
    }

    fn flush_all(&mut self, now: Instant) {
        let ids: Vec<AssocId> = self
            .assocs
            .iter()
            .filter(|(_, a)| !a.queue.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.flush(id, now);
        }
    }

    fn flush(&mut self, assoc: AssocId, now: Instant) {
        loop {
            let Some(a) = self.assocs.get_mut(&assoc) else {
                return;
            };
            let Some(front) = a.queue.front() else {
                return;
            };
            let len = match front {
                Out::Message(_, m) => m.len(),
                Out::Eof => 0,
            };
            // Over its share: wait for SENDER_DRY. A message always goes
            // out when nothing else is in flight, however large.
            if a.in_kernel > 0 && a.in_kernel + len > SHARE {
                return;
            }
            let result = match front {
                Out::Message(stream, m) => self.sock.send(assoc, *stream, m, SendKind::Data),
                Out::Eof => self.sock.send(assoc, 0, &[], SendKind::Eof),
            };
            match result {
                Ok(n) => {
                    let sent = a.queue.pop_front();
                    if n > 0 {
                        a.unacked_since.get_or_insert(now);
                    }
                    a.in_kernel += n;
                    a.queued -= n;
                    if matches!(sent, Some(Out::Eof)) {
                        a.closing = true;
                        a.queue.clear();
                        a.queued = 0;
                    }
                }
                // The shared buffer is full: wait for a writable edge.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EPIPE and friends: the association is gone.
                    log::debug!("management association {assoc}: send: {e}");
                    self.forget(assoc);
                    return;
                }
            }
        }
    }

    fn abort(&mut self, assoc: AssocId) {
        let _ = self.sock.send(assoc, 0, &[], SendKind::Abort);
        self.forget(assoc);
    }

    /// When `tick` must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let per_assoc = self
            .assocs
            .values()
            .map(|a| match a.unacked_since {
                Some(s) => (s + STALL_LIMIT).min(a.last_rx + IDLE_LIMIT),
                None => a.last_rx + IDLE_LIMIT,
            })
            .min();
        [
            per_assoc,
            self.arrivals.next_expiry(self.shared.login_grace),
            self.aborts.due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Aborts associations whose log-in grace time is over and those that
    /// do not drain, closes idle ones, and retries blocked sends.
    pub fn tick(&mut self, now: Instant) {
        while let Some(id) = self
            .arrivals
            .expired(now, self.shared.login_grace, |id, serial| {
                standing(&self.assocs, id, serial)
            })
        {
            self.abort_before_login(id, Cause::Grace, now);
        }
        if let Some(line) = self.aborts.flush(now) {
            log::warn!("{line}");
        }
        let mut stalled = Vec::new();
        let mut idle = Vec::new();
        for (id, a) in &self.assocs {
            if a.unacked_since.is_some_and(|s| now >= s + STALL_LIMIT) {
                stalled.push(*id);
            } else if now >= a.last_rx + IDLE_LIMIT && !a.closing {
                idle.push(*id);
            }
        }
        for id in stalled {
            log::warn!("management association {id}: its peer takes no data; aborting");
            self.abort(id);
        }
        for id in idle {
            if let Some(a) = self.assocs.get_mut(&id) {
                a.last_rx = now;
                a.queue.push_back(Out::Eof);
            }
        }
        self.flush_all(now);
    }
}

impl Assoc {
    fn new(now: Instant, serial: u64) -> Self {
        Assoc {
            session: Session::new(),
            serial,
            logged_in: false,
            rx: Vec::new(),
            rx_stream: 0,
            queue: VecDeque::new(),
            queued: 0,
            in_kernel: 0,
            unacked_since: None,
            peer: None,
            last_rx: now,
            closing: false,
        }
    }
}
