//! The loopback targets the tunnels lead to, run inside the generator.
//!
//! - [`Echo`]: one mio event loop that writes back whatever it reads and
//!   closes after the client's FIN. It holds no buffer for an idle
//!   connection, so ten thousand idle tunnels cost it nothing but sockets;
//!   the handshake scenario opens and closes thousands per second on it.
//! - [`Bulk`]: the sink/source, a thread per connection. The client sends a
//!   9-byte [`header`]: `U` and a length (the target reads that many bytes,
//!   then answers one [`ACK`] byte, so the sender knows they all arrived) or
//!   `D` and a length (the target sends that many bytes). Ending on an
//!   answer rather than on a half-close keeps the measure honest for proxies
//!   that do not pass half-closes on.
//!
//! - [`UdpEcho`]: UDP sockets, a thread each, that send every datagram back
//!   to where it came from, in batches ([`crate::mmsg`]).
//!
//! The TCP targets listen on 127.0.0.1 (at a port from [`ports::listener`]),
//! the UDP one binds 127.0.0.1 at ports the kernel picks; all stop when
//! dropped.
//!
//! Closing order matters on loopback: the side that closes first keeps the
//! connection in TIME_WAIT for a minute, holding its port. A one-shot echo
//! ([`Echo::start_one_shot`]) and [`Echo::close_all`] close from the target,
//! whose port is its listening port, so that clients and proxies, which
//! connect from ephemeral ports, never pile TIME_WAITs onto that range.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::net::{TcpListener as MioListener, TcpStream as MioStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::mmsg::{BATCH, Batch};
use crate::ports;

/// The upload operation of the sink/source.
pub const UPLOAD: u8 = b'U';
/// The download operation of the sink/source.
pub const DOWNLOAD: u8 = b'D';
/// The sink's answer once every uploaded byte has arrived.
pub const ACK: u8 = b'K';
/// Reads and writes of the sink/source and of the throughput clients.
pub const CHUNK: usize = 128 * 1024;
/// The sink/source gives up on a connection silent this long.
const BULK_IDLE: Duration = Duration::from_secs(60);

/// The sink/source request: operation and length.
pub fn header(op: u8, len: u64) -> [u8; 9] {
    let mut h = [0u8; 9];
    h[0] = op;
    h[1..].copy_from_slice(&len.to_be_bytes());
    h
}

/// Listener `i` has token `LISTENER_BASE - i`.
const LISTENER_BASE: usize = usize::MAX - 1;
/// The most listeners one echo server has.
pub const MAX_LISTENERS: usize = 64;
const WAKER: Token = Token(usize::MAX);

/// The echo server: one thread, one `mio::Poll`.
#[derive(Debug)]
pub struct Echo {
    addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

/// What the echo thread and its handle share.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Close every connection after echoing its first bytes.
    one_shot: bool,
    /// Close-all requests asked for, and done.
    close_asked: AtomicU64,
    close_done: AtomicU64,
}

struct Conn {
    stream: MioStream,
    /// Bytes read but not yet written back; empty (no allocation) while the
    /// connection is idle.
    pending: Vec<u8>,
    eof: bool,
    echoed: bool,
}

impl Echo {
    /// Starts an echo server that keeps each connection until its client
    /// closes it.
    pub fn start() -> io::Result<Echo> {
        Echo::with(false, 1)
    }

    /// Starts an echo server like [`Echo::start`] that listens on
    /// `listeners` ports (1 to [`MAX_LISTENERS`]): a proxy connects from
    /// one address, and each destination gives it a whole ephemeral port
    /// range, so 100,000 tunnels need a few.
    pub fn start_many(listeners: usize) -> io::Result<Echo> {
        Echo::with(false, listeners.clamp(1, MAX_LISTENERS))
    }

    /// Starts an echo server that closes each connection once it has echoed
    /// the first bytes it read.
    pub fn start_one_shot() -> io::Result<Echo> {
        Echo::with(true, 1)
    }

    fn with(one_shot: bool, count: usize) -> io::Result<Echo> {
        let poll = Poll::new()?;
        let mut listeners = Vec::with_capacity(count);
        let mut addrs = Vec::with_capacity(count);
        for i in 0..count {
            let std_listener = ports::listener()?;
            std_listener.set_nonblocking(true)?;
            let mut listener = MioListener::from_std(std_listener);
            addrs.push(listener.local_addr()?);
            poll.registry().register(
                &mut listener,
                Token(LISTENER_BASE - i),
                Interest::READABLE,
            )?;
            listeners.push(listener);
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let shared = Arc::new(Shared {
            one_shot,
            ..Shared::default()
        });
        let shared2 = Arc::clone(&shared);
        let thread = thread::Builder::new().name("echo".into()).spawn(move || {
            if let Err(e) = echo_loop(poll, &listeners, &shared2) {
                eprintln!("loadgen: echo target stopped: {e}");
            }
        })?;
        Ok(Echo {
            addrs,
            shared,
            waker,
            thread: Some(thread),
        })
    }

    /// Closes every connection from the target's side, and returns once
    /// that is done (or after a few seconds).
    pub fn close_all(&self) {
        self.close_all_within(Duration::from_secs(5));
    }

    /// Closes every connection from the target's side; true once that is
    /// done, false if it was not within `limit`.
    pub fn close_all_within(&self, limit: Duration) -> bool {
        let want = self.shared.close_asked.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.waker.wake();
        let deadline = Instant::now() + limit;
        loop {
            if self.shared.close_done.load(Ordering::SeqCst) >= want {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Where it listens (its first port).
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every port it listens on.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn echo_loop(mut poll: Poll, listeners: &[MioListener], shared: &Shared) -> io::Result<()> {
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !shared.stop.load(Ordering::SeqCst) {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let asked = shared.close_asked.load(Ordering::SeqCst);
        if asked > shared.close_done.load(Ordering::SeqCst) {
            for mut c in conns.drain() {
                let _ = poll.registry().deregister(&mut c.stream);
            }
            shared.close_done.store(asked, Ordering::SeqCst);
            continue;
        }
        for ev in events.iter() {
            match ev.token() {
                WAKER => {}
                Token(t) if t > LISTENER_BASE - MAX_LISTENERS => {
                    if let Some(listener) = listeners.get(LISTENER_BASE - t) {
                        accept_all(&poll, listener, &mut conns)?;
                    }
                }
                Token(key) => {
                    let keep = match conns.get_mut(key) {
                        Some(c) => drive(c, &mut buf, shared.one_shot),
                        None => continue,
                    };
                    if !keep {
                        let mut c = conns.remove(key);
                        let _ = poll.registry().deregister(&mut c.stream);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Accepts every connection waiting on `listener` and registers it.
fn accept_all(poll: &Poll, listener: &MioListener, conns: &mut Slab<Conn>) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                let entry = conns.vacant_entry();
                let mut conn = Conn {
                    stream,
                    pending: Vec::new(),
                    eof: false,
                    echoed: false,
                };
                // Edge-triggered, both directions from the start: no
                // re-registration ever.
                poll.registry().register(
                    &mut conn.stream,
                    Token(entry.key()),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                entry.insert(conn);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Out of file descriptors, or an aborted connection: the client
            // sees it and counts it; keep serving.
            Err(_) => return Ok(()),
        }
    }
}

/// Echoes until the socket would block; false when the connection is done
/// (the client closed and everything was written back, a one-shot echo has
/// written back its first bytes, or an error).
fn drive(c: &mut Conn, buf: &mut [u8], one_shot: bool) -> bool {
    loop {
        while !c.pending.is_empty() {
            match c.stream.write(&c.pending) {
                Ok(0) => return false,
                Ok(n) => {
                    c.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if c.pending.capacity() > 0 {
            // Give back the memory of a burst once it is written out.
            c.pending = Vec::new();
        }
        if c.eof || (one_shot && c.echoed) {
            return false;
        }
        // Edge-triggered: read until WouldBlock, or the next readable edge
        // may never come. Clients here send little at a time, so no budget.
        let n = match c.stream.read(buf) {
            Ok(0) => {
                c.eof = true;
                continue;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        c.echoed = true;
        // Straight back from the read buffer; only what the socket will not
        // take now is kept.
        let mut off = 0;
        while off < n {
            match c.stream.write(&buf[off..n]) {
                Ok(0) => return false,
                Ok(k) => off += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.pending.extend_from_slice(&buf[off..n]);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}

/// The sink/source: an accept thread and a thread per connection.
#[derive(Debug)]
pub struct Bulk {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Bulk {
    /// Binds 127.0.0.1:0 and starts serving.
    pub fn start() -> io::Result<Bulk> {
        let listener = ports::listener()?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("bulk-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let spawned = thread::Builder::new().name("bulk".into()).spawn(move || {
                        if let Err(e) = serve_bulk(conn) {
                            eprintln!("loadgen: sink/source connection: {e}");
                        }
                    });
                    if let Err(e) = spawned {
                        eprintln!("loadgen: sink/source: cannot start a thread: {e}");
                    }
                }
            })?;
        Ok(Bulk {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Bulk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_bulk(mut s: TcpStream) -> io::Result<()> {
    s.set_read_timeout(Some(BULK_IDLE))?;
    s.set_write_timeout(Some(BULK_IDLE))?;
    let mut head = [0u8; 9];
    match s.read_exact(&mut head) {
        Ok(()) => {}
        // The wake-up connection of Drop, or a client that gave up.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(e) => return Err(e),
    }
    let mut left = u64::from_be_bytes(head[1..].try_into().expect("8 bytes"));
    let mut buf = vec![0u8; CHUNK];
    match head[0] {
        UPLOAD => {
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                match s.read(&mut buf[..want]) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => left -= n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            s.write_all(&[ACK])
        }
        DOWNLOAD => {
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                match s.write(&buf[..want]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => left -= n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // The client stopped reading and closed: the rate
                    // scenario's downloads end so, by the clock. (A download
                    // cut short otherwise is an error on the client's side.)
                    Err(e) if client_gone(&e) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        op => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown operation {op:#04x}"),
        )),
    }
}

/// Whether a write failed because the other end closed.
fn client_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// How long a UDP echo thread waits for a datagram before it looks whether
/// it should stop.
const UDP_POLL: Duration = Duration::from_millis(50);

/// The UDP echo target: sockets on 127.0.0.1, one thread each, so that
/// associations given a socket each never wait for one another.
#[derive(Debug)]
pub struct UdpEcho {
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpEcho {
    /// Binds `sockets` sockets (at least one) and starts echoing.
    pub fn start(sockets: usize) -> io::Result<UdpEcho> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut echo = UdpEcho {
            addrs: Vec::new(),
            stop: Arc::clone(&stop),
            threads: Vec::new(),
        };
        for _ in 0..sockets.max(1) {
            let sock = UdpSocket::bind("127.0.0.1:0")?;
            sock.set_read_timeout(Some(UDP_POLL))?;
            echo.addrs.push(sock.local_addr()?);
            let stop = Arc::clone(&stop);
            let t = thread::Builder::new()
                .name("udp-echo".into())
                .spawn(move || {
                    if let Err(e) = udp_echo_loop(&sock, &stop) {
                        eprintln!("loadgen: UDP echo target stopped: {e}");
                    }
                })?;
            echo.threads.push(t);
        }
        Ok(echo)
    }

    /// Where its sockets are, one per association.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Receives what is queued (waiting up to [`UDP_POLL`] for the first) and
/// sends it all back, until told to stop.
fn udp_echo_loop(sock: &UdpSocket, stop: &AtomicBool) -> io::Result<()> {
    let mut batch = Batch::new();
    while !stop.load(Ordering::SeqCst) {
        let n = match batch.recv(sock, BATCH) {
            Ok(n) => n,
            Err(e) if is_wait(&e) => continue,
            Err(e) => return Err(e),
        };
        match batch.send(sock, n, true) {
            Ok(()) => {}
            // A client whose socket is gone or whose buffer is full: its
            // datagrams count as lost on its side; keep serving the others.
            Err(e) if is_wait(&e) || e.raw_os_error().is_some() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A timeout or an interruption: nothing wrong, try again.
fn is_wait(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dial(addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    #[test]
    fn echo_writes_back_and_closes_after_fin() {
        let echo = Echo::start().unwrap();
        let mut s = dial(echo.addr());
        for msg in [&b"a"[..], b"hello", &[7u8; 100_000]] {
            s.write_all(msg).unwrap();
            let mut back = vec![0u8; msg.len()];
            s.read_exact(&mut back).unwrap();
            assert_eq!(back, msg);
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn echo_serves_many_connections_at_once() {
        let echo = Echo::start().unwrap();
        let mut conns: Vec<TcpStream> = (0..200).map(|_| dial(echo.addr())).collect();
        for (i, s) in conns.iter_mut().enumerate() {
            s.write_all(&(i as u32).to_be_bytes()).unwrap();
        }
        for (i, s) in conns.iter_mut().enumerate() {
            let mut b = [0u8; 4];
            s.read_exact(&mut b).unwrap();
            assert_eq!(u32::from_be_bytes(b), i as u32);
        }
    }

    #[test]
    fn echo_on_several_ports_serves_each() {
        let echo = Echo::start_many(3).unwrap();
        let addrs = echo.addrs().to_vec();
        assert_eq!(addrs.len(), 3);
        assert_eq!(echo.addr(), addrs[0]);
        let mut conns: Vec<TcpStream> = addrs.iter().map(|a| dial(*a)).collect();
        for (i, s) in conns.iter_mut().enumerate() {
            s.write_all(&[i as u8]).unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            assert_eq!(b[0], i as u8);
        }
        assert!(echo.close_all_within(Duration::from_secs(5)));
        for s in &mut conns {
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn one_shot_echo_closes_first() {
        let echo = Echo::start_one_shot().unwrap();
        for _ in 0..3 {
            let mut s = dial(echo.addr());
            s.write_all(b"x").unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"x");
        }
    }

    #[test]
    fn close_all_closes_from_the_target() {
        let echo = Echo::start().unwrap();
        let mut conns: Vec<TcpStream> = (0..50).map(|_| dial(echo.addr())).collect();
        for s in &mut conns {
            s.write_all(b"y").unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
        }
        echo.close_all();
        for s in &mut conns {
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        }
        // And it goes on serving new connections.
        let mut s = dial(echo.addr());
        s.write_all(b"z").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"z");
    }

    #[test]
    fn echo_stops_when_dropped() {
        let echo = Echo::start().unwrap();
        let addr = echo.addr();
        let _idle = dial(addr);
        drop(echo);
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn sink_acknowledges_every_uploaded_byte() {
        let bulk = Bulk::start().unwrap();
        let mut s = dial(bulk.addr());
        let n = 3 * CHUNK as u64 + 17;
        s.write_all(&header(UPLOAD, n)).unwrap();
        let data = vec![1u8; n as usize];
        s.write_all(&data[..n as usize - 1]).unwrap();
        // One byte short: no answer yet.
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut ack = [0u8; 1];
        assert!(s.read_exact(&mut ack).is_err());
        s.write_all(&data[..1]).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.read_exact(&mut ack).unwrap();
        assert_eq!(ack, [ACK]);
    }

    #[test]
    fn source_sends_exactly_the_length_asked() {
        let bulk = Bulk::start().unwrap();
        let mut s = dial(bulk.addr());
        let n = 2 * CHUNK as u64 + 5;
        s.write_all(&header(DOWNLOAD, n)).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got.len() as u64, n);
    }

    #[test]
    fn udp_echo_sends_each_datagram_back_from_its_own_socket() {
        let echo = UdpEcho::start(3).unwrap();
        assert_eq!(echo.addrs().len(), 3);
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for (i, &a) in echo.addrs().iter().enumerate() {
            let msg = vec![i as u8; 100 + i];
            c.send_to(&msg, a).unwrap();
            let mut back = [0u8; 512];
            let (n, from) = c.recv_from(&mut back).unwrap();
            assert_eq!((&back[..n], from), (&msg[..], a));
        }
        let t = Instant::now();
        drop(echo);
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn bulk_refuses_an_unknown_operation() {
        let bulk = Bulk::start().unwrap();
        let mut s = dial(bulk.addr());
        s.write_all(&header(b'X', 10)).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert!(got.is_empty());
    }
}
