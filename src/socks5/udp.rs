//! UDP ASSOCIATE (RFC 1928 section 7): the header of a relayed datagram, and
//! the routing decisions of one association, with no I/O and no clock.
//!
//! ```text
//! +----+------+------+----------+----------+----------+
//! |RSV | FRAG | ATYP | DST.ADDR | DST.PORT |   DATA   |
//! +----+------+------+----------+----------+----------+
//! | 2  |  1   |  1   | Variable |    2     | Variable |
//! +----+------+------+----------+----------+----------+
//! ```
//!
//! A client puts this header in front of every datagram it sends to the
//! relay; the relay strips it and sends DATA to DST.ADDR/DST.PORT, and puts a
//! header naming the sender in front of every reply it carries back.
//! [`Header::parse`] reads a header in place (a name is borrowed from the
//! datagram), [`emit_header_before`] writes one in front of a reply already
//! in the driver's buffer.
//!
//! An [`Association`] decides, for one UDP ASSOCIATE, which datagrams are the
//! client's, where each goes, which names to resolve (holding the datagrams
//! that wait for an answer, within [`Limits`]) and which replies to carry
//! back. The driver owns the sockets, the resolver and the clock: it hands
//! the association what arrived, with the time, and does what it answers.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::wire::{self, Status, TargetAddr, TargetRef, WireError};

/// The longest header: RSV, FRAG, ATYP, a name of 255 bytes, the port.
pub const MAX_HEADER_LEN: usize = 3 + 1 + 1 + 255 + 2;
/// The longest header with an IP address (IPv6), what replies carry: 22.
pub const MAX_IP_HEADER_LEN: usize = 3 + 1 + 16 + 2;
/// The largest UDP payload over IPv4 (65,535 - 8 - 20).
pub const MAX_PAYLOAD_V4: usize = 65_507;

/// Where a client's datagram goes, borrowed from the datagram (no
/// allocation per datagram): `Dest::Ip(SocketAddr)` or
/// `Dest::Domain(name, port)`, the same address a request carries.
pub use super::wire::TargetRef as Dest;

// ------------------------------------------------------------------ header

/// The header of a relayed datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// FRAG: X'00' for a whole datagram, else a fragment's position (socks5d
    /// drops fragments, as RFC 1928 allows).
    pub frag: u8,
    /// ATYP, DST.ADDR and DST.PORT.
    pub dest: Dest<'a>,
}

impl<'a> Header<'a> {
    /// Parses the header at the start of a datagram; `Complete(header, n)`:
    /// DATA starts at `n`.
    ///
    /// A datagram shorter than its header is `Partial` (the caller drops it
    /// as truncated: a datagram never grows); an unknown ATYP is
    /// `Err(WireError::AddressType)`. RSV is not checked.
    pub fn parse(datagram: &'a [u8]) -> Result<Status<Self>, WireError> {
        let Some(&frag) = datagram.get(2) else {
            return Ok(Status::Partial);
        };
        match TargetRef::parse(&datagram[3..])? {
            Status::Partial => Ok(Status::Partial),
            Status::Complete(dest, n) => Ok(Status::Complete(Header { frag, dest }, 3 + n)),
        }
    }

    /// Bytes this header takes on the wire.
    pub fn buffer_len(&self) -> usize {
        3 + self.dest.buffer_len()
    }

    /// Writes RSV X'0000', FRAG and the address into `out` (a client's side
    /// of the relay), returning the length.
    ///
    /// # Panics
    /// If `out` is shorter than `buffer_len()` or a name is longer than 255 bytes.
    pub fn emit(&self, out: &mut [u8]) -> usize {
        out[..3].copy_from_slice(&[0x00, 0x00, self.frag]);
        3 + self.dest.emit(&mut out[3..])
    }
}

/// Writes RSV X'0000', FRAG X'00', and `from` as ATYP, address and port
/// (an IPv4-mapped IPv6 address written as IPv4) at the end of `out`'s first
/// `end` bytes, i.e. into `out[end - len..end]`; returns `len` (10 or 22).
///
/// The driver receives a target's datagram at offset [`MAX_IP_HEADER_LEN`]
/// of its buffer and puts the header right in front of it: no copy of the
/// payload.
///
/// # Panics
/// If `end` is shorter than the header or longer than `out`.
pub fn emit_header_before(from: SocketAddr, out: &mut [u8], end: usize) -> usize {
    let header = Header {
        frag: 0,
        dest: Dest::Ip(canonical(from)),
    };
    let len = header.buffer_len();
    header.emit(&mut out[end - len..end])
}

/// `addr` with an IPv4-mapped IPv6 address as IPv4, and no IPv6 flow label
/// or scope: the form every comparison and every destination here uses.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

// ----------------------------------------------------------------- routing

/// Limits of one association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Datagrams held while their name resolves, ready ones not yet polled
    /// included (default 8).
    pub max_waiting: usize,
    /// Their DATA bytes (default 64 KiB).
    pub max_waiting_bytes: usize,
    /// Names whose answer is kept (default 16); past it the oldest answer
    /// is forgotten.
    pub max_names: usize,
    /// How long an answer is kept (default 30 s: getaddrinfo gives no TTL).
    pub name_ttl: Duration,
    /// Targets remembered for the inbound filter (default 256); past it the
    /// one sent to least recently is forgotten.
    pub max_peers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_waiting: 8,
            max_waiting_bytes: 64 * 1024,
            max_names: 16,
            name_ttl: Duration::from_secs(30),
            max_peers: 256,
        }
    }
}

/// Why a datagram was dropped (the driver counts each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drop {
    /// FRAG is not X'00': socks5d does not reassemble fragments.
    Fragmented,
    /// The header is truncated or has an unknown ATYP, or the name is empty
    /// or not UTF-8.
    Malformed,
    /// A datagram to the client-facing socket that is not from the client
    /// (`Association::accepts_client` said no; the driver's to count).
    ForeignSource,
    /// A datagram to a target-facing socket from no peer the client sent to
    /// (`Association::accepts_reply` said no; the driver's to count).
    UnknownPeer,
    /// Too many datagrams, or bytes, already wait for names to resolve.
    WaitFull,
    /// Its name did not resolve (counted through `take_unresolved`).
    Unresolved,
    /// Too big for the socket it must leave by (the driver's to count).
    TooBig,
}

/// What to do with a client's datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Send the datagram's bytes from `data` on to `to`.
    Send {
        /// The destination, canonical (an IPv4-mapped address as IPv4).
        to: SocketAddr,
        /// Where DATA starts in the datagram.
        data: usize,
    },
    /// The datagram is held; ask the resolver for `host` (and hand its answer
    /// to `Association::handle_resolved`).
    Resolve {
        /// The name, valid UTF-8 and not an IP literal.
        host: String,
        /// The datagram's DST.PORT.
        port: u16,
    },
    /// The datagram is held behind a lookup already asked for.
    Held,
    /// Drop the datagram, and count why.
    Drop(Drop),
}

/// A datagram waiting for its name.
#[derive(Debug)]
struct Waiting {
    /// The name it goes to.
    host: Box<str>,
    /// Its DST.PORT.
    port: u16,
    /// Its DATA.
    data: Vec<u8>,
}

/// A resolver's answer kept for a while.
#[derive(Debug)]
struct Answer {
    /// The name asked.
    host: Box<str>,
    /// Its first address, canonical: where datagrams to the name go.
    ip: IpAddr,
    /// When it goes stale (`None`: a TTL past the end of time).
    expires: Option<Instant>,
}

impl Answer {
    /// Whether the answer may still be used at `now`.
    fn fresh(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| now < t)
    }
}

/// The peers the client sent to, the least recently used forgotten first.
///
/// `last` maps each peer to the sequence number of its latest send; `order`
/// lists sends oldest first, including superseded ones, which are skipped
/// when met and swept out once they outnumber the live ones.
#[derive(Debug, Default)]
struct Peers {
    /// Numbers the sends.
    seq: u64,
    /// Each remembered peer (canonical), with its latest send.
    last: HashMap<SocketAddr, u64>,
    /// Every send still possibly live, oldest first.
    order: VecDeque<(SocketAddr, u64)>,
}

impl Peers {
    /// Remembers a send to `peer` (canonical), forgetting the least recently
    /// used peer past `max`.
    fn remember(&mut self, peer: SocketAddr, max: usize) {
        if max == 0 {
            return;
        }
        self.seq += 1;
        self.last.insert(peer, self.seq);
        self.order.push_back((peer, self.seq));
        while self.last.len() > max {
            let Some((old, seq)) = self.order.pop_front() else {
                break;
            };
            if self.last.get(&old) == Some(&seq) {
                self.last.remove(&old);
            }
        }
        if self.order.len() > max.saturating_mul(2) {
            let last = &self.last;
            self.order.retain(|(p, s)| last.get(p) == Some(s));
        }
    }

    /// Whether `peer` (canonical) is remembered.
    fn contains(&self, peer: SocketAddr) -> bool {
        self.last.contains_key(&peer)
    }
}

/// One UDP ASSOCIATE's routing decisions.
///
/// Memory is bounded by the [`Limits`]: the held datagrams, the answers
/// kept and the peers remembered. An idle association holds no datagram
/// buffer: queues are let go of whenever they empty.
#[derive(Debug)]
pub struct Association {
    limits: Limits,
    /// The only IP the client may send from (canonical).
    client_ip: IpAddr,
    /// The only port it may send from, once known.
    client_port: Option<u16>,
    /// Where replies go: the first accepted datagram's source, as received.
    client: Option<SocketAddr>,
    /// Names asked of the resolver and not answered yet.
    resolving: Vec<Box<str>>,
    /// Datagrams waiting for those names, in arrival order.
    waiting: VecDeque<Waiting>,
    /// Datagrams whose name resolved, in order, for `poll_ready`.
    ready: VecDeque<(SocketAddr, Vec<u8>)>,
    /// DATA bytes of `waiting` and `ready` together.
    held_bytes: usize,
    /// Answers kept, oldest first.
    answers: VecDeque<Answer>,
    /// Datagrams dropped as unresolved since `take_unresolved`.
    unresolved: u64,
    /// The targets the client sent to.
    peers: Peers,
}

impl Association {
    /// A new association for a UDP ASSOCIATE whose DST.ADDR/DST.PORT is
    /// `requested` (where the client says it will send from), on a control
    /// connection from `client_ip`.
    ///
    /// A requested IP that is not unspecified is the only one accepted
    /// (canonical: ::ffff:a.b.c.d is a.b.c.d); an unspecified IP or a name
    /// accepts only `client_ip`. A non-zero port is the only one accepted;
    /// with port zero, the first accepted datagram fixes it. Replies go to
    /// the first accepted datagram's source.
    pub fn new(requested: &TargetAddr, client_ip: IpAddr, limits: Limits) -> Self {
        let client_ip = match requested {
            TargetAddr::Ip(a) if !a.ip().to_canonical().is_unspecified() => a.ip().to_canonical(),
            _ => client_ip.to_canonical(),
        };
        let client_port = Some(requested.port()).filter(|&p| p != 0);
        Association {
            limits,
            client_ip,
            client_port,
            client: None,
            resolving: Vec::new(),
            waiting: VecDeque::new(),
            ready: VecDeque::new(),
            held_bytes: 0,
            answers: VecDeque::new(),
            unresolved: 0,
            peers: Peers::default(),
        }
    }

    /// Whether a datagram from `from` (to the client-facing socket) is the
    /// client's; the first one accepted fixes the port if the request did
    /// not, and where replies go.
    pub fn accepts_client(&mut self, from: SocketAddr) -> bool {
        if from.ip().to_canonical() != self.client_ip {
            return false;
        }
        match self.client_port {
            Some(port) if port != from.port() => return false,
            _ => self.client_port = Some(from.port()),
        }
        self.client.get_or_insert(from);
        true
    }

    /// Where replies go, once the client has sent a datagram that was
    /// accepted: its source as received (an IPv4-mapped address stays
    /// mapped, for the IPv6 socket it came in on).
    pub fn client(&self) -> Option<SocketAddr> {
        self.client
    }

    /// A datagram from the client (already accepted by `accepts_client`).
    ///
    /// A truncated header or an unknown ATYP is `Drop(Malformed)`; FRAG not
    /// X'00' is `Drop(Fragmented)`; an IP address (or a name that is an IP
    /// literal) is remembered as a peer and `Send`; an empty or non-UTF-8
    /// name is `Drop(Malformed)`; a name with a fresh answer is sent to the
    /// answer's first address (the datagram's own port). Any other name: the
    /// DATA is copied and held (past `max_waiting` or `max_waiting_bytes`,
    /// `Drop(WaitFull)`), with `Resolve` for the first datagram of a name not
    /// being resolved and `Held` for the others.
    ///
    /// The driver drains `poll_ready` after each `handle_resolved`, so that a
    /// datagram sent at once never overtakes the ones released before it.
    pub fn on_client_datagram(&mut self, now: Instant, datagram: &[u8]) -> Route {
        let (header, data) = match Header::parse(datagram) {
            Ok(Status::Complete(header, n)) => (header, n),
            Ok(Status::Partial) | Err(_) => return Route::Drop(Drop::Malformed),
        };
        if header.frag != 0 {
            return Route::Drop(Drop::Fragmented);
        }
        let (name, port) = match header.dest {
            Dest::Ip(to) => return self.send(canonical(to), data),
            Dest::Domain(name, port) => (name, port),
        };
        let host = match std::str::from_utf8(name) {
            Ok(host) if !host.is_empty() => host,
            _ => return Route::Drop(Drop::Malformed),
        };
        if let Some(ip) = wire::ip_literal(host) {
            return self.send(canonical(SocketAddr::new(ip, port)), data);
        }
        if let Some(ip) = self.answer(now, host) {
            return self.send(SocketAddr::new(ip, port), data);
        }
        self.hold(host, port, &datagram[data..])
    }

    /// The resolver's answer for `host`: addresses (with the port asked; the
    /// held datagrams keep their own ports) or an error.
    ///
    /// The first address is kept for `name_ttl`, and the datagrams held for
    /// the name become ready for `poll_ready`, in order. On an error or an
    /// empty answer they are dropped, counted by `take_unresolved`. An answer
    /// for a name not being resolved is ignored.
    pub fn handle_resolved(
        &mut self,
        now: Instant,
        host: &str,
        result: io::Result<Vec<SocketAddr>>,
    ) {
        let Some(i) = self.resolving.iter().position(|h| **h == *host) else {
            return;
        };
        self.resolving.swap_remove(i);
        if self.resolving.is_empty() {
            self.resolving = Vec::new();
        }
        let ip = match result {
            Ok(addrs) => addrs.first().map(|a| a.ip().to_canonical()),
            Err(_) => None,
        };
        if let Some(ip) = ip {
            self.keep_answer(now, host, ip);
        }
        let (mine, others) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition::<VecDeque<_>, _>(|w| *w.host == *host);
        self.waiting = others;
        if self.waiting.is_empty() {
            self.waiting = VecDeque::new();
        }
        for w in mine {
            match ip {
                Some(ip) => self.ready.push_back((SocketAddr::new(ip, w.port), w.data)),
                None => {
                    self.held_bytes -= w.data.len();
                    self.unresolved += 1;
                }
            }
        }
    }

    /// The next held datagram ready to send: its destination and DATA (its
    /// peer is remembered as with `Send`).
    pub fn poll_ready(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let (to, data) = self.ready.pop_front()?;
        if self.ready.is_empty() {
            self.ready = VecDeque::new();
        }
        self.held_bytes -= data.len();
        self.peers.remember(to, self.limits.max_peers);
        Some((to, data))
    }

    /// Datagrams dropped as `Unresolved` since the last call.
    pub fn take_unresolved(&mut self) -> u64 {
        std::mem::take(&mut self.unresolved)
    }

    /// Whether a datagram from `from` (to a target-facing socket) comes from
    /// a peer the client sent to (one of the last `max_peers`).
    pub fn accepts_reply(&self, from: SocketAddr) -> bool {
        self.peers.contains(canonical(from))
    }

    /// Datagrams held: waiting for a name, or ready and not yet polled.
    pub fn held(&self) -> usize {
        self.waiting.len() + self.ready.len()
    }

    /// `Send` to `to` (canonical), remembering it as a peer.
    fn send(&mut self, to: SocketAddr, data: usize) -> Route {
        self.peers.remember(to, self.limits.max_peers);
        Route::Send { to, data }
    }

    /// The fresh answer for `host`, if any; a stale one is forgotten.
    fn answer(&mut self, now: Instant, host: &str) -> Option<IpAddr> {
        let i = self.answers.iter().position(|a| *a.host == *host)?;
        if self.answers[i].fresh(now) {
            return Some(self.answers[i].ip);
        }
        self.answers.remove(i);
        if self.answers.is_empty() {
            self.answers = VecDeque::new();
        }
        None
    }

    /// Keeps `ip` as the answer for `host` from `now`, forgetting the
    /// oldest answers past `max_names`.
    fn keep_answer(&mut self, now: Instant, host: &str, ip: IpAddr) {
        self.answers.retain(|a| *a.host != *host);
        if self.limits.max_names == 0 {
            return;
        }
        while self.answers.len() >= self.limits.max_names {
            self.answers.pop_front();
        }
        self.answers.push_back(Answer {
            host: host.into(),
            ip,
            expires: now.checked_add(self.limits.name_ttl),
        });
    }

    /// Holds `data` for `host`, within the limits, and says whether to ask
    /// the resolver.
    fn hold(&mut self, host: &str, port: u16, data: &[u8]) -> Route {
        let limits = &self.limits;
        if self.held() >= limits.max_waiting
            || data.len() > limits.max_waiting_bytes.saturating_sub(self.held_bytes)
        {
            return Route::Drop(Drop::WaitFull);
        }
        self.held_bytes += data.len();
        self.waiting.push_back(Waiting {
            host: host.into(),
            port,
            data: data.to_vec(),
        });
        if self.resolving.iter().any(|h| **h == *host) {
            return Route::Held;
        }
        self.resolving.push(host.into());
        Route::Resolve {
            host: host.into(),
            port,
        }
    }
}

#[cfg(test)]
#[path = "udp_tests.rs"]
mod tests;
