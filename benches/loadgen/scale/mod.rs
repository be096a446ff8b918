//! `loadgen scale`, behind `make bench-scale`: 100,000 concurrent tunnels
//! through socks5d, opened in steps, measured inside User-Mode Linux.
//!
//! The host allows 20,000 open files per process; 100,000 tunnels are
//! 200,000 sockets in socks5d and as many in the generator. So the
//! command boots a UML guest (`scripts/uml-run.sh`, memory sized for it,
//! the kernel's TCP hash table sized as a large server's) and runs itself
//! there with `--guest` ([`guest`]): it raises the guest's limits, starts
//! socks5d, opens the tunnels step by step and measures at each step.
//! Back on the host it writes the report ([`report`]) from the guest's
//! `raw.txt`, with the host's load average sampled during the run, and
//! ends with one line, `scale: N passed, M failed`, over its checks (every
//! step reached with its figures, every tunnel closed at the end). The
//! goals are judged in the report, not in that line.

pub mod guest;
pub mod report;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::args::Args;
use crate::driver::peers::Tools;
use crate::driver::{load_average, machine_meta};
use crate::procfs;

/// How often the host's load average is sampled during the run.
const LOAD_EVERY: Duration = Duration::from_secs(5);
/// How often the guest's CPU time on the host is written for it to read.
const CPU_EVERY: Duration = Duration::from_millis(50);
/// How often the guest's host processes are looked up again.
const RESCAN_EVERY: Duration = Duration::from_secs(1);
/// The file, in the output folder, where the host writes the guest's CPU
/// time (`MILLISECONDS TICKS`: since the run started, and its processes'
/// CPU ticks, 100 a second) and the guest reads it.
pub const HOST_CPU_FILE: &str = ".host-cpu";

/// What one scale run does.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Open tunnels at each step, rising.
    pub steps: Vec<usize>,
    /// Loopback source addresses of the idle tunnels' clients.
    pub sources: usize,
    /// Ports of the echo target the idle tunnels lead to.
    pub targets: usize,
    /// Threads opening tunnels.
    pub openers: usize,
    /// Tunnels kept busy with a 64-byte ping-pong at every step.
    pub active: usize,
    /// Ping-pong round trips measured at every step.
    pub echo_rounds: usize,
    /// Round trips before them, not measured.
    pub echo_warmup: usize,
    /// Threads of the handshake measurement.
    pub hs_threads: usize,
    /// Rounds of handshakes at every step, against socks5d and its twin
    /// in turn.
    pub hs_rounds: usize,
    /// Seconds of handshakes measured in each round.
    pub hs_secs: f64,
    /// Seconds of handshakes before each round, not measured.
    pub hs_warmup: f64,
    /// Seconds the tunnels sit idle before the memory is read.
    pub settle: f64,
    /// Tunnels checked to relay a byte at every step but the last, where
    /// all are.
    pub sample: usize,
    /// Bound on every connect, read and write.
    pub timeout: f64,
}

impl Plan {
    /// Reads the plan's options; the defaults are `make bench-scale`'s.
    pub fn from_args(a: &mut Args) -> Result<Plan, String> {
        let steps = a.get("--steps", "10000,25000,50000,100000".to_owned())?;
        let plan = Plan {
            steps: parse_steps(&steps)?,
            sources: a.get("--sources", 4)?,
            targets: a.get("--targets", 8)?,
            openers: a.get("--openers", 8)?,
            active: a.get("--active", 4)?,
            echo_rounds: a.get("--echo-rounds", 2000)?,
            echo_warmup: a.get("--echo-warmup", 200)?,
            hs_threads: a.get("--hs-threads", 8)?,
            hs_rounds: a.get("--hs-rounds", 5)?,
            hs_secs: a.get("--hs-secs", 1.0)?,
            hs_warmup: a.get("--hs-warmup", 0.3)?,
            settle: a.get("--settle", 1.0)?,
            sample: a.get("--sample", 1000)?,
            timeout: a.get("--timeout", 30.0)?,
        };
        plan.check()?;
        Ok(plan)
    }

    fn check(&self) -> Result<(), String> {
        let n = |what: &str, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("{what}: {v} is not within {lo} to {hi}"))
            }
        };
        n("--sources", self.sources, 1, 250)?;
        n("--targets", self.targets, 1, crate::targets::MAX_LISTENERS)?;
        n("--openers", self.openers, 1, 256)?;
        n("--active", self.active, 1, 64)?;
        n("--echo-rounds", self.echo_rounds, 1, 10_000_000)?;
        n("--hs-threads", self.hs_threads, 1, 256)?;
        n("--hs-rounds", self.hs_rounds, 1, 1000)?;
        n("--sample", self.sample, 1, usize::MAX)?;
        if self.steps[0] <= self.active {
            return Err(format!(
                "--steps: the first step must be above the {} active tunnels",
                self.active
            ));
        }
        for (what, v) in [
            ("--hs-secs", self.hs_secs),
            ("--settle", self.settle),
            ("--timeout", self.timeout),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{what}: {v} is not a number of seconds"));
            }
        }
        if self.hs_secs <= 0.0 || self.timeout <= 0.0 {
            return Err("--hs-secs and --timeout must be above 0".into());
        }
        Ok(())
    }

    /// The plan as options again, for the guest's command line.
    pub fn to_args(&self) -> Vec<String> {
        let steps: Vec<String> = self.steps.iter().map(usize::to_string).collect();
        [
            ("--steps", steps.join(",")),
            ("--sources", self.sources.to_string()),
            ("--targets", self.targets.to_string()),
            ("--openers", self.openers.to_string()),
            ("--active", self.active.to_string()),
            ("--echo-rounds", self.echo_rounds.to_string()),
            ("--echo-warmup", self.echo_warmup.to_string()),
            ("--hs-threads", self.hs_threads.to_string()),
            ("--hs-rounds", self.hs_rounds.to_string()),
            ("--hs-secs", self.hs_secs.to_string()),
            ("--hs-warmup", self.hs_warmup.to_string()),
            ("--settle", self.settle.to_string()),
            ("--sample", self.sample.to_string()),
            ("--timeout", self.timeout.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect()
    }

    /// The most tunnels the run holds at once.
    pub fn most(&self) -> usize {
        *self.steps.last().expect("at least one step")
    }
}

/// `10000,25000` into rising step sizes.
pub fn parse_steps(list: &str) -> Result<Vec<usize>, String> {
    let steps: Vec<usize> = list
        .split(',')
        .map(|s| s.trim().replace('_', "").parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--steps: '{list}': {e}"))?;
    if steps.is_empty() || steps.windows(2).any(|w| w[0] >= w[1]) || steps[0] == 0 {
        return Err(format!("--steps: '{list}' is not a rising list of counts"));
    }
    if *steps.last().unwrap_or(&0) > 400_000 {
        return Err("--steps: at most 400,000 tunnels".into());
    }
    Ok(steps)
}

/// `loadgen scale`: on the host, boots the guest and writes the report;
/// with `--guest`, the measurement itself.
pub fn main(mut a: Args) -> Result<bool, String> {
    let in_guest = a.flag("--guest");
    let report_only = a.flag("--report");
    let host_cpu = a.value("--host-cpu")?.map(PathBuf::from);
    let out = PathBuf::from(a.get("--out", "bench-results/scale".to_owned())?);
    let socks5d = PathBuf::from(a.get("--socks5d", "target/release/socks5d".to_owned())?);
    let plan = Plan::from_args(&mut a)?;
    if in_guest {
        a.finish()?;
        return guest::run(&plan, &out, socks5d, host_cpu).map(|()| true);
    }
    if report_only {
        a.finish()?;
        return finish(&out, true);
    }
    let mem = a.get("--mem", "4G".to_owned())?;
    let limit = a.get("--uml-timeout", 3600u64)?;
    let thash = a.get("--thash-entries", 524_288u64)?;
    a.finish()?;
    host(&plan, &out, &socks5d, &mem, limit, thash)
}

/// Seconds since the epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The guest's CPU time as the host sees it: every process under this one
/// (uml-run.sh, the UML kernel and its processes), each read only while
/// its pid still names the process seen (start time checked).
fn guest_ticks(procs: &[procfs::Stat]) -> u64 {
    procs
        .iter()
        .filter_map(|p| procfs::stat(p.pid).filter(|now| now.start == p.start))
        .map(|s| s.cpu_ticks)
        .sum()
}

/// The host's sampler: every [`CPU_EVERY`], the guest's CPU ticks into
/// `cpu_file` (replaced whole, so the guest never reads half a line);
/// every [`LOAD_EVERY`], the load average into `loads`.
fn sample_host(stop: &AtomicBool, cpu_file: &Path, loads: &Mutex<Vec<String>>) {
    let me = std::process::id();
    let t0 = Instant::now();
    let (mut next_load, mut next_scan) = (t0, t0);
    let mut procs: Vec<procfs::Stat> = Vec::new();
    let tmp = cpu_file.with_extension("tmp");
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= next_scan {
            procs = procfs::tree(me).into_iter().skip(1).collect();
            next_scan = now + RESCAN_EVERY;
        }
        let text = format!("{} {}\n", t0.elapsed().as_millis(), guest_ticks(&procs));
        if fs::write(&tmp, text).is_ok() {
            let _ = fs::rename(&tmp, cpu_file);
        }
        if now >= next_load {
            let s = format!("{:.0}s {}", t0.elapsed().as_secs_f64(), load_average());
            if let Ok(mut v) = loads.lock() {
                v.push(s);
            }
            next_load += LOAD_EVERY;
        }
        thread::sleep(CPU_EVERY);
    }
    let _ = fs::remove_file(cpu_file);
}

/// The host's side: the guest, the load samples, the report.
fn host(
    plan: &Plan,
    out: &Path,
    socks5d: &Path,
    mem: &str,
    limit: u64,
    thash: u64,
) -> Result<bool, String> {
    fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let raw = out.join("raw.txt");
    // A report is only ever made from this run's lines.
    match fs::remove_file(&raw) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", raw.display())),
    }
    let uml = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/uml-run.sh");
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let load_start = load_average();
    let samples = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_file = out.join(HOST_CPU_FILE);
    let sampler = {
        let (samples, stop, cpu_file) = (Arc::clone(&samples), Arc::clone(&stop), cpu_file.clone());
        thread::spawn(move || sample_host(&stop, &cpu_file, &samples))
    };
    println!(
        "scale: booting a {mem} User-Mode Linux guest for {} tunnels (steps {}); host load {load_start}",
        plan.most(),
        plan.steps
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let started = Instant::now();
    let status = Command::new(&uml)
        .args(["-m", mem, "-t", &limit.to_string()])
        .args(["-k", &format!("thash_entries={thash}")])
        // Every slab cache under its own name (the kernel merges caches of
        // one object size otherwise): where the guest's memory goes.
        .args(["-k", "slab_nomerge"])
        .arg(&exe)
        .arg("scale")
        .arg("--guest")
        .arg("--out")
        .arg(out)
        .arg("--socks5d")
        .arg(socks5d)
        .arg("--host-cpu")
        .arg(&cpu_file)
        .args(plan.to_args())
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("{}: {e}", uml.display()));
    stop.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    let elapsed = started.elapsed().as_secs_f64();
    let guest_ok = match &status {
        Ok(s) if s.success() => true,
        Ok(s) => {
            println!("scale: the guest ended with {s}");
            false
        }
        Err(e) => {
            println!("scale: {e}");
            false
        }
    };
    // The host's facts go after the guest's lines, as `# host ...` lines.
    let mut meta: Vec<(String, String)> = vec![
        ("host load at start".into(), load_start),
        ("host load at end".into(), load_average()),
        ("host elapsed".into(), format!("{elapsed:.0} s")),
        ("host end".into(), unix_now().to_string()),
        ("uml memory".into(), mem.to_owned()),
        ("host commit".into(), commit()),
        ("uml thash_entries".into(), thash.to_string()),
    ];
    let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    meta.push(("host load samples".into(), samples.join("; ")));
    for (k, v) in machine_meta(&Tools::find(socks5d.to_path_buf())) {
        meta.push((format!("host {k}"), v));
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&raw)
        .map_err(|e| format!("{}: {e}", raw.display()))?;
    for (k, v) in &meta {
        writeln!(f, "# {k}: {v}").map_err(|e| e.to_string())?;
    }
    drop(f);
    finish(out, guest_ok)
}

/// Writes the report from `out/raw.txt` and prints its checks, then the
/// closing line; true if the guest ran and every check passed.
fn finish(out: &Path, guest_ok: bool) -> Result<bool, String> {
    let checks = report::write(out)?;
    for c in &checks {
        println!(
            "{} scale: {}",
            if c.passed { "PASS" } else { "FAIL" },
            c.what
        );
    }
    let failed = checks.iter().filter(|c| !c.passed).count();
    println!("scale: report: {}", out.join("report.md").display());
    println!("scale: {} passed, {failed} failed", checks.len() - failed);
    Ok(guest_ok && failed == 0)
}

/// The commit the work tree is at, with `+` when it has changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(c)
            if git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()) =>
        {
            format!("{c}+")
        }
        Some(c) => c,
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        Args::new(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn steps_must_rise() {
        assert_eq!(
            parse_steps("10000,25_000,100000").unwrap(),
            [10_000, 25_000, 100_000]
        );
        for bad in ["", "10,5", "0,10", "10,10", "x", "500000"] {
            assert!(parse_steps(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_plan_round_trips_through_its_options() {
        let p = Plan::from_args(&mut args(&["--steps", "500,2000", "--hs-secs", "0.5"])).unwrap();
        assert_eq!(p.steps, [500, 2000]);
        assert_eq!(p.most(), 2000);
        assert_eq!(p.hs_secs, 0.5);
        let again = Plan::from_args(&mut Args::new(p.to_args())).unwrap();
        assert_eq!(again, p);
        assert!(Plan::from_args(&mut args(&["--steps", "4"])).is_err());
        assert!(Plan::from_args(&mut args(&["--sources", "0"])).is_err());
        assert!(Plan::from_args(&mut args(&["--hs-secs", "0"])).is_err());
    }
}
