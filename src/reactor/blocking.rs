//! Blocking work off the workers: name resolution (getaddrinfo) and slow
//! password checks (Argon2id), on a few threads.
//!
//! getaddrinfo can block for seconds when a name server is slow, and an
//! Argon2id check takes tens of milliseconds by design: either would stall
//! every client of a worker. A worker, or the management thread, sends a
//! [`Task`]; a pool thread answers on the asker's own channel and wakes its
//! poll.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;

use super::Inbound;
use crate::mgmt::endpoint::Reply;
use crate::socks5::session::{Authenticator, Credentials};
use crate::sys::sctp::AssocId;
use crate::users::Directory;

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
        /// The session's slab key.
        key: usize,
        /// The session's id.
        id: u64,
    },
    /// Check a management log in.
    CheckAdmin {
        /// The credentials.
        creds: Credentials,
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

/// Names answered from configuration before the system resolver is asked
/// (lower-case names; addresses in the order to try them).
pub type HostMap = HashMap<String, Vec<IpAddr>>;

/// The pool's handle: cloning it is cheap; the threads end when every handle
/// is dropped.
#[derive(Debug, Clone)]
pub struct Pool {
    tx: Sender<Task>,
}

impl Pool {
    /// Starts `threads` threads that read users from `users` and answer
    /// the names in `hosts` themselves.
    pub fn start(threads: usize, users: Arc<Directory>, hosts: HostMap) -> io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<Task>();
        let hosts = Arc::new(hosts);
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let users = Arc::clone(&users);
            let hosts = Arc::clone(&hosts);
            thread::Builder::new()
                .name(format!("blocking-{i}"))
                .spawn(move || serve(&rx, &users, &hosts))?;
        }
        Ok(Pool { tx })
    }

    /// Queues a task. Fails only when the pool is gone.
    pub fn submit(&self, t: Task) -> Result<(), Task> {
        self.tx.send(t).map_err(|e| e.into_inner())
    }
}

fn serve(rx: &Receiver<Task>, users: &Directory, hosts: &HostMap) {
    while let Ok(Task { job, reply, waker }) = rx.recv() {
        let answer = match job {
            Job::Resolve {
                host,
                port,
                key,
                id,
            } => {
                let result = match hosts.get(&host.to_ascii_lowercase()) {
                    Some(ips) => Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()),
                    None => lookup(&host, port),
                };
                Inbound::Resolved { key, id, result }
            }
            Job::Verify { creds, key, id } => {
                let user = users.snapshot().verify(&creds.username, &creds.password);
                Inbound::Verified { key, id, user }
            }
            Job::CheckAdmin { creds, assoc } => {
                let admin = users
                    .snapshot()
                    .check_admin(&creds.username, &creds.password);
                Inbound::Mgmt(Reply::LoginChecked { assoc, admin })
            }
        };
        // The worker may have stopped; then nobody wants the answer.
        if reply.send(answer).is_ok() {
            let _ = waker.wake();
        }
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
