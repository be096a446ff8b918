//! The worker event loops: one per CPU, each with its own `mio::Poll`,
//! listeners, sessions, buffers and timers.
//!
//! A byte from a client enters in [`worker`] (accept, readiness events), is
//! parsed by its [`crate::socks5::connection::Connection`] while the tunnel
//! is being set up, and afterwards moves through a [`pipe::Pipe`] to the
//! target socket. The connection machine decides; the worker does the I/O.
//! Workers share nothing on the hot path: the user table is read through a
//! per-worker cached snapshot, counts go to the aggregator as deltas, and names
//! are resolved and stored password hashes checked by the blocking pool
//! ([`crate::blocking`]).

pub mod arrivals;
pub mod limits;
pub mod pipe;
pub mod pool;
pub mod rate;
pub mod timer;
mod worker;

pub use worker::{Shared, Worker, WorkerHandle};

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::users::penalty::Cidr;

/// Messages to a worker from other threads (each followed by a wake-up).
#[derive(Debug)]
pub enum Inbound {
    /// A name lookup finished.
    Resolved {
        /// The session's slab key.
        key: usize,
        /// The session's id (the key may have been reused since).
        id: u64,
        /// The addresses in the order to try, or why there are none.
        result: io::Result<Vec<SocketAddr>>,
    },
    /// A name a UDP association's client sent to was resolved.
    UdpResolved {
        /// The session's slab key.
        key: usize,
        /// The session's id.
        id: u64,
        /// The name.
        host: String,
        /// Its addresses, or why there are none.
        result: io::Result<Vec<SocketAddr>>,
    },
    /// A slow RFC 1929 check finished.
    Verified {
        /// The session's slab key.
        key: usize,
        /// The session's id.
        id: u64,
        /// The user's name, or `None` when the credentials are wrong.
        user: Option<std::sync::Arc<str>>,
    },
}

/// Settings every worker shares.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// From accept to the reply to CONNECT.
    pub handshake_timeout: Duration,
    /// For each connection attempt to a target address.
    pub connect_timeout: Duration,
    /// RFC 8305's Connection Attempt Delay: how long one attempt to a
    /// name's address runs alone before the next address is tried too.
    pub connect_attempt_delay: Duration,
    /// Close a tunnel that moved no byte for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Bytes in each relay buffer.
    pub buffer_size: usize,
    /// Free buffers a worker keeps for reuse.
    pub pool_keep: usize,
    /// Whether to send an access record per connection.
    pub access_log: bool,
    /// How long open tunnels may finish after a stop is asked for.
    pub grace: Duration,
    /// The most client connections open at once in the whole server.
    pub max_connections: Option<usize>,
    /// How long a BIND waits for its inbound connection.
    pub bind_timeout: Duration,
    /// The most UDP associations open at once in the whole server.
    pub max_udp_associations: usize,
    /// The address UDP ASSOCIATE replies announce (`None`: the address the
    /// control connection reached).
    pub udp_public_addr: Option<std::net::IpAddr>,
    /// The most sessions (requests served at once) one user may have.
    pub max_sessions_per_user: Option<u32>,
    /// The most client connections one client address may have open.
    pub max_sessions_per_client: Option<u32>,
    /// The balancers (`--proxy-protocol-from`): a connection from one of
    /// these networks starts with a PROXY protocol header naming its client.
    pub proxy_protocol_from: Vec<Cidr>,
}

impl WorkerConfig {
    /// Whether a connection from `ip` comes from a balancer.
    pub fn is_balancer(&self, ip: std::net::IpAddr) -> bool {
        self.proxy_protocol_from.iter().any(|c| c.contains(ip))
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            connect_attempt_delay: Duration::from_millis(250),
            idle_timeout: None,
            buffer_size: 32 * 1024,
            pool_keep: 256,
            access_log: true,
            grace: Duration::from_secs(10),
            max_connections: None,
            bind_timeout: Duration::from_secs(120),
            max_udp_associations: 4096,
            udp_public_addr: None,
            max_sessions_per_user: None,
            max_sessions_per_client: None,
            proxy_protocol_from: Vec::new(),
        }
    }
}
