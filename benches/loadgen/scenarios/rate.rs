//! Rate: N tunnels download together for a fixed time, and the bytes they
//! got are set against the limit a proxy's rate rule gives their user.
//!
//! The tunnels are opened first (log-in and CONNECT, so the proxy has
//! judged them and made their buckets); the clock starts when all of them
//! are ready. Each then asks the source for far more than it can get in the
//! time and reads until the clock runs out: what arrived by then counts.
//! With `--limit`, the line says how the whole of it compares with the
//! limit over that time (`of_limit`: 1.00 is exactly the limit).
//!
//! With `--baseline`, a second proxy, the run compares two: short
//! downloads through one tunnel alternate between the proxy and the
//! baseline (A B, B A, A B, ...: a machine that speeds up or slows down
//! during the run favours neither), each getting `--secs` in all, and the
//! line has both rates and their ratio (`vs_baseline`: the median of the
//! pairs' ratios, with their least and greatest). That is how a user
//! no rule limits is measured on a proxy with a rate rule against one
//! without.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::{Common, Errors, Meter, failed};
use crate::client::{Route, is_timeout};
use crate::line::Line;
use crate::procfs;
use crate::stats::Summary;
use crate::targets::{Bulk, CHUNK, DOWNLOAD, header};

/// The knobs of a rate run.
#[derive(Clone, Debug)]
pub struct Params {
    /// Tunnels of the one user, downloading at once.
    pub tunnels: usize,
    /// Seconds measured (through each proxy, with a baseline).
    pub secs: f64,
    /// The limit the proxy's rule gives the user, in bytes per second; none
    /// for a user no rule limits.
    pub limit: Option<u64>,
    /// A second proxy to alternate with, logged in to the same way.
    pub baseline: Option<SocketAddr>,
    /// The baseline's pid, to read its CPU time.
    pub baseline_pid: Option<u32>,
    /// Alternations with a baseline: each proxy gets `secs / pairs` at a
    /// time, this many times.
    pub pairs: u32,
}

/// Asked of the source by each tunnel: more than any tunnel on loopback
/// moves in a run.
const ASK: u64 = 1 << 40;

/// Reads from `s` until `until`; returns the bytes read by then.
fn download_until(s: &mut TcpStream, until: Instant) -> io::Result<u64> {
    s.write_all(&header(DOWNLOAD, ASK))?;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        let now = Instant::now();
        if now >= until {
            return Ok(got);
        }
        // Never past the end of the window (a zero timeout would mean none).
        s.set_read_timeout(Some((until - now).max(Duration::from_millis(1))))?;
        match s.read(&mut buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            // Bytes whose read returned after the window are not counted.
            Ok(n) if Instant::now() <= until => got += n as u64,
            Ok(_) => return Ok(got),
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn io_kind(e: &io::Error) -> &'static str {
    if is_timeout(e) {
        "timeout"
    } else if e.kind() == io::ErrorKind::UnexpectedEof {
        "eof"
    } else {
        "io"
    }
}

/// Opens `tunnels` tunnels to `target`, then downloads through all of them
/// at once for `window`; the bytes each got, or the errors.
fn download(
    route: &Route,
    target: SocketAddr,
    tunnels: usize,
    window: Duration,
    timeout: Duration,
) -> Result<Vec<u64>, Errors> {
    let mut errors = Errors::default();
    let mut streams = Vec::new();
    for _ in 0..tunnels {
        match route.open(target, timeout) {
            Ok(s) => streams.push(s),
            Err(e) => {
                eprintln!("loadgen: opening a tunnel: {e}");
                errors.add(e.kind());
            }
        }
    }
    if errors.total() > 0 {
        return Err(errors);
    }
    let go = Arc::new(Barrier::new(tunnels));
    let workers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            let go = Arc::clone(&go);
            thread::spawn(move || {
                go.wait();
                download_until(&mut s, Instant::now() + window)
            })
        })
        .collect();
    let mut per_tunnel = Vec::new();
    for w in workers {
        match w.join() {
            Ok(Ok(n)) => per_tunnel.push(n),
            Ok(Err(e)) => {
                eprintln!("loadgen: download: {e}");
                errors.add(io_kind(&e));
            }
            Err(_) => errors.add("panic"),
        }
    }
    if errors.total() > 0 {
        Err(errors)
    } else {
        Ok(per_tunnel)
    }
}

/// Runs the scenario; the line has `of_limit` (with a limit), `gib_s`, and
/// `vs_baseline` (with a baseline) when every download lasted its window.
pub fn run(c: &Common, p: &Params) -> Line {
    let mut line = c.line("rate");
    let tunnels = p.tunnels.max(1);
    line.put("tunnels", tunnels).num("window_s", p.secs, 2);
    if let Some(limit) = p.limit {
        line.put("limit_b_s", limit);
    }
    let bulk = match Bulk::start() {
        Ok(b) => b,
        Err(e) => return failed(line, "target", e),
    };
    match p.baseline {
        None => {
            let meter = Meter::start(c.proxy_pid);
            let window = Duration::from_secs_f64(p.secs);
            let got = download(&c.route, bulk.addr(), tunnels, window, c.timeout);
            meter.finish(&mut line);
            match got {
                Ok(per_tunnel) => {
                    Errors::default().put(&mut line);
                    put_figures(&mut line, &per_tunnel, p);
                }
                Err(e) => e.put(&mut line),
            }
        }
        Some(base) => {
            // The proxy's CPU over a run that is half the baseline's would
            // say nothing: the generator's alone is metered, and each
            // proxy's CPU is set against the bytes it moved.
            let meter = Meter::start(None);
            let cpu = CpuPair::start([c.proxy_pid, p.baseline_pid]);
            let auth = match &c.route {
                Route::Socks { auth, .. } | Route::Balanced { auth, .. } => auth.clone(),
                Route::Direct => crate::client::Auth::None,
            };
            let baseline = Route::Socks { proxy: base, auth };
            let got = alternate([&c.route, &baseline], bulk.addr(), tunnels, c.timeout, p);
            meter.finish(&mut line);
            let cpu_s = cpu.finish();
            match got {
                Ok(t) => {
                    Errors::default().put(&mut line);
                    put_figures(&mut line, &t.ours, p);
                    put_baseline(&mut line, &t, p.secs);
                    put_cpu(&mut line, [t.ours.iter().sum(), t.theirs], cpu_s);
                }
                Err(e) => e.put(&mut line),
            }
        }
    }
    line
}

/// The CPU time of the proxy and of the baseline over a run by turns: each
/// is idle while the other has its turn, so its time over the whole run is
/// the time its own turns took (read once each way: a tick of error, not
/// one per turn).
#[derive(Debug)]
struct CpuPair {
    pids: [Option<u32>; 2],
    before: [u64; 2],
}

impl CpuPair {
    fn start(pids: [Option<u32>; 2]) -> CpuPair {
        let read = |pid: Option<u32>| pid.map_or(0, |p| procfs::tree_cpu_ticks(p).all);
        CpuPair {
            pids,
            before: [read(pids[0]), read(pids[1])],
        }
    }

    /// CPU-seconds each used since the start, where its pid is known.
    fn finish(&self) -> [Option<f64>; 2] {
        let mut out = [None; 2];
        for (i, pid) in self.pids.iter().enumerate() {
            if let Some(p) = pid {
                let now = procfs::tree_cpu_ticks(*p).all;
                out[i] = Some(now.saturating_sub(self.before[i]) as f64 / procfs::TICKS_PER_SEC);
            }
        }
        out
    }
}

/// What downloads by turns moved.
#[derive(Debug, Default)]
struct Turns {
    /// The bytes each of the proxy's tunnels got, over all its turns.
    ours: Vec<u64>,
    /// The bytes the baseline's tunnels got, over all its turns.
    theirs: u64,
    /// Each pair's bytes through the proxy over its bytes through the
    /// baseline, when the baseline moved any.
    ratios: Vec<f64>,
}

/// Downloads through the proxy and the baseline (`routes`, in that
/// order) by turns, a pair of turns at a time.
fn alternate(
    routes: [&Route; 2],
    target: SocketAddr,
    tunnels: usize,
    timeout: Duration,
    p: &Params,
) -> Result<Turns, Errors> {
    let pairs = p.pairs.max(1);
    let turn = Duration::from_secs_f64(p.secs / f64::from(pairs));
    let mut t = Turns {
        ours: vec![0; tunnels],
        ..Turns::default()
    };
    for i in 0..pairs {
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        let (mut a, mut b) = (0u64, 0u64);
        for ours_now in order {
            let route = if ours_now { routes[0] } else { routes[1] };
            let got = download(route, target, tunnels, turn, timeout)?;
            if ours_now {
                for (sum, n) in t.ours.iter_mut().zip(&got) {
                    *sum += n;
                }
                a = got.iter().sum();
            } else {
                b = got.iter().sum();
            }
        }
        t.theirs += b;
        if b > 0 {
            t.ratios.push(a as f64 / b as f64);
        }
    }
    Ok(t)
}

/// The figures of a run in which every tunnel lasted the window: bytes per
/// second in all and per tunnel, and the whole against the limit.
fn put_figures(line: &mut Line, per_tunnel: &[u64], p: &Params) {
    let secs = p.secs.max(1e-9);
    let total: u64 = per_tunnel.iter().sum();
    let rate = total as f64 / secs;
    let mib = |b: u64| b as f64 / secs / f64::from(1u32 << 20);
    line.put("bytes", total)
        .num("mib_s", rate / f64::from(1u32 << 20), 3)
        .num("gib_s", rate / f64::from(1u32 << 30), 3);
    if let (Some(lo), Some(hi)) = (per_tunnel.iter().min(), per_tunnel.iter().max()) {
        line.num("tunnel_min_mib_s", mib(*lo), 3)
            .num("tunnel_max_mib_s", mib(*hi), 3);
    }
    if let Some(limit) = p.limit {
        line.num("of_limit", rate / limit.max(1) as f64, 3);
    }
}

/// The baseline's rate over the same time, and the proxy's against it:
/// the median of the pairs' ratios (a burst of other work on the machine
/// that slows one turn moves the median by one pair at most).
fn put_baseline(line: &mut Line, t: &Turns, secs: f64) {
    let gib = |b: u64| b as f64 / secs.max(1e-9) / f64::from(1u32 << 30);
    line.num("baseline_gib_s", gib(t.theirs), 3);
    if let Some(s) = Summary::of(&t.ratios) {
        line.num("vs_baseline", s.median, 3)
            .num("vs_baseline_min", s.min, 3)
            .num("vs_baseline_max", s.max, 3);
    }
}

/// Each proxy's CPU per MiB it moved, and the proxy's against the
/// baseline's: the figure a busy machine disturbs least, since a proxy
/// held up by other work moves fewer bytes but spends about the same CPU
/// on each.
fn put_cpu(line: &mut Line, bytes: [u64; 2], cpu_s: [Option<f64>; 2]) {
    let per_mib = |i: usize| {
        let mib = bytes[i] as f64 / f64::from(1u32 << 20);
        cpu_s[i].filter(|_| mib > 0.0).map(|s| s * 1e6 / mib)
    };
    let (ours, theirs) = (per_mib(0), per_mib(1));
    if let Some(o) = ours {
        line.num("proxy_us_per_mib", o, 1);
    }
    if let Some(t) = theirs {
        line.num("baseline_us_per_mib", t, 1);
    }
    if let (Some(o), Some(t)) = (ours, theirs)
        && t > 0.0
    {
        line.num("cpu_vs_baseline", o / t, 3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Auth;

    fn direct() -> Common {
        Common {
            route: Route::Direct,
            peer: "direct".into(),
            case: "rate".into(),
            round: 1,
            proxy_pid: None,
            timeout: Duration::from_secs(10),
        }
    }

    fn params(tunnels: usize, secs: f64, limit: Option<u64>) -> Params {
        Params {
            tunnels,
            secs,
            limit,
            baseline: None,
            baseline_pid: None,
            pairs: 1,
        }
    }

    /// A port nothing listens on.
    fn dead_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Straight to the source nothing limits the download: every tunnel
    /// gets bytes, the window is kept, and `of_limit` is far above 1.
    #[test]
    fn direct_downloads_for_the_window_and_beat_a_small_limit() {
        let t = Instant::now();
        let l = run(&direct(), &params(2, 0.3, Some(1 << 20)));
        assert!(t.elapsed() < Duration::from_secs(5), "{l}");
        assert_eq!(l.get("ok"), Some("1"), "{l}");
        assert_eq!(l.get("limit_b_s"), Some("1048576"));
        assert!(l.number("tunnel_min_mib_s").unwrap() > 0.0, "{l}");
        assert!(l.number("of_limit").unwrap() > 2.0, "{l}");
        assert!(l.number("secs").unwrap() >= 0.3, "{l}");
        assert_eq!(l.get("vs_baseline"), None);
    }

    #[test]
    fn without_a_limit_only_the_rate() {
        let l = run(&direct(), &params(1, 0.2, None));
        assert_eq!(l.get("ok"), Some("1"), "{l}");
        assert!(l.number("gib_s").unwrap() > 0.0, "{l}");
        assert_eq!(l.get("of_limit"), None);
        assert_eq!(l.get("limit_b_s"), None);
    }

    #[test]
    fn figures_set_the_bytes_against_the_limit_and_the_baseline() {
        let mut l = Line::new();
        // 42 MiB over 5 s at 8 MiB/s: 1.05 of the limit.
        let per = [10 << 20, 10 << 20, 11 << 20, 11 << 20];
        put_figures(&mut l, &per, &params(4, 5.0, Some(8 << 20)));
        assert_eq!(l.get("of_limit"), Some("1.050"));
        assert_eq!(l.get("mib_s"), Some("8.400"));
        assert_eq!(l.get("tunnel_min_mib_s"), Some("2.000"));
        assert_eq!(l.get("tunnel_max_mib_s"), Some("2.200"));
        let mut l = Line::new();
        let t = Turns {
            ours: vec![3 << 30],
            theirs: 4 << 30,
            ratios: vec![0.5, 0.9, 1.0],
        };
        put_baseline(&mut l, &t, 2.0);
        assert_eq!(l.get("baseline_gib_s"), Some("2.000"));
        // The median pair, not the whole (0.75).
        assert_eq!(l.get("vs_baseline"), Some("0.900"));
        assert_eq!(l.get("vs_baseline_min"), Some("0.500"));
        assert_eq!(l.get("vs_baseline_max"), Some("1.000"));
    }

    #[test]
    fn cpu_per_mib_of_each_and_their_ratio() {
        let mut l = Line::new();
        // 1 s for 2 GiB against 0.5 s for 1.25 GiB.
        put_cpu(&mut l, [2 << 30, 5 << 28], [Some(1.0), Some(0.5)]);
        assert_eq!(l.get("proxy_us_per_mib"), Some("488.3"));
        assert_eq!(l.get("baseline_us_per_mib"), Some("390.6"));
        assert_eq!(l.get("cpu_vs_baseline"), Some("1.250"));
        // Without the baseline's pid, no ratio.
        let mut l = Line::new();
        put_cpu(&mut l, [2 << 30, 5 << 28], [Some(1.0), None]);
        assert!(l.get("proxy_us_per_mib").is_some());
        assert_eq!(l.get("cpu_vs_baseline"), None);
        // Our own process stands in for both: its time is read.
        let me = Some(std::process::id());
        let cpu = CpuPair::start([me, me]);
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let [a, b] = cpu.finish();
        assert!(a.unwrap() > 0.0 && b.unwrap() > 0.0, "{a:?} {b:?}");
    }

    #[test]
    fn a_dead_proxy_is_an_error_not_a_number() {
        let mut c = direct();
        c.route = Route::Socks {
            proxy: ([127, 0, 0, 1], dead_port()).into(),
            auth: Auth::None,
        };
        let l = run(&c, &params(2, 0.2, Some(1 << 20)));
        assert_eq!(l.get("ok"), Some("0"));
        assert_eq!(l.get("err_connect"), Some("2"));
        assert_eq!(l.get("of_limit"), None);
    }

    /// Turns alternate: both routes get bytes, each for its share of the
    /// time (two routes straight to the source move about as much).
    #[test]
    fn turns_alternate_between_the_two_routes() {
        let bulk = Bulk::start().unwrap();
        let p = Params {
            pairs: 3,
            ..params(2, 0.3, None)
        };
        let t = Instant::now();
        let turns = alternate(
            [&Route::Direct, &Route::Direct],
            bulk.addr(),
            2,
            Duration::from_secs(5),
            &p,
        )
        .unwrap();
        // Six turns of 0.1 s, and the tunnels' opening.
        assert!(t.elapsed() >= Duration::from_millis(600));
        assert_eq!(turns.ours.len(), 2);
        assert!(turns.ours.iter().all(|n| *n > 0), "{turns:?}");
        let sum: u64 = turns.ours.iter().sum();
        assert!(
            turns.theirs > sum / 10 && turns.theirs < sum * 10,
            "{turns:?}"
        );
        assert_eq!(turns.ratios.len(), 3);
    }

    /// A baseline that does not answer fails the run: no ratio without it.
    #[test]
    fn a_dead_baseline_is_an_error_not_a_ratio() {
        let p = Params {
            baseline: Some(([127, 0, 0, 1], dead_port()).into()),
            pairs: 2,
            ..params(1, 0.2, None)
        };
        let l = run(&direct(), &p);
        assert_eq!(l.get("ok"), Some("0"), "{l}");
        assert_eq!(l.get("err_connect"), Some("1"), "{l}");
        assert_eq!(l.get("vs_baseline"), None);
    }
}
