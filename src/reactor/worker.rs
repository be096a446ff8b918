//! One worker: a `mio::Poll`, its listeners, a slab of connections, a
//! buffer pool and timers, on one pinned thread.
//!
//! The worker drives each connection's [`Connection`] state machine: it
//! turns readiness into events for it (bytes in, attempts connected or
//! failed, streams ended), performs the actions it asks for (send, verify,
//! resolve, connect, cancel, relay, shut down, close) and fires its timers.
//! What a connection is doing lives in the machine; here are only its
//! sockets, buffers and readiness flags.

mod accept;
mod acct;
mod drive;
mod extra;
mod proxied;
mod sockets;

use std::io;
use std::mem;
use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use slab::Slab;

use super::arrivals::Arrivals;
use super::limits::SessionLimits;
use super::pipe::Ready;
use super::pool::BufferPool;
use super::rate::Rates;
use super::timer::Timers;
use super::{Inbound, WorkerConfig};
use crate::blocking::Pool;
use crate::logfmt::{LogSafe, Quoted};
use crate::metrics::{AccessRecord, AccessResult, Counters, Report, WorkerGauges};
use crate::rules;
use crate::socks5::connection::{self, Connection, Outcome, ProxyRefusal, Reading};
use crate::socks5::wire::Reply;
use crate::users::penalty::Penalties;
use crate::users::{self, Directory};
use drive::step;
use sockets::{Sockets, evictable};

const WAKER: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER_BASE - i`.
const LISTENER_BASE: usize = usize::MAX - 1;
const MAX_LISTENERS: usize = 1024;
/// A connection's tokens are `key << SLOT_BITS | slot`: slot 0 is the
/// client, slot `1 + i` connection attempt `i` (and the target it becomes).
const SLOT_BITS: u32 = 8;
const SLOT_MASK: usize = (1 << SLOT_BITS) - 1;
const MAX_SESSION_TOKEN: usize = LISTENER_BASE - MAX_LISTENERS - 1;

/// Bytes one direction of a tunnel may move per turn before others get theirs.
const RELAY_BUDGET: usize = 256 * 1024;
/// How long counts wait in a worker before they go to the aggregator (twice
/// this at most when the worker goes quiet): a query after 100 ms of quiet
/// still sees exact values.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Bytes read from a client at once during its handshake.
const HANDSHAKE_READ: usize = 16 * 1024;
/// How long a refused client may take to read its reply and go away.
const LINGER: Duration = Duration::from_secs(2);
/// Empty attempt lists a worker keeps for reuse.
const SPARE_ATTEMPT_LISTS: usize = 64;
/// A session slab that grew past this many entries is given back whole
/// once its last session closes.
const RELEASE_SESSIONS_ABOVE: usize = 1024;

/// What a worker shares with the rest of the server.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The user table.
    pub users: Arc<Directory>,
    /// The access rules in force.
    pub rules: Arc<rules::Shared>,
    /// Deltas and access records go here.
    pub reports: Sender<Report>,
    /// Name resolution.
    pub pool: Pool,
    /// Set when the server should stop accepting and drain.
    pub stop: Arc<AtomicBool>,
    /// Timeouts, buffer sizes and logging.
    pub config: WorkerConfig,
    /// Client connections open in the whole server (for --max-connections).
    pub open: Arc<AtomicUsize>,
    /// UDP associations open in the whole server (for
    /// --max-udp-associations).
    pub udp_open: Arc<AtomicUsize>,
    /// Failed SOCKS authentications per source, and the penalties they earn.
    pub penalties: Arc<Penalties>,
    /// Sessions per user and per client address.
    pub limits: Arc<SessionLimits>,
    /// The buckets of rate-limited tunnels.
    pub rates: Arc<Rates>,
}

/// A running worker thread.
#[derive(Debug)]
pub struct WorkerHandle {
    waker: Arc<Waker>,
    thread: thread::JoinHandle<()>,
}

impl WorkerHandle {
    /// Wakes the worker's poll (to notice a stop request).
    pub fn wake(&self) {
        let _ = self.waker.wake();
    }

    /// Waits for the worker to end.
    pub fn join(self) {
        if self.thread.join().is_err() {
            log::error!("a worker thread panicked");
        }
    }
}

/// A worker, built on the spawning thread and run on its own.
#[derive(Debug)]
pub struct Worker {
    /// Its number, from 0 (for per-worker gauges).
    index: usize,
    /// The gauges last sent to the aggregator.
    reported_gauges: WorkerGauges,
    poll: Poll,
    listeners: Vec<TcpListener>,
    sessions: Slab<Sockets>,
    inbox: Receiver<Inbound>,
    stop: Arc<AtomicBool>,
    /// Client connections open in the whole server.
    open: Arc<AtomicUsize>,
    /// When counts were last sent to the aggregator.
    last_flush: Instant,
    /// Accepting is paused (out of descriptors) until then.
    paused_until: Option<Instant>,
    last_pause_log: Option<Instant>,
    /// Connections in order of arrival: the oldest anonymous handshakes are
    /// closed first to make room at the descriptor limit.
    arrivals: Arrivals,
    /// Handshakes closed for room since the last warning about it.
    evicted_unreported: u64,
    /// The connections driven in this turn because they used their budget
    /// in the last (swapped with `Ctx::again`, so neither is reallocated).
    again_now: Vec<(usize, u64)>,
    ctx: Ctx,
}

/// Everything a connection step may use besides its own sockets.
#[derive(Debug)]
struct Ctx {
    registry: Registry,
    waker: Arc<Waker>,
    inbox_tx: Sender<Inbound>,
    pool: BufferPool,
    counters: Counters,
    timers: Timers,
    users: users::Reader,
    rules: rules::Reader,
    penalties: Arc<Penalties>,
    reports: Sender<Report>,
    blocking: Pool,
    cfg: WorkerConfig,
    machine: Arc<connection::Config>,
    now: Instant,
    next_id: u64,
    /// Connections that used their relay budget and must be driven again.
    again: Vec<(usize, u64)>,
    /// Empty lists of connection attempts, kept for reuse: a request
    /// allocates none.
    spare_attempts: Vec<Vec<sockets::Attempt>>,
    /// Where handshake bytes are read first: a connection keeps only the
    /// few bytes of an incomplete message, never a relay buffer, so that a
    /// crowd of clients sending their handshakes slowly holds little memory.
    scratch: Box<[u8]>,
    /// UDP associations open in the whole server.
    udp_open: Arc<AtomicUsize>,
    /// Sessions per user and per client address.
    limits: Arc<SessionLimits>,
    /// The buckets of rate-limited tunnels.
    rates: Arc<Rates>,
    /// Per-user counts since the last report.
    accounts: acct::Accounts,
    /// A xorshift generator's state, for the rate limits' jitter.
    rng: u64,
    /// Where datagrams are received (empty until the worker's first UDP
    /// association; one for all of them).
    datagrams: Box<[u8]>,
    /// The lines about refused PROXY headers.
    proxy_log: proxied::ProxyLog,
}

enum Next {
    Open,
    Close,
}

fn token(key: usize, slot: usize) -> Token {
    Token(key << SLOT_BITS | slot)
}

/// The shorter of a poll timeout (`None`: none) and `d`.
fn sooner(timeout: Option<Duration>, d: Duration) -> Option<Duration> {
    Some(timeout.map_or(d, |t| t.min(d)))
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Worker {
    /// Builds a worker around `listeners` (non-blocking, already listening).
    pub fn new(index: usize, listeners: Vec<StdListener>, shared: Shared) -> io::Result<Self> {
        assert!(
            listeners.len() <= MAX_LISTENERS,
            "at most {MAX_LISTENERS} listen addresses"
        );
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut mio_listeners = Vec::with_capacity(listeners.len());
        for (i, l) in listeners.into_iter().enumerate() {
            l.set_nonblocking(true)?;
            let mut l = TcpListener::from_std(l);
            registry.register(&mut l, Token(LISTENER_BASE - i), Interest::READABLE)?;
            mio_listeners.push(l);
        }
        let (inbox_tx, inbox) = crossbeam_channel::unbounded();
        let cfg = shared.config;
        // One copy per worker: its reference count never bounces between CPUs.
        let machine = Arc::new(connection::Config {
            handshake_timeout: cfg.handshake_timeout,
            connect_timeout: cfg.connect_timeout,
            connection_attempt_delay: cfg.connect_attempt_delay,
            idle_timeout: cfg.idle_timeout,
            linger: LINGER,
            grace: cfg.grace,
            // More unparsed input than a relay buffer holds is not a
            // handshake; early data must fit the buffer it goes to.
            max_unparsed: cfg.buffer_size,
            bind_timeout: cfg.bind_timeout,
        });
        Ok(Worker {
            index,
            reported_gauges: WorkerGauges::default(),
            poll,
            listeners: mio_listeners,
            sessions: Slab::new(),
            inbox,
            stop: shared.stop,
            open: shared.open,
            paused_until: None,
            last_flush: Instant::now(),
            last_pause_log: None,
            arrivals: Arrivals::default(),
            evicted_unreported: 0,
            again_now: Vec::new(),
            ctx: Ctx {
                registry,
                waker,
                inbox_tx,
                pool: BufferPool::new(cfg.buffer_size, cfg.pool_keep),
                counters: Counters::default(),
                timers: Timers::default(),
                users: shared.users.reader(),
                rules: shared.rules.reader(),
                penalties: shared.penalties,
                reports: shared.reports,
                blocking: shared.pool,
                cfg,
                machine,
                now: Instant::now(),
                next_id: 0,
                again: Vec::new(),
                spare_attempts: Vec::new(),
                scratch: vec![0u8; HANDSHAKE_READ].into_boxed_slice(),
                udp_open: shared.udp_open,
                limits: shared.limits,
                rates: shared.rates,
                accounts: acct::Accounts::default(),
                rng: 0x9E37_79B9_7F4A_7C15 ^ index as u64,
                datagrams: Box::default(),
                proxy_log: proxied::ProxyLog::default(),
            },
        })
    }

    /// Starts the worker on a thread named `name`, pinned to `cpu` if given.
    pub fn spawn(self, name: String, cpu: Option<usize>) -> io::Result<WorkerHandle> {
        let waker = Arc::clone(&self.ctx.waker);
        let thread = thread::Builder::new().name(name.clone()).spawn(move || {
            if let Some(cpu) = cpu
                && let Err(e) = crate::sys::cpu::pin_current_thread(cpu)
            {
                log::warn!(
                    "worker not pinned: worker={} cpu={cpu} error={}",
                    LogSafe(&name),
                    Quoted(e)
                );
            }
            let mut w = self;
            if let Err(e) = w.run() {
                log::error!(
                    "worker event loop failed: worker={} error={}",
                    LogSafe(&name),
                    Quoted(e)
                );
            }
        })?;
        Ok(WorkerHandle { waker, thread })
    }

    /// The event loop. Returns when a stop was asked for and every
    /// connection ended, or the grace period ran out.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut grace_end: Option<Instant> = None;
        loop {
            let mut timeout = self.ctx.timers.timeout(self.ctx.now);
            if !self.ctx.counters.is_zero() {
                // Counted but not sent yet: wake to send it if nothing else
                // happens, at most 2 x FLUSH_EVERY late. The timeout is a
                // whole period, not what is left of the current one: a
                // timeout shrinking towards its deadline is re-armed as the
                // CPU's next timer on every turn, and that cost the pinned
                // ping-pong p99 more than half (31-36 us against 12.5 us).
                timeout = sooner(timeout, FLUSH_EVERY);
            }
            if !self.ctx.again.is_empty() {
                timeout = Some(Duration::ZERO);
            }
            if let Some(p) = self.paused_until {
                timeout = sooner(timeout, p.saturating_duration_since(self.ctx.now));
            }
            if let Some(end) = grace_end {
                timeout = sooner(timeout, end.saturating_duration_since(self.ctx.now));
            }
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.ctx.now = Instant::now();
            if self.paused_until.is_some_and(|p| self.ctx.now >= p) {
                self.resume_accepting();
            }

            for ev in events.iter() {
                match ev.token() {
                    WAKER => self.drain_inbox(),
                    Token(t) if t > MAX_SESSION_TOKEN => self.accept(LISTENER_BASE - t),
                    Token(t) => self.on_socket_event(t, ev),
                }
            }
            mem::swap(&mut self.again_now, &mut self.ctx.again);
            for i in 0..self.again_now.len() {
                let (key, id) = self.again_now[i];
                if self.sessions.get(key).is_some_and(|s| s.id == id) {
                    self.drive(key, false);
                }
            }
            self.again_now.clear();
            self.expire_timers();

            if grace_end.is_none() && self.stop.load(Ordering::Acquire) {
                grace_end = Some(self.ctx.now + self.ctx.cfg.grace);
                self.begin_stop();
            }
            if self.ctx.now >= self.last_flush + FLUSH_EVERY {
                self.flush_counters();
            }
            // Each connection closes itself when the grace ends; the end
            // bounds the loop even so.
            if let Some(end) = grace_end
                && (self.sessions.is_empty() || Instant::now() >= end)
            {
                break;
            }
        }
        let keys: Vec<usize> = self.sessions.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.close(key, false);
        }
        self.flush_counters();
        Ok(())
    }

    /// No new clients; every connection gets the grace period.
    fn begin_stop(&mut self) {
        for mut l in self.listeners.drain(..) {
            let _ = self.ctx.registry.deregister(&mut l);
        }
        let keys: Vec<usize> = self.sessions.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(s) = self.sessions.get_mut(key) {
                s.conn.handle_stop(self.ctx.now);
            }
            self.settle(key, Ok(Next::Open));
        }
    }

    /// Sends what was counted since the last time. Called at most every
    /// [`FLUSH_EVERY`] under load: a send can wake the aggregator thread, a
    /// context switch too many per event on a small machine.
    fn flush_counters(&mut self) {
        self.last_flush = self.ctx.now;
        // The aggregator only goes away after every worker has ended.
        if !self.ctx.counters.is_zero() {
            let delta = mem::take(&mut self.ctx.counters);
            let _ = self.ctx.reports.send(Report::Delta(Box::new(delta)));
        }
        let users = self.ctx.accounts.drain();
        if !users.is_empty() {
            let _ = self.ctx.reports.send(Report::Users(users));
        }
        let gauges = WorkerGauges {
            sessions: self.sessions.len() as u64,
            buffers_in_use: self.ctx.pool.in_use() as u64,
        };
        if gauges != self.reported_gauges {
            self.reported_gauges = gauges;
            let _ = self.ctx.reports.send(Report::Worker(self.index, gauges));
        }
    }

    fn drain_inbox(&mut self) {
        loop {
            let now = self.ctx.now;
            let (key, id) = match self.inbox.try_recv() {
                Ok(Inbound::Resolved { key, id, result }) => {
                    if let Some(s) = self.sessions.get_mut(key).filter(|s| s.id == id) {
                        s.conn
                            .handle_resolved(now, result, &self.ctx.gate(s.peer.ip()));
                    }
                    (key, id)
                }
                Ok(Inbound::UdpResolved {
                    key,
                    id,
                    host,
                    result,
                }) => {
                    if let Some(s) = self.sessions.get_mut(key).filter(|s| s.id == id)
                        && let Some(extra) = s.extra.as_deref_mut()
                    {
                        extra.resolved(&mut self.ctx, &host, result);
                        s.conn.handle_relayed(now);
                    }
                    (key, id)
                }
                Ok(Inbound::Verified { key, id, user }) => {
                    if let Some(s) = self.sessions.get_mut(key).filter(|s| s.id == id) {
                        s.conn
                            .handle_verified(now, user, &self.ctx.gate(s.peer.ip()));
                    }
                    (key, id)
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            };
            if self.sessions.get(key).is_some_and(|s| s.id == id) {
                self.drive(key, true);
            }
        }
    }

    fn on_socket_event(&mut self, token: usize, ev: &mio::event::Event) {
        let (key, slot) = (token >> SLOT_BITS, token & SLOT_MASK);
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        // None: a socket closed since the event was reported.
        let Some(ready) = s.ready_of(slot) else {
            return;
        };
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            ready.read = true;
        }
        if ev.is_read_closed() || ev.is_error() {
            ready.hup = true;
        }
        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
            ready.write = true;
        }
        // The client is not read while its request is served: a reset is
        // only seen here.
        let lost = slot == 0 && ev.is_error() && s.conn.reading() == Reading::Paused;
        if lost {
            s.conn.handle_lost(self.ctx.now);
        }
        self.drive(key, lost);
    }

    /// Makes what progress connection `key` can; `told` when its machine
    /// was handed an event since it was last asked what to do.
    fn drive(&mut self, key: usize, told: bool) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let next = step(s, key, &mut self.ctx, told);
        self.settle(key, next);
    }

    /// Closes the connection on error or when it is done; otherwise makes
    /// sure its earliest deadline is in the timer heap.
    fn settle(&mut self, key: usize, next: io::Result<Next>) {
        match next {
            Ok(Next::Open) => {
                let Some(s) = self.sessions.get_mut(key) else {
                    return;
                };
                if let Some(d) = s.conn.poll_timeout()
                    && s.armed.is_none_or(|a| d < a)
                {
                    s.armed = Some(d);
                    self.ctx.timers.arm(d, key, s.id);
                }
            }
            Ok(Next::Close) => self.close(key, false),
            Err(e) => {
                if let Some(s) = self.sessions.get(key) {
                    log::debug!(
                        "connection failed: conn={} client={} error={}",
                        s.id,
                        s.peer,
                        Quoted(e)
                    );
                }
                self.close(key, false);
            }
        }
    }

    fn expire_timers(&mut self) {
        let now = self.ctx.now;
        // Entries of closed connections linger until due: compact when they
        // outnumber the live ones by far (amortised O(1) per entry).
        if self.ctx.timers.len() > 4 * (self.sessions.len() + 256) {
            let sessions = &self.sessions;
            self.ctx.timers.retain(|key, id, at| {
                sessions
                    .get(key)
                    .is_some_and(|s| s.id == id && s.armed == Some(at))
            });
        }
        while let Some((at, key, id)) = self.ctx.timers.pop_due(now) {
            let Some(s) = self.sessions.get_mut(key) else {
                continue;
            };
            if s.id != id || s.armed != Some(at) {
                continue;
            }
            s.armed = None;
            s.conn.handle_timeout(now);
            let next = step(s, key, &mut self.ctx, true);
            self.settle(key, next);
        }
    }

    /// Closes connection `key`; `evicted` when it makes room for a new one.
    fn close(&mut self, key: usize, evicted: bool) {
        let Some(mut s) = self.sessions.try_remove(key) else {
            return;
        };
        s.up.discard(&mut self.ctx.pool);
        s.down.discard(&mut self.ctx.pool);
        self.ctx.recycle(mem::take(&mut s.attempts));
        self.ctx.counters.closed += 1;
        if self.ctx.cfg.max_connections.is_some() {
            self.open.fetch_sub(1, Ordering::AcqRel);
        }
        // A balancer's connection counts for its client from its header on.
        if let Some(c) = &self.ctx.limits.per_client
            && s.conn.client_admitted()
        {
            c.give_back(&s.peer.ip().to_canonical());
        }
        if s.user_slot != acct::NO_USER {
            self.ctx.accounts.close(s.user_slot);
        }
        if s.conn.holds_user_session()
            && let (Some(c), Some(user)) = (&self.ctx.limits.per_user, s.conn.user())
        {
            c.give_back(user);
        }
        let extra = s.extra.take();
        if let Some(extra::Extra::Udp(_)) = extra.as_deref() {
            self.ctx.udp_open.fetch_sub(1, Ordering::AcqRel);
        }
        // A balancer's health check is no client's connection: not logged.
        if let Some(start) = s.logged_start
            && !s.conn.is_health_check()
        {
            let outcome = s.conn.outcome();
            let result = match outcome {
                _ if evicted => AccessResult::Evicted,
                None => AccessResult::Incomplete,
                Some(Outcome::Succeeded) => AccessResult::Reply(Reply::Succeeded),
                Some(Outcome::Rejected(reply)) => AccessResult::Reply(reply),
                Some(Outcome::Denied(_)) => AccessResult::Reply(Reply::NotAllowed),
                Some(Outcome::AuthFailed) => AccessResult::AuthFailed,
                Some(Outcome::BadVersion) => AccessResult::BadVersion,
                Some(Outcome::NoAcceptableMethod) => AccessResult::NoAcceptableMethod,
                // A header where none belongs is a bad SOCKS version.
                Some(Outcome::ProxyHeader(ProxyRefusal::Untrusted)) => AccessResult::BadVersion,
                Some(Outcome::ProxyHeader(_)) => AccessResult::BadProxyHeader,
            };
            let (bytes_up, bytes_down) = match extra.as_deref() {
                Some(extra::Extra::Udp(r)) => r.bytes(),
                _ => (s.up.delivered(), s.down.delivered()),
            };
            let rec = AccessRecord {
                start,
                client: s.peer,
                via: s.conn.via(),
                // Named once the handshake has an outcome: a name whose
                // check never answered is nobody's.
                user: outcome.and(s.conn.user().cloned()),
                command: s.conn.command(),
                target: s.conn.take_target(),
                connected: s.conn.connected(),
                result,
                bytes_up,
                bytes_down,
                datagrams: extra.as_deref().and_then(extra::Extra::datagrams),
                rule: match outcome {
                    Some(Outcome::Denied(origin)) => {
                        Some(self.ctx.rules.current().describe(origin).to_string().into())
                    }
                    _ => None,
                },
                duration: self.ctx.now.saturating_duration_since(s.conn.started()),
            };
            let _ = self.ctx.reports.send(Report::Access(Box::new(rec)));
        }
        // Closing a descriptor removes it from the epoll set: no deregister
        // calls needed on this hot path. Dropping `s` closes every socket.
        release_if_empty(&mut self.sessions);
    }
}

/// Gives back the memory of an empty slab that grew past
/// [`RELEASE_SESSIONS_ABOVE`] entries; true if it did. A slab keeps the
/// entries of its busiest moment (528 bytes each in a release build, 50 MiB
/// after 100,000 tunnels) for as long as it lives, and its keys are the
/// sockets' poll tokens, so it cannot be compacted under open sessions:
/// empty is the moment it can shrink. Amortised O(1): dropping N entries
/// follows more than N insertions.
fn release_if_empty<T>(slab: &mut Slab<T>) -> bool {
    if slab.is_empty() && slab.capacity() > RELEASE_SESSIONS_ABOVE {
        *slab = Slab::new();
        true
    } else {
        false
    }
}

impl Ctx {
    /// A number from 0 to 1, different each time (xorshift64; no need for
    /// more than spreading wake-ups).
    fn jitter(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Keeps an attempt list for reuse (its sockets are closed here).
    fn recycle(&mut self, mut list: Vec<sockets::Attempt>) {
        if list.capacity() > 0 && self.spare_attempts.len() < SPARE_ATTEMPT_LISTS {
            list.clear();
            self.spare_attempts.push(list);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_slab_is_given_back_when_its_last_session_closes() {
        let mut slab: Slab<[u8; 560]> = Slab::new();
        let keys: Vec<usize> = (0..2 * RELEASE_SESSIONS_ABOVE)
            .map(|_| slab.insert([0; 560]))
            .collect();
        let (last, rest) = keys.split_last().unwrap();
        for &k in rest {
            slab.remove(k);
            assert!(!release_if_empty(&mut slab));
        }
        assert!(slab.capacity() >= 2 * RELEASE_SESSIONS_ABOVE);
        slab.remove(*last);
        assert!(release_if_empty(&mut slab));
        assert_eq!(slab.capacity(), 0);
        // A small one is kept for the next sessions.
        let k = slab.insert([0; 560]);
        slab.remove(k);
        assert!(!release_if_empty(&mut slab));
        assert!(slab.capacity() > 0);
    }
}
