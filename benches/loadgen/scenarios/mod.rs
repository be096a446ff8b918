//! The seven scenarios, one per run of the generator.
//!
//! Every run starts its own targets, measures, and returns one [`Line`]
//! that says how it went (`ok=1`, or `ok=0` with the errors counted by
//! kind) and how busy the generator itself was (`gen_cpu`, in CPUs, next to
//! `cpus`, the CPUs it may use): a figure limited by the generator shows
//! as `gen_cpu` close to `cpus`. With the proxy's pid it also reports the
//! proxy's CPU use (`proxy_cpu`).

pub mod churn;
pub mod handshake;
pub mod idle;
pub mod latency;
pub mod rate;
pub mod throughput;
pub mod udp;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};

use crate::args::Args;
use crate::client::{Auth, Route};
use crate::line::Line;
use crate::procfs;

/// What every scenario is told: the route to the targets and the labels of
/// the run.
#[derive(Clone, Debug)]
pub struct Common {
    /// Direct, or through a loopback proxy.
    pub route: Route,
    /// The peer's name in the report (`direct`, `socks5d`, ...).
    pub peer: String,
    /// The case's name in the report (`t1-up`, `latency-pinned`, ...).
    pub case: String,
    /// Which repetition this is.
    pub round: u32,
    /// The proxy's pid, to read its memory and CPU time.
    pub proxy_pid: Option<u32>,
    /// Bound on every connect, read and write.
    pub timeout: Duration,
}

impl Common {
    /// Reads `--proxy ADDR --auth USER:PASS --proxy-header --peer NAME
    /// --case NAME --round N --pid PID --timeout S` (`--proxy-header`: a
    /// PROXY protocol v2 header before each handshake, as a balancer
    /// sends). The proxy must be a loopback address: this program sends
    /// nothing anywhere else.
    pub fn from_args(a: &mut Args, scenario: &str) -> Result<Common, String> {
        let proxy = loopback_arg(a, "--proxy")?;
        let auth = match a.value("--auth")? {
            None => Auth::None,
            Some(v) => Auth::parse(&v).ok_or("--auth: expected USER:PASS")?,
        };
        let route = match (proxy, a.flag("--proxy-header")) {
            (None, _) => Route::Direct,
            (Some(proxy), false) => Route::Socks { proxy, auth },
            (Some(proxy), true) => Route::Balanced { proxy, auth },
        };
        let default_peer = if proxy.is_some() { "proxy" } else { "direct" };
        Ok(Common {
            route,
            peer: a.get("--peer", default_peer.to_owned())?,
            case: a.get("--case", scenario.to_owned())?,
            round: a.get("--round", 1)?,
            proxy_pid: a
                .value("--pid")?
                .map(|v| v.parse())
                .transpose()
                .map_err(|e: std::num::ParseIntError| format!("--pid: {e}"))?,
            timeout: Duration::from_secs_f64(a.get("--timeout", 10.0)?),
        })
    }

    /// The start of this run's line.
    pub fn line(&self, scenario: &str) -> Line {
        let mut l = Line::new();
        l.put("scenario", scenario)
            .put("case", &self.case)
            .put("peer", &self.peer)
            .put("round", self.round);
        l
    }
}

/// The loopback `IP:PORT` after `flag`, if given: this program sends
/// nothing anywhere else.
pub fn loopback_arg(a: &mut Args, flag: &str) -> Result<Option<SocketAddr>, String> {
    let Some(v) = a.value(flag)? else {
        return Ok(None);
    };
    let addr: SocketAddr = v
        .parse()
        .map_err(|_| format!("{flag}: '{v}' is not IP:PORT"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{flag}: {addr} is not a loopback address"));
    }
    Ok(Some(addr))
}

/// Wall time and CPU time of the generator (and of the proxy's process
/// tree, when its pid is known) over a measured stretch.
#[derive(Debug)]
pub struct Meter {
    wall: Instant,
    cpu: Duration,
    proxy: Option<(u32, procfs::Ticks)>,
}

/// CPU time used so far by this whole process, all threads and the targets
/// included.
fn own_cpu() -> Duration {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let (a, b) = (u.user_time(), u.system_time());
            Duration::from_micros(
                (a.tv_sec() + b.tv_sec()) as u64 * 1_000_000 + (a.tv_usec() + b.tv_usec()) as u64,
            )
        }
        Err(_) => Duration::ZERO,
    }
}

impl Meter {
    /// Starts measuring now.
    pub fn start(proxy_pid: Option<u32>) -> Meter {
        Meter {
            wall: Instant::now(),
            cpu: own_cpu(),
            proxy: proxy_pid.map(|p| (p, procfs::tree_cpu_ticks(p))),
        }
    }

    /// Adds `secs`, `gen_cpu`, `cpus` and, for a proxy, `proxy_cpu` (CPUs
    /// busy on average), `proxy_cpu_s` and `proxy_user_s` (CPU-seconds in
    /// all and in user space) to `line`; returns the seconds elapsed.
    pub fn finish(&self, line: &mut Line) -> f64 {
        let secs = self.wall.elapsed().as_secs_f64().max(1e-9);
        let cpu = own_cpu().saturating_sub(self.cpu).as_secs_f64();
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        line.num("secs", secs, 3)
            .num("gen_cpu", cpu / secs, 2)
            .put("cpus", cpus);
        if let Some((pid, before)) = self.proxy {
            let now = procfs::tree_cpu_ticks(pid);
            let used = now.all.saturating_sub(before.all) as f64 / procfs::TICKS_PER_SEC;
            let user = now.user.saturating_sub(before.user) as f64 / procfs::TICKS_PER_SEC;
            line.num("proxy_cpu", used / secs, 2)
                .num("proxy_cpu_s", used, 2)
                .num("proxy_user_s", user, 2);
        }
        secs
    }
}

/// Errors counted by kind, never dropped.
#[derive(Clone, Debug, Default)]
pub struct Errors(BTreeMap<String, u64>);

impl Errors {
    /// Counts one error of `kind`.
    pub fn add(&mut self, kind: &str) {
        *self.0.entry(kind.to_owned()).or_default() += 1;
    }

    /// Adds all of `other`.
    pub fn merge(&mut self, other: Errors) {
        for (k, n) in other.0 {
            *self.0.entry(k).or_default() += n;
        }
    }

    /// How many in all.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `errors=N` and one `err_KIND=N` per kind; `ok=1` only with none.
    pub fn put(&self, line: &mut Line) {
        line.put("ok", u8::from(self.total() == 0))
            .put("errors", self.total());
        for (k, n) in &self.0 {
            line.put(&format!("err_{k}"), n);
        }
    }
}

/// A run that could not start (its target would not bind, say).
pub fn failed(mut line: Line, kind: &str, why: impl std::fmt::Display) -> Line {
    eprintln!("loadgen: {kind}: {why}");
    let mut e = Errors::default();
    e.add(kind);
    e.put(&mut line);
    line
}

/// Raises the soft limit on open files to the hard limit; returns the limit
/// now in force.
pub fn raise_nofile() -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        Args::new(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn only_loopback_proxies() {
        for bad in ["10.0.0.1:1080", "192.168.1.1:1080", "[2001:db8::1]:1080"] {
            let e = Common::from_args(&mut args(&["--proxy", bad]), "x").unwrap_err();
            assert!(e.contains("loopback"), "{e}");
        }
        let c = Common::from_args(
            &mut args(&["--proxy", "127.0.0.1:1080", "--auth", "u:p", "--pid", "7"]),
            "latency",
        )
        .unwrap();
        assert!(matches!(
            c.route,
            Route::Socks { proxy, auth: Auth::UserPass { .. } } if proxy == "127.0.0.1:1080".parse().unwrap()
        ));
        assert_eq!(c.peer, "proxy");
        assert_eq!(c.case, "latency");
        assert_eq!(c.proxy_pid, Some(7));
        let e = loopback_arg(&mut args(&["--baseline", "192.0.2.1:1080"]), "--baseline");
        assert!(e.unwrap_err().contains("loopback"));
        assert_eq!(
            loopback_arg(&mut args(&["--baseline", "[::1]:9"]), "--baseline").unwrap(),
            Some("[::1]:9".parse().unwrap())
        );
        let d = Common::from_args(&mut args(&[]), "idle").unwrap();
        assert!(matches!(d.route, Route::Direct));
        assert_eq!(d.peer, "direct");
    }

    #[test]
    fn errors_are_counted_by_kind() {
        let mut e = Errors::default();
        let mut l = Line::new();
        e.put(&mut l);
        assert_eq!(l.to_string(), "loadgen ok=1 errors=0");
        e.add("eof");
        e.add("eof");
        let mut other = Errors::default();
        other.add("reply");
        e.merge(other);
        let mut l = Line::new();
        e.put(&mut l);
        assert_eq!(l.to_string(), "loadgen ok=0 errors=3 err_eof=2 err_reply=1");
    }

    #[test]
    fn meter_reports_cpu() {
        let m = Meter::start(Some(std::process::id()));
        let t = Instant::now();
        // Burn a little CPU so the figure is not zero.
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let mut l = Line::new();
        m.finish(&mut l);
        assert!(l.number("gen_cpu").unwrap() > 0.0, "{l}");
        assert!(l.number("proxy_cpu").is_some(), "{l}");
        assert!(l.number("cpus").unwrap() >= 1.0);
    }

    #[test]
    fn nofile_limit_is_raised_to_the_hard_limit() {
        let (before, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let now = raise_nofile();
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(now, soft);
        assert!(soft >= before);
    }
}
