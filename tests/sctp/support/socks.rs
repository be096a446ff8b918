//! A raw SOCKS5 client (RFC 1928, RFC 1929) and TCP targets.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::*;

/// How a raw SOCKS5 exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocksError {
    /// The RFC 1929 STATUS was not X'00'.
    AuthFailed(u8),
    /// The server closed or reset during authentication.
    AuthClosed,
    /// The CONNECT reply's REP was not X'00'.
    ConnectFailed(u8),
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("TCP connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT))
        .expect("set_read_timeout");
    s.set_write_timeout(Some(IO_TIMEOUT))
        .expect("set_write_timeout");
    s
}

/// Greeting offering X'02' only, then RFC 1929 with `user`/`pass`.
pub fn socks_auth(proxy: SocketAddr, user: &str, pass: &str) -> Result<TcpStream, SocksError> {
    let mut s = tcp(proxy);
    s.write_all(&[0x05, 0x01, 0x02]).expect("send greeting");
    let mut m = [0u8; 2];
    s.read_exact(&mut m).expect("method selection");
    assert_eq!(m, [0x05, 0x02], "socks5d must select USERNAME/PASSWORD");
    let mut a = vec![0x01, user.len() as u8];
    a.extend_from_slice(user.as_bytes());
    a.push(pass.len() as u8);
    a.extend_from_slice(pass.as_bytes());
    s.write_all(&a).expect("send RFC 1929 request");
    let mut st = [0u8; 2];
    match s.read_exact(&mut st) {
        Ok(()) => {}
        Err(_) => return Err(SocksError::AuthClosed),
    }
    assert_eq!(st[0], 0x01, "RFC 1929 reply VER");
    if st[1] != 0 {
        return Err(SocksError::AuthFailed(st[1]));
    }
    Ok(s)
}

/// Whether `user`/`pass` passes SOCKS authentication now.
pub fn socks_auth_ok(proxy: SocketAddr, user: &str, pass: &str) -> bool {
    socks_auth(proxy, user, pass).is_ok()
}

/// Authenticates and sends CONNECT to an IPv4 `target`.
pub fn socks_connect(
    proxy: SocketAddr,
    user: &str,
    pass: &str,
    target: SocketAddr,
) -> Result<TcpStream, SocksError> {
    let mut s = socks_auth(proxy, user, pass)?;
    let SocketAddr::V4(t) = target else {
        panic!("socks_connect takes IPv4 targets")
    };
    let mut req = vec![0x05, 0x01, 0x00, 0x01];
    req.extend_from_slice(&t.ip().octets());
    req.extend_from_slice(&t.port().to_be_bytes());
    s.write_all(&req).expect("send CONNECT");
    let mut head = [0u8; 4];
    s.read_exact(&mut head).expect("CONNECT reply");
    assert_eq!(head[0], 0x05, "CONNECT reply VER");
    let rest = match head[3] {
        0x01 => 4 + 2,
        0x04 => 16 + 2,
        0x03 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).expect("BND.ADDR length");
            usize::from(l[0]) + 2
        }
        t => panic!("CONNECT reply ATYP {t:#x}"),
    };
    let mut skip = vec![0u8; rest];
    s.read_exact(&mut skip).expect("BND.ADDR and BND.PORT");
    if head[1] != 0 {
        return Err(SocksError::ConnectFailed(head[1]));
    }
    Ok(s)
}

/// A TCP port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("local_addr");
    drop(l);
    a
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
        Target::start(|mut s| {
            if s.write_all(BANNER).is_err() {
                return;
            }
            let mut b = [0u8; 16 * 1024];
            loop {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = s.shutdown(Shutdown::Write);
        })
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
