//! Counting: per-worker counters, deltas over a channel, one aggregator.
//!
//! A worker adds to its own [`Counters`] with plain arithmetic and sends them
//! as a delta to the aggregator thread every 20 ms while it is busy, and at
//! most 40 ms after it goes quiet. The aggregator is the only writer of the
//! [`Totals`]; anyone may read them. A query made after 100 ms without new
//! traffic therefore sees exact values.
//!
//! One count skips the aggregator: management associations aborted before
//! they logged in are seen by the management thread alone, which adds them
//! to [`Totals`] itself ([`Totals::add_mgmt_aborted`]). Each atomic still
//! has a single writer, and METRICS, answered on that same thread, sees the
//! count at once instead of one channel hop later.

mod access;
pub mod exposition;
pub mod quiet;
mod users;

pub use access::{AccessRecord, Datagrams, Result as AccessResult, civil_from_days, write_rfc3339};
pub use users::{
    BOUNDS, Histogram, HistogramSnapshot, UserCounters, UserDelta, UserFilter, WorkerGauges,
};

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::users::redis_sync::StoreHealth;

/// One worker's counts since its last report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// SOCKS client connections accepted.
    pub accepted: u64,
    /// SOCKS client connections closed.
    pub closed: u64,
    /// Payload bytes written to targets.
    pub bytes_up: u64,
    /// Payload bytes written to clients.
    pub bytes_down: u64,
    /// RFC 1929 authentications that failed.
    pub auth_failed: u64,
    /// Requests answered with a reply other than succeeded.
    pub connect_failed: u64,
    /// Clients closed at once because --max-connections was reached.
    pub refused: u64,
    /// Authentications refused unchecked while their source was penalised.
    pub auth_penalised: u64,
    /// Per-source penalties started.
    pub penalties: u64,
    /// Password checks refused because their source (or the server) had
    /// too many waiting.
    pub checks_refused: u64,
    /// Handshakes nobody had logged in on, closed to make room for new
    /// clients when accept(2) ran out of descriptors.
    pub evicted: u64,
    /// UDP associations opened.
    pub udp_associations: u64,
    /// UDP datagrams relayed, both directions.
    pub udp_datagrams: u64,
    /// UDP datagrams dropped (fragmented, malformed, from an unexpected source, unresolved, or over a limit).
    pub udp_dropped: u64,
    /// BIND requests accepted (first reply sent).
    pub binds: u64,
    /// Requests denied by the access rules.
    pub denied: u64,
    /// Clients closed at accept (--max-sessions-per-client) or requests
    /// refused (--max-sessions-per-user) for a session limit.
    pub session_limit: u64,
    /// Connections closed for a PROXY header: one from a peer not in
    /// --proxy-protocol-from, or none or a malformed one from a peer in it.
    pub proxy_refused: u64,
    /// Accept to reply, for answered requests.
    pub handshake: Histogram,
    /// Request to target connected.
    pub connect: Histogram,
}

impl Counters {
    /// Whether nothing was counted.
    pub fn is_zero(&self) -> bool {
        *self == Counters::default()
    }
}

/// What workers send to the aggregator.
pub enum Report {
    /// Counts to add to the totals (boxed: histograms make them large).
    Delta(Box<Counters>),
    /// Per-user counts to add.
    Users(Vec<(Arc<str>, UserDelta)>),
    /// A worker's gauges now (its number, them).
    Worker(usize, WorkerGauges),
    /// A closed connection, for the access log.
    Access(Box<AccessRecord>),
    /// Write the access log here from now on (log rotation).
    Reopen(Box<dyn Write + Send>),
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Report::Delta(d) => f.debug_tuple("Delta").field(d).finish(),
            Report::Users(u) => f.debug_tuple("Users").field(&u.len()).finish(),
            Report::Worker(i, g) => f.debug_tuple("Worker").field(i).field(g).finish(),
            Report::Access(r) => f.debug_tuple("Access").field(r).finish(),
            Report::Reopen(_) => f.write_str("Reopen"),
        }
    }
}

/// The server's totals since start. Written only by the aggregator, except
/// `mgmt_aborted`, written only by the management thread, and the users
/// store's two, written only by the users' subscriber (`--users-redis`).
#[derive(Debug)]
pub struct Totals {
    started: Instant,
    accepted: AtomicU64,
    closed: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    auth_failed: AtomicU64,
    connect_failed: AtomicU64,
    refused: AtomicU64,
    auth_penalised: AtomicU64,
    penalties: AtomicU64,
    checks_refused: AtomicU64,
    /// Written by the aggregator itself, not from deltas.
    log_suppressed: AtomicU64,
    evicted: AtomicU64,
    udp_associations: AtomicU64,
    udp_datagrams: AtomicU64,
    udp_dropped: AtomicU64,
    binds: AtomicU64,
    denied: AtomicU64,
    session_limit: AtomicU64,
    proxy_refused: AtomicU64,
    mgmt_aborted: AtomicU64,
    /// Set by the users' subscriber (`--users-redis`).
    users_store: Arc<StoreHealth>,
    /// Per user, histograms, per worker.
    extra: users::Extra,
}

/// A copy of the totals at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// SOCKS client connections accepted since start.
    pub historic: u64,
    /// SOCKS client connections open now, in any phase.
    pub concurrent: u64,
    /// Payload bytes relayed client to target.
    pub bytes_up: u64,
    /// Payload bytes relayed target to client.
    pub bytes_down: u64,
    /// Failed SOCKS authentications.
    pub auth_failed: u64,
    /// Requests answered with a reply other than succeeded.
    pub connect_failed: u64,
    /// Clients closed at once because --max-connections was reached.
    pub refused: u64,
    /// Authentications refused unchecked while their source was penalised.
    pub auth_penalised: u64,
    /// Per-source penalties started.
    pub penalties: u64,
    /// Password checks refused because too many were waiting.
    pub checks_refused: u64,
    /// Access-log lines of failed handshakes left out and summarised.
    pub log_suppressed: u64,
    /// Handshakes nobody had logged in on, closed to make room for new
    /// clients at the descriptor limit.
    pub evicted: u64,
    /// UDP associations opened.
    pub udp_associations: u64,
    /// UDP datagrams relayed, both directions.
    pub udp_datagrams: u64,
    /// UDP datagrams dropped (fragmented, malformed, from an unexpected source, unresolved, or over a limit).
    pub udp_dropped: u64,
    /// BIND requests accepted (first reply sent).
    pub binds: u64,
    /// Requests denied by the access rules.
    pub denied: u64,
    /// Clients or requests refused for a session limit.
    pub session_limit: u64,
    /// Connections closed for a PROXY header (see [`Counters`]).
    pub proxy_refused: u64,
    /// Seconds since the server started.
    pub uptime_secs: u64,
    /// Management associations aborted before logging in (log-in grace
    /// time over, or pushed out by newer ones past
    /// --max-mgmt-unauthenticated).
    pub mgmt_aborted: u64,
    /// 1 while the user table is stale (its Redis store unreachable, the
    /// last table held in use), 0 otherwise.
    pub users_store_stale: u64,
    /// Times the connection to the Redis user store was lost.
    pub users_store_lost: u64,
}

impl Snapshot {
    /// Payload bytes relayed in both directions together.
    pub fn bytes(&self) -> u64 {
        self.bytes_up.wrapping_add(self.bytes_down)
    }
}

impl Totals {
    fn new() -> Self {
        Totals {
            started: Instant::now(),
            accepted: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            auth_failed: AtomicU64::new(0),
            connect_failed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            auth_penalised: AtomicU64::new(0),
            penalties: AtomicU64::new(0),
            checks_refused: AtomicU64::new(0),
            log_suppressed: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            udp_associations: AtomicU64::new(0),
            udp_datagrams: AtomicU64::new(0),
            udp_dropped: AtomicU64::new(0),
            binds: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            session_limit: AtomicU64::new(0),
            proxy_refused: AtomicU64::new(0),
            extra: users::Extra::default(),
            mgmt_aborted: AtomicU64::new(0),
            users_store: Arc::default(),
        }
    }

    fn add(&self, d: &Counters) {
        // Only the aggregator writes, so Relaxed adds never race each other.
        self.accepted.fetch_add(d.accepted, Ordering::Relaxed);
        self.closed.fetch_add(d.closed, Ordering::Relaxed);
        self.bytes_up.fetch_add(d.bytes_up, Ordering::Relaxed);
        self.bytes_down.fetch_add(d.bytes_down, Ordering::Relaxed);
        self.auth_failed.fetch_add(d.auth_failed, Ordering::Relaxed);
        self.connect_failed
            .fetch_add(d.connect_failed, Ordering::Relaxed);
        self.refused.fetch_add(d.refused, Ordering::Relaxed);
        self.auth_penalised
            .fetch_add(d.auth_penalised, Ordering::Relaxed);
        self.penalties.fetch_add(d.penalties, Ordering::Relaxed);
        self.checks_refused
            .fetch_add(d.checks_refused, Ordering::Relaxed);
        self.evicted.fetch_add(d.evicted, Ordering::Relaxed);
        self.udp_associations
            .fetch_add(d.udp_associations, Ordering::Relaxed);
        self.udp_datagrams
            .fetch_add(d.udp_datagrams, Ordering::Relaxed);
        self.udp_dropped.fetch_add(d.udp_dropped, Ordering::Relaxed);
        self.binds.fetch_add(d.binds, Ordering::Relaxed);
        self.denied.fetch_add(d.denied, Ordering::Relaxed);
        self.session_limit
            .fetch_add(d.session_limit, Ordering::Relaxed);
        self.proxy_refused
            .fetch_add(d.proxy_refused, Ordering::Relaxed);
        self.extra.add_histograms(&d.handshake, &d.connect);
    }

    /// Every user with counters, sorted by name.
    pub fn users(&self) -> Vec<(Arc<str>, UserCounters)> {
        self.extra.users()
    }

    /// One user's counters, if it has any yet.
    pub fn user(&self, name: &str) -> Option<UserCounters> {
        self.extra.user(name)
    }

    /// Accept to reply, for every answered request.
    pub fn handshake_seconds(&self) -> HistogramSnapshot {
        self.extra.handshake_seconds()
    }

    /// Request to target connected.
    pub fn connect_seconds(&self) -> HistogramSnapshot {
        self.extra.connect_seconds()
    }

    /// Every worker's gauges, by worker number.
    pub fn workers(&self) -> Vec<WorkerGauges> {
        self.extra.workers()
    }

    /// Tells which names are users, so that deleted users' counters go.
    pub fn set_user_filter(&self, f: UserFilter) {
        self.extra.set_user_filter(f);
    }

    /// Counts `n` management associations aborted before they logged in.
    /// Called by the management thread only, the one writer of this count.
    pub fn add_mgmt_aborted(&self, n: u64) {
        self.mgmt_aborted.fetch_add(n, Ordering::Relaxed);
    }

    /// How the Redis user store fares, for its subscriber to set.
    pub fn users_store(&self) -> &Arc<StoreHealth> {
        &self.users_store
    }

    /// The totals now.
    pub fn snapshot(&self) -> Snapshot {
        // `closed` first: a connection counted closed was counted accepted in
        // the same or an earlier delta, so `concurrent` never goes negative.
        let closed = self.closed.load(Ordering::Relaxed);
        let accepted = self.accepted.load(Ordering::Relaxed);
        Snapshot {
            historic: accepted,
            concurrent: accepted.saturating_sub(closed),
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.bytes_down.load(Ordering::Relaxed),
            auth_failed: self.auth_failed.load(Ordering::Relaxed),
            connect_failed: self.connect_failed.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            auth_penalised: self.auth_penalised.load(Ordering::Relaxed),
            penalties: self.penalties.load(Ordering::Relaxed),
            checks_refused: self.checks_refused.load(Ordering::Relaxed),
            log_suppressed: self.log_suppressed.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            udp_associations: self.udp_associations.load(Ordering::Relaxed),
            udp_datagrams: self.udp_datagrams.load(Ordering::Relaxed),
            udp_dropped: self.udp_dropped.load(Ordering::Relaxed),
            binds: self.binds.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            session_limit: self.session_limit.load(Ordering::Relaxed),
            proxy_refused: self.proxy_refused.load(Ordering::Relaxed),
            uptime_secs: self.started.elapsed().as_secs(),
            mgmt_aborted: self.mgmt_aborted.load(Ordering::Relaxed),
            users_store_stale: u64::from(self.users_store.stale()),
            users_store_lost: self.users_store.lost(),
        }
    }
}

/// The aggregator thread and the handles around it.
#[derive(Debug)]
pub struct Aggregator {
    totals: Arc<Totals>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Aggregator {
    /// Starts the aggregator. Workers send to the returned sender; access
    /// records go to `access_log` (none: dropped).
    pub fn start(
        access_log: Option<Box<dyn Write + Send>>,
    ) -> std::io::Result<(Self, Sender<Report>)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let totals = Arc::new(Totals::new());
        let t = Arc::clone(&totals);
        let thread = thread::Builder::new()
            .name("aggregator".into())
            .spawn(move || run(rx, &t, access_log))?;
        Ok((
            Aggregator {
                totals,
                thread: Some(thread),
            },
            tx,
        ))
    }

    /// The totals, for readers.
    pub fn totals(&self) -> &Arc<Totals> {
        &self.totals
    }

    /// Waits until every sender is gone and every report applied.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bytes of access-log lines gathered before they are written, at most.
const ACCESS_LOG_BATCH: usize = 64 * 1024;

/// The access log's writer and the records not yet written to it.
struct AccessLog {
    out: Option<Box<dyn Write + Send>>,
    /// Whole lines, written with one call per batch of reports: a reader of
    /// the file never sees half a line, and a busy server makes one write(2)
    /// per batch instead of one per piece of each line.
    pending: Vec<u8>,
}

impl AccessLog {
    fn write_out(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if let Some(w) = self.out.as_mut()
            && let Err(e) = w.write_all(&self.pending).and_then(|()| w.flush())
        {
            log::error!("access logging stopped: error={}", crate::logfmt::Quoted(e));
            self.out = None;
        }
        self.pending.clear();
    }
}

fn apply(report: Report, totals: &Totals, log: &mut AccessLog, quiet: &mut quiet::Quiet) {
    match report {
        Report::Delta(d) => totals.add(&d),
        Report::Users(u) => totals.extra.add_users(&u),
        Report::Worker(i, g) => totals.extra.set_worker(i, g),
        Report::Reopen(w) => {
            log.write_out();
            log.out = Some(w);
        }
        Report::Access(rec) => {
            if log.out.is_none() {
                return;
            }
            let (write, ended) = quiet.admit(&rec, Instant::now(), SystemTime::now());
            if let Some(s) = ended {
                // Writing to a Vec cannot fail.
                let _ = writeln!(log.pending, "{s}");
            }
            if !write {
                totals.log_suppressed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // Writing to a Vec cannot fail.
            let _ = writeln!(log.pending, "{rec}");
            if log.pending.len() >= ACCESS_LOG_BATCH {
                log.write_out();
            }
        }
    }
}

fn run(rx: Receiver<Report>, totals: &Totals, out: Option<Box<dyn Write + Send>>) {
    let mut log = AccessLog {
        out,
        pending: Vec::new(),
    };
    let mut quiet = quiet::Quiet::default();
    loop {
        // Wake when a window of left-out lines ends, to write its summary.
        let first = match quiet.next_end() {
            Some(end) => match rx.recv_deadline(end) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(r) => Some(r),
                Err(_) => break,
            },
        };
        if let Some(first) = first {
            apply(first, totals, &mut log, &mut quiet);
            for r in rx.try_iter() {
                apply(r, totals, &mut log, &mut quiet);
            }
        }
        for s in quiet.expire(Instant::now(), SystemTime::now()) {
            // Writing to a Vec cannot fail.
            let _ = writeln!(log.pending, "{s}");
        }
        log.write_out();
    }
    for s in quiet.flush(SystemTime::now()) {
        let _ = writeln!(log.pending, "{s}");
    }
    log.write_out();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_add_up() {
        let (agg, tx) = Aggregator::start(None).unwrap();
        let totals = Arc::clone(agg.totals());
        for _ in 0..10 {
            tx.send(Report::Delta(Box::new(Counters {
                accepted: 2,
                closed: 1,
                bytes_up: 5,
                bytes_down: 7,
                auth_failed: 1,
                connect_failed: 3,
                refused: 4,
                auth_penalised: 5,
                penalties: 6,
                checks_refused: 7,
                evicted: 8,
                udp_associations: 9,
                udp_datagrams: 10,
                udp_dropped: 11,
                binds: 12,
                denied: 13,
                session_limit: 14,
                proxy_refused: 15,
                ..Counters::default()
            })))
            .unwrap();
        }
        drop(tx);
        agg.join();
        let s = totals.snapshot();
        assert_eq!(s.historic, 20);
        assert_eq!(s.concurrent, 10);
        assert_eq!(s.bytes_up, 50);
        assert_eq!(s.bytes_down, 70);
        assert_eq!(s.bytes(), 120);
        assert_eq!(s.auth_failed, 10);
        assert_eq!(s.connect_failed, 30);
        assert_eq!(s.refused, 40);
        assert_eq!(s.auth_penalised, 50);
        assert_eq!(s.penalties, 60);
        assert_eq!(s.checks_refused, 70);
        assert_eq!(s.evicted, 80);
        assert_eq!(s.udp_associations, 90);
        assert_eq!(s.udp_datagrams, 100);
        assert_eq!(s.udp_dropped, 110);
        assert_eq!(s.binds, 120);
        assert_eq!(s.denied, 130);
        assert_eq!(s.session_limit, 140);
        assert_eq!(s.proxy_refused, 150);
        assert_eq!(s.mgmt_aborted, 0);
        totals.add_mgmt_aborted(3);
        assert_eq!(totals.snapshot().mgmt_aborted, 3);
    }

    /// A writer that keeps each `write` call apart, shared with the test.
    #[derive(Clone, Default)]
    struct Calls(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl Write for Calls {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn record(port: u16) -> Report {
        use std::time::{Duration, UNIX_EPOCH};
        Report::Access(Box::new(AccessRecord {
            start: UNIX_EPOCH,
            client: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            via: None,
            user: None,
            command: None,
            target: None,
            connected: None,
            result: AccessResult::Reply(crate::socks5::wire::Reply::Succeeded),
            bytes_up: 0,
            bytes_down: 0,
            datagrams: None,
            rule: None,
            duration: Duration::ZERO,
        }))
    }

    #[test]
    fn access_log_writes_whole_lines_and_reopen_keeps_order() {
        let (old, new) = (Calls::default(), Calls::default());
        let (agg, tx) = Aggregator::start(Some(Box::new(old.clone()))).unwrap();
        for port in 1..=100 {
            tx.send(record(port)).unwrap();
        }
        tx.send(Report::Reopen(Box::new(new.clone()))).unwrap();
        tx.send(record(101)).unwrap();
        drop(tx);
        agg.join();
        let lines = |c: &Calls| -> Vec<String> {
            let calls = c.0.lock().unwrap();
            // Every write(2) carries whole lines: a reader never sees half.
            for call in calls.iter() {
                assert!(call.ends_with(b"\n"), "a write ends mid-line: {call:?}");
            }
            String::from_utf8(calls.concat())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        };
        let before = lines(&old);
        assert_eq!(
            before.len(),
            100,
            "every record before the reopen, in the old log"
        );
        assert!(
            before[99].contains(" client=127.0.0.1:100 "),
            "{}",
            before[99]
        );
        let after = lines(&new);
        assert_eq!(after.len(), 1);
        assert!(after[0].contains(" client=127.0.0.1:101 "), "{}", after[0]);
    }
}
