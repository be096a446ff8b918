//! The SCTP transport of the endpoint: one one-to-many socket, whose
//! associations are sessions, whose notifications say when they come and
//! go, and whose messages may arrive in pieces.
//!
//! docs/sctp.md: with the default `net.sctp.sndbuf_policy=0` the send
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
//! [`SHARE`]: super::SHARE
//! [`QUEUE_LIMIT`]: super::QUEUE_LIMIT
//! [`STALL_LIMIT`]: super::STALL_LIMIT

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry};

use super::{Endpoint, Io, Link, SCTP_TOKEN, SEND_BUFFER};
use crate::logfmt::Quoted;
use crate::sys::sctp::{AssocId, Notification, SctpSocket, addr_state, assoc_state};

/// Pieces of messages or notifications one turn reads from the socket.
const BUDGET: usize = 256;

/// Registers the listening socket and asks for its large send buffer.
pub(super) fn register(sock: &SctpSocket, registry: &Registry) -> io::Result<()> {
    if let Err(e) = sock.set_send_buffer(SEND_BUFFER) {
        log::warn!("management socket send buffer not set: error={}", Quoted(e));
    }
    registry.register(
        &mut SourceFd(&sock.as_raw_fd()),
        SCTP_TOKEN,
        Interest::READABLE | Interest::WRITABLE,
    )
}

impl Endpoint {
    /// Reads until the socket is drained or the turn's budget is used.
    /// Returns `true` when the budget ran out with input left.
    pub(super) fn read_sctp(&mut self, now: Instant) -> bool {
        for _ in 0..BUDGET {
            let Some(sock) = &self.sctp else {
                return false;
            };
            let r = match sock.recv(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!(
                        "management receive failed: transport=sctp error={}",
                        Quoted(e)
                    );
                    return false;
                }
            };
            if r.notification {
                self.notification.extend_from_slice(&self.buf[..r.len]);
                if r.eor {
                    let n = std::mem::take(&mut self.notification);
                    self.on_notification(&n, now);
                }
            } else {
                // Data before (or without) COMM_UP still makes a session.
                self.admit_sctp(r.assoc, now);
                self.on_data(Link::Sctp(r.assoc), r.stream, r.len, r.eor, r.from, now);
            }
        }
        true
    }

    fn admit_sctp(&mut self, assoc: AssocId, now: Instant) {
        let io = Io::Sctp {
            assoc,
            in_kernel: 0,
        };
        // The peer's address comes with its first data.
        self.admit(Link::Sctp(assoc), io, None, now);
    }

    fn on_notification(&mut self, n: &[u8], now: Instant) {
        match Notification::parse(n) {
            Some(Notification::AssocChange { assoc, state }) => match state {
                assoc_state::COMM_UP => self.admit_sctp(assoc, now),
                assoc_state::RESTART => {
                    // The peer restarted: a new session, logged out.
                    self.forget(Link::Sctp(assoc));
                    self.admit_sctp(assoc, now);
                }
                assoc_state::COMM_LOST => {
                    // Every path failed (the peer is unreachable), or the
                    // peer aborted: the session and its slot go now.
                    let link = Link::Sctp(assoc);
                    if self.links.get(&link).is_some_and(|a| a.logged_in) {
                        log::info!("management session lost: link={link} reason=comm-lost");
                    }
                    self.forget(link);
                }
                _ => self.forget(Link::Sctp(assoc)),
            },
            Some(Notification::PeerAddrChange { assoc, peer, state }) => {
                self.on_path_change(Link::Sctp(assoc), peer, state);
            }
            Some(Notification::SenderDry { assoc }) => {
                log::debug!("management sender dry: link={}", Link::Sctp(assoc));
                if let Some(a) = self.links.get_mut(&Link::Sctp(assoc))
                    && let Io::Sctp { in_kernel, .. } = &mut a.io
                {
                    *in_kernel = 0;
                    a.unacked_since = None;
                }
            }
            Some(Notification::PartialDeliveryAborted { assoc }) => {
                if let Some(a) = self.links.get_mut(&Link::Sctp(assoc)) {
                    a.rx.clear();
                }
            }
            Some(Notification::Shutdown { .. } | Notification::SendFailed { .. })
            | Some(Notification::Other(_))
            | None => {}
        }
    }

    /// Logs a path of a session that failed or came back, at info for an
    /// administrator's session (the other paths carry it meanwhile; see
    /// --mgmt-heartbeat and the options after it), and the rest at debug.
    fn on_path_change(&self, link: Link, peer: Option<IpAddr>, state: i32) {
        let Some(a) = self.links.get(&link) else {
            return;
        };
        let (word, notable) = match state {
            addr_state::UNREACHABLE => ("unreachable", true),
            addr_state::AVAILABLE => ("available", true),
            addr_state::CONFIRMED => ("confirmed", false),
            addr_state::ADDED => ("added", false),
            addr_state::REMOVED => ("removed", false),
            addr_state::MADE_PRIM => ("primary", false),
            addr_state::POTENTIALLY_FAILED => ("potentially-failed", false),
            _ => ("other", false),
        };
        let peer = PeerAddr(peer);
        if notable && a.logged_in {
            log::info!("management path changed: link={link} peer={peer} state={word}");
        } else {
            log::debug!("management path changed: link={link} peer={peer} state={word}");
        }
    }
}

/// A peer's address in a log line, `-` when unknown.
struct PeerAddr(Option<IpAddr>);

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str("-"),
        }
    }
}
