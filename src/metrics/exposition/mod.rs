//! The Prometheus endpoint (`--metrics-listen`): `GET /metrics` over plain
//! HTTP/1.1 on a thread of its own, in the text exposition format.
//!
//! A scrape reads what every reader of the counters reads (the totals, the
//! per-user counters, the histograms and the workers' last reports), the
//! user table, and /proc/self for the `process_*` metrics. It never talks
//! to a worker: a slow or hostile client of this endpoint costs the workers
//! nothing.
//!
//! - [`text`]: the format (names, labels and their escaping, floats);
//! - [`render`]: what a scrape shows, and which users get series of their
//!   own (at most `--metrics-max-users`; the rest are summed into
//!   `user="other"`);
//! - [`process`]: CPU, memory, descriptors and start time from /proc;
//! - [`http`]: requests in, responses out, without I/O;
//! - [`serve`]: the mio loop with its connection limit and timeouts.

pub mod http;
pub mod process;
pub mod render;
pub mod serve;
pub mod text;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use mio::Waker;

pub use render::{OTHER, Scrape, UserRows, UserSeries};
pub use serve::Limits;

use super::{Totals, WorkerGauges};
use crate::users::Directory;

/// Everything a scrape reads.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The counters' totals.
    pub totals: Arc<Totals>,
    /// The user table (its users without counters show zeros).
    pub users: Arc<Directory>,
    /// How many workers run: one that has not reported yet shows zeros.
    pub workers: usize,
}

impl Sources {
    /// What a scrape shows now.
    pub fn gather(&self) -> Scrape {
        Scrape {
            totals: self.totals.snapshot(),
            users: self.totals.users(),
            table: self.users.snapshot(),
            handshake: self.totals.handshake_seconds(),
            connect: self.totals.connect_seconds(),
            workers: {
                let mut w = self.totals.workers();
                if w.len() < self.workers {
                    w.resize(self.workers, WorkerGauges::default());
                }
                w
            },
            process: process::read()
                .inspect_err(|e| {
                    log::debug!(
                        "process figures not read: path=/proc/self error={}",
                        crate::logfmt::Quoted(e)
                    );
                })
                .ok(),
        }
    }
}

/// The running endpoint.
#[derive(Debug)]
pub struct Service {
    addr: SocketAddr,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl Service {
    /// Serves `listener` (bound, listening) on a new thread: at most
    /// `max_users` users with series of their own.
    pub fn start(
        listener: std::net::TcpListener,
        sources: Sources,
        max_users: usize,
        limits: Limits,
    ) -> io::Result<Service> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let listener = mio::net::TcpListener::from_std(listener);
        let (poll, waker) = serve::poll_and_waker()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let mut series = UserSeries::new(max_users);
        let scrape: serve::ScrapeFn =
            Box::new(move || render::render(&sources.gather(), &mut series));
        let thread = thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                if let Err(e) = serve::run(poll, listener, scrape, limits, &stop2) {
                    log::error!(
                        "metrics endpoint event loop failed: error={}",
                        crate::logfmt::Quoted(e)
                    );
                }
            })?;
        Ok(Service {
            addr,
            waker,
            stop,
            thread,
        })
    }

    /// The address served (an ephemeral port filled in).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the thread and waits for it; open connections are closed.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        let _ = self.thread.join();
    }
}
