//! Connection attempts to a target's addresses, raced as RFC 8305 (Happy
//! Eyeballs version 2) describes: one attempt at a time, the next one after
//! the Connection Attempt Delay or as soon as the one before fails, earlier
//! attempts kept running, the first to connect wins.

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

#[derive(Debug)]
struct Candidate {
    addr: SocketAddr,
    state: Try,
}

/// The attempts of one CONNECT request.
#[derive(Debug)]
pub struct Attempts {
    /// In the order to try them; an attempt's id is its index.
    candidates: Vec<Candidate>,
    /// The first candidate not started yet.
    next: usize,
    /// When `next` starts if no attempt fails or connects before.
    next_at: Option<Instant>,
    /// What the client is told if no attempt connects: the reply for the
    /// latest failure.
    last_error: Reply,
}

/// RFC 8305 section 4: "the client SHOULD modify the ordered list to
/// interleave address families", starting with the family of the first
/// address ("First Address Family Count" of one). Each family keeps the
/// resolver's order (RFC 6724: IPv6 first where it works).
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

impl Attempts {
    /// Attempts to `addrs` (in the resolver's order, at least one), the
    /// first one starting now.
    pub fn start(now: Instant, addrs: &[SocketAddr], config: &Config) -> Self {
        let candidates = interleave(addrs)
            .into_iter()
            .map(|addr| Candidate {
                addr,
                state: Try::Waiting,
            })
            .collect();
        let mut a = Attempts {
            candidates,
            next: 0,
            next_at: None,
            last_error: Reply::HostUnreachable,
        };
        a.start_next(now, config);
        a
    }

    /// Starts the next candidate, if one is left, and sets the timer for
    /// the one after it.
    fn start_next(&mut self, now: Instant, config: &Config) {
        let Some(c) = self.candidates.get_mut(self.next) else {
            self.next_at = None;
            return;
        };
        c.state = Try::Starting {
            deadline: now + config.connect_timeout,
        };
        self.next += 1;
        self.next_at =
            (self.next < self.candidates.len()).then(|| now + config.connection_attempt_delay);
    }

    fn in_flight(&self) -> bool {
        self.candidates
            .iter()
            .any(|c| matches!(c.state, Try::Starting { .. } | Try::Open { .. }))
    }

    /// After a failure: the reply for the request when no attempt is left,
    /// running or to come.
    fn exhausted(&self) -> Option<Reply> {
        (self.next >= self.candidates.len() && !self.in_flight()).then_some(self.last_error)
    }

    /// Attempt `id` connected. Returns false if it was not running (the
    /// event is stale). RFC 8305 section 5: "Once one of the connection
    /// attempts succeeds [...], all other connections attempts that have
    /// not yet succeeded SHOULD be canceled. Any address that was not yet
    /// attempted as a connection SHOULD be ignored."
    pub fn connected(&mut self, id: AttemptId) -> bool {
        match self.candidates.get_mut(id.index()) {
            Some(c) if matches!(c.state, Try::Open { .. }) => c.state = Try::Over,
            _ => return false,
        }
        self.cancel_all();
        true
    }

    /// Attempt `id` failed with `reply` as its reason. The next candidate
    /// starts at once. Returns the reply for the request when nothing is
    /// left to try.
    pub fn failed(
        &mut self,
        now: Instant,
        id: AttemptId,
        reply: Reply,
        config: &Config,
    ) -> Option<Reply> {
        match self.candidates.get_mut(id.index()) {
            Some(c) if matches!(c.state, Try::Open { .. } | Try::Starting { .. }) => {
                c.state = Try::Over;
            }
            _ => return None,
        }
        self.last_error = reply;
        self.start_next(now, config);
        self.exhausted()
    }

    /// Attempts whose connect timeout passed are cancelled; the next
    /// candidate starts when one timed out or the Connection Attempt Delay
    /// has passed. Returns the reply for the request when nothing is left.
    pub fn handle_timeout(&mut self, now: Instant, config: &Config) -> Option<Reply> {
        let mut expired = false;
        for c in &mut self.candidates {
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
            self.start_next(now, config);
        }
        if expired { self.exhausted() } else { None }
    }

    /// Every attempt still running is cancelled and no other starts.
    pub fn cancel_all(&mut self) {
        for c in &mut self.candidates {
            c.state = match c.state {
                Try::Open { .. } => Try::Cancelling,
                Try::Starting { .. } => Try::Over,
                other => other,
            };
        }
        self.next = self.candidates.len();
        self.next_at = None;
    }

    /// The next socket the driver must open or close.
    pub fn poll_action(&mut self) -> Option<Action> {
        for (i, c) in self.candidates.iter_mut().enumerate() {
            // `interleave` keeps at most MAX_ATTEMPTS (255) candidates.
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
    pub fn is_settled(&self) -> bool {
        !self
            .candidates
            .iter()
            .any(|c| matches!(c.state, Try::Cancelling | Try::Starting { .. }))
    }

    /// The earliest moment an attempt times out or the next one starts.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.candidates
            .iter()
            .filter_map(|c| match c.state {
                Try::Starting { deadline } | Try::Open { deadline } => Some(deadline),
                Try::Waiting | Try::Cancelling | Try::Over => None,
            })
            .chain(self.next_at)
            .min()
    }
}
