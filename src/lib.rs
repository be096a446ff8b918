//! socks5d: a SOCKS version 5 proxy (RFC 1928, RFC 1929) for many
//! connections on small hosts.
//!
//! # Layers, and how a byte flows
//!
//! ```text
//!   client ──TCP──▶ reactor::worker (one mio::Poll per pinned CPU)
//!                    │  accept, readiness, timers, buffer pool: the I/O
//!                    ├─▶ socks5::connection::Connection (no I/O: events in, actions out;
//!                    │     │  greeting ... resolution, Happy Eyeballs, relay, linger, close)
//!                    │     └─ socks5::wire            (RFC 1928/1929 parse/emit)
//!                    ├─▶ blocking                     (getaddrinfo, Argon2id off the event loops)
//!                    └─▶ reactor::pipe::Pipe ──TCP──▶ target
//!                         counts ─▶ metrics (deltas ─▶ aggregator ─▶ totals, access log)
//!   users::Directory: one shared table, read through per-worker snapshots
//! ```
//!
//! Each layer uses only those below it, and no module imports one that
//! imports it back (tests/layers.rs reads the sources and checks both):
//!
//! ```text
//!   cli, server        command line, putting it together
//!   reactor | mgmt     SOCKS workers | management endpoint: neither knows the other
//!   blocking           resolution and password checks; answers through the
//!                      asker's own closure, so it knows none of its callers
//!   metrics            counters, aggregator, access log
//!   socks5             RFC 1928/1929 wire format, a connection's state machine, no I/O
//!   users | rules      user table, credentials, users file and its writer, penalties |
//!                      access rules: parser and compiled matcher, no I/O
//!   sys                the kernel below std and mio
//!   logfmt             how log lines write their values, for all of the above
//! ```
//!
//! `unsafe` code, where the kernel must be called below std and mio, lives in
//! [`sys`] only.

#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod blocking;
pub mod cli;
pub mod config_file;
pub mod logfmt;
pub mod metrics;
pub mod mgmt;
pub mod reactor;
pub mod rules;
pub mod server;
pub mod socks5;
#[allow(unsafe_code)]
pub mod sys;
pub mod users;
