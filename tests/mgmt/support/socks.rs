//! The shared raw SOCKS5 client (RFC 1928, RFC 1929) as the suite calls
//! it, with a user, and TCP targets that stop when dropped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::thread;

pub use crate::common::SocksError;
use crate::common::{self, Auth, Listener};

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
    _listener: Listener,
}

impl Target {
    /// Serves each connection with `serve` until dropped.
    pub fn start(serve: fn(TcpStream)) -> Target {
        let listener = Listener::start((Ipv4Addr::LOCALHOST, 0).into(), move |s, _| {
            thread::spawn(move || serve(s));
        });
        Target {
            addr: listener.addr,
            _listener: listener,
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
