//! What a scrape shows: the server's totals, per-user series (at most
//! `--metrics-max-users` users of their own, the rest summed into
//! `user="other"`), the handshake and connect histograms, per-worker gauges
//! and the process's own figures, in the text format.

use std::collections::HashSet;
use std::sync::Arc;

use super::process;
use super::text::{Kind, Text};
use crate::metrics::{HistogramSnapshot, Snapshot, UserCounters, WorkerGauges};
use crate::users::UserTable;

/// The label value of the series that sums the users without their own.
pub const OTHER: &str = "other";

/// Everything one scrape shows, gathered before it is written.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The totals.
    pub totals: Snapshot,
    /// Every user with counters, sorted by name.
    pub users: Vec<(Arc<str>, UserCounters)>,
    /// The user table: its users without counters show zeros.
    pub table: Arc<UserTable>,
    /// Accept to reply.
    pub handshake: HistogramSnapshot,
    /// Request to target connected.
    pub connect: HistogramSnapshot,
    /// Index: the worker's number.
    pub workers: Vec<WorkerGauges>,
    /// The process's figures, when /proc could be read.
    pub process: Option<process::Stats>,
}

/// Which users have series of their own. Kept from scrape to scrape, so
/// that a series does not come and go and `user="other"` only goes up:
///
/// - a user gets a series of its own when it is first seen with a non-zero
///   counter and fewer than the cap have one (those first seen in the same
///   scrape by bytes, most first, then by name), and keeps it while it is
///   in the table or has counters;
/// - a user first seen when the cap was reached is summed into `other`,
///   and stays there;
/// - users with no counter yet show zeros under their own names while
///   places are free, and take none;
/// - a user named `other` is always summed into `other`.
#[derive(Debug, Default)]
pub struct UserSeries {
    max: usize,
    own: HashSet<Arc<str>>,
    summed: HashSet<Arc<str>>,
}

/// The per-user rows of one scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRows {
    /// Users with series of their own, by name.
    pub own: Vec<(Arc<str>, UserCounters)>,
    /// The sum of the other users' counters.
    pub other: UserCounters,
    /// How many users that sum holds.
    pub other_users: u64,
}

fn is_zero(c: &UserCounters) -> bool {
    *c == UserCounters::default()
}

fn add(sum: &mut UserCounters, c: &UserCounters) {
    sum.sessions = sum.sessions.wrapping_add(c.sessions);
    sum.open = sum.open.wrapping_add(c.open);
    sum.bytes_up = sum.bytes_up.wrapping_add(c.bytes_up);
    sum.bytes_down = sum.bytes_down.wrapping_add(c.bytes_down);
    sum.auth_failed = sum.auth_failed.wrapping_add(c.auth_failed);
    sum.denied = sum.denied.wrapping_add(c.denied);
}

impl UserSeries {
    /// At most `max` users with series of their own.
    pub fn new(max: usize) -> Self {
        UserSeries {
            max,
            ..UserSeries::default()
        }
    }

    /// Sorts this scrape's users into rows, updating who has a series.
    pub fn rows(&mut self, users: &[(Arc<str>, UserCounters)], table: &UserTable) -> UserRows {
        let known = |name: &str| {
            users
                .binary_search_by(|(n, _)| (**n).cmp(name))
                .is_ok_and(|i| !is_zero(&users[i].1))
                || table.find(name.as_bytes()).is_some()
        };
        self.own.retain(|n| known(n));
        self.summed.retain(|n| known(n));
        let mut new: Vec<&(Arc<str>, UserCounters)> = users
            .iter()
            .filter(|(n, c)| {
                !is_zero(c) && !self.own.contains(n) && !self.summed.contains(n) && &**n != OTHER
            })
            .collect();
        new.sort_by(|(an, a), (bn, b)| {
            let bytes = |c: &UserCounters| c.bytes_up.saturating_add(c.bytes_down);
            bytes(b).cmp(&bytes(a)).then_with(|| an.cmp(bn))
        });
        for (name, _) in new {
            if self.own.len() < self.max {
                self.own.insert(Arc::clone(name));
            } else {
                self.summed.insert(Arc::clone(name));
            }
        }

        let mut rows = UserRows::default();
        let mut shown: HashSet<&str> = HashSet::new();
        for (name, c) in users {
            if self.own.contains(&**name) {
                rows.own.push((Arc::clone(name), *c));
            } else if !is_zero(c) {
                add(&mut rows.other, c);
                rows.other_users += 1;
            } else {
                continue;
            }
            shown.insert(name);
        }
        // Users with no counter: zeros of their own while places are free.
        let mut free = self.max.saturating_sub(self.own.len());
        for user in table.iter() {
            let name = &user.name;
            if shown.contains(&**name) {
                continue;
            }
            if self.own.contains(&**name) {
                rows.own.push((Arc::clone(name), UserCounters::default()));
            } else if free > 0 && &**name != OTHER {
                free -= 1;
                rows.own.push((Arc::clone(name), UserCounters::default()));
            } else {
                rows.other_users += 1;
            }
        }
        rows.own.sort_by(|(a, _), (b, _)| a.cmp(b));
        rows
    }
}

/// The exposition of `s`, its users sorted by `series`.
pub fn render(s: &Scrape, series: &mut UserSeries) -> Vec<u8> {
    let mut t = Text::new();
    totals(&mut t, &s.totals);
    let rows = series.rows(&s.users, &s.table);
    per_user(&mut t, &rows);
    histogram(
        &mut t,
        "socks5d_handshake_seconds",
        "Seconds from accepting a SOCKS client to the reply to its request.",
        &s.handshake,
    );
    histogram(
        &mut t,
        "socks5d_connect_seconds",
        "Seconds from a request to its target connected.",
        &s.connect,
    );
    workers(&mut t, &s.workers);
    if let Some(p) = &s.process {
        process_stats(&mut t, p);
    }
    t.into_bytes()
}

fn totals(t: &mut Text, s: &Snapshot) {
    t.family(
        "socks5d_build_info",
        Kind::Gauge,
        "Always 1; the label names the version of socks5d.",
    );
    t.sample(
        "socks5d_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    t.single(
        "socks5d_connections_total",
        Kind::Counter,
        "SOCKS client connections accepted.",
        s.historic,
    );
    t.single(
        "socks5d_connections_open",
        Kind::Gauge,
        "SOCKS client connections open, in any phase.",
        s.concurrent,
    );
    t.family(
        "socks5d_bytes_total",
        Kind::Counter,
        "Payload bytes relayed: up is client to target, down is target to client (TCP and UDP).",
    );
    t.sample("socks5d_bytes_total", &[("direction", "up")], s.bytes_up);
    t.sample(
        "socks5d_bytes_total",
        &[("direction", "down")],
        s.bytes_down,
    );
    let counters: [(&str, &str, u64); 16] = [
        (
            "socks5d_auth_failures_total",
            "Failed SOCKS authentications (RFC 1929).",
            s.auth_failed,
        ),
        (
            "socks5d_requests_failed_total",
            "Requests answered with a reply other than succeeded.",
            s.connect_failed,
        ),
        (
            "socks5d_requests_denied_total",
            "Requests denied by the access rules.",
            s.denied,
        ),
        (
            "socks5d_connections_refused_total",
            "Clients closed at once because --max-connections was reached.",
            s.refused,
        ),
        (
            "socks5d_session_limit_refusals_total",
            "Clients closed at accept past --max-sessions-per-client, and requests refused past --max-sessions-per-user.",
            s.session_limit,
        ),
        (
            "socks5d_proxy_header_refusals_total",
            "Connections closed for a PROXY header: from a source not in --proxy-protocol-from, or none or a malformed one from a source in it.",
            s.proxy_refused,
        ),
        (
            "socks5d_auth_penalised_total",
            "Authentications refused unchecked while their source was penalised.",
            s.auth_penalised,
        ),
        (
            "socks5d_penalties_total",
            "Per-source penalties started.",
            s.penalties,
        ),
        (
            "socks5d_password_checks_refused_total",
            "Password checks refused because too many were waiting.",
            s.checks_refused,
        ),
        (
            "socks5d_handshakes_evicted_total",
            "Handshakes nobody had logged in on, closed to make room at the descriptor limit.",
            s.evicted,
        ),
        (
            "socks5d_access_log_suppressed_total",
            "Access-log lines of failed handshakes left out and summarised.",
            s.log_suppressed,
        ),
        (
            "socks5d_udp_associations_total",
            "UDP associations opened.",
            s.udp_associations,
        ),
        (
            "socks5d_udp_datagrams_total",
            "UDP datagrams relayed, both directions.",
            s.udp_datagrams,
        ),
        (
            "socks5d_udp_datagrams_dropped_total",
            "UDP datagrams dropped (fragmented, malformed, from an unexpected source, unresolved, or over a limit).",
            s.udp_dropped,
        ),
        (
            "socks5d_binds_total",
            "BIND requests accepted (first reply sent).",
            s.binds,
        ),
        (
            "socks5d_mgmt_aborted_total",
            "Management associations aborted before they logged in.",
            s.mgmt_aborted,
        ),
    ];
    for (name, help, value) in counters {
        t.single(name, Kind::Counter, help, value);
    }
    t.single(
        "socks5d_users_store_stale",
        Kind::Gauge,
        "1 while the user table is stale (its Redis store unreachable, the last table held in use).",
        s.users_store_stale,
    );
    t.single(
        "socks5d_users_store_lost_total",
        Kind::Counter,
        "Times the connection to the Redis user store was lost.",
        s.users_store_lost,
    );
}

fn per_user(t: &mut Text, rows: &UserRows) {
    type Field = fn(&UserCounters) -> u64;
    let plain: [(&str, Kind, &str, Field); 4] = [
        (
            "socks5d_user_sessions_total",
            Kind::Counter,
            "SOCKS sessions the user opened (requests that succeeded).",
            |c| c.sessions,
        ),
        (
            "socks5d_user_sessions_open",
            Kind::Gauge,
            "The user's SOCKS sessions open now.",
            |c| c.open,
        ),
        (
            "socks5d_user_auth_failures_total",
            Kind::Counter,
            "Failed authentications with the user's name.",
            |c| c.auth_failed,
        ),
        (
            "socks5d_user_denied_total",
            Kind::Counter,
            "The user's requests denied by the access rules.",
            |c| c.denied,
        ),
    ];
    let all = || {
        rows.own
            .iter()
            .map(|(n, c)| (&**n, c))
            .chain(std::iter::once((OTHER, &rows.other)))
    };
    for (name, kind, help, field) in plain {
        t.family(name, kind, help);
        for (user, c) in all() {
            t.sample(name, &[("user", user)], field(c));
        }
    }
    let bytes = "socks5d_user_bytes_total";
    t.family(
        bytes,
        Kind::Counter,
        "Payload bytes relayed for the user: up is client to target, down is target to client.",
    );
    for (user, c) in all() {
        t.sample(bytes, &[("user", user), ("direction", "up")], c.bytes_up);
        t.sample(
            bytes,
            &[("user", user), ("direction", "down")],
            c.bytes_down,
        );
    }
    t.single(
        "socks5d_user_other_users",
        Kind::Gauge,
        "Users summed into user=\"other\" (past --metrics-max-users, or named other).",
        rows.other_users,
    );
}

/// A histogram's buckets (cumulative, `le` in seconds, then `+Inf`), sum and
/// count. The count is the `+Inf` bucket's, so the two always agree.
fn histogram(t: &mut Text, name: &str, help: &str, h: &HistogramSnapshot) {
    t.family(name, Kind::Histogram, help);
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0u64;
    let mut le = String::new();
    for (i, n) in h.counts.iter().enumerate() {
        cumulative = cumulative.wrapping_add(*n);
        le.clear();
        match h.bounds.get(i) {
            Some(b) => super::text::push_f64(&mut le, *b),
            None => le.push_str("+Inf"),
        }
        t.sample(&bucket, &[("le", &le)], cumulative);
    }
    if h.counts.len() <= h.bounds.len() {
        // Malformed (no +Inf bucket): the format needs one all the same.
        t.sample(&bucket, &[("le", "+Inf")], cumulative);
    }
    t.sample_f64(&format!("{name}_sum"), &[], h.sum_seconds);
    t.sample(&format!("{name}_count"), &[], cumulative);
}

fn workers(t: &mut Text, ws: &[WorkerGauges]) {
    type Field = fn(&WorkerGauges) -> u64;
    let gauges: [(&str, &str, Field); 2] = [
        (
            "socks5d_worker_sessions",
            "Client connections the worker holds, as of its last report.",
            |w| w.sessions,
        ),
        (
            "socks5d_worker_buffers_in_use",
            "Relay buffers the worker has taken from its pool, as of its last report.",
            |w| w.buffers_in_use,
        ),
    ];
    for (name, help, field) in gauges {
        t.family(name, Kind::Gauge, help);
        for (i, w) in ws.iter().enumerate() {
            t.sample(name, &[("worker", &i.to_string())], field(w));
        }
    }
}

fn process_stats(t: &mut Text, p: &process::Stats) {
    t.family(
        "process_cpu_seconds_total",
        Kind::Counter,
        "Total user and system CPU time spent in seconds.",
    );
    t.sample_f64("process_cpu_seconds_total", &[], p.cpu_seconds);
    t.single(
        "process_resident_memory_bytes",
        Kind::Gauge,
        "Resident memory size in bytes.",
        p.resident_bytes,
    );
    t.single(
        "process_virtual_memory_bytes",
        Kind::Gauge,
        "Virtual memory size in bytes.",
        p.virtual_bytes,
    );
    t.single(
        "process_open_fds",
        Kind::Gauge,
        "Number of open file descriptors.",
        p.open_fds,
    );
    t.single(
        "process_max_fds",
        Kind::Gauge,
        "Maximum number of open file descriptors.",
        p.max_fds,
    );
    t.family(
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since unix epoch in seconds.",
    );
    t.sample_f64("process_start_time_seconds", &[], p.start_time_seconds);
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
