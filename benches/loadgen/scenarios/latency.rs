//! Latency: one tunnel to the echo target, a fixed-size ping-pong, each
//! round trip timed after a warm-up. Pinning (the proxy and this program on
//! one CPU, with `taskset`) is left to the caller.

use std::io::{Read, Write};
use std::time::Instant;

use super::{Common, Errors, Meter, failed};
use crate::line::Line;
use crate::stats::percentile;
use crate::targets::Echo;

/// The knobs of a latency run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Round trips measured.
    pub rounds: usize,
    /// Round trips before, not measured.
    pub warmup: usize,
    /// Bytes each way per round trip.
    pub size: usize,
}

/// Runs the scenario; the line has `p50_us`, `p99_us` and `p999_us`.
pub fn run(c: &Common, p: &Params) -> Line {
    let mut line = c.line("latency");
    line.put("size", p.size).put("rounds", p.rounds);
    let echo = match Echo::start() {
        Ok(e) => e,
        Err(e) => return failed(line, "target", e),
    };
    let mut s = match c.route.open(echo.addr(), c.timeout) {
        Ok(s) => s,
        Err(e) => return failed(line, e.kind(), e),
    };
    let ping = vec![0x5Au8; p.size.max(1)];
    let mut pong = vec![0u8; ping.len()];
    let mut samples = Vec::with_capacity(p.rounds);
    let mut meter = None;
    for i in 0..p.warmup + p.rounds {
        if i == p.warmup {
            meter = Some(Meter::start(c.proxy_pid));
        }
        let t = Instant::now();
        let r = s.write_all(&ping).and_then(|()| s.read_exact(&mut pong));
        if let Err(e) = r {
            return failed(line, "io", e);
        }
        if i >= p.warmup {
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    if let Some(m) = meter {
        m.finish(&mut line);
    }
    samples.sort_unstable();
    let us = |q: f64| percentile(&samples, q).map_or(f64::NAN, |ns| ns as f64 / 1000.0);
    let mean = samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64 / 1000.0;
    line.num("p50_us", us(50.0), 1)
        .num("p99_us", us(99.0), 1)
        .num("p999_us", us(99.9), 1)
        .num("mean_us", mean, 1)
        .num("max_us", us(100.0), 1);
    let mut errors = Errors::default();
    if samples.is_empty() {
        errors.add("no_rounds");
    }
    errors.put(&mut line);
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Route;
    use std::time::Duration;

    #[test]
    fn direct_ping_pong_percentiles() {
        let c = Common {
            route: Route::Direct,
            peer: "direct".into(),
            case: "latency".into(),
            round: 1,
            proxy_pid: None,
            timeout: Duration::from_secs(5),
        };
        let l = run(
            &c,
            &Params {
                rounds: 500,
                warmup: 50,
                size: 64,
            },
        );
        assert_eq!(l.get("ok"), Some("1"), "{l}");
        let (p50, p99, p999) = (
            l.number("p50_us").unwrap(),
            l.number("p99_us").unwrap(),
            l.number("p999_us").unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{l}");
    }
}
