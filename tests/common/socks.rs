//! One raw SOCKS5 client (RFC 1928, RFC 1929) for the tests that talk to
//! the real binary: CONNECT, BIND (its two replies) and UDP ASSOCIATE (the
//! control connection, and datagrams with the UDP request header). The
//! `try_` functions report a refusal as a value (an expected outcome in
//! some tests), the others fail the test on any unexpected byte.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
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
    /// The (first) reply to a BIND or UDP ASSOCIATE request had a REP
    /// other than X'00'.
    RequestFailed(u8),
}

/// CMD X'01' CONNECT (RFC 1928 section 4).
pub const CMD_CONNECT: u8 = 0x01;
/// CMD X'02' BIND.
pub const CMD_BIND: u8 = 0x02;
/// CMD X'03' UDP ASSOCIATE.
pub const CMD_UDP_ASSOCIATE: u8 = 0x03;

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

/// Appends ATYP, the address and the port of `addr` as RFC 1928 writes
/// them in requests, replies and UDP request headers.
pub fn push_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(0x01);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(0x04);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Sends the request `cmd` with DST.ADDR and DST.PORT from `dst`.
pub fn send_request(s: &mut TcpStream, cmd: u8, dst: SocketAddr) -> io::Result<()> {
    let mut req = vec![0x05, cmd, 0x00];
    push_addr(&mut req, dst);
    s.write_all(&req)
}

/// Sends CONNECT to `target`, an IP address.
pub fn send_connect(s: &mut TcpStream, target: SocketAddr) -> io::Result<()> {
    send_request(s, CMD_CONNECT, target)
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
    login_on(dial_proxy(proxy), proxy, auth)
}

/// Like [`try_socks_login`], from the local address `from` (a 127.0.0.x
/// other than 127.0.0.1, say).
pub fn try_socks_login_from(
    from: IpAddr,
    proxy: SocketAddr,
    auth: Auth<'_>,
) -> Result<TcpStream, SocksError> {
    login_on(connect_from(SocketAddr::new(from, 0), proxy), proxy, auth)
}

/// The greeting and, for [`Auth::User`], the log in on `s`, a new
/// connection to `proxy`.
fn login_on(mut s: TcpStream, proxy: SocketAddr, auth: Auth<'_>) -> Result<TcpStream, SocksError> {
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

/// Logs in as `auth` asks, sends the request `cmd` for `dst` and reads the
/// (first) reply; a REP other than X'00' is returned as `RequestFailed`.
/// Returns the stream and BND (an IP address is expected).
pub fn try_request(
    proxy: SocketAddr,
    auth: Auth<'_>,
    cmd: u8,
    dst: SocketAddr,
) -> Result<(TcpStream, SocketAddr), SocksError> {
    let mut s = try_socks_login(proxy, auth)?;
    send_request(&mut s, cmd, dst).expect("send the request");
    let reply = read_reply(&mut s)
        .unwrap_or_else(|e| panic!("reply to CMD X'{cmd:02X}' from {proxy}: {e}"));
    match (reply.code, reply.bnd) {
        (0x00, Some(bnd)) => Ok((s, bnd)),
        (0x00, None) => panic!("reply to CMD X'{cmd:02X}': BND.ADDR is a name"),
        (rep, _) => Err(SocksError::RequestFailed(rep)),
    }
}

// ------------------------------------------------------------------ BIND

/// BIND for a connection from `dst` (RFC 1928 section 4): the control
/// stream after the first reply, and the address socks5d listens on (its
/// BND). Fails the test on a refusal.
pub fn bind_request(proxy: SocketAddr, auth: Auth<'_>, dst: SocketAddr) -> (TcpStream, SocketAddr) {
    try_request(proxy, auth, CMD_BIND, dst)
        .unwrap_or_else(|e| panic!("BIND for {dst} through {proxy}: {e:?}"))
}

/// Reads BIND's second reply, which must be X'00'; returns the address of
/// the peer that connected (its BND).
pub fn bind_accepted(s: &mut TcpStream) -> SocketAddr {
    let reply = read_reply(s).unwrap_or_else(|e| panic!("BIND's second reply: {e}"));
    match (reply.code, reply.bnd) {
        (0x00, Some(peer)) => peer,
        _ => panic!("BIND's second reply: {reply:?}"),
    }
}

/// A TCP connection to `to` from the local address `from` (port 0: the
/// kernel's choice), as a BIND peer on another loopback address makes it.
pub fn connect_from(from: SocketAddr, to: SocketAddr) -> TcpStream {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrStorage, bind, connect, socket,
    };
    use std::os::fd::AsRawFd;

    let family = match to {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    bind(fd.as_raw_fd(), &SockaddrStorage::from(from))
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    connect(fd.as_raw_fd(), &SockaddrStorage::from(to))
        .unwrap_or_else(|e| panic!("connect {to} from {from}: {e}"));
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    s.set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    s
}

// --------------------------------------------------------- UDP ASSOCIATE

/// An open UDP association: the TCP connection that holds it open and the
/// relay's address from the reply (BND).
#[derive(Debug)]
pub struct UdpAssociation {
    /// The control connection; the association ends when it closes.
    pub control: TcpStream,
    /// Where datagrams for the relay go (BND.ADDR and BND.PORT).
    pub relay: SocketAddr,
}

/// UDP ASSOCIATE with DST.ADDR and DST.PORT from `client` (the address the
/// client will send from, or what it knows of it), or the refusal.
pub fn try_udp_associate(
    proxy: SocketAddr,
    auth: Auth<'_>,
    client: SocketAddr,
) -> Result<UdpAssociation, SocksError> {
    let (control, relay) = try_request(proxy, auth, CMD_UDP_ASSOCIATE, client)?;
    Ok(UdpAssociation { control, relay })
}

/// Like [`try_udp_associate`]; fails the test on a refusal.
pub fn udp_associate(proxy: SocketAddr, auth: Auth<'_>, client: SocketAddr) -> UdpAssociation {
    try_udp_associate(proxy, auth, client)
        .unwrap_or_else(|e| panic!("UDP ASSOCIATE for {client} through {proxy}: {e:?}"))
}

/// A datagram for the relay (RFC 1928 section 7): RSV X'0000', `frag`,
/// the target `dst`, then `data`.
pub fn udp_datagram(frag: u8, dst: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut d = vec![0x00, 0x00, frag];
    push_addr(&mut d, dst);
    d.extend_from_slice(data);
    d
}

/// A datagram for the relay to the name `host` (ATYP X'03') and `port`.
pub fn udp_datagram_to_name(host: &str, port: u16, data: &[u8]) -> Vec<u8> {
    let mut d = vec![0x00, 0x00, 0x00, 0x03, host.len() as u8];
    d.extend_from_slice(host.as_bytes());
    d.extend_from_slice(&port.to_be_bytes());
    d.extend_from_slice(data);
    d
}

/// Splits a datagram from the relay into the address in its header and its
/// data; RSV must be 0, FRAG 0 and ATYP an IP address.
pub fn parse_udp_datagram(d: &[u8]) -> io::Result<(SocketAddr, Vec<u8>)> {
    let short = || bad(format!("a datagram too short for its header: {d:02x?}"));
    let head = d.get(..4).ok_or_else(short)?;
    if head[..3] != [0x00, 0x00, 0x00] {
        return Err(bad(format!("UDP header RSV and FRAG {:02x?}", &head[..3])));
    }
    let (ip, rest): (IpAddr, &[u8]) = match head[3] {
        0x01 => {
            let a: [u8; 4] = d.get(4..8).ok_or_else(short)?.try_into().expect("4 bytes");
            (Ipv4Addr::from(a).into(), &d[8..])
        }
        0x04 => {
            let a: [u8; 16] = d.get(4..20).ok_or_else(short)?.try_into().expect("16");
            (Ipv6Addr::from(a).into(), &d[20..])
        }
        other => return Err(bad(format!("UDP header ATYP X'{other:02X}'"))),
    };
    let port = rest.get(..2).ok_or_else(short)?;
    let port = u16::from_be_bytes([port[0], port[1]]);
    Ok((SocketAddr::new(ip, port), rest[2..].to_vec()))
}

/// A UDP client of a relay: its socket (reads time out after
/// [`IO_TIMEOUT`]) and the relay's address.
#[derive(Debug)]
pub struct UdpClient {
    /// The client's socket.
    pub sock: UdpSocket,
    /// The relay it sends to.
    pub relay: SocketAddr,
}

impl UdpClient {
    /// A socket bound to `local` (port 0 for an ephemeral one) that talks to
    /// `relay`.
    pub fn bind(local: SocketAddr, relay: SocketAddr) -> UdpClient {
        let sock = UdpSocket::bind(local).unwrap_or_else(|e| panic!("bind UDP {local}: {e}"));
        sock.set_read_timeout(Some(IO_TIMEOUT))
            .expect("UDP read timeout");
        UdpClient { sock, relay }
    }

    /// Binds a client socket on `local` and opens an association for it
    /// through `proxy`, with DST.ADDR and DST.PORT from `dst` or, when that
    /// is `None`, the socket's own address. Fails the test on a refusal.
    pub fn associate(
        proxy: SocketAddr,
        auth: Auth<'_>,
        local: SocketAddr,
        dst: Option<SocketAddr>,
    ) -> (UdpAssociation, UdpClient) {
        let mut c = UdpClient::bind(local, proxy);
        let a = udp_associate(proxy, auth, dst.unwrap_or_else(|| c.local()));
        c.relay = a.relay;
        (a, c)
    }

    /// The socket's own address.
    pub fn local(&self) -> SocketAddr {
        self.sock.local_addr().expect("UDP local address")
    }

    /// Sends `datagram` (header included) to the relay.
    pub fn send_raw(&self, datagram: &[u8]) {
        let n = self
            .sock
            .send_to(datagram, self.relay)
            .unwrap_or_else(|e| panic!("send to the relay {}: {e}", self.relay));
        assert_eq!(n, datagram.len(), "a datagram sent whole");
    }

    /// Sends `data` for `dst` through the relay (FRAG 0).
    pub fn send_to(&self, dst: SocketAddr, data: &[u8]) {
        self.send_raw(&udp_datagram(0, dst, data));
    }

    /// The next datagram from the relay: the address in its header and its
    /// data. Fails the test after [`IO_TIMEOUT`], on a datagram from any
    /// other address, and on a malformed header.
    pub fn recv(&self) -> (SocketAddr, Vec<u8>) {
        let mut buf = vec![0u8; 65_536];
        let (n, from) = self
            .sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no datagram from the relay {}: {e}", self.relay));
        assert_eq!(from, self.relay, "the sender of a datagram to the client");
        parse_udp_datagram(&buf[..n]).unwrap_or_else(|e| panic!("from the relay: {e}"))
    }

    /// Sends `data` to `dst` through the relay and expects it back from
    /// `dst` (an echo target).
    pub fn echo(&self, dst: SocketAddr, data: &[u8]) {
        self.send_to(dst, data);
        assert_eq!(self.recv(), (dst, data.to_vec()), "the echo from {dst}");
    }
}
