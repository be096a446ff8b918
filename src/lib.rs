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
//!                    ├─▶ reactor::blocking            (getaddrinfo, Argon2id off the workers)
//!                    └─▶ reactor::pipe::Pipe ──TCP──▶ target
//!                         counts ─▶ metrics (deltas ─▶ aggregator ─▶ totals, access log)
//!   users::Directory: one shared table, read through per-worker snapshots
//! ```
//!
//! `unsafe` code, where the kernel must be called below std and mio, lives in
//! [`sys`] only.

#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod cli;
pub mod metrics;
pub mod mgmt;
pub mod reactor;
pub mod server;
pub mod socks5;
#[allow(unsafe_code)]
pub mod sys;
pub mod users;
