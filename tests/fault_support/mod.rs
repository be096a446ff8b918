//! Helpers of tests/faults.rs: socks5d seen through /proc/PID (CPU time,
//! RSS, descriptors, ids), a SOCKS5 client that reports failures instead of
//! panicking (a refusal is an expected outcome there), a crowd of slow
//! clients driven from one thread, and a target that sends without end.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::socket::{setsockopt, sockopt};
use nix::unistd::Pid;

use crate::bin_support::{Daemon, close_tunnel, exchange};
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
    let user = format!("{USER}:{PASS}");
    let mut args = vec![
        "-l",
        "127.0.0.1",
        "-p",
        "0",
        "-u",
        &user,
        "--workers",
        "2",
        "--no-pin",
    ];
    if !extra.contains(&"--access-log") {
        args.extend(["--access-log", "off"]);
    }
    args.extend_from_slice(extra);
    Daemon::start(&args)
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

/// /proc/PID/NAME, read whole.
pub fn proc_file(pid: Pid, name: &str) -> String {
    let path = format!("/proc/{pid}/{name}");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The fields of a /proc/PID/status line, e.g. "Uid".
pub fn status_field(pid: Pid, key: &str) -> Vec<String> {
    let status = proc_file(pid, "status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key}: in /proc/{pid}/status:\n{status}"));
    line.split_whitespace().map(str::to_owned).collect()
}

/// Resident memory, KiB.
pub fn rss_kib(pid: Pid) -> u64 {
    let f = status_field(pid, "VmRSS");
    f[0].parse().expect("VmRSS in kB")
}

/// The descriptors socks5d has open.
pub fn open_fds(pid: Pid) -> Vec<i32> {
    let dir = format!("/proc/{pid}/fd");
    fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// How many descriptors socks5d has once the last closed session is gone:
/// the count unchanged over 50 ms.
pub fn settled_fds(pid: Pid) -> usize {
    let end = Instant::now() + Duration::from_secs(5);
    let mut last = open_fds(pid).len();
    loop {
        thread::sleep(Duration::from_millis(50));
        let now = open_fds(pid).len();
        if now == last || Instant::now() > end {
            return now;
        }
        last = now;
    }
}

/// Clock ticks per second of /proc/PID/stat, from `getconf CLK_TCK`.
pub fn clk_tck() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        let out = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("run getconf CLK_TCK");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("getconf CLK_TCK prints a number")
    })
}

/// User plus system CPU time socks5d has used so far.
pub fn cpu_time(pid: Pid) -> Duration {
    let stat = proc_file(pid, "stat");
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. Field 3 (state) is index 0; utime is field 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("comm in parentheses") + 1..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f[10] + f[11];
    Duration::from_secs_f64(ticks as f64 / clk_tck() as f64)
}

/// Sets socks5d's descriptor limit (soft and hard) with util-linux `prlimit`.
pub fn prlimit_nofile(pid: Pid, limit: u64) {
    let out = Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--nofile={limit}:{limit}"))
        .output()
        .expect("run prlimit (util-linux)");
    assert!(
        out.status.success(),
        "prlimit --pid {pid} --nofile={limit}:{limit}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let limits = proc_file(pid, "limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a 'Max open files' line");
    assert!(
        line.split_whitespace().nth(3) == Some(&limit.to_string()),
        "limit not applied: {line}"
    );
}

/// Polls `stderr` of `d` until it contains `needle` `count` times.
pub fn wait_stderr(d: &Daemon, needle: &str, count: usize, within: Duration) {
    let end = Instant::now() + within;
    while d.stderr().matches(needle).count() < count {
        assert!(
            Instant::now() < end,
            "socks5d did not log {needle:?} ({count}x) within {within:?}; stderr:\n{}",
            d.stderr()
        );
        thread::sleep(Duration::from_millis(10));
    }
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

/// An unexpected answer, as an error.
pub fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A TCP connection to `proxy`; reads time out after `timeout`.
pub fn dial(proxy: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&proxy, IO_TIMEOUT)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads the method selection; USERNAME/PASSWORD expected.
pub fn read_method(s: &mut TcpStream) -> io::Result<()> {
    let mut m = [0u8; 2];
    s.read_exact(&mut m)?;
    if m != [0x05, 0x02] {
        return Err(bad(format!("method selection {m:02x?}")));
    }
    Ok(())
}

/// RFC 1929: sends the credentials, returns STATUS.
pub fn login(s: &mut TcpStream, user: &str, pass: &str) -> io::Result<u8> {
    s.write_all(&support::auth_request(user.as_bytes(), pass.as_bytes()))?;
    let mut st = [0u8; 2];
    s.read_exact(&mut st)?;
    if st[0] != 0x01 {
        return Err(bad(format!("RFC 1929 status {st:02x?}")));
    }
    Ok(st[1])
}

/// CONNECT to an IPv4 `target`; Ok once the reply says X'00'.
pub fn connect_request(s: &mut TcpStream, target: SocketAddr) -> io::Result<()> {
    let SocketAddr::V4(t) = target else {
        panic!("IPv4 targets only")
    };
    let mut req = vec![0x05, 0x01, 0x00, 0x01];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    s.write_all(&req)?;
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply)?;
    if reply[..4] != [0x05, 0x00, 0x00, 0x01] {
        return Err(bad(format!("CONNECT reply {reply:02x?}")));
    }
    Ok(())
}

/// Greeting, log in and CONNECT on a client that has just connected.
pub fn handshake(s: &mut TcpStream, user: &str, pass: &str, target: SocketAddr) -> io::Result<()> {
    s.write_all(&[0x05, 0x01, 0x02])?;
    read_method(s)?;
    let st = login(s, user, pass)?;
    if st != 0 {
        return Err(bad(format!("RFC 1929 STATUS X'{st:02X}' for {user}")));
    }
    connect_request(s, target)
}

/// A tunnel to `target`, or why not; reads time out after `timeout`.
pub fn try_tunnel(
    proxy: SocketAddr,
    user: &str,
    pass: &str,
    target: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let mut s = dial(proxy, timeout)?;
    handshake(&mut s, user, pass, target)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// A tunnel as alice to a banner-then-echo target, its banner read.
pub fn tunnel(proxy: SocketAddr, target: SocketAddr) -> TcpStream {
    let mut t = try_tunnel(proxy, USER, PASS, target, IO_TIMEOUT)
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
    s.write_all(&[0x05, 0x01, 0x02]).expect("greeting");
    read_method(&mut s).expect("method selection");
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
