//! Per-user accounting, latency histograms and per-worker gauges: what the
//! workers count apart from the totals, and how the aggregator keeps it.
//!
//! Workers count into their own tables and send what changed with each
//! flush, as they do the totals: no shared atomic per byte. The aggregator
//! adds the deltas up; readers (USER_METRICS, the Prometheus endpoint) take
//! copies under a short lock. A user deleted from the table has its
//! counters dropped once no session of it is open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One user's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserCounters {
    /// SOCKS sessions opened by the user since start (requests that
    /// succeeded: tunnels, BINDs, UDP associations).
    pub sessions: u64,
    /// The user's sessions open now.
    pub open: u64,
    /// Payload bytes relayed client to target (TCP, and UDP DATA).
    pub bytes_up: u64,
    /// Payload bytes relayed target to client.
    pub bytes_down: u64,
    /// Failed authentications with the user's name.
    pub auth_failed: u64,
    /// Requests of the user denied by the access rules.
    pub denied: u64,
}

/// What changed for one user in one worker since its last report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserDelta {
    /// Sessions opened.
    pub sessions: u64,
    /// Sessions opened less sessions closed.
    pub open: i64,
    /// Bytes client to target.
    pub bytes_up: u64,
    /// Bytes target to client.
    pub bytes_down: u64,
    /// Failed authentications.
    pub auth_failed: u64,
    /// Requests denied by the rules.
    pub denied: u64,
}

impl UserDelta {
    /// Whether nothing changed.
    pub fn is_zero(&self) -> bool {
        *self == UserDelta::default()
    }
}

/// Upper bounds of the latency histograms' buckets, in seconds.
pub const BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BUCKETS: usize = 15;

/// A latency histogram's counts (a delta in a worker, a total in the
/// aggregator).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket, the last past every bound (+Inf).
    pub counts: [u64; BUCKETS],
    /// Their sum, in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// Counts one observation.
    #[inline]
    pub fn record(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BOUNDS.iter().position(|&b| s <= b).unwrap_or(BOUNDS.len());
        self.counts[i] += 1;
        self.sum_us += d.as_micros() as u64;
    }

    fn add(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_us += other.sum_us;
    }

    /// The observations counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// A histogram as readers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds, ascending, without +Inf.
    pub bounds: &'static [f64],
    /// Observations per bucket (not cumulative), `bounds.len() + 1` of them,
    /// the last past every bound.
    pub counts: Vec<u64>,
    /// The sum of the observations, in seconds.
    pub sum_seconds: f64,
    /// How many there were.
    pub count: u64,
}

impl From<&Histogram> for HistogramSnapshot {
    fn from(h: &Histogram) -> Self {
        HistogramSnapshot {
            bounds: BOUNDS,
            counts: h.counts.to_vec(),
            sum_seconds: h.sum_us as f64 / 1e6,
            count: h.count(),
        }
    }
}

/// One worker's gauges, as of its last report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerGauges {
    /// Client connections the worker holds, in any phase.
    pub sessions: u64,
    /// Relay buffers lent out of its pool.
    pub buffers_in_use: u64,
}

/// What the aggregator keeps besides the plain totals.
#[derive(Debug, Default)]
pub struct Extra {
    users: Mutex<HashMap<Arc<str>, UserCounters>>,
    handshake: Mutex<Histogram>,
    connect: Mutex<Histogram>,
    workers: Mutex<Vec<WorkerGauges>>,
    /// Tells which names are still users (set by the server).
    exists: Mutex<Option<Filter>>,
    last_prune: Mutex<Option<Instant>>,
}

/// Whether a name is a user now.
pub type UserFilter = Box<dyn Fn(&str) -> bool + Send>;

struct Filter(UserFilter);

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserFilter")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How often counters of deleted users are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

impl Extra {
    /// Adds one worker's per-user deltas.
    pub fn add_users(&self, deltas: &[(Arc<str>, UserDelta)]) {
        let mut users = lock(&self.users);
        for (name, d) in deltas {
            let c = users.entry(Arc::clone(name)).or_default();
            c.sessions += d.sessions;
            c.open = c.open.saturating_add_signed(d.open);
            c.bytes_up += d.bytes_up;
            c.bytes_down += d.bytes_down;
            c.auth_failed += d.auth_failed;
            c.denied += d.denied;
        }
        let now = Instant::now();
        let mut last = lock(&self.last_prune);
        if last.is_none_or(|t| now >= t + PRUNE_EVERY) {
            *last = Some(now);
            if let Some(Filter(exists)) = lock(&self.exists).as_ref() {
                // A deleted user's counters go once its sessions are closed.
                users.retain(|name, c| c.open > 0 || exists(name));
            }
        }
    }

    /// Adds one worker's histogram deltas.
    pub fn add_histograms(&self, handshake: &Histogram, connect: &Histogram) {
        if handshake.count() > 0 {
            lock(&self.handshake).add(handshake);
        }
        if connect.count() > 0 {
            lock(&self.connect).add(connect);
        }
    }

    /// Worker `index`'s gauges now.
    pub fn set_worker(&self, index: usize, g: WorkerGauges) {
        let mut w = lock(&self.workers);
        if w.len() <= index {
            w.resize(index + 1, WorkerGauges::default());
        }
        w[index] = g;
    }

    /// Tells the aggregator which names are users, so that counters of
    /// deleted ones are dropped.
    pub fn set_user_filter(&self, f: UserFilter) {
        *lock(&self.exists) = Some(Filter(f));
    }

    /// Every user with counters, sorted by name.
    pub fn users(&self) -> Vec<(Arc<str>, UserCounters)> {
        let mut v: Vec<_> = lock(&self.users)
            .iter()
            .map(|(n, c)| (Arc::clone(n), *c))
            .collect();
        v.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        v
    }

    /// One user's counters (none yet: `None`).
    pub fn user(&self, name: &str) -> Option<UserCounters> {
        lock(&self.users).get(name).copied()
    }

    /// Accept to reply, for every answered request.
    pub fn handshake_seconds(&self) -> HistogramSnapshot {
        HistogramSnapshot::from(&*lock(&self.handshake))
    }

    /// Request (or its name resolved) to target connected.
    pub fn connect_seconds(&self) -> HistogramSnapshot {
        HistogramSnapshot::from(&*lock(&self.connect))
    }

    /// Every worker's gauges, by worker number.
    pub fn workers(&self) -> Vec<WorkerGauges> {
        lock(&self.workers).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_add_up_and_deleted_users_go_once_closed() {
        let x = Extra::default();
        let alice: Arc<str> = "alice".into();
        let bob: Arc<str> = "bob".into();
        let open = UserDelta {
            sessions: 2,
            open: 2,
            bytes_up: 10,
            bytes_down: 20,
            ..UserDelta::default()
        };
        x.add_users(&[(Arc::clone(&alice), open), (Arc::clone(&bob), open)]);
        let closed = UserDelta {
            open: -1,
            bytes_up: 5,
            auth_failed: 1,
            denied: 3,
            ..UserDelta::default()
        };
        x.add_users(&[(Arc::clone(&alice), closed)]);
        assert_eq!(
            x.user("alice"),
            Some(UserCounters {
                sessions: 2,
                open: 1,
                bytes_up: 15,
                bytes_down: 20,
                auth_failed: 1,
                denied: 3,
            })
        );
        // bob is deleted: his counters stay while a session is open.
        x.set_user_filter(Box::new(|n| n == "alice"));
        *lock(&x.last_prune) = None;
        x.add_users(&[]);
        assert!(x.user("bob").is_some(), "bob still has sessions open");
        x.add_users(&[(
            Arc::clone(&bob),
            UserDelta {
                open: -2,
                ..UserDelta::default()
            },
        )]);
        *lock(&x.last_prune) = None;
        x.add_users(&[]);
        assert_eq!(x.user("bob"), None, "freed");
        assert_eq!(x.users().len(), 1);
    }

    #[test]
    fn histograms_bucket_by_upper_bound() {
        let mut h = Histogram::default();
        h.record(Duration::from_micros(400));
        h.record(Duration::from_micros(500));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(60));
        let s = HistogramSnapshot::from(&h);
        assert_eq!(s.counts[0], 2, "<= 0.5 ms");
        assert_eq!(s.counts[3], 1, "<= 5 ms");
        assert_eq!(s.counts[BUCKETS - 1], 1, "+Inf");
        assert_eq!(s.count, 4);
        assert!((s.sum_seconds - 60.0039).abs() < 1e-9);
        let x = Extra::default();
        x.add_histograms(&h, &Histogram::default());
        x.add_histograms(&h, &h);
        assert_eq!(x.handshake_seconds().count, 8);
        assert_eq!(x.connect_seconds().count, 4);
    }
}
