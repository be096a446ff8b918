//! One client connection's sockets, buffers and readiness, and the steps
//! that move its bytes: the worker's side of a [`Connection`]. Each step
//! does the I/O the machine's [`Reading`] calls for, hands the machine what
//! happened, and performs the actions it answers with.

use std::io::{self, Read};
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use mio::Interest;
use mio::net::TcpStream;
use slab::Slab;

use super::extra::{self, Extra};
use super::{Ctx, Next, RELAY_BUDGET, token, would_block};
use crate::blocking::{Answer, Refused};
use crate::reactor::Inbound;
use crate::reactor::pipe::{Pipe, Pump, Ready};
use crate::socks5::connection::{Action, AttemptId, Connection, Direction, Outcome, Reading};
use crate::users::{Authenticator, UserTable, Verdict};

/// The sockets, buffers and readiness of one client connection; what it is
/// doing is its `conn`'s business.
#[derive(Debug)]
pub(super) struct Sockets {
    pub(super) id: u64,
    pub(super) conn: Connection,
    pub(super) client: TcpStream,
    pub(super) cready: Ready,
    /// The client's address.
    pub(super) peer: SocketAddr,
    /// Connection attempts running.
    pub(super) attempts: Vec<Attempt>,
    /// The target: the attempt that connected.
    pub(super) target: Option<(AttemptId, TcpStream)>,
    pub(super) tready: Ready,
    /// Client to target.
    pub(super) up: Pipe,
    /// Target to client; also carries the SOCKS replies.
    pub(super) down: Pipe,
    /// The deadline this connection has in the timer heap, if any.
    pub(super) armed: Option<Instant>,
    /// When it was accepted, for the access log (none when it is off).
    pub(super) logged_start: Option<SystemTime>,
    /// BIND's listener or UDP ASSOCIATE's relay (none for CONNECT: an open
    /// tunnel pays one pointer for them).
    pub(super) extra: Option<Box<Extra>>,
}

#[derive(Debug)]
pub(super) struct Attempt {
    id: AttemptId,
    socket: TcpStream,
    ready: Ready,
}

impl Attempt {
    /// BIND's inbound connection, accepted: connected and maybe readable.
    pub(super) fn inbound(socket: TcpStream) -> Attempt {
        Attempt {
            id: AttemptId::INBOUND,
            socket,
            ready: Ready {
                read: true,
                write: true,
                hup: false,
            },
        }
    }
}

impl Sockets {
    /// The readiness of the socket with token slot `slot`, if it is open.
    pub(super) fn ready_of(&mut self, slot: usize) -> Option<&mut Ready> {
        if let Some(extra) = self.extra.as_deref_mut()
            && extra.owns(slot)
        {
            return extra.ready_of(slot);
        }
        match &self.target {
            _ if slot == 0 => Some(&mut self.cready),
            Some((via, _)) if via.index() + 1 == slot => Some(&mut self.tready),
            _ => self
                .attempts
                .iter_mut()
                .find(|a| a.id.index() + 1 == slot)
                .map(|a| &mut a.ready),
        }
    }
}

impl Ctx {
    /// Where a blocking-pool answer goes: this worker's inbox, as `wrap`
    /// makes it, followed by a wake-up.
    pub(super) fn inbox<T: 'static>(
        &self,
        wrap: impl FnOnce(T) -> Inbound + Send + 'static,
    ) -> Answer<T> {
        let (tx, waker) = (self.inbox_tx.clone(), Arc::clone(&self.waker));
        Box::new(move |v| {
            // The worker may have stopped; then nobody wants the answer.
            if tx.send(wrap(v)).is_ok() {
                let _ = waker.wake();
            }
        })
    }

    /// Counts a handshake's outcome; a failed authentication counts towards
    /// its source's penalty, and a penalty that starts is logged once.
    fn count(&mut self, outcome: Outcome, ip: IpAddr) {
        match outcome {
            Outcome::Rejected(_) => self.counters.connect_failed += 1,
            Outcome::AuthFailed => {
                self.counters.auth_failed += 1;
                if self.penalties.is_penalised(ip, self.now) {
                    self.counters.auth_penalised += 1;
                } else if let Some(p) = self.penalties.failure(ip, self.now) {
                    self.counters.penalties += 1;
                    log::warn!(
                        "SOCKS authentication: {} failures from {}: its authentications are \
                         refused unchecked for {} s",
                        p.failures,
                        p.source,
                        p.length.as_secs()
                    );
                }
            }
            Outcome::Succeeded | Outcome::BadVersion | Outcome::NoAcceptableMethod => {}
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

    /// Not called on a worker (the machine only asks `check`).
    fn verify(&self, username: &[u8], password: &[u8]) -> Option<Arc<str>> {
        if self.penalised {
            return None;
        }
        self.users.verify(username, password)
    }
}

/// Whether connection `key` is still `id` and may be closed to make room
/// for a new client at the descriptor limit: still anonymous in its
/// handshake, which costs a client nothing to reach. Once false this stays
/// false ([`Connection::is_anonymous`]), which [`Arrivals`] relies on.
pub(super) fn evictable(sessions: &Slab<Sockets>, key: usize, id: u64) -> bool {
    sessions
        .get(key)
        .is_some_and(|s| s.id == id && s.conn.is_anonymous())
}

// ------------------------------------------------------------ one connection

/// Makes all the progress the connection's sockets allow; `told` when the
/// machine was handed an event since it was last asked what to do.
pub(super) fn step(s: &mut Sockets, key: usize, ctx: &mut Ctx, told: bool) -> io::Result<Next> {
    if told && let Next::Close = apply(s, key, ctx)? {
        return Ok(Next::Close);
    }
    loop {
        if s.extra.is_some()
            && let Next::Close = extra::service(s, key, ctx)?
        {
            return Ok(Next::Close);
        }
        let reading = s.conn.reading();
        let next = match reading {
            Reading::Handshake => {
                let mut scratch = mem::take(&mut ctx.scratch);
                let next = handshake_read(s, key, &mut scratch, ctx);
                ctx.scratch = scratch;
                next
            }
            Reading::Paused => check_attempts(s, key, ctx),
            Reading::Relay => relay(s, key, ctx),
            Reading::Discard => discard(s, key, ctx),
        }?;
        if let Next::Close = next {
            return Ok(Next::Close);
        }
        if s.conn.reading() == reading {
            return Ok(Next::Open);
        }
    }
}

/// Sends what the machine queued and does what it asks.
#[inline]
pub(super) fn apply(s: &mut Sockets, key: usize, ctx: &mut Ctx) -> io::Result<Next> {
    loop {
        if let Some(t) = s.conn.poll_transmit() {
            s.down.push_control(t.as_bytes(), &mut ctx.pool);
        }
        let Some(action) = s.conn.poll_action() else {
            return Ok(Next::Open);
        };
        match action {
            Action::Decided(outcome) => ctx.count(outcome, s.peer.ip()),
            Action::Verify(creds) => {
                let id = s.id;
                let answer = ctx.inbox(move |user| Inbound::Verified { key, id, user });
                match ctx.blocking.verify(creds, s.peer.ip(), answer) {
                    Ok(()) => {}
                    // Too many checks wait for this source (or in all): a
                    // failed authentication now, not a longer queue.
                    Err(Refused::Busy) => {
                        ctx.counters.checks_refused += 1;
                        s.conn.handle_verified(ctx.now, None);
                    }
                    Err(Refused::Gone) => return Ok(Next::Close),
                }
            }
            Action::Resolve { host, port } => {
                let id = s.id;
                let answer = ctx.inbox(move |result| Inbound::Resolved { key, id, result });
                if ctx.blocking.resolve(host, port, answer).is_err() {
                    let gone = io::Error::other("the resolver pool has stopped");
                    s.conn.handle_resolved(ctx.now, Err(gone));
                }
            }
            Action::Connect { id, addr } => match TcpStream::connect(addr) {
                Ok(mut socket) => {
                    ctx.registry.register(
                        &mut socket,
                        token(key, 1 + id.index()),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    if s.attempts.capacity() == 0 {
                        s.attempts = ctx.spare_attempts.pop().unwrap_or_default();
                    }
                    s.attempts.push(Attempt {
                        id,
                        socket,
                        ready: Ready::default(),
                    });
                }
                Err(e) => {
                    log::debug!("connect {addr}: {e}");
                    s.conn.handle_connect_failed(ctx.now, id, &e);
                }
            },
            Action::Cancel(id) => s.attempts.retain(|a| a.id != id),
            Action::Associate => {
                let result = extra::associate(s, key, ctx);
                s.conn.handle_associated(ctx.now, result);
            }
            Action::Listen { peer } => {
                let result = extra::listen(s, key, ctx, peer);
                if let Err(e) = &result {
                    log::debug!("connection {} BIND toward {peer}: {e}", s.id);
                }
                s.conn.handle_listening(ctx.now, result);
            }
            Action::StopListening => {
                if let Some(Extra::Bind { .. }) = s.extra.as_deref() {
                    s.extra = None;
                }
            }
            Action::Relay { via, early_data } => {
                let Some(i) = s.attempts.iter().position(|a| a.id == via) else {
                    return Ok(Next::Close);
                };
                let won = s.attempts.swap_remove(i);
                // The others were cancelled: the list goes back for the
                // next request, the tunnel holds none.
                ctx.recycle(mem::take(&mut s.attempts));
                let _ = won.socket.set_nodelay(true);
                s.tready = won.ready;
                s.target = Some((via, won.socket));
                if !early_data.is_empty() {
                    // Sent right behind the request: relayed, not lost.
                    s.up.push_payload(&early_data, &mut ctx.pool)?;
                }
            }
            Action::Shutdown(Direction::Up) => {
                if let Some((_, t)) = &s.target {
                    shut_write(t)?;
                }
            }
            Action::Shutdown(Direction::Down) => shut_write(&s.client)?,
            Action::Close => return Ok(Next::Close),
        }
    }
}

/// Shuts down a socket's write side: a peer already gone is not an error
/// here, reading it will tell.
fn shut_write(socket: &TcpStream) -> io::Result<()> {
    match socket.shutdown(std::net::Shutdown::Write) {
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
        _ => Ok(()),
    }
}

fn flush_down(s: &mut Sockets, ctx: &mut Ctx) -> io::Result<()> {
    ctx.counters.bytes_down += s.down.flush(&mut s.client, &mut s.cready)?;
    s.down.release(&mut ctx.pool);
    Ok(())
}

/// Reads the client until it blocks or the handshake is over, feeding the
/// machine each read once.
fn handshake_read(
    s: &mut Sockets,
    key: usize,
    scratch: &mut [u8],
    ctx: &mut Ctx,
) -> io::Result<Next> {
    loop {
        flush_down(s, ctx)?;
        if !s.cready.read || s.conn.reading() != Reading::Handshake {
            return Ok(Next::Open);
        }
        let n = match s.client.read(scratch) {
            Ok(n) => n,
            Err(e) if would_block(&e) => {
                s.cready.read = false;
                return Ok(Next::Open);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            s.conn.handle_stream_end(ctx.now, Direction::Up);
        } else {
            s.cready.after_read(n, scratch.len());
            let gate = Gate {
                penalised: ctx.penalties.is_penalised(s.peer.ip(), ctx.now),
                users: ctx.users.table(),
            };
            s.conn.handle_input(ctx.now, &scratch[..n], &gate);
        }
        if let Next::Close = apply(s, key, ctx)? {
            return Ok(Next::Close);
        }
    }
}

/// While the request is served: replies go out, and attempts that became
/// ready are checked.
fn check_attempts(s: &mut Sockets, key: usize, ctx: &mut Ctx) -> io::Result<Next> {
    flush_down(s, ctx)?;
    let mut told = false;
    let mut i = 0;
    while let Some(a) = s.attempts.get_mut(i) {
        if !a.ready.read && !a.ready.write {
            i += 1;
            continue;
        }
        // mio: a connecting socket that is writable is connected if it has
        // no pending error and a peer address.
        let err = match a.socket.take_error() {
            Ok(None) => match a.socket.peer_addr() {
                Ok(peer) => {
                    let local = a.socket.local_addr()?;
                    s.conn.handle_connected(ctx.now, a.id, local, peer);
                    return apply(s, key, ctx);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    // Not yet: the next edge tells.
                    a.ready = Ready::default();
                    i += 1;
                    continue;
                }
                Err(e) => e,
            },
            Ok(Some(e)) | Err(e) => e,
        };
        let failed = s.attempts.swap_remove(i);
        log::debug!("connect {:?}: {err}", failed.socket.peer_addr().ok());
        s.conn.handle_connect_failed(ctx.now, failed.id, &err);
        told = true;
    }
    if told {
        return apply(s, key, ctx);
    }
    Ok(Next::Open)
}

fn relay(s: &mut Sockets, key: usize, ctx: &mut Ctx) -> io::Result<Next> {
    let Some((_, t)) = s.target.as_mut() else {
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
    )?;
    let down = s.down.pump(
        t,
        &mut s.tready,
        &mut s.client,
        &mut s.cready,
        &mut ctx.pool,
        RELAY_BUDGET,
        &mut ctx.counters.bytes_down,
    )?;
    if s.up.delivered() + s.down.delivered() != before {
        s.conn.handle_relayed(ctx.now);
    }
    if up == Pump::Ended || down == Pump::Ended {
        if up == Pump::Ended {
            s.conn.handle_stream_end(ctx.now, Direction::Up);
        }
        if down == Pump::Ended {
            s.conn.handle_stream_end(ctx.now, Direction::Down);
        }
        if let Next::Close = apply(s, key, ctx)? {
            return Ok(Next::Close);
        }
    }
    if up == Pump::Budget || down == Pump::Budget {
        ctx.again.push((key, s.id));
    }
    Ok(Next::Open)
}

/// A refused client: its answer goes out, then what it still sends is read
/// and dropped until it closes or the linger ends.
fn discard(s: &mut Sockets, key: usize, ctx: &mut Ctx) -> io::Result<Next> {
    flush_down(s, ctx)?;
    if s.down.pending() > 0 {
        return Ok(Next::Open);
    }
    s.conn.handle_sent(ctx.now);
    if let Next::Close = apply(s, key, ctx)? {
        return Ok(Next::Close);
    }
    let mut sink = [0u8; 1024];
    for _ in 0..16 {
        if !s.cready.read {
            return Ok(Next::Open);
        }
        match s.client.read(&mut sink) {
            Ok(0) => {
                s.conn.handle_stream_end(ctx.now, Direction::Up);
                return apply(s, key, ctx);
            }
            Ok(_) => {}
            Err(e) if would_block(&e) => s.cready.read = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(Next::Close),
        }
    }
    ctx.again.push((key, s.id));
    Ok(Next::Open)
}
