//! Blocking work off the workers: name resolution (getaddrinfo) and slow
//! password checks (Argon2id), on threads of their own.
//!
//! getaddrinfo can block for seconds when a name server is slow, and an
//! Argon2id check takes tens of milliseconds by design: either would stall
//! every client of a worker. A worker, or the management thread, sends a
//! [`Task`]; a pool thread answers on the asker's own channel and wakes its
//! poll.
//!
//! Password checks are what a client that has not authenticated can make
//! socks5d do, so they are bounded three ways:
//! - memory: a fixed number of checker threads, each with one
//!   [`CheckMemory`] reused for every check (never an allocation per check);
//! - queueing: checks wait per source ([`Source`]: an IPv4 address or an
//!   IPv6 /64), at most [`CHECKS_PER_SOURCE`] each and [`MAX_QUEUED_CHECKS`]
//!   in all; past that the check is refused at once (the client gets a
//!   failed authentication) instead of waiting;
//! - fairness: checkers take sources in turn, so one source flooding delays
//!   another source's first log in by about one check, not by its backlog.
//!   Management log ins have lanes of their own, apart from SOCKS ones.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;

use super::Inbound;
use crate::mgmt::endpoint::Reply;
use crate::socks5::session::Credentials;
use crate::sys::sctp::AssocId;
use crate::users::Directory;
use crate::users::file::CheckMemory;
use crate::users::penalty::Source;

/// Checks one source may have waiting; more are refused at once.
pub const CHECKS_PER_SOURCE: usize = 8;
/// Checks that may wait in all.
pub const MAX_QUEUED_CHECKS: usize = 1024;

/// Work for the pool.
#[derive(Debug)]
pub enum Job {
    /// Resolve a name for a session.
    Resolve {
        /// The name (already known to be UTF-8 and not an IP literal).
        host: String,
        /// The port to put in every address.
        port: u16,
        /// The session's slab key in its worker.
        key: usize,
        /// The session's id, so that an answer for a closed session is dropped.
        id: u64,
    },
    /// Check RFC 1929 credentials for a session.
    Verify {
        /// The credentials.
        creds: Credentials,
        /// The client's address.
        client: IpAddr,
        /// The session's slab key.
        key: usize,
        /// The session's id.
        id: u64,
    },
    /// Check a management log in.
    CheckAdmin {
        /// The credentials.
        creds: Credentials,
        /// The peer's address, when known.
        peer: Option<IpAddr>,
        /// The association.
        assoc: AssocId,
    },
}

/// A job and where its answer goes.
#[derive(Debug)]
pub struct Task {
    /// The work.
    pub job: Job,
    /// The asker's inbox (a worker's or the management thread's).
    pub reply: Sender<Inbound>,
    /// Wakes the asker.
    pub waker: Arc<Waker>,
}

/// Why a task was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The pool has stopped.
    Gone,
    /// The source has [`CHECKS_PER_SOURCE`] checks waiting, or the pool
    /// [`MAX_QUEUED_CHECKS`]: answer the check as failed.
    Busy,
}

/// Names answered from configuration before the system resolver is asked
/// (lower-case names; addresses in the order to try them).
pub type HostMap = HashMap<String, Vec<IpAddr>>;

/// A queue of checks: SOCKS and management log ins per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lane {
    Socks(Source),
    Mgmt(Option<Source>),
}

#[derive(Debug, Default)]
struct Lanes {
    waiting: HashMap<Lane, VecDeque<Task>>,
    /// Lanes with waiting checks, in the order they are served.
    turn: VecDeque<Lane>,
    queued: usize,
    closed: bool,
}

#[derive(Debug, Default)]
struct CheckQueue {
    lanes: Mutex<Lanes>,
    ready: Condvar,
}

impl CheckQueue {
    fn push(&self, lane: Lane, task: Task) -> Result<(), Refused> {
        let mut l = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if l.closed {
            return Err(Refused::Gone);
        }
        if l.queued >= MAX_QUEUED_CHECKS {
            return Err(Refused::Busy);
        }
        let q = l.waiting.entry(lane).or_default();
        if q.len() >= CHECKS_PER_SOURCE {
            return Err(Refused::Busy);
        }
        q.push_back(task);
        if q.len() == 1 {
            l.turn.push_back(lane);
        }
        l.queued += 1;
        drop(l);
        self.ready.notify_one();
        Ok(())
    }

    /// The next check, taking lanes in turn; `None` once closed.
    fn pop(&self) -> Option<Task> {
        let mut l = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(lane) = l.turn.pop_front() {
                // A lane is in `turn` exactly while it has waiting checks.
                let Some(task) = l.waiting.get_mut(&lane).and_then(VecDeque::pop_front) else {
                    l.waiting.remove(&lane);
                    continue;
                };
                if l.waiting.get(&lane).is_some_and(VecDeque::is_empty) {
                    l.waiting.remove(&lane);
                } else {
                    l.turn.push_back(lane);
                }
                l.queued -= 1;
                return Some(task);
            }
            if l.closed {
                return None;
            }
            l = self.ready.wait(l).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn close(&self) {
        let mut l = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        l.closed = true;
        l.waiting.clear();
        l.turn.clear();
        l.queued = 0;
        drop(l);
        self.ready.notify_all();
    }
}

/// Closes the check queue when the last pool handle goes.
#[derive(Debug)]
struct Closer(Arc<CheckQueue>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The pool's handle: cloning it is cheap; the threads end when every handle
/// is dropped.
#[derive(Debug, Clone)]
pub struct Pool {
    resolves: Sender<Task>,
    checks: Arc<Closer>,
}

impl Pool {
    /// Starts `resolvers` threads that answer the names in `hosts`
    /// themselves or ask the system, and `checkers` threads that check
    /// passwords against `users`.
    pub fn start(
        resolvers: usize,
        checkers: usize,
        users: Arc<Directory>,
        hosts: HostMap,
    ) -> io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<Task>();
        let hosts = Arc::new(hosts);
        for i in 0..resolvers.max(1) {
            let rx = rx.clone();
            let hosts = Arc::clone(&hosts);
            thread::Builder::new()
                .name(format!("resolver-{i}"))
                .spawn(move || resolve_loop(&rx, &hosts))?;
        }
        let queue = Arc::new(CheckQueue::default());
        for i in 0..checkers.max(1) {
            let queue = Arc::clone(&queue);
            let users = Arc::clone(&users);
            thread::Builder::new()
                .name(format!("checker-{i}"))
                .spawn(move || check_loop(&queue, &users))?;
        }
        Ok(Pool {
            resolves: tx,
            checks: Arc::new(Closer(queue)),
        })
    }

    /// Queues a task. A check may be refused when its source or the pool
    /// has too many waiting.
    pub fn submit(&self, t: Task) -> Result<(), Refused> {
        let lane = match &t.job {
            Job::Resolve { .. } => {
                return self.resolves.send(t).map_err(|_| Refused::Gone);
            }
            Job::Verify { client, .. } => Lane::Socks(Source::of(*client)),
            Job::CheckAdmin { peer, .. } => Lane::Mgmt(peer.map(Source::of)),
        };
        self.checks.0.push(lane, t)
    }
}

fn answer(reply: &Sender<Inbound>, waker: &Waker, answer: Inbound) {
    // The asker may have stopped; then nobody wants the answer.
    if reply.send(answer).is_ok() {
        let _ = waker.wake();
    }
}

fn resolve_loop(rx: &Receiver<Task>, hosts: &HostMap) {
    while let Ok(Task { job, reply, waker }) = rx.recv() {
        if let Job::Resolve {
            host,
            port,
            key,
            id,
        } = job
        {
            let result = match hosts.get(&host.to_ascii_lowercase()) {
                Some(ips) => Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()),
                None => lookup(&host, port),
            };
            answer(&reply, &waker, Inbound::Resolved { key, id, result });
        }
    }
}

fn check_loop(queue: &CheckQueue, users: &Directory) {
    let mut memory = CheckMemory::new();
    while let Some(Task { job, reply, waker }) = queue.pop() {
        let a = match job {
            Job::Verify { creds, key, id, .. } => {
                let user =
                    users
                        .snapshot()
                        .verify_in(&creds.username, &creds.password, &mut memory);
                Inbound::Verified { key, id, user }
            }
            Job::CheckAdmin { creds, assoc, .. } => {
                let admin =
                    users
                        .snapshot()
                        .check_admin_in(&creds.username, &creds.password, &mut memory);
                Inbound::Mgmt(Reply::LoginChecked { assoc, admin })
            }
            // Never queued here.
            Job::Resolve { .. } => continue,
        };
        answer(&reply, &waker, a);
    }
}

/// Resolves `host` in getaddrinfo's order (RFC 6724), which is the order the
/// addresses are tried in. An empty answer is "not found".
pub fn lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(it) => it.collect(),
        Err(e) => {
            log::debug!("resolving {host:?}: {e}");
            return Err(io::Error::new(io::ErrorKind::NotFound, e.to_string()));
        }
    };
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "name has no address",
        ));
    }
    let mut seen = Vec::with_capacity(addrs.len());
    for a in addrs {
        if !seen.contains(&a) {
            seen.push(a);
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_from(client: &str, id: u64, waker: &Arc<Waker>, tx: &Sender<Inbound>) -> Task {
        Task {
            job: Job::Verify {
                creds: Credentials {
                    username: b"u".to_vec(),
                    password: b"p".to_vec(),
                },
                client: client.parse().unwrap(),
                key: 0,
                id,
            },
            reply: tx.clone(),
            waker: Arc::clone(waker),
        }
    }

    fn id_of(t: &Task) -> u64 {
        match t.job {
            Job::Verify { id, .. } => id,
            _ => unreachable!("only checks are queued here"),
        }
    }

    /// Sources take turns: a newcomer waits behind one check of a flooding
    /// source, not behind its backlog; a source's backlog is bounded.
    #[test]
    fn checks_are_served_per_source_in_turn_and_bounded() {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (tx, _rx) = crossbeam_channel::unbounded();
        let q = CheckQueue::default();
        let lane = |ip: &str| Lane::Socks(Source::of(ip.parse().unwrap()));
        for id in 0..CHECKS_PER_SOURCE as u64 {
            q.push(lane("127.0.0.2"), check_from("127.0.0.2", id, &waker, &tx))
                .unwrap();
        }
        assert_eq!(
            q.push(lane("127.0.0.2"), check_from("127.0.0.2", 99, &waker, &tx)),
            Err(Refused::Busy),
            "a ninth check from one source"
        );
        q.push(lane("127.0.0.3"), check_from("127.0.0.3", 100, &waker, &tx))
            .unwrap();
        // An IPv6 neighbour in the same /64 shares a lane.
        q.push(
            lane("2001:db8::1"),
            check_from("2001:db8::1", 200, &waker, &tx),
        )
        .unwrap();
        q.push(
            lane("2001:db8::2"),
            check_from("2001:db8::2", 201, &waker, &tx),
        )
        .unwrap();
        let order: Vec<u64> = (0..5).map(|_| id_of(&q.pop().unwrap())).collect();
        assert_eq!(order, [0, 100, 200, 1, 201]);
        q.close();
        assert!(q.pop().is_none(), "closed");
    }

    #[test]
    fn the_whole_queue_is_bounded() {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (tx, _rx) = crossbeam_channel::unbounded();
        let q = CheckQueue::default();
        for i in 0..MAX_QUEUED_CHECKS as u32 {
            let ip = IpAddr::V4((0x0a00_0000 + i).into()).to_string();
            let lane = Lane::Socks(Source::of(ip.parse().unwrap()));
            q.push(lane, check_from(&ip, 0, &waker, &tx)).unwrap();
        }
        let lane = Lane::Socks(Source::of("192.0.2.1".parse().unwrap()));
        assert_eq!(
            q.push(lane, check_from("192.0.2.1", 0, &waker, &tx)),
            Err(Refused::Busy)
        );
    }

    #[test]
    fn localhost_has_loopback_addresses() {
        let addrs = lookup("localhost", 80).unwrap();
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80),
            "{addrs:?}"
        );
    }

    #[test]
    fn unknown_name_is_not_found() {
        let err = lookup("no-such-host.invalid", 80).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
