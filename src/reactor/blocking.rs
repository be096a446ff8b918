//! Name resolution off the workers: a few threads around getaddrinfo(3).
//!
//! getaddrinfo blocks, for seconds when a name server is slow, so no worker
//! ever calls it. A worker sends a [`Query`]; a resolver thread answers on the
//! worker's own channel and wakes its poll.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;

use super::Inbound;

/// A name to resolve for one session of one worker.
#[derive(Debug)]
pub struct Query {
    /// The name (already known to be UTF-8 and not an IP literal).
    pub host: String,
    /// The port to put in every address.
    pub port: u16,
    /// The session's slab key in its worker.
    pub key: usize,
    /// The session's id, so that an answer for a closed session is dropped.
    pub id: u64,
    /// Where the answer goes.
    pub reply: Sender<Inbound>,
    /// Wakes the asking worker.
    pub waker: Arc<Waker>,
}

/// The pool's handle: cloning it is cheap; the threads end when every handle
/// is dropped.
#[derive(Debug, Clone)]
pub struct Resolver {
    tx: Sender<Query>,
}

impl Resolver {
    /// Starts `threads` resolver threads.
    pub fn start(threads: usize) -> io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<Query>();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            thread::Builder::new()
                .name(format!("resolver-{i}"))
                .spawn(move || serve(&rx))?;
        }
        Ok(Resolver { tx })
    }

    /// Queues a query. Fails only when the pool is gone.
    pub fn resolve(&self, q: Query) -> Result<(), Query> {
        self.tx.send(q).map_err(|e| e.into_inner())
    }
}

fn serve(rx: &Receiver<Query>) {
    while let Ok(q) = rx.recv() {
        let result = lookup(&q.host, q.port);
        // The worker may have stopped; then nobody wants the answer.
        if q.reply
            .send(Inbound::Resolved {
                key: q.key,
                id: q.id,
                result,
            })
            .is_ok()
        {
            let _ = q.waker.wake();
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
