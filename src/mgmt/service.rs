//! The management thread: the endpoint's sockets (SCTP and Unix-domain,
//! either or both) in a `mio::Poll` of their own, apart from the SOCKS
//! workers.
//!
//! A worker that also served the endpoint answered a query only after the
//! batch of SOCKS events it was in; at full handshake load in the UML
//! harness that put METRICS p99 at several milliseconds. This thread sleeps
//! until a message or a blocking-pool answer arrives, so the scheduler runs
//! it as soon as it wakes, however busy the workers are.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::{Events, Poll, Waker};

use super::endpoint::{Endpoint, Reply, Shared, WAKER_TOKEN};
use crate::logfmt::Quoted;
use crate::sys::sctp::SctpSocket;
use crate::sys::seqpacket::Listener;

/// The running management thread.
#[derive(Debug)]
pub struct Service {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl Service {
    /// Serves `sctp` and `unix` (listening, non-blocking; either may be
    /// absent) on a new thread.
    pub fn start(
        sctp: Option<SctpSocket>,
        unix: Option<Listener>,
        shared: Shared,
    ) -> io::Result<Service> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        let (inbox_tx, inbox) = crossbeam_channel::unbounded();
        let endpoint = Endpoint::new(
            sctp,
            unix,
            poll.registry().try_clone()?,
            shared,
            inbox_tx,
            Arc::clone(&waker),
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = thread::Builder::new().name("mgmt".into()).spawn(move || {
            if let Err(e) = run(poll, endpoint, &inbox, &stop2) {
                log::error!("management event loop failed: error={}", Quoted(e));
            }
        })?;
        Ok(Service {
            waker,
            stop,
            thread,
        })
    }

    /// Stops the thread and waits for it; open sessions are closed with the
    /// sockets, and the Unix socket's file is removed.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        let _ = self.thread.join();
    }
}

fn run(
    mut poll: Poll,
    mut endpoint: Endpoint,
    inbox: &Receiver<Reply>,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut events = Events::with_capacity(64);
    loop {
        // Input left over from a turn whose budget ran out: no new edge
        // comes for it.
        let timeout = if endpoint.has_input() {
            Some(Duration::ZERO)
        } else {
            endpoint
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if stop.load(Ordering::Acquire) {
            return Ok(());
        }
        let now = Instant::now();
        for ev in events.iter() {
            endpoint.on_event(ev.token());
        }
        while let Ok(reply) = inbox.try_recv() {
            endpoint.on_reply(reply, now);
        }
        if endpoint.has_input() {
            endpoint.on_ready(now);
        }
        if endpoint.next_deadline().is_some_and(|d| d <= now) {
            endpoint.tick(now);
        }
    }
}
