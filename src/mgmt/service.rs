//! The management thread: the endpoint's SCTP socket in a `mio::Poll` of its
//! own, apart from the SOCKS workers.
//!
//! A worker that also served the endpoint answered a query only after the
//! batch of SOCKS events it was in; at full handshake load in the UML
//! harness that put METRICS p99 at several milliseconds. This thread sleeps
//! until a message or a blocking-pool answer arrives, so the scheduler runs
//! it as soon as it wakes, however busy the workers are.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::endpoint::{Endpoint, Reply, Shared};
use crate::sys::sctp::SctpSocket;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

/// The running management thread.
#[derive(Debug)]
pub struct Service {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl Service {
    /// Serves `sock` (listening, non-blocking) on a new thread.
    pub fn start(sock: SctpSocket, shared: Shared) -> io::Result<Service> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        poll.registry().register(
            &mut SourceFd(&sock.as_raw_fd()),
            SOCKET,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let (inbox_tx, inbox) = crossbeam_channel::unbounded();
        let endpoint = Endpoint::new(sock, shared, inbox_tx, Arc::clone(&waker));
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = thread::Builder::new().name("mgmt".into()).spawn(move || {
            if let Err(e) = run(poll, endpoint, &inbox, &stop2) {
                log::error!("management thread: event loop failed: {e}");
            }
        })?;
        Ok(Service {
            waker,
            stop,
            thread,
        })
    }

    /// Stops the thread and waits for it; open associations are closed with
    /// the socket.
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
    let mut events = Events::with_capacity(16);
    // Input left over from a turn whose budget ran out: no new edge comes.
    let mut again = false;
    loop {
        let timeout = if again {
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
        again |= events.iter().any(|ev| ev.token() == SOCKET);
        while let Ok(reply) = inbox.try_recv() {
            endpoint.on_reply(reply, now);
        }
        if again {
            again = endpoint.on_ready(now);
        }
        if endpoint.next_deadline().is_some_and(|d| d <= now) {
            endpoint.tick(now);
        }
    }
}
