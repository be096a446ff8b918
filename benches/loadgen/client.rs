//! The client side of SOCKS5 (RFC 1928) with username/password authentication
//! (RFC 1929), blocking, as a load generator needs it: CONNECT, and UDP
//! ASSOCIATE with the UDP request header of RFC 1928 section 7.
//!
//! Each message is built or checked by a small function of bytes with no I/O;
//! [`handshake`] runs them in order over any `Read + Write`, waiting for each
//! answer before sending the next message, as curl and browsers do. Replies
//! are read with `read_exact` of the lengths the protocol announces, so a
//! reply split over many segments is read whole and never over-read.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// VER of every RFC 1928 message.
pub const VERSION: u8 = 0x05;
/// METHOD X'00': no authentication required.
pub const NO_AUTH: u8 = 0x00;
/// METHOD X'02': username/password (RFC 1929).
pub const USER_PASS: u8 = 0x02;
/// METHOD X'FF': no acceptable methods.
pub const NO_ACCEPTABLE: u8 = 0xFF;
/// VER of the RFC 1929 sub-negotiation.
pub const AUTH_VERSION: u8 = 0x01;
/// CMD X'01': CONNECT.
pub const CONNECT: u8 = 0x01;
/// CMD X'03': UDP ASSOCIATE.
pub const UDP_ASSOCIATE: u8 = 0x03;
/// ATYP X'01': IPv4 address.
pub const ATYP_IPV4: u8 = 0x01;
/// ATYP X'03': domain name.
pub const ATYP_DOMAIN: u8 = 0x03;
/// ATYP X'04': IPv6 address.
pub const ATYP_IPV6: u8 = 0x04;

/// How the client authenticates to the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Offer METHOD X'00' only.
    None,
    /// Offer METHOD X'02' only, then send these credentials.
    UserPass {
        /// UNAME.
        user: String,
        /// PASSWD.
        pass: String,
    },
}

impl Auth {
    /// `USER:PASS`, the password being everything after the first `:`.
    pub fn parse(s: &str) -> Option<Auth> {
        let (user, pass) = s.split_once(':')?;
        Some(Auth::UserPass {
            user: user.to_owned(),
            pass: pass.to_owned(),
        })
    }

    /// The one method this client offers.
    pub fn method(&self) -> u8 {
        match self {
            Auth::None => NO_AUTH,
            Auth::UserPass { .. } => USER_PASS,
        }
    }
}

/// How a tunnel to a target is opened: straight to it, or through a proxy.
#[derive(Clone, Debug)]
pub enum Route {
    /// A plain TCP connection to the target: the baseline.
    Direct,
    /// Through a SOCKS5 proxy.
    Socks {
        /// The proxy's address (loopback only: checked where it is parsed).
        proxy: SocketAddr,
        /// How to authenticate.
        auth: Auth,
    },
    /// Through a SOCKS5 proxy as a balancer with `send-proxy-v2` reaches
    /// it: a PROXY protocol v2 header naming the client (our own address)
    /// first, then the handshake.
    Balanced {
        /// The proxy's address (loopback only: checked where it is parsed).
        proxy: SocketAddr,
        /// How to authenticate.
        auth: Auth,
    },
}

/// What went wrong opening a tunnel; [`DialError::kind`] names it in one word
/// for the result line.
#[derive(Debug)]
pub enum DialError {
    /// The TCP connection to the proxy (or, direct, to the target) failed.
    Connect(io::Error),
    /// Reading or writing during the handshake failed (a timeout included).
    Io(io::Error),
    /// The proxy closed the connection in the middle of the handshake.
    Closed,
    /// The proxy answered METHOD X'FF'.
    NoAcceptableMethod,
    /// The proxy sent bytes that are not a valid answer.
    Malformed(&'static str),
    /// RFC 1929 STATUS other than X'00'.
    AuthFailed(u8),
    /// RFC 1928 REP other than X'00' (succeeded).
    Reply(u8),
}

impl DialError {
    /// One word for counting errors by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            DialError::Connect(_) => "connect",
            DialError::Io(e) if is_timeout(e) => "timeout",
            DialError::Io(_) => "io",
            DialError::Closed => "eof",
            DialError::NoAcceptableMethod => "method",
            DialError::Malformed(_) => "proto",
            DialError::AuthFailed(_) => "auth",
            DialError::Reply(_) => "reply",
        }
    }
}

/// Whether an I/O error is a socket timeout (`SO_RCVTIMEO`/`SO_SNDTIMEO`).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Connect(e) => write!(f, "connect: {e}"),
            DialError::Io(e) => write!(f, "handshake I/O: {e}"),
            DialError::Closed => f.write_str("the proxy closed during the handshake"),
            DialError::NoAcceptableMethod => f.write_str("no acceptable method (X'FF')"),
            DialError::Malformed(what) => write!(f, "malformed {what}"),
            DialError::AuthFailed(s) => write!(f, "authentication failed, STATUS X'{s:02X}'"),
            DialError::Reply(r) => write!(f, "request failed, REP X'{r:02X}'"),
        }
    }
}

impl std::error::Error for DialError {}

fn io_err(e: io::Error) -> DialError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        DialError::Closed
    } else {
        DialError::Io(e)
    }
}

/// The method-selection message: VER, NMETHODS = 1, the one method we offer.
pub fn greeting(auth: &Auth) -> [u8; 3] {
    [VERSION, 1, auth.method()]
}

/// Checks the server's method selection (VER, METHOD).
pub fn check_method(reply: [u8; 2], auth: &Auth) -> Result<(), DialError> {
    if reply[0] != VERSION {
        return Err(DialError::Malformed("method selection: VER"));
    }
    match reply[1] {
        m if m == auth.method() => Ok(()),
        NO_ACCEPTABLE => Err(DialError::NoAcceptableMethod),
        _ => Err(DialError::Malformed(
            "method selection: a method not offered",
        )),
    }
}

/// The RFC 1929 request: VER X'01', ULEN, UNAME, PLEN, PASSWD.
pub fn auth_request(user: &str, pass: &str) -> Result<Vec<u8>, DialError> {
    // RFC 1929: ULEN and PLEN are one octet each, 1 to 255.
    let (u, p) = (user.as_bytes(), pass.as_bytes());
    if u.is_empty() || u.len() > 255 || p.is_empty() || p.len() > 255 {
        return Err(DialError::Malformed("credentials: 1 to 255 bytes each"));
    }
    let mut m = Vec::with_capacity(3 + u.len() + p.len());
    m.extend_from_slice(&[AUTH_VERSION, u.len() as u8]);
    m.extend_from_slice(u);
    m.push(p.len() as u8);
    m.extend_from_slice(p);
    Ok(m)
}

/// Checks the RFC 1929 answer (VER, STATUS): "A STATUS field of X'00'
/// indicates success."
pub fn check_auth(reply: [u8; 2]) -> Result<(), DialError> {
    if reply[0] != AUTH_VERSION {
        return Err(DialError::Malformed("authentication status: VER"));
    }
    match reply[1] {
        0 => Ok(()),
        s => Err(DialError::AuthFailed(s)),
    }
}

/// Appends ATYP DST.ADDR DST.PORT for an IP address.
fn put_addr(m: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            m.push(ATYP_IPV4);
            m.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            m.push(ATYP_IPV6);
            m.extend_from_slice(&ip.octets());
        }
    }
    m.extend_from_slice(&addr.port().to_be_bytes());
}

/// A request for an IP address: VER CMD RSV ATYP DST.ADDR DST.PORT.
pub fn request(cmd: u8, addr: SocketAddr) -> Vec<u8> {
    let mut m = Vec::with_capacity(22);
    m.extend_from_slice(&[VERSION, cmd, 0x00]);
    put_addr(&mut m, addr);
    m
}

/// The UDP request header of RFC 1928 section 7 for an IP destination:
/// RSV RSV FRAG (X'0000', X'00': no fragmentation) ATYP DST.ADDR DST.PORT.
/// The datagram's data follows it.
pub fn udp_header(dst: SocketAddr) -> Vec<u8> {
    let mut m = Vec::with_capacity(22);
    m.extend_from_slice(&[0x00, 0x00, 0x00]);
    put_addr(&mut m, dst);
    m
}

/// Reads the UDP header of a datagram from the relay: the address it names
/// (for a reply, the one it came from) and where its data starts. Fragments
/// (FRAG other than X'00') and domain names are refused: the scenario
/// neither sends nor expects them.
pub fn parse_udp_header(d: &[u8]) -> Result<(SocketAddr, usize), &'static str> {
    let (ip, at) = match d.get(..4) {
        None => return Err("shorter than a header"),
        Some([0, 0, 0, ATYP_IPV4]) => match d.get(4..8) {
            Some(o) => {
                let o: [u8; 4] = o.try_into().expect("a 4-byte slice");
                (IpAddr::V4(Ipv4Addr::from(o)), 8)
            }
            None => return Err("shorter than a header"),
        },
        Some([0, 0, 0, ATYP_IPV6]) => match d.get(4..20) {
            Some(o) => {
                let o: [u8; 16] = o.try_into().expect("a 16-byte slice");
                (IpAddr::V6(Ipv6Addr::from(o)), 20)
            }
            None => return Err("shorter than a header"),
        },
        Some([0, 0, 0, _]) => return Err("ATYP"),
        Some([0, 0, _, _]) => return Err("a fragment"),
        Some(_) => return Err("RSV not zero"),
    };
    match d.get(at..at + 2) {
        Some(p) => Ok((
            SocketAddr::new(ip, u16::from_be_bytes([p[0], p[1]])),
            at + 2,
        )),
        None => Err("shorter than a header"),
    }
}

/// The whole length of a reply from its first five bytes (VER, REP, RSV, ATYP
/// and the first byte of BND.ADDR, which for a domain name is its length).
pub fn reply_len(head: [u8; 5]) -> Result<usize, DialError> {
    if head[0] != VERSION {
        return Err(DialError::Malformed("reply: VER"));
    }
    match head[3] {
        ATYP_IPV4 => Ok(4 + 4 + 2),
        ATYP_IPV6 => Ok(4 + 16 + 2),
        ATYP_DOMAIN => Ok(4 + 1 + head[4] as usize + 2),
        _ => Err(DialError::Malformed("reply: ATYP")),
    }
}

/// Checks a whole reply; on success, BND.ADDR and BND.PORT when they are an
/// IP address (`None` for a domain name).
pub fn parse_reply(reply: &[u8]) -> Result<Option<SocketAddr>, DialError> {
    let head: [u8; 5] = match reply.get(..5) {
        Some(h) => h.try_into().expect("a 5-byte slice"),
        None => return Err(DialError::Malformed("reply: too short")),
    };
    if reply_len(head)? != reply.len() {
        return Err(DialError::Malformed("reply: length"));
    }
    if reply[1] != 0 {
        return Err(DialError::Reply(reply[1]));
    }
    let port_at = reply.len() - 2;
    let port = u16::from_be_bytes([reply[port_at], reply[port_at + 1]]);
    let ip = match reply[3] {
        ATYP_IPV4 => {
            let o: [u8; 4] = reply[4..8].try_into().expect("a 4-byte slice");
            IpAddr::V4(Ipv4Addr::from(o))
        }
        ATYP_IPV6 => {
            let o: [u8; 16] = reply[4..20].try_into().expect("a 16-byte slice");
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return Ok(None),
    };
    Ok(Some(SocketAddr::new(ip, port)))
}

fn read2<S: Read>(s: &mut S) -> Result<[u8; 2], DialError> {
    let mut b = [0u8; 2];
    s.read_exact(&mut b).map_err(io_err)?;
    Ok(b)
}

/// Reads until `buf` is full or the peer closes; how many bytes came.
fn read_upto<S: Read>(s: &mut S, buf: &mut [u8]) -> Result<usize, DialError> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(got)
}

/// Greeting, RFC 1929 log-in when `auth` asks for it, CONNECT to `target`,
/// each answer awaited before the next message. Returns BND.ADDR:BND.PORT.
pub fn handshake<S: Read + Write>(
    s: &mut S,
    auth: &Auth,
    target: SocketAddr,
) -> Result<Option<SocketAddr>, DialError> {
    negotiate(s, auth, CONNECT, target)
}

/// Greeting, log-in, then the request `cmd` for `addr`; returns
/// BND.ADDR:BND.PORT.
fn negotiate<S: Read + Write>(
    s: &mut S,
    auth: &Auth,
    cmd: u8,
    addr: SocketAddr,
) -> Result<Option<SocketAddr>, DialError> {
    s.write_all(&greeting(auth)).map_err(io_err)?;
    check_method(read2(s)?, auth)?;
    if let Auth::UserPass { user, pass } = auth {
        s.write_all(&auth_request(user, pass)?).map_err(io_err)?;
        check_auth(read2(s)?)?;
    }
    s.write_all(&request(cmd, addr)).map_err(io_err)?;
    let mut head = [0u8; 5];
    let got = read_upto(s, &mut head)?;
    // A failure reply cut short by the close that follows it still tells
    // the code, which is what the error count should show.
    if got >= 2 && head[0] == VERSION && head[1] != 0 {
        return Err(DialError::Reply(head[1]));
    }
    if got < head.len() {
        return Err(DialError::Closed);
    }
    let mut reply = vec![0u8; reply_len(head)?];
    reply[..5].copy_from_slice(&head);
    s.read_exact(&mut reply[5..]).map_err(io_err)?;
    parse_reply(&reply)
}

impl Route {
    /// Opens a tunnel to `target`: TCP with `TCP_NODELAY` and `timeout` on
    /// connect, every read and every write, then the SOCKS5 handshake when
    /// there is a proxy. The timeouts stay set, so no later read can hang.
    pub fn open(&self, target: SocketAddr, timeout: Duration) -> Result<TcpStream, DialError> {
        let s = TcpStream::connect_timeout(&self.first_hop(target), timeout)
            .map_err(DialError::Connect)?;
        self.finish_open(s, target, timeout)
    }

    /// [`Route::open`] from a chosen loopback source address: a generator
    /// holding 100,000 tunnels needs more (address, port) pairs than one
    /// address has ephemeral ports. The port is still the kernel's choice,
    /// made at connect time (`IP_BIND_ADDRESS_NO_PORT`), so that one port
    /// serves connections to different destinations.
    pub fn open_from(
        &self,
        source: Ipv4Addr,
        target: SocketAddr,
        timeout: Duration,
    ) -> Result<TcpStream, DialError> {
        let s = connect_from(source, self.first_hop(target), timeout)?;
        self.finish_open(s, target, timeout)
    }

    fn first_hop(&self, target: SocketAddr) -> SocketAddr {
        match self {
            Route::Direct => target,
            Route::Socks { proxy, .. } | Route::Balanced { proxy, .. } => *proxy,
        }
    }

    fn finish_open(
        &self,
        mut s: TcpStream,
        target: SocketAddr,
        timeout: Duration,
    ) -> Result<TcpStream, DialError> {
        s.set_nodelay(true).map_err(DialError::Io)?;
        s.set_read_timeout(Some(timeout)).map_err(DialError::Io)?;
        s.set_write_timeout(Some(timeout)).map_err(DialError::Io)?;
        match self {
            Route::Direct => {}
            Route::Socks { auth, .. } => {
                handshake(&mut s, auth, target)?;
            }
            Route::Balanced { proxy, auth } => {
                let mut header = [0u8; 52];
                let client = s.local_addr().map_err(DialError::Io)?;
                let n = socks5d::socks5::proxy_protocol::emit_v2(client, *proxy, &mut header);
                s.write_all(&header[..n]).map_err(io_err)?;
                handshake(&mut s, auth, target)?;
            }
        }
        Ok(s)
    }
}

/// A TCP connection from `source` (port chosen at connect time) to `to`,
/// an IPv4 address; `timeout` bounds the connect (`SO_SNDTIMEO`, which
/// Linux applies to a blocking connect) and stays set on writes.
fn connect_from(
    source: Ipv4Addr,
    to: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, DialError> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, setsockopt, socket, sockopt,
    };
    use std::os::fd::AsRawFd;
    let SocketAddr::V4(to) = to else {
        return Err(DialError::Connect(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a source address needs an IPv4 destination",
        )));
    };
    let err = |e: nix::Error| DialError::Connect(io::Error::from(e));
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(err)?;
    setsockopt(&fd, sockopt::IpBindAddressNoPort, &true).map_err(err)?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(source, 0)),
    )
    .map_err(err)?;
    let s = TcpStream::from(fd);
    s.set_write_timeout(Some(timeout))
        .map_err(DialError::Connect)?;
    match connect(s.as_raw_fd(), &SockaddrIn::from(to)) {
        Ok(()) => Ok(s),
        // The send timeout ran out before the handshake completed.
        Err(nix::errno::Errno::EINPROGRESS) => Err(DialError::Connect(io::Error::new(
            io::ErrorKind::TimedOut,
            "connect timed out",
        ))),
        Err(e) => Err(err(e)),
    }
}

/// An open UDP association: its control connection, which must stay open
/// as long as the association is used, and the relay to send datagrams to.
#[derive(Debug)]
pub struct Association {
    /// The TCP control connection.
    pub control: TcpStream,
    /// The relay's address (BND.ADDR:BND.PORT; the proxy's own address
    /// when BND.ADDR is all zeros).
    pub relay: SocketAddr,
}

/// Opens a UDP association through `proxy` for datagrams from `client`
/// (the address of the UDP socket that will send them), with `timeout` on
/// connect, every read and every write of the control connection.
pub fn associate(
    proxy: SocketAddr,
    auth: &Auth,
    client: SocketAddr,
    timeout: Duration,
) -> Result<Association, DialError> {
    let mut s = TcpStream::connect_timeout(&proxy, timeout).map_err(DialError::Connect)?;
    s.set_nodelay(true).map_err(DialError::Io)?;
    s.set_read_timeout(Some(timeout)).map_err(DialError::Io)?;
    s.set_write_timeout(Some(timeout)).map_err(DialError::Io)?;
    let bound = negotiate(&mut s, auth, UDP_ASSOCIATE, client)?
        .ok_or(DialError::Malformed("reply: a domain name as the relay"))?;
    Ok(Association {
        control: s,
        relay: relay_address(bound, proxy),
    })
}

/// Where datagrams go: BND.ADDR:BND.PORT, with the proxy's address standing
/// in for an unspecified BND.ADDR (X'00000000'), which some servers send.
pub fn relay_address(bound: SocketAddr, proxy: SocketAddr) -> SocketAddr {
    if bound.ip().is_unspecified() {
        SocketAddr::new(proxy.ip(), bound.port())
    } else {
        bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::net::TcpListener;
    use std::thread;

    /// A scripted server: reads come from `input` (at most `chunk` bytes
    /// per call, to split every answer), writes go to `output`.
    struct Script {
        input: Cursor<Vec<u8>>,
        chunk: usize,
        output: Vec<u8>,
    }

    impl Script {
        fn new(input: &[u8], chunk: usize) -> Script {
            Script {
                input: Cursor::new(input.to_vec()),
                chunk,
                output: Vec::new(),
            }
        }
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.chunk);
            self.input.read(&mut buf[..n])
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A fake proxy on a loopback port: its address, and the thread that
    /// accepts one client and runs `script` on it.
    fn fake_proxy(
        script: impl FnOnce(TcpStream) + Send + 'static,
    ) -> (SocketAddr, thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = l.local_addr().unwrap();
        let server = thread::spawn(move || script(l.accept().unwrap().0));
        (proxy, server)
    }

    fn alice() -> Auth {
        Auth::parse("alice:pa:ss").unwrap()
    }

    fn target4() -> SocketAddr {
        "127.0.0.1:8080".parse().unwrap()
    }

    const OK_REPLY_V4: [u8; 10] = [5, 0, 0, 1, 127, 0, 0, 1, 0x1F, 0x90];

    #[test]
    fn messages_are_the_rfc_bytes() {
        assert_eq!(greeting(&Auth::None), [5, 1, 0]);
        assert_eq!(greeting(&alice()), [5, 1, 2]);
        assert_eq!(
            auth_request("alice", "pa:ss").unwrap(),
            b"\x01\x05alice\x05pa:ss"
        );
        assert_eq!(
            request(CONNECT, target4()),
            [5, 1, 0, 1, 127, 0, 0, 1, 0x1F, 0x90]
        );
        let v6: SocketAddr = "[::1]:443".parse().unwrap();
        let mut want = vec![5, 1, 0, 4];
        want.extend_from_slice(&[0; 15]);
        want.extend_from_slice(&[1, 0x01, 0xBB]);
        assert_eq!(request(CONNECT, v6), want);
    }

    #[test]
    fn credentials_must_fit_one_octet_lengths() {
        assert!(auth_request("", "x").is_err());
        assert!(auth_request("x", "").is_err());
        assert!(auth_request(&"u".repeat(256), "x").is_err());
        assert!(auth_request(&"u".repeat(255), &"p".repeat(255)).is_ok());
        assert_eq!(Auth::parse("nocolon"), None);
    }

    #[test]
    fn method_and_auth_answers() {
        assert!(check_method([5, 0], &Auth::None).is_ok());
        assert!(check_method([5, 2], &alice()).is_ok());
        assert!(matches!(
            check_method([5, 0xFF], &alice()),
            Err(DialError::NoAcceptableMethod)
        ));
        assert!(matches!(
            check_method([5, 0], &alice()),
            Err(DialError::Malformed(_))
        ));
        assert!(matches!(
            check_method([4, 2], &alice()),
            Err(DialError::Malformed(_))
        ));
        assert!(check_auth([1, 0]).is_ok());
        assert!(matches!(check_auth([1, 1]), Err(DialError::AuthFailed(1))));
        assert!(matches!(check_auth([5, 0]), Err(DialError::Malformed(_))));
    }

    #[test]
    fn replies_of_every_address_type() {
        assert_eq!(
            parse_reply(&OK_REPLY_V4).unwrap(),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        let mut v6 = vec![5, 0, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0, 80]);
        assert_eq!(parse_reply(&v6).unwrap(), Some("[::1]:80".parse().unwrap()));
        let name = b"\x05\x00\x00\x03\x09localhost\x00\x50";
        assert_eq!(
            reply_len(name[..5].try_into().unwrap()).unwrap(),
            name.len()
        );
        assert_eq!(parse_reply(name).unwrap(), None);
        assert!(matches!(
            parse_reply(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]),
            Err(DialError::Reply(5))
        ));
        assert!(matches!(
            reply_len([5, 0, 0, 9, 0]),
            Err(DialError::Malformed(_))
        ));
        assert!(matches!(
            parse_reply(&OK_REPLY_V4[..9]),
            Err(DialError::Malformed(_))
        ));
    }

    #[test]
    fn handshake_with_user_pass_at_every_split() {
        let mut answers = vec![5, 2, 1, 0];
        answers.extend_from_slice(&OK_REPLY_V4);
        for chunk in 1..=answers.len() {
            let mut s = Script::new(&answers, chunk);
            let bound = handshake(&mut s, &alice(), target4()).unwrap();
            assert_eq!(bound, Some("127.0.0.1:8080".parse().unwrap()));
            let mut sent = vec![5, 1, 2];
            sent.extend_from_slice(b"\x01\x05alice\x05pa:ss");
            sent.extend_from_slice(&request(CONNECT, target4()));
            assert_eq!(s.output, sent, "chunk {chunk}");
            // Nothing past the reply was read.
            assert_eq!(s.input.position() as usize, answers.len());
        }
    }

    #[test]
    fn handshake_without_auth_sends_no_credentials() {
        let mut answers = vec![5, 0];
        answers.extend_from_slice(&OK_REPLY_V4);
        answers.extend_from_slice(b"early data from the target");
        let mut s = Script::new(&answers, 64);
        handshake(&mut s, &Auth::None, target4()).unwrap();
        let mut sent = vec![5, 1, 0];
        sent.extend_from_slice(&request(CONNECT, target4()));
        assert_eq!(s.output, sent);
        // The bytes after the reply belong to the tunnel: still unread.
        assert_eq!(s.input.position() as usize, 2 + OK_REPLY_V4.len());
    }

    #[test]
    fn handshake_errors_are_named() {
        let cases: [(&[u8], &str); 6] = [
            (&[5, 0xFF], "method"),
            (&[5, 2, 1, 1], "auth"),
            (&[5, 2, 1, 0, 5, 5], "reply"),
            (&[5, 2, 1, 0, 5, 4, 0, 1, 0, 0, 0, 0, 0, 0], "reply"),
            (&[5, 2, 1], "eof"),
            (&[5, 2, 1, 0, 5, 0, 0], "eof"),
        ];
        for (answers, kind) in cases {
            let mut s = Script::new(answers, 3);
            let e = handshake(&mut s, &alice(), target4()).unwrap_err();
            assert_eq!(e.kind(), kind, "{answers:?}: {e}");
        }
    }

    /// The whole client over real loopback sockets, against a fake proxy
    /// that checks every byte and then acts as the target.
    #[test]
    fn route_opens_a_tunnel_through_a_proxy() {
        let (proxy, server) = fake_proxy(|mut c| {
            let mut b = [0u8; 3];
            c.read_exact(&mut b).unwrap();
            assert_eq!(b, [5, 1, 2]);
            c.write_all(&[5, 2]).unwrap();
            let mut a = [0u8; 13];
            c.read_exact(&mut a).unwrap();
            assert_eq!(&a, b"\x01\x05alice\x05pa:ss");
            c.write_all(&[1, 0]).unwrap();
            let mut r = [0u8; 10];
            c.read_exact(&mut r).unwrap();
            assert_eq!(r.to_vec(), request(CONNECT, target4()));
            c.write_all(&OK_REPLY_V4).unwrap();
            let mut ping = [0u8; 4];
            c.read_exact(&mut ping).unwrap();
            c.write_all(&ping).unwrap();
        });
        let route = Route::Socks {
            proxy,
            auth: alice(),
        };
        let mut t = route.open(target4(), Duration::from_secs(5)).unwrap();
        t.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        t.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
        server.join().unwrap();
    }

    /// Tunnels from a chosen loopback address arrive from it, and a refused
    /// connect from one is a connect error.
    #[test]
    fn open_from_connects_from_the_source_address() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = l.local_addr().unwrap();
        let source = Ipv4Addr::new(127, 0, 0, 7);
        let mut c = Route::Direct
            .open_from(source, to, Duration::from_secs(5))
            .unwrap();
        let (mut a, from) = l.accept().unwrap();
        assert_eq!(from.ip(), IpAddr::V4(source));
        assert_eq!(c.local_addr().unwrap().ip(), IpAddr::V4(source));
        c.write_all(b"hi").unwrap();
        let mut b = [0u8; 2];
        a.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hi");
        drop(l);
        let e = Route::Direct
            .open_from(source, to, Duration::from_secs(2))
            .unwrap_err();
        assert_eq!(e.kind(), "connect");
    }

    #[test]
    fn connection_refused_is_a_connect_error() {
        // Bind then drop: nothing listens on that port any more.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let route = Route::Socks {
            proxy: SocketAddr::from(([127, 0, 0, 1], port)),
            auth: Auth::None,
        };
        let e = route.open(target4(), Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.kind(), "connect");
    }

    #[test]
    fn udp_headers_are_the_rfc_bytes_and_read_back() {
        let h = udp_header(target4());
        assert_eq!(h, [0, 0, 0, 1, 127, 0, 0, 1, 0x1F, 0x90]);
        let mut d = h.clone();
        d.extend_from_slice(b"data");
        assert_eq!(parse_udp_header(&d), Ok((target4(), 10)));
        let v6: SocketAddr = "[::1]:53".parse().unwrap();
        let h6 = udp_header(v6);
        assert_eq!(h6.len(), 22);
        assert_eq!(parse_udp_header(&h6), Ok((v6, 22)));
        assert_eq!(
            request(UDP_ASSOCIATE, target4()),
            [5, 3, 0, 1, 127, 0, 0, 1, 0x1F, 0x90]
        );
    }

    #[test]
    fn bad_udp_headers_are_refused() {
        let ok = udp_header(target4());
        for cut in 0..ok.len() {
            assert!(parse_udp_header(&ok[..cut]).is_err(), "{cut} bytes");
        }
        let mut frag = ok.clone();
        frag[2] = 1;
        assert_eq!(parse_udp_header(&frag), Err("a fragment"));
        let mut rsv = ok.clone();
        rsv[1] = 1;
        assert_eq!(parse_udp_header(&rsv), Err("RSV not zero"));
        let mut domain = ok.clone();
        domain[3] = ATYP_DOMAIN;
        assert_eq!(parse_udp_header(&domain), Err("ATYP"));
    }

    #[test]
    fn an_unspecified_relay_address_is_the_proxys() {
        let proxy: SocketAddr = "127.0.0.5:1080".parse().unwrap();
        let zero: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        assert_eq!(
            relay_address(zero, proxy),
            "127.0.0.5:4000".parse().unwrap()
        );
        assert_eq!(relay_address(target4(), proxy), target4());
    }

    /// UDP ASSOCIATE over real loopback sockets against a fake proxy that
    /// checks every byte and answers with an all-zeros BND.ADDR.
    #[test]
    fn associate_sends_the_client_address_and_reads_the_relay() {
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let (proxy, server) = fake_proxy(move |mut c| {
            let mut b = [0u8; 3];
            c.read_exact(&mut b).unwrap();
            assert_eq!(b, [5, 1, 0]);
            c.write_all(&[5, 0]).unwrap();
            let mut r = [0u8; 10];
            c.read_exact(&mut r).unwrap();
            assert_eq!(r.to_vec(), request(UDP_ASSOCIATE, client));
            c.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0x0F, 0xA0]).unwrap();
            // Holds the control connection until the client closes it.
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).unwrap();
        });
        let a = associate(proxy, &Auth::None, client, Duration::from_secs(5)).unwrap();
        assert_eq!(a.relay, "127.0.0.1:4000".parse().unwrap());
        drop(a);
        server.join().unwrap();
    }

    #[test]
    fn a_refused_association_names_its_reply() {
        let (proxy, server) = fake_proxy(|mut c| {
            let mut b = [0u8; 3];
            c.read_exact(&mut b).unwrap();
            c.write_all(&[5, 0]).unwrap();
            let mut r = [0u8; 10];
            c.read_exact(&mut r).unwrap();
            // X'07': command not supported.
            c.write_all(&[5, 7, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
        });
        let e = associate(proxy, &Auth::None, target4(), Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), "reply");
        assert!(matches!(e, DialError::Reply(7)), "{e}");
        server.join().unwrap();
    }
}
