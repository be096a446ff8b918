//! The tests' TCP targets: a listener on its own thread that stops when
//! dropped, and one banner-then-echo service.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
