//! Loopback listening ports chosen below the kernel's ephemeral range.
//!
//! A handshake run opens and closes tens of thousands of connections in
//! seconds, and an idle run holds 18,000 sockets: the ephemeral range
//! (28,232 ports by default) can be full of TIME_WAIT entries for a minute
//! after. `bind(port 0)` then fails with EADDRINUSE, so the targets and the
//! proxies listen on ports picked at random below that range instead, where
//! no connect() ever takes its source port.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::socket::{Backlog, listen};

/// How many ports below the ephemeral range are candidates.
const SPAN: u16 = 10_000;
/// Tries before giving up.
const TRIES: usize = 500;

/// The first port of the ephemeral range (`ip_local_port_range`).
pub fn ephemeral_low() -> u16 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Candidate ports: `[low - SPAN, low)`, or `[1024, low)` when that is
/// shorter, never a privileged port.
pub fn range(low: u16) -> (u16, u16) {
    let start = low.saturating_sub(SPAN).max(1024);
    (start, low.max(start + 1))
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A pseudo-random port in `[lo, hi)`: xorshift over the clock, the pid and a
/// counter, good enough to spread tries.
fn pick(lo: u16, hi: u16) -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x =
        nanos ^ (u64::from(process::id()) << 32) ^ SEQ.fetch_add(0x9E37_79B9, Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    lo + (x % u64::from(hi - lo)) as u16
}

/// A TCP listener on 127.0.0.1 at a free port below the ephemeral range,
/// with the longest accept queue the kernel allows (std and mio ask for
/// 128; eight threads opening tunnels fill that while the target's thread
/// waits for a CPU, and each SYN dropped then costs its client a
/// one-second retransmission).
pub fn listener() -> io::Result<TcpListener> {
    let (lo, hi) = range(ephemeral_low());
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no free port");
    for _ in 0..TRIES {
        match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, pick(lo, hi)))) {
            Ok(l) => {
                // listen() again on a listening socket only changes its backlog.
                listen(&l, Backlog::MAXCONN).map_err(io::Error::from)?;
                return Ok(l);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// A port on 127.0.0.1 that was free a moment ago, for a proxy to listen on.
pub fn unused() -> io::Result<u16> {
    Ok(listener()?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_stay_below_the_ephemeral_ones() {
        assert_eq!(range(32_768), (22_768, 32_768));
        assert_eq!(range(5_000), (1_024, 5_000));
        assert_eq!(range(1_024), (1_024, 1_025));
        for _ in 0..1000 {
            let p = pick(22_768, 32_768);
            assert!((22_768..32_768).contains(&p));
        }
    }

    #[test]
    fn listeners_get_distinct_ports_outside_the_ephemeral_range() {
        let low = ephemeral_low();
        let a = listener().unwrap();
        let b = listener().unwrap();
        let (pa, pb) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        assert_ne!(pa, pb);
        assert!(pa < low && pb < low, "{pa} {pb} {low}");
        assert!(a.local_addr().unwrap().ip().is_loopback());
        let p = unused().unwrap();
        assert!(p < low);
    }
}
