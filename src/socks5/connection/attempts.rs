//! Connection attempts to a target's addresses, raced as RFC 8305 (Happy
//! Eyeballs version 2) describes: one attempt at a time, the next one after
//! the Connection Attempt Delay or as soon as the one before fails, earlier
//! attempts kept running, the first to connect wins.
//!
//! The addresses and where each stands ([`Candidate`]s, one allocation per
//! request) outlive the race: attempts still running when it ends must be
//! cancelled with the driver. The race's own clock ([`Schedule`]) lives in
//! the `Connecting` state and ends with it.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Action, AttemptId, Config};
use crate::socks5::wire::Reply;

/// Addresses tried at most for one request: an attempt's id must fit the
/// driver's token space (see [`AttemptId`]).
pub const MAX_ATTEMPTS: usize = 255;

/// Where one address stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Try {
    /// Not started yet.
    Waiting,
    /// Decided to start; the driver is told by the next `poll_action`.
    Starting { deadline: Instant },
    /// The driver has a socket connecting to it.
    Open { deadline: Instant },
    /// The driver must close its socket (timed out, or another won).
    Cancelling,
    /// Nothing more to do: failed, cancelled, never started, or the winner.
    Over,
}

/// One address of the request and its attempt; the id is its index.
#[derive(Debug)]
pub struct Candidate {
    addr: SocketAddr,
    state: Try,
}

/// The race's clock while the request is connecting.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// The first candidate not started yet.
    next: u8,
    /// When `next` starts if no attempt fails or connects before.
    next_at: Option<Instant>,
    /// What the client is told if no attempt connects: the reply for the
    /// latest failure.
    last_error: Reply,
}

/// RFC 8305 section 4: "the client SHOULD modify the ordered list to
/// interleave address families", starting with the family of the first
/// address ("First Address Family Count" of one). Each family keeps the
/// resolver's order (RFC 6724: IPv6 first where it works). At most
/// [`MAX_ATTEMPTS`] addresses are kept.
pub fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let first_v6 = first.is_ipv6();
    let mut primary = addrs.iter().filter(|a| a.is_ipv6() == first_v6);
    let mut secondary = addrs.iter().filter(|a| a.is_ipv6() != first_v6);
    let mut out = Vec::with_capacity(addrs.len().min(MAX_ATTEMPTS));
    loop {
        let (p, s) = (primary.next(), secondary.next());
        if p.is_none() && s.is_none() {
            break;
        }
        out.extend(p.into_iter().chain(s).copied());
    }
    out.truncate(MAX_ATTEMPTS);
    out
}

/// The candidates for `addrs` (in the resolver's order, at least one) and
/// the race with its first attempt starting now.
pub fn start(now: Instant, addrs: &[SocketAddr], config: &Config) -> (Schedule, Box<[Candidate]>) {
    let candidate = |&addr| Candidate {
        addr,
        state: Try::Waiting,
    };
    // One family (one address, most often) is its own interleaving.
    let mixed = addrs.iter().any(|a| a.is_ipv6() != addrs[0].is_ipv6());
    let mut candidates: Box<[Candidate]> = if mixed {
        interleave(addrs).iter().map(candidate).collect()
    } else {
        addrs.iter().take(MAX_ATTEMPTS).map(candidate).collect()
    };
    let mut schedule = Schedule {
        next: 0,
        next_at: None,
        last_error: Reply::HostUnreachable,
    };
    schedule.start_next(&mut candidates, now, config);
    (schedule, candidates)
}

impl Schedule {
    /// Starts the next candidate, if one is left, and sets the timer for
    /// the one after it.
    fn start_next(&mut self, candidates: &mut [Candidate], now: Instant, config: &Config) {
        let Some(c) = candidates.get_mut(usize::from(self.next)) else {
            self.next_at = None;
            return;
        };
        c.state = Try::Starting {
            deadline: now + config.connect_timeout,
        };
        // At most MAX_ATTEMPTS (255) candidates: `next` fits.
        self.next += 1;
        self.next_at = (usize::from(self.next) < candidates.len())
            .then(|| now + config.connection_attempt_delay);
    }

    /// After a failure: the reply for the request when no attempt is left,
    /// running or to come.
    fn exhausted(&self, candidates: &[Candidate]) -> Option<Reply> {
        let running = candidates
            .iter()
            .any(|c| matches!(c.state, Try::Starting { .. } | Try::Open { .. }));
        (usize::from(self.next) >= candidates.len() && !running).then_some(self.last_error)
    }

    /// Attempt `id` failed with `reply` as its reason. The next candidate
    /// starts at once. Returns the reply for the request when nothing is
    /// left to try.
    pub fn failed(
        &mut self,
        candidates: &mut [Candidate],
        now: Instant,
        id: AttemptId,
        reply: Reply,
        config: &Config,
    ) -> Option<Reply> {
        match candidates.get_mut(id.index()) {
            Some(c) if matches!(c.state, Try::Open { .. } | Try::Starting { .. }) => {
                c.state = Try::Over;
            }
            _ => return None,
        }
        self.last_error = reply;
        self.start_next(candidates, now, config);
        self.exhausted(candidates)
    }

    /// Attempts whose connect timeout passed are cancelled; the next
    /// candidate starts when one timed out or the Connection Attempt Delay
    /// has passed. Returns the reply for the request when nothing is left.
    pub fn handle_timeout(
        &mut self,
        candidates: &mut [Candidate],
        now: Instant,
        config: &Config,
    ) -> Option<Reply> {
        let mut expired = false;
        for c in candidates.iter_mut() {
            if let Try::Open { deadline } | Try::Starting { deadline } = c.state
                && now >= deadline
            {
                c.state = if matches!(c.state, Try::Open { .. }) {
                    Try::Cancelling
                } else {
                    Try::Over
                };
                expired = true;
            }
        }
        if expired {
            // As reply_for_error maps a timed out connect(2).
            self.last_error = Reply::HostUnreachable;
        }
        if expired || self.next_at.is_some_and(|t| now >= t) {
            self.start_next(candidates, now, config);
        }
        if expired {
            self.exhausted(candidates)
        } else {
            None
        }
    }

    /// The earliest moment an attempt times out or the next one starts.
    pub fn poll_timeout(&self, candidates: &[Candidate]) -> Option<Instant> {
        candidates
            .iter()
            .filter_map(|c| match c.state {
                Try::Starting { deadline } | Try::Open { deadline } => Some(deadline),
                Try::Waiting | Try::Cancelling | Try::Over => None,
            })
            .chain(self.next_at)
            .min()
    }
}

/// Attempt `id` connected. Returns false if it was not running (the event
/// is stale). RFC 8305 section 5: "Once one of the connection attempts
/// succeeds [...], all other connections attempts that have not yet
/// succeeded SHOULD be canceled. Any address that was not yet attempted as
/// a connection SHOULD be ignored."
pub fn connected(candidates: &mut [Candidate], id: AttemptId) -> bool {
    match candidates.get_mut(id.index()) {
        Some(c) if matches!(c.state, Try::Open { .. }) => c.state = Try::Over,
        _ => return false,
    }
    cancel_all(candidates);
    true
}

/// Every attempt still running is to be cancelled; none is to start.
pub fn cancel_all(candidates: &mut [Candidate]) {
    for c in candidates {
        c.state = match c.state {
            Try::Open { .. } => Try::Cancelling,
            Try::Starting { .. } | Try::Waiting => Try::Over,
            other => other,
        };
    }
}

/// The next socket the driver must open or close.
pub fn poll_action(candidates: &mut [Candidate]) -> Option<Action> {
    for (i, c) in candidates.iter_mut().enumerate() {
        // At most MAX_ATTEMPTS (255) candidates.
        let id = AttemptId(i as u8);
        match c.state {
            Try::Cancelling => {
                c.state = Try::Over;
                return Some(Action::Cancel(id));
            }
            Try::Starting { deadline } => {
                c.state = Try::Open { deadline };
                return Some(Action::Connect { id, addr: c.addr });
            }
            Try::Waiting | Try::Open { .. } | Try::Over => {}
        }
    }
    None
}

/// Whether the driver has nothing more to hear about these attempts.
pub fn is_settled(candidates: &[Candidate]) -> bool {
    !candidates
        .iter()
        .any(|c| matches!(c.state, Try::Cancelling | Try::Starting { .. }))
}
