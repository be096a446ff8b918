//! Idle concurrency: open C tunnels to the echo target, leave them idle,
//! read the proxy's memory (RSS and PSS over its process tree) against its
//! baseline, then check that every tunnel still relays a byte each way.
//!
//! Each tunnel costs this process two descriptors (the client socket and
//! the echo target's), so C is capped at what the open-file limit allows.
//! The baseline is read after a warm-up of a few tunnels, opened, used and
//! closed, so one-time start-up costs are not charged to the idle tunnels.

use std::borrow::BorrowMut;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::{Common, Errors, Meter, failed, raise_nofile};
use crate::client::Route;
use crate::line::Line;
use crate::procfs::{self, Memory};
use crate::targets::Echo;

/// Descriptors kept for everything but the tunnels.
const RESERVE_FDS: u64 = 512;
/// Tunnels of the warm-up.
const WARMUP_TUNNELS: usize = 16;
/// A thread opening tunnels gives up after this many failures.
const MAX_ERRORS_PER_OPENER: u64 = 20;

/// The knobs of an idle run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Tunnels wanted (fewer if the open-file limit says so).
    pub tunnels: usize,
    /// Seconds to leave them idle before reading the memory.
    pub settle: f64,
    /// Threads opening tunnels (and checking them) in parallel.
    pub openers: usize,
}

/// How many tunnels fit under an open-file limit.
pub fn max_tunnels(nofile: u64) -> usize {
    (nofile.saturating_sub(RESERVE_FDS) / 2) as usize
}

fn open_many(
    route: &Route,
    target: SocketAddr,
    n: usize,
    timeout: Duration,
) -> (Vec<TcpStream>, Errors) {
    let mut out = Vec::with_capacity(n);
    let mut errors = Errors::default();
    while out.len() < n && errors.total() < MAX_ERRORS_PER_OPENER {
        match route.open(target, timeout) {
            Ok(s) => out.push(s),
            Err(e) => {
                eprintln!("loadgen: opening an idle tunnel: {e}");
                errors.add(e.kind());
            }
        }
    }
    (out, errors)
}

/// One byte there and back; false if the tunnel no longer relays.
pub fn relays(s: &mut TcpStream, tag: u8) -> bool {
    let mut b = [0u8; 1];
    s.write_all(&[tag]).is_ok() && s.read_exact(&mut b).is_ok() && b[0] == tag
}

/// How many of `tunnels` fail to relay a byte there and back, checked on
/// `threads` threads at once (a thread that panics fails its whole share).
pub fn relay_failures<S: BorrowMut<TcpStream> + Send>(tunnels: &mut [S], threads: usize) -> usize {
    let chunk = tunnels.len().div_ceil(threads.max(1)).max(1);
    thread::scope(|scope| {
        let handles: Vec<_> = tunnels
            .chunks_mut(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter_mut()
                        .enumerate()
                        .map(|(i, s)| relays(s.borrow_mut(), i as u8))
                        .filter(|ok| !ok)
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(chunk)).sum()
    })
}

fn put_memory(line: &mut Line, prefix: &str, base: Memory, now: Memory, tunnels: usize) {
    let per = |a: u64, b: u64| (a as f64 - b as f64) / tunnels.max(1) as f64;
    line.put(&format!("{prefix}rss_kib"), now.rss_kib)
        .put(&format!("{prefix}pss_kib"), now.pss_kib)
        .num(
            &format!("{prefix}rss_kib_per_tunnel"),
            per(now.rss_kib, base.rss_kib),
            3,
        )
        .num(
            &format!("{prefix}pss_kib_per_tunnel"),
            per(now.pss_kib, base.pss_kib),
            3,
        );
}

/// Runs the scenario; with the proxy's pid the line has
/// `pss_kib_per_tunnel` and `rss_kib_per_tunnel`, and always `relay_fail`.
pub fn run(c: &Common, p: &Params) -> Line {
    let mut line = c.line("idle");
    let limit = raise_nofile();
    let n = p.tunnels.min(max_tunnels(limit));
    line.put("wanted", p.tunnels).put("nofile", limit);
    let echo = match Echo::start() {
        Ok(e) => e,
        Err(e) => return failed(line, "target", e),
    };
    let target = echo.addr();
    let mut errors = Errors::default();

    let (mut warm, warm_errors) = open_many(&c.route, target, WARMUP_TUNNELS.min(n), c.timeout);
    for (i, s) in warm.iter_mut().enumerate() {
        if !relays(s, i as u8) {
            errors.add("warmup_relay");
        }
    }
    errors.merge(warm_errors);
    drop(warm);
    thread::sleep(Duration::from_millis(200));
    let base = c.proxy_pid.map(procfs::tree_memory);

    let meter = Meter::start(c.proxy_pid);
    let t = Instant::now();
    let openers = p.openers.clamp(1, n.max(1));
    let mut tunnels: Vec<TcpStream> = Vec::with_capacity(n);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..openers)
            .map(|i| {
                let share = n / openers + usize::from(i < n % openers);
                let route = &c.route;
                scope.spawn(move || open_many(route, target, share, c.timeout))
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok((s, e)) => {
                    tunnels.extend(s);
                    errors.merge(e);
                }
                Err(_) => errors.add("panic"),
            }
        }
    });
    line.put("tunnels", tunnels.len())
        .num("open_secs", t.elapsed().as_secs_f64(), 2);

    thread::sleep(Duration::from_secs_f64(p.settle));
    if let (Some(pid), Some(base)) = (c.proxy_pid, base) {
        let now = procfs::tree_memory(pid);
        line.put("procs", now.processes)
            .put("base_rss_kib", base.rss_kib)
            .put("base_pss_kib", base.pss_kib);
        put_memory(&mut line, "", base, now, tunnels.len());
    }

    // Every tunnel must still relay: a byte there and back on each.
    let failures = relay_failures(&mut tunnels, openers);
    line.put("relay_fail", failures);
    for _ in 0..failures {
        errors.add("relay");
    }
    if let (Some(pid), Some(base)) = (c.proxy_pid, base) {
        // After one byte each way: does relaying leave memory behind?
        let now = procfs::tree_memory(pid);
        put_memory(&mut line, "after_relay_", base, now, tunnels.len());
    }
    meter.finish(&mut line);
    if tunnels.len() < n {
        errors.add("short");
    }
    errors.put(&mut line);
    close_from_target(&echo, tunnels);
    line
}

/// Tears the tunnels down from the target's side, so that the TIME_WAITs
/// land on the target's listening port rather than on 18,000 ephemeral
/// ports (see targets.rs). Bounded: one look per tunnel, no waiting on a
/// proxy that does not pass the FIN on.
fn close_from_target(echo: &Echo, tunnels: Vec<TcpStream>) {
    echo.close_all();
    thread::sleep(Duration::from_millis(300));
    for mut s in tunnels {
        let mut b = [0u8; 1];
        if s.set_nonblocking(true).is_ok() {
            let _ = s.read(&mut b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnels_fit_the_descriptor_limit() {
        assert_eq!(max_tunnels(20_000), 9_744);
        assert_eq!(max_tunnels(1024), 256);
        assert_eq!(max_tunnels(100), 0);
    }

    #[test]
    fn direct_idle_tunnels_all_relay() {
        let c = Common {
            route: Route::Direct,
            peer: "direct".into(),
            case: "idle".into(),
            round: 1,
            // Our own pid stands in for a proxy's: the fields must appear.
            proxy_pid: Some(std::process::id()),
            timeout: Duration::from_secs(5),
        };
        let l = run(
            &c,
            &Params {
                tunnels: 100,
                settle: 0.0,
                openers: 3,
            },
        );
        assert_eq!(l.get("ok"), Some("1"), "{l}");
        assert_eq!(l.get("tunnels"), Some("100"));
        assert_eq!(l.get("relay_fail"), Some("0"));
        assert!(l.number("pss_kib_per_tunnel").is_some(), "{l}");
        assert!(l.number("after_relay_rss_kib_per_tunnel").is_some(), "{l}");
    }
}
