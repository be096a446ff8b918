//! The sockets of the two requests that are not CONNECT: BIND's listening
//! socket, and UDP ASSOCIATE's relay (docs/udp-relay.md). What they decide
//! lives in the machine ([`Connection`]) and in [`Association`]; here are
//! the sockets and the system calls.
//!
//! Token slots (see `SLOT_BITS`): a BIND's inbound connection is attempt 0
//! (slot 1, becoming the target) and its listener slot 2; an association's
//! client-facing socket is slot 1, its IPv4 target-facing socket slot 2 and
//! its IPv6 one slot 3. Neither request has connection attempts of its own,
//! so the slots are free.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mio::Interest;
use mio::net::{TcpListener, UdpSocket};

use super::{Ctx, token, would_block};
use crate::logfmt::{LogSafe, Quoted};
use crate::metrics::Datagrams;
use crate::reactor::Inbound;
use crate::reactor::pipe::Ready;
use crate::rules::{self, Cmd};
use crate::socks5::udp::{self, Association, Dest, Header, Limits, Route};
use crate::socks5::wire::Status;
use crate::socks5::wire::{Reply, TargetAddr};

const LISTENER_SLOT: usize = 2;
const UDP_CLIENT_SLOT: usize = 1;
const UDP_V4_SLOT: usize = 2;
const UDP_V6_SLOT: usize = 3;

/// Datagrams one socket of an association may move per turn before other
/// connections get theirs.
const DATAGRAM_BUDGET: usize = 64;
/// Datagrams an association holds at most while the kernel does not take
/// them (a full socket buffer), and their bytes: past either, new ones are
/// dropped; the worker never blocks on one association.
const MAX_QUEUED: usize = 64;
const MAX_QUEUED_BYTES: usize = 256 * 1024;
/// A worker's datagram buffer: room for a reply's header in front of the
/// largest UDP payload (65,535 bytes less the 8-byte UDP header).
pub(super) const DATAGRAM_BUF: usize = udp::MAX_IP_HEADER_LEN + 65_535;

/// The sockets a request other than CONNECT adds to a connection.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "boxed as a whole in `Sockets`: a CONNECT tunnel pays one pointer"
)]
pub(super) enum Extra {
    /// BIND: waiting for the inbound connection.
    Bind { listener: TcpListener, ready: Ready },
    /// UDP ASSOCIATE.
    Udp(Relay),
}

impl Extra {
    /// The readiness of the socket with token slot `slot`, if it is one of these.
    pub(super) fn ready_of(&mut self, slot: usize) -> Option<&mut Ready> {
        match (self, slot) {
            (Extra::Bind { ready, .. }, LISTENER_SLOT) => Some(ready),
            (Extra::Udp(r), UDP_CLIENT_SLOT) => Some(&mut r.client_ready),
            (Extra::Udp(r), UDP_V4_SLOT) => r.v4.as_mut().map(|t| &mut t.ready),
            (Extra::Udp(r), UDP_V6_SLOT) => r.v6.as_mut().map(|t| &mut t.ready),
            _ => None,
        }
    }

    /// Whether `slot` is one of these sockets rather than an attempt's.
    pub(super) fn owns(&self, slot: usize) -> bool {
        match self {
            Extra::Bind { .. } => slot == LISTENER_SLOT,
            Extra::Udp(_) => (UDP_CLIENT_SLOT..=UDP_V6_SLOT).contains(&slot),
        }
    }

    /// A UDP association's payload bytes so far, up and down.
    pub(super) fn bytes(&self) -> (u64, u64) {
        match self {
            Extra::Udp(r) => r.bytes(),
            Extra::Bind { .. } => (0, 0),
        }
    }

    /// A UDP association's datagram totals, for the access log.
    pub(super) fn datagrams(&self) -> Option<Datagrams> {
        match self {
            Extra::Udp(r) => Some(r.totals),
            Extra::Bind { .. } => None,
        }
    }
}

/// A target-facing UDP socket, made when the client first sends to its
/// address family.
#[derive(Debug)]
pub(super) struct Outward {
    socket: UdpSocket,
    ready: Ready,
}

/// Which socket a queued datagram leaves by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Client,
    Target,
}

#[derive(Debug)]
struct Queued {
    via: Via,
    to: SocketAddr,
    bytes: Box<[u8]>,
    /// Payload bytes in it (what the byte counters count).
    payload: usize,
}

/// One UDP association: its routing decisions and its sockets.
#[derive(Debug)]
pub(super) struct Relay {
    /// The connection's slab key, for the tokens of sockets made later.
    key: usize,
    assoc: Association,
    /// Whom the rules judge each datagram for.
    who: Who,
    client: UdpSocket,
    client_ready: Ready,
    v4: Option<Outward>,
    v6: Option<Outward>,
    /// Datagrams the kernel would not take yet, in order (empty: no
    /// allocation, as for every idle association).
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    totals: Datagrams,
    bytes_up: u64,
    bytes_down: u64,
}

impl Relay {
    /// Payload bytes relayed client to target and back.
    pub(super) fn bytes(&self) -> (u64, u64) {
        (self.bytes_up, self.bytes_down)
    }
}

// ------------------------------------------------------------------ BIND

/// The local address that would be used to reach `peer`: the routing
/// table's choice, found by connecting a UDP socket (which sends nothing);
/// for the unspecified address, the address the client reached.
fn local_toward(peer: SocketAddr, client_local: SocketAddr) -> io::Result<IpAddr> {
    if peer.ip().is_unspecified() {
        return Ok(client_local.ip().to_canonical());
    }
    let ip = peer.ip().to_canonical();
    let any: SocketAddr = match ip {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let probe = std::net::UdpSocket::bind(any)?;
    // Port 0 cannot be connected to; any port finds the same route.
    probe.connect((ip, peer.port().max(1)))?;
    Ok(probe.local_addr()?.ip())
}

/// [`Action::Listen`](crate::socks5::connection::Action::Listen) for
/// connection `key`, whose client reached `client_local`: a listening
/// socket on an ephemeral port of the address toward `peer`, and its address.
pub(super) fn listen(
    ctx: &mut Ctx,
    key: usize,
    client_local: SocketAddr,
    peer: SocketAddr,
) -> io::Result<(Box<Extra>, SocketAddr)> {
    let ip = local_toward(peer, client_local)?;
    let mut listener = TcpListener::bind(SocketAddr::new(ip, 0))?;
    ctx.registry
        .register(&mut listener, token(key, LISTENER_SLOT), Interest::READABLE)?;
    let bound = listener.local_addr()?;
    ctx.counters.binds += 1;
    let extra = Extra::Bind {
        listener,
        ready: Ready::default(),
    };
    Ok((Box::new(extra), bound))
}

// --------------------------------------------------------- UDP ASSOCIATE

/// Who an association is for, as the rules judge each of its datagrams.
#[derive(Debug)]
pub(super) struct Who {
    /// The client's address.
    pub(super) client: IpAddr,
    /// The user logged in on the control connection.
    pub(super) user: Option<Arc<str>>,
    /// Whether that user is an administrator.
    pub(super) admin: bool,
}

/// [`Action::Associate`](crate::socks5::connection::Action::Associate) for
/// connection `key`, whose client reached `client_local` and asked with
/// `requested` (where it will send from): the client-facing socket on an
/// ephemeral port of that address, and the address to announce; or the
/// reply that refuses.
pub(super) fn associate(
    ctx: &mut Ctx,
    key: usize,
    client_local: SocketAddr,
    requested: &TargetAddr,
    who: Who,
) -> Result<(Box<Extra>, SocketAddr), Reply> {
    if ctx.udp_open.fetch_add(1, Ordering::AcqRel) >= ctx.cfg.max_udp_associations {
        ctx.udp_open.fetch_sub(1, Ordering::AcqRel);
        return Err(Reply::GeneralFailure);
    }
    match open_relay(ctx, key, client_local, requested, who) {
        Ok(done) => {
            ctx.counters.udp_associations += 1;
            Ok(done)
        }
        Err(e) => {
            ctx.udp_open.fetch_sub(1, Ordering::AcqRel);
            log::warn!(
                "udp relay socket not opened: side=client addr={} error={}",
                client_local.ip(),
                Quoted(e)
            );
            Err(Reply::GeneralFailure)
        }
    }
}

fn open_relay(
    ctx: &mut Ctx,
    key: usize,
    client_local: SocketAddr,
    requested: &TargetAddr,
    who: Who,
) -> io::Result<(Box<Extra>, SocketAddr)> {
    let local = client_local.ip().to_canonical();
    let mut client = UdpSocket::bind(SocketAddr::new(local, 0))?;
    ctx.registry.register(
        &mut client,
        token(key, UDP_CLIENT_SLOT),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    let bound = client.local_addr()?;
    let extra = Extra::Udp(Relay {
        key,
        assoc: Association::new(requested, who.client, Limits::default()),
        who,
        client,
        client_ready: Ready::default(),
        v4: None,
        v6: None,
        queue: VecDeque::new(),
        queued_bytes: 0,
        totals: Datagrams::default(),
        bytes_up: 0,
        bytes_down: 0,
    });
    let announced = ctx.cfg.udp_public_addr.unwrap_or(bound.ip());
    Ok((Box::new(extra), SocketAddr::new(announced, bound.port())))
}

impl Extra {
    /// A name the client sent to was resolved: the datagrams that waited
    /// for it go (those the rules allow).
    pub(super) fn resolved(
        &mut self,
        ctx: &mut Ctx,
        host: &str,
        result: io::Result<Vec<SocketAddr>>,
    ) {
        if let Extra::Udp(r) = self {
            r.assoc.handle_resolved(ctx.now, host, result);
            r.count_unresolved(ctx);
            // Only this name's datagrams are ready now.
            while let Some((to, data)) = r.assoc.poll_ready() {
                r.send(ctx, Some(host), to, &data, 0, data.len());
            }
        }
    }

    /// Moves the datagrams of a UDP association that its sockets allow;
    /// true if any moved. Asks to be driven again when a socket used its
    /// budget.
    pub(super) fn relay_datagrams(&mut self, key: usize, id: u64, ctx: &mut Ctx) -> bool {
        let Extra::Udp(r) = self else {
            return false;
        };
        let mut buf = std::mem::take(&mut ctx.datagrams);
        if buf.is_empty() {
            // Made once per worker, by its first association.
            buf = vec![0u8; DATAGRAM_BUF].into_boxed_slice();
        }
        let before = r.totals.up + r.totals.down;
        r.flush_queue(ctx);
        let mut again = r.relay_up(key, id, ctx, &mut buf);
        again |= r.relay_down(ctx, &mut buf);
        ctx.datagrams = buf;
        if again {
            ctx.again.push((key, id));
        }
        r.totals.up + r.totals.down != before
    }
}

impl Relay {
    fn drop_one(&mut self, ctx: &mut Ctx) {
        self.totals.dropped += 1;
        ctx.counters.udp_dropped += 1;
    }

    /// Datagrams from the client, up to the budget; true if it was used up.
    fn relay_up(&mut self, key: usize, id: u64, ctx: &mut Ctx, buf: &mut [u8]) -> bool {
        for _ in 0..DATAGRAM_BUDGET {
            if !self.client_ready.read {
                return false;
            }
            let (n, from) = match self.client.recv_from(buf) {
                Ok(r) => r,
                Err(e) if would_block(&e) => {
                    self.client_ready.read = false;
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("udp relay receive failed: conn={id} error={}", Quoted(e));
                    continue;
                }
            };
            if !self.assoc.accepts_client(from) {
                self.drop_one(ctx);
                continue;
            }
            match self.assoc.on_client_datagram(ctx.now, &buf[..n]) {
                Route::Send { to, data } => {
                    // A name sent as the target is judged as a name too.
                    let name = match Header::parse(&buf[..n]) {
                        Ok(Status::Complete(
                            Header {
                                dest: Dest::Domain(name, _),
                                ..
                            },
                            _,
                        )) => std::str::from_utf8(name).ok(),
                        _ => None,
                    };
                    let name = name.map(|n| n.to_owned());
                    self.send(ctx, name.as_deref(), to, buf, data, n);
                }
                Route::Resolve { host, port } => {
                    let reply_host = host.clone();
                    let answer = ctx.inbox(move |result| Inbound::UdpResolved {
                        key,
                        id,
                        host: reply_host,
                        result,
                    });
                    if ctx.blocking.resolve(host.clone(), port, answer).is_err() {
                        let gone = io::Error::other("the resolver pool has stopped");
                        self.assoc.handle_resolved(ctx.now, &host, Err(gone));
                        self.count_unresolved(ctx);
                    }
                }
                Route::Held => {}
                Route::Drop(why) => {
                    log::trace!(
                        "udp datagram from the client dropped: conn={id} reason={}",
                        drop_word(why)
                    );
                    self.drop_one(ctx);
                }
            }
        }
        true
    }

    fn count_unresolved(&mut self, ctx: &mut Ctx) {
        let unresolved = self.assoc.take_unresolved();
        self.totals.dropped += unresolved;
        ctx.counters.udp_dropped += unresolved;
    }

    /// Whether the rules let the client send to `to` (`name`: the name it
    /// sent to, which `to` is an address of).
    fn allowed(&self, ctx: &mut Ctx, name: Option<&str>, to: SocketAddr) -> bool {
        let verdict = ctx.rules.current().judge(&rules::Request {
            client: self.who.client,
            user: self.who.user.as_deref(),
            admin: self.who.admin,
            cmd: Cmd::Udp,
            name,
            addr: to.ip(),
            port: to.port(),
        });
        if !verdict.is_allow() {
            ctx.counters.denied += 1;
            if verdict.log() {
                let rule = ctx.rules.current().describe(verdict.origin()).to_string();
                log::info!(
                    "rule decided: decision=deny rule={} client={} cmd=udp target={to}",
                    LogSafe(rule),
                    self.who.client
                );
            }
        }
        verdict.is_allow()
    }

    /// Datagrams from targets, up to the budget per socket; true if one
    /// used it up.
    fn relay_down(&mut self, ctx: &mut Ctx, buf: &mut [u8]) -> bool {
        let mut again = false;
        for v6 in [false, true] {
            for _ in 0..DATAGRAM_BUDGET {
                let side = if v6 { &mut self.v6 } else { &mut self.v4 };
                let Some(out) = side.as_mut() else {
                    break;
                };
                if !out.ready.read {
                    break;
                }
                let room = &mut buf[udp::MAX_IP_HEADER_LEN..];
                let (n, from) = match out.socket.recv_from(room) {
                    Ok(r) => r,
                    Err(e) if would_block(&e) => {
                        out.ready.read = false;
                        break;
                    }
                    // ICMP errors and the like: nothing for the client.
                    Err(_) => continue,
                };
                let from = SocketAddr::new(from.ip().to_canonical(), from.port());
                let Some(client) = self
                    .assoc
                    .client()
                    .filter(|_| self.assoc.accepts_reply(from))
                else {
                    self.drop_one(ctx);
                    continue;
                };
                let h = udp::emit_header_before(from, buf, udp::MAX_IP_HEADER_LEN);
                let start = udp::MAX_IP_HEADER_LEN - h;
                self.send_to_client(ctx, client, buf, start, udp::MAX_IP_HEADER_LEN + n, n);
            }
            let side = if v6 { &self.v6 } else { &self.v4 };
            again |= side.as_ref().is_some_and(|o| o.ready.read);
        }
        again
    }

    fn send_to_client(
        &mut self,
        ctx: &mut Ctx,
        client: SocketAddr,
        buf: &[u8],
        start: usize,
        end: usize,
        payload: usize,
    ) {
        if !self.queue.is_empty() {
            return self.enqueue(ctx, Via::Client, client, &buf[start..end], payload);
        }
        match self.client.send_to(&buf[start..end], client) {
            Ok(_) => self.sent(ctx, Via::Client, payload),
            Err(e) if would_block(&e) => {
                self.client_ready.write = false;
                self.enqueue(ctx, Via::Client, client, &buf[start..end], payload);
            }
            Err(e) => {
                log::trace!(
                    "udp datagram to the client dropped: client={client} error={}",
                    Quoted(e)
                );
                self.drop_one(ctx);
            }
        }
    }

    /// Sends `buf[data..end]` to target `to` (an address of `name`, when
    /// the client sent to a name), if the rules allow it.
    fn send(
        &mut self,
        ctx: &mut Ctx,
        name: Option<&str>,
        to: SocketAddr,
        buf: &[u8],
        data: usize,
        end: usize,
    ) {
        if !self.allowed(ctx, name, to) {
            return self.drop_one(ctx);
        }
        let via = Via::Target;
        let payload = end - data;
        if !self.queue.is_empty() {
            return self.enqueue(ctx, via, to, &buf[data..end], payload);
        }
        let to = SocketAddr::new(to.ip().to_canonical(), to.port());
        let side = if to.is_ipv6() {
            &mut self.v6
        } else {
            &mut self.v4
        };
        let out = match outward(side, ctx, self.key, to.is_ipv6()) {
            Ok(out) => out,
            Err(e) => {
                log::warn!(
                    "udp relay socket not opened: side=target target={to} error={}",
                    Quoted(e)
                );
                return self.drop_one(ctx);
            }
        };
        match out.socket.send_to(&buf[data..end], to) {
            Ok(_) => self.sent(ctx, via, payload),
            Err(e) if would_block(&e) => {
                out.ready.write = false;
                self.enqueue(ctx, via, to, &buf[data..end], payload);
            }
            // EMSGSIZE (more than an IPv4 datagram holds), unreachable, ...
            Err(e) => {
                log::trace!(
                    "udp datagram to the target dropped: target={to} error={}",
                    Quoted(e)
                );
                self.drop_one(ctx);
            }
        }
    }

    fn sent(&mut self, ctx: &mut Ctx, via: Via, payload: usize) {
        ctx.counters.udp_datagrams += 1;
        match via {
            Via::Target => {
                self.totals.up += 1;
                self.bytes_up += payload as u64;
                ctx.counters.bytes_up += payload as u64;
            }
            Via::Client => {
                self.totals.down += 1;
                self.bytes_down += payload as u64;
                ctx.counters.bytes_down += payload as u64;
            }
        }
    }

    fn enqueue(&mut self, ctx: &mut Ctx, via: Via, to: SocketAddr, bytes: &[u8], payload: usize) {
        if self.queue.len() >= MAX_QUEUED || self.queued_bytes + bytes.len() > MAX_QUEUED_BYTES {
            return self.drop_one(ctx);
        }
        self.queued_bytes += bytes.len();
        self.queue.push_back(Queued {
            via,
            to,
            bytes: bytes.into(),
            payload,
        });
    }

    /// Sends what waits, in order, until a socket would block.
    fn flush_queue(&mut self, ctx: &mut Ctx) {
        while let Some((via, to)) = self.queue.front().map(|q| (q.via, q.to)) {
            let result = match via {
                Via::Client => self.client.send_to(&self.queue[0].bytes, to),
                Via::Target => {
                    let side = if to.is_ipv6() {
                        &mut self.v6
                    } else {
                        &mut self.v4
                    };
                    outward(side, ctx, self.key, to.is_ipv6())
                        .and_then(|out| out.socket.send_to(&self.queue[0].bytes, to))
                }
            };
            match result {
                Err(e) if would_block(&e) => return,
                Ok(_) => {
                    let q = self.queue.pop_front().expect("the front was there");
                    self.queued_bytes -= q.bytes.len();
                    self.sent(ctx, q.via, q.payload);
                }
                Err(_) => {
                    let q = self.queue.pop_front().expect("the front was there");
                    self.queued_bytes -= q.bytes.len();
                    self.drop_one(ctx);
                }
            }
        }
        // Empty again: give the memory back.
        self.queue = VecDeque::new();
    }
}

/// The target-facing socket of a family (`side`), made on first use.
fn outward<'a>(
    side: &'a mut Option<Outward>,
    ctx: &Ctx,
    key: usize,
    v6: bool,
) -> io::Result<&'a mut Outward> {
    if side.is_none() {
        let (slot, any): (_, SocketAddr) = if v6 {
            (UDP_V6_SLOT, (Ipv6Addr::UNSPECIFIED, 0).into())
        } else {
            (UDP_V4_SLOT, (Ipv4Addr::UNSPECIFIED, 0).into())
        };
        let mut socket = UdpSocket::bind(any)?;
        ctx.registry.register(
            &mut socket,
            token(key, slot),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        *side = Some(Outward {
            socket,
            ready: Ready::default(),
        });
    }
    Ok(side.as_mut().expect("made above"))
}

/// Why a client's datagram was dropped, as one word of a log line.
fn drop_word(why: udp::Drop) -> &'static str {
    match why {
        udp::Drop::Fragmented => "fragmented",
        udp::Drop::Malformed => "malformed",
        udp::Drop::ForeignSource => "foreign-source",
        udp::Drop::UnknownPeer => "unknown-peer",
        udp::Drop::WaitFull => "wait-full",
        udp::Drop::Unresolved => "unresolved",
        udp::Drop::TooBig => "too-big",
    }
}
