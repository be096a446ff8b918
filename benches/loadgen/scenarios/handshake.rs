//! Handshake rate: K client threads run full cycles back to back for T
//! seconds: connect, greeting, RFC 1929 log-in, CONNECT to the echo target,
//! one byte each way, close. Cycles of the warm-up are not counted; every
//! failed cycle is, by kind.
//!
//! The close starts at the target (a one-shot echo) and the client closes
//! once the proxy has passed that on: tens of thousands of cycles would
//! otherwise leave as many TIME_WAITs on the client's and the proxy's
//! ephemeral ports, and the range runs out within seconds.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use super::{Common, Errors, Meter, failed};
use crate::client::{Route, is_timeout};
use crate::line::Line;
use crate::stats::percentile;
use crate::targets::Echo;

/// The knobs of a handshake run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Client threads, each doing one cycle at a time.
    pub threads: usize,
    /// Seconds measured.
    pub secs: f64,
    /// Seconds of cycles before, not counted.
    pub warmup: f64,
}

/// One full cycle; the error's kind when it fails. The churn scenario
/// runs the same cycle.
pub(super) fn cycle(
    route: &Route,
    target: SocketAddr,
    timeout: Duration,
) -> Result<(), &'static str> {
    let mut s = route.open(target, timeout).map_err(|e| e.kind())?;
    let echo_err = |e: io::Error| {
        if is_timeout(&e) {
            "echo_timeout"
        } else if e.kind() == io::ErrorKind::UnexpectedEof {
            "echo_eof"
        } else {
            "echo_io"
        }
    };
    s.write_all(b"x").map_err(echo_err)?;
    let mut b = [0u8; 2];
    s.read_exact(&mut b[..1]).map_err(echo_err)?;
    if b[0] != b'x' {
        return Err("echo_data");
    }
    // The target closes; the proxy must pass the FIN on.
    match s.read(&mut b) {
        Ok(0) => Ok(()),
        Ok(_) => Err("echo_data"),
        Err(e) if is_timeout(&e) => Err("no_fin"),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Err("reset"),
        Err(_) => Err("echo_io"),
    }
}

/// Runs the scenario; the line has `cycles_s`, `p50_us` and `p99_us`.
pub fn run(c: &Common, p: &Params) -> Line {
    run_marked(c, p, &mut |_| ())
}

/// [`run`], calling `mark(true)` as the measured stretch starts and
/// `mark(false)` once its last cycle is over, where the CPU time of the
/// generator and the proxy is read: a caller reads other clocks there.
pub fn run_marked(c: &Common, p: &Params, mark: &mut dyn FnMut(bool)) -> Line {
    let mut line = c.line("handshake");
    line.put("threads", p.threads);
    let echo = match Echo::start_one_shot() {
        Ok(e) => e,
        Err(e) => return failed(line, "target", e),
    };
    let target = echo.addr();
    let measure_from = Instant::now() + Duration::from_secs_f64(p.warmup);
    let until = measure_from + Duration::from_secs_f64(p.secs);
    let workers: Vec<_> = (0..p.threads.max(1))
        .map(|_| {
            let route = c.route.clone();
            let timeout = c.timeout;
            thread::spawn(move || {
                let mut samples: Vec<u64> = Vec::new();
                let mut errors = Errors::default();
                loop {
                    let t = Instant::now();
                    if t >= until {
                        break;
                    }
                    let r = cycle(&route, target, timeout);
                    if t >= measure_from {
                        match r {
                            Ok(()) => samples.push(t.elapsed().as_nanos() as u64),
                            Err(kind) => errors.add(kind),
                        }
                    }
                }
                (samples, errors)
            })
        })
        .collect();
    thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    mark(true);
    let meter = Meter::start(c.proxy_pid);
    let mut samples = Vec::new();
    let mut errors = Errors::default();
    for w in workers {
        match w.join() {
            Ok((s, e)) => {
                samples.extend(s);
                errors.merge(e);
            }
            Err(_) => errors.add("panic"),
        }
    }
    meter.finish(&mut line);
    mark(false);
    samples.sort_unstable();
    let us = |p: f64| percentile(&samples, p).map_or(f64::NAN, |ns| ns as f64 / 1000.0);
    line.put("cycles", samples.len())
        .num("cycles_s", samples.len() as f64 / p.secs, 0)
        .num("p50_us", us(50.0), 1)
        .num("p99_us", us(99.0), 1);
    // What one cycle costs the proxy, all of it and in user space: on a
    // machine where the generator shares the CPUs, the figure that says
    // how much work the proxy itself does.
    let n = samples.len().max(1) as f64;
    for (from, to) in [
        ("proxy_cpu_s", "proxy_us_cycle"),
        ("proxy_user_s", "proxy_user_us_cycle"),
    ] {
        if let Some(s) = line.number(from) {
            line.num(to, s * 1e6 / n, 1);
        }
    }
    errors.put(&mut line);
    if samples.is_empty() {
        // No number without a single cycle.
        line.put("ok", 0).put("cycles_s", "nan");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_cycles_are_counted() {
        let c = Common {
            route: Route::Direct,
            peer: "direct".into(),
            case: "handshake".into(),
            round: 1,
            proxy_pid: None,
            timeout: Duration::from_secs(5),
        };
        let l = run(
            &c,
            &Params {
                threads: 2,
                secs: 0.3,
                warmup: 0.05,
            },
        );
        assert_eq!(l.get("ok"), Some("1"), "{l}");
        assert!(l.number("cycles").unwrap() > 10.0, "{l}");
        assert!(l.number("cycles_s").unwrap() > 0.0);
        assert!(l.number("p50_us").unwrap() <= l.number("p99_us").unwrap());
    }
}
