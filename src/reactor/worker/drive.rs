//! The steps that move one connection's bytes: each does the I/O its
//! [`Connection`]'s [`Reading`] calls for, hands the machine what happened,
//! and performs the actions it answers with (the sockets they act on are in
//! [`Sockets`]; BIND's and UDP ASSOCIATE's in [`Extra`]).

use std::io::{self, Read};
use std::mem;

use mio::Interest;
use mio::net::TcpStream;

use super::extra::{self, Extra, Who};
use super::sockets::{Attempt, Sockets};
use super::{Ctx, Next, RELAY_BUDGET, token, would_block};
use crate::blocking::Refused;
use crate::logfmt::{LogSafe, Quoted};
use crate::reactor::Inbound;
use crate::reactor::pipe::{Pump, Ready};
use crate::rules::Origin;
use crate::socks5::connection::{self, Action, AttemptId, Context, Direction, Outcome, Reading};
use crate::socks5::wire::{TargetAddr, UNSPECIFIED};

// ------------------------------------------------------------ one connection

/// Makes all the progress the connection's sockets allow; `told` when the
/// machine was handed an event since it was last asked what to do.
pub(super) fn step(s: &mut Sockets, key: usize, ctx: &mut Ctx, told: bool) -> io::Result<Next> {
    if told && let Next::Close = apply(s, key, ctx)? {
        return Ok(Next::Close);
    }
    loop {
        if s.extra.is_some()
            && let Next::Close = service(s, key, ctx)?
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
            Action::Decided(outcome) => {
                ctx.count(outcome, s.peer.ip());
                account(s, ctx, outcome);
                if let Some((origin, true)) = s.conn.rule() {
                    log_decision(s, ctx, origin, outcome);
                }
            }
            Action::Verify(creds) => {
                let id = s.id;
                let answer = ctx.inbox(move |user| Inbound::Verified { key, id, user });
                match ctx.blocking.verify(creds, s.peer.ip(), answer) {
                    Ok(()) => {}
                    // Too many checks wait for this source (or in all): a
                    // failed authentication now, not a longer queue.
                    Err(Refused::Busy) => {
                        ctx.counters.checks_refused += 1;
                        let now = ctx.now;
                        s.conn.handle_verified(now, None, &ctx.gate(s.peer.ip()));
                    }
                    Err(Refused::Gone) => return Ok(Next::Close),
                }
            }
            Action::Resolve { host, port } => {
                let id = s.id;
                let answer = ctx.inbox(move |result| Inbound::Resolved { key, id, result });
                if ctx.blocking.resolve(host, port, answer).is_err() {
                    let gone = io::Error::other("the resolver pool has stopped");
                    let now = ctx.now;
                    s.conn
                        .handle_resolved(now, Err(gone), &ctx.gate(s.peer.ip()));
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
                        started: ctx.now,
                    });
                }
                Err(e) => {
                    log::debug!(
                        "connect attempt failed: conn={} addr={addr} error={}",
                        s.id,
                        Quoted(&e)
                    );
                    s.conn.handle_connect_failed(ctx.now, id, &e);
                }
            },
            Action::Cancel(id) => s.attempts.retain(|a| a.id != id),
            Action::Associate => {
                let result = associate(s, key, ctx);
                s.conn.handle_associated(ctx.now, result);
            }
            Action::Listen { peer } => {
                let result = s
                    .client
                    .local_addr()
                    .and_then(|local| extra::listen(ctx, key, local, peer))
                    .map(|(extra, bound)| {
                        s.extra = Some(extra);
                        bound
                    });
                if let Err(e) = &result {
                    log::debug!(
                        "bind not listening: conn={} peer={peer} error={}",
                        s.id,
                        Quoted(e)
                    );
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
                if let Some(rate) = s.conn.rate()
                    && let Some((origin, _)) = s.conn.rule()
                {
                    // Shared by the user's tunnels (without a user, the
                    // client address's) that this rule allowed.
                    let who = match s.conn.user() {
                        Some(u) => u.to_string(),
                        None => s.peer.ip().to_canonical().to_string(),
                    };
                    let limiter = ctx.rates.limiter(&who, origin, *rate, ctx.now);
                    s.limit = Some(Box::new(limiter));
                }
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
            Action::Client(client) => super::proxied::client_known(s, ctx, client),
            Action::Close => return Ok(Next::Close),
        }
    }
}

/// Per-user counts and the handshake's time, once its outcome is known.
fn account(s: &mut Sockets, ctx: &mut Ctx, outcome: Outcome) {
    match outcome {
        Outcome::Succeeded | Outcome::Rejected(_) | Outcome::Denied(_) => {
            let took = ctx.now.saturating_duration_since(s.conn.started());
            ctx.counters.handshake.record(took);
        }
        Outcome::AuthFailed
        | Outcome::BadVersion
        | Outcome::NoAcceptableMethod
        | Outcome::ProxyHeader(_) => {}
    }
    let Some(user) = s.conn.user() else {
        return;
    };
    match outcome {
        Outcome::Succeeded => s.user_slot = ctx.accounts.open(user),
        // Counted only for names that are users: names a client makes up
        // would otherwise grow the table without bound.
        Outcome::AuthFailed if ctx.users.table().find(user.as_bytes()).is_some() => {
            ctx.accounts.count(user, |d| d.auth_failed += 1);
        }
        Outcome::Denied(origin) if origin != connection::USER_LIMIT => {
            ctx.accounts.count(user, |d| d.denied += 1);
        }
        _ => {}
    }
}

/// A rule with `log` decided this request: one line saying so.
fn log_decision(s: &Sockets, ctx: &mut Ctx, origin: Origin, outcome: Outcome) {
    let verdict = if let Outcome::Denied(_) = outcome {
        "deny"
    } else {
        "allow"
    };
    let rule = ctx.rules.current().describe(origin).to_string();
    let user = s.conn.user().map_or("-", |u| u);
    let target = s
        .conn
        .target()
        .map_or_else(|| "-".to_owned(), ToString::to_string);
    log::info!(
        "rule decided: decision={verdict} rule={} client={} user={} target={target}",
        LogSafe(rule),
        s.peer,
        crate::users::LogSafe(user)
    );
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
            let now = ctx.now;
            s.conn
                .handle_input(now, &scratch[..n], &ctx.gate(s.peer.ip()));
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
                    ctx.counters
                        .connect
                        .record(ctx.now.saturating_duration_since(a.started));
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
        log::debug!(
            "connect attempt failed: conn={} target={} error={}",
            s.id,
            s.conn
                .target()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
            Quoted(&err)
        );
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
    let now = ctx.now;
    // A tunnel under a rate limit reads no more than its buckets grant,
    // asked for one direction at a time, right before it reads, and what it
    // did not read is given back at once.
    let limit = s.limit.as_deref();
    let grant = |dir| limit.map_or(RELAY_BUDGET, |l| l.grant(dir, now, RELAY_BUDGET));
    let (up_before, down_before) = (s.up.delivered(), s.down.delivered());
    let before = up_before + down_before;
    let mut read = 0;
    let up_grant = grant(Direction::Up);
    let mut up = s.up.pump(
        &mut s.client,
        &mut s.cready,
        t,
        &mut s.tready,
        &mut ctx.pool,
        up_grant,
        &mut ctx.counters.bytes_up,
        &mut read,
    )?;
    if let Some(l) = limit {
        l.give_back(Direction::Up, up_grant - read);
    }
    let down_grant = grant(Direction::Down);
    let mut down = s.down.pump(
        t,
        &mut s.tready,
        &mut s.client,
        &mut s.cready,
        &mut ctx.pool,
        down_grant,
        &mut ctx.counters.bytes_down,
        &mut read,
    )?;
    if let Some(l) = limit {
        l.give_back(Direction::Down, down_grant - read);
        let mut wake: Option<std::time::Instant> = None;
        for (pump, granted, dir) in [
            (&mut up, up_grant, Direction::Up),
            (&mut down, down_grant, Direction::Down),
        ] {
            // Out of its grant: with tokens left (the grant was only
            // capped) it takes another turn after the others; without, it
            // sleeps until they refill, woken in a random order among the
            // user's tunnels so that they share the rate.
            if *pump == Pump::Budget && granted < RELAY_BUDGET && !l.ready(dir, now) {
                *pump = Pump::Blocked;
                let at = now + l.wait(dir, now, ctx.jitter());
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        if let Some(at) = wake {
            s.conn.handle_throttled(now, at);
        }
    }
    if s.up.delivered() + s.down.delivered() != before {
        s.conn.handle_relayed(ctx.now);
        ctx.accounts.bytes(
            s.user_slot,
            s.up.delivered() - up_before,
            s.down.delivered() - down_before,
        );
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

// ------------------------------------------------------------- BIND and UDP

/// UDP ASSOCIATE: the relay for connection `key`, judged for its user.
fn associate(
    s: &mut Sockets,
    key: usize,
    ctx: &mut Ctx,
) -> Result<std::net::SocketAddr, crate::socks5::wire::Reply> {
    let local = s
        .client
        .local_addr()
        .map_err(|_| crate::socks5::wire::Reply::GeneralFailure)?;
    let requested = s
        .conn
        .target()
        .cloned()
        .unwrap_or(TargetAddr::Ip(UNSPECIFIED));
    let user = s.conn.user().cloned();
    let admin = user
        .as_deref()
        .is_some_and(|u| ctx.gate(s.peer.ip()).is_admin(u));
    let who = Who {
        client: s.peer.ip().to_canonical(),
        user,
        admin,
    };
    let (extra, bound) = extra::associate(ctx, key, local, &requested, who)?;
    s.extra = Some(extra);
    Ok(bound)
}

/// Moves what the sockets of a request other than CONNECT allow.
fn service(s: &mut Sockets, key: usize, ctx: &mut Ctx) -> io::Result<Next> {
    match s.extra.as_deref_mut() {
        None => Ok(Next::Open),
        Some(Extra::Bind { .. }) => accept_inbound(s, key, ctx),
        Some(extra @ Extra::Udp(_)) => {
            let (up, down) = extra.bytes();
            if extra.relay_datagrams(key, s.id, ctx) {
                s.conn.handle_relayed(ctx.now);
                let (up2, down2) = extra.bytes();
                ctx.accounts.bytes(s.user_slot, up2 - up, down2 - down);
            }
            Ok(Next::Open)
        }
    }
}

/// Accepts inbound connections while the machine waits for one; each is
/// handed to it as attempt 0, which it keeps or cancels.
fn accept_inbound(s: &mut Sockets, key: usize, ctx: &mut Ctx) -> io::Result<Next> {
    loop {
        let Some(Extra::Bind { listener, ready }) = s.extra.as_deref_mut() else {
            return Ok(Next::Open);
        };
        if !ready.read || !s.attempts.is_empty() {
            return Ok(Next::Open);
        }
        let (mut socket, peer) = match listener.accept() {
            Ok(a) => a,
            Err(e) if would_block(&e) => {
                ready.read = false;
                return Ok(Next::Open);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A connection that died in the queue, or no descriptor for it:
            // the wait goes on (the bind timeout bounds it).
            Err(e) => {
                log::debug!("bind accept failed: conn={} error={}", s.id, Quoted(e));
                ready.read = false;
                return Ok(Next::Open);
            }
        };
        ctx.registry.register(
            &mut socket,
            token(key, 1 + AttemptId::INBOUND.index()),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        s.attempts.push(Attempt::inbound(socket, ctx.now));
        s.conn.handle_incoming(ctx.now, peer);
        if let Next::Close = apply(s, key, ctx)? {
            return Ok(Next::Close);
        }
        if !s.attempts.is_empty() || s.target.is_some() {
            log::debug!("bind peer connected: conn={} peer={peer}", s.id);
        } else {
            log::debug!(
                "bind peer refused: conn={} peer={peer} reason=not-the-expected-peer",
                s.id
            );
        }
    }
}
