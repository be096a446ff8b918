//! The shared raw SOCKS5 client (RFC 1928, RFC 1929) as the suite calls
//! it, with a user, and TCP targets that stop when dropped.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::*;
pub use crate::common::SocksError;
use crate::common::{self, Auth};

/// Greeting offering X'02' only, then RFC 1929 with `user`/`pass`.
pub fn socks_auth(proxy: SocketAddr, user: &str, pass: &str) -> Result<TcpStream, SocksError> {
    common::try_socks_login(proxy, Auth::User(user, pass))
}

/// Whether `user`/`pass` passes SOCKS authentication now.
pub fn socks_auth_ok(proxy: SocketAddr, user: &str, pass: &str) -> bool {
    socks_auth(proxy, user, pass).is_ok()
}

/// Authenticates as `user` and sends CONNECT to `target`.
pub fn socks_connect(
    proxy: SocketAddr,
    user: &str,
    pass: &str,
    target: SocketAddr,
) -> Result<TcpStream, SocksError> {
    common::try_socks_connect(proxy, Auth::User(user, pass), target)
}

/// A TCP port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, common::closed_port()))
}

/// A TCP target on 127.0.0.1 that answers every connection in a thread.
pub struct Target {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Target {
    /// Serves each connection with `serve` until dropped.
    pub fn start(serve: fn(TcpStream)) -> Target {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind target");
        let addr = l.local_addr().expect("local_addr");
        l.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Acquire) {
                match l.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                        let _ = s.set_write_timeout(Some(IO_TIMEOUT));
                        thread::spawn(move || serve(s));
                    }
                    // A non-blocking accept loop: the only way to stop a
                    // std listener without a second socket.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Target {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// A minimal HTTP/1.1 server answering 200 "hello".
    pub fn http() -> Target {
        Target::start(|mut s| {
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&b[..n]),
                }
            }
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            );
        })
    }

    /// Writes [`BANNER`] first, then echoes until the client half-closes.
    pub fn banner_echo() -> Target {
        Target::start(|s| common::serve_echo(s, BANNER))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What [`Target::banner_echo`] sends before echoing.
pub const BANNER: &[u8] = b"banner-from-the-target\n";

/// Deterministic payload bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
