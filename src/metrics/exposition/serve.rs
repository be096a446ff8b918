//! The metrics endpoint's event loop: one thread, one mio `Poll`, a
//! listener and at most `max_connections` connections, each with a request
//! buffer of at most [`http::MAX_REQUEST`] bytes and a deadline.
//!
//! A connection reads only while it has no response to send (a client that
//! does not read its answers is not read from either), answers one request
//! at a time in order, and is closed when it has not completed a request or
//! taken any of its response for `request_timeout`. A connection that ends
//! after its response has its sending side shut down and what it still
//! sends read and dropped for `linger`, so that the response is not lost to
//! a reset.

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::http::{self, Step};

/// The listener's token.
const LISTENER: Token = Token(usize::MAX - 1);
/// The waker's token (stop).
pub const WAKER: Token = Token(usize::MAX);

/// Requests one connection may have answered in one turn before the
/// others get theirs.
const TURN_BUDGET: usize = 16;

/// How the endpoint bounds its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most connections open at once; past it a new one gets 503.
    pub max_connections: usize,
    /// How long a connection may go without completing a request or
    /// taking any of its response.
    pub request_timeout: Duration,
    /// How long input is read and dropped after the last response.
    pub linger: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            request_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(2),
        }
    }
}

/// Makes the exposition, once per scrape.
pub type ScrapeFn = Box<dyn FnMut() -> Vec<u8> + Send>;

/// One client.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet answered; at most [`http::MAX_REQUEST`].
    input: Vec<u8>,
    /// The response being sent, and how much of it went.
    output: Vec<u8>,
    sent: usize,
    /// Close once `output` is sent.
    close_after: bool,
    /// Sending side shut: input is read and dropped until the end.
    lingering: bool,
    deadline: Instant,
}

/// What a connection needs after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Wait for readiness.
    Wait,
    /// Budget spent with work left: another turn without waiting.
    Again,
    /// Close it.
    Close,
}

/// The loop's state.
struct Endpoint {
    poll: Poll,
    listener: TcpListener,
    conns: Slab<Conn>,
    limits: Limits,
    scrape: ScrapeFn,
    /// Connections whose budget ran out, for the next turn.
    again: Vec<usize>,
}

/// Runs the endpoint until `stop` is set (and the waker woken).
pub fn run(
    poll: Poll,
    mut listener: TcpListener,
    scrape: ScrapeFn,
    limits: Limits,
    stop: &AtomicBool,
) -> io::Result<()> {
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut ep = Endpoint {
        poll,
        listener,
        conns: Slab::new(),
        limits,
        scrape,
        again: Vec::new(),
    };
    let mut events = Events::with_capacity(128);
    loop {
        let timeout = if ep.again.is_empty() {
            ep.conns
                .iter()
                .map(|(_, c)| c.deadline)
                .min()
                .map(|d| d.saturating_duration_since(Instant::now()))
        } else {
            Some(Duration::ZERO)
        };
        match ep.poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if stop.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut ready: Vec<usize> = std::mem::take(&mut ep.again);
        for ev in events.iter() {
            match ev.token() {
                LISTENER => ep.accept(),
                WAKER => {}
                Token(i) => ready.push(i),
            }
        }
        ready.sort_unstable();
        ready.dedup();
        let now = Instant::now();
        for i in ready {
            ep.turn(i, now);
        }
        ep.expire(Instant::now());
    }
}

impl Endpoint {
    fn accept(&mut self) {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors or the like: the backlog waits,
                    // and the next turn tries again.
                    log::warn!(
                        "metrics endpoint accept failed: error={}",
                        crate::logfmt::Quoted(e)
                    );
                    return;
                }
            };
            if self.conns.len() >= self.limits.max_connections {
                // Best effort, never waiting: a new socket takes a small write.
                let _ = stream.write(&http::busy());
                continue;
            }
            let _ = stream.set_nodelay(true);
            let entry = self.conns.vacant_entry();
            let token = Token(entry.key());
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!(
                    "metrics connection not registered: error={}",
                    crate::logfmt::Quoted(e)
                );
                continue;
            }
            entry.insert(Conn {
                stream,
                input: Vec::new(),
                output: Vec::new(),
                sent: 0,
                close_after: false,
                lingering: false,
                deadline: Instant::now() + self.limits.request_timeout,
            });
        }
    }

    fn turn(&mut self, i: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        match drive(conn, &mut self.scrape, &self.limits, now) {
            Next::Wait => {}
            Next::Again => self.again.push(i),
            Next::Close => self.close(i),
        }
    }

    fn close(&mut self, i: usize) {
        let mut c = self.conns.remove(i);
        let _ = self.poll.registry().deregister(&mut c.stream);
    }

    fn expire(&mut self, now: Instant) {
        let late: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(i, _)| i)
            .collect();
        for i in late {
            self.again.retain(|&a| a != i);
            self.close(i);
        }
    }
}

/// Sends, answers and reads on `c` until it would block, must close, or
/// has answered [`TURN_BUDGET`] requests.
fn drive(c: &mut Conn, scrape: &mut ScrapeFn, limits: &Limits, now: Instant) -> Next {
    let mut answered = 0;
    loop {
        if c.lingering {
            return discard(c);
        }
        while c.sent < c.output.len() {
            match c.stream.write(&c.output[c.sent..]) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    c.sent += n;
                    c.deadline = now + limits.request_timeout;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Wait,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        if !c.output.is_empty() {
            c.output = Vec::new();
            c.sent = 0;
            if c.close_after {
                let _ = c.stream.shutdown(Shutdown::Write);
                c.lingering = true;
                c.input = Vec::new();
                c.deadline = now + limits.linger;
                continue;
            }
            if answered >= TURN_BUDGET {
                return Next::Again;
            }
        }
        if let Step::Answer {
            len,
            response,
            close,
        } = http::step(&c.input, &mut **scrape)
        {
            c.input.drain(..len.min(c.input.len()));
            c.output = response;
            c.close_after = close;
            c.deadline = now + limits.request_timeout;
            answered += 1;
            continue;
        }
        // `step` asks for more only below the limit.
        let room = http::MAX_REQUEST.saturating_sub(c.input.len()).max(1);
        let mut chunk = [0u8; 4096];
        let want = room.min(chunk.len());
        match c.stream.read(&mut chunk[..want]) {
            Ok(0) => return Next::Close,
            Ok(n) => c.input.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Wait,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
}

/// Bytes a closing connection may have read and dropped in one turn.
const DISCARD_BUDGET: usize = 64 * 1024;

/// Reads and drops what a closing connection still sends, until its end.
fn discard(c: &mut Conn) -> Next {
    let mut sink = [0u8; 4096];
    let mut dropped = 0;
    loop {
        if dropped >= DISCARD_BUDGET {
            return Next::Again;
        }
        match c.stream.read(&mut sink) {
            Ok(0) => return Next::Close,
            Ok(n) => dropped += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Wait,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
}

/// Creates the poll and waker of a new endpoint.
pub fn poll_and_waker() -> io::Result<(Poll, Arc<Waker>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    Ok((poll, waker))
}
