//! Shared helpers for the integration tests: a server started in-process, a
//! raw SOCKS5 client written from RFC 1928/1929 (deliberately not using the
//! crate's own codec, so a codec bug cannot hide itself), target servers, a
//! deterministic byte pattern, and bounded waits.
//!
//! Every socket made here has read and write timeouts, so a hang fails a test
//! instead of stalling it. Waits poll an observable condition against a
//! deadline; nothing sleeps to "let the server catch up".

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{self, Auth};
pub use crate::common::{Listener, Reply};
use socks5d::metrics::Snapshot;
use socks5d::reactor::WorkerConfig;
use socks5d::server::{AccessLog, Config, Server};
use socks5d::users::{Role, UserTable};

/// How long any single blocking read or write may take before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// SOCKS5 command codes (RFC 1928 section 4).
pub const CMD_CONNECT: u8 = 0x01;
/// BIND.
pub const CMD_BIND: u8 = 0x02;
/// UDP ASSOCIATE.
pub const CMD_UDP_ASSOCIATE: u8 = 0x03;

/// Reply codes (RFC 1928 section 6).
pub const REP_SUCCEEDED: u8 = 0x00;
/// Host unreachable.
pub const REP_HOST_UNREACHABLE: u8 = 0x04;
/// Connection refused.
pub const REP_CONNECTION_REFUSED: u8 = 0x05;
/// Command not supported.
pub const REP_COMMAND_NOT_SUPPORTED: u8 = 0x07;
/// Address type not supported.
pub const REP_ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;

/// The name of test user `i`.
pub fn user_name(i: usize) -> Vec<u8> {
    format!("user{i}").into_bytes()
}

/// The password of test user `i`: distinctive, so a log can be searched for it.
pub fn password(i: usize) -> Vec<u8> {
    format!("pw-{i}-Zq7xK3").into_bytes()
}

/// A configuration for tests: 127.0.0.1 on an ephemeral port, `users` users
/// (`user0`/`password(0)`, ...), two unpinned workers, no access log, a
/// short grace period so a failed test does not hang in shutdown.
pub fn config(users: usize) -> Config {
    let mut table = UserTable::new();
    for i in 0..users {
        table
            .add(&user_name(i), &password(i), Role::Proxy)
            .expect("test users are valid");
    }
    Config {
        socks: vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0)],
        users: table,
        workers: Some(2),
        pin: false,
        pool_threads: 2,
        backlog: 1024,
        access_log: AccessLog::Off,
        worker: WorkerConfig {
            grace: Duration::from_secs(2),
            ..WorkerConfig::default()
        },
        // The targets are on loopback, which the safe default denies.
        rules_file: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/allow.rules").into()),
        ..Config::default()
    }
}

/// A running server that is shut down when dropped, plus what a client needs.
#[derive(Debug)]
pub struct Proxy {
    server: Option<Server>,
    /// The SOCKS address to connect to.
    pub addr: SocketAddr,
    /// Credentials of user 0, when the server has users.
    creds: Option<(Vec<u8>, Vec<u8>)>,
    grace: Duration,
}

impl Proxy {
    /// Starts a server with `users` users and otherwise [`config`].
    pub fn start(users: usize) -> Proxy {
        Proxy::with_config(config(users))
    }

    /// Starts a server with `cfg`.
    pub fn with_config(cfg: Config) -> Proxy {
        let creds = (!cfg.users.is_empty()).then(|| (user_name(0), password(0)));
        let grace = cfg.worker.grace;
        let server = Server::start(cfg).expect("server starts");
        let addr = server.local_addrs()[0];
        assert_ne!(addr.port(), 0, "ephemeral port filled in");
        Proxy {
            server: Some(server),
            addr,
            creds,
            grace,
        }
    }

    /// Credentials the convenience methods use (user 0), if any.
    pub fn creds(&self) -> Option<(&[u8], &[u8])> {
        self.creds
            .as_ref()
            .map(|(u, p)| (u.as_slice(), p.as_slice()))
    }

    /// Greeting, authentication (as user 0 if there are users) and CONNECT.
    pub fn connect(&self, dst: &Dst) -> (TcpStream, Reply) {
        socks_connect(self.addr, self.creds(), dst)
    }

    /// A tunnel to `dst`; panics unless the reply is X'00'.
    pub fn tunnel(&self, dst: &Dst) -> TcpStream {
        let (s, reply) = self.connect(dst);
        assert_eq!(
            reply.code, REP_SUCCEEDED,
            "CONNECT {dst:?} answered {reply:?}"
        );
        s
    }

    /// Stops the server, waiting for open tunnels within the grace period.
    /// Panics if `Server::shutdown` does not return well after it.
    pub fn shutdown(mut self) -> Snapshot {
        let server = self.server.take().expect("running");
        shutdown_within(server, self.grace + Duration::from_secs(10))
    }
}

/// Runs `server.shutdown()` on its own thread so that a server that never
/// stops fails the test instead of hanging it.
fn shutdown_within(server: Server, within: Duration) -> Snapshot {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(server.shutdown());
    });
    rx.recv_timeout(within)
        .unwrap_or_else(|e| panic!("Server::shutdown did not return within {within:?}: {e}"))
}

impl Deref for Proxy {
    type Target = Server;

    fn deref(&self) -> &Server {
        self.server.as_ref().expect("running")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        if thread::panicking() {
            // The test has failed already; do not wait for a server that may
            // be stuck, and do not panic again.
            thread::spawn(move || server.shutdown());
        } else {
            shutdown_within(server, self.grace + Duration::from_secs(10));
        }
    }
}

// ---------------------------------------------------------------------------
// The raw SOCKS5 client.

/// A request's DST.ADDR and DST.PORT.
#[derive(Debug, Clone)]
pub enum Dst {
    /// ATYP X'01' or X'04'.
    Ip(SocketAddr),
    /// ATYP X'03'.
    Name(String, u16),
    /// ATYP, address and port exactly as given (for malformed requests).
    Raw(Vec<u8>),
}

impl Dst {
    /// ATYP, DST.ADDR and DST.PORT as sent on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let port = match self {
            Dst::Ip(SocketAddr::V4(a)) => {
                out.push(0x01);
                out.extend_from_slice(&a.ip().octets());
                a.port()
            }
            Dst::Ip(SocketAddr::V6(a)) => {
                out.push(0x04);
                out.extend_from_slice(&a.ip().octets());
                a.port()
            }
            Dst::Name(name, port) => {
                out.push(0x03);
                out.push(u8::try_from(name.len()).expect("a name of at most 255 bytes"));
                out.extend_from_slice(name.as_bytes());
                *port
            }
            Dst::Raw(bytes) => return bytes.clone(),
        };
        out.extend_from_slice(&port.to_be_bytes());
        out
    }
}

/// The version identifier/method selection message.
pub fn greeting(methods: &[u8]) -> Vec<u8> {
    let mut out = vec![0x05, u8::try_from(methods.len()).expect("at most 255")];
    out.extend_from_slice(methods);
    out
}

/// The RFC 1929 username/password request.
pub fn auth_request(user: &[u8], pass: &[u8]) -> Vec<u8> {
    let mut out = vec![0x01, u8::try_from(user.len()).expect("at most 255")];
    out.extend_from_slice(user);
    out.push(u8::try_from(pass.len()).expect("at most 255"));
    out.extend_from_slice(pass);
    out
}

/// A request with command `cmd`.
pub fn request(cmd: u8, dst: &Dst) -> Vec<u8> {
    let mut out = vec![0x05, cmd, 0x00];
    out.extend_from_slice(&dst.encode());
    out
}

/// Greeting, optional RFC 1929 request and CONNECT request in one buffer,
/// exactly as a client that pipelines its handshake sends them.
pub fn handshake_bytes(creds: Option<(&[u8], &[u8])>, dst: &Dst) -> Vec<u8> {
    let mut out = match creds {
        Some((u, p)) => {
            let mut v = greeting(&[0x02]);
            v.extend(auth_request(u, p));
            v
        }
        None => greeting(&[0x00]),
    };
    out.extend(request(CMD_CONNECT, dst));
    out
}

/// Sets the timeouts every test socket has.
pub fn with_timeouts(s: TcpStream) -> TcpStream {
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    s.set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    s
}

/// A TCP connection to the proxy, with timeouts and TCP_NODELAY.
pub fn dial(proxy: SocketAddr) -> TcpStream {
    common::dial_proxy(proxy)
}

/// Reads the METHOD selection; checks VER.
pub fn read_method(s: &mut TcpStream) -> io::Result<u8> {
    let mut b = [0u8; 2];
    s.read_exact(&mut b)?;
    assert_eq!(b[0], 0x05, "method selection VER");
    Ok(b[1])
}

/// Reads the RFC 1929 status; checks VER.
pub fn read_auth_status(s: &mut TcpStream) -> io::Result<u8> {
    let mut b = [0u8; 2];
    s.read_exact(&mut b)?;
    assert_eq!(b[0], 0x01, "RFC 1929 status VER");
    Ok(b[1])
}

/// Reads a reply (the shared client's reader); a VER, RSV or ATYP the RFC
/// does not allow fails the test, an I/O error is returned.
pub fn read_reply(s: &mut TcpStream) -> io::Result<Reply> {
    common::read_reply(s).map_err(|e| {
        assert!(e.kind() != io::ErrorKind::InvalidData, "{e}");
        e
    })
}

/// Greeting (offering X'02' with credentials, X'00' without), RFC 1929 log
/// in, CONNECT, each answer read before the next message is sent, on the
/// shared client. Panics if the server refuses the method or the
/// credentials.
pub fn socks_connect(
    proxy: SocketAddr,
    creds: Option<(&[u8], &[u8])>,
    dst: &Dst,
) -> (TcpStream, Reply) {
    let text = |b: &[u8]| {
        std::str::from_utf8(b)
            .expect("UTF-8 credentials")
            .to_owned()
    };
    let creds = creds.map(|(u, p)| (text(u), text(p)));
    let auth = match &creds {
        Some((u, p)) => Auth::User(u, p),
        None => Auth::None,
    };
    let mut s = match common::try_socks_login(proxy, auth) {
        Ok(s) => s,
        Err(e) => panic!("log in to {proxy}: {e:?}"),
    };
    s.write_all(&request(CMD_CONNECT, dst))
        .expect("send request");
    let reply = read_reply(&mut s).expect("reply");
    (s, reply)
}

/// Asserts that the peer closes the connection cleanly (a read returns 0)
/// within `within`, with no byte before; returns how long it took.
pub fn expect_eof(s: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(within)).expect("read timeout");
    let mut b = [0u8; 64];
    let r = s.read(&mut b);
    let took = start.elapsed();
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    match r {
        Ok(0) => took,
        Ok(n) => panic!("expected end of stream, got {n} bytes: {:02x?}", &b[..n]),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            panic!("not closed within {within:?}")
        }
        Err(e) => panic!("expected end of stream, got error {e} after {took:?}"),
    }
}

/// Writes `data` and reads the same number of bytes back, checking them.
pub fn round_trip(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).expect("send");
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).expect("read the echo");
    assert!(back == data, "echo differs from what was sent");
}

/// Closes `s` in an orderly way: both directions shut, the peer's FIN read.
pub fn close_and_drain(mut s: TcpStream) {
    let _ = s.shutdown(Shutdown::Write);
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
}

// ---------------------------------------------------------------------------
// Targets.

/// An echo server: each connection gets back what it sends, and a FIN after
/// the client's FIN. Records each connection's peer address.
#[derive(Debug)]
pub struct Echo {
    listener: Listener,
    /// The address it listens on.
    pub addr: SocketAddr,
    peers: mpsc::Receiver<SocketAddr>,
}

impl Echo {
    /// Starts an echo server on `bind`.
    pub fn start(bind: SocketAddr) -> Echo {
        Echo::start_with_backlog(bind, 128)
    }

    /// Starts an echo server on `bind` with a listen backlog of `backlog`.
    pub fn start_with_backlog(bind: SocketAddr, backlog: i32) -> Echo {
        let (tx, peers) = mpsc::channel();
        let listener = Listener::start_with_backlog(bind, backlog, move |s, peer| {
            let _ = tx.send(peer);
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || echo(s))
                .expect("spawn echo thread");
        });
        Echo {
            addr: listener.addr,
            listener,
            peers,
        }
    }

    /// The peer address of the next connection accepted.
    pub fn next_peer(&self) -> SocketAddr {
        self.peers
            .recv_timeout(IO_TIMEOUT)
            .expect("a connection to the echo server")
    }
}

fn echo(s: TcpStream) {
    // Echo connections may sit idle on purpose (idle-timeout tests).
    let _ = s.set_read_timeout(None);
    common::serve_echo(s, b"");
}

/// A target whose connections the test drives itself.
#[derive(Debug)]
pub struct Target {
    listener: Listener,
    /// The address it listens on.
    pub addr: SocketAddr,
    conns: mpsc::Receiver<(TcpStream, SocketAddr)>,
}

impl Target {
    /// Starts listening on `bind`.
    pub fn start(bind: SocketAddr) -> Target {
        let (tx, conns) = mpsc::channel();
        let listener = Listener::start(bind, move |s, peer| {
            let _ = tx.send((s, peer));
        });
        Target {
            addr: listener.addr,
            listener,
            conns,
        }
    }

    /// The next accepted connection (with timeouts) and its peer address.
    pub fn accept(&self) -> (TcpStream, SocketAddr) {
        self.conns
            .recv_timeout(IO_TIMEOUT)
            .expect("the proxy connects to the target")
    }
}

/// 127.0.0.1 with port 0.
pub fn v4_any_port() -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0)
}

/// [::1] with port 0.
pub fn v6_any_port() -> SocketAddr {
    SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 0)
}

/// What `name` resolves to here, in getaddrinfo's order (the order socks5d
/// tries addresses in).
pub fn resolve(name: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for a in (name, 0).to_socket_addrs().expect("resolve") {
        if !out.contains(&a.ip()) {
            out.push(a.ip());
        }
    }
    out
}

/// A loopback port on which nothing listens (bound, noted, released).
pub fn closed_port(ip: IpAddr) -> SocketAddr {
    let l = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind");
    let addr = l.local_addr().expect("local address");
    drop(l);
    addr
}

// ---------------------------------------------------------------------------
// A deterministic byte stream: byte `i` of stream `seed` is known without
// keeping the stream, and it does not repeat, so a lost, duplicated or
// reordered chunk is found at its offset.

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with bytes `offset..offset + buf.len()` of stream `seed`.
pub fn pattern_fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let key = splitmix64(seed);
    let mut i = offset;
    let mut k = 0;
    while k < buf.len() {
        let block = splitmix64(key ^ (i / 8)).to_le_bytes();
        let start = (i % 8) as usize;
        let n = (8 - start).min(buf.len() - k);
        buf[k..k + n].copy_from_slice(&block[start..start + n]);
        k += n;
        i += n as u64;
    }
}

/// Bytes `0..len` of stream `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    pattern_fill(seed, 0, &mut v);
    v
}

/// Writes bytes `from..from + len` of stream `seed`.
pub fn write_pattern(w: &mut impl Write, seed: u64, from: u64, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = from;
    let end = from + len;
    while off < end {
        let n = ((end - off) as usize).min(buf.len());
        pattern_fill(seed, off, &mut buf[..n]);
        w.write_all(&buf[..n])?;
        off += n as u64;
    }
    Ok(())
}

/// Reads to end of stream, checking every byte against stream `seed` from
/// offset 0; returns the number of bytes. Panics at the first wrong byte.
pub fn read_pattern_to_eof(r: &mut impl Read, seed: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(off),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        pattern_fill(seed, off, &mut want[..n]);
        if buf[..n] != want[..n] {
            let i = (0..n).find(|&i| buf[i] != want[i]).expect("a difference");
            panic!(
                "stream {seed}: byte {} is {:#04x}, expected {:#04x}",
                off + i as u64,
                buf[i],
                want[i]
            );
        }
        off += n as u64;
    }
}

/// Serves one target connection as a sink and a source at once: sends
/// `send_len` bytes of stream `send_seed` then shuts its write side, while
/// reading to end of stream checking stream `recv_seed`. Returns the bytes
/// received.
pub fn sink_source(
    s: TcpStream,
    send_seed: u64,
    send_len: u64,
    recv_seed: u64,
) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut w = s.try_clone().expect("clone");
        let writer = thread::spawn(move || {
            write_pattern(&mut w, send_seed, 0, send_len).expect("target sends");
            w.shutdown(Shutdown::Write)
                .expect("target shuts its write side");
        });
        let mut r = s;
        let got = read_pattern_to_eof(&mut r, recv_seed).expect("target receives");
        writer.join().expect("target writer");
        got
    })
}

// ---------------------------------------------------------------------------
// Bounded waits.

/// Polls `cond` every few milliseconds until it holds; panics with `what`
/// after `within`.
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < end,
            "timed out after {within:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Polls the server's counters until `pred` holds; panics with the last
/// snapshot after `within`.
pub fn wait_metrics(
    server: &Server,
    within: Duration,
    pred: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let end = Instant::now() + within;
    loop {
        let s = server.metrics();
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < end,
            "metrics did not reach the expected values within {within:?}; last: {s:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// A fresh path in the temporary directory.
pub fn temp_path(tag: &str) -> PathBuf {
    let mut p = common::temp_path(tag).into_os_string();
    p.push(".log");
    let p = PathBuf::from(p);
    let _ = fs::remove_file(&p);
    p
}

/// Waits until the file at `path` has a line for which `pred` holds and
/// returns that line.
pub fn wait_log_line(path: &Path, within: Duration, pred: impl Fn(&str) -> bool) -> String {
    let mut found = None;
    wait_until(
        within,
        &format!("a matching line in {}", path.display()),
        || {
            let text = fs::read_to_string(path).unwrap_or_default();
            found = text.lines().find(|l| pred(l)).map(str::to_owned);
            found.is_some()
        },
    );
    found.expect("found above")
}
