//! The report of a scale run, made from its `raw.txt` alone: the table of
//! the steps, the goals, where the memory goes (socks5d's and the guest
//! kernel's slab caches), the chart, the checks and the raw lines.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use crate::line::Line;
use crate::plot::{Figure, Panel, Series, render};
use crate::report::Data;
use crate::svg::fmt_value;

/// The chart's file, beside the report.
pub const CHART: &str = "scale.svg";

/// The goals' figures.
const MAX_KIB_PER_TUNNEL: f64 = 0.6;
const MIN_RATE_RATIO: f64 = 0.9;
const MAX_P99_RATIO: f64 = 1.5;
const MAX_AFTER_RATIO: f64 = 1.1;
/// The step the goals are about, and the one memory must return to.
const GOAL_STEP: f64 = 100_000.0;
const RETURN_STEP: f64 = 10_000.0;

/// One check of the run: it either did what it should or it did not.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// Whether it passed.
    pub passed: bool,
    /// What was checked, and what was seen.
    pub what: String,
}

/// One goal: what it asks, what was measured, and whether it was met
/// (`None`: not judged in this run).
#[derive(Clone, Debug, PartialEq)]
pub struct Goal {
    /// The goal.
    pub goal: String,
    /// The figures.
    pub measured: String,
    /// Met, missed, or not judged.
    pub met: Option<bool>,
}

/// The phases of a run.
struct Phases<'a> {
    base: Option<&'a Line>,
    steps: Vec<&'a Line>,
    closed: Option<&'a Line>,
}

fn phases(d: &Data) -> Phases<'_> {
    let phase = |p: &'static str| d.lines.iter().filter(move |l| l.get("phase") == Some(p));
    Phases {
        base: phase("base").next(),
        steps: phase("step").collect(),
        closed: phase("closed").next(),
    }
}

/// The steps the run was asked for.
fn wanted(d: &Data) -> Vec<usize> {
    d.meta_value("steps")
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

fn ok(l: &Line) -> bool {
    l.get("ok") == Some("1")
}

fn has(l: &Line, keys: &[&str]) -> bool {
    keys.iter().all(|k| l.number(k).is_some())
}

/// A count: whole, with thousands separated.
fn count(v: f64) -> String {
    let v = v.round();
    if v.abs() < 1000.0 {
        format!("{v:.0}")
    } else {
        fmt_value(v)
    }
}

/// Every check of the run, in order: the baseline, each step asked for,
/// the close.
pub fn checks(d: &Data) -> Vec<Check> {
    let p = phases(d);
    let mut out = Vec::new();
    let measured = [
        "anon_kib",
        "pss_kib",
        "hs_cycles_s",
        "hs_p99_us",
        "echo_p99_us",
    ];
    out.push(match p.base {
        Some(l) if ok(l) && has(l, &measured) => Check {
            passed: true,
            what: format!(
                "baseline: socks5d's memory read, {} handshakes/s, echo p99 {} µs",
                count(l.number("hs_cycles_s").unwrap_or(0.0)),
                fmt_value(l.number("echo_p99_us").unwrap_or(0.0))
            ),
        },
        Some(l) => Check {
            passed: false,
            what: format!("baseline: errors or figures missing: {l}"),
        },
        None => Check {
            passed: false,
            what: "baseline: no result line (did the guest run?)".into(),
        },
    });
    for want in wanted(d) {
        let line = p
            .steps
            .iter()
            .find(|l| l.number("wanted") == Some(want as f64));
        let name = count(want as f64);
        out.push(match line {
            Some(l) if ok(l) && has(l, &measured) && l.number("tunnels") >= Some(want as f64) => {
                Check {
                    passed: true,
                    what: format!(
                        "{name} tunnels open in {} s; {} checked relay; memory read, handshakes \
                         and echo measured",
                        fmt_value(l.number("open_secs").unwrap_or(0.0)),
                        count(l.number("relay_checked").unwrap_or(0.0))
                    ),
                }
            }
            Some(l) => Check {
                passed: false,
                what: format!("{name} tunnels: errors or figures missing: {l}"),
            },
            None => Check {
                passed: false,
                what: format!("{name} tunnels: the step has no result line"),
            },
        });
    }
    out.push(match p.closed {
        Some(l) if ok(l) && l.get("all_closed") == Some("1") && has(l, &["anon_kib"]) => Check {
            passed: true,
            what: format!(
                "every tunnel closed in {} s; socks5d's memory read after",
                fmt_value(l.number("close_secs").unwrap_or(0.0))
            ),
        },
        Some(l) => Check {
            passed: false,
            what: format!("closing: not every tunnel closed, or errors: {l}"),
        },
        None => Check {
            passed: false,
            what: "closing: no result line".into(),
        },
    });
    out
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The goals, judged at 100,000 tunnels (not judged in a smaller run).
pub fn goals(d: &Data) -> Vec<Goal> {
    let p = phases(d);
    let last = p.steps.last().copied();
    let top = last.and_then(|l| l.number("tunnels")).unwrap_or(0.0);
    let judged = top >= GOAL_STEP;
    let at = format!("{} tunnels", count(top));
    let judge = |met: bool| if judged { Some(met) } else { None };
    let n = |l: Option<&Line>, k: &str| l.and_then(|l| l.number(k));
    let mut out = Vec::new();

    let (anon, pss) = (
        n(last, "anon_kib_per_tunnel"),
        n(last, "pss_kib_per_tunnel"),
    );
    out.push(Goal {
        goal: format!("Memory per idle tunnel at 100,000: at most {MAX_KIB_PER_TUNNEL} KiB"),
        measured: format!(
            "anonymous {} KiB, PSS {} KiB a tunnel at {at}",
            anon.map_or("?".into(), |v| format!("{v:.3}")),
            pss.map_or("?".into(), |v| format!("{v:.3}"))
        ),
        met: match (anon, pss) {
            (Some(a), Some(p)) => judge(a.max(p) <= MAX_KIB_PER_TUNNEL),
            _ => judge(false),
        },
    });
    let rate = ratio(n(last, "hs_cycles_s"), n(p.base, "hs_cycles_s"));
    out.push(Goal {
        goal: format!(
            "Handshake rate with 100,000 idle tunnels: at least {:.0}% of the rate with none",
            MIN_RATE_RATIO * 100.0
        ),
        measured: format!(
            "{}/s at {at} against {}/s with none: {}",
            n(last, "hs_cycles_s").map_or("?".into(), count),
            n(p.base, "hs_cycles_s").map_or("?".into(), count),
            rate.map_or("?".into(), |r| format!("{r:.2}×"))
        ),
        met: judge(rate.is_some_and(|r| r >= MIN_RATE_RATIO)),
    });
    let p99 = ratio(n(last, "hs_p99_us"), n(p.base, "hs_p99_us"));
    out.push(Goal {
        goal: format!(
            "Handshake p99 with 100,000 idle tunnels: at most {MAX_P99_RATIO} times the p99 with none"
        ),
        measured: format!(
            "{} µs at {at} against {} µs with none: {}",
            n(last, "hs_p99_us").map_or("?".into(), fmt_value),
            n(p.base, "hs_p99_us").map_or("?".into(), fmt_value),
            p99.map_or("?".into(), |r| format!("{r:.2}×"))
        ),
        met: judge(p99.is_some_and(|r| r <= MAX_P99_RATIO)),
    });
    let reference = p
        .steps
        .iter()
        .find(|l| l.number("tunnels") == Some(RETURN_STEP))
        .or(p.steps.first())
        .copied();
    let (ra, rp) = (
        ratio(n(p.closed, "anon_kib"), n(reference, "anon_kib")),
        ratio(n(p.closed, "pss_kib"), n(reference, "pss_kib")),
    );
    out.push(Goal {
        goal: format!(
            "Memory after closing them all: within {:.0}% of the figure at 10,000 tunnels",
            (MAX_AFTER_RATIO - 1.0) * 100.0
        ),
        measured: format!(
            "anonymous {} KiB after against {} KiB at {} ({}), PSS {} against {} KiB ({})",
            n(p.closed, "anon_kib").map_or("?".into(), count),
            n(reference, "anon_kib").map_or("?".into(), count),
            n(reference, "tunnels").map_or("?".into(), count),
            ra.map_or("?".into(), |r| format!("{r:.2}×")),
            n(p.closed, "pss_kib").map_or("?".into(), count),
            n(reference, "pss_kib").map_or("?".into(), count),
            rp.map_or("?".into(), |r| format!("{r:.2}×")),
        ),
        met: judge(matches!((ra, rp), (Some(a), Some(p)) if a.max(p) <= MAX_AFTER_RATIO)),
    });
    out
}

fn cell(l: &Line, key: &str, f: fn(f64) -> String) -> String {
    l.number(key).map_or("—".into(), f)
}

fn kib(v: f64) -> String {
    format!("{v:.3}")
}

fn mib(v: f64) -> String {
    fmt_value(v / 1024.0)
}

fn ms(v: f64) -> String {
    fmt_value(v / 1000.0)
}

/// The median of `key` with the range of the rounds: `641 (384–745)`.
fn spread(l: &Line, key: &str) -> String {
    let range = l
        .number(&format!("{key}_min"))
        .zip(l.number(&format!("{key}_max")));
    match (l.number(key), range) {
        (Some(m), Some((lo, hi))) => format!("{} ({}–{})", count(m), count(lo), count(hi)),
        (Some(m), None) => count(m),
        _ => "—".into(),
    }
}

/// The rows of the tables: a name and a line per phase.
fn rows(d: &Data) -> Vec<(String, &Line)> {
    let p = phases(d);
    let mut out = Vec::new();
    if let Some(l) = p.base {
        out.push((format!("none ({} active)", cell(l, "tunnels", count)), l));
    }
    for l in &p.steps {
        out.push((cell(l, "tunnels", count), *l));
    }
    if let Some(l) = p.closed {
        out.push(("none, after closing them all".into(), l));
    }
    out
}

/// socks5d's memory and the time to open each step, as Markdown.
pub fn memory_table(d: &Data) -> String {
    let mut s = String::from(
        "| open tunnels | time to open (s) | socks5d anonymous (MiB) | socks5d PSS (MiB) | \
         anonymous per tunnel (KiB) | PSS per tunnel (KiB) | guest kernel slab per tunnel (KiB) |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, l) in rows(d) {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            cell(l, "open_secs", fmt_value),
            cell(l, "anon_kib", mib),
            cell(l, "pss_kib", mib),
            cell(l, "anon_kib_per_tunnel", kib),
            cell(l, "pss_kib_per_tunnel", kib),
            cell(l, "kernel_slab_kib_per_tunnel", fmt_value),
        );
    }
    s
}

/// New clients' handshakes (socks5d's and its twin's) and the active
/// tunnels' echo at each step, as Markdown.
pub fn traffic_table(d: &Data) -> String {
    let mut s = String::from(
        "| open tunnels | handshakes/s, median (rounds' range) | p50 (ms) | p99 (ms) | \
         twin with none: handshakes/s | \
         twin p99 (ms) | host CPU the guest had | host CPU per handshake (µs) | \
         echo 64 B p50 (µs) | echo 64 B p99 (µs) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, l) in rows(d) {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            spread(l, "hs_cycles_s"),
            cell(l, "hs_p50_us", ms),
            cell(l, "hs_p99_us", ms),
            spread(l, "twin_hs_cycles_s"),
            cell(l, "twin_hs_p99_us", ms),
            cell(l, "hs_uml_cpu", |v| format!("{v:.2}")),
            cell(l, "hs_host_us_cycle", count),
            cell(l, "echo_p50_us", fmt_value),
            cell(l, "echo_p99_us", fmt_value),
        );
    }
    s
}

/// The goals as a Markdown table.
pub fn goals_table(d: &Data) -> String {
    let mut s = String::from("| goal | measured | met |\n|---|---|---|\n");
    for g in goals(d) {
        let met = match g.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not judged (fewer than 100,000 tunnels)",
        };
        let _ = writeln!(s, "| {} | {} | {met} |", g.goal, g.measured);
    }
    s
}

/// `name=KiB ...` of a `# slab ...` line.
fn caches(text: &str) -> Vec<(String, f64)> {
    text.split_whitespace()
        .filter_map(|w| {
            let (n, v) = w.split_once('=')?;
            Some((n.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// The guest kernel's slab caches that grew most from the baseline to the
/// last step, per tunnel.
fn slab_table(d: &Data) -> String {
    let p = phases(d);
    let Some(last) = p.steps.last() else {
        return String::new();
    };
    let (Some(top), Some(base_tunnels)) = (
        last.number("tunnels"),
        p.base.and_then(|b| b.number("tunnels")),
    ) else {
        return String::new();
    };
    let key = format!("slab at {}", top as u64);
    let (Some(base), Some(now)) = (d.meta_value("slab at base"), d.meta_value(&key)) else {
        return String::new();
    };
    let (base, now) = (caches(base), caches(now));
    let added = (top - base_tunnels).max(1.0);
    let mut grown: Vec<(String, f64, f64)> = now
        .iter()
        .map(|(name, kib)| {
            let before = base
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0.0, |(_, v)| *v);
            (name.clone(), before, *kib)
        })
        .filter(|(_, before, after)| after - before >= 1024.0)
        .collect();
    grown.sort_by(|a, b| (b.2 - b.1).total_cmp(&(a.2 - a.1)));
    let mut s = String::from(
        "| slab cache | at the baseline (KiB) | at the last step (KiB) | per tunnel (bytes) |\n\
         |---|---:|---:|---:|\n",
    );
    for (name, before, after) in grown.iter().take(12) {
        let _ = writeln!(
            s,
            "| `{name}` | {} | {} | {} |",
            if *before > 0.0 {
                count(*before)
            } else {
                format!("< {}", super::guest::SLAB_SHOWN_KIB)
            },
            count(*after),
            count((after - before) * 1024.0 / added)
        );
    }
    s
}

/// The lowest, mean and highest 1-minute load average of the host's
/// samples during the run.
pub fn host_load(d: &Data) -> Option<(f64, f64, f64)> {
    let v: Vec<f64> = d
        .meta_value("host load samples")?
        .split(';')
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .collect();
    let lo = v.iter().copied().reduce(f64::min)?;
    let hi = v.iter().copied().reduce(f64::max)?;
    Some((lo, v.iter().sum::<f64>() / v.len() as f64, hi))
}

/// The chart: socks5d's memory, the handshake rate and its latency,
/// against the open tunnels.
pub fn figure(d: &Data) -> Figure {
    let p = phases(d);
    let points = |key: &str, scale: f64| -> Vec<(f64, f64)> {
        p.base
            .iter()
            .chain(p.steps.iter())
            .filter_map(|l| Some((l.number("tunnels")?, l.number(key)? * scale)))
            .collect()
    };
    let after = |key: &str, scale: f64| -> Vec<(f64, f64)> {
        p.closed
            .and_then(|l| Some((0.0, l.number(key)? * scale)))
            .into_iter()
            .collect()
    };
    let series = |name: &str, color, key: &str, scale: f64| Series {
        name: name.into(),
        color,
        points: points(key, scale),
        apart: after(key, scale),
        dashed: false,
    };
    let twin = |name: &str, key: &str, scale: f64| Series {
        dashed: true,
        ..series(name, "#868e96", key, scale)
    };
    Figure {
        title: "socks5d with many idle tunnels".into(),
        note: format!(
            "{} in User-Mode Linux ({}); open markers: after closing them all",
            d.meta_value("date").unwrap_or("?"),
            d.meta_value("guest kernel").unwrap_or("?")
        ),
        x_label: "open tunnels".into(),
        panels: vec![
            Panel {
                title: "socks5d's memory".into(),
                unit: "MiB".into(),
                series: vec![
                    series("anonymous", "#e8590c", "anon_kib", 1.0 / 1024.0),
                    series("PSS", "#1c7ed6", "pss_kib", 1.0 / 1024.0),
                ],
            },
            Panel {
                title: "Handshake rate of new clients".into(),
                unit: "cycles/s".into(),
                series: vec![
                    series("socks5d", "#2f9e44", "hs_cycles_s", 1.0),
                    twin("its twin, with none", "twin_hs_cycles_s", 1.0),
                ],
            },
            Panel {
                title: "Handshake latency of new clients".into(),
                unit: "ms".into(),
                series: vec![
                    series("p50", "#7048e8", "hs_p50_us", 0.001),
                    series("p99", "#c2255c", "hs_p99_us", 0.001),
                    twin("twin's p99", "twin_hs_p99_us", 0.001),
                ],
            },
        ],
    }
}

/// The whole report as Markdown; `raw` is the text it was made from.
pub fn markdown(d: &Data, raw: &str) -> String {
    let m = |k: &str| d.meta_value(k).unwrap_or("?");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# socks5d with many concurrent tunnels (`{}`)\n",
        m("command")
    );
    let _ = writeln!(
        s,
        "Measured {} inside User-Mode Linux ({}, {} CPU, {} memory, TCP established hash of {} \
         entries) on a host of {} CPUs ({}, {}, {}), socks5d at commit {}. Host load average (1, \
         5, 15 min): {} at the start, {} at the end; the 1-minute figure {} during the run ({} in \
         all). Steps: {}.\n",
        m("date"),
        m("guest kernel"),
        m("guest cpus"),
        m("guest memory"),
        m("guest tcp established hash"),
        m("host cpus").trim_end_matches(" (nproc)"),
        m("host cpu"),
        m("host kernel"),
        m("host memory"),
        m("host commit"),
        m("host load at start"),
        m("host load at end"),
        host_load(d).map_or("?".into(), |(lo, mean, hi)| format!(
            "between {lo:.2} and {hi:.2}, {mean:.2} on average"
        )),
        m("host elapsed"),
        m("steps"),
    );
    let _ = writeln!(s, "## Results\n");
    s.push_str(&memory_table(d));
    s.push('\n');
    s.push_str(&traffic_table(d));
    let _ = writeln!(s, "\n## Goals\n");
    s.push_str(&goals_table(d));
    let _ = writeln!(s, "\n![the figures against open tunnels]({CHART})\n");
    let slab = slab_table(d);
    if !slab.is_empty() {
        let _ = writeln!(
            s,
            "## The guest kernel's memory\n\nEach tunnel is four TCP sockets (the client's and \
             socks5d's two, the echo target's), all in the one guest kernel. The slab caches that \
             grew most from the baseline to the last step:\n"
        );
        s.push_str(&slab);
    }
    let _ = writeln!(s, "\n## How it is measured\n");
    s.push_str(HOW);
    let _ = writeln!(s, "\n## Checks\n");
    for c in checks(d) {
        let _ = writeln!(
            s,
            "- {}: {}",
            if c.passed { "pass" } else { "**fail**" },
            c.what
        );
    }
    let _ = writeln!(s, "\n## Raw lines\n\n```text");
    s.push_str(raw.trim_end());
    let _ = writeln!(s, "\n```");
    s
}

const HOW: &str = "\
- **Where**: the host allows 20,000 open files per process, so the run boots a User-Mode Linux \
guest (`scripts/uml-run.sh`) and runs there: `fs.nr_open`, `fs.file-max` and the open-file \
limit raised for the largest step, the ephemeral port range 10000–65535, accept queues of \
65,535, and the TCP established hash sized on the guest's command line (`thash_entries`) as a \
server with that many connections would have it (and `slab_nomerge`, so that each slab \
cache shows under its own name). socks5d (release build, one worker: the guest \
has one CPU) logs clients in with RFC 1929 and is given `--rules` allowing loopback targets.
- **Tunnels**: each is a client connection through socks5d (greeting, log-in, CONNECT by IPv4 \
address) to an echo target on one of 8 ports (socks5d connects from 127.0.0.1, and each \
destination gives it a whole port range). The clients come from 4 loopback source addresses \
(127.0.1.1–4, the port picked at connect time with `IP_BIND_ADDRESS_NO_PORT`), 8 threads \
opening them; the time to open a step is the time to open the tunnels it adds.
- **Memory**: socks5d's anonymous memory and PSS (`/proc/PID/smaps_rollup`), read after the \
tunnels sat idle for a second; per tunnel is the growth from the baseline (after a warm-up of a \
few tunnels and a second of handshakes) divided by the idle tunnels. The kernel's slab (all four \
sockets of a tunnel, and everything else in the guest) is shown apart.
- **Handshakes**: while the tunnels sit idle, 8 threads run full cycles of new clients from \
127.0.0.1 (connect, greeting, log-in, CONNECT to a one-shot echo target, one byte each way, \
close from the target): 5 rounds of 1 s, each after 0.3 s of warm-up, alternating with the same \
rounds against a twin socks5d started beside it that holds no tunnel (who goes first \
alternates too); the table gives the medians of the rounds. The guest has one CPU, shared by \
socks5d, its twin, the generator and the guest kernel, and the host shares its CPUs with \
other work: the twin, measured in the same minutes under the same host load and in the same \
kernel, tells socks5d's own growth apart from theirs. The host's view is given too: the share \
of one host CPU the whole guest had while it measured, and the host CPU time of the whole guest \
(kernel, socks5d, generator) per handshake, from the host's `/proc`, sampled every 50 ms.
- **Echo**: 4 tunnels opened before the first step, 64 bytes each way in turn, 2,000 round trips \
after 200 of warm-up.
- **Relay**: at each step 1,000 idle tunnels spread over all of them must relay a byte each \
way; at the last step every tunnel must.
- **Closing**: the echo target closes every connection, the clients close theirs, and the time \
runs until socks5d holds no more descriptors than before the active tunnels opened; its memory \
is read a second later, and the handshakes measured once more.
";

/// Reads `dir/raw.txt`, writes `dir/report.md` and the chart; returns the
/// checks.
pub fn write(dir: &Path) -> Result<Vec<Check>, String> {
    let raw_path = dir.join("raw.txt");
    let raw = fs::read_to_string(&raw_path).map_err(|e| format!("{}: {e}", raw_path.display()))?;
    let d = Data::parse(&raw);
    let chart = dir.join(CHART);
    fs::write(&chart, render(&figure(&d))).map_err(|e| format!("{}: {e}", chart.display()))?;
    let p = dir.join("report.md");
    fs::write(&p, markdown(&d, &raw)).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(checks(&d))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = "\
# date: 2026-12-02 10:00 UTC
# command: make bench-scale
# steps: 10000,100000
# guest kernel: Linux 6.1.176
# slab at base: TCP=2000 sock_inode_cache=700 tiny=100
# slab at 100000: TCP=942000 sock_inode_cache=80000 tiny=100
loadgen scenario=scale phase=base tunnels=4 anon_kib=1000 pss_kib=1200 rss_kib=3000 hs_cycles_s=2000 hs_p50_us=3000 hs_p99_us=9000 echo_p50_us=100 echo_p99_us=300 ok=1 errors=0
loadgen scenario=scale phase=step wanted=10000 tunnels=10000 open_secs=5 anon_kib=6600 pss_kib=6800 anon_kib_per_tunnel=0.560 pss_kib_per_tunnel=0.560 hs_cycles_s=1990 hs_p50_us=3000 hs_p99_us=9100 echo_p50_us=100 echo_p99_us=310 relay_checked=1000 relay_fail=0 ok=1 errors=0
loadgen scenario=scale phase=step wanted=100000 tunnels=100000 open_secs=60 anon_kib=57000 pss_kib=57200 anon_kib_per_tunnel=0.560 pss_kib_per_tunnel=0.700 hs_cycles_s=1700 hs_p50_us=3100 hs_p99_us=12000 echo_p50_us=100 echo_p99_us=320 relay_checked=99996 relay_fail=0 ok=1 errors=0
loadgen scenario=scale phase=closed tunnels=0 close_secs=9 all_closed=1 anon_kib=7000 pss_kib=7100 hs_cycles_s=2010 hs_p50_us=3000 hs_p99_us=9000 ok=1 errors=0
# host load samples: 0s 1.00 1.10 1.20; 5s 3.50 1.50 1.30
";

    #[test]
    fn a_whole_run_passes_its_checks_and_is_judged() {
        let d = Data::parse(RAW);
        let c = checks(&d);
        assert_eq!(c.len(), 4, "{c:?}");
        assert!(c.iter().all(|c| c.passed), "{c:?}");
        let g = goals(&d);
        assert_eq!(g.len(), 4);
        // PSS 0.700 KiB a tunnel: missed.
        assert_eq!(g[0].met, Some(false), "{:?}", g[0]);
        // 1700 / 2000 = 0.85: missed; 12000 / 9000 = 1.33: met.
        assert_eq!(g[1].met, Some(false), "{:?}", g[1]);
        assert!(g[1].measured.contains("0.85×"), "{:?}", g[1]);
        assert_eq!(g[2].met, Some(true), "{:?}", g[2]);
        // 7100 / 6800 = 1.04: met.
        assert_eq!(g[3].met, Some(true), "{:?}", g[3]);
        assert_eq!(host_load(&d), Some((1.0, 2.25, 3.5)));
    }

    #[test]
    fn missing_steps_and_a_failed_close_fail_their_checks() {
        let cut: String = RAW
            .lines()
            .filter(|l| !l.contains("wanted=100000") && !l.contains("phase=closed"))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = checks(&Data::parse(&cut));
        assert_eq!(
            c.iter().map(|c| c.passed).collect::<Vec<_>>(),
            [true, true, false, false]
        );
        assert!(
            c[2].what
                .contains("100,000 tunnels: the step has no result line")
        );
        let unclosed = RAW.replace("all_closed=1", "all_closed=0");
        assert!(!checks(&Data::parse(&unclosed))[3].passed);
        let errors = RAW.replace(
            "relay_fail=0 ok=1 errors=0\nloadgen scenario=scale phase=step wanted=100000",
            "relay_fail=2 ok=0 errors=2\nloadgen scenario=scale phase=step wanted=100000",
        );
        assert!(!checks(&Data::parse(&errors))[1].passed);
        assert!(!checks(&Data::parse(""))[0].passed);
    }

    #[test]
    fn a_small_run_is_not_judged() {
        let small = RAW
            .replace("# steps: 10000,100000", "# steps: 500,2000")
            .replace("wanted=10000 tunnels=10000", "wanted=500 tunnels=500")
            .replace("wanted=100000 tunnels=100000", "wanted=2000 tunnels=2000");
        let d = Data::parse(&small);
        assert!(checks(&d).iter().all(|c| c.passed));
        assert!(goals(&d).iter().all(|g| g.met.is_none()));
        assert!(goals_table(&d).contains("not judged"));
    }

    #[test]
    fn the_report_has_its_tables_chart_and_slab_growth() {
        let d = Data::parse(RAW);
        let md = markdown(&d, RAW);
        assert!(md.contains("| none (4 active) |"), "{md}");
        assert!(md.contains("| 100,000 | 60.0 | 55.7 |"), "{md}");
        assert!(md.contains("| 100,000 | 1,700 | 3.10 | 12.0 |"), "{md}");
        assert!(md.contains("| none, after closing them all |"));
        assert!(md.contains("](scale.svg)"));
        // TCP grew by 940,000 KiB over 99,996 tunnels: 9,626 bytes each.
        assert!(md.contains("| `TCP` | 2,000 | 942,000 | 9,626 |"), "{md}");
        assert!(!md.contains("`tiny`"));
        assert!(
            md.contains("between 1.00 and 3.50, 2.25 on average"),
            "{md}"
        );
        let svg = render(&figure(&d));
        // 3 points of anonymous memory and of PSS, 3 of rate, 6 of latency,
        // and an open marker each after closing.
        assert_eq!(svg.matches("<circle").count(), 15 + 5);
    }
}
