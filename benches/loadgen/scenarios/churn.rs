//! Churn: the handshake scenario's full cycle (connect, greeting, RFC 1929
//! log-in, CONNECT to the echo target, one byte each way, close) a million
//! times over, and the proxy's memory before and after: a proxy that keeps
//! anything of the connections it has closed grows between the two.
//!
//! K client threads share one counter of cycles started and stop once the
//! warm-up and the counted cycles have all been started. The proxy's memory
//! (RSS, and the anonymous part of it), summed over its process tree, is read once the warm-up cycles are done
//! (the counted ones have begun by then: K at most in flight) and again
//! once every cycle is over and [`SETTLE`] has passed. Cycles of the
//! warm-up are not counted; every failed counted cycle is, by kind. Only a
//! proxy has memory to read: without its pid the run fails at once with
//! `no_proxy_pid`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use super::handshake::cycle;
use super::{Common, Errors, Meter, failed};
use crate::line::Line;
use crate::procfs::{self, Memory};
use crate::targets::Echo;

/// How often the main thread looks whether the warm-up is over.
const POLL: Duration = Duration::from_millis(50);
/// The pause after the last cycle before the second reading: the proxy
/// finishes tearing the last connections down.
const SETTLE: Duration = Duration::from_millis(200);

/// The knobs of a churn run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Cycles counted, between the two readings.
    pub cycles: u64,
    /// Cycles before the first reading, not counted.
    pub warmup: u64,
    /// Client threads, each doing one cycle at a time.
    pub threads: usize,
}

/// What the client threads share.
#[derive(Debug, Default)]
struct Progress {
    /// Cycles started, warm-up included: each cycle takes the next number.
    started: AtomicU64,
    /// Warm-up cycles over, whether they succeeded or not.
    warm_done: AtomicU64,
}

/// One client thread: cycles until every cycle has been started; returns
/// how many of its counted cycles succeeded, and the others by kind.
fn client(c: &Common, target: SocketAddr, p: &Params, progress: &Progress) -> (u64, Errors) {
    let mut ok = 0;
    let mut errors = Errors::default();
    loop {
        let i = progress.started.fetch_add(1, Ordering::Relaxed);
        if i >= p.warmup + p.cycles {
            break;
        }
        let r = cycle(&c.route, target, c.timeout);
        if i < p.warmup {
            progress.warm_done.fetch_add(1, Ordering::Release);
            continue;
        }
        match r {
            Ok(()) => ok += 1,
            Err(kind) => errors.add(kind),
        }
    }
    (ok, errors)
}

/// The proxy's memory, or an error counted when none of its processes
/// could be read.
fn read_memory(pid: u32, errors: &mut Errors) -> Option<Memory> {
    let m = procfs::tree_memory(pid);
    if m.processes == 0 {
        errors.add("no_memory");
        return None;
    }
    Some(m)
}

/// Runs the scenario; the line has `cycles`, `cycles_s`, and before, after
/// and growth (after minus before, in KiB) of RSS (`rss_before_kib`, ...)
/// and of anonymous memory (`anon_before_kib`, ...).
pub fn run(c: &Common, p: &Params) -> Line {
    let mut line = c.line("churn");
    line.put("threads", p.threads).put("warmup", p.warmup);
    let Some(pid) = c.proxy_pid else {
        return failed(
            line,
            "no_proxy_pid",
            "churn reads a proxy's memory: --pid needed",
        );
    };
    let echo = match Echo::start_one_shot() {
        Ok(e) => e,
        Err(e) => return failed(line, "target", e),
    };
    let target = echo.addr();
    let progress = Progress::default();
    let mut errors = Errors::default();
    let mut cycles = 0;
    let (before, meter) = thread::scope(|scope| {
        let handles: Vec<_> = (0..p.threads.max(1))
            .map(|_| scope.spawn(|| client(c, target, p, &progress)))
            .collect();
        // Bounded: the threads end once every cycle has been started.
        while progress.warm_done.load(Ordering::Acquire) < p.warmup
            && !handles.iter().all(|h| h.is_finished())
        {
            thread::sleep(POLL);
        }
        let before = read_memory(pid, &mut errors);
        let meter = Meter::start(Some(pid));
        for h in handles {
            match h.join() {
                Ok((ok, e)) => {
                    cycles += ok;
                    errors.merge(e);
                }
                Err(_) => errors.add("panic"),
            }
        }
        (before, meter)
    });
    let secs = meter.finish(&mut line);
    thread::sleep(SETTLE);
    let after = read_memory(pid, &mut errors);
    line.put("cycles", cycles)
        .num("cycles_s", cycles as f64 / secs, 0);
    if let (Some(b), Some(a)) = (before, after) {
        line.put("rss_before_kib", b.rss_kib)
            .put("rss_after_kib", a.rss_kib)
            .put("rss_growth_kib", a.rss_kib as i64 - b.rss_kib as i64)
            .put("anon_before_kib", b.anon_kib)
            .put("anon_after_kib", a.anon_kib)
            .put("anon_growth_kib", a.anon_kib as i64 - b.anon_kib as i64)
            .put("procs", a.processes);
    }
    errors.put(&mut line);
    if cycles == 0 {
        // No number without a single cycle.
        line.put("ok", 0).put("cycles_s", "nan");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Route;

    fn common(pid: Option<u32>) -> Common {
        Common {
            route: Route::Direct,
            peer: "direct".into(),
            case: "churn".into(),
            round: 1,
            proxy_pid: pid,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn direct_cycles_are_counted_and_memory_read() {
        // Our own pid stands in for a proxy's: the fields must appear.
        let l = run(
            &common(Some(std::process::id())),
            &Params {
                cycles: 200,
                warmup: 20,
                threads: 3,
            },
        );
        assert_eq!(l.get("ok"), Some("1"), "{l}");
        assert_eq!(l.get("cycles"), Some("200"), "{l}");
        assert!(l.number("cycles_s").unwrap() > 0.0, "{l}");
        let (b, a, g) = (
            l.number("rss_before_kib").unwrap(),
            l.number("rss_after_kib").unwrap(),
            l.number("rss_growth_kib").unwrap(),
        );
        assert!(b > 0.0 && a > 0.0 && g == a - b, "{l}");
        assert!(l.number("proxy_cpu").is_some(), "{l}");
    }

    #[test]
    fn no_pid_no_figure() {
        let l = run(
            &common(None),
            &Params {
                cycles: 10,
                warmup: 0,
                threads: 1,
            },
        );
        assert_eq!(l.get("ok"), Some("0"), "{l}");
        assert_eq!(l.get("err_no_proxy_pid"), Some("1"), "{l}");
        assert_eq!(l.get("rss_growth_kib"), None, "{l}");
    }
}
