//! One raw SOCKS5 client (RFC 1928, RFC 1929) for the tests that talk to
//! the real binary: the `try_` functions report a refusal as a value (an
//! expected outcome in some tests), the others fail the test on any
//! unexpected byte.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// Socket read/write timeout for the test's own clients.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// How a raw client authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// Offer only X'00' NO AUTHENTICATION REQUIRED.
    None,
    /// Offer only X'02' USERNAME/PASSWORD and log in with these.
    User(&'a str, &'a str),
}

/// How a raw SOCKS5 exchange ended when it did not open a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocksError {
    /// The RFC 1929 STATUS was not X'00'.
    AuthFailed(u8),
    /// The server closed or reset during authentication.
    AuthClosed,
    /// The CONNECT reply's REP was not X'00'.
    ConnectFailed(u8),
}

/// An error for a byte the protocol did not allow.
pub fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A TCP connection to `proxy` without Nagle's delay; reads time out after
/// `read_timeout`, writes after [`IO_TIMEOUT`].
pub fn dial(proxy: SocketAddr, read_timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&proxy, IO_TIMEOUT)?;
    s.set_read_timeout(Some(read_timeout))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// `dial` with the usual timeouts; fails the test if it cannot connect.
pub fn dial_proxy(proxy: SocketAddr) -> TcpStream {
    dial(proxy, IO_TIMEOUT).unwrap_or_else(|e| panic!("connect {proxy}: {e}"))
}

/// The method `auth` offers: X'00' or X'02'.
pub fn method_of(auth: Auth<'_>) -> u8 {
    match auth {
        Auth::None => 0x00,
        Auth::User(..) => 0x02,
    }
}

/// Reads the method selection; `method` expected.
pub fn read_method(s: &mut TcpStream, method: u8) -> io::Result<()> {
    let mut m = [0u8; 2];
    s.read_exact(&mut m)?;
    if m != [0x05, method] {
        return Err(bad(format!("method selection {m:02x?}")));
    }
    Ok(())
}

/// The greeting offering only `auth`'s method, and its selection.
pub fn greet(s: &mut TcpStream, auth: Auth<'_>) -> io::Result<()> {
    let method = method_of(auth);
    s.write_all(&[0x05, 0x01, method])?;
    read_method(s, method)
}

/// RFC 1929: sends the credentials, returns STATUS.
pub fn login(s: &mut TcpStream, user: &str, pass: &str) -> io::Result<u8> {
    let mut msg = vec![0x01, user.len() as u8];
    msg.extend_from_slice(user.as_bytes());
    msg.push(pass.len() as u8);
    msg.extend_from_slice(pass.as_bytes());
    s.write_all(&msg)?;
    let mut st = [0u8; 2];
    s.read_exact(&mut st)?;
    if st[0] != 0x01 {
        return Err(bad(format!("RFC 1929 status {st:02x?}")));
    }
    Ok(st[1])
}

/// Sends CONNECT to `target`, an IP address.
pub fn send_connect(s: &mut TcpStream, target: SocketAddr) -> io::Result<()> {
    let mut req = vec![0x05, 0x01, 0x00];
    match target.ip() {
        IpAddr::V4(ip) => {
            req.push(0x01);
            req.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            req.push(0x04);
            req.extend_from_slice(&ip.octets());
        }
    }
    req.extend_from_slice(&target.port().to_be_bytes());
    s.write_all(&req)
}

/// A reply to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// REP.
    pub code: u8,
    /// BND.ADDR and BND.PORT when ATYP is an IP address.
    pub bnd: Option<SocketAddr>,
}

/// Reads a reply: VER, REP, RSV, ATYP, BND.ADDR, BND.PORT. A VER, RSV or
/// ATYP the RFC does not allow is an `InvalidData` error.
pub fn read_reply(s: &mut TcpStream) -> io::Result<Reply> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head)?;
    if [head[0], head[2]] != [0x05, 0x00] {
        return Err(bad(format!("reply VER and RSV in {head:02x?}")));
    }
    let bnd = match head[3] {
        0x01 => {
            let mut a = [0u8; 6];
            s.read_exact(&mut a)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[4], a[5]])))
        }
        0x04 => {
            let mut a = [0u8; 18];
            s.read_exact(&mut a)?;
            let octets: [u8; 16] = a[..16].try_into().expect("16 bytes");
            let port = u16::from_be_bytes([a[16], a[17]]);
            Some(SocketAddr::new(Ipv6Addr::from(octets).into(), port))
        }
        0x03 => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len)?;
            let mut rest = vec![0u8; usize::from(len[0]) + 2];
            s.read_exact(&mut rest)?;
            None
        }
        other => return Err(bad(format!("reply ATYP X'{other:02X}'"))),
    };
    Ok(Reply { code: head[1], bnd })
}

/// CONNECT to `target`; Ok once the reply says X'00'.
pub fn connect_request(s: &mut TcpStream, target: SocketAddr) -> io::Result<()> {
    send_connect(s, target)?;
    match read_reply(s)?.code {
        0x00 => Ok(()),
        rep => Err(bad(format!("CONNECT to {target}: REP X'{rep:02X}'"))),
    }
}

/// Greeting, log in (for a user) and CONNECT on a client that has just
/// connected; a refusal is an error.
pub fn handshake(s: &mut TcpStream, auth: Auth<'_>, target: SocketAddr) -> io::Result<()> {
    greet(s, auth)?;
    if let Auth::User(user, pass) = auth {
        let st = login(s, user, pass)?;
        if st != 0 {
            return Err(bad(format!("RFC 1929 STATUS X'{st:02X}' for {user}")));
        }
    }
    connect_request(s, target)
}

/// A tunnel to `target`, or why not; reads time out after `read_timeout`
/// during the handshake, after [`IO_TIMEOUT`] once it is open.
pub fn try_tunnel(
    proxy: SocketAddr,
    auth: Auth<'_>,
    target: SocketAddr,
    read_timeout: Duration,
) -> io::Result<TcpStream> {
    let mut s = dial(proxy, read_timeout)?;
    handshake(&mut s, auth, target)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// The greeting offering only `auth`'s method and, for a user, the RFC 1929
/// sub-negotiation; a STATUS other than X'00' (or the server closing before
/// it) is returned, any other unexpected byte fails the test.
pub fn try_socks_login(proxy: SocketAddr, auth: Auth<'_>) -> Result<TcpStream, SocksError> {
    let mut s = dial_proxy(proxy);
    greet(&mut s, auth).unwrap_or_else(|e| panic!("greeting {proxy}: {e}"));
    if let Auth::User(user, pass) = auth {
        match login(&mut s, user, pass) {
            Ok(0x00) => {}
            Ok(st) => return Err(SocksError::AuthFailed(st)),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                panic!("RFC 1929 reply from {proxy}: {e}")
            }
            Err(_) => return Err(SocksError::AuthClosed),
        }
    }
    Ok(s)
}

/// Like `try_socks_login`, then CONNECT to `target` (an IP address); a REP
/// other than X'00' is returned as `ConnectFailed`.
pub fn try_socks_connect(
    proxy: SocketAddr,
    auth: Auth<'_>,
    target: SocketAddr,
) -> Result<TcpStream, SocksError> {
    let mut s = try_socks_login(proxy, auth)?;
    send_connect(&mut s, target).expect("send CONNECT");
    let reply = read_reply(&mut s).unwrap_or_else(|e| panic!("CONNECT reply from {proxy}: {e}"));
    match reply.code {
        0x00 => Ok(s),
        rep => Err(SocksError::ConnectFailed(rep)),
    }
}

/// Opens a tunnel through the SOCKS5 server at `proxy` to `target`: greeting,
/// RFC 1929 sub-negotiation when asked for, CONNECT with an IP address.
/// Fails the test on any unexpected byte or refusal.
pub fn socks_connect(proxy: SocketAddr, auth: Auth<'_>, target: SocketAddr) -> TcpStream {
    try_socks_connect(proxy, auth, target)
        .unwrap_or_else(|e| panic!("SOCKS5 CONNECT to {target} through {proxy}: {e:?}"))
}

/// Greeting, RFC 1929 log in when asked for, and CONNECT to `name`:`port`
/// (ATYP X'03'), like `socks_connect`; returns the stream after the reply
/// and the reply's REP, whatever it is.
pub fn socks_connect_name(
    proxy: SocketAddr,
    auth: Auth<'_>,
    name: &str,
    port: u16,
) -> (TcpStream, u8) {
    let mut s = dial_proxy(proxy);
    let mut msg = match auth {
        Auth::None => vec![0x05, 0x01, 0x00],
        Auth::User(user, pass) => {
            let mut m = vec![0x05, 0x01, 0x02, 0x01, user.len() as u8];
            m.extend_from_slice(user.as_bytes());
            m.push(pass.len() as u8);
            m.extend_from_slice(pass.as_bytes());
            m
        }
    };
    msg.extend_from_slice(&[0x05, 0x01, 0x00, 0x03, name.len() as u8]);
    msg.extend_from_slice(name.as_bytes());
    msg.extend_from_slice(&port.to_be_bytes());
    // Pipelined: the whole handshake in one write.
    s.write_all(&msg).expect("send the handshake");
    let answers = match auth {
        Auth::None => 2,
        Auth::User(..) => 4,
    };
    let mut head = vec![0u8; answers + 4];
    s.read_exact(&mut head)
        .expect("read the answers and the reply");
    assert_eq!(head[..2], [0x05, msg[2]], "method selection");
    if answers == 4 {
        assert_eq!(head[2..4], [0x01, 0x00], "RFC 1929 status");
    }
    let reply = &head[answers..];
    assert_eq!([reply[0], reply[2]], [0x05, 0x00], "reply VER and RSV");
    let rest = match reply[3] {
        0x01 => 4 + 2,
        0x04 => 16 + 2,
        other => panic!("reply ATYP X'{other:02X}'"),
    };
    let mut bound = vec![0u8; rest];
    s.read_exact(&mut bound)
        .expect("read BND.ADDR and BND.PORT");
    (s, reply[1])
}

/// Sends `data` through `tunnel` and reads back exactly `expect`.
pub fn exchange(tunnel: &mut TcpStream, data: &[u8], expect: &[u8]) {
    tunnel.write_all(data).expect("write into the tunnel");
    let mut got = vec![0u8; expect.len()];
    tunnel.read_exact(&mut got).expect("read from the tunnel");
    assert_eq!(got, expect, "bytes relayed through the tunnel");
}

/// Half-closes `tunnel` and reads until the proxy passes the target's end of
/// stream back; returns the bytes read on the way (none expected).
pub fn close_tunnel(mut tunnel: TcpStream) -> Vec<u8> {
    tunnel.shutdown(Shutdown::Write).expect("shutdown(Write)");
    let mut rest = Vec::new();
    tunnel
        .read_to_end(&mut rest)
        .expect("read to the end of the tunnel");
    rest
}
