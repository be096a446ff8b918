//! Blocking work off the event loops: name resolution (getaddrinfo) and
//! password checks (Argon2id), on threads of their own.
//!
//! getaddrinfo can block for seconds when a name server is slow, and an
//! Argon2id check takes tens of milliseconds by design: either would stall
//! every client of a worker, or every administrator. A worker or the
//! management thread asks with [`Pool::resolve`], [`Pool::verify`] or
//! [`Pool::check_admin`] and hands over what to do with the answer (send it
//! to its own inbox and wake its poll): the pool knows none of its callers.
//!
//! Password checks are what a client that has not authenticated can make
//! socks5d do, so they are bounded three ways:
//! - memory: a fixed number of checker threads, each with one
//!   [`CheckMemory`] reused for every check (never an allocation per check);
//! - queueing: checks wait per source ([`Source`]: an IPv4 address, an
//!   IPv6 /64, or a local peer's uid), at most [`CHECKS_PER_SOURCE`] each and [`MAX_QUEUED_CHECKS`]
//!   in all; past that the check is refused at once (the client gets a
//!   failed authentication) instead of waiting;
//! - fairness: checkers take sources in turn, so one source flooding delays
//!   another source's first log in by about one check, not by its backlog.
//!   Management log ins have lanes of their own, apart from SOCKS ones.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use crossbeam_channel::{Receiver, Sender};

use crate::users::file::CheckMemory;
use crate::users::penalty::Source;
use crate::users::{Credentials, Directory};

/// Checks one source may have waiting; more are refused at once.
pub const CHECKS_PER_SOURCE: usize = 8;
/// Checks that may wait in all.
pub const MAX_QUEUED_CHECKS: usize = 1024;

/// What a name resolves to, in the order to try, or why nothing.
pub type Resolved = io::Result<Vec<SocketAddr>>;
/// The user whose password was right, or `None`.
pub type Checked = Option<Arc<str>>;

/// Where an answer goes: the asker's own inbox, wake-up included.
pub type Answer<T> = Box<dyn FnOnce(T) + Send>;

/// Why work was not taken.
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

struct Resolve {
    host: String,
    port: u16,
    answer: Answer<Resolved>,
}

/// Which table entry may pass a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Any user (RFC 1929).
    User,
    /// Administrators only (management log in).
    Admin,
}

struct Check {
    creds: Credentials,
    who: Who,
    answer: Answer<Checked>,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("creds", &self.creds)
            .field("who", &self.who)
            .finish()
    }
}

/// A queue of checks: SOCKS and management log ins per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lane {
    Socks(Source),
    Mgmt(Option<Source>),
}

#[derive(Debug, Default)]
struct Lanes {
    waiting: HashMap<Lane, VecDeque<Check>>,
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
    fn push(&self, lane: Lane, check: Check) -> Result<(), Refused> {
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
        q.push_back(check);
        if q.len() == 1 {
            l.turn.push_back(lane);
        }
        l.queued += 1;
        drop(l);
        self.ready.notify_one();
        Ok(())
    }

    /// The next check, taking lanes in turn; `None` once closed.
    fn pop(&self) -> Option<Check> {
        let mut l = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(lane) = l.turn.pop_front() {
                // A lane is in `turn` exactly while it has waiting checks.
                let Some(check) = l.waiting.get_mut(&lane).and_then(VecDeque::pop_front) else {
                    l.waiting.remove(&lane);
                    continue;
                };
                if l.waiting.get(&lane).is_some_and(VecDeque::is_empty) {
                    l.waiting.remove(&lane);
                } else {
                    l.turn.push_back(lane);
                }
                l.queued -= 1;
                return Some(check);
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
#[derive(Clone)]
pub struct Pool {
    resolves: Sender<Resolve>,
    checks: Arc<Closer>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pool")
    }
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
        let (tx, rx) = crossbeam_channel::unbounded::<Resolve>();
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

    /// Resolves `host`, then calls `answer` on a resolver thread.
    pub fn resolve(
        &self,
        host: String,
        port: u16,
        answer: Answer<Resolved>,
    ) -> Result<(), Refused> {
        self.resolves
            .send(Resolve { host, port, answer })
            .map_err(|_| Refused::Gone)
    }

    /// Checks RFC 1929 credentials from `client`, then calls `answer` on a
    /// checker thread. Refused at once when the client's source (or the
    /// pool) has too many checks waiting.
    pub fn verify(
        &self,
        creds: Credentials,
        client: IpAddr,
        answer: Answer<Checked>,
    ) -> Result<(), Refused> {
        let check = Check {
            creds,
            who: Who::User,
            answer,
        };
        self.checks.0.push(Lane::Socks(Source::of(client)), check)
    }

    /// Checks a management log in from `peer` (administrators only), then
    /// calls `answer` on a checker thread; management log ins wait apart
    /// from SOCKS ones, in a lane per source.
    pub fn check_admin(
        &self,
        creds: Credentials,
        peer: Option<Source>,
        answer: Answer<Checked>,
    ) -> Result<(), Refused> {
        let check = Check {
            creds,
            who: Who::Admin,
            answer,
        };
        self.checks.0.push(Lane::Mgmt(peer), check)
    }
}

fn resolve_loop(rx: &Receiver<Resolve>, hosts: &HostMap) {
    while let Ok(Resolve { host, port, answer }) = rx.recv() {
        let result = match hosts.get(&host.to_ascii_lowercase()) {
            Some(ips) => Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()),
            None => lookup(&host, port),
        };
        answer(result);
    }
}

fn check_loop(queue: &CheckQueue, users: &Directory) {
    let mut memory = CheckMemory::new();
    while let Some(Check { creds, who, answer }) = queue.pop() {
        let table = users.snapshot();
        let (name, password) = (&creds.username, &creds.password);
        answer(match who {
            Who::User => table.verify_in(name, password, &mut memory),
            Who::Admin => table.check_admin_in(name, password, &mut memory),
        });
    }
}

/// Resolves `host` in getaddrinfo's order (RFC 6724), which is the order the
/// addresses are tried in. An empty answer is "not found".
pub fn lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(it) => it.collect(),
        Err(e) => {
            log::debug!(
                "name not resolved: host={} error={}",
                crate::logfmt::LogSafe(host),
                crate::logfmt::Quoted(&e)
            );
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

    fn check(id: u64, log: &Arc<Mutex<Vec<u64>>>) -> Check {
        let log = Arc::clone(log);
        Check {
            creds: Credentials {
                username: b"u".to_vec(),
                password: b"p".to_vec(),
            },
            who: Who::User,
            answer: Box::new(move |_| log.lock().unwrap().push(id)),
        }
    }

    fn lane(ip: &str) -> Lane {
        Lane::Socks(Source::of(ip.parse().unwrap()))
    }

    /// Sources take turns: a newcomer waits behind one check of a flooding
    /// source, not behind its backlog; a source's backlog is bounded.
    #[test]
    fn checks_are_served_per_source_in_turn_and_bounded() {
        let log = Arc::default();
        let q = CheckQueue::default();
        for id in 0..CHECKS_PER_SOURCE as u64 {
            q.push(lane("127.0.0.2"), check(id, &log)).unwrap();
        }
        assert_eq!(
            q.push(lane("127.0.0.2"), check(99, &log)),
            Err(Refused::Busy),
            "a ninth check from one source"
        );
        q.push(lane("127.0.0.3"), check(100, &log)).unwrap();
        // An IPv6 neighbour in the same /64 shares a lane.
        q.push(lane("2001:db8::1"), check(200, &log)).unwrap();
        q.push(lane("2001:db8::2"), check(201, &log)).unwrap();
        for _ in 0..5 {
            let c = q.pop().unwrap();
            (c.answer)(None);
        }
        assert_eq!(*log.lock().unwrap(), [0, 100, 200, 1, 201]);
        q.close();
        assert!(q.pop().is_none(), "closed");
    }

    /// Local peers queue per uid: one user's flood of log ins does not
    /// stand in front of another user's first one.
    #[test]
    fn local_users_have_lanes_of_their_own() {
        let log = Arc::default();
        let q = CheckQueue::default();
        let uid = |u| Lane::Mgmt(Some(Source::Uid(u)));
        for id in 0..CHECKS_PER_SOURCE as u64 {
            q.push(uid(1001), check(id, &log)).unwrap();
        }
        assert_eq!(q.push(uid(1001), check(99, &log)), Err(Refused::Busy));
        q.push(uid(1002), check(100, &log)).unwrap();
        for _ in 0..2 {
            (q.pop().unwrap().answer)(None);
        }
        assert_eq!(*log.lock().unwrap(), [0, 100]);
    }

    #[test]
    fn the_whole_queue_is_bounded() {
        let log = Arc::default();
        let q = CheckQueue::default();
        for i in 0..MAX_QUEUED_CHECKS as u32 {
            let ip = IpAddr::V4((0x0a00_0000 + i).into()).to_string();
            q.push(lane(&ip), check(0, &log)).unwrap();
        }
        assert_eq!(
            q.push(lane("192.0.2.1"), check(0, &log)),
            Err(Refused::Busy)
        );
    }

    /// The answer comes through the asker's own closure, from the pool's
    /// threads; a right and a wrong password, a name from the host map.
    #[test]
    fn answers_reach_the_asker() {
        let mut t = crate::users::UserTable::new();
        t.add(b"alice", b"pw", crate::users::Role::Proxy).unwrap();
        let mut hosts = HostMap::new();
        hosts.insert("example.test".into(), vec!["192.0.2.7".parse().unwrap()]);
        let pool = Pool::start(1, 1, Directory::new(t), hosts).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let creds = |p: &[u8]| Credentials {
            username: b"alice".to_vec(),
            password: p.to_vec(),
        };
        let ip = "127.0.0.1".parse().unwrap();
        let t1 = tx.clone();
        pool.verify(creds(b"pw"), ip, Box::new(move |u| t1.send(u).unwrap()))
            .unwrap();
        assert_eq!(rx.recv().unwrap().as_deref(), Some("alice"));
        let t2 = tx.clone();
        pool.verify(creds(b"no"), ip, Box::new(move |u| t2.send(u).unwrap()))
            .unwrap();
        assert_eq!(rx.recv().unwrap(), None);
        let t3 = tx.clone();
        pool.check_admin(creds(b"pw"), None, Box::new(move |u| t3.send(u).unwrap()))
            .unwrap();
        assert_eq!(rx.recv().unwrap(), None, "alice is no administrator");
        let (atx, arx) = crossbeam_channel::unbounded();
        pool.resolve(
            "Example.TEST".into(),
            443,
            Box::new(move |r| atx.send(r.unwrap()).unwrap()),
        )
        .unwrap();
        assert_eq!(arx.recv().unwrap(), ["192.0.2.7:443".parse().unwrap()]);
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
