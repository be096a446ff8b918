//! `make soak` (scripts/soak.sh): mixed traffic against a release socks5d
//! for a long while, its RSS and open descriptors sampled every 10 s, and a
//! verdict: neither may keep growing once warmed up, and once the traffic
//! stops the descriptors must go back to where they started.
//!
//! The traffic, all on loopback, each kind on its own threads:
//! - bulk tunnels: 4 MiB down and 1 MiB up at once, every byte checked;
//! - short tunnels: log in, CONNECT, a 64-byte round trip, close;
//! - failed log ins (wrong password) and handshakes abandoned midway;
//! - idle tunnels: 64 held open, a few replaced (after a round trip proving
//!   they still relay) every 5 s.
//!
//! Output: `OUT/soak-STAMP.csv` (one row per sample) and `OUT/soak-STAMP.svg`
//! (RSS and descriptors over time, warm-up shaded).
//!
//! ```text
//! soak --socks5d target/release/socks5d [--minutes 30] [--sample-secs 10] [--out bench-results]
//! ```

mod chart;
// The tests' echo target and raw SOCKS5 client (each crate uses part of them).
#[allow(dead_code)]
#[path = "../../tests/common/echo.rs"]
mod echo;
#[allow(dead_code)]
#[path = "../../tests/common/socks.rs"]
mod socks;
mod traffic;

use std::collections::VecDeque;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use traffic::{
    PASS, Stats, USER, abandon_once, bulk, bulk_once, close, failed_login_once, round_trip, serve,
    short_once, tunnel, worker,
};

const IDLE_TUNNELS: usize = 64;
const IDLE_REPLACED: usize = 8;
/// RSS may grow this much after warm-up (median of the first half of the
/// samples against the second): the larger of 5% and 2 MiB.
const RSS_TOLERANCE: (f64, u64) = (0.05, 2048);
/// Descriptors: the larger of 10% and 16.
const FD_TOLERANCE: (f64, u64) = (0.10, 16);
/// After the traffic stops: at most this many more descriptors than before.
const FD_AFTER_SLACK: u64 = 2;

#[derive(Debug)]
struct Opts {
    minutes: f64,
    socks5d: PathBuf,
    out: PathBuf,
    sample: Duration,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        minutes: 30.0,
        socks5d: PathBuf::from("target/release/socks5d"),
        out: PathBuf::from("bench-results"),
        sample: Duration::from_secs(10),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a}: missing value"));
        match a.as_str() {
            "--minutes" => {
                o.minutes = value()?
                    .parse()
                    .ok()
                    .filter(|m: &f64| *m > 0.0)
                    .ok_or("--minutes: a positive number")?;
            }
            "--socks5d" => o.socks5d = PathBuf::from(value()?),
            "--out" => o.out = PathBuf::from(value()?),
            "--sample-secs" => {
                let s: f64 = value()?
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s >= 0.5)
                    .ok_or("--sample-secs: a number of seconds, at least 0.5")?;
                o.sample = Duration::from_secs_f64(s);
            }
            "-h" | "--help" => {
                return Err(
                    "usage: soak --socks5d PATH [--minutes M] [--sample-secs S] \
                            [--out DIR]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

// ------------------------------------------------------------ the daemon

/// socks5d, its access log (standard output) counted, its standard error
/// kept (the last lines, for a failure report).
struct Daemon {
    child: Child,
    addr: SocketAddr,
    access_lines: Arc<AtomicU64>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl Daemon {
    fn start(bin: &Path) -> Result<Daemon, String> {
        let user = format!("{USER}:{PASS}");
        // The targets are on loopback, which socks5d's default rules deny.
        let rules = std::env::temp_dir().join(format!("socks5d-soak-{}.rules", std::process::id()));
        std::fs::write(&rules, "allow\n").map_err(|e| format!("{}: {e}", rules.display()))?;
        let mut child = Command::new(bin)
            .args([
                "-l",
                "127.0.0.1",
                "-p",
                "0",
                "-u",
                &user,
                "--access-log",
                "-",
                "--rules",
            ])
            .arg(&rules)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let out = child.stdout.take().expect("stdout is piped");
        let err = child.stderr.take().expect("stderr is piped");
        let access_lines = Arc::new(AtomicU64::new(0));
        let lines = Arc::clone(&access_lines);
        thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                if l.is_err() {
                    break;
                }
                lines.fetch_add(1, Ordering::Relaxed);
            }
        });
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&stderr_tail);
        let (ready_tx, ready) = mpsc::channel();
        thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for l in BufReader::new(err).lines() {
                let Ok(l) = l else { break };
                if let Some((_, a)) = l.split_once("socks5 listening: addr=")
                    && let (Some(tx), Ok(addr)) = (ready_tx.as_ref(), a.trim().parse())
                {
                    let _ = tx.send(addr);
                    ready_tx = None;
                }
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                t.push_back(l);
                if t.len() > 40 {
                    t.pop_front();
                }
            }
        });
        match ready.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => Ok(Daemon {
                child,
                addr,
                access_lines,
                stderr_tail,
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "socks5d did not print 'socks5 listening: addr=' in 30 s:\n{}",
                    stderr_tail
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("\n")
                ))
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stderr_tail(&self) -> String {
        let t = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM would drain for the grace period; nothing is open by now.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS line"))
}

fn fd_count(pid: u32) -> io::Result<u64> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// Open descriptors other than pipes: kernel pipes kept in a worker's pool
/// for splice(2) stay open when idle by design (bounded by the pool).
fn non_pipe_fds(pid: u32) -> io::Result<u64> {
    let mut n = 0;
    for e in fs::read_dir(format!("/proc/{pid}/fd"))? {
        let is_pipe = e
            .ok()
            .and_then(|e| fs::read_link(e.path()).ok())
            .is_some_and(|to| to.to_string_lossy().starts_with("pipe:"));
        n += u64::from(!is_pipe);
    }
    Ok(n)
}

/// What each open descriptor is ("3 -> socket:[123]"), for a report.
fn fd_list(pid: u32) -> String {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return String::new();
    };
    let mut fds: Vec<(u32, String)> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let n = e.file_name().to_str()?.parse().ok()?;
            let to = fs::read_link(e.path()).ok()?;
            Some((n, to.display().to_string()))
        })
        .collect();
    fds.sort();
    fds.iter()
        .map(|(n, to)| format!("{n} -> {to}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    t: f64,
    rss_kib: u64,
    fds: u64,
    tunnels: u64,
    bytes: u64,
    refused: u64,
    abandoned: u64,
    idle_open: u64,
    errors: u64,
    access_lines: u64,
}

const CSV_HEADER: &str =
    "elapsed_s,rss_kib,fds,tunnels,bytes,auth_refused,abandoned,idle_open,errors,access_lines";

impl Sample {
    fn csv(&self) -> String {
        format!(
            "{:.1},{},{},{},{},{},{},{},{},{}",
            self.t,
            self.rss_kib,
            self.fds,
            self.tunnels,
            self.bytes,
            self.refused,
            self.abandoned,
            self.idle_open,
            self.errors,
            self.access_lines
        )
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// UTC `YYYYmmdd-HHMMSS`, for file names.
fn stamp() -> String {
    stamp_of(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// UTC `YYYYmmdd-HHMMSS` of `secs` since the epoch.
fn stamp_of(secs: u64) -> String {
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The verdict on the samples after warm-up: `Err` says what grew.
fn judge(post: &[Sample]) -> Result<String, String> {
    if post.len() < 4 {
        return Err(format!(
            "only {} samples after warm-up: run longer (SOAK_MINUTES)",
            post.len()
        ));
    }
    let (a, b) = post.split_at(post.len() / 2);
    let check = |name: &str, f: fn(&Sample) -> u64, (share, least): (f64, u64)| {
        let first = median(a.iter().map(f).collect());
        let second = median(b.iter().map(f).collect());
        let allowed = ((first as f64 * share) as u64).max(least);
        let line = format!("{name}: median {first} then {second} (growth allowed {allowed})");
        if second > first + allowed {
            Err(line)
        } else {
            Ok(line)
        }
    };
    let rss = check("RSS KiB", |s| s.rss_kib, RSS_TOLERANCE);
    let fds = check("descriptors", |s| s.fds, FD_TOLERANCE);
    match (rss, fds) {
        (Ok(r), Ok(f)) => Ok(format!("{r}; {f}")),
        (r, f) => Err(format!(
            "{}; {}",
            r.unwrap_or_else(|e| format!("GREW {e}")),
            f.unwrap_or_else(|e| format!("GREW {e}"))
        )),
    }
}

fn run(o: &Opts) -> Result<(), String> {
    let echo_addr = serve(|c| echo::serve_echo(c, b"")).map_err(|e| format!("echo target: {e}"))?;
    let bulk_addr = serve(bulk).map_err(|e| format!("bulk target: {e}"))?;
    let mut d = Daemon::start(&o.socks5d)?;
    let pid = d.pid();
    let proxy = d.addr;
    let fds_before = non_pipe_fds(pid).map_err(|e| format!("/proc/{pid}/fd: {e}"))?;
    let fds_before_list = fd_list(pid);
    fs::create_dir_all(&o.out).map_err(|e| format!("mkdir {}: {e}", o.out.display()))?;
    let stamp = stamp();
    let csv_path = o.out.join(format!("soak-{stamp}.csv"));
    let svg_path = o.out.join(format!("soak-{stamp}.svg"));
    let mut csv =
        fs::File::create(&csv_path).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    writeln!(csv, "{CSV_HEADER}").map_err(|e| e.to_string())?;
    println!(
        "soak: socks5d {} (pid {pid}) on {proxy} for {} min, a sample every {:?} into {}",
        o.socks5d.display(),
        o.minutes,
        o.sample,
        csv_path.display()
    );

    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for w in 0..2u64 {
        let st = Arc::clone(&stats);
        threads.push(worker(
            &stop,
            Duration::from_millis(100),
            move |i| match bulk_once(proxy, bulk_addr, (w << 40) + i * 2) {
                Ok(n) => {
                    st.tunnels.fetch_add(1, Ordering::Relaxed);
                    st.bytes.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => st.error("bulk", &e),
            },
        ));
    }
    for _ in 0..2 {
        let st = Arc::clone(&stats);
        threads.push(worker(
            &stop,
            Duration::from_millis(20),
            move |_| match short_once(proxy, echo_addr) {
                Ok(n) => {
                    st.tunnels.fetch_add(1, Ordering::Relaxed);
                    st.bytes.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => st.error("short", &e),
            },
        ));
    }
    let st = Arc::clone(&stats);
    threads.push(worker(
        &stop,
        Duration::from_millis(50),
        move |_| match failed_login_once(proxy) {
            Ok(()) => {
                st.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => st.error("failed log in", &e),
        },
    ));
    let st = Arc::clone(&stats);
    threads.push(worker(
        &stop,
        Duration::from_millis(50),
        move |i| match abandon_once(proxy, i) {
            Ok(()) => {
                st.abandoned.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => st.error("abandoned handshake", &e),
        },
    ));
    // Idle tunnels: held open; every 5 s the oldest few prove they still
    // relay, are closed, and are replaced.
    let st = Arc::clone(&stats);
    let idle_stop = Arc::clone(&stop);
    let idle = thread::spawn(move || {
        let mut held: VecDeque<TcpStream> = VecDeque::new();
        let mut next = Instant::now();
        while !idle_stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                next += Duration::from_secs(5);
                if held.len() >= IDLE_TUNNELS {
                    for _ in 0..IDLE_REPLACED {
                        let Some(mut t) = held.pop_front() else { break };
                        if let Err(e) = round_trip(&mut t, b"still there?").and_then(|()| close(t))
                        {
                            st.error("idle tunnel", &e);
                        }
                    }
                }
                while held.len() < IDLE_TUNNELS {
                    match tunnel(proxy, echo_addr) {
                        Ok(t) => held.push_back(t),
                        Err(e) => {
                            st.error("idle tunnel open", &e);
                            break;
                        }
                    }
                }
                st.idle_open.store(held.len() as u64, Ordering::Relaxed);
            }
            thread::sleep(Duration::from_millis(100)); // the pace of replacement
        }
        for t in held {
            if let Err(e) = close(t) {
                st.error("idle tunnel close", &e);
            }
        }
        st.idle_open.store(0, Ordering::Relaxed);
    });

    let started = Instant::now();
    let total = Duration::from_secs_f64(o.minutes * 60.0);
    let warmup = (total / 4).max(Duration::from_secs(30)).min(total / 2);
    let mut samples = Vec::new();
    let mut tick = started;
    let mut died = false;
    while started.elapsed() < total {
        tick += o.sample;
        thread::sleep(tick.saturating_duration_since(Instant::now())); // the sampling period
        if !d.alive() {
            died = true;
            break;
        }
        let (Ok(rss), Ok(fds)) = (rss_kib(pid), fd_count(pid)) else {
            died = true;
            break;
        };
        let s = Sample {
            t: started.elapsed().as_secs_f64(),
            rss_kib: rss,
            fds,
            tunnels: stats.tunnels.load(Ordering::Relaxed),
            bytes: stats.bytes.load(Ordering::Relaxed),
            refused: stats.refused.load(Ordering::Relaxed),
            abandoned: stats.abandoned.load(Ordering::Relaxed),
            idle_open: stats.idle_open.load(Ordering::Relaxed),
            errors: stats.errors.load(Ordering::Relaxed),
            access_lines: d.access_lines.load(Ordering::Relaxed),
        };
        writeln!(csv, "{}", s.csv()).map_err(|e| e.to_string())?;
        let _ = csv.flush();
        println!(
            "  {:>6.0}s  RSS {:>7} KiB  fds {:>4}  tunnels {:>8}  {:>6} MiB  refused {:>6}  \
             abandoned {:>6}  errors {}",
            s.t,
            s.rss_kib,
            s.fds,
            s.tunnels,
            s.bytes >> 20,
            s.refused,
            s.abandoned,
            s.errors
        );
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let _ = idle.join();

    // With the traffic gone, the descriptors go back to where they were.
    let mut fds_after = u64::MAX;
    let settle = Instant::now() + Duration::from_secs(15);
    while !died && Instant::now() < settle {
        fds_after = non_pipe_fds(pid).unwrap_or(u64::MAX);
        if fds_after <= fds_before {
            break;
        }
        thread::sleep(Duration::from_millis(100)); // polling /proc
    }

    let warmup_s = warmup.as_secs_f64();
    let post: Vec<Sample> = samples.iter().copied().filter(|s| s.t > warmup_s).collect();
    let verdict = judge(&post);
    let errors = stats.errors.load(Ordering::Relaxed);
    let mut problems = Vec::new();
    if died {
        problems.push(format!(
            "socks5d died; its last words:\n{}",
            d.stderr_tail()
        ));
    }
    if let Err(e) = &verdict {
        problems.push(e.clone());
    }
    if fds_after > fds_before + FD_AFTER_SLACK {
        problems.push(format!(
            "descriptors (pipes aside): {fds_before} before the traffic, {fds_after} 15 s \
             after it stopped: {}",
            fd_list(pid)
        ));
        problems.push(format!("before: {fds_before_list}"));
    }
    if errors > 0 {
        let first = stats
            .first_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n  ");
        problems.push(format!("{errors} client errors, the first:\n  {first}"));
    }
    let summary = match &verdict {
        Ok(v) => v.clone(),
        Err(v) => v.clone(),
    };
    let title = format!(
        "socks5d soak, {} min: {}",
        o.minutes,
        if problems.is_empty() { "PASS" } else { "FAIL" }
    );
    fs::write(&svg_path, chart::svg(&samples, warmup_s, &title, &summary))
        .map_err(|e| format!("{}: {e}", svg_path.display()))?;
    let last = samples.last();
    println!(
        "soak: {} tunnels, {} MiB, {} refused log ins, {} abandoned handshakes; \
         descriptors (pipes aside) {fds_before} before, {fds_after} after; {summary}",
        last.map_or(0, |s| s.tunnels),
        last.map_or(0, |s| s.bytes >> 20),
        last.map_or(0, |s| s.refused),
        last.map_or(0, |s| s.abandoned),
    );
    println!("soak: {} and {}", csv_path.display(), svg_path.display());
    if problems.is_empty() {
        println!("soak: PASS");
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn main() -> ExitCode {
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak: FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, rss_kib: u64, fds: u64) -> Sample {
        Sample {
            t,
            rss_kib,
            fds,
            tunnels: 0,
            bytes: 0,
            refused: 0,
            abandoned: 0,
            idle_open: 0,
            errors: 0,
            access_lines: 0,
        }
    }

    #[test]
    fn flat_or_noisy_passes_and_growth_fails() {
        let flat: Vec<Sample> = (0..10)
            .map(|i: u32| {
                sample(
                    f64::from(i),
                    4000 + u64::from(i % 3) * 100,
                    140 + u64::from(i % 2) * 4,
                )
            })
            .collect();
        assert!(judge(&flat).is_ok(), "{:?}", judge(&flat));
        let leak: Vec<Sample> = (0..10)
            .map(|i: u32| sample(f64::from(i), 4000 + u64::from(i) * 1000, 140))
            .collect();
        let e = judge(&leak).unwrap_err();
        assert!(e.contains("GREW RSS"), "{e}");
        let fd_leak: Vec<Sample> = (0..10)
            .map(|i: u32| sample(f64::from(i), 4000, 140 + u64::from(i) * 10))
            .collect();
        let e = judge(&fd_leak).unwrap_err();
        assert!(e.contains("GREW descriptors"), "{e}");
        assert!(judge(&flat[..3]).is_err(), "too few samples");
    }

    #[test]
    fn stamps_are_utc_dates() {
        assert_eq!(stamp_of(0), "19700101-000000");
        assert_eq!(stamp_of(951_782_400 + 3_723), "20000229-010203");
        assert_eq!(stamp_of(1_798_761_599), "20261231-235959");
    }

    #[test]
    fn the_plot_is_one_svg_with_both_lines() {
        let samples: Vec<Sample> = (1..=12)
            .map(|i: u32| sample(f64::from(i) * 10.0, 3500, 141))
            .collect();
        let svg = chart::svg(&samples, 30.0, "t <&>", "s");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("t &lt;&amp;&gt;"));
    }
}
