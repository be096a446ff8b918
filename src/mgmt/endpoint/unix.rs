//! The Unix-domain transport of the endpoint: a SOCK_SEQPACKET listener
//! whose connections are sessions, one packet per message.
//!
//! - A packet is a whole message, so nothing is reassembled; one longer
//!   than the buffer arrives cut (its whole length is told), and is kept
//!   to MAX_REQUEST + 1 bytes like an SCTP message, so that it is
//!   malformed exactly as over SCTP, never read as two.
//! - The peer is known by its uid (SO_PEERCRED): refused log ins are
//!   counted, and checks queued, per local user, so one cannot lock another
//!   out.
//! - Each connection has its own kernel buffers, so no peer can fill
//!   anyone else's; what waits for a peer that does not read is bounded by
//!   the same queue limit and stall timer as SCTP.
//! - Closing gracefully is shutdown(SHUT_WR): the peer reads every reply,
//!   then the end. A peer that shuts its side down first still gets the
//!   answers to what it sent.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::{Endpoint, Io, LISTENER_TOKEN, Link};
use crate::logfmt::{LogSafe, Quoted};
use crate::sys::seqpacket::{Conn, Listener};
use crate::users::penalty::Peer;

/// Connections one turn accepts.
const ACCEPT_BUDGET: usize = 64;
/// Packets one turn reads from one connection.
const READ_BUDGET: usize = 16;

/// Registers the listener.
pub(super) fn register(l: &Listener, registry: &Registry) -> io::Result<()> {
    registry.register(
        &mut SourceFd(&l.as_raw_fd()),
        LISTENER_TOKEN,
        Interest::READABLE,
    )
}

/// Takes a connection out of the poll before it is closed.
pub(super) fn deregister(conn: &Conn, registry: &Registry) {
    let _ = registry.deregister(&mut SourceFd(&conn.as_raw_fd()));
}

impl Endpoint {
    /// Accepts connections until none waits or the turn's budget is used.
    /// Returns `true` when the budget ran out with connections left.
    pub(super) fn accept_unix(&mut self, now: Instant) -> bool {
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = &self.unix else {
                return false;
            };
            let conn = match listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    // EMFILE and the like: the connection waits in the
                    // backlog until the next one arrives.
                    log::warn!(
                        "management accept failed: path={} error={}",
                        LogSafe(listener.path().display()),
                        Quoted(e)
                    );
                    return false;
                }
            };
            let cred = match conn.peer_cred() {
                Ok(c) => c,
                Err(e) => {
                    log::debug!(
                        "management connection dropped: transport=unix \
                         reason=no-peer-credentials error={}",
                        Quoted(e)
                    );
                    continue;
                }
            };
            let n = self.next_conn;
            self.next_conn += 1;
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) =
                self.registry
                    .register(&mut SourceFd(&conn.as_raw_fd()), Token(n), interest)
            {
                log::warn!(
                    "management connection dropped: link={} reason=not-watched error={}",
                    Link::Unix(n),
                    Quoted(e)
                );
                continue;
            }
            log::debug!(
                "management connection accepted: link={} uid={} pid={}",
                Link::Unix(n),
                cred.uid,
                cred.pid
            );
            let io = Io::Unix {
                conn,
                read_closed: false,
            };
            self.admit(Link::Unix(n), io, Some(Peer::Uid(cred.uid)), now);
            // Its log in may be there already: read it this turn, before the
            // cap on those not logged in is applied.
            self.unix_ready.push(n);
        }
        true
    }

    /// Reads the packets waiting on connection `n`, within the turn's
    /// budget. Returns `true` when the budget ran out with input left.
    pub(super) fn read_unix(&mut self, n: usize, now: Instant) -> bool {
        let link = Link::Unix(n);
        for _ in 0..READ_BUDGET {
            let Some(a) = self.links.get(&link) else {
                return false;
            };
            let Io::Unix { conn, read_closed } = &a.io else {
                return false;
            };
            if *read_closed {
                return false;
            }
            let len = match conn.recv(&mut self.buf) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("management receive failed: link={link} error={}", Quoted(e));
                    self.forget(link);
                    return false;
                }
            };
            // 0 is the end, or an empty packet (which SCTP cannot carry, and
            // which is then a malformed message like any other).
            if len == 0 && conn.peer_closed().unwrap_or(true) {
                self.on_peer_end(link);
                return false;
            }
            self.on_data(link, 0, len, true, None, now);
        }
        true
    }

    /// The peer of `link` has shut its side down: nothing more will come.
    fn on_peer_end(&mut self, link: Link) {
        let Some(a) = self.links.get_mut(&link) else {
            return;
        };
        if a.closing.is_some() {
            self.forget(link);
            return;
        }
        if let Io::Unix { read_closed, .. } = &mut a.io {
            *read_closed = true;
        }
        self.close_if_done(link);
    }
}
