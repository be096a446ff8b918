//! The report of a comparison, made from its `raw.txt` alone: a Markdown
//! table of medians with min and max, socks5d's ratios to the best peer and
//! to direct, the goals beside the measured ratios, the CPU use of the
//! generator and of each proxy, the errors, the raw lines, and SVG charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use crate::args::Args;
use crate::line::Line;
use crate::stats::Summary;
use crate::svg::{self, Bar, Chart, Group, fmt_value};

/// Which way a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// More is better (rates).
    Higher,
    /// Less is better (times, memory).
    Lower,
    /// Neither: a count shown for context, with no ratio.
    Count,
}

/// One row of the results table.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// The case.
    pub case: &'static str,
    /// The result line's key.
    pub key: &'static str,
    /// What the row is.
    pub label: &'static str,
    /// Unit.
    pub unit: &'static str,
    /// Which way is better.
    pub better: Better,
}

const fn row(
    case: &'static str,
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    better: Better,
) -> Row {
    Row {
        case,
        key,
        label,
        unit,
        better,
    }
}

/// The results table, top to bottom.
#[rustfmt::skip]
pub const ROWS: &[Row] = &[
    row("t1-up", "gib_s", "Throughput, 1 tunnel, upload", "GiB/s", Better::Higher),
    row("t1-down", "gib_s", "Throughput, 1 tunnel, download", "GiB/s", Better::Higher),
    row("t8-up", "gib_s", "Throughput, 8 tunnels, upload", "GiB/s", Better::Higher),
    row("t8-down", "gib_s", "Throughput, 8 tunnels, download", "GiB/s", Better::Higher),
    row("handshake", "cycles_s", "Handshake rate, 8 threads", "cycles/s", Better::Higher),
    row("handshake", "p50_us", "Handshake cycle, p50", "µs", Better::Lower),
    row("handshake", "p99_us", "Handshake cycle, p99", "µs", Better::Lower),
    row("handshake", "proxy_us_cycle", "Handshake, proxy CPU per cycle", "µs", Better::Lower),
    row("handshake", "proxy_user_us_cycle", "… of which in user space", "µs", Better::Lower),
    row("latency", "p50_us", "Latency 64 B ping-pong, p50", "µs", Better::Lower),
    row("latency", "p99_us", "Latency 64 B ping-pong, p99", "µs", Better::Lower),
    row("latency", "p999_us", "Latency 64 B ping-pong, p99.9", "µs", Better::Lower),
    row("latency-pinned", "p50_us", "Latency, pinned to one CPU, p50", "µs", Better::Lower),
    row("latency-pinned", "p99_us", "Latency, pinned to one CPU, p99", "µs", Better::Lower),
    row("latency-pinned", "p999_us", "Latency, pinned to one CPU, p99.9", "µs", Better::Lower),
    row("idle", "pss_kib_per_tunnel", "Memory per idle tunnel, PSS", "KiB", Better::Lower),
    row("idle", "rss_kib_per_tunnel", "Memory per idle tunnel, RSS", "KiB", Better::Lower),
    row("idle", "after_relay_pss_kib_per_tunnel", "… after one byte each way, PSS", "KiB", Better::Lower),
    row("idle", "tunnels", "Idle tunnels held", "tunnels", Better::Count),
    row("churn", "anon_growth_kib", "Anonymous memory growth over the churn cycles", "KiB", Better::Lower),
    row("churn", "rss_growth_kib", "… RSS growth, mapped files included", "KiB", Better::Lower),
    row("churn", "cycles", "Churn cycles counted", "cycles", Better::Count),
    row("udp1-64", "dgrams_s", "UDP echo rate, 64 B, 1 association", "datagrams/s", Better::Higher),
    row("udp1-64", "mib_s", "… payload throughput", "MiB/s", Better::Higher),
    row("udp1-64", "loss_pct", "… datagrams lost", "%", Better::Count),
    row("udp1-1400", "dgrams_s", "UDP echo rate, 1,400 B, 1 association", "datagrams/s", Better::Higher),
    row("udp1-1400", "mib_s", "… payload throughput", "MiB/s", Better::Higher),
    row("udp1-1400", "loss_pct", "… datagrams lost", "%", Better::Count),
    row("udp8-64", "dgrams_s", "UDP echo rate, 64 B, 8 associations", "datagrams/s", Better::Higher),
    row("udp8-64", "mib_s", "… payload throughput", "MiB/s", Better::Higher),
    row("udp8-64", "loss_pct", "… datagrams lost", "%", Better::Count),
    row("udp8-1400", "dgrams_s", "UDP echo rate, 1,400 B, 8 associations", "datagrams/s", Better::Higher),
    row("udp8-1400", "mib_s", "… payload throughput", "MiB/s", Better::Higher),
    row("udp8-1400", "loss_pct", "… datagrams lost", "%", Better::Count),
    row("udp-latency", "p50_us", "UDP latency 64 B, one in flight, p50", "µs", Better::Lower),
    row("udp-latency", "p99_us", "UDP latency 64 B, one in flight, p99", "µs", Better::Lower),
    row("rate1", "of_limit", "Rate limit 8 MiB/s, 1 tunnel: achieved ÷ limit", "×", Better::Count),
    row("rate1", "mib_s", "… achieved", "MiB/s", Better::Count),
    row("rate4", "of_limit", "Rate limit 8 MiB/s, 4 tunnels at once: achieved ÷ limit", "×", Better::Count),
    row("rate4", "mib_s", "… achieved", "MiB/s", Better::Count),
    row("rate4", "tunnel_min_mib_s", "… slowest of the 4 tunnels", "MiB/s", Better::Count),
    row("rate4", "tunnel_max_mib_s", "… fastest of the 4 tunnels", "MiB/s", Better::Count),
    row("rate-unlimited", "gib_s", "Unlimited user beside a rate rule, 1 tunnel, download", "GiB/s", Better::Higher),
    row("rate-unlimited", "baseline_gib_s", "… the same, by turns, with no rate rule", "GiB/s", Better::Higher),
    row("rate-unlimited", "vs_baseline", "… with the rule ÷ without", "×", Better::Count),
    row("rate-unlimited", "proxy_us_per_mib", "… socks5d CPU per MiB, with the rule", "µs", Better::Lower),
    row("rate-unlimited", "baseline_us_per_mib", "… without", "µs", Better::Lower),
];

/// The figure a case is about (printed as each run ends, required by
/// `--strict`).
pub fn primary_metric(case: &str) -> Option<&'static str> {
    match case {
        "t1-up" | "t1-down" | "t8-up" | "t8-down" => Some("gib_s"),
        "handshake" => Some("cycles_s"),
        "latency" | "latency-pinned" => Some("p50_us"),
        "idle" => Some("pss_kib_per_tunnel"),
        "churn" => Some("anon_growth_kib"),
        "udp1-64" | "udp1-1400" | "udp8-64" | "udp8-1400" => Some("dgrams_s"),
        "udp-latency" => Some("p50_us"),
        "rate1" | "rate4" => Some("of_limit"),
        "rate-unlimited" => Some("vs_baseline"),
        _ => None,
    }
}

const US: &str = "socks5d";
const DIRECT: &str = "direct";
/// socks5d judging every request against 1,000 rules.
const RULES1000: &str = "socks5d-rules1000";
/// socks5d behind a balancer: a PROXY v2 header before each handshake.
const PROXYPROTO: &str = "socks5d-proxyproto";
/// socks5d with its users kept in Redis (`--users-redis`).
const REDIS: &str = "socks5d-redis";

/// Whether `peer` is socks5d, with whichever rules: never "the best peer".
fn is_ours(peer: &str) -> bool {
    peer == US || peer.starts_with("socks5d-")
}

/// Everything in a `raw.txt`.
#[derive(Debug, Default)]
pub struct Data {
    /// `# key: value` lines, in order.
    pub meta: Vec<(String, String)>,
    /// Result lines.
    pub lines: Vec<Line>,
    /// The peers, in column order.
    pub peers: Vec<String>,
}

impl Data {
    /// Reads the text of a `raw.txt`.
    pub fn parse(raw: &str) -> Data {
        let mut d = Data::default();
        for l in raw.lines() {
            if let Some(rest) = l.strip_prefix("# ") {
                if let Some((k, v)) = rest.split_once(": ") {
                    d.meta.push((k.to_owned(), v.to_owned()));
                }
            } else if let Some(line) = Line::parse(l) {
                d.lines.push(line);
            }
        }
        d.peers = match d.meta_value("peers") {
            Some(p) => p.split(',').map(str::to_owned).collect(),
            None => Vec::new(),
        };
        for l in &d.lines {
            if let Some(p) = l.get("peer")
                && !d.peers.iter().any(|x| x == p)
            {
                d.peers.push(p.to_owned());
            }
        }
        d
    }

    /// The first `# key:` value.
    pub fn meta_value(&self, key: &str) -> Option<&str> {
        self.meta
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all_meta(&self, key: &str) -> Vec<&str> {
        self.meta
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn runs<'a>(&'a self, case: &'a str, peer: &'a str) -> impl Iterator<Item = &'a Line> + 'a {
        self.lines
            .iter()
            .filter(move |l| l.get("case") == Some(case) && l.get("peer") == Some(peer))
    }

    /// Median, min and max of `key` over the successful runs.
    pub fn summary(&self, case: &str, peer: &str, key: &str) -> Option<Summary> {
        let v: Vec<f64> = self
            .runs(case, peer)
            .filter(|l| l.get("ok") == Some("1"))
            .filter_map(|l| l.number(key))
            .collect();
        Summary::of(&v)
    }

    /// Whether the driver recorded `case` as not applicable to `peer`.
    pub fn not_applicable(&self, case: &str, peer: &str) -> bool {
        let pair = format!("{case} {peer}");
        self.all_meta("not applicable").contains(&pair.as_str())
    }

    /// The best median among the Dante peers (with and without
    /// authentication).
    pub fn best_dante(&self, row: &Row) -> Option<(String, f64)> {
        self.peers
            .iter()
            .filter(|p| p.starts_with("dante"))
            .filter_map(|p| Some((p.clone(), self.summary(row.case, p, row.key)?.median)))
            .reduce(|a, b| if b.1 > a.1 { b } else { a })
    }

    fn failed_runs(&self, case: &str, peer: &str) -> usize {
        let bad_lines = self
            .runs(case, peer)
            .filter(|l| l.get("ok") != Some("1"))
            .count();
        let needle = format!("case={case} peer={peer} ");
        bad_lines
            + self
                .all_meta("failed")
                .iter()
                .filter(|f| f.starts_with(&needle))
                .count()
    }

    /// The best median among the peers that are neither socks5d (with any
    /// rules) nor direct.
    pub fn best_peer(&self, row: &Row) -> Option<(String, f64)> {
        self.peers
            .iter()
            .filter(|p| !is_ours(p) && *p != DIRECT)
            .filter_map(|p| Some((p.clone(), self.summary(row.case, p, row.key)?.median)))
            .reduce(|a, b| {
                let b_wins = match row.better {
                    Better::Higher | Better::Count => b.1 > a.1,
                    Better::Lower => b.1 < a.1,
                };
                if b_wins { b } else { a }
            })
    }

    fn median(&self, case: &str, peer: &str, key: &str) -> Option<f64> {
        self.summary(case, peer, key).map(|s| s.median)
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.2}×"))
}

/// Growth of anonymous memory over the churn cycles that still counts as
/// none: 16 pages.
const LEAK_TOLERANCE_KIB: f64 = 64.0;

/// A whole number with thousands separators: `3,420`, `16`, `-1,024`.
fn fmt_int(v: f64) -> String {
    if v.abs() >= 1000.0 {
        fmt_value(v)
    } else {
        format!("{v:.0}")
    }
}

/// A whole number with its sign: `+16`, `-10`, `0`.
fn fmt_signed(v: f64) -> String {
    if v > 0.0 {
        format!("+{}", fmt_int(v))
    } else {
        fmt_int(v)
    }
}

fn cell(s: Option<Summary>, failed: usize) -> String {
    let mut c = match s {
        None => "—".to_owned(),
        Some(s) if s.n == 1 || s.min == s.max => fmt_value(s.median),
        Some(s) => format!(
            "{} ({}–{})",
            fmt_value(s.median),
            fmt_value(s.min),
            fmt_value(s.max)
        ),
    };
    if failed > 0 {
        let _ = write!(c, " ✗{failed}");
    }
    c
}

/// One goal of the issue, judged on the medians.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The goal as written in the issue.
    pub goal: &'static str,
    /// The cases it is judged on.
    pub cases: &'static [&'static str],
    /// What was measured.
    pub measured: String,
    /// Met, missed, or not measured.
    pub met: Option<bool>,
}

fn row_of(case: &str, key: &str) -> &'static Row {
    ROWS.iter()
        .find(|r| r.case == case && r.key == key)
        .expect("goals only use rows of ROWS")
}

/// The goals against the measured medians.
pub fn verdicts(d: &Data) -> Vec<Verdict> {
    let mut v = Vec::new();
    let med = |case: &str, peer: &str, key: &str| d.median(case, peer, key);

    // Upload and download against direct: the text and whether both reach
    // `at_least`.
    let vs_direct = |up: &str, down: &str, at_least: f64| {
        let mut text = Vec::new();
        let mut met = Vec::new();
        for (case, dir) in [(up, "upload"), (down, "download")] {
            let r = ratio(med(case, US, "gib_s"), med(case, DIRECT, "gib_s"));
            text.push(format!("{dir} {}", fmt_ratio(r)));
            met.push(r.map(|r| r >= at_least));
        }
        (
            format!("{} of direct", text.join(", ")),
            both_met(met[0], met[1]),
        )
    };

    let (measured, met) = vs_direct("t1-up", "t1-down", 0.75);
    v.push(Verdict {
        goal: "Throughput, 1 tunnel: at least 75% of direct",
        cases: &["t1-up", "t1-down"],
        measured,
        met,
    });

    let mut text = Vec::new();
    let mut met = Vec::new();
    for (case, dir) in [("t1-up", "upload"), ("t1-down", "download")] {
        let best = d.best_peer(row_of(case, "gib_s"));
        let r = ratio(med(case, US, "gib_s"), best.as_ref().map(|b| b.1));
        let who = best.map_or(String::new(), |b| format!(" ({})", b.0));
        text.push(format!("{dir} {}{who}", fmt_ratio(r)));
        met.push(r.map(|r| r >= 1.5));
    }
    v.push(Verdict {
        goal: "Throughput, 1 tunnel: at least 1.5 times the best peer",
        cases: &["t1-up", "t1-down"],
        measured: format!("{} of the best peer", text.join(", ")),
        met: both_met(met[0], met[1]),
    });

    let (measured, met) = vs_direct("t8-up", "t8-down", 0.75);
    v.push(Verdict {
        goal: "Throughput, 8 tunnels: at least 75% of direct",
        cases: &["t8-up", "t8-down"],
        measured,
        met,
    });

    let best = d.best_peer(row_of("handshake", "cycles_s"));
    let r = ratio(med("handshake", US, "cycles_s"), best.as_ref().map(|b| b.1));
    // The CPU one cycle costs each proxy says how much of the rate is the
    // proxy's doing when the generator shares the CPUs.
    let cost = match (&best, med("handshake", US, "proxy_us_cycle")) {
        (Some((peer, _)), Some(ours)) => match med("handshake", peer, "proxy_us_cycle") {
            Some(theirs) => format!(
                "; CPU per cycle {} µs against {} µs ({:.2}× less)",
                fmt_value(ours),
                fmt_value(theirs),
                theirs / ours
            ),
            None => String::new(),
        },
        _ => String::new(),
    };
    v.push(Verdict {
        goal: "Handshake rate: at least 2 times the best peer",
        cases: &["handshake"],
        measured: format!(
            "{} of the best peer{}{cost}",
            fmt_ratio(r),
            best.map_or(String::new(), |b| format!(" ({})", b.0))
        ),
        met: r.map(|r| r >= 2.0),
    });

    let (ours, direct) = (
        med("latency-pinned", US, "p50_us"),
        med("latency-pinned", DIRECT, "p50_us"),
    );
    v.push(Verdict {
        goal: "Latency, pinned: p50 within 10 µs of direct",
        cases: &["latency-pinned"],
        measured: match (ours, direct) {
            (Some(o), Some(dr)) => format!(
                "{} µs vs direct {} µs: {:+.1} µs",
                fmt_value(o),
                fmt_value(dr),
                o - dr
            ),
            _ => "—".into(),
        },
        met: ours.zip(direct).map(|(o, dr)| o - dr <= 10.0),
    });

    let best = d.best_peer(row_of("latency-pinned", "p99_us"));
    let ours = med("latency-pinned", US, "p99_us");
    v.push(Verdict {
        goal: "Latency, pinned: p99 no worse than the best peer",
        cases: &["latency-pinned"],
        measured: match (ours, &best) {
            (Some(o), Some((peer, b))) => {
                format!("{} µs vs {} µs ({peer})", fmt_value(o), fmt_value(*b))
            }
            _ => "—".into(),
        },
        met: ours.zip(best.map(|b| b.1)).map(|(o, b)| o <= b),
    });

    let pss = med("idle", US, "pss_kib_per_tunnel");
    let rss = med("idle", US, "rss_kib_per_tunnel");
    let tunnels = med("idle", US, "tunnels");
    v.push(Verdict {
        goal: "Memory: at most 1 KiB of process memory per idle tunnel at 9,000 tunnels",
        cases: &["idle"],
        measured: match (pss, tunnels) {
            (Some(p), Some(t)) => format!(
                "{} KiB (PSS; RSS {} KiB) at {} tunnels",
                fmt_value(p),
                rss.map_or("—".into(), fmt_value),
                fmt_value(t)
            ),
            _ => "—".into(),
        },
        met: match (pss, tunnels) {
            (Some(p), Some(t)) if t >= 9_000.0 => Some(p <= 1.0),
            _ => None,
        },
    });

    // Judged on anonymous memory (heap, stacks), where a leak grows: the
    // pages of mapped files (the binary's code) come and go as the kernel
    // reclaims them and as code paths are first run.
    let before = med("churn", US, "anon_before_kib");
    let after = med("churn", US, "anon_after_kib");
    let growth = med("churn", US, "anon_growth_kib");
    let rss = med("churn", US, "rss_growth_kib");
    let cycles = med("churn", US, "cycles");
    let errors: f64 = d.runs("churn", US).filter_map(|l| l.number("errors")).sum();
    v.push(Verdict {
        goal: "Memory: no growth after 1,000,000 handshake cycles (anonymous memory before and after, 64 KiB allowed)",
        cases: &["churn"],
        measured: match (before, after, growth, cycles) {
            (Some(b), Some(a), Some(g), Some(n)) => format!(
                "anonymous memory {} KiB before, {} KiB after {} cycles: {} KiB (RSS with \
                 mapped files: {} KiB; {} errors)",
                fmt_int(b),
                fmt_int(a),
                fmt_int(n),
                fmt_signed(g),
                rss.map_or("—".into(), fmt_signed),
                fmt_int(errors)
            ),
            _ => "—".into(),
        },
        // A leak of one small allocation (32 bytes) per cycle would be
        // 30 MiB over a million; the allocator's own settling is a few
        // pages. Fewer cycles (the quick run) are not judged.
        met: match (growth, cycles) {
            (Some(g), Some(n)) if n >= 1_000_000.0 => Some(g <= LEAK_TOLERANCE_KIB),
            _ => None,
        },
    });

    // UDP, 1,400-byte datagrams, one association and eight: the rate of
    // echoes against the best Dante and against direct.
    let udp_cases = [
        ("udp1-1400", "1 association"),
        ("udp8-1400", "8 associations"),
    ];
    let mut text = Vec::new();
    let mut met = Vec::new();
    for (case, what) in udp_cases {
        let best = d.best_dante(row_of(case, "dgrams_s"));
        let r = ratio(med(case, US, "dgrams_s"), best.as_ref().map(|b| b.1));
        let who = best.map_or(String::new(), |b| format!(" ({})", b.0));
        text.push(format!("{what} {}{who}", fmt_ratio(r)));
        met.push(r.map(|r| r >= 2.0));
    }
    v.push(Verdict {
        goal: "UDP, 1,400-byte datagrams: at least 2 times Dante's datagram rate",
        cases: &["udp1-1400", "udp8-1400"],
        measured: format!("{} of Dante's", text.join(", ")),
        met: both_met(met[0], met[1]),
    });
    let mut text = Vec::new();
    let mut met = Vec::new();
    for (case, what) in udp_cases {
        let r = ratio(med(case, US, "dgrams_s"), med(case, DIRECT, "dgrams_s"));
        text.push(format!("{what} {}", fmt_ratio(r)));
        met.push(r.map(|r| r >= 0.5));
    }
    v.push(Verdict {
        goal: "UDP, 1,400-byte datagrams: at least 50% of direct's datagram rate",
        cases: &["udp1-1400", "udp8-1400"],
        measured: format!("{} of direct", text.join(", ")),
        met: both_met(met[0], met[1]),
    });
    if d.peers.iter().any(|p| p == RULES1000) {
        v.push(judging_verdict(d));
    }
    if d.peers.iter().any(|p| p == PROXYPROTO) {
        v.push(proxy_header_verdict(d));
    }
    if d.peers.iter().any(|p| p == REDIS) {
        v.push(users_redis_verdict(d));
    }
    v.push(rate_verdict(d));
    v.push(unlimited_verdict(d));
    v
}

/// How far the 1,000-rule socks5d's handshake CPU per cycle may be above
/// socks5d's (with its one-line file) and still count as not showing:
/// the spread of the rounds is about as wide.
const JUDGING_TOLERANCE: f64 = 1.10;

/// Judging 1,000 rules against judging one: CPU per handshake cycle and
/// the rate, `socks5d-rules1000` against `socks5d`, in the same run.
fn judging_verdict(d: &Data) -> Verdict {
    let a = Against::of(d, RULES1000);
    let ((cpu_many, cpu_one), (rate_many, rate_one)) = (a.cpu, a.rate);
    let cpu = a.cpu_ratio();
    let measured = match (cpu_many, cpu_one) {
        (Some(m), Some(o)) => format!(
            "CPU per cycle {} µs with 1,000 rules against {} µs with one ({}); {} against {} \
             cycles/s ({})",
            fmt_value(m),
            fmt_value(o),
            fmt_ratio(cpu),
            rate_many.map_or("—".into(), fmt_int),
            rate_one.map_or("—".into(), fmt_int),
            fmt_ratio(a.rate_ratio())
        ),
        _ => "—".into(),
    };
    Verdict {
        goal: "Judging: 1,000 rules must not show in handshake CPU per cycle (socks5d-rules1000 \
               within 10% of socks5d)",
        cases: &["handshake"],
        measured,
        met: cpu.map(|r| r <= JUDGING_TOLERANCE),
    }
}

/// A PROXY v2 header before each handshake against none: the handshake
/// rate and CPU per cycle, `socks5d-proxyproto` against `socks5d`, in the
/// same run. Within the rounds' spread, as for judging.
fn proxy_header_verdict(d: &Data) -> Verdict {
    let a = Against::of(d, PROXYPROTO);
    let ((rate_pp, rate_one), (cpu_pp, cpu_one)) = (a.rate, a.cpu);
    let rate = a.rate_ratio();
    let measured = match (rate_pp, rate_one) {
        (Some(p), Some(o)) => format!(
            "{} cycles/s behind a balancer against {} without ({}); CPU per cycle {} against {} \
             µs ({})",
            fmt_int(p),
            fmt_int(o),
            fmt_ratio(rate),
            cpu_pp.map_or("—".into(), fmt_value),
            cpu_one.map_or("—".into(), fmt_value),
            fmt_ratio(a.cpu_ratio())
        ),
        _ => "—".into(),
    };
    Verdict {
        goal: "PROXY protocol: a v2 header before each handshake must not show in the handshake \
               rate (socks5d-proxyproto within 10% of socks5d)",
        cases: &["handshake"],
        measured,
        met: rate.map(|r| r >= 1.0 / JUDGING_TOLERANCE),
    }
}

/// Users kept in Redis against users given with `-u`: the table is in
/// memory either way, so a log in must cost the same. The handshake rate
/// and CPU per cycle, `socks5d-redis` against `socks5d` in the same run,
/// each within the rounds' spread; the Redis server's own CPU over a run
/// is shown beside them.
fn users_redis_verdict(d: &Data) -> Verdict {
    let a = Against::of(d, REDIS);
    let ((rate_r, rate_one), (cpu_r, cpu_one)) = (a.rate, a.cpu);
    let (rate, cpu) = (a.rate_ratio(), a.cpu_ratio());
    let measured = match (rate_r, rate_one) {
        (Some(r), Some(o)) => format!(
            "{} cycles/s with the users in Redis against {} with -u ({}); CPU per cycle {} \
             against {} µs ({}); the Redis server {} CPU-s a run",
            fmt_int(r),
            fmt_int(o),
            fmt_ratio(rate),
            cpu_r.map_or("—".into(), fmt_value),
            cpu_one.map_or("—".into(), fmt_value),
            fmt_ratio(cpu),
            d.median("handshake", REDIS, "redis_cpu_s")
                .map_or("—".into(), |s| format!("{s:.2}"))
        ),
        _ => "—".into(),
    };
    Verdict {
        goal: "Users in Redis: held in memory, a log in must cost what it costs with -u \
               (socks5d-redis within 10% of socks5d, in rate and in CPU per cycle)",
        cases: &["handshake"],
        measured,
        met: both_met(
            rate.map(|r| r >= 1.0 / JUDGING_TOLERANCE),
            cpu.map(|c| c <= JUDGING_TOLERANCE),
        ),
    }
}

/// A peer's handshake rate and CPU per cycle against socks5d's in the same
/// run (medians of the rounds): the data of the verdicts that judge one
/// feature's cost by a peer that differs from socks5d only by it.
struct Against {
    /// The peer's cycles/s, then socks5d's.
    rate: (Option<f64>, Option<f64>),
    /// The peer's CPU µs per cycle, then socks5d's.
    cpu: (Option<f64>, Option<f64>),
}

impl Against {
    fn of(d: &Data, peer: &str) -> Against {
        let med = |peer: &str, key: &str| d.median("handshake", peer, key);
        Against {
            rate: (med(peer, "cycles_s"), med(US, "cycles_s")),
            cpu: (med(peer, "proxy_us_cycle"), med(US, "proxy_us_cycle")),
        }
    }

    /// The peer's rate over socks5d's.
    fn rate_ratio(&self) -> Option<f64> {
        ratio(self.rate.0, self.rate.1)
    }

    /// The peer's CPU per cycle over socks5d's.
    fn cpu_ratio(&self) -> Option<f64> {
        ratio(self.cpu.0, self.cpu.1)
    }
}

/// How far from its limit a limited user may be, either way, over the
/// window the goal names.
const RATE_TOLERANCE: f64 = 0.10;
/// The window the rate goal is judged over, in seconds.
const RATE_WINDOW: f64 = 5.0;

/// The limited user's bytes against its limit, one tunnel and four.
fn rate_verdict(d: &Data) -> Verdict {
    let cases = [("rate1", "1 tunnel"), ("rate4", "4 tunnels")];
    let mut text = Vec::new();
    let mut met = Vec::new();
    for (case, what) in cases {
        let r = d.median(case, US, "of_limit");
        let window = d.median(case, US, "window_s");
        text.push(format!("{what} {}", fmt_ratio(r)));
        met.push(match (r, window) {
            (Some(r), Some(w)) if w >= RATE_WINDOW => Some((r - 1.0).abs() <= RATE_TOLERANCE),
            _ => None,
        });
    }
    let limit = d
        .median("rate1", US, "limit_b_s")
        .or(d.median("rate4", US, "limit_b_s"));
    let window = d
        .median("rate1", US, "window_s")
        .or(d.median("rate4", US, "window_s"));
    let measured = match (limit, window) {
        (Some(l), Some(w)) => format!(
            "{} of {} MiB/s over {} s{}",
            text.join(", "),
            fmt_value(l / f64::from(1u32 << 20)),
            fmt_value(w),
            if w < RATE_WINDOW {
                " (judged over 5 s only)"
            } else {
                ""
            }
        ),
        _ => "—".into(),
    };
    Verdict {
        goal: "Rate limit: a limited user's tunnels together within 10% of the limit over 5 s \
               (neither under 90% nor over 110%), one tunnel and 4 at once",
        cases: &["rate1", "rate4"],
        measured,
        met: both_met(met[0], met[1]),
    }
}

/// How much slower than with no rate rule an unlimited user may be on a
/// socks5d that has one and still count as unaffected.
const UNLIMITED_TOLERANCE: f64 = 0.90;

/// An unlimited user's download on socks5d with a rate rule (for another
/// user) against socks5d with none, by turns in each run: the median of
/// the runs' ratios.
fn unlimited_verdict(d: &Data) -> Verdict {
    let with = d.median("rate-unlimited", US, "gib_s");
    let without = d.median("rate-unlimited", US, "baseline_gib_s");
    let r = d.median("rate-unlimited", US, "vs_baseline");
    let cpu = d
        .median("rate-unlimited", US, "cpu_vs_baseline")
        .map_or(String::new(), |c| {
            format!(
                "; CPU per MiB {} of socks5d's with no rule",
                fmt_ratio(Some(c))
            )
        });
    Verdict {
        goal: "Rate rules cost an unlimited user nothing: its 1-tunnel download at least 90% of \
               socks5d's with no rate rule",
        cases: &["rate-unlimited"],
        measured: match (with, without) {
            (Some(w), Some(o)) => format!(
                "{} GiB/s against {} GiB/s ({}){cpu}",
                fmt_value(w),
                fmt_value(o),
                fmt_ratio(r)
            ),
            _ => "—".into(),
        },
        met: r.map(|r| r >= UNLIMITED_TOLERANCE),
    }
}

/// Both met, when both were judged.
fn both_met(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a && b),
        _ => None,
    }
}

/// The charts of the cases that ran.
fn charts(d: &Data) -> Vec<(&'static str, Chart)> {
    all_charts(d)
        .into_iter()
        // A chart of cases that never ran (a run of some cases only) is left out.
        .filter(|(_, c)| c.groups.iter().any(|g| !g.bars.is_empty()))
        .collect()
}

/// Every chart, by file name.
fn all_charts(d: &Data) -> Vec<(&'static str, Chart)> {
    let group = |label: &str, case: &str, key: &str, skip_direct: bool| Group {
        label: label.to_owned(),
        bars: d
            .peers
            .iter()
            .filter(|p| !(skip_direct && *p == DIRECT))
            .filter_map(|p| {
                let s = d.summary(case, p, key)?;
                Some(Bar {
                    peer: p.clone(),
                    median: s.median,
                    min: s.min,
                    max: s.max,
                })
            })
            .collect(),
    };
    vec![
        (
            "throughput.svg",
            Chart {
                title: "Throughput".into(),
                unit: "GiB/s".into(),
                note: "Fixed volume through the proxy, GiB/s: higher is better. Bar: median; whisker: min to max."
                    .into(),
                groups: vec![
                    group("1 tunnel, upload", "t1-up", "gib_s", false),
                    group("1 tunnel, download", "t1-down", "gib_s", false),
                    group("8 tunnels, upload", "t8-up", "gib_s", false),
                    group("8 tunnels, download", "t8-down", "gib_s", false),
                ],
                log_scale: false,
            },
        ),
        (
            "handshake.svg",
            Chart {
                title: "Handshake rate".into(),
                unit: "cycles/s".into(),
                note: "Connect, greeting, log-in, CONNECT, 1 byte each way, close; 8 client threads: higher is better."
                    .into(),
                groups: vec![group("full cycles per second", "handshake", "cycles_s", false)],
                log_scale: false,
            },
        ),
        (
            "latency.svg",
            Chart {
                title: "Latency, 64-byte ping-pong".into(),
                unit: "µs".into(),
                note: "Round-trip time through one tunnel: lower is better. Pinned: proxy and generator on CPU 0. \
                       Logarithmic scale."
                    .into(),
                groups: vec![
                    group("p50", "latency", "p50_us", false),
                    group("p99", "latency", "p99_us", false),
                    group("p50, pinned", "latency-pinned", "p50_us", false),
                    group("p99, pinned", "latency-pinned", "p99_us", false),
                ],
                log_scale: true,
            },
        ),
        (
            "memory.svg",
            Chart {
                title: "Memory per idle tunnel".into(),
                unit: "KiB".into(),
                note: "Growth of the proxy's process tree over its baseline, per idle tunnel: lower is \
                       better. Logarithmic scale."
                    .into(),
                log_scale: true,
                groups: vec![
                    group("PSS", "idle", "pss_kib_per_tunnel", true),
                    group("RSS", "idle", "rss_kib_per_tunnel", true),
                ],
            },
        ),
        (
            "udp.svg",
            Chart {
                title: "UDP echo rate".into(),
                unit: "datagrams/s".into(),
                note: "Datagrams echoed through UDP associations, 64 in flight each: higher is better. \
                       Bar: median; whisker: min to max."
                    .into(),
                groups: vec![
                    group("64 B, 1 association", "udp1-64", "dgrams_s", false),
                    group("1,400 B, 1 association", "udp1-1400", "dgrams_s", false),
                    group("64 B, 8 associations", "udp8-64", "dgrams_s", false),
                    group("1,400 B, 8 associations", "udp8-1400", "dgrams_s", false),
                ],
                log_scale: false,
            },
        ),
    ]
}

/// The results table and the goals, as Markdown (also what the README's
/// Performance section shows).
pub fn tables(d: &Data) -> String {
    let mut s = String::new();
    let _ = write!(s, "| measure | unit |");
    for p in &d.peers {
        let _ = write!(s, " {p} |");
    }
    let _ = writeln!(s, " socks5d ÷ best peer | socks5d ÷ direct |");
    let _ = write!(s, "|---|---|");
    for _ in &d.peers {
        let _ = write!(s, "---:|");
    }
    let _ = writeln!(s, "---:|---:|");
    for r in ROWS {
        if !d.lines.iter().any(|l| l.get("case") == Some(r.case)) {
            continue;
        }
        let arrow = match r.better {
            Better::Higher => " ↑",
            Better::Lower => " ↓",
            Better::Count => "",
        };
        let _ = write!(s, "| {} | {}{arrow} |", r.label, r.unit);
        for p in &d.peers {
            let text = if d.not_applicable(r.case, p) {
                "n/a".to_owned()
            } else {
                cell(d.summary(r.case, p, r.key), d.failed_runs(r.case, p))
            };
            let _ = write!(s, " {text} |");
        }
        if r.better == Better::Count {
            let _ = writeln!(s, " | |");
            continue;
        }
        let ours = d.median(r.case, US, r.key);
        let best = d.best_peer(r);
        let vs_best = match &best {
            Some((who, b)) => match ratio(ours, Some(*b)) {
                Some(x) => format!("{x:.2}× ({who})"),
                None => "—".into(),
            },
            None => "—".into(),
        };
        let vs_direct = fmt_ratio(ratio(ours, d.median(r.case, DIRECT, r.key)));
        let _ = writeln!(s, " {vs_best} | {vs_direct} |");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "| goal | measured (medians) | met |");
    let _ = writeln!(s, "|---|---|---|");
    // Goals of cases that never ran (a run of some cases only) are left out.
    let ran = |case: &str| d.lines.iter().any(|l| l.get("case") == Some(case));
    for v in verdicts(d)
        .into_iter()
        .filter(|v| v.cases.iter().any(|c| ran(c)))
    {
        let met = match v.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(s, "| {} | {} | {met} |", v.goal, v.measured);
    }
    s
}

fn cpu_table(d: &Data) -> String {
    let mut s = String::new();
    let _ = write!(s, "| case |");
    for p in &d.peers {
        let _ = write!(s, " {p} |");
    }
    let _ = writeln!(s);
    let _ = write!(s, "|---|");
    for _ in &d.peers {
        let _ = write!(s, "---:|");
    }
    let _ = writeln!(s);
    let mut cases: Vec<&str> = Vec::new();
    for l in &d.lines {
        if let Some(c) = l.get("case")
            && !cases.contains(&c)
        {
            cases.push(c);
        }
    }
    for case in cases {
        let _ = write!(s, "| {case} |");
        for p in &d.peers {
            let g = d.median(case, p, "gen_cpu");
            let pr = d.median(case, p, "proxy_cpu");
            let cpus = d.median(case, p, "cpus");
            let text = match (g, cpus) {
                (Some(g), Some(c)) => {
                    let mark = if g >= 0.9 * c { " ⚠" } else { "" };
                    match pr {
                        Some(pr) => format!("{g:.2} / {pr:.2} of {c:.0}{mark}"),
                        None => format!("{g:.2} of {c:.0}{mark}"),
                    }
                }
                _ => "—".into(),
            };
            let _ = write!(s, " {text} |");
        }
        let _ = writeln!(s);
    }
    s
}

fn errors_section(d: &Data) -> String {
    let mut s = String::new();
    // (case, peer) -> kind -> count, over all runs.
    let mut counts: BTreeMap<(String, String), BTreeMap<String, u64>> = BTreeMap::new();
    for l in &d.lines {
        let n = l.number("errors").unwrap_or(0.0);
        if n == 0.0 && l.get("ok") == Some("1") {
            continue;
        }
        let key = (
            l.get("case").unwrap_or("?").to_owned(),
            l.get("peer").unwrap_or("?").to_owned(),
        );
        let entry = counts.entry(key).or_default();
        for (k, v) in l.fields() {
            if let Some(kind) = k.strip_prefix("err_") {
                *entry.entry(kind.to_owned()).or_default() += v.parse::<u64>().unwrap_or(0);
            }
        }
        if l.get("ok") != Some("1") {
            *entry.entry("failed runs".to_owned()).or_default() += 1;
        }
    }
    for ((case, peer), kinds) in &counts {
        let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(s, "- {case}, {peer}: {}", list.join(", "));
    }
    for f in d.all_meta("failed") {
        let _ = writeln!(s, "- run failed: {f}");
    }
    if s.is_empty() {
        s.push_str("None: every run of every peer completed with no error.\n");
    }
    s
}

/// The whole report as Markdown; `raw` is the `raw.txt` it was made from.
pub fn markdown(d: &Data, raw: &str) -> String {
    let mut s = String::new();
    let meta = |k: &str| d.meta_value(k).unwrap_or("?");
    let _ = writeln!(s, "# socks5d benchmark ({} run)\n", meta("mode"));
    let _ = writeln!(
        s,
        "Measured {} on {} CPUs: {}{}, {}, {} memory. Open-file limit {}.",
        meta("date"),
        meta("cpus").trim_end_matches(" (nproc)"),
        meta("cpu"),
        d.meta_value("hypervisor")
            .map_or(String::new(), |h| format!(" ({h} guest)")),
        meta("kernel"),
        meta("memory"),
        meta("nofile"),
    );
    let _ = writeln!(
        s,
        "Load average (1, 5, 15 min) {} at the start, {} at the end; the whole run took {}.",
        meta("load at start"),
        meta("load at end"),
        meta("elapsed")
    );
    let _ = writeln!(
        s,
        "Reproduce with `{}` (report in `{}/`). {} round(s); every case runs \
         against every peer back to back, in an order that rotates, and each proxy is started \
         fresh for each run on 127.0.0.1.\n",
        meta("command"),
        meta("out"),
        d.meta_value("rounds run").unwrap_or(meta("rounds"))
    );
    let programs: Vec<String> = ["socks5d", "microsocks", "dante"]
        .iter()
        .filter_map(|k| d.meta_value(k).map(str::to_owned))
        .collect();
    let _ = writeln!(
        s,
        "Peers: {}. Programs: {}. socks5d, microsocks and `dante` log clients in with RFC 1929 \
         username/password; Dante checks a throw-away system user's password hash, which \
         slows its handshakes, so `dante-noauth` (no authentication) is measured too.",
        d.peers.join(", "),
        programs.join("; ")
    );
    if d.peers.iter().any(|p| p == RULES1000) {
        let _ = writeln!(
            s,
            "`socks5d-rules1000` is socks5d judging every request against 1,000 access rules \
             (see how each case is measured)."
        );
    }
    if d.peers.iter().any(|p| p == PROXYPROTO) {
        let _ = writeln!(
            s,
            "`socks5d-proxyproto` is socks5d with `--proxy-protocol-from 127.0.0.1/32`, the \
             generator sending a PROXY protocol v2 header before each handshake, as a balancer \
             with `send-proxy-v2` does (handshake case only)."
        );
    }
    if d.peers.iter().any(|p| p == REDIS) {
        let _ = writeln!(
            s,
            "`socks5d-redis` is socks5d with `--users-redis`, its user added with `socks5d user \
             add --users-redis` to a `redis-server` of the run's own on 127.0.0.1 ({}), at the \
             default hash cost (handshake case only).",
            d.meta_value("redis").unwrap_or("version unknown")
        );
    }
    for note in d.all_meta("note") {
        let _ = writeln!(s, "\nNote: {note}.");
    }
    let left = d.all_meta("left out");
    if !left.is_empty() {
        let _ = writeln!(s, "\nLeft out: {}.", left.join("; "));
    }
    if meta("mode") == "quick" {
        let _ = writeln!(
            s,
            "\nThis is the quick run: small volumes and counts, one pass. Its figures are a \
             smoke test; the goals are judged on `make bench`."
        );
    }
    let _ = writeln!(s, "\n## Results\n");
    let _ = writeln!(
        s,
        "Median (min–max) over the rounds; ↑ higher is better, ↓ lower is better; ✗N: N runs \
         failed (see Errors). The ratios divide socks5d's median by the best peer's (microsocks \
         or Dante, the best of them for that row) and by direct's.\n"
    );
    s.push_str(&tables(d));
    let _ = writeln!(s, "\n## Charts\n");
    for (file, chart) in charts(d) {
        let _ = writeln!(s, "![{}]({file})\n", chart.title);
    }
    let _ = writeln!(s, "## CPU use\n");
    let _ = writeln!(
        s,
        "Median CPUs used during the measured part: generator (its targets included) / proxy \
         (its whole process tree), of the CPUs the generator may use. ⚠ marks a generator using \
         90% or more of them: that figure may be limited by the generator rather than the proxy.\n"
    );
    s.push_str(&cpu_table(d));
    let _ = writeln!(s, "\n## How each case is measured\n");
    s.push_str(HOW);
    let _ = writeln!(s, "\n## Errors\n");
    s.push_str(&errors_section(d));
    let _ = writeln!(s, "\n## Raw lines\n\n```text");
    s.push_str(raw.trim_end());
    let _ = writeln!(s, "\n```");
    s
}

const HOW: &str = "\
- **Throughput**: the tunnels are opened first; the clock runs from when all are ready until \
the last one is done. Upload: the sink answers one byte once every byte has arrived. Download: \
the last byte is read. The volume is shared evenly among the tunnels.
- **Handshake rate**: 8 threads, each running full cycles back to back (TCP connect, greeting, \
RFC 1929 log-in where the peer asks for it, CONNECT to the echo target by IPv4 address, one byte \
each way, close) after a warm-up. The target closes first and the client closes once the proxy \
has passed that FIN on, so that no TIME_WAIT holds an ephemeral port. Failed cycles are counted \
by kind, never dropped.
- **Latency**: one tunnel, 64 bytes each way per round trip, `TCP_NODELAY`, percentiles by \
nearest rank after a warm-up. Pinned: `taskset -c 0` on the proxy (socks5d with `--workers 1`) \
and on the generator: the stable figure on a shared two-CPU machine.
- **Idle memory**: after a 16-tunnel warm-up, the proxy's memory (RSS and PSS summed over its \
process tree, from `/proc/PID/smaps_rollup`) is the baseline; then the tunnels are opened and \
left idle for a moment, the memory is read again, and the growth is divided by the tunnels. \
Kernel socket buffers are not process memory and are not counted. Then every tunnel must still \
relay one byte each way, and the memory is read once more.
- **Memory churn** (socks5d only, in the first round only): 8 threads run the handshake cycle \
above back to back, 200,000 cycles of warm-up (the buffer pool and the session slab reach the \
size the load needs) and then 1,000,000 counted ones (2,000 and 20,000 in \
the quick run). The proxy's memory, summed over its process tree, is read once the warm-up \
cycles are over and again 0.2 s after the last counted one. The goal is judged on anonymous \
memory (heap and stacks, where a leak grows; RSS also counts pages of mapped files, which the \
kernel drops and reads back at will): met when it grew by at most 64 KiB (16 pages) over a \
million cycles, where one leaked 32-byte allocation per cycle would be 30 MiB.
- **UDP** (RFC 1928 section 7): each association is its own TCP control connection (greeting, \
log-in where the peer asks for it, UDP ASSOCIATE naming the client's UDP socket) and that UDP \
socket, connected to the relay the proxy names; every datagram carries the UDP request header \
to an echo socket of its own on 127.0.0.1 (a thread each), which sends it back through the \
relay. Direct: the same client and echo sockets with no proxy and no header. Each association \
keeps at most 64 datagrams in flight (sent and received in batches, `sendmmsg`/`recvmmsg`); a \
datagram not echoed within 200 ms is lost. After a warm-up the clock runs for a fixed time (0.5 s; \
0.2 s in the quick run): the rate counts echoes received in it, the loss the datagrams sent in \
it that never came back. Payload sizes are 64 and 1,400 bytes, header not counted. Latency: \
one datagram in flight, each round trip timed. microsocks has no UDP ASSOCIATE: n/a.
- **Cost of judging** (the peer `socks5d-rules1000`, where chosen): socks5d started with a rules \
file of 1,000 rules, 999 that match none of the benchmark's requests and a last `allow`. They are \
of every kind: other users (alone, and with domains, ports and rates), privileged ports from and \
to loopback, other client and target blocks (IPv4 and IPv6), names and domains, BIND and UDP to \
loopback, administrators only; many hold on every condition but one, so each request is weighed \
against them. It runs the handshake case only, in the same rounds as socks5d with its one-line \
`allow`, and the goal sets their proxy CPU per cycle side by side.
- **Rate limits** (socks5d only; n/a for the other peers): socks5d is started with the rules \
`allow user limited rate 8M` and `allow`, and the user `limited` besides the bench's. One \
tunnel of `limited`, then 4 at once, are opened and then download from the source for 5 s (1 s \
in the quick run; in the full run, in the first round only): the bytes that arrived in that \
time over 8 MiB/s (8 × 1024² bytes per second) times the time is achieved ÷ limit. The clock \
starts with a full bucket, socks5d's burst of a quarter of a second of the rate, which counts. \
Then the bench's own user, whom no rate rule names, downloads through one tunnel on that \
socks5d and on a second socks5d with the one-line `allow`, started beside it, by turns of a \
eighth of a second (A B, B A, ...), 1 s on each (0.4 s in turns of 0.2 s in the quick run): \
the median over the pairs of turns of the bytes with the rule over the bytes without is what a \
rate rule costs the tunnels it does not limit (the table gives the median of the runs' medians). \
Each socks5d's CPU time over the run (it idles during the other's turns) per MiB it moved is \
given too: a busy machine disturbs it less than the rates.
";

/// Reads `dir/raw.txt`, writes `dir/report.md` and the charts; returns the
/// report's path.
pub fn write(dir: &Path) -> Result<PathBuf, String> {
    let raw_path = dir.join("raw.txt");
    let raw = fs::read_to_string(&raw_path).map_err(|e| format!("{}: {e}", raw_path.display()))?;
    let d = Data::parse(&raw);
    // A report of fewer cases than the last one in `dir` keeps none of its
    // charts.
    for (file, _) in all_charts(&d) {
        let _ = fs::remove_file(dir.join(file));
    }
    for (file, chart) in charts(&d) {
        let p = dir.join(file);
        fs::write(&p, svg::render(&chart)).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let p = dir.join("report.md");
    fs::write(&p, markdown(&d, &raw)).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(p)
}

/// `loadgen report --dir DIR`: the report again from `DIR/raw.txt`.
pub fn main(mut a: Args) -> Result<bool, String> {
    let dir = PathBuf::from(a.get("--dir", "bench-results/full".to_owned())?);
    a.finish()?;
    let p = write(&dir)?;
    println!("report: {}", p.display());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = "\
# date: 2026-11-26 05:00 UTC
# mode: full
# command: make bench
# rounds: 3
# out: bench-results/full
# peers: direct,socks5d,microsocks,dante
# cpus: 2 (nproc)
# cpu: Test CPU
# kernel: Linux 6.1
# memory: 23.5 GiB
# nofile: 20000
# left out: dante-noauth: not installed
loadgen scenario=throughput case=t1-up peer=direct round=1 ok=1 errors=0 gib_s=4.0 gen_cpu=1.9 cpus=2
loadgen scenario=throughput case=t1-up peer=direct round=2 ok=1 errors=0 gib_s=4.4 gen_cpu=1.9 cpus=2
loadgen scenario=throughput case=t1-up peer=socks5d round=1 ok=1 errors=0 gib_s=3.0 gen_cpu=1.0 proxy_cpu=0.9 cpus=2
loadgen scenario=throughput case=t1-up peer=socks5d round=2 ok=1 errors=0 gib_s=3.2 gen_cpu=1.0 proxy_cpu=0.9 cpus=2
loadgen scenario=throughput case=t1-up peer=socks5d round=3 ok=1 errors=0 gib_s=3.4 gen_cpu=1.0 proxy_cpu=0.9 cpus=2
loadgen scenario=throughput case=t1-up peer=microsocks round=1 ok=1 errors=0 gib_s=2.0 cpus=2 gen_cpu=0.5
loadgen scenario=throughput case=t1-up peer=dante round=1 ok=1 errors=0 gib_s=1.0 cpus=2 gen_cpu=0.5
loadgen scenario=handshake case=handshake peer=socks5d round=1 ok=1 errors=0 cycles_s=9000
loadgen scenario=handshake case=handshake peer=microsocks round=1 ok=1 errors=0 cycles_s=5000
loadgen scenario=handshake case=handshake peer=dante round=1 ok=0 errors=7 err_auth=7 cycles_s=100
loadgen scenario=latency case=latency-pinned peer=direct round=1 ok=1 errors=0 p50_us=20.0
loadgen scenario=latency case=latency-pinned peer=socks5d round=1 ok=1 errors=0 p50_us=28.0
loadgen scenario=idle case=idle peer=socks5d round=1 ok=1 errors=0 tunnels=9000 pss_kib_per_tunnel=0.8 rss_kib_per_tunnel=0.9
loadgen scenario=churn case=churn peer=socks5d round=1 threads=8 cycles=1000000 cycles_s=11000 rss_before_kib=3420 rss_after_kib=3436 rss_growth_kib=16 anon_before_kib=700 anon_after_kib=704 anon_growth_kib=4 ok=1 errors=0
# failed: case=idle peer=dante round=1: dante did not listen
";

    #[test]
    fn medians_ratios_and_failures() {
        let d = Data::parse(RAW);
        assert_eq!(d.peers, ["direct", "socks5d", "microsocks", "dante"]);
        let s = d.summary("t1-up", "socks5d", "gib_s").unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (3.2, 3.0, 3.4, 3));
        assert_eq!(d.median("t1-up", "direct", "gib_s"), Some(4.2));
        let best = d.best_peer(row_of("t1-up", "gib_s")).unwrap();
        assert_eq!(best, ("microsocks".to_owned(), 2.0));
        // A failed run gives no figure.
        assert_eq!(d.summary("handshake", "dante", "cycles_s"), None);
        assert_eq!(d.failed_runs("handshake", "dante"), 1);
        assert_eq!(d.failed_runs("idle", "dante"), 1);
    }

    #[test]
    fn goals_are_judged_on_medians() {
        let d = Data::parse(RAW);
        let v = verdicts(&d);
        // 3.2 / 4.2 = 0.76 of direct; download not measured.
        assert!(v[0].measured.contains("upload 0.76×"), "{:?}", v[0]);
        assert_eq!(v[0].met, None);
        assert!(
            v[1].measured.contains("upload 1.60× (microsocks)"),
            "{:?}",
            v[1]
        );
        // No 8-tunnel runs: not judged.
        assert_eq!(v[2].met, None, "{:?}", v[2]);
        assert_eq!(v[3].met, Some(false), "9000 / 5000 = 1.8: {:?}", v[3]);
        assert_eq!(v[4].met, Some(true), "{:?}", v[4]);
        assert!(v[4].measured.contains("+8.0 µs"), "{:?}", v[4]);
        assert_eq!(v[6].met, Some(true), "{:?}", v[6]);
        assert_eq!(
            v[7].measured,
            "anonymous memory 700 KiB before, 704 KiB after 1,000,000 cycles: +4 KiB (RSS with \
             mapped files: +16 KiB; 0 errors)"
        );
        assert_eq!(v[7].met, Some(true), "4 KiB is within 64 KiB: {:?}", v[7]);
    }

    #[test]
    fn eight_tunnels_pinned_p99_and_cpu_per_cycle_are_judged() {
        let raw = "# peers: direct,socks5d,microsocks,dante\n\
            loadgen case=t8-up peer=direct ok=1 errors=0 gib_s=5.0\n\
            loadgen case=t8-up peer=socks5d ok=1 errors=0 gib_s=2.0\n\
            loadgen case=t8-down peer=direct ok=1 errors=0 gib_s=5.0\n\
            loadgen case=t8-down peer=socks5d ok=1 errors=0 gib_s=4.0\n\
            loadgen case=handshake peer=socks5d ok=1 errors=0 cycles_s=9000 proxy_us_cycle=60\n\
            loadgen case=handshake peer=microsocks ok=1 errors=0 cycles_s=5000 proxy_us_cycle=90\n\
            loadgen case=latency-pinned peer=socks5d ok=1 errors=0 p99_us=20.0\n\
            loadgen case=latency-pinned peer=microsocks ok=1 errors=0 p99_us=19.0\n\
            loadgen case=latency-pinned peer=dante ok=1 errors=0 p99_us=30.0\n";
        let v = verdicts(&Data::parse(raw));
        let goal = |g: &str| v.iter().find(|x| x.goal.starts_with(g)).unwrap();
        let t8 = goal("Throughput, 8 tunnels");
        assert_eq!(t8.measured, "upload 0.40×, download 0.80× of direct");
        assert_eq!(t8.met, Some(false), "upload is under 0.75: {t8:?}");
        let hs = goal("Handshake rate");
        assert!(
            hs.measured
                .ends_with("; CPU per cycle 60.0 µs against 90.0 µs (1.50× less)"),
            "{hs:?}"
        );
        let p99 = goal("Latency, pinned: p99");
        assert_eq!(p99.measured, "20.0 µs vs 19.0 µs (microsocks)");
        assert_eq!(p99.met, Some(false), "the best peer is microsocks: {p99:?}");
    }

    #[test]
    fn churn_goal_needs_a_million_cycles_and_no_growth() {
        let churn = |line: &str| {
            let raw = format!("# peers: socks5d\n{line}\n");
            verdicts(&Data::parse(&raw))
                .into_iter()
                .find(|v| v.goal.starts_with("Memory: no growth"))
                .unwrap()
        };
        let grown = churn(
            "loadgen case=churn peer=socks5d ok=1 errors=0 cycles=1000000 \
             anon_before_kib=3000 anon_after_kib=3100 anon_growth_kib=100",
        );
        assert_eq!(grown.met, Some(false), "100 KiB is over 64 KiB");
        assert!(
            grown
                .measured
                .ends_with(": +100 KiB (RSS with mapped files: — KiB; 0 errors)"),
            "{grown:?}"
        );
        let shrunk = churn(
            "loadgen case=churn peer=socks5d ok=1 errors=0 cycles=1000000 \
             anon_before_kib=3000 anon_after_kib=2990 anon_growth_kib=-10",
        );
        assert_eq!(shrunk.met, Some(true));
        assert!(shrunk.measured.contains(": -10 KiB"), "{shrunk:?}");
        // The quick run's fewer cycles are shown but not judged.
        let quick = churn(
            "loadgen case=churn peer=socks5d ok=1 errors=0 cycles=20000 \
             anon_before_kib=3000 anon_after_kib=3100 anon_growth_kib=100",
        );
        assert_eq!(quick.met, None);
        assert!(quick.measured.contains("after 20,000 cycles"), "{quick:?}");
        // A failed run gives no figure.
        let failed = churn(
            "loadgen case=churn peer=socks5d ok=0 errors=3 err_reset=3 cycles=999997 \
             anon_before_kib=3000 anon_after_kib=3000 anon_growth_kib=0",
        );
        assert_eq!((failed.measured.as_str(), failed.met), ("—", None));
        assert_eq!(churn("").met, None);
    }

    const UDP_RAW: &str = "\
# peers: direct,socks5d,microsocks,dante,dante-noauth
# not applicable: udp1-1400 microsocks
# not applicable: udp8-1400 microsocks
loadgen case=udp1-1400 peer=direct ok=1 errors=0 dgrams_s=100000 loss_pct=0.000
loadgen case=udp1-1400 peer=socks5d ok=1 errors=0 dgrams_s=60000 loss_pct=0.000
loadgen case=udp1-1400 peer=dante ok=1 errors=0 dgrams_s=20000 loss_pct=0.100
loadgen case=udp1-1400 peer=dante-noauth ok=1 errors=0 dgrams_s=25000 loss_pct=0.000
loadgen case=udp8-1400 peer=direct ok=1 errors=0 dgrams_s=300000 loss_pct=0.000
loadgen case=udp8-1400 peer=socks5d ok=1 errors=0 dgrams_s=120000 loss_pct=1.500
loadgen case=udp8-1400 peer=dante ok=1 errors=0 dgrams_s=50000 loss_pct=0.000
loadgen case=udp8-1400 peer=dante-noauth ok=1 errors=0 dgrams_s=70000 loss_pct=0.000
";

    #[test]
    fn udp_goals_against_the_best_dante_and_direct() {
        let d = Data::parse(UDP_RAW);
        let v = verdicts(&d);
        let goal = |g: &str| v.iter().find(|x| x.goal.starts_with(g)).unwrap();
        let dante = goal("UDP, 1,400-byte datagrams: at least 2 times");
        // 60,000 / 25,000 and 120,000 / 70,000.
        assert_eq!(
            dante.measured,
            "1 association 2.40× (dante-noauth), 8 associations 1.71× (dante-noauth) of Dante's"
        );
        assert_eq!(dante.met, Some(false));
        let direct = goal("UDP, 1,400-byte datagrams: at least 50%");
        assert_eq!(
            direct.measured,
            "1 association 0.60×, 8 associations 0.40× of direct"
        );
        assert_eq!(direct.met, Some(false));
        // Without socks5d's figures: not judged.
        let none = verdicts(&Data::parse("# peers: direct,dante\n"));
        assert!(
            none.iter()
                .filter(|x| x.goal.starts_with("UDP"))
                .all(|x| x.met.is_none())
        );
    }

    #[test]
    fn udp_rows_show_loss_and_not_applicable_peers() {
        let md = tables(&Data::parse(UDP_RAW));
        for part in [
            "| UDP echo rate, 1,400 B, 1 association | datagrams/s ↑ | 100,000 | 60,000 | n/a | 20,000 | 25,000 | 2.40× (dante-noauth) | 0.60× |",
            "| … datagrams lost | % | 0.00 | 1.50 | n/a | 0.00 | 0.00 | | |",
        ] {
            assert!(md.contains(part), "missing {part:?} in\n{md}");
        }
        assert!(!md.contains("UDP echo rate, 64 B"));
        // Only the goals of the cases that ran.
        assert!(md.contains("| UDP, 1,400-byte datagrams: at least 50% of direct's datagram rate | 1 association 0.60×, 8 associations 0.40× of direct | **no** |"), "{md}");
        assert!(!md.contains("Throughput, 1 tunnel: at least"), "{md}");
    }

    const RULES_RAW: &str = "\
# peers: direct,socks5d,socks5d-rules1000,microsocks
# not applicable: rate1 direct
# not applicable: rate1 socks5d-rules1000
# not applicable: rate1 microsocks
loadgen case=handshake peer=socks5d ok=1 errors=0 cycles_s=8000 proxy_us_cycle=100
loadgen case=handshake peer=socks5d round=2 ok=1 errors=0 cycles_s=8200 proxy_us_cycle=104
loadgen case=handshake peer=socks5d-rules1000 ok=1 errors=0 cycles_s=7900 proxy_us_cycle=102
loadgen case=handshake peer=socks5d-rules1000 round=2 ok=1 errors=0 cycles_s=8100 proxy_us_cycle=108
loadgen case=handshake peer=microsocks ok=1 errors=0 cycles_s=7000 proxy_us_cycle=130
loadgen case=rate1 peer=socks5d ok=1 errors=0 window_s=5.00 limit_b_s=8388608 of_limit=1.050 mib_s=8.4
loadgen case=rate4 peer=socks5d ok=1 errors=0 window_s=5.00 limit_b_s=8388608 of_limit=1.020 mib_s=8.2
loadgen case=rate-unlimited peer=socks5d ok=1 errors=0 gib_s=1.5 baseline_gib_s=1.6 vs_baseline=0.94 cpu_vs_baseline=1.02
loadgen case=rate-unlimited peer=socks5d round=2 ok=1 errors=0 gib_s=1.4 baseline_gib_s=1.4 vs_baseline=1.0
loadgen case=rate-unlimited peer=socks5d round=3 ok=1 errors=0 gib_s=1.3 baseline_gib_s=1.0 vs_baseline=1.3
";

    fn goal<'a>(v: &'a [Verdict], start: &str) -> &'a Verdict {
        v.iter().find(|x| x.goal.starts_with(start)).unwrap()
    }

    /// The thousand-rule socks5d is set against socks5d, and is never the
    /// best peer.
    #[test]
    fn judging_cost_is_socks5d_against_itself() {
        let d = Data::parse(RULES_RAW);
        let v = verdicts(&d);
        let j = goal(&v, "Judging");
        assert_eq!(
            j.measured,
            "CPU per cycle 105 µs with 1,000 rules against 102 µs with one (1.03×); 8,000 \
             against 8,100 cycles/s (0.99×)"
        );
        assert_eq!(j.met, Some(true));
        assert_eq!(
            d.best_peer(row_of("handshake", "cycles_s")),
            Some(("microsocks".to_owned(), 7000.0))
        );
        let slow = RULES_RAW.replace("proxy_us_cycle=108", "proxy_us_cycle=130");
        let j = verdicts(&Data::parse(&slow))
            .into_iter()
            .find(|x| x.goal.starts_with("Judging"))
            .unwrap();
        assert_eq!(
            j.met,
            Some(false),
            "(102 + 130) / 2 = 116 is 1.14 of 102: {j:?}"
        );
        // Without the peer, no such goal.
        let none = verdicts(&Data::parse(RAW));
        assert!(!none.iter().any(|x| x.goal.starts_with("Judging")));
    }

    const REDIS_RAW: &str = "\
# peers: socks5d,socks5d-redis
# redis: redis-server 5:7.0.15-1
loadgen case=handshake peer=socks5d ok=1 errors=0 cycles_s=8000 proxy_us_cycle=100
loadgen case=handshake peer=socks5d round=2 ok=1 errors=0 cycles_s=8200 proxy_us_cycle=104
loadgen case=handshake peer=socks5d-redis ok=1 errors=0 cycles_s=7900 proxy_us_cycle=101 redis_cpu_s=0.01
loadgen case=handshake peer=socks5d-redis round=2 ok=1 errors=0 cycles_s=8300 proxy_us_cycle=107 redis_cpu_s=0.03
";

    /// socks5d with its users in Redis is set against socks5d with -u, in
    /// rate and in CPU per cycle, both within 10%.
    #[test]
    fn users_in_redis_cost_what_users_given_with_u_cost() {
        let v = verdicts(&Data::parse(REDIS_RAW));
        let r = goal(&v, "Users in Redis");
        assert_eq!(
            r.measured,
            "8,100 cycles/s with the users in Redis against 8,100 with -u (1.00×); CPU per cycle \
             104 against 102 µs (1.02×); the Redis server 0.02 CPU-s a run"
        );
        assert_eq!(r.met, Some(true));
        // Slower by more than 10%, or dearer: not met.
        for (from, to) in [
            ("cycles_s=8300", "cycles_s=6000"),
            ("proxy_us_cycle=107", "proxy_us_cycle=130"),
        ] {
            let v = verdicts(&Data::parse(&REDIS_RAW.replace(from, to)));
            assert_eq!(goal(&v, "Users in Redis").met, Some(false), "{to}");
        }
        // No figure of its own: not judged.
        let v = verdicts(&Data::parse(&REDIS_RAW.replace("ok=1", "ok=0")));
        assert_eq!(goal(&v, "Users in Redis").met, None);
        // Without the peer, no such goal; with it, a note on what it is.
        assert!(
            !verdicts(&Data::parse(RULES_RAW))
                .iter()
                .any(|x| x.goal.starts_with("Users"))
        );
        let md = markdown(&Data::parse(REDIS_RAW), REDIS_RAW);
        assert!(
            md.contains("`redis-server` of the run's own on 127.0.0.1 (redis-server 5:7.0.15-1)"),
            "{md}"
        );
    }

    #[test]
    fn rate_goals_are_judged_over_five_seconds() {
        let v = verdicts(&Data::parse(RULES_RAW));
        let r = goal(&v, "Rate limit");
        assert_eq!(
            r.measured,
            "1 tunnel 1.05×, 4 tunnels 1.02× of 8.00 MiB/s over 5.00 s"
        );
        assert_eq!(r.met, Some(true));
        for (of_limit, met) in [("1.120", false), ("0.880", false), ("0.950", true)] {
            let raw = RULES_RAW.replace("of_limit=1.020", &format!("of_limit={of_limit}"));
            let v = verdicts(&Data::parse(&raw));
            assert_eq!(goal(&v, "Rate limit").met, Some(met), "{of_limit}");
        }
        // The quick run's second is shown, not judged.
        let quick = RULES_RAW.replace("window_s=5.00", "window_s=1.00");
        let v = verdicts(&Data::parse(&quick));
        let r = goal(&v, "Rate limit");
        assert_eq!(r.met, None);
        assert!(
            r.measured.ends_with("over 1.00 s (judged over 5 s only)"),
            "{r:?}"
        );
        // The unlimited user: the median of the runs' own ratios.
        let u = goal(&v, "Rate rules cost");
        assert_eq!(
            u.measured,
            "1.40 GiB/s against 1.40 GiB/s (1.00×); CPU per MiB 1.02× of socks5d's with no rule"
        );
        assert_eq!(u.met, Some(true));
        let slower = RULES_RAW
            .replace("vs_baseline=1.0\n", "vs_baseline=0.85\n")
            .replace("vs_baseline=0.94", "vs_baseline=0.80");
        let v = verdicts(&Data::parse(&slower));
        assert_eq!(goal(&v, "Rate rules cost").met, Some(false));
    }

    #[test]
    fn rate_rows_are_socks5d_only() {
        let md = tables(&Data::parse(RULES_RAW));
        for part in [
            "| Rate limit 8 MiB/s, 1 tunnel: achieved ÷ limit | × | n/a | 1.05 | n/a | n/a | | |",
            "| Handshake, proxy CPU per cycle | µs ↓ | — | 102 (100–104) | 105 (102–108) | 130 | 0.78× (microsocks) | — |",
            "| … with the rule ÷ without | × | — | 1.00 (0.94–1.30) | — | — | | |",
        ] {
            assert!(md.contains(part), "missing {part:?} in\n{md}");
        }
    }

    #[test]
    fn the_report_has_every_part() {
        let d = Data::parse(RAW);
        let md = markdown(&d, RAW);
        for part in [
            "# socks5d benchmark (full run)",
            "2026-11-26 05:00 UTC",
            "Test CPU",
            "Reproduce with `make bench`",
            "Left out: dante-noauth: not installed.",
            "| Throughput, 1 tunnel, upload | GiB/s ↑ | 4.20 (4.00–4.40) | 3.20 (3.00–3.40) | 2.00 | 1.00 | 1.60× (microsocks) | 0.76× |",
            "| Handshake rate, 8 threads | cycles/s ↑ | — | 9,000 | 5,000 | — ✗1 | 1.80× (microsocks) | — |",
            "| Anonymous memory growth over the churn cycles | KiB ↓ | — | 4.00 | — | — | — | — |",
            "| Churn cycles counted | cycles | — | 1,000,000 | — | — | |",
            "| Memory: no growth after 1,000,000 handshake cycles (anonymous memory before and after, 64 KiB allowed) | anonymous memory 700 KiB",
            "![Throughput](throughput.svg)",
            "- handshake, dante: auth 7, failed runs 1",
            "- run failed: case=idle peer=dante round=1: dante did not listen",
            "```text\n# date:",
        ] {
            assert!(md.contains(part), "missing {part:?} in\n{md}");
        }
        // Rows of cases that never ran are left out.
        assert!(!md.contains("| Throughput, 8 tunnels, upload"));
    }

    #[test]
    fn write_makes_the_files() {
        let dir = std::env::temp_dir().join(format!("loadgen-report-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("raw.txt"), RAW).unwrap();
        let p = write(&dir).unwrap();
        assert!(fs::read_to_string(p).unwrap().contains("## Results"));
        for f in [
            "throughput.svg",
            "handshake.svg",
            "latency.svg",
            "memory.svg",
        ] {
            let svg = fs::read_to_string(dir.join(f)).unwrap();
            assert!(svg.contains("</svg>"), "{f}");
        }
        // No UDP case ran: no UDP chart, and an old one goes.
        assert!(!dir.join("udp.svg").exists());
        fs::write(dir.join("udp.svg"), "old").unwrap();
        write(&dir).unwrap();
        assert!(!dir.join("udp.svg").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
