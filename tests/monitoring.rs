//! The monitoring files of contrib/: the Grafana dashboard is JSON
//! (`python3 -m json.tool`) whose panels draw the metric families socks5d's
//! `--metrics-listen` endpoint exports, and the Prometheus scrape
//! configuration is YAML with one job for that endpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The metric families socks5d exports that the dashboard must draw.
const DRAWN: &[&str] = &[
    "socks5d_connections_total",
    "socks5d_connections_open",
    "socks5d_bytes_total",
    "socks5d_auth_failures_total",
    "socks5d_requests_failed_total",
    "socks5d_requests_denied_total",
    "socks5d_udp_datagrams_total",
    "socks5d_user_bytes_total",
    "socks5d_user_sessions_open",
    "socks5d_handshake_seconds_bucket",
    "socks5d_connect_seconds_bucket",
    "socks5d_worker_sessions",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
];

/// The panels the dashboard must have.
const PANELS: &[&str] = &[
    "Connections per second",
    "Open connections",
    "Throughput",
    "Failures per second",
    "Handshake time p50 / p99",
    "Top users by throughput",
    "Resident memory",
    "CPU",
];

fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(name)
}

/// Runs `cmd`, which must succeed; its output.
fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {what} (make deps installs it): {e}"));
    assert!(
        out.status.success(),
        "{what}: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Reads the dashboard with Python's json module and prints, tab-separated,
/// a `P` line per panel (id, type, title, x, y, w, h, data source uid) and
/// a `T` line per query (panel id, refId, data source uid, expr).
const LIST_PANELS: &str = r#"
import json, sys
d = json.load(open(sys.argv[1]))
for p in d["panels"]:
    g = p["gridPos"]
    print("P", p["id"], p["type"], p["title"], g["x"], g["y"], g["w"], g["h"],
          p["datasource"]["uid"], sep="\t")
    for t in p["targets"]:
        print("T", p["id"], t["refId"], t["datasource"]["uid"], t["expr"], sep="\t")
"#;

/// A panel of the dashboard.
#[derive(Debug)]
struct Panel {
    title: String,
    /// x, y, w, h on the 24-column grid.
    grid: [u32; 4],
    datasource: String,
}

/// A query of a panel.
#[derive(Debug)]
struct Query {
    panel: u32,
    ref_id: String,
    datasource: String,
    expr: String,
}

fn dashboard() -> (BTreeMap<u32, Panel>, Vec<Query>) {
    let path = contrib("grafana-dashboard.json");
    let mut c = Command::new("python3");
    c.args(["-c", LIST_PANELS]).arg(&path);
    let out = run(c, "python3");
    let mut panels = BTreeMap::new();
    let mut queries = Vec::new();
    for line in String::from_utf8(out.stdout).expect("UTF-8").lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let num = |i: usize| -> u32 { f[i].parse().unwrap_or_else(|_| panic!("{line:?}")) };
        match f[0] {
            "P" => {
                let p = Panel {
                    title: f[3].to_owned(),
                    grid: [num(4), num(5), num(6), num(7)],
                    datasource: f[8].to_owned(),
                };
                assert!(
                    panels.insert(num(1), p).is_none(),
                    "panel id {} twice",
                    f[1]
                );
            }
            "T" => queries.push(Query {
                panel: num(1),
                ref_id: f[2].to_owned(),
                datasource: f[3].to_owned(),
                expr: f[4..].join("\t"),
            }),
            _ => panic!("{line:?}"),
        }
    }
    (panels, queries)
}

/// The metric names a PromQL expression reads: the words before `{`.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in expr.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if c == '{' && !word.is_empty() {
            out.push(word.clone());
        }
        word.clear();
    }
    out
}

#[test]
fn the_dashboard_is_json() {
    let mut c = Command::new("python3");
    c.args(["-m", "json.tool"])
        .arg(contrib("grafana-dashboard.json"));
    run(c, "python3 -m json.tool");
}

/// The panels asked for, on the grid without overlapping, every query on
/// the dashboard's data source variable, for the selected jobs and
/// instances, drawing every family of [`DRAWN`] and no other.
#[test]
fn the_dashboard_draws_what_socks5d_exports() {
    let (panels, queries) = dashboard();
    let titles: BTreeSet<&str> = panels.values().map(|p| p.title.as_str()).collect();
    for want in PANELS {
        assert!(titles.contains(want), "no panel {want:?}: {titles:?}");
    }
    let all: Vec<(&u32, &Panel)> = panels.iter().collect();
    for (i, (id, p)) in all.iter().enumerate() {
        let [x, y, w, h] = p.grid;
        assert!(
            w > 0 && h > 0 && x + w <= 24,
            "panel {id} {:?}: {:?}",
            p.title,
            p.grid
        );
        assert_eq!(p.datasource, "${datasource}", "panel {id}");
        for (other, q) in &all[i + 1..] {
            let [qx, qy, qw, qh] = q.grid;
            let apart = x + w <= qx || qx + qw <= x || y + h <= qy || qy + qh <= y;
            assert!(apart, "panels {id} and {other} overlap");
        }
    }
    let mut used = BTreeSet::new();
    for q in &queries {
        assert!(panels.contains_key(&q.panel), "{q:?}");
        assert_eq!(q.datasource, "${datasource}", "{q:?}");
        let names = metrics_in(&q.expr);
        assert!(!names.is_empty(), "no metric in {q:?}");
        for n in &names {
            assert!(DRAWN.contains(&n.as_str()), "{n} is not exported: {q:?}");
            used.insert(n.clone());
        }
        let selectors = q
            .expr
            .matches(r#"{job=~"$job", instance=~"$instance""#)
            .count();
        assert_eq!(
            selectors,
            names.len(),
            "every metric selected by job and instance: {q:?}"
        );
    }
    let missing: Vec<_> = DRAWN.iter().filter(|m| !used.contains(**m)).collect();
    assert!(missing.is_empty(), "not drawn: {missing:?}");
    let refs: BTreeSet<(u32, &str)> = queries
        .iter()
        .map(|q| (q.panel, q.ref_id.as_str()))
        .collect();
    assert_eq!(refs.len(), queries.len(), "a refId repeats within a panel");
}

/// Reads the scrape configuration with PyYAML and prints, tab-separated,
/// each job's name, metrics path, scheme and targets.
const LIST_JOBS: &str = r#"
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
for j in c["scrape_configs"]:
    targets = [t for s in j["static_configs"] for t in s["targets"]]
    print(j["job_name"], j.get("metrics_path", "/metrics"), j.get("scheme", "http"),
          *targets, sep="\t")
"#;

/// One job, socks5d, scraping GET /metrics over plain HTTP from ADDR:PORT
/// targets, as --metrics-listen serves it.
#[test]
fn the_scrape_config_scrapes_socks5d() {
    let mut c = Command::new("/usr/bin/python3");
    c.args(["-c", LIST_JOBS]).arg(contrib("prometheus.yml"));
    let out = run(c, "/usr/bin/python3 with PyYAML");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let jobs: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(jobs.len(), 1, "{text}");
    assert_eq!(jobs[0][..3], ["socks5d", "/metrics", "http"], "{text}");
    assert!(jobs[0].len() > 3, "no target: {text}");
    for t in &jobs[0][3..] {
        let addr: std::net::SocketAddr = t
            .parse()
            .unwrap_or_else(|e| panic!("target {t:?} is no ADDR:PORT: {e}"));
        assert!(addr.ip().is_loopback(), "an example on loopback: {t}");
    }
}

#[test]
fn metric_names_are_read_from_queries() {
    assert_eq!(
        metrics_in(r#"topk($top, sum by (user) (rate(socks5d_user_bytes_total{a="b"}[1m])))"#),
        ["socks5d_user_bytes_total"]
    );
    assert_eq!(metrics_in(r#"x{a="{"} / y{}"#), ["x", "y"]);
}
