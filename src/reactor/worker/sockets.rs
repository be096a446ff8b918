//! One client connection's sockets, buffers and readiness, and the steps
//! that move its bytes: the worker's side of a [`Connection`]. Each step
//! does the I/O the machine's [`Reading`] calls for, hands the machine what
//! happened, and performs the actions it answers with.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use mio::net::TcpStream;
use slab::Slab;

use super::Ctx;
use super::extra::Extra;
use crate::blocking::Answer;
use crate::logfmt::LogSafe;
use crate::reactor::Inbound;
use crate::reactor::limits::SessionLimits;
use crate::reactor::pipe::{Pipe, Ready};
use crate::reactor::rate::Limiter;
use crate::rules::Rules;
use crate::socks5::connection;
use crate::socks5::connection::{AttemptId, Connection, Context, Outcome};
use crate::users::{Authenticator, Role, UserTable, Verdict};

/// The sockets, buffers and readiness of one client connection; what it is
/// doing is its `conn`'s business.
#[derive(Debug)]
pub(super) struct Sockets {
    pub(super) id: u64,
    pub(super) conn: Connection,
    pub(super) client: TcpStream,
    pub(super) cready: Ready,
    /// The client's address: the peer's, or for a balancer's connection
    /// (`--proxy-protocol-from`) the one its PROXY header named, once it
    /// came (`Connection::via` keeps the balancer's).
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
    /// The rate limits of the rule that allowed the tunnel, if any.
    pub(super) limit: Option<Box<Limiter>>,
    /// The user's slot in the worker's accounts (`acct::NO_USER`: none).
    pub(super) user_slot: u32,
}

#[derive(Debug)]
pub(super) struct Attempt {
    pub(super) id: AttemptId,
    pub(super) socket: TcpStream,
    pub(super) ready: Ready,
    /// When it started (for the connect-time histogram).
    pub(super) started: Instant,
}

impl Attempt {
    /// BIND's inbound connection, accepted: connected and maybe readable.
    pub(super) fn inbound(socket: TcpStream, now: Instant) -> Attempt {
        Attempt {
            id: AttemptId::INBOUND,
            socket,
            ready: Ready {
                read: true,
                write: true,
                hup: false,
            },
            started: now,
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
    pub(super) fn count(&mut self, outcome: Outcome, ip: IpAddr) {
        match outcome {
            Outcome::Rejected(_) => self.counters.connect_failed += 1,
            Outcome::Denied(connection::USER_LIMIT) => {
                self.counters.connect_failed += 1;
                self.counters.session_limit += 1;
            }
            Outcome::Denied(_) => {
                self.counters.connect_failed += 1;
                self.counters.denied += 1;
            }
            Outcome::AuthFailed => {
                self.counters.auth_failed += 1;
                if self.penalties.is_penalised(ip, self.now) {
                    self.counters.auth_penalised += 1;
                } else if let Some(p) = self.penalties.failure(ip, self.now) {
                    self.counters.penalties += 1;
                    log::warn!(
                        "socks authentications refused unchecked: source={} failures={} \
                         penalty_s={}",
                        LogSafe(p.source),
                        p.failures,
                        p.length.as_secs()
                    );
                }
            }
            Outcome::ProxyHeader(why) => self.proxy_refused(why, ip),
            Outcome::Succeeded | Outcome::BadVersion | Outcome::NoAcceptableMethod => {}
        }
    }
}

/// The user table and the rules as one client sees them: while the
/// client's source is penalised, its authentications are refused without a
/// check.
pub(super) struct Gate<'a> {
    client: IpAddr,
    users: &'a UserTable,
    rules: &'a Rules,
    limits: &'a SessionLimits,
    penalised: bool,
}

impl Context for Gate<'_> {
    fn rules(&self) -> &Rules {
        self.rules
    }

    fn is_admin(&self, user: &str) -> bool {
        self.users
            .find(user.as_bytes())
            .is_some_and(|u| u.role == Role::Admin)
    }

    fn client(&self) -> IpAddr {
        self.client
    }

    fn take_user_session(&self, user: &Arc<str>) -> bool {
        self.limits.per_user.as_ref().is_none_or(|c| c.take(user))
    }
}

impl Ctx {
    /// What a connection from `ip` consults now.
    pub(super) fn gate(&mut self, ip: IpAddr) -> Gate<'_> {
        Gate {
            client: ip,
            penalised: self.penalties.is_penalised(ip, self.now),
            users: self.users.table(),
            rules: self.rules.current(),
            limits: &self.limits,
        }
    }
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

#[cfg(test)]
mod tests {
    /// What every connection, an idle tunnel too, costs in the worker's
    /// slab. The goal is at most 0.6 KiB of process memory per idle tunnel
    /// (README, Performance), and this entry is most of it: it may not grow
    /// unnoticed. 560 bytes on 2026-12-01 (of which the machine 312), after
    /// BIND, UDP ASSOCIATE, the rules and rate limits added their fields.
    #[test]
    fn a_tunnel_entry_does_not_grow_unnoticed() {
        let sockets = std::mem::size_of::<super::Sockets>();
        let conn = std::mem::size_of::<crate::socks5::connection::Connection>();
        assert!(
            sockets <= 560 && conn <= 312,
            "Sockets {sockets} bytes, of which Connection {conn}: more than before"
        );
    }
}
