//! Taking new clients: accept until the queue is empty, the
//! --max-connections limit, and what happens at the descriptor limit
//! (the oldest anonymous handshakes make room, or accepting pauses).

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use mio::Interest;
use mio::net::TcpStream;

use super::acct;
use super::{
    Connection, LISTENER_BASE, MAX_SESSION_TOKEN, Ready, SLOT_BITS, Sockets, Worker, evictable,
    token, would_block,
};
use crate::logfmt::Quoted;
use crate::reactor::pipe::Pipe;
use crate::sys::net::connection_waits;

/// How long accepting pauses when the process is out of descriptors and no
/// handshake is left to close for room.
const ACCEPT_PAUSE: Duration = Duration::from_millis(200);
/// At most one warning about running out in this time.
const PAUSE_LOG_EVERY: Duration = Duration::from_secs(10);
/// Handshakes closed at most, oldest first, each time accept(2) finds no
/// descriptor: room for a few new clients (two descriptors per tunnel)
/// without emptying the worker for one.
const EVICT_AT_ONCE: usize = 8;

impl Worker {
    pub(super) fn accept(&mut self, index: usize) {
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

    /// Closes up to [`EVICT_AT_ONCE`] of this worker's oldest connections
    /// that are [`evictable`]; returns how many. Finding them costs
    /// amortised O(1) per connection (see `Arrivals`), never a scan.
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
            self.close(key, true);
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
        // Handshakes without a user closed to make room, oldest first, since
        // the last such line; open tunnels go on either way.
        if pausing {
            log::warn!(
                "accept short of resources: error={} closed_for_room={closed} accepting=paused \
                 pause_ms={}",
                Quoted(e),
                ACCEPT_PAUSE.as_millis()
            );
        } else {
            log::warn!(
                "accept short of resources: error={} closed_for_room={closed} accepting=on",
                Quoted(e)
            );
        }
    }

    fn pause_accepting(&mut self, e: &io::Error) {
        self.report_shortage(e, true);
        let now = self.ctx.now;
        for l in &mut self.listeners {
            let _ = self.ctx.registry.deregister(l);
        }
        self.paused_until = Some(now + ACCEPT_PAUSE);
    }

    pub(super) fn resume_accepting(&mut self) {
        self.paused_until = None;
        for (i, l) in self.listeners.iter_mut().enumerate() {
            // Registering again reports a listener that is already readable,
            // so what queued meanwhile is accepted at once.
            if let Err(e) =
                self.ctx
                    .registry
                    .register(l, mio::Token(LISTENER_BASE - i), Interest::READABLE)
            {
                log::error!(
                    "listener not registered again: listener={i} error={}",
                    Quoted(e)
                );
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
        // --max-sessions-per-client: likewise, per client address. A
        // balancer's connection is counted once its PROXY header names the
        // client.
        let balancer = self.ctx.cfg.is_balancer(addr.ip());
        if let Some(c) = &self.ctx.limits.per_client
            && !balancer
            && !c.take(&addr.ip().to_canonical())
        {
            if limited {
                self.open.fetch_sub(1, Ordering::AcqRel);
            }
            self.ctx.counters.session_limit += 1;
            return;
        }
        let entry = self.sessions.vacant_entry();
        let key = entry.key();
        let registered = key < (MAX_SESSION_TOKEN >> SLOT_BITS)
            && match self.ctx.registry.register(
                &mut stream,
                token(key, 0),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                Ok(()) => true,
                Err(e) => {
                    log::warn!("client not registered: client={addr} error={}", Quoted(e));
                    false
                }
            };
        if !registered {
            // The client is dropped (closed): give its slot back.
            if limited {
                self.open.fetch_sub(1, Ordering::AcqRel);
            }
            if let Some(c) = &self.ctx.limits.per_client
                && !balancer
            {
                c.give_back(&addr.ip().to_canonical());
            }
            return;
        }
        // TCP_NODELAY (relaying is latency-sensitive and socks5d writes
        // whole buffers) comes with the socket: it is set on the listener.
        let now: Instant = self.ctx.now;
        let id = self.ctx.next_id;
        self.ctx.next_id += 1;
        self.ctx.counters.accepted += 1;
        let machine = Arc::clone(&self.ctx.machine);
        entry.insert(Sockets {
            id,
            conn: if balancer {
                Connection::behind_balancer(now, machine, addr)
            } else {
                Connection::new(now, machine)
            },
            client: stream,
            // The greeting usually arrives with the connection: read at once
            // instead of waiting for the first edge.
            cready: Ready {
                read: true,
                write: true,
                hup: false,
            },
            peer: addr,
            attempts: Vec::new(),
            target: None,
            tready: Ready::default(),
            up: Pipe::default(),
            down: Pipe::default(),
            armed: None,
            // The wall clock is read only for the access log.
            logged_start: self.ctx.cfg.access_log.then(SystemTime::now),
            extra: None,
            limit: None,
            user_slot: acct::NO_USER,
        });
        let sessions = &self.sessions;
        self.arrivals
            .push(key, id, sessions.len(), |k, i| evictable(sessions, k, i));
        self.drive(key, false);
    }
}
