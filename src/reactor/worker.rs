//! One worker: a `mio::Poll`, its listeners, a slab of sessions, a buffer
//! pool and timers, on one pinned thread.

use std::io::{self, Read};
use std::mem;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use slab::Slab;

use super::arrivals::Arrivals;
use super::pipe::{Pipe, Pump, Ready};
use super::pool::BufferPool;
use super::timer::Timers;
use super::{Inbound, WorkerConfig};
use crate::blocking::{Answer, Pool, Refused};
use crate::metrics::{AccessRecord, AccessResult, Counters, Report};
use crate::socks5::reply_for_error;
use crate::socks5::session::{Authenticator, Event, Handshake, Outcome, Verdict};
use crate::socks5::wire::{Reply, TargetAddr};
use crate::sys::net::connection_waits;
use crate::users::penalty::Penalties;
use crate::users::{self, Directory, UserTable};

const WAKER: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER_BASE - i`.
const LISTENER_BASE: usize = usize::MAX - 1;
const MAX_LISTENERS: usize = 1024;
/// Session tokens are `key * 2` (client) and `key * 2 + 1` (target).
const MAX_SESSION_TOKEN: usize = LISTENER_BASE - MAX_LISTENERS - 1;

/// Bytes one direction of a tunnel may move per turn before others get theirs.
const RELAY_BUDGET: usize = 256 * 1024;
/// How long counts wait in a worker before they go to the aggregator (twice
/// this at most when the worker goes quiet): a query after 100 ms of quiet
/// still sees exact values.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// How long accepting pauses when the process is out of descriptors and no
/// handshake is left to close for room.
const ACCEPT_PAUSE: Duration = Duration::from_millis(200);
/// At most one warning about running out in this time.
const PAUSE_LOG_EVERY: Duration = Duration::from_secs(10);
/// Handshakes closed at most, oldest first, each time accept(2) finds no
/// descriptor: room for a few new clients (two descriptors per tunnel)
/// without emptying the worker for one.
const EVICT_AT_ONCE: usize = 8;
/// Bytes read from a client at once during its handshake.
const HANDSHAKE_READ: usize = 16 * 1024;
/// How long a refused client may take to read its reply and go away.
const LINGER: Duration = Duration::from_secs(2);

/// What a worker shares with the rest of the server.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The user table.
    pub users: Arc<Directory>,
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
    /// Failed SOCKS authentications per source, and the penalties they earn.
    pub penalties: Arc<Penalties>,
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
    poll: Poll,
    listeners: Vec<TcpListener>,
    sessions: Slab<Session>,
    inbox: Receiver<Inbound>,
    stop: Arc<AtomicBool>,
    /// Client connections open in the whole server.
    open: Arc<AtomicUsize>,
    /// When counts were last sent to the aggregator.
    last_flush: Instant,
    /// Accepting is paused (out of descriptors) until then.
    paused_until: Option<Instant>,
    last_pause_log: Option<Instant>,
    /// Sessions in order of arrival: the oldest handshakes are closed first
    /// to make room at the descriptor limit.
    arrivals: Arrivals,
    /// Handshakes closed for room since the last warning about it.
    evicted_unreported: u64,
    ctx: Ctx,
}

/// Everything a session step may use besides the session itself.
#[derive(Debug)]
struct Ctx {
    registry: Registry,
    waker: Arc<Waker>,
    inbox_tx: Sender<Inbound>,
    pool: BufferPool,
    counters: Counters,
    timers: Timers,
    users: users::Reader,
    penalties: Arc<Penalties>,
    reports: Sender<Report>,
    blocking: Pool,
    cfg: WorkerConfig,
    now: Instant,
    next_id: u64,
    /// Sessions that used their relay budget and must be driven again.
    again: Vec<(usize, u64)>,
    /// Where handshake bytes are read first: a session keeps only the few
    /// bytes of an incomplete message, never a relay buffer, so that a crowd
    /// of clients sending their handshakes slowly holds little memory.
    scratch: Box<[u8]>,
}

#[derive(Debug)]
enum Phase {
    /// Reading the greeting, the RFC 1929 request and the SOCKS request.
    Handshake(Handshake),
    /// Waiting for the resolver.
    Resolving(Handshake),
    /// Trying target addresses in turn.
    Connecting {
        hs: Handshake,
        addrs: Vec<SocketAddr>,
        next: usize,
        last_err: Option<io::Error>,
    },
    /// The tunnel is open.
    Relay,
    /// A refusal is being sent; then the client gets a moment to go away.
    Lingering { until: Instant, shut: bool },
}

/// One client connection and, once connected, its target.
#[derive(Debug)]
struct Session {
    id: u64,
    client: TcpStream,
    target: Option<TcpStream>,
    cready: Ready,
    tready: Ready,
    /// The client's bytes not parsed yet during the handshake (an
    /// incomplete message, or what came while a password was checked).
    hs_in: Vec<u8>,
    /// Client to target.
    up: Pipe,
    /// Target to client; also carries the SOCKS replies.
    down: Pipe,
    phase: Phase,
    handshake_deadline: Instant,
    attempt_deadline: Option<Instant>,
    last_active: Instant,
    /// The deadline this session has in the timer heap, if any.
    armed: Option<Instant>,
    started: Instant,
    log: Log,
}

#[derive(Debug)]
struct Log {
    start: SystemTime,
    client: SocketAddr,
    user: Option<Arc<str>>,
    target: Option<TargetAddr>,
    connected: Option<SocketAddr>,
    result: AccessResult,
}

enum Next {
    Open,
    Close,
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
    pub fn new(listeners: Vec<StdListener>, shared: Shared) -> io::Result<Self> {
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
        Ok(Worker {
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
            ctx: Ctx {
                registry,
                waker,
                inbox_tx,
                pool: BufferPool::new(cfg.buffer_size, cfg.pool_keep),
                counters: Counters::default(),
                timers: Timers::default(),
                users: shared.users.reader(),
                penalties: shared.penalties,
                reports: shared.reports,
                blocking: shared.pool,
                cfg,
                now: Instant::now(),
                next_id: 0,
                again: Vec::new(),
                scratch: vec![0u8; HANDSHAKE_READ].into_boxed_slice(),
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
                log::warn!("{name}: cannot pin to CPU {cpu}: {e}");
            }
            let mut w = self;
            if let Err(e) = w.run() {
                log::error!("{name}: event loop failed: {e}");
            }
        })?;
        Ok(WorkerHandle { waker, thread })
    }

    /// The event loop. Returns when a stop was asked for and every session
    /// ended, or the grace period ran out.
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
            for (key, id) in mem::take(&mut self.ctx.again) {
                if self.sessions.get(key).is_some_and(|s| s.id == id) {
                    self.drive(key);
                }
            }
            self.expire_timers();

            if grace_end.is_none() && self.stop.load(Ordering::Acquire) {
                self.stop_accepting();
                grace_end = Some(self.ctx.now + self.ctx.cfg.grace);
            }
            if self.ctx.now >= self.last_flush + FLUSH_EVERY {
                self.flush_counters();
            }
            if let Some(end) = grace_end
                && (self.sessions.is_empty() || Instant::now() >= end)
            {
                break;
            }
        }
        let keys: Vec<usize> = self.sessions.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.close(key);
        }
        self.flush_counters();
        Ok(())
    }

    fn stop_accepting(&mut self) {
        for mut l in self.listeners.drain(..) {
            let _ = self.ctx.registry.deregister(&mut l);
        }
    }

    /// Sends what was counted since the last time. Called at most every
    /// [`FLUSH_EVERY`] under load: a send can wake the aggregator thread, a
    /// context switch too many per event on a small machine.
    fn flush_counters(&mut self) {
        self.last_flush = self.ctx.now;
        if !self.ctx.counters.is_zero() {
            let delta = mem::take(&mut self.ctx.counters);
            // The aggregator only goes away after every worker has ended.
            let _ = self.ctx.reports.send(Report::Delta(delta));
        }
    }

    fn drain_inbox(&mut self) {
        loop {
            match self.inbox.try_recv() {
                Ok(Inbound::Resolved { key, id, result }) => self.on_resolved(key, id, result),
                Ok(Inbound::Verified { key, id, user }) => self.on_verified(key, id, user),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    fn accept(&mut self, index: usize) {
        // Handshakes were closed for room and no client was accepted since:
        // if accept(2) still finds no descriptor, the room went elsewhere
        // (another worker or thread, or, for ENFILE, another process), and
        // accepting pauses instead of closing more.
        let mut made_room = false;
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => {
                    made_room = false;
                    self.admit(stream, addr);
                }
                Err(e) if would_block(&e) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => match e.raw_os_error() {
                    // A connection that died in the queue: take the next one.
                    Some(libc::ECONNABORTED | libc::EPROTO) => {}
                    // Out of descriptors. accept(2) takes one before it looks
                    // at the queue, so this also comes when the client just
                    // accepted had the last and nobody waits: then nothing
                    // is to be done until a client comes, and a new
                    // connection brings a new event. If one waits, it beats
                    // the oldest handshakes no user has logged in on, which
                    // would otherwise hold their descriptors until the
                    // handshake timeout: accept again at once.
                    Some(libc::EMFILE | libc::ENFILE) if !made_room => {
                        let closed = match self.listeners.get(index).map(connection_waits) {
                            Some(Ok(false)) => return,
                            Some(Ok(true)) => self.make_room(),
                            // Cannot tell: close nothing.
                            Some(Err(_)) | None => 0,
                        };
                        if closed == 0 {
                            self.pause_accepting(&e);
                            return;
                        }
                        made_room = true;
                        self.report_shortage(&e, false);
                    }
                    // Out of descriptors with none to free, or out of
                    // memory: stop accepting for a moment (no busy loop),
                    // leave the rest queued, go on relaying, and try again
                    // when the pause is over.
                    _ => {
                        self.pause_accepting(&e);
                        return;
                    }
                },
            }
        }
    }

    /// Closes up to [`EVICT_AT_ONCE`] of this worker's oldest sessions that
    /// are [`Session::evictable`]; returns how many. Finding them costs
    /// amortised O(1) per session (see [`Arrivals`]), never a scan.
    fn make_room(&mut self) -> usize {
        let mut closed = 0;
        while closed < EVICT_AT_ONCE {
            let sessions = &self.sessions;
            let Some((key, _)) = self
                .arrivals
                .pop_oldest(|key, id| evictable(sessions, key, id))
            else {
                break;
            };
            if let Some(s) = self.sessions.get_mut(key) {
                s.log.result = AccessResult::Evicted;
            }
            self.close(key);
            closed += 1;
        }
        self.ctx.counters.evicted += closed as u64;
        self.evicted_unreported += closed as u64;
        closed
    }

    /// Warns that accept(2) failed for want of descriptors or memory, with
    /// the handshakes closed for room since the last warning: one line per
    /// [`PAUSE_LOG_EVERY`] at most, never one per client.
    fn report_shortage(&mut self, e: &io::Error, pausing: bool) {
        let now = self.ctx.now;
        if self
            .last_pause_log
            .is_some_and(|t| now < t + PAUSE_LOG_EVERY)
        {
            return;
        }
        self.last_pause_log = Some(now);
        let closed = mem::take(&mut self.evicted_unreported);
        let then = if pausing {
            format!(
                "none left to close: accepting pauses for {ACCEPT_PAUSE:?} at a time while it lasts"
            )
        } else {
            "accepting goes on".to_owned()
        };
        log::warn!(
            "accept: {e}; {closed} handshakes without a user closed to make room, oldest first, \
             since the last such warning; {then}, open tunnels go on"
        );
    }

    fn pause_accepting(&mut self, e: &io::Error) {
        self.report_shortage(e, true);
        let now = self.ctx.now;
        for l in &mut self.listeners {
            let _ = self.ctx.registry.deregister(l);
        }
        self.paused_until = Some(now + ACCEPT_PAUSE);
    }

    fn resume_accepting(&mut self) {
        self.paused_until = None;
        for (i, l) in self.listeners.iter_mut().enumerate() {
            // Registering again reports a listener that is already readable,
            // so what queued meanwhile is accepted at once.
            if let Err(e) =
                self.ctx
                    .registry
                    .register(l, Token(LISTENER_BASE - i), Interest::READABLE)
            {
                log::error!("listener {i}: cannot register again: {e}");
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, addr: SocketAddr) {
        let limited = self.ctx.cfg.max_connections.is_some();
        if let Some(max) = self.ctx.cfg.max_connections {
            // --max-connections: beyond it a new client is closed at once
            // (dropping the stream) and counted; open ones are untouched.
            if self.open.fetch_add(1, Ordering::AcqRel) >= max {
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.ctx.counters.refused += 1;
                return;
            }
        }
        let entry = self.sessions.vacant_entry();
        let key = entry.key();
        let registered = key * 2 + 1 < MAX_SESSION_TOKEN
            && match self.ctx.registry.register(
                &mut stream,
                Token(key * 2),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                Ok(()) => true,
                Err(e) => {
                    log::warn!("register client {addr}: {e}");
                    false
                }
            };
        if !registered {
            // The client is dropped (closed): give its slot back.
            if limited {
                self.open.fetch_sub(1, Ordering::AcqRel);
            }
            return;
        }
        // TCP_NODELAY (relaying is latency-sensitive and socks5d writes
        // whole buffers) comes with the socket: it is set on the listener.
        let now = self.ctx.now;
        let id = self.ctx.next_id;
        self.ctx.next_id += 1;
        self.ctx.counters.accepted += 1;
        entry.insert(Session {
            id,
            client: stream,
            target: None,
            // The greeting usually arrives with the connection: read at once
            // instead of waiting for the first edge.
            cready: Ready {
                read: true,
                write: true,
                hup: false,
            },
            tready: Ready::default(),
            hs_in: Vec::new(),
            up: Pipe::default(),
            down: Pipe::default(),
            phase: Phase::Handshake(Handshake::new()),
            handshake_deadline: now + self.ctx.cfg.handshake_timeout,
            attempt_deadline: None,
            last_active: now,
            armed: None,
            started: now,
            log: Log {
                start: SystemTime::now(),
                client: addr,
                user: None,
                target: None,
                connected: None,
                result: AccessResult::Incomplete,
            },
        });
        let sessions = &self.sessions;
        self.arrivals
            .push(key, id, sessions.len(), |k, i| evictable(sessions, k, i));
        self.drive(key);
    }

    fn on_socket_event(&mut self, token: usize, ev: &mio::event::Event) {
        let key = token / 2;
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let ready = if token.is_multiple_of(2) {
            &mut s.cready
        } else {
            &mut s.tready
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
        self.drive(key);
    }

    fn on_resolved(&mut self, key: usize, id: u64, result: io::Result<Vec<SocketAddr>>) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        if s.id != id || !matches!(s.phase, Phase::Resolving(_)) {
            return;
        }
        let next = match result {
            Ok(addrs) => {
                let Phase::Resolving(hs) = mem::replace(&mut s.phase, Phase::Relay) else {
                    unreachable!("checked above")
                };
                s.phase = Phase::Connecting {
                    hs,
                    addrs,
                    next: 0,
                    last_err: None,
                };
                try_next(s, key, &mut self.ctx)
            }
            Err(e) => fail(s, key, reply_for_error(&e), &mut self.ctx),
        };
        self.settle(key, next);
    }

    fn on_verified(&mut self, key: usize, id: u64, user: Option<Arc<str>>) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let Phase::Handshake(hs) = &mut s.phase else {
            return;
        };
        if s.id != id {
            return;
        }
        let event = hs.verified(user);
        let next = match handshake_event(s, key, event, &mut self.ctx) {
            Some(next) => next,
            // Authenticated: parse what the client sent meanwhile.
            None => handshake_step(s, key, &mut self.ctx),
        };
        self.settle(key, next);
    }

    fn drive(&mut self, key: usize) {
        let Some(s) = self.sessions.get_mut(key) else {
            return;
        };
        let next = step(s, key, &mut self.ctx);
        self.settle(key, next);
    }

    /// Closes the session on error or when it is done; otherwise makes sure
    /// its earliest deadline is in the timer heap.
    fn settle(&mut self, key: usize, next: io::Result<Next>) {
        match next {
            Ok(Next::Open) => {
                let Some(s) = self.sessions.get_mut(key) else {
                    return;
                };
                if let Some(d) = s.deadline(&self.ctx.cfg)
                    && s.armed.is_none_or(|a| d < a)
                {
                    s.armed = Some(d);
                    self.ctx.timers.arm(d, key, s.id);
                }
            }
            Ok(Next::Close) => self.close(key),
            Err(e) => {
                if let Some(s) = self.sessions.get(key) {
                    log::debug!("session {} from {}: {e}", s.id, s.log.client);
                }
                self.close(key);
            }
        }
    }

    fn expire_timers(&mut self) {
        let now = self.ctx.now;
        // Entries of closed sessions linger until due: compact when they
        // outnumber the live sessions by far (amortised O(1) per entry).
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
            let next = on_timeout(s, key, &mut self.ctx);
            self.settle(key, next);
        }
    }

    fn close(&mut self, key: usize) {
        let Some(mut s) = self.sessions.try_remove(key) else {
            return;
        };
        s.up.discard(&mut self.ctx.pool);
        s.down.discard(&mut self.ctx.pool);
        self.ctx.counters.closed += 1;
        if self.ctx.cfg.max_connections.is_some() {
            self.open.fetch_sub(1, Ordering::AcqRel);
        }
        if self.ctx.cfg.access_log {
            let rec = AccessRecord {
                start: s.log.start,
                client: s.log.client,
                user: s.log.user,
                target: s.log.target,
                connected: s.log.connected,
                result: s.log.result,
                bytes_up: s.up.delivered(),
                bytes_down: s.down.delivered(),
                duration: self.ctx.now.saturating_duration_since(s.started),
            };
            let _ = self.ctx.reports.send(Report::Access(Box::new(rec)));
        }
        // Closing a descriptor removes it from the epoll set: no deregister
        // calls needed on this hot path. Dropping `s` closes both sockets.
    }
}

impl Ctx {
    /// Where a blocking-pool answer goes: this worker's inbox, as `wrap`
    /// makes it, followed by a wake-up.
    fn inbox<T: 'static>(&self, wrap: impl FnOnce(T) -> Inbound + Send + 'static) -> Answer<T> {
        let (tx, waker) = (self.inbox_tx.clone(), Arc::clone(&self.waker));
        Box::new(move |v| {
            // The worker may have stopped; then nobody wants the answer.
            if tx.send(wrap(v)).is_ok() {
                let _ = waker.wake();
            }
        })
    }

    /// Counts a failed authentication from `ip` towards its source's
    /// penalty; a penalty that starts is logged once, not each refusal.
    fn auth_failed(&mut self, ip: IpAddr) {
        self.counters.auth_failed += 1;
        if self.penalties.is_penalised(ip, self.now) {
            self.counters.auth_penalised += 1;
        } else if let Some(p) = self.penalties.failure(ip, self.now) {
            self.counters.penalties += 1;
            log::warn!(
                "SOCKS authentication: {} failures from {}: its authentications are refused \
                 unchecked for {} s",
                p.failures,
                p.source,
                p.length.as_secs()
            );
        }
    }
}

/// The user table as one client sees it: while the client's source is
/// penalised, its authentications are refused without a check.
struct Gate<'a> {
    users: &'a UserTable,
    penalised: bool,
}

impl Authenticator for Gate<'_> {
    fn requires_auth(&self) -> bool {
        self.users.requires_auth()
    }

    fn check(&self, username: &[u8], password: &[u8]) -> Verdict {
        if self.penalised {
            return Verdict::Reject;
        }
        self.users.check(username, password)
    }

    /// Not called on a worker (the handshake only asks `check`).
    fn verify(&self, username: &[u8], password: &[u8]) -> Option<Arc<str>> {
        if self.penalised {
            return None;
        }
        self.users.verify(username, password)
    }
}

impl Session {
    /// Whether the session may be closed to make room for a new client at
    /// the descriptor limit: it is in its handshake and still anonymous
    /// (greeting, log in not complete, or a request with no log in asked
    /// for), which costs a client nothing to reach. A client that has logged
    /// in is a user, and one whose password is being checked has done its
    /// part and waits for us; neither is closed for a stranger, nor is a
    /// request or a tunnel. Once false this stays false: phases and the
    /// handshake only move forward, which [`Arrivals`] relies on.
    fn evictable(&self) -> bool {
        matches!(&self.phase, Phase::Handshake(hs) if hs.is_anonymous())
    }

    /// The earliest moment this session must be looked at again.
    fn deadline(&self, cfg: &WorkerConfig) -> Option<Instant> {
        match &self.phase {
            Phase::Handshake(_) | Phase::Resolving(_) => Some(self.handshake_deadline),
            Phase::Connecting { .. } => Some(match self.attempt_deadline {
                Some(a) => a.min(self.handshake_deadline),
                None => self.handshake_deadline,
            }),
            Phase::Relay => cfg.idle_timeout.map(|d| self.last_active + d),
            Phase::Lingering { until, .. } => Some(*until),
        }
    }
}

/// Whether session `key` is still `id` and [`Session::evictable`].
fn evictable(sessions: &Slab<Session>, key: usize, id: u64) -> bool {
    sessions
        .get(key)
        .is_some_and(|s| s.id == id && s.evictable())
}

/// Makes all the progress the session's sockets allow.
fn step(s: &mut Session, key: usize, ctx: &mut Ctx) -> io::Result<Next> {
    match s.phase {
        Phase::Handshake(_) => handshake_step(s, key, ctx),
        Phase::Resolving(_) => {
            flush_down(s, ctx)?;
            Ok(Next::Open)
        }
        Phase::Connecting { .. } => connecting_step(s, key, ctx),
        Phase::Relay => relay_step(s, key, ctx),
        Phase::Lingering { .. } => linger_step(s, key, ctx),
    }
}

fn flush_down(s: &mut Session, ctx: &mut Ctx) -> io::Result<()> {
    ctx.counters.bytes_down += s.down.flush(&mut s.client, &mut s.cready)?;
    s.down.release(&mut ctx.pool);
    Ok(())
}

fn queue_reply(s: &mut Session, hs: &mut Handshake, ctx: &mut Ctx) {
    if let Some(t) = hs.poll_transmit() {
        s.down.push_control(t.as_bytes(), &mut ctx.pool);
    }
}

/// Acts on what the handshake asked for; `None` to go on reading.
fn handshake_event(
    s: &mut Session,
    key: usize,
    event: Event,
    ctx: &mut Ctx,
) -> Option<io::Result<Next>> {
    let Phase::Handshake(hs) = &mut s.phase else {
        unreachable!("in handshake")
    };
    if let Some(t) = hs.poll_transmit() {
        s.down.push_control(t.as_bytes(), &mut ctx.pool);
    }
    match event {
        Event::Partial => None,
        Event::Verify(creds) => {
            let id = s.id;
            let answer = ctx.inbox(move |user| Inbound::Verified { key, id, user });
            match ctx.blocking.verify(creds, s.log.client.ip(), answer) {
                Ok(()) => None,
                // Too many checks wait for this source (or in all): a
                // failed authentication now, not a longer queue.
                Err(Refused::Busy) => {
                    ctx.counters.checks_refused += 1;
                    let event = hs.verified(None);
                    handshake_event(s, key, event, ctx)
                }
                Err(Refused::Gone) => Some(Ok(Next::Close)),
            }
        }
        Event::Connect(target) => {
            s.log.user = hs.user().cloned();
            let Phase::Handshake(hs) = mem::replace(&mut s.phase, Phase::Relay) else {
                unreachable!("in handshake")
            };
            let next = begin_connect(s, key, hs, &target, ctx);
            // Read only when the session closes: moved, not copied.
            s.log.target = Some(target);
            Some(next)
        }
        Event::Close(outcome) => {
            s.log.user = hs.user().cloned();
            s.log.result = match outcome {
                Outcome::BadVersion => AccessResult::BadVersion,
                Outcome::NoAcceptableMethod => AccessResult::NoAcceptableMethod,
                Outcome::AuthFailed => {
                    ctx.auth_failed(s.log.client.ip());
                    AccessResult::AuthFailed
                }
                Outcome::Rejected(reply) => {
                    ctx.counters.connect_failed += 1;
                    AccessResult::Reply(reply)
                }
            };
            Some(start_linger(s, key, ctx))
        }
    }
}

fn handshake_step(s: &mut Session, key: usize, ctx: &mut Ctx) -> io::Result<Next> {
    // Bytes kept from before: an incomplete message, or what arrived while a
    // password was being checked.
    if !s.hs_in.is_empty() {
        let input = mem::take(&mut s.hs_in);
        if let Some(next) = handshake_input(s, key, &input, ctx) {
            return next;
        }
    }
    let mut scratch = mem::take(&mut ctx.scratch);
    let next = handshake_read(s, key, &mut scratch, ctx);
    ctx.scratch = scratch;
    next
}

/// Reads the client until it blocks, feeding the handshake.
fn handshake_read(
    s: &mut Session,
    key: usize,
    scratch: &mut [u8],
    ctx: &mut Ctx,
) -> io::Result<Next> {
    loop {
        flush_down(s, ctx)?;
        if !s.cready.read {
            return Ok(Next::Open);
        }
        let n = match s.client.read(scratch) {
            Ok(0) => return Ok(Next::Close), // the client left mid-handshake
            Ok(n) => n,
            Err(e) if would_block(&e) => {
                s.cready.read = false;
                return Ok(Next::Open);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        s.cready.after_read(n, scratch.len());
        let next = if s.hs_in.is_empty() {
            handshake_input(s, key, &scratch[..n], ctx)
        } else {
            let mut input = mem::take(&mut s.hs_in);
            input.extend_from_slice(&scratch[..n]);
            handshake_input(s, key, &input, ctx)
        };
        if let Some(next) = next {
            return next;
        }
    }
}

/// Feeds `input` to the handshake. What it does not use is kept for later
/// (`hs_in`), or, after the request, queued for the target as payload.
fn handshake_input(
    s: &mut Session,
    key: usize,
    input: &[u8],
    ctx: &mut Ctx,
) -> Option<io::Result<Next>> {
    let Phase::Handshake(hs) = &mut s.phase else {
        unreachable!("in handshake")
    };
    let gate = Gate {
        penalised: ctx.penalties.is_penalised(s.log.client.ip(), ctx.now),
        users: ctx.users.table(),
    };
    let (used, event) = hs.handle_input(input, &gate);
    let rest = &input[used..];
    match event {
        // Sent right after the request, before the reply: relayed, not lost.
        Event::Connect(_) if !rest.is_empty() => {
            if let Err(e) = s.up.push_payload(rest, &mut ctx.pool) {
                return Some(Err(e));
            }
        }
        Event::Partial | Event::Verify(_) if !rest.is_empty() => {
            // More unparsed input than a relay buffer holds is not a handshake.
            if rest.len() > ctx.cfg.buffer_size {
                return Some(Ok(Next::Close));
            }
            s.hs_in.extend_from_slice(rest);
        }
        _ => {}
    }
    handshake_event(s, key, event, ctx)
}

fn begin_connect(
    s: &mut Session,
    key: usize,
    hs: Handshake,
    target: &TargetAddr,
    ctx: &mut Ctx,
) -> io::Result<Next> {
    let direct = |s: &mut Session, hs, addr| {
        s.phase = Phase::Connecting {
            hs,
            addrs: vec![addr],
            next: 0,
            last_err: None,
        };
    };
    match target {
        TargetAddr::Ip(addr) => direct(s, hs, *addr),
        TargetAddr::Domain(name, port) => {
            let Ok(host) = std::str::from_utf8(name) else {
                s.phase = Phase::Resolving(hs);
                return fail(s, key, Reply::HostUnreachable, ctx);
            };
            // An IP literal sent as a name never goes to the resolver.
            let literal = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            if let Ok(ip) = literal.parse::<IpAddr>() {
                direct(s, hs, SocketAddr::new(ip, *port));
            } else {
                let id = s.id;
                let answer = ctx.inbox(move |result| Inbound::Resolved { key, id, result });
                s.phase = Phase::Resolving(hs);
                if ctx
                    .blocking
                    .resolve(host.to_owned(), *port, answer)
                    .is_err()
                {
                    return fail(s, key, Reply::GeneralFailure, ctx);
                }
                flush_down(s, ctx)?;
                return Ok(Next::Open);
            }
        }
    }
    try_next(s, key, ctx)
}

/// Starts a connection to the next untried address, or fails the request
/// with the last error when none is left.
fn try_next(s: &mut Session, key: usize, ctx: &mut Ctx) -> io::Result<Next> {
    s.target = None;
    s.attempt_deadline = None;
    let Phase::Connecting {
        addrs,
        next,
        last_err,
        ..
    } = &mut s.phase
    else {
        unreachable!("connecting")
    };
    while let Some(&addr) = addrs.get(*next) {
        *next += 1;
        match TcpStream::connect(addr) {
            Ok(mut stream) => {
                ctx.registry.register(
                    &mut stream,
                    Token(key * 2 + 1),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                s.target = Some(stream);
                s.tready = Ready::default();
                s.attempt_deadline = Some(ctx.now + ctx.cfg.connect_timeout);
                flush_down(s, ctx)?;
                return Ok(Next::Open);
            }
            Err(e) => {
                log::debug!("connect {addr}: {e}");
                *last_err = Some(e);
            }
        }
    }
    let reply = last_err
        .as_ref()
        .map_or(Reply::HostUnreachable, reply_for_error);
    fail(s, key, reply, ctx)
}

fn connecting_step(s: &mut Session, key: usize, ctx: &mut Ctx) -> io::Result<Next> {
    flush_down(s, ctx)?;
    let Some(t) = s.target.as_mut() else {
        return Ok(Next::Open);
    };
    if !s.tready.write && !s.tready.read {
        return Ok(Next::Open);
    }
    // mio: a writable connecting socket is connected if it has no pending
    // error and a peer address.
    let err = match t.take_error() {
        Ok(None) => match t.peer_addr() {
            Ok(peer) => return established(s, key, peer, ctx),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(Next::Open),
            Err(e) => e,
        },
        Ok(Some(e)) | Err(e) => e,
    };
    attempt_failed(s, key, err, ctx)
}

fn attempt_failed(s: &mut Session, key: usize, err: io::Error, ctx: &mut Ctx) -> io::Result<Next> {
    if let Phase::Connecting {
        addrs,
        next,
        last_err,
        ..
    } = &mut s.phase
    {
        log::debug!("connect {}: {err}", addrs[*next - 1]);
        *last_err = Some(err);
    }
    try_next(s, key, ctx)
}

fn established(s: &mut Session, key: usize, peer: SocketAddr, ctx: &mut Ctx) -> io::Result<Next> {
    let Phase::Connecting { mut hs, .. } = mem::replace(&mut s.phase, Phase::Relay) else {
        unreachable!("connecting")
    };
    let t = s.target.as_mut().expect("a target while connecting");
    let _ = t.set_nodelay(true);
    let local = t.local_addr()?;
    // RFC 1928 section 6: "BND.ADDR contains the associated IP address" of the
    // socket the server uses to connect to the target.
    hs.connected(local);
    queue_reply(s, &mut hs, ctx);
    s.log.connected = Some(peer);
    s.log.result = AccessResult::Reply(Reply::Succeeded);
    s.attempt_deadline = None;
    // No optimistic read of the target: it was registered before it could
    // send anything, so its first bytes bring an edge.
    s.last_active = ctx.now;
    relay_step(s, key, ctx)
}

/// Sends a failure reply to a request and starts closing.
fn fail(s: &mut Session, key: usize, reply: Reply, ctx: &mut Ctx) -> io::Result<Next> {
    let phase = mem::replace(&mut s.phase, Phase::Relay);
    let mut hs = match phase {
        Phase::Resolving(hs) | Phase::Connecting { hs, .. } => hs,
        other => unreachable!("fail() outside a request: {other:?}"),
    };
    hs.failed(reply);
    queue_reply(s, &mut hs, ctx);
    s.target = None;
    s.attempt_deadline = None;
    ctx.counters.connect_failed += 1;
    s.log.result = AccessResult::Reply(reply);
    start_linger(s, key, ctx)
}

/// After a refusal: payload already received is dropped, the reply is sent,
/// the write side is shut, and what the client still sends is read and
/// discarded for a moment, so that closing does not turn into a reset that
/// could destroy the reply before the client reads it.
fn start_linger(s: &mut Session, key: usize, ctx: &mut Ctx) -> io::Result<Next> {
    s.up.discard(&mut ctx.pool);
    s.phase = Phase::Lingering {
        until: ctx.now + LINGER,
        shut: false,
    };
    linger_step(s, key, ctx)
}

fn linger_step(s: &mut Session, key: usize, ctx: &mut Ctx) -> io::Result<Next> {
    flush_down(s, ctx)?;
    if s.down.pending() > 0 {
        return Ok(Next::Open);
    }
    let Phase::Lingering { shut, .. } = &mut s.phase else {
        unreachable!("lingering")
    };
    if !*shut {
        *shut = true;
        s.client.shutdown(Shutdown::Write)?;
    }
    let mut scratch = [0u8; 1024];
    for _ in 0..16 {
        if !s.cready.read {
            return Ok(Next::Open);
        }
        match s.client.read(&mut scratch) {
            Ok(0) => return Ok(Next::Close),
            Ok(_) => {}
            Err(e) if would_block(&e) => s.cready.read = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(Next::Close),
        }
    }
    ctx.again.push((key, s.id));
    Ok(Next::Open)
}

fn relay_step(s: &mut Session, key: usize, ctx: &mut Ctx) -> io::Result<Next> {
    let Some(t) = s.target.as_mut() else {
        return Ok(Next::Close);
    };
    let before = s.up.delivered() + s.down.delivered();
    let up = s.up.pump(
        &mut s.client,
        &mut s.cready,
        t,
        &mut s.tready,
        &mut ctx.pool,
        RELAY_BUDGET,
        &mut ctx.counters.bytes_up,
        s.down.is_finished(),
    )?;
    let down = s.down.pump(
        t,
        &mut s.tready,
        &mut s.client,
        &mut s.cready,
        &mut ctx.pool,
        RELAY_BUDGET,
        &mut ctx.counters.bytes_down,
        s.up.is_finished(),
    )?;
    if s.up.delivered() + s.down.delivered() != before {
        s.last_active = ctx.now;
    }
    if up == Pump::Finished && down == Pump::Finished {
        return Ok(Next::Close);
    }
    if up == Pump::Budget || down == Pump::Budget {
        ctx.again.push((key, s.id));
    }
    Ok(Next::Open)
}

fn on_timeout(s: &mut Session, key: usize, ctx: &mut Ctx) -> io::Result<Next> {
    let now = ctx.now;
    match &mut s.phase {
        Phase::Handshake(_) if now >= s.handshake_deadline => Ok(Next::Close),
        // The client is owed an answer: the target did not come in time.
        Phase::Resolving(_) | Phase::Connecting { .. } if now >= s.handshake_deadline => {
            fail(s, key, Reply::HostUnreachable, ctx)
        }
        Phase::Connecting { .. } if s.attempt_deadline.is_some_and(|a| now >= a) => {
            let err = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
            attempt_failed(s, key, err, ctx)
        }
        Phase::Relay => match ctx.cfg.idle_timeout {
            Some(idle) if now >= s.last_active + idle => Ok(Next::Close),
            _ => Ok(Next::Open),
        },
        Phase::Lingering { until, .. } if now >= *until => Ok(Next::Close),
        _ => Ok(Next::Open),
    }
}
