//! Helpers of tests/faults.rs: socks5d seen through /proc/PID (CPU time,
//! RSS, descriptors, ids), a SOCKS5 client that reports failures instead of
//! panicking (a refusal is an expected outcome there), a crowd of slow
//! clients driven from one thread, and a target that sends without end.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::socket::{setsockopt, sockopt};

use crate::common::{Auth, Daemon, close_tunnel, dial, exchange, greet, login, try_tunnel};
use crate::support;
use socks5d::users::file::Cost;

/// The proxy user of [`daemon`], and its password.
pub const USER: &str = "alice";
/// See [`USER`].
pub const PASS: &str = "wonderland";
/// What the echo targets send first.
pub const BANNER: &[u8] = b"hello from the target\n";
/// Every blocking read or write of the test's own clients ends by then.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The cheapest Argon2id cost argon2 accepts: users files written by the
/// tests verify in microseconds.
pub const CHEAP: Cost = Cost {
    m_kib: 8,
    t: 1,
    p: 1,
};

// ---------------------------------------------------------------- plumbing

/// One case at a time (see tests/faults.rs).
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// socks5d on 127.0.0.1 with user alice, two unpinned workers, no access
/// log, and `extra`.
pub fn daemon(extra: &[&str]) -> Daemon {
    let mut args = vec!["--workers", "2", "--no-pin"];
    if !extra.contains(&"--access-log") {
        args.extend(["--access-log", "off"]);
    }
    args.extend_from_slice(extra);
    Daemon::start_as(USER, PASS, &args)
}

/// Raises this process's soft descriptor limit to at least `want` if it can
/// (socks5d, started afterwards, inherits it); returns the soft limit.
pub fn raise_nofile(want: u64) -> u64 {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < want {
        // As root the hard limit may be raised too; otherwise up to it.
        if setrlimit(Resource::RLIMIT_NOFILE, want, hard.max(want)).is_err() {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard);
        }
    }
    getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit").0
}

/// Waits, as socks5d logs them, until standard error of `d` has `count`
/// lines holding `needle`.
pub fn wait_stderr(d: &Daemon, needle: &str, count: usize, within: Duration) {
    assert!(
        d.wait_for_line(needle, count, within).is_some(),
        "socks5d did not log {needle:?} ({count}x) within {within:?}; stderr:\n{}",
        d.stderr()
    );
}

/// A read or write timeout (or a non-blocking one that would block).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The peer reset or aborted the connection.
pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

// ------------------------------------------------- a non-panicking client

/// A tunnel as alice to a banner-then-echo target, its banner read.
pub fn tunnel(proxy: SocketAddr, target: SocketAddr) -> TcpStream {
    let mut t = try_tunnel(proxy, Auth::User(USER, PASS), target, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("tunnel through {proxy}: {e}"));
    read_banner(&mut t);
    t
}

/// Reads the target's [`BANNER`] from a fresh tunnel.
pub fn read_banner(t: &mut TcpStream) {
    let mut b = vec![0u8; BANNER.len()];
    t.read_exact(&mut b).expect("the target's banner");
    assert_eq!(b, BANNER);
}

/// The RFC 1929 STATUS socks5d gives `user`/`pass` now.
pub fn auth_status(proxy: SocketAddr, user: &str, pass: &str) -> u8 {
    let mut s = dial(proxy, IO_TIMEOUT).expect("connect to socks5d");
    greet(&mut s, Auth::User(user, pass)).expect("method selection");
    login(&mut s, user, pass).expect("RFC 1929 status")
}

/// A normal client's whole cycle: connect, greeting, log in, CONNECT, the
/// banner, 1 KiB echoed, orderly close. Returns how long it took.
pub fn cycle(proxy: SocketAddr, target: SocketAddr) -> Duration {
    let payload = [0x5au8; 1024];
    let t0 = Instant::now();
    let mut t = tunnel(proxy, target);
    exchange(&mut t, &payload, &payload);
    assert!(close_tunnel(t).is_empty());
    t0.elapsed()
}

// ------------------------------------------------------ slow clients

/// How one slow client ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Still open.
    Open,
    /// socks5d closed it: a read returned 0.
    Eof,
    /// A read or write failed (a reset).
    Reset,
}

#[derive(Debug)]
/// One slow client and how it fared.
pub struct Slow {
    s: TcpStream,
    /// When its connect() returned.
    pub connected: Instant,
    /// Bytes of the script sent.
    pub sent: usize,
    /// Bytes socks5d sent it.
    pub received: usize,
    /// How it ended.
    pub end: End,
    /// When its end was seen.
    pub ended: Option<Instant>,
}

/// Clients that send `script` one byte per second, on one thread.
pub struct Crowd {
    /// The driving thread; it returns every client's story.
    pub driver: thread::JoinHandle<Vec<Slow>>,
    /// Clients closed so far.
    pub closed: Arc<AtomicU64>,
}

impl Crowd {
    /// Connects `n` clients (each sends its first byte at once) and drives
    /// them until every one is closed or `until` passes.
    pub fn start(proxy: SocketAddr, n: usize, script: Vec<u8>, until: Duration) -> Crowd {
        let mut slow = Vec::with_capacity(n);
        for i in 0..n {
            let mut s = TcpStream::connect_timeout(&proxy, IO_TIMEOUT)
                .unwrap_or_else(|e| panic!("slow client {i}: connect: {e}"));
            let connected = Instant::now();
            s.write_all(&script[..1]).expect("first byte");
            s.set_nonblocking(true).expect("nonblocking");
            slow.push(Slow {
                s,
                connected,
                sent: 1,
                received: 0,
                end: End::Open,
                ended: None,
            });
        }
        let closed = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&closed);
        let driver = thread::spawn(move || {
            let stop = Instant::now() + until;
            let mut next_byte = Instant::now() + Duration::from_secs(1);
            let mut buf = [0u8; 64];
            while Instant::now() < stop && count.load(Ordering::Relaxed) < slow.len() as u64 {
                let tick = Instant::now() >= next_byte;
                if tick {
                    next_byte += Duration::from_secs(1);
                }
                for c in slow.iter_mut().filter(|c| c.end == End::Open) {
                    let now = Instant::now();
                    let end = match c.s.read(&mut buf) {
                        Ok(0) => Some(End::Eof),
                        Ok(n) => {
                            c.received += n;
                            None
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                        Err(_) => Some(End::Reset),
                    };
                    let end = end.or_else(|| {
                        if !tick || c.sent >= script.len() {
                            return None;
                        }
                        match c.s.write(&script[c.sent..=c.sent]) {
                            Ok(_) => {
                                c.sent += 1;
                                None
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                            Err(_) => Some(End::Reset),
                        }
                    });
                    if let Some(end) = end {
                        c.end = end;
                        c.ended = Some(now);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // The pace of the crowd, not a synchronisation.
                thread::sleep(Duration::from_millis(20));
            }
            slow
        });
        Crowd { driver, closed }
    }
}

// ------------------------------------------------------------ a firehose

/// A target that writes `len` pattern bytes (seed 7) to each connection as
/// fast as it is taken, then closes; counts what it has written.
pub fn firehose(len: u64) -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind the firehose");
    let addr = l.local_addr().expect("local_addr");
    let written = Arc::new(AtomicU64::new(0));
    let total = Arc::clone(&written);
    thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let total = Arc::clone(&total);
            thread::spawn(move || {
                // A fixed send buffer: no autotuning hides bytes in the kernel.
                let _ = setsockopt(&conn, sockopt::SndBuf, &(64 * 1024));
                let mut buf = vec![0u8; 16 * 1024];
                let mut off = 0u64;
                while off < len {
                    let n = buf.len().min((len - off) as usize);
                    support::pattern_fill(7, off, &mut buf[..n]);
                    if conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    off += n as u64;
                    total.fetch_add(n as u64, Ordering::Relaxed);
                }
                let _ = conn.shutdown(Shutdown::Write);
            });
        }
    });
    (addr, written)
}
