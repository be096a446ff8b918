//! The tests' one support library, shared by the test crates of `tests/`,
//! the management suite (`tests/mgmt/`, run by `tests/sctp/` and
//! `tests/mgmt_unix.rs`) and the soak's traffic: the real binary
//! launched and waited for (`daemon`), one raw SOCKS5 client (`socks`), the
//! targets: TCP banner-and-echo and UDP echo (`echo`), METRICS over the
//! management Unix socket (`mgmt`), short-lived children with a deadline
//! (`child`), the environment scrubbed from every client the tests run
//! (`env`), /proc measurements (`proc`), a pseudo-terminal for a child
//! that draws on one (`pty`), the Prometheus endpoint's HTTP, samples
//! and `promtool` (`http`), a real Prometheus server (`prometheus`),
//! HAProxy in front of several instances (`haproxy`) and a Redis server
//! of the test's own (`redis`).

// Each crate that includes this module uses a different part of it (the
// re-exports included).
#![allow(dead_code, unused_imports)]

pub mod child;
pub mod daemon;
pub mod echo;
pub mod env;
pub mod haproxy;
pub mod http;
pub mod mgmt;
pub mod proc;
pub mod prometheus;
pub mod pty;
pub mod redis;
pub mod socks;

pub use self::redis::*;
pub use child::*;
pub use daemon::*;
pub use echo::*;
pub use env::*;
pub use haproxy::*;
pub use http::*;
pub use mgmt::*;
pub use proc::*;
pub use prometheus::*;
pub use pty::*;
pub use socks::*;
