//! The measurement, inside the UML guest.
//!
//! 1. The guest's limits are raised for the largest step: `fs.nr_open`,
//!    `fs.file-max`, this process's open-file limit (which socks5d
//!    inherits), the ephemeral port range (10000 to 65535, listeners go
//!    below it) and the accept queues.
//! 2. socks5d starts as `make bench` starts it (a user, `--rules` allowing
//!    loopback targets, no access log), and an echo target listening on a
//!    few ports: socks5d connects from 127.0.0.1, and each destination
//!    port gives it a whole ephemeral range.
//! 3. Warm-up: a few tunnels used and closed, one second of handshakes.
//!    Then the few active tunnels open; the baseline is read (socks5d's
//!    memory, the kernel's slab) and measured like a step.
//! 4. Each step opens tunnels until that many are open (their clients
//!    spread over several loopback source addresses, 127.0.1.x, since one
//!    address has 55,536 ephemeral ports), lets them sit idle, then reads
//!    socks5d's memory and measures, while they sit idle: the handshake
//!    rate and latency of new clients (full cycles from 127.0.0.1, the
//!    handshake scenario), the 64-byte echo of the active tunnels, and
//!    that idle tunnels still relay (a sample; all of them at the last step).
//! 5. Every tunnel is closed from the target's side; once socks5d holds no
//!    more of their descriptors its memory is read again, and the
//!    handshakes measured once more with none open.
//!
//! Every phase is one result line in `OUT/raw.txt`, written as it ends.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, setrlimit};

use super::Plan;
use crate::client::{Auth, Route};
use crate::driver::peers::{self, Creds, Kind, Tools};
use crate::driver::rules::RulesFile;
use crate::driver::utc_now;
use crate::line::Line;
use crate::procfs::{self, Memory};
use crate::scenarios::idle::{relay_failures, relays};
use crate::scenarios::{Common, Errors, handshake};
use crate::stats::{Summary, percentile};
use crate::svg::fmt_value;
use crate::targets::Echo;

/// Descriptors kept for everything but the tunnels, per process.
const RESERVE_FDS: usize = 16_384;
/// The ephemeral port range inside the guest; listeners take ports below.
const PORT_RANGE: &str = "10000 65535";
/// Tunnels of the warm-up.
const WARMUP_TUNNELS: usize = 16;
/// A thread opening tunnels gives up after this many failures.
const MAX_ERRORS_PER_OPENER: u64 = 20;
/// How long closing every tunnel may take.
const CLOSE_LIMIT: Duration = Duration::from_secs(600);
/// Bytes of each echo round trip.
const ECHO_SIZE: usize = 64;
/// Smaller slab caches are left out of the raw lines.
pub const SLAB_SHOWN_KIB: u64 = 64;

/// The guest's measurement; the lines go to `out/raw.txt`. `host_cpu` is
/// the host's sampler file ([`super::HOST_CPU_FILE`]), if there is one.
pub fn run(
    plan: &Plan,
    out: &Path,
    socks5d: PathBuf,
    host_cpu: Option<PathBuf>,
) -> Result<(), String> {
    fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let raw_path = out.join("raw.txt");
    let mut raw = File::create(&raw_path).map_err(|e| format!("{}: {e}", raw_path.display()))?;
    let mut meta = vec![
        ("date".to_owned(), utc_now()),
        ("command".to_owned(), "make bench-scale".to_owned()),
        ("steps".to_owned(), join(&plan.steps)),
        ("plan".to_owned(), plan.to_args().join(" ")),
    ];
    meta.extend(tune(plan.most())?);
    meta.extend(guest_facts());
    for (k, v) in &meta {
        writeln!(raw, "# {k}: {v}").map_err(|e| e.to_string())?;
    }

    let tools = Tools::find(socks5d);
    if let Some(why) = tools.missing(Kind::Socks5d) {
        return Err(why);
    }
    let creds = Creds {
        user: "scale".into(),
        pass: peers::random_alnum(16)?,
        users_redis: None,
    };
    let tmp = std::env::temp_dir().join(format!("loadgen-scale-{}", std::process::id()));
    fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let log = File::create(out.join("socks5d.log")).map_err(|e| format!("socks5d.log: {e}"))?;
    let proxy = peers::start(
        Kind::Socks5d,
        &tools,
        &creds,
        RulesFile::Allow,
        false,
        &tmp,
        &log,
    )?;
    let twin = peers::start(
        Kind::Socks5d,
        &tools,
        &creds,
        RulesFile::Allow,
        false,
        &tmp,
        &log,
    )?;
    let result = measure(plan, &mut raw, &creds, &proxy, &twin, host_cpu);
    proxy.stop();
    twin.stop();
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// Raises the guest's limits for `most` tunnels; returns what was set.
fn tune(most: usize) -> Result<Vec<(String, String)>, String> {
    // Two descriptors a tunnel in each of socks5d and this process.
    let fds = 2 * most + RESERVE_FDS;
    let nr_open = fds.next_power_of_two().max(1 << 20);
    let settings = [
        ("fs/nr_open", nr_open.to_string()),
        ("fs/file-max", (4 * fds + 65_536).max(1 << 20).to_string()),
        ("net/ipv4/ip_local_port_range", PORT_RANGE.to_owned()),
        ("net/core/somaxconn", "65535".to_owned()),
        ("net/ipv4/tcp_max_syn_backlog", "65535".to_owned()),
    ];
    let mut set = Vec::new();
    for (name, value) in settings {
        let path = format!("/proc/sys/{name}");
        fs::write(&path, &value).map_err(|e| format!("{path}: {e} (is this the guest?)"))?;
        set.push((format!("sysctl {}", name.replace('/', ".")), value));
    }
    let limit = fds as u64;
    setrlimit(Resource::RLIMIT_NOFILE, limit, limit)
        .map_err(|e| format!("open-file limit {limit}: {e}"))?;
    set.push(("nofile".to_owned(), limit.to_string()));
    Ok(set)
}

/// The guest's kernel, CPUs, memory and TCP hash size.
fn guest_facts() -> Vec<(String, String)> {
    let mut m = Vec::new();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    m.push((
        "guest kernel".to_owned(),
        format!("Linux {}", kernel.trim()),
    ));
    m.push((
        "guest cpus".to_owned(),
        thread::available_parallelism()
            .map_or(0, |n| n.get())
            .to_string(),
    ));
    let k = kernel_memory();
    m.push((
        "guest memory".to_owned(),
        format!("{:.1} GiB", k.total_kib as f64 / (1 << 20) as f64),
    ));
    if let Some(line) = peers::find_program("dmesg")
        .and_then(|p| crate::driver::spawn::command(p).output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .and_then(|t| {
            t.lines()
                .find(|l| l.contains("TCP established hash table entries"))
                .map(str::to_owned)
        })
        && let Some(n) = line.split("entries: ").nth(1)
    {
        m.push((
            "guest tcp established hash".to_owned(),
            n.split_whitespace().next().unwrap_or("?").to_owned(),
        ));
    }
    m
}

/// The kernel's memory, from /proc/meminfo and /proc/net/sockstat.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Kernel {
    total_kib: u64,
    available_kib: u64,
    slab_kib: u64,
    tcp_inuse: u64,
    tcp_tw: u64,
}

fn kernel_memory() -> Kernel {
    let info = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let sockstat = fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let tcp = |field: &str| -> u64 {
        let line = sockstat.lines().find(|l| l.starts_with("TCP:"));
        let words: Vec<&str> = line.map_or(Vec::new(), |l| l.split_whitespace().collect());
        words
            .iter()
            .position(|w| *w == field)
            .and_then(|i| words.get(i + 1)?.parse().ok())
            .unwrap_or(0)
    };
    Kernel {
        total_kib: kib("MemTotal:"),
        available_kib: kib("MemAvailable:"),
        slab_kib: kib("Slab:"),
        tcp_inuse: tcp("inuse"),
        tcp_tw: tcp("tw"),
    }
}

/// The kernel's slab caches of at least [`SLAB_SHOWN_KIB`], largest first, as
/// `name=KiB` words (objects times object size, from /proc/slabinfo).
fn slab_caches() -> String {
    let text = fs::read_to_string("/proc/slabinfo").unwrap_or_default();
    let mut caches: Vec<(u64, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("slabinfo"))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let objs: u64 = w.get(2)?.parse().ok()?;
            let size: u64 = w.get(3)?.parse().ok()?;
            Some((objs * size / 1024, w[0].to_owned()))
        })
        .filter(|(kib, _)| *kib >= SLAB_SHOWN_KIB)
        .collect();
    caches.sort_by(|a, b| b.cmp(a));
    caches
        .iter()
        .map(|(kib, name)| format!("{name}={kib}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn join(v: &[usize]) -> String {
    v.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// socks5d's mappings holding at least 1 MiB of anonymous memory, as
/// `SIZE/ANON` words in KiB (its heap arenas and the large allocations
/// malloc maps apart: the session slab is one of them).
fn big_mappings(pid: u32) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut out = Vec::new();
    let mut size = 0u64;
    for l in text.lines() {
        let kib = || {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if l.starts_with("Size:") {
            size = kib();
        } else if l.starts_with("Anonymous:") && kib() >= 1024 {
            out.push(format!("{size}/{}", kib()));
        }
    }
    out.join(" ")
}

/// The loopback source address of idle tunnel `i`: 127.0.1.1 and up.
fn source(i: usize, sources: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, 1 + (i % sources) as u8)
}

/// One sample of the host's sampler file: (host milliseconds, the
/// guest's CPU ticks on the host).
type HostSample = (u64, u64);

fn host_sample(path: &Path) -> Option<HostSample> {
    let t = fs::read_to_string(path).ok()?;
    let mut w = t.split_whitespace();
    Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
}

/// The share of one host CPU the whole guest had between two samples:
/// under 1 when the host gave it less (other work on the host), whatever
/// the guest's own clocks say.
fn host_share(a: Option<HostSample>, b: Option<HostSample>) -> Option<f64> {
    let (a, b) = (a?, b?);
    let ms = b.0.checked_sub(a.0).filter(|ms| *ms > 0)?;
    let ticks = b.1.checked_sub(a.1)?;
    Some(ticks as f64 / procfs::TICKS_PER_SEC / (ms as f64 / 1000.0))
}

/// What the steps share.
struct Ctx<'a> {
    plan: &'a Plan,
    route: Route,
    common: Common,
    pid: u32,
    echo: Echo,
    timeout: Duration,
    host_cpu: Option<PathBuf>,
    /// The twin socks5d, which holds no tunnels: the same measurement
    /// against it, alternated, tells the host's and the kernel's share
    /// apart from socks5d's own.
    twin: Option<Common>,
}

impl Ctx<'_> {
    /// Opens tunnels `from..from + n` on `openers` threads; tunnel `i` goes
    /// from its source address to echo port `i % targets`.
    fn open(&self, from: usize, n: usize) -> (Vec<TcpStream>, Errors) {
        let openers = self.plan.openers.clamp(1, n.max(1));
        let targets = self.echo.addrs();
        let mut out = Vec::with_capacity(n);
        let mut errors = Errors::default();
        thread::scope(|scope| {
            let handles: Vec<_> = (0..openers)
                .map(|j| {
                    let (route, plan, timeout) = (&self.route, self.plan, self.timeout);
                    scope.spawn(move || {
                        let mut got = Vec::new();
                        let mut errors = Errors::default();
                        let mut i = from + j;
                        while i < from + n && errors.total() < MAX_ERRORS_PER_OPENER {
                            let to = targets[i % targets.len()];
                            match route.open_from(source(i, plan.sources), to, timeout) {
                                Ok(s) => got.push(s),
                                Err(e) => {
                                    eprintln!("loadgen: opening tunnel {i}: {e}");
                                    errors.add(e.kind());
                                }
                            }
                            i += openers;
                        }
                        (got, errors)
                    })
                })
                .collect();
            for h in handles {
                match h.join() {
                    Ok((s, e)) => {
                        out.extend(s);
                        errors.merge(e);
                    }
                    Err(_) => errors.add("panic"),
                }
            }
        });
        (out, errors)
    }

    /// The host's latest sample of the guest's CPU time.
    fn host(&self) -> Option<HostSample> {
        host_sample(self.host_cpu.as_deref()?)
    }

    /// socks5d's memory and the kernel's, now. (socks5d's descriptors are
    /// not counted: listing /proc/PID/fd makes the kernel an inode and a
    /// dentry per descriptor, 2.6 KiB a tunnel, which would be counted as
    /// the tunnels' own.)
    fn snapshot(&self) -> (Memory, Kernel) {
        (procfs::tree_memory(self.pid), kernel_memory())
    }
}

/// Checks every `step`-th tunnel on a few threads; returns (checked, failed).
fn relay_check(tunnels: &mut [TcpStream], want: usize, threads: usize) -> (usize, usize) {
    let step = tunnels.len().div_ceil(want.max(1)).max(1);
    let mut picked: Vec<&mut TcpStream> = tunnels.iter_mut().step_by(step).collect();
    let failed = relay_failures(&mut picked, threads);
    (picked.len(), failed)
}

/// The 64-byte ping-pong over `tunnels` in turn; sorted round trips in ns.
fn echo_latency(tunnels: &mut [TcpStream], rounds: usize, warmup: usize) -> io::Result<Vec<u64>> {
    let ping = [0x5Au8; ECHO_SIZE];
    let mut pong = [0u8; ECHO_SIZE];
    let mut samples = Vec::with_capacity(rounds);
    let n = tunnels.len();
    for i in 0..warmup + rounds {
        let s = &mut tunnels[i % n];
        let t = Instant::now();
        s.write_all(&ping)?;
        s.read_exact(&mut pong)?;
        if i >= warmup {
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    samples.sort_unstable();
    Ok(samples)
}

/// Puts the memory figures of `now` against `base` for `added` tunnels.
fn put_memory(line: &mut Line, base: &(Memory, Kernel), now: &(Memory, Kernel), added: usize) {
    let (m, k) = now;
    let per = |a: u64, b: u64| (a as f64 - b as f64) / added.max(1) as f64;
    line.put("anon_kib", m.anon_kib)
        .put("pss_kib", m.pss_kib)
        .put("rss_kib", m.rss_kib)
        .put("kernel_slab_kib", k.slab_kib)
        .put("kernel_avail_kib", k.available_kib)
        .put("tcp_inuse", k.tcp_inuse)
        .put("tcp_tw", k.tcp_tw);
    if added > 0 {
        line.num("anon_kib_per_tunnel", per(m.anon_kib, base.0.anon_kib), 3)
            .num("pss_kib_per_tunnel", per(m.pss_kib, base.0.pss_kib), 3)
            .num(
                "kernel_slab_kib_per_tunnel",
                per(k.slab_kib, base.1.slab_kib),
                2,
            );
    }
}

/// One round of new clients' handshakes against the socks5d of `common`:
/// the handshake scenario's line, with `uml_cpu` (the share of a host CPU
/// the guest had meanwhile) and `host_us_cycle` (the host CPU time of the
/// whole guest, kernel included, per cycle) when the host's sampler is there.
fn handshake_round(c: &Ctx<'_>, common: &Common, secs: f64, warmup: f64) -> Line {
    let mut marks = Vec::new();
    let mut h = handshake::run_marked(
        common,
        &handshake::Params {
            threads: c.plan.hs_threads,
            secs,
            warmup,
        },
        &mut |_| marks.push(c.host()),
    );
    if let (Some(share), Some(wall), Some(cycles)) = (
        host_share(
            marks.first().copied().flatten(),
            marks.get(1).copied().flatten(),
        ),
        h.number("secs"),
        h.number("cycles").filter(|n| *n > 0.0),
    ) {
        h.num("uml_cpu", share, 2)
            .num("host_us_cycle", share * wall * 1e6 / cycles, 0);
    }
    h
}

/// The figures of a handshake round summarised over the rounds (median),
/// with their decimals.
const HS_KEYS: [(&str, usize); 8] = [
    ("cycles_s", 0),
    ("p50_us", 1),
    ("p99_us", 1),
    ("proxy_us_cycle", 1),
    ("proxy_cpu", 2),
    ("gen_cpu", 2),
    ("uml_cpu", 2),
    ("host_us_cycle", 0),
];

/// Puts the medians of `rounds` into `line` under `prefix`, and their
/// errors into `errors`.
fn summarise(line: &mut Line, prefix: &str, rounds: &[Line], errors: &mut Errors) {
    for (key, decimals) in HS_KEYS {
        let v: Vec<f64> = rounds.iter().filter_map(|l| l.number(key)).collect();
        if let Some(s) = Summary::of(&v) {
            line.num(&format!("{prefix}{key}"), s.median, decimals);
            if key == "cycles_s" {
                line.num(&format!("{prefix}cycles_s_min"), s.min, 0).num(
                    &format!("{prefix}cycles_s_max"),
                    s.max,
                    0,
                );
            }
        }
    }
    let cycles: f64 = rounds.iter().filter_map(|l| l.number("cycles")).sum();
    line.put(&format!("{prefix}cycles"), cycles);
    for l in rounds {
        for (k, v) in l.fields() {
            if let Some(kind) = k.strip_prefix("err_") {
                for _ in 0..v.parse::<u64>().unwrap_or(1) {
                    errors.add(&format!("{prefix}{kind}"));
                }
            }
        }
        if l.number("cycles_s").is_none() {
            errors.add(&format!("{prefix}no_rate"));
        }
    }
}

/// New clients' handshakes, measured now in `rounds` rounds, alternating
/// between the socks5d that holds the tunnels and its twin that holds
/// none (who goes first alternates too): medians go to `line` as `hs_*`
/// and `twin_hs_*`, errors into `errors`. Returns every round's own line,
/// labelled `case=LABEL round=N`, for the raw lines.
fn handshakes(c: &Ctx<'_>, label: &str, line: &mut Line, errors: &mut Errors) -> Vec<Line> {
    let p = c.plan;
    handshake_rounds(
        c,
        label,
        (p.hs_rounds, p.hs_secs, p.hs_warmup),
        line,
        errors,
    )
}

/// [`handshakes`] with `(rounds, seconds, warm-up seconds)` of its own.
fn handshake_rounds(
    c: &Ctx<'_>,
    label: &str,
    (rounds, secs, warmup): (usize, f64, f64),
    line: &mut Line,
    errors: &mut Errors,
) -> Vec<Line> {
    let (mut ours, mut twins) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        for twin_now in [r % 2 == 1, r % 2 == 0] {
            let mut l = match (&c.twin, twin_now) {
                (Some(t), true) => handshake_round(c, t, secs, warmup),
                (None, true) => continue,
                (_, false) => handshake_round(c, &c.common, secs, warmup),
            };
            l.put("case", label).put("round", r + 1);
            if twin_now {
                twins.push(l);
            } else {
                ours.push(l);
            }
        }
    }
    summarise(line, "hs_", &ours, errors);
    if c.twin.is_some() {
        summarise(line, "twin_hs_", &twins, errors);
    }
    ours.extend(twins);
    ours
}

/// The echo figures of the active tunnels go to `line` as `echo_*`.
fn echoes(c: &Ctx<'_>, active: &mut [TcpStream], line: &mut Line, errors: &mut Errors) {
    match echo_latency(active, c.plan.echo_rounds, c.plan.echo_warmup) {
        Ok(samples) => {
            let us = |q: f64| percentile(&samples, q).map_or(f64::NAN, |ns| ns as f64 / 1000.0);
            line.put("echo_rounds", samples.len())
                .num("echo_p50_us", us(50.0), 1)
                .num("echo_p99_us", us(99.0), 1);
        }
        Err(e) => {
            eprintln!("loadgen: echo over the active tunnels: {e}");
            errors.add("echo");
        }
    }
}

fn write_line(raw: &mut File, line: &Line) -> Result<(), String> {
    writeln!(raw, "{line}")
        .and_then(|()| raw.flush())
        .map_err(|e| format!("raw.txt: {e}"))
}

fn progress(line: &Line) {
    let g = |k: &str| line.number(k).map_or("?".to_owned(), fmt_value);
    let phase = line.get("phase").unwrap_or("?");
    let mut s = format!(
        "scale: {phase}, {} tunnels:",
        line.get("tunnels").unwrap_or("?")
    );
    if line.get("open_secs").is_some() {
        s += &format!(" opened in {} s ({}/s);", g("open_secs"), g("open_per_s"));
    }
    if line.get("close_secs").is_some() {
        s += &format!(" closed in {} s;", g("close_secs"));
    }
    s += &format!(
        " socks5d anon {} KiB, PSS {} KiB",
        g("anon_kib"),
        g("pss_kib")
    );
    if line.get("pss_kib_per_tunnel").is_some() {
        s += &format!(
            " ({} and {} KiB a tunnel)",
            g("anon_kib_per_tunnel"),
            g("pss_kib_per_tunnel")
        );
    }
    s += &format!(
        "; handshakes {}/s, p50 {} µs, p99 {} µs (twin with none: {}/s, p99 {} µs)",
        g("hs_cycles_s"),
        g("hs_p50_us"),
        g("hs_p99_us"),
        g("twin_hs_cycles_s"),
        g("twin_hs_p99_us")
    );
    if line.get("echo_p50_us").is_some() {
        s += &format!(
            "; echo p50 {} µs, p99 {} µs",
            g("echo_p50_us"),
            g("echo_p99_us")
        );
    }
    s += &format!("; errors {}", line.get("errors").unwrap_or("?"));
    println!("{s}");
}

fn measure(
    plan: &Plan,
    raw: &mut File,
    creds: &Creds,
    proxy: &peers::Running,
    twin: &peers::Running,
    host_cpu: Option<PathBuf>,
) -> Result<(), String> {
    let timeout = Duration::from_secs_f64(plan.timeout);
    let pid = proxy.pid();
    let common = |r: &peers::Running, peer: &str| Common {
        route: Route::Socks {
            proxy: SocketAddr::from((Ipv4Addr::LOCALHOST, r.port)),
            auth: Auth::UserPass {
                user: creds.user.clone(),
                pass: creds.pass.clone(),
            },
        },
        peer: peer.into(),
        case: "scale".into(),
        round: 1,
        proxy_pid: Some(r.pid()),
        timeout,
    };
    let ours = common(proxy, "socks5d");
    let c = Ctx {
        plan,
        route: ours.route.clone(),
        common: ours,
        twin: Some(common(twin, "twin")),
        pid,
        echo: Echo::start_many(plan.targets).map_err(|e| format!("echo target: {e}"))?,
        timeout,
        host_cpu,
    };
    let settle = Duration::from_secs_f64(plan.settle);

    // Warm-up: a few tunnels used and closed, a second of handshakes.
    let (mut warm, mut warm_errors) = c.open(0, WARMUP_TUNNELS);
    for (i, s) in warm.iter_mut().enumerate() {
        if !relays(s, i as u8) {
            warm_errors.add("warmup_relay");
        }
    }
    drop(warm);
    let mut scratch = Line::new();
    handshake_rounds(&c, "warmup", (1, 1.0, 0.2), &mut scratch, &mut warm_errors);
    // TCP sockets in the guest with no tunnel open: the listeners.
    let sockets_without = kernel_memory().tcp_inuse;

    // The active tunnels, from an address of their own.
    let mut active = Vec::new();
    for i in 0..plan.active {
        let to = c.echo.addrs()[i % c.echo.addrs().len()];
        match c.route.open_from(Ipv4Addr::new(127, 0, 2, 1), to, timeout) {
            Ok(s) => active.push(s),
            Err(e) => return Err(format!("an active tunnel: {e}")),
        }
    }
    thread::sleep(settle);
    let base = c.snapshot();
    let mut line = Line::new();
    let mut errors = warm_errors;
    line.put("scenario", "scale")
        .put("phase", "base")
        .put("tunnels", active.len());
    put_memory(&mut line, &base, &base, 0);
    let rounds = handshakes(&c, "base", &mut line, &mut errors);
    echoes(&c, &mut active, &mut line, &mut errors);
    errors.put(&mut line);
    write_line(raw, &line)?;
    for l in &rounds {
        write_line(raw, l)?;
    }
    writeln!(raw, "# slab at base: {}", slab_caches()).map_err(|e| e.to_string())?;
    progress(&line);

    let mut idle: Vec<TcpStream> = Vec::with_capacity(plan.most());
    for (n, &want) in plan.steps.iter().enumerate() {
        let last = n + 1 == plan.steps.len();
        let mut line = Line::new();
        let mut errors = Errors::default();
        line.put("scenario", "scale")
            .put("phase", "step")
            .put("wanted", want);
        let t = Instant::now();
        let need = (want - plan.active).saturating_sub(idle.len());
        let before = c.host();
        let (got, open_errors) = c.open(idle.len(), need);
        let open_secs = t.elapsed().as_secs_f64();
        if let Some(share) = host_share(before, c.host()) {
            line.num("open_uml_cpu", share, 2).num(
                "open_host_us_tunnel",
                share * open_secs * 1e6 / need.max(1) as f64,
                0,
            );
        }
        idle.extend(got);
        errors.merge(open_errors);
        let tunnels = idle.len() + active.len();
        line.put("tunnels", tunnels)
            .put("opened", need)
            .num("open_secs", open_secs, 2)
            .num("open_per_s", need as f64 / open_secs.max(1e-9), 0);
        thread::sleep(settle);
        let now = c.snapshot();
        put_memory(&mut line, &base, &now, tunnels - active.len());
        if last {
            writeln!(raw, "# slab at {tunnels}: {}", slab_caches()).map_err(|e| e.to_string())?;
        }
        writeln!(
            raw,
            "# socks5d mappings at {tunnels} (size/anonymous KiB): {}",
            big_mappings(pid)
        )
        .map_err(|e| e.to_string())?;
        let rounds = handshakes(&c, &tunnels.to_string(), &mut line, &mut errors);
        echoes(&c, &mut active, &mut line, &mut errors);
        let want_checked = if last { idle.len() } else { plan.sample };
        let (checked, failed) = relay_check(&mut idle, want_checked, plan.openers);
        line.put("relay_checked", checked).put("relay_fail", failed);
        for _ in 0..failed {
            errors.add("relay");
        }
        if tunnels < want {
            errors.add("short");
        }
        errors.put(&mut line);
        write_line(raw, &line)?;
        for l in &rounds {
            write_line(raw, l)?;
        }
        progress(&line);
        if tunnels < want {
            println!("scale: stopping: {tunnels} of {want} tunnels open");
            break;
        }
    }

    // Close them all from the target's side, then the clients.
    let mut line = Line::new();
    let mut errors = Errors::default();
    line.put("scenario", "scale").put("phase", "closed");
    let held = idle.len() + active.len();
    let t = Instant::now();
    if !c.echo.close_all_within(CLOSE_LIMIT) {
        errors.add("target_close");
    }
    drop(idle);
    drop(active);
    let deadline = t + CLOSE_LIMIT;
    let mut sockets = kernel_memory().tcp_inuse;
    while sockets > sockets_without && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        sockets = kernel_memory().tcp_inuse;
    }
    let close_secs = t.elapsed().as_secs_f64();
    let all_closed = sockets <= sockets_without;
    if !all_closed {
        errors.add("not_closed");
    }
    line.put("tunnels", 0)
        .put("closed_tunnels", held)
        .num("close_secs", close_secs, 2)
        .put("all_closed", u8::from(all_closed))
        .put("tcp_inuse_without_tunnels", sockets_without);
    thread::sleep(settle);
    let after = c.snapshot();
    put_memory(&mut line, &base, &after, 0);
    writeln!(raw, "# slab after closing: {}", slab_caches()).map_err(|e| e.to_string())?;
    let rounds = handshakes(&c, "closed", &mut line, &mut errors);
    // Memory once more, after those handshakes: what a server that goes on
    // serving keeps.
    let again = procfs::tree_memory(pid);
    line.put("anon_kib_after_hs", again.anon_kib)
        .put("pss_kib_after_hs", again.pss_kib);
    errors.put(&mut line);
    write_line(raw, &line)?;
    for l in &rounds {
        write_line(raw, l)?;
    }
    progress(&line);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_cycle_over_their_addresses() {
        assert_eq!(source(0, 4), Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(source(5, 4), Ipv4Addr::new(127, 0, 1, 2));
        assert_eq!(source(249, 250), Ipv4Addr::new(127, 0, 1, 250));
    }

    #[test]
    fn the_hosts_share_of_a_cpu() {
        assert_eq!(host_share(Some((1000, 50)), Some((3000, 150))), Some(0.5));
        assert_eq!(host_share(Some((1000, 50)), Some((1000, 60))), None);
        assert_eq!(host_share(None, Some((1000, 60))), None);
        let p = std::env::temp_dir().join(format!("loadgen-host-cpu-{}", std::process::id()));
        fs::write(&p, "1234 567\n").unwrap();
        assert_eq!(host_sample(&p), Some((1234, 567)));
        fs::remove_file(&p).unwrap();
        assert_eq!(host_sample(&p), None);
    }

    #[test]
    fn slab_and_meminfo_lines_are_read() {
        let k = kernel_memory();
        assert!(k.total_kib > 0 && k.available_kib <= k.total_kib, "{k:?}");
        assert!(k.slab_kib > 0 && k.tcp_inuse > 0, "{k:?}");
    }

    /// The relay check and the echo over real tunnels (straight to an echo
    /// target): every picked tunnel answers, and a closed target fails it.
    #[test]
    fn relay_check_and_echo_over_direct_tunnels() {
        let echo = Echo::start_many(2).unwrap();
        let mut tunnels: Vec<TcpStream> = (0..20)
            .map(|i| {
                Route::Direct
                    .open_from(source(i, 3), echo.addrs()[i % 2], Duration::from_secs(5))
                    .unwrap()
            })
            .collect();
        assert_eq!(relay_check(&mut tunnels, 5, 2), (5, 0));
        assert_eq!(relay_check(&mut tunnels, 1000, 3), (20, 0));
        let samples = echo_latency(&mut tunnels[..3], 30, 3).unwrap();
        assert_eq!(samples.len(), 30);
        assert!(samples.windows(2).all(|w| w[0] <= w[1]));
        assert!(echo.close_all_within(Duration::from_secs(5)));
        assert_eq!(relay_check(&mut tunnels, 4, 2), (4, 4));
    }
}
