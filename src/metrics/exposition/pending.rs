//! The aggregator's per-user counters, histograms and per-worker gauges, in
//! the shape the aggregator is to publish them, until it does: the renderer
//! is written against these, and the scrape shows them empty.

/// One user's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserCounters {
    /// SOCKS sessions opened by the user since start.
    pub sessions: u64,
    /// The user's sessions open now.
    pub open: u64,
    /// Client to target.
    pub bytes_up: u64,
    /// Target to client.
    pub bytes_down: u64,
    /// Failed authentications with the user's name.
    pub auth_failed: u64,
    /// Requests of the user denied by the access rules.
    pub denied: u64,
}

/// A histogram with fixed bucket bounds in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds, ascending, without +Inf.
    pub bounds: &'static [f64],
    /// Per bucket (not cumulative); the last is +Inf.
    pub counts: Vec<u64>,
    /// The sum of the observations.
    pub sum_seconds: f64,
    /// How many observations.
    pub count: u64,
}

/// One worker's gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerGauges {
    /// Client connections held.
    pub sessions: u64,
    /// Relay buffers taken from the pool.
    pub buffers_in_use: u64,
}
