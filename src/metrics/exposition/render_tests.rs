//! The renderer on made-up scrapes: what each family holds, which users get
//! series of their own, and Prometheus's own linter on the result.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::*;
use crate::users::Role;

fn counters(sessions: u64, up: u64, down: u64) -> UserCounters {
    UserCounters {
        sessions,
        open: 1,
        bytes_up: up,
        bytes_down: down,
        auth_failed: 2,
        denied: 3,
    }
}

fn table(names: &[&str]) -> Arc<UserTable> {
    let mut t = UserTable::new();
    for n in names {
        t.add(n.as_bytes(), b"pw", Role::Proxy).unwrap();
    }
    Arc::new(t)
}

const BOUNDS: &[f64] = &[0.005, 0.05, 0.5, 5.0];

fn scrape(users: &[(&str, UserCounters)], in_table: &[&str]) -> Scrape {
    Scrape {
        totals: Snapshot {
            historic: 10,
            concurrent: 2,
            bytes_up: 1000,
            bytes_down: 20_000,
            auth_failed: 1,
            udp_datagrams: 7,
            ..Snapshot::default()
        },
        users: users.iter().map(|(n, c)| (Arc::from(*n), *c)).collect(),
        table: table(in_table),
        handshake: HistogramSnapshot {
            bounds: BOUNDS,
            counts: vec![1, 2, 0, 3, 4],
            sum_seconds: 41.25,
            count: 10,
        },
        connect: HistogramSnapshot {
            bounds: BOUNDS,
            counts: vec![0; 5],
            sum_seconds: 0.0,
            count: 0,
        },
        workers: vec![
            WorkerGauges {
                sessions: 3,
                buffers_in_use: 2,
            },
            WorkerGauges {
                sessions: 0,
                buffers_in_use: 0,
            },
        ],
        process: Some(process::Stats {
            cpu_seconds: 1.5,
            resident_bytes: 4 << 20,
            virtual_bytes: 64 << 20,
            open_fds: 12,
            max_fds: 1024,
            start_time_seconds: 1_796_085_330.25,
        }),
    }
}

fn text(s: &Scrape, max_users: usize) -> String {
    String::from_utf8(render(s, &mut UserSeries::new(max_users))).unwrap()
}

/// The sample lines of `text` that start with `prefix`.
fn lines<'t>(text: &'t str, prefix: &str) -> Vec<&'t str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn totals_histograms_workers_and_process() {
    let t = text(&scrape(&[], &[]), 10);
    for want in [
        "socks5d_connections_total 10",
        "socks5d_connections_open 2",
        "socks5d_bytes_total{direction=\"up\"} 1000",
        "socks5d_bytes_total{direction=\"down\"} 20000",
        "socks5d_auth_failures_total 1",
        "socks5d_udp_datagrams_total 7",
        "socks5d_worker_sessions{worker=\"0\"} 3",
        "socks5d_worker_buffers_in_use{worker=\"1\"} 0",
        "process_cpu_seconds_total 1.5",
        "process_resident_memory_bytes 4194304",
        "process_open_fds 12",
        "process_max_fds 1024",
        "process_start_time_seconds 1796085330.25",
        "# TYPE socks5d_handshake_seconds histogram",
    ] {
        assert!(t.lines().any(|l| l == want), "{want:?} not in:\n{t}");
    }
    assert_eq!(
        lines(&t, "socks5d_handshake_seconds"),
        [
            "socks5d_handshake_seconds_bucket{le=\"0.005\"} 1",
            "socks5d_handshake_seconds_bucket{le=\"0.05\"} 3",
            "socks5d_handshake_seconds_bucket{le=\"0.5\"} 3",
            "socks5d_handshake_seconds_bucket{le=\"5\"} 6",
            "socks5d_handshake_seconds_bucket{le=\"+Inf\"} 10",
            "socks5d_handshake_seconds_sum 41.25",
            "socks5d_handshake_seconds_count 10",
        ]
    );
    // No /proc figures: no process family.
    let mut s = scrape(&[], &[]);
    s.process = None;
    assert!(!text(&s, 10).contains("process_"));
}

#[test]
fn every_user_under_the_cap_has_its_own_series() {
    let s = scrape(
        &[("alice", counters(4, 100, 200)), ("bob", counters(1, 5, 6))],
        &["alice", "bob", "carol"],
    );
    let t = text(&s, 10);
    assert_eq!(
        lines(&t, "socks5d_user_bytes_total"),
        [
            "socks5d_user_bytes_total{user=\"alice\",direction=\"up\"} 100",
            "socks5d_user_bytes_total{user=\"alice\",direction=\"down\"} 200",
            "socks5d_user_bytes_total{user=\"bob\",direction=\"up\"} 5",
            "socks5d_user_bytes_total{user=\"bob\",direction=\"down\"} 6",
            "socks5d_user_bytes_total{user=\"carol\",direction=\"up\"} 0",
            "socks5d_user_bytes_total{user=\"carol\",direction=\"down\"} 0",
            "socks5d_user_bytes_total{user=\"other\",direction=\"up\"} 0",
            "socks5d_user_bytes_total{user=\"other\",direction=\"down\"} 0",
        ]
    );
    assert_eq!(
        lines(&t, "socks5d_user_sessions_total"),
        [
            "socks5d_user_sessions_total{user=\"alice\"} 4",
            "socks5d_user_sessions_total{user=\"bob\"} 1",
            "socks5d_user_sessions_total{user=\"carol\"} 0",
            "socks5d_user_sessions_total{user=\"other\"} 0",
        ]
    );
    for family in [
        "socks5d_user_sessions_open{user=\"alice\"} 1",
        "socks5d_user_auth_failures_total{user=\"bob\"} 2",
        "socks5d_user_denied_total{user=\"alice\"} 3",
        "socks5d_user_other_users 0",
    ] {
        assert!(t.lines().any(|l| l == family), "{family:?} not in:\n{t}");
    }
}

#[test]
fn past_the_cap_the_busiest_keep_their_series_and_the_rest_are_summed() {
    let mut series = UserSeries::new(2);
    let users = [
        ("a", counters(1, 10, 0)),
        ("b", counters(1, 30, 0)),
        ("c", counters(1, 20, 1)),
    ];
    let names: Vec<&str> = users.iter().map(|(n, _)| *n).collect();
    let rows = series.rows(
        &users.map(|(n, c)| (Arc::from(n), c)),
        &table(&[&names[..], &["idle"]].concat()),
    );
    let own: Vec<&str> = rows.own.iter().map(|(n, _)| &**n).collect();
    assert_eq!(own, ["b", "c"]);
    assert_eq!(rows.other, counters(1, 10, 0));
    // "a" and the idle user.
    assert_eq!(rows.other_users, 2);

    // Later "a" is the busiest and "d" comes: the series stay where they
    // were, and "other" only grows.
    let later = [
        ("a", counters(5, 1000, 0)),
        ("b", counters(1, 30, 0)),
        ("c", counters(1, 20, 1)),
        ("d", counters(1, 1, 1)),
    ];
    let rows = series.rows(&later.map(|(n, c)| (Arc::from(n), c)), &table(&[]));
    let own: Vec<&str> = rows.own.iter().map(|(n, _)| &**n).collect();
    assert_eq!(own, ["b", "c"]);
    assert_eq!(rows.other.bytes_up, 1001);
    assert_eq!(rows.other.sessions, 6);
    assert_eq!(rows.other_users, 2);

    // "c" leaves (no counters, not in the table): its place goes to the
    // next new user, not to one already summed.
    let after = [
        ("a", counters(5, 1000, 0)),
        ("b", counters(1, 30, 0)),
        ("d", counters(1, 1, 1)),
        ("e", counters(1, 2, 2)),
    ];
    let rows = series.rows(&after.map(|(n, c)| (Arc::from(n), c)), &table(&[]));
    let own: Vec<&str> = rows.own.iter().map(|(n, _)| &**n).collect();
    assert_eq!(own, ["b", "e"]);
    assert_eq!(rows.other.bytes_up, 1001);
}

#[test]
fn idle_users_take_free_places_only_and_other_is_never_a_user() {
    let mut series = UserSeries::new(2);
    let rows = series.rows(
        &[(Arc::from("other"), counters(1, 7, 7))],
        &table(&["x", "y", "z", "other"]),
    );
    let own: Vec<&str> = rows.own.iter().map(|(n, _)| &**n).collect();
    assert_eq!(own, ["x", "y"]);
    assert_eq!(rows.other, counters(1, 7, 7));
    assert_eq!(rows.other_users, 2);
    // "z" gets busy: it takes a place from an idle user.
    let rows = series.rows(
        &[(Arc::from("z"), counters(1, 1, 1))],
        &table(&["x", "y", "z"]),
    );
    let own: Vec<&str> = rows.own.iter().map(|(n, _)| &**n).collect();
    assert_eq!(own, ["x", "z"]);
    // No place at all: everyone is summed.
    let rows = UserSeries::new(0).rows(&[(Arc::from("z"), counters(1, 1, 1))], &table(&["x"]));
    assert!(rows.own.is_empty());
    assert_eq!(rows.other_users, 2);
}

#[test]
fn user_names_are_escaped() {
    let s = scrape(&[("q\"b\\s", counters(1, 1, 1))], &[]);
    let t = text(&s, 10);
    assert!(
        t.contains("socks5d_user_sessions_total{user=\"q\\\"b\\\\s\"} 1\n"),
        "{t}"
    );
}

/// `promtool check metrics` (Debian's prometheus package) finds nothing
/// to say about a scrape with every family filled in.
#[test]
fn promtool_finds_nothing_to_lint() {
    let s = scrape(
        &[
            ("alice", counters(4, 100, 200)),
            ("odd \"name\" \\ é", counters(1, 5, 6)),
            ("zed", counters(1, 1, 1)),
        ],
        &["alice", "carol"],
    );
    let body = render(&s, &mut UserSeries::new(2));
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (apt-get install prometheus; make test installs it)");
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {:?}\n{said}\n{}",
        out.status,
        String::from_utf8_lossy(&body)
    );
}
