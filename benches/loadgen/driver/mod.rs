//! `loadgen compare`, the driver of `make bench`: every case against every
//! peer, alternated and repeated, then the report.
//!
//! The machines this runs on are small and shared, so no figure is worth
//! much alone: each case runs against every peer back to back (the order
//! rotating from case to case and round to round), the whole plan is
//! repeated, and the report gives medians with their spread and socks5d's
//! ratios to figures measured in the same minutes.
//!
//! Each run is its own generator process (this program, with a scenario),
//! under `taskset -c 0` for the pinned case, and each proxy is started fresh
//! for it and stopped after it. Everything lands in `OUT/raw.txt`: `# key:
//! value` lines about the machine and the run, then one result line per
//! run; the report is made from that file alone.

pub mod peers;
pub mod redis;
pub mod rules;
pub mod spawn;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{SigSet, Signal};

use crate::args::Args;
use crate::line::Line;
use crate::procfs;
use crate::report;
use crate::scenarios;
use peers::{Creds, Kind, SystemUser, Tools};
use redis::Redis;
use rules::{LIMITED_USER, RATE_LIMIT, RulesFile};
use spawn::command;

/// The peers compared when `--peers` is not given.
pub const DEFAULT_PEERS: &str = "direct,socks5d,socks5d-rules1000,socks5d-proxyproto,socks5d-redis,\
                                 microsocks,dante,dante-noauth";

/// A generator run taking longer than this is killed and counted as failed.
const RUN_LIMIT: Duration = Duration::from_secs(300);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// How much is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `make bench`: the volumes and counts the issue asks for.
    Full,
    /// `make bench-quick`: every scenario, briefly.
    Quick,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Quick => "quick",
        }
    }
}

/// One measured case: a scenario and its arguments.
#[derive(Clone, Debug)]
pub struct Case {
    /// Its name in result lines and in the report.
    pub id: &'static str,
    /// The generator's scenario.
    pub scenario: &'static str,
    /// The scenario's arguments.
    pub args: Vec<String>,
    /// Proxy and generator both on CPU 0.
    pub pinned: bool,
    /// The rules file socks5d is started with (`socks5d-rules1000` always
    /// gets its thousand rules).
    pub rules: RulesFile,
    /// Whether the rate-limited user logs in, rather than the bench's.
    pub limited: bool,
    /// Whether a second socks5d, with the one-line `allow` file, is started
    /// beside the first for the generator to alternate with.
    pub baseline: bool,
}

impl Case {
    fn new(id: &'static str, scenario: &'static str, args: &[&str]) -> Case {
        Case {
            id,
            scenario,
            args: args.iter().map(|s| s.to_string()).collect(),
            pinned: false,
            rules: RulesFile::Allow,
            limited: false,
            baseline: false,
        }
    }

    /// Whether this is one of the rate cases, which only socks5d has.
    pub fn is_rate(&self) -> bool {
        self.scenario == "rate"
    }
}

/// The cases of a mode, in the order they run within a round.
pub fn cases(mode: Mode) -> Vec<Case> {
    let (bytes, hs_secs, hs_warmup, rounds, warmup, idle, settle) = match mode {
        Mode::Full => ("2G", "3", "0.5", "20000", "2000", "9000", "1"),
        Mode::Quick => ("256M", "1", "0.2", "2000", "200", "1000", "0.3"),
    };
    let (cycles, warm) = match mode {
        Mode::Full => ("1000000", "200000"),
        Mode::Quick => ("20000", "2000"),
    };
    let tp = |id, tunnels, dir| {
        Case::new(
            id,
            "throughput",
            &["--tunnels", tunnels, "--bytes", bytes, "--dir", dir],
        )
    };
    let latency = ["--rounds", rounds, "--warmup", warmup, "--size", "64"];
    // UDP: seconds measured after a warm-up (half a second per run keeps
    // a fourth round of `make bench` within its budget); 64 datagrams in
    // flight per association (one for the latency case), lost after 200 ms.
    let (udp_secs, udp_warmup) = match mode {
        Mode::Full => ("0.5", "0.2"),
        Mode::Quick => ("0.2", "0.1"),
    };
    let udp = |id, assocs, size, window| {
        Case::new(
            id,
            "udp",
            &[
                "--assocs",
                assocs,
                "--size",
                size,
                "--window",
                window,
                "--secs",
                udp_secs,
                "--warmup",
                udp_warmup,
                "--loss-ms",
                "200",
            ],
        )
    };
    // Rates: the limited user's tunnels download for 5 s (the goal is
    // judged over 5 s; 1 s in the quick run); an unlimited user's, 1 s on
    // each socks5d in turns of 1/8 s (0.4 s in turns of 0.2 s).
    let (rate_secs, free_secs, pairs) = match mode {
        Mode::Full => ("5", "1", "8"),
        Mode::Quick => ("1", "0.4", "2"),
    };
    let limited_case = |id, tunnels, secs| Case {
        rules: RulesFile::Rate,
        limited: true,
        ..Case::new(
            id,
            "rate",
            &["--tunnels", tunnels, "--secs", secs, "--limit", RATE_LIMIT],
        )
    };
    vec![
        tp("t1-up", "1", "up"),
        tp("t1-down", "1", "down"),
        tp("t8-up", "8", "up"),
        tp("t8-down", "8", "down"),
        Case::new(
            "handshake",
            "handshake",
            &["--threads", "8", "--secs", hs_secs, "--warmup", hs_warmup],
        ),
        Case::new("latency", "latency", &latency),
        Case {
            pinned: true,
            ..Case::new("latency-pinned", "latency", &latency)
        },
        Case::new("idle", "idle", &["--tunnels", idle, "--settle", settle]),
        Case::new(
            "churn",
            "churn",
            &["--threads", "8", "--cycles", cycles, "--warmup", warm],
        ),
        udp("udp1-64", "1", "64", "64"),
        udp("udp1-1400", "1", "1400", "64"),
        udp("udp8-64", "8", "64", "64"),
        udp("udp8-1400", "8", "1400", "64"),
        udp("udp-latency", "1", "64", "1"),
        limited_case("rate1", "1", rate_secs),
        limited_case("rate4", "4", rate_secs),
        // An unlimited user on socks5d with the rate rule, by turns with
        // socks5d with none.
        Case {
            rules: RulesFile::Rate,
            baseline: true,
            ..Case::new(
                "rate-unlimited",
                "rate",
                &["--tunnels", "1", "--secs", free_secs, "--pairs", pairs],
            )
        },
    ]
}

/// Keeps the cases named in `list` (comma-separated case ids or scenario
/// names: `udp` is every UDP case); an unknown name is an error.
pub fn select(cases: Vec<Case>, list: &str) -> Result<Vec<Case>, String> {
    let names: Vec<&str> = list.split(',').filter(|n| !n.is_empty()).collect();
    if let Some(bad) = names
        .iter()
        .find(|n| !cases.iter().any(|c| c.id == **n || c.scenario == **n))
    {
        return Err(format!("--cases: no case or scenario '{bad}'"));
    }
    Ok(cases
        .into_iter()
        .filter(|c| names.iter().any(|n| c.id == *n || c.scenario == *n))
        .collect())
}

/// Whether `kind` runs `case` in the first round only, and why.
fn first_round_only(mode: Mode, case: &Case, kind: Kind) -> Option<&'static str> {
    if case.id == "churn" {
        return Some(
            "churn runs in the first round only: its memory check takes a million handshake \
             cycles in the full run, about 100 s",
        );
    }
    if mode == Mode::Full && case.limited {
        return Some(
            "the rate-limited cases run in the first round only: 5 s each, and what they measure \
             is socks5d's buckets against the clock, not the machine's speed",
        );
    }
    (mode == Mode::Full && case.id == "idle" && kind == Kind::Dante).then_some(
        "dante (user/password) runs idle in the first round only: its 9,000 password checks \
         take about two minutes; dante-noauth measures the same server's idle memory every round",
    )
}

/// Whether `case` means nothing for `kind`, and why: microsocks has no
/// UDP ASSOCIATE, only socks5d has rate rules, and `socks5d-rules1000`,
/// `socks5d-proxyproto` and `socks5d-redis` are there for the handshake's
/// cost alone.
pub fn not_applicable(case: &Case, kind: Kind) -> Option<&'static str> {
    if kind == Kind::Socks5dRules1000 && case.id != "handshake" {
        return Some(
            "socks5d-rules1000 (socks5d judging every request against 1,000 rules) runs the \
             handshake case only, where a request is judged per cycle (n/a elsewhere)",
        );
    }
    if kind == Kind::Socks5dProxyProto && case.id != "handshake" {
        return Some(
            "socks5d-proxyproto (socks5d behind a balancer: a PROXY v2 header before each \
             handshake) runs the handshake case only, where a header is parsed per cycle (n/a \
             elsewhere)",
        );
    }
    if kind == Kind::Socks5dRedis && case.id != "handshake" {
        return Some(
            "socks5d-redis (socks5d with its users in Redis, --users-redis) runs the handshake \
             case only, where a user logs in per cycle (n/a elsewhere)",
        );
    }
    if case.is_rate() && kind != Kind::Socks5d {
        return Some(
            "the rate cases measure socks5d's 'allow ... rate' rules, which no other peer has \
             (n/a in the table)",
        );
    }
    (case.scenario == "udp" && kind == Kind::Microsocks).then_some(
        "the UDP cases are not applicable to microsocks, which has no UDP ASSOCIATE (n/a in the \
         table)",
    )
}

/// Whether `kind` never runs `case`, and why.
fn peer_skips(case: &Case, kind: Kind) -> Option<&'static str> {
    if let Some(why) = not_applicable(case, kind) {
        return Some(why);
    }
    (case.id == "churn" && kind != Kind::Socks5d).then_some(
        "churn runs for socks5d only: it checks that socks5d's own memory does not grow over \
         its handshake cycles, a goal with no peer to compare",
    )
}

/// Whether `kind` runs `case` in `round`.
fn runs(mode: Mode, case: &Case, kind: Kind, round: u32) -> bool {
    peer_skips(case, kind).is_none() && (round == 1 || first_round_only(mode, case, kind).is_none())
}

/// The make command that runs the same comparison again.
fn reproduce(mode: Mode, peers: &str, only: Option<&str>) -> String {
    let mut c = match mode {
        Mode::Full => "make bench".to_owned(),
        Mode::Quick => "make bench-quick".to_owned(),
    };
    if peers != DEFAULT_PEERS {
        c.push_str(&format!(" BENCH_PEERS={peers}"));
    }
    if let Some(list) = only {
        c.push_str(&format!(" BENCH_FLAGS='--cases {list}'"));
    }
    c
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread, before any other
/// thread exists (so all inherit the mask), and waits for them in one
/// thread that only raises a flag: the loop then stops, and the proxies and
/// the throw-away user are cleaned up on the way out. Children are started
/// by [`command`], with an empty mask, so they still die by these signals.
fn watch_signals() -> Result<(), String> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = set.wait() {
                eprintln!("bench: {sig}: stopping; partial results follow");
                INTERRUPTED.store(true, Ordering::SeqCst);
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The time now, `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (y, m, d) = socks5d::metrics::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60
    )
}

fn command_output(program: &Path, args: &[&str]) -> Option<String> {
    let out = command(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn package_version(package: &str) -> Option<String> {
    let dpkg = peers::find_program("dpkg-query")?;
    command_output(&dpkg, &["-W", "-f", "${Version}", package])
}

/// `# key: value` lines describing the machine and the programs.
pub fn machine_meta(tools: &Tools) -> Vec<(String, String)> {
    let mut m = Vec::new();
    let lscpu = peers::find_program("lscpu")
        .and_then(|p| command_output(&p, &[]))
        .unwrap_or_default();
    let field = |name: &str| {
        lscpu
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    };
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    m.push(("cpus".into(), format!("{cpus} (nproc)")));
    m.push((
        "cpu".into(),
        field("Model name").unwrap_or_else(|| "unknown".into()),
    ));
    if let Some(h) = field("Hypervisor vendor") {
        m.push(("hypervisor".into(), h));
    }
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    m.push(("kernel".into(), format!("Linux {}", kernel.trim())));
    let mem_kib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let l = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            l.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    m.push((
        "memory".into(),
        format!("{:.1} GiB", mem_kib as f64 / (1 << 20) as f64),
    ));
    if let Some(v) = command_output(&tools.socks5d, &["--version"]) {
        m.push(("socks5d".into(), v));
    }
    if tools.microsocks.is_some() {
        let v = package_version("microsocks").unwrap_or_else(|| "version unknown".into());
        m.push(("microsocks".into(), format!("microsocks {v}")));
    }
    if tools.danted.is_some() {
        let v = package_version("dante-server").unwrap_or_else(|| "version unknown".into());
        m.push(("dante".into(), format!("danted {v}")));
    }
    m
}

/// The 1, 5 and 15-minute load averages: how busy the machine was with
/// other work.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Removes the temporary folder (Dante's configurations) on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What one run needs besides its case and peer.
struct Ctx {
    exe: PathBuf,
    tools: Tools,
    creds: Creds,
    tmp: PathBuf,
    peers_log: File,
    gen_log: File,
    /// The Redis server socks5d-redis takes its users from, if it runs.
    redis_pid: Option<u32>,
}

/// Starts the Redis server that socks5d-redis takes its users from, in a
/// folder of its own, and adds the bench's user there.
fn start_redis(tools: &Tools, creds: &Creds) -> Result<Redis, String> {
    let program = tools
        .redis_server
        .as_ref()
        .ok_or("redis-server not installed")?;
    let dir = std::env::temp_dir().join(format!("loadgen-redis-{}", std::process::id()));
    let redis = Redis::start(program, dir)?;
    redis.add_user(&tools.socks5d, creds)?;
    Ok(redis)
}

/// Runs the generator until it exits, the limit passes or we are
/// interrupted; returns its result line.
fn run_generator(mut cmd: Command) -> Result<Line, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the generator: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + RUN_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for the generator: {e}")),
        }
        if interrupted() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(if interrupted() {
                "interrupted".into()
            } else {
                format!("killed after {} s", RUN_LIMIT.as_secs())
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
    let text = reader.join().unwrap_or_default();
    text.lines()
        .find_map(Line::parse)
        .ok_or_else(|| "the generator printed no result line (see loadgen.log)".into())
}

fn run_once(ctx: &Ctx, case: &Case, kind: Kind, round: u32) -> Result<Line, String> {
    let rules = match kind {
        Kind::Socks5dRules1000 => RulesFile::Thousand,
        _ => case.rules,
    };
    let running = match kind {
        Kind::Direct => None,
        _ => Some(peers::start(
            kind,
            &ctx.tools,
            &ctx.creds,
            rules,
            case.pinned,
            &ctx.tmp,
            &ctx.peers_log,
        )?),
    };
    let baseline = match (kind, case.baseline) {
        (Kind::Socks5d, true) => match peers::start(
            kind,
            &ctx.tools,
            &ctx.creds,
            RulesFile::Allow,
            case.pinned,
            &ctx.tmp,
            &ctx.peers_log,
        ) {
            Ok(b) => Some(b),
            Err(e) => {
                if let Some(r) = running {
                    r.stop();
                }
                return Err(format!("the baseline socks5d: {e}"));
            }
        },
        _ => None,
    };
    let mut cmd = match (&ctx.tools.taskset, case.pinned) {
        (Some(taskset), true) => {
            let mut c = command(taskset);
            c.args(["-c", "0"]).arg(&ctx.exe);
            c
        }
        _ => command(&ctx.exe),
    };
    cmd.arg(case.scenario)
        .args(&case.args)
        .args(["--peer", kind.name(), "--case", case.id])
        .args(["--round", &round.to_string()]);
    if let Some(r) = &running {
        cmd.arg("--proxy")
            .arg(format!("127.0.0.1:{}", r.port))
            .arg("--pid")
            .arg(r.pid().to_string());
        if let Some(b) = &baseline {
            cmd.arg("--baseline")
                .arg(format!("127.0.0.1:{}", b.port))
                .arg("--baseline-pid")
                .arg(b.pid().to_string());
        }
        if kind == Kind::Socks5dProxyProto {
            cmd.arg("--proxy-header");
        }
        if kind.authenticates() {
            let user = if case.limited {
                LIMITED_USER
            } else {
                &ctx.creds.user
            };
            cmd.arg("--auth").arg(format!("{user}:{}", ctx.creds.pass));
        }
    }
    let _ = writeln!(
        &ctx.gen_log,
        "--- round {round} {} {}",
        case.id,
        kind.name()
    );
    cmd.stderr(
        ctx.gen_log
            .try_clone()
            .map_or(Stdio::inherit(), Stdio::from),
    );
    // socks5d-redis: what the Redis server did meanwhile (its whole run,
    // warm-up included), to show the logins are not served from Redis.
    let redis_ticks = || {
        ctx.redis_pid
            .filter(|_| kind == Kind::Socks5dRedis)
            .and_then(procfs::stat)
            .map(|s| s.cpu_ticks)
    };
    let before = redis_ticks();
    let mut result = run_generator(cmd);
    if let (Ok(line), Some(b), Some(a)) = (&mut result, before, redis_ticks()) {
        let secs = a.saturating_sub(b) as f64 / procfs::TICKS_PER_SEC;
        line.num("redis_cpu_s", secs, 2);
    }
    for r in [running, baseline].into_iter().flatten() {
        r.stop();
    }
    result
}

/// Whether a result line carries the figure its case is about.
pub fn has_number(line: &Line) -> bool {
    let case = line.get("case").unwrap_or("");
    let direct = line.get("peer") == Some("direct");
    line.get("ok") == Some("1")
        && match report::primary_metric(case) {
            // Direct has no proxy whose memory could be read.
            Some(_) if direct && case == "idle" => line.get("relay_fail") == Some("0"),
            Some(key) => line.number(key).is_some(),
            None => true,
        }
}

/// `loadgen compare`.
pub fn main(mut a: Args) -> Result<bool, String> {
    let mode = match a.get("--mode", "full".to_owned())?.as_str() {
        "full" => Mode::Full,
        "quick" => Mode::Quick,
        m => return Err(format!("--mode: '{m}' is neither full nor quick")),
    };
    let rounds: u32 = a.get("--rounds", if mode == Mode::Full { 5 } else { 1 })?;
    // Rounds stop early rather than run past this (make bench must end
    // within 15 minutes, build included, on a busy machine).
    let budget = a.get("--budget", if mode == Mode::Full { 720.0 } else { 90.0 })?;
    let peer_list = a.get("--peers", DEFAULT_PEERS.to_owned())?;
    let out = PathBuf::from(a.get("--out", format!("bench-results/{}", mode.name()))?);
    let socks5d = PathBuf::from(a.get("--socks5d", "target/release/socks5d".to_owned())?);
    let only = a.value("--cases")?;
    let strict = a.flag("--strict");
    a.finish()?;
    if rounds == 0 {
        return Err("--rounds: at least 1".into());
    }

    watch_signals()?;
    let started = Instant::now();
    // Every proxy inherits the raised limit: 9,000 tunnels are 18,000 sockets.
    let nofile = scenarios::raise_nofile();
    let tools = Tools::find(socks5d);
    let mut peers: Vec<Kind> = Vec::new();
    let mut left_out: Vec<String> = Vec::new();
    for name in peer_list.split(',').filter(|n| !n.is_empty()) {
        let kind =
            Kind::from_name(name).ok_or_else(|| format!("--peers: unknown peer '{name}'"))?;
        match tools.missing(kind) {
            Some(why) => left_out.push(format!("{name}: {why}")),
            None if !peers.contains(&kind) => peers.push(kind),
            None => {}
        }
    }
    let mut all_cases = match &only {
        Some(list) => select(cases(mode), list)?,
        None => cases(mode),
    };
    if tools.taskset.is_none() && all_cases.iter().any(|c| c.pinned) {
        all_cases.retain(|c| !c.pinned);
        left_out.push("latency-pinned: taskset not found".into());
    }
    let mut creds = Creds {
        user: format!("s5bench{}", std::process::id()),
        pass: peers::random_alnum(16)?,
        users_redis: None,
    };
    let _system_user = if peers.contains(&Kind::Dante) {
        match SystemUser::create(&creds) {
            Ok(u) => Some(u),
            Err(e) => {
                peers.retain(|k| *k != Kind::Dante);
                left_out.push(format!("dante: no throw-away system user: {e}"));
                None
            }
        }
    } else {
        None
    };
    let redis = if peers.contains(&Kind::Socks5dRedis) {
        match start_redis(&tools, &creds) {
            Ok(r) => {
                creds.users_redis = Some(r.url());
                Some(r)
            }
            Err(e) => {
                peers.retain(|k| *k != Kind::Socks5dRedis);
                left_out.push(format!("socks5d-redis: {e}"));
                None
            }
        }
    } else {
        None
    };
    if peers.is_empty() {
        return Err(format!("nothing to bench: {}", left_out.join("; ")));
    }
    if strict && !left_out.is_empty() {
        return Err(format!("--strict: left out: {}", left_out.join("; ")));
    }

    fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let open = |name: &str| File::create(out.join(name)).map_err(|e| format!("{name}: {e}"));
    let mut raw = open("raw.txt")?;
    let tmp = TempDir(std::env::temp_dir().join(format!("loadgen-{}", std::process::id())));
    fs::create_dir_all(&tmp.0).map_err(|e| format!("{}: {e}", tmp.0.display()))?;
    let ctx = Ctx {
        exe: std::env::current_exe().map_err(|e| format!("own path: {e}"))?,
        tools,
        creds,
        tmp: tmp.0.clone(),
        peers_log: open("peers.log")?,
        gen_log: open("loadgen.log")?,
        redis_pid: redis.as_ref().map(Redis::pid),
    };
    if let Some(r) = &redis {
        let _ = writeln!(
            &ctx.peers_log,
            "--- redis-server on 127.0.0.1:{} (pid {}), the users of socks5d-redis",
            r.port(),
            r.pid()
        );
    }

    let names: Vec<&str> = peers.iter().map(|k| k.name()).collect();
    let mut meta = vec![
        ("date".to_owned(), utc_now()),
        ("mode".to_owned(), mode.name().to_owned()),
        (
            "command".to_owned(),
            reproduce(mode, &peer_list, only.as_deref()),
        ),
        ("rounds".to_owned(), rounds.to_string()),
        ("out".to_owned(), out.display().to_string()),
        ("peers".to_owned(), names.join(",")),
        (
            "cases".to_owned(),
            all_cases.iter().map(|c| c.id).collect::<Vec<_>>().join(","),
        ),
        ("nofile".to_owned(), nofile.to_string()),
        ("load at start".to_owned(), load_average()),
    ];
    meta.extend(machine_meta(&ctx.tools));
    if redis.is_some() {
        let v = package_version("redis-server").unwrap_or_else(|| "version unknown".into());
        meta.push(("redis".into(), format!("redis-server {v}")));
    }
    meta.extend(left_out.iter().map(|l| ("left out".to_owned(), l.clone())));
    let mut notes: Vec<&str> = Vec::new();
    for c in &all_cases {
        for &k in &peers {
            let why = peer_skips(c, k).or(first_round_only(mode, c, k).filter(|_| rounds > 1));
            if let Some(why) = why
                && !notes.contains(&why)
            {
                notes.push(why);
            }
        }
    }
    meta.extend(notes.iter().map(|w| ("note".to_owned(), (*w).to_owned())));
    for c in &all_cases {
        for &k in &peers {
            if not_applicable(c, k).is_some() {
                meta.push((
                    "not applicable".to_owned(),
                    format!("{} {}", c.id, k.name()),
                ));
            }
        }
    }
    for (k, v) in &meta {
        writeln!(raw, "# {k}: {v}").map_err(|e| e.to_string())?;
    }
    println!(
        "bench: {} mode, {rounds} round(s), peers: {}",
        mode.name(),
        names.join(", ")
    );
    for l in &left_out {
        println!("bench: left out: {l}");
    }

    let total: usize = (1..=rounds)
        .map(|r| {
            all_cases
                .iter()
                .flat_map(|c| peers.iter().map(move |&k| (c, k)))
                .filter(|(c, k)| runs(mode, c, *k, r))
                .count()
        })
        .sum();
    let mut done = 0;
    let mut failed: Vec<(Kind, String)> = Vec::new();
    let mut rounds_run = 0;
    // How long a round takes, runs of the first round only left out.
    let mut round_cost = 0.0f64;
    'rounds: for round in 1..=rounds {
        let spent = started.elapsed().as_secs_f64();
        if round > 1 && spent + round_cost > budget {
            let note = format!(
                "time budget of {budget:.0} s: {rounds_run} of {rounds} rounds run (a round takes \
                 about {round_cost:.0} s)"
            );
            println!("bench: {note}");
            writeln!(raw, "# note: {note}").map_err(|e| e.to_string())?;
            break;
        }
        let round_start = Instant::now();
        let mut once_secs = 0.0;
        for (ci, case) in all_cases.iter().enumerate() {
            // Rotate who goes first, case to case and round to round.
            let shift = (round as usize - 1 + ci) % peers.len();
            for &kind in peers.iter().cycle().skip(shift).take(peers.len()) {
                if interrupted() {
                    break 'rounds;
                }
                if !runs(mode, case, kind, round) {
                    continue;
                }
                done += 1;
                let t = Instant::now();
                let what = format!("round {round} {} {}", case.id, kind.name());
                let status = match run_once(&ctx, case, kind, round) {
                    Ok(line) => {
                        writeln!(raw, "{line}").map_err(|e| e.to_string())?;
                        let figure = report::primary_metric(case.id)
                            .and_then(|k| Some(format!("{k}={}", line.get(k)?)))
                            .unwrap_or_default();
                        if !has_number(&line) {
                            failed.push((kind, format!("{what}: {line}")));
                        }
                        format!(
                            "{figure} gen_cpu={} proxy_cpu={} errors={}",
                            line.get("gen_cpu").unwrap_or("-"),
                            line.get("proxy_cpu").unwrap_or("-"),
                            line.get("errors").unwrap_or("-")
                        )
                    }
                    Err(e) => {
                        writeln!(
                            raw,
                            "# failed: case={} peer={} round={round}: {e}",
                            case.id,
                            kind.name()
                        )
                        .map_err(|e| e.to_string())?;
                        failed.push((kind, format!("{what}: {e}")));
                        format!("FAILED: {e}")
                    }
                };
                println!(
                    "[{done:>3}/{total}] {:>4.1}s r{round} {:<15} {:<13} {status}",
                    t.elapsed().as_secs_f64(),
                    case.id,
                    kind.name()
                );
                if first_round_only(mode, case, kind).is_some() {
                    once_secs += t.elapsed().as_secs_f64();
                }
            }
        }
        if !interrupted() {
            rounds_run = round;
        }
        round_cost = round_start.elapsed().as_secs_f64() - once_secs;
    }
    let elapsed = started.elapsed().as_secs_f64();
    writeln!(raw, "# rounds run: {rounds_run}").map_err(|e| e.to_string())?;
    writeln!(raw, "# load at end: {}", load_average()).map_err(|e| e.to_string())?;
    writeln!(raw, "# elapsed: {elapsed:.0} s").map_err(|e| e.to_string())?;
    drop(raw);
    let report = report::write(&out)?;
    println!(
        "bench: {done} runs in {elapsed:.0} s, {} failed; report: {}",
        failed.len(),
        report.display()
    );
    for (_, f) in &failed {
        println!("bench: failed: {f}");
    }
    if interrupted() {
        return Err("interrupted".into());
    }
    // Our own figures must all be there; a peer that fails is reported, and
    // fails the command only with --strict.
    let ours = failed
        .iter()
        .any(|(k, _)| *k == Kind::Direct || k.is_socks5d());
    Ok(!(ours || (strict && !failed.is_empty())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let now = utc_now();
        assert!(now.ends_with(" UTC") && now.len() == 20, "{now}");
    }

    #[test]
    fn every_case_has_a_figure_and_both_modes_have_all_cases() {
        let full: Vec<_> = cases(Mode::Full).iter().map(|c| c.id).collect();
        let quick: Vec<_> = cases(Mode::Quick).iter().map(|c| c.id).collect();
        assert_eq!(full, quick);
        for id in full {
            assert!(report::primary_metric(id).is_some(), "{id}");
        }
        assert_eq!(cases(Mode::Full).iter().filter(|c| c.pinned).count(), 1);
    }

    #[test]
    fn churn_runs_for_socks5d_in_the_first_round_only() {
        for mode in [Mode::Full, Mode::Quick] {
            let all = cases(mode);
            let churn = all.iter().find(|c| c.id == "churn").unwrap();
            for kind in Kind::ALL {
                let want = kind == Kind::Socks5d;
                assert_eq!(runs(mode, churn, kind, 1), want, "{kind:?}");
                assert!(!runs(mode, churn, kind, 2), "{kind:?}");
                assert_eq!(peer_skips(churn, kind).is_none(), want);
            }
            // Every other case runs for every peer, but for UDP's and
            // microsocks, the rate cases' and any peer but socks5d, and
            // socks5d-rules1000's, socks5d-proxyproto's and socks5d-redis's
            // and any case but the handshake.
            for c in all.iter().filter(|c| c.id != "churn") {
                for k in Kind::ALL {
                    let udp_without = c.scenario == "udp" && k == Kind::Microsocks;
                    let rate_without = c.id.starts_with("rate") && k != Kind::Socks5d;
                    let rules1000 = k == Kind::Socks5dRules1000 && c.id != "handshake";
                    let proxyproto = k == Kind::Socks5dProxyProto && c.id != "handshake";
                    let redis = k == Kind::Socks5dRedis && c.id != "handshake";
                    let na = udp_without || rate_without || rules1000 || proxyproto || redis;
                    assert_eq!(runs(mode, c, k, 1), !na, "{} {k:?}", c.id);
                    assert_eq!(not_applicable(c, k).is_some(), na, "{} {k:?}", c.id);
                }
            }
        }
        let idle = cases(Mode::Full)
            .into_iter()
            .find(|c| c.id == "idle")
            .unwrap();
        assert!(!runs(Mode::Full, &idle, Kind::Dante, 2));
        assert!(runs(Mode::Quick, &idle, Kind::Dante, 2));
        assert!(runs(Mode::Full, &idle, Kind::DanteNoAuth, 2));
    }

    /// The limited user downloads through socks5d with the rate rule, over
    /// the 5 s the goal names, once; the unlimited user goes through the
    /// same file, by turns with a baseline socks5d, every round.
    #[test]
    fn rate_cases_pick_their_rules_and_user() {
        let arg = |c: &Case, name: &str| {
            let i = c.args.iter().position(|a| a == name)?;
            Some(c.args[i + 1].clone())
        };
        for mode in [Mode::Full, Mode::Quick] {
            let rate = select(cases(mode), "rate").unwrap();
            let ids: Vec<_> = rate.iter().map(|c| c.id).collect();
            assert_eq!(ids, ["rate1", "rate4", "rate-unlimited"]);
            for c in &rate {
                let limited = c.id == "rate1" || c.id == "rate4";
                assert_eq!(c.limited, limited, "{}", c.id);
                assert_eq!(c.baseline, !limited, "{}", c.id);
                assert_eq!(c.rules, RulesFile::Rate, "{}", c.id);
                let limit = arg(c, "--limit");
                assert_eq!(limit.as_deref(), limited.then_some(RATE_LIMIT), "{}", c.id);
                assert!(runs(mode, c, Kind::Socks5d, 1));
                assert_eq!(
                    runs(mode, c, Kind::Socks5d, 2),
                    !limited || mode == Mode::Quick
                );
            }
            let secs = arg(&rate[0], "--secs").unwrap();
            assert_eq!(secs, if mode == Mode::Full { "5" } else { "1" });
        }
        // Every other case uses the allow file and the bench's user.
        for c in cases(Mode::Full).iter().filter(|c| !c.is_rate()) {
            let plain = (RulesFile::Allow, false, false);
            assert_eq!((c.rules, c.limited, c.baseline), plain, "{}", c.id);
        }
    }

    #[test]
    fn the_command_to_reproduce_names_what_differs() {
        assert_eq!(reproduce(Mode::Full, DEFAULT_PEERS, None), "make bench");
        assert_eq!(
            reproduce(Mode::Quick, "direct,dante", Some("udp")),
            "make bench-quick BENCH_PEERS=direct,dante BENCH_FLAGS='--cases udp'"
        );
    }

    #[test]
    fn cases_are_selected_by_id_or_scenario() {
        let ids = |list: &str| -> Vec<&'static str> {
            select(cases(Mode::Quick), list)
                .unwrap()
                .iter()
                .map(|c| c.id)
                .collect()
        };
        assert_eq!(
            ids("udp"),
            [
                "udp1-64",
                "udp1-1400",
                "udp8-64",
                "udp8-1400",
                "udp-latency"
            ]
        );
        assert_eq!(ids("udp8-64,t1-up"), ["t1-up", "udp8-64"]);
        assert_eq!(ids("latency"), ["latency", "latency-pinned"]);
        assert!(select(cases(Mode::Quick), "udp,nonesuch").is_err());
    }

    #[test]
    fn udp_cases_keep_a_window_and_the_latency_one_a_single_datagram() {
        for mode in [Mode::Full, Mode::Quick] {
            for c in cases(mode).iter().filter(|c| c.scenario == "udp") {
                let arg = |name: &str| {
                    let i = c.args.iter().position(|a| a == name).unwrap();
                    c.args[i + 1].clone()
                };
                let want = if c.id == "udp-latency" { "1" } else { "64" };
                assert_eq!(arg("--window"), want, "{}", c.id);
                assert_eq!(arg("--loss-ms"), "200");
            }
        }
    }

    #[test]
    fn a_result_needs_its_number() {
        let l = |s: &str| Line::parse(s).unwrap();
        assert!(has_number(&l(
            "loadgen case=t1-up peer=socks5d ok=1 gib_s=2.5"
        )));
        assert!(!has_number(&l(
            "loadgen case=t1-up peer=socks5d ok=0 gib_s=2.5"
        )));
        assert!(!has_number(&l("loadgen case=t1-up peer=socks5d ok=1")));
        assert!(has_number(&l(
            "loadgen case=idle peer=direct ok=1 relay_fail=0"
        )));
        assert!(!has_number(&l(
            "loadgen case=idle peer=socks5d ok=1 relay_fail=0"
        )));
        assert!(has_number(&l(
            "loadgen case=udp8-1400 peer=socks5d ok=1 dgrams_s=1000"
        )));
        // A refused association (REP X'07') gives no rate, and fails.
        assert!(!has_number(&l(
            "loadgen case=udp1-64 peer=socks5d ok=0 errors=1 err_reply=1"
        )));
        assert!(!has_number(&l(
            "loadgen case=udp-latency peer=socks5d ok=1"
        )));
        // The rate cases: the limited user's share of its limit, and the
        // unlimited user's ratio to the baseline.
        assert!(has_number(&l(
            "loadgen case=rate4 peer=socks5d ok=1 of_limit=1.05"
        )));
        assert!(!has_number(&l(
            "loadgen case=rate1 peer=socks5d ok=1 mib_s=8.4"
        )));
        assert!(!has_number(&l(
            "loadgen case=rate-unlimited peer=socks5d ok=1 gib_s=1.5"
        )));
        assert!(!has_number(&l(
            "loadgen case=rate-unlimited peer=socks5d ok=0 errors=1 err_connect=1"
        )));
    }
}
