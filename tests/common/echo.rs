//! The tests' targets: a TCP listener on its own thread that stops when
//! dropped, one banner-then-echo service, and a UDP echo that keeps what it
//! received.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::socks::IO_TIMEOUT;

/// A listener on its own thread that hands each accepted connection to
/// `handle`. Stops accepting when dropped.
#[derive(Debug)]
pub struct Listener {
    /// The bound address.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Listener {
    /// Binds `bind` (port 0 for an ephemeral port) and starts accepting.
    pub fn start(
        bind: SocketAddr,
        handle: impl FnMut(TcpStream, SocketAddr) + Send + 'static,
    ) -> Listener {
        Listener::start_with_backlog(bind, 128, handle)
    }

    /// Like [`Listener::start`] with a listen backlog of `backlog`.
    pub fn start_with_backlog(
        bind: SocketAddr,
        backlog: i32,
        mut handle: impl FnMut(TcpStream, SocketAddr) + Send + 'static,
    ) -> Listener {
        let l: TcpListener = socks5d::sys::net::reuseport_listener(bind, backlog)
            .unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        l.set_nonblocking(false).expect("blocking listener");
        let addr = l.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::Builder::new()
            .name(format!("listener-{addr}"))
            .spawn(move || {
                for conn in l.incoming() {
                    if stopped.load(Ordering::Acquire) {
                        return;
                    }
                    match conn {
                        Ok(s) => {
                            let peer = s.peer_addr().expect("peer address");
                            let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                            let _ = s.set_write_timeout(Some(IO_TIMEOUT));
                            handle(s, peer);
                        }
                        Err(e) => panic!("accept on {addr}: {e}"),
                    }
                }
            })
            .expect("spawn listener");
        Listener { addr, stop }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Unblock accept(); the thread sees the flag and ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A target that writes `banner` to each new connection, then echoes what
/// it reads until end of stream, then closes. Runs until the test ends.
pub fn echo_server(banner: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the echo server");
    let addr = listener.local_addr().expect("local_addr");
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            thread::spawn(move || serve_echo(conn, banner));
        }
    });
    addr
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local_addr").port()
}

/// Serves one connection of an echo target: writes `banner`, echoes what it
/// reads until end of stream (or an error), then half-closes.
pub fn serve_echo(mut conn: TcpStream, banner: &[u8]) {
    if conn.write_all(banner).is_err() {
        return;
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = conn.shutdown(Shutdown::Write);
}

/// Datagrams as a UDP target received them: sender and data, in order.
type Received = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

/// A UDP target that sends each datagram back to its sender and keeps what
/// it received, and from where. Stops when dropped.
#[derive(Debug)]
pub struct UdpEcho {
    /// The bound address.
    pub addr: SocketAddr,
    received: Received,
    stop: Arc<AtomicBool>,
}

impl UdpEcho {
    /// Binds `bind` (port 0 for an ephemeral port) and starts echoing.
    pub fn start(bind: SocketAddr) -> UdpEcho {
        let sock = UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind UDP {bind}: {e}"));
        let addr = sock.local_addr().expect("local address");
        let received = Received::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopped) = (Arc::clone(&received), Arc::clone(&stop));
        thread::Builder::new()
            .name(format!("udp-echo-{addr}"))
            .spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stopped.load(Ordering::Acquire) {
                    // An ICMP error from an earlier answer is no reason to stop.
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    log.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((from, buf[..n].to_vec()));
                    let _ = sock.send_to(&buf[..n], from);
                }
            })
            .expect("spawn the UDP echo");
        UdpEcho {
            addr,
            received,
            stop,
        }
    }

    /// Every datagram received so far, and its sender, in order.
    pub fn received(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The data of every datagram received so far, in order.
    pub fn payloads(&self) -> Vec<Vec<u8>> {
        self.received().into_iter().map(|(_, d)| d).collect()
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Unblock recv_from(); the thread sees the flag and ends.
        let local: SocketAddr = match self.addr {
            SocketAddr::V4(_) => "127.0.0.1:0",
            SocketAddr::V6(_) => "[::1]:0",
        }
        .parse()
        .expect("a valid literal");
        if let Ok(s) = UdpSocket::bind(local) {
            let _ = s.send_to(b"", self.addr);
        }
    }
}
