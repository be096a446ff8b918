//! RFC 1928 and RFC 1929 messages: parse and emit, with no I/O.
//!
//! Every parser takes the bytes received so far and answers like httparse:
//! `Ok(Status::Partial)` when the message is not complete yet,
//! `Ok(Status::Complete(msg, n))` with the `n` bytes it used, and `Err(..)` only
//! for input that can never become valid. A greeting split over three `recv()`
//! calls, one byte each, is the normal case.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The SOCKS protocol version, X'05' (RFC 1928 section 3).
pub const SOCKS_VERSION: u8 = 0x05;
/// The username/password sub-negotiation version, X'01' (RFC 1929 section 2).
pub const AUTH_VERSION: u8 = 0x01;

/// The longest reply `emit_reply` writes: VER REP RSV ATYP, 16 address bytes, port.
pub const MAX_REPLY_LEN: usize = 4 + 16 + 2;

/// Outcome of parsing a possibly incomplete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status<T> {
    /// More bytes are needed; nothing was consumed.
    Partial,
    /// A whole message, and how many bytes of the input it took.
    Complete(T, usize),
}

/// Input that can never become a valid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// VER is not the one this message requires.
    Version(u8),
    /// The request's ATYP is not IPv4, DOMAINNAME or IPv6 (reply X'08').
    AddressType(u8),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Version(v) => write!(f, "unsupported version X'{v:02X}'"),
            WireError::AddressType(a) => write!(f, "unsupported address type X'{a:02X}'"),
        }
    }
}

impl std::error::Error for WireError {}

/// Authentication methods (RFC 1928 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// X'00' NO AUTHENTICATION REQUIRED.
    NoAuth,
    /// X'01' GSSAPI.
    Gssapi,
    /// X'02' USERNAME/PASSWORD (RFC 1929).
    UsernamePassword,
    /// X'FF' NO ACCEPTABLE METHODS.
    NoAcceptable,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for Method {
    fn from(b: u8) -> Self {
        match b {
            0x00 => Method::NoAuth,
            0x01 => Method::Gssapi,
            0x02 => Method::UsernamePassword,
            0xFF => Method::NoAcceptable,
            other => Method::Unknown(other),
        }
    }
}

impl From<Method> for u8 {
    fn from(m: Method) -> u8 {
        match m {
            Method::NoAuth => 0x00,
            Method::Gssapi => 0x01,
            Method::UsernamePassword => 0x02,
            Method::NoAcceptable => 0xFF,
            Method::Unknown(b) => b,
        }
    }
}

/// The client's version identifier/method selection message.
///
/// ```text
/// +----+----------+----------+
/// |VER | NMETHODS | METHODS  |
/// +----+----------+----------+
/// | 1  |    1     | 1 to 255 |
/// +----+----------+----------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Greeting<'a> {
    /// The METHODS octets as sent.
    pub methods: &'a [u8],
}

impl<'a> Greeting<'a> {
    /// Parses a greeting. NMETHODS = 0 is accepted here and offers nothing.
    pub fn parse(buf: &'a [u8]) -> Result<Status<Self>, WireError> {
        let Some(&ver) = buf.first() else {
            return Ok(Status::Partial);
        };
        if ver != SOCKS_VERSION {
            return Err(WireError::Version(ver));
        }
        let Some(&n) = buf.get(1) else {
            return Ok(Status::Partial);
        };
        let end = 2 + n as usize;
        match buf.get(2..end) {
            Some(methods) => Ok(Status::Complete(Greeting { methods }, end)),
            None => Ok(Status::Partial),
        }
    }

    /// Whether the client offers `method`.
    pub fn offers(&self, method: Method) -> bool {
        let m = u8::from(method);
        self.methods.contains(&m)
    }

    /// Writes this greeting into `out`, returning the length.
    ///
    /// # Panics
    /// If `out` is shorter than `2 + methods.len()` or there are over 255 methods.
    pub fn emit(&self, out: &mut [u8]) -> usize {
        let n = u8::try_from(self.methods.len()).expect("at most 255 methods");
        out[0] = SOCKS_VERSION;
        out[1] = n;
        out[2..2 + self.methods.len()].copy_from_slice(self.methods);
        2 + self.methods.len()
    }
}

/// The server's METHOD selection message: VER, METHOD.
pub fn emit_method_selection(method: Method) -> [u8; 2] {
    [SOCKS_VERSION, method.into()]
}

/// The RFC 1929 username/password request.
///
/// ```text
/// +----+------+----------+------+----------+
/// |VER | ULEN |  UNAME   | PLEN |  PASSWD  |
/// +----+------+----------+------+----------+
/// | 1  |  1   | 1 to 255 |  1   | 1 to 255 |
/// +----+------+----------+------+----------+
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuthRequest<'a> {
    /// UNAME as sent (may be empty if the client sent ULEN = 0).
    pub username: &'a [u8],
    /// PASSWD as sent (may be empty if the client sent PLEN = 0).
    pub password: &'a [u8],
}

// Never print the password, not even in a debug log.
impl fmt::Debug for AuthRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRequest")
            .field("username", &String::from_utf8_lossy(self.username))
            .field("password", &"<redacted>")
            .finish()
    }
}

impl<'a> AuthRequest<'a> {
    /// Parses a username/password request.
    pub fn parse(buf: &'a [u8]) -> Result<Status<Self>, WireError> {
        let Some(&ver) = buf.first() else {
            return Ok(Status::Partial);
        };
        if ver != AUTH_VERSION {
            return Err(WireError::Version(ver));
        }
        let Some(&ulen) = buf.get(1) else {
            return Ok(Status::Partial);
        };
        let uend = 2 + ulen as usize;
        let Some(&plen) = buf.get(uend) else {
            return Ok(Status::Partial);
        };
        let pend = uend + 1 + plen as usize;
        if buf.len() < pend {
            return Ok(Status::Partial);
        }
        Ok(Status::Complete(
            AuthRequest {
                username: &buf[2..uend],
                password: &buf[uend + 1..pend],
            },
            pend,
        ))
    }

    /// Writes this request into `out`, returning the length.
    ///
    /// # Panics
    /// If `out` is too short or a field is longer than 255 bytes.
    pub fn emit(&self, out: &mut [u8]) -> usize {
        let ulen = u8::try_from(self.username.len()).expect("username of at most 255 bytes");
        let plen = u8::try_from(self.password.len()).expect("password of at most 255 bytes");
        let uend = 2 + ulen as usize;
        out[0] = AUTH_VERSION;
        out[1] = ulen;
        out[2..uend].copy_from_slice(self.username);
        out[uend] = plen;
        out[uend + 1..uend + 1 + plen as usize].copy_from_slice(self.password);
        uend + 1 + plen as usize
    }
}

/// The RFC 1929 status reply: VER X'01', STATUS (X'00' is success).
pub fn emit_auth_status(success: bool) -> [u8; 2] {
    [AUTH_VERSION, if success { 0x00 } else { 0x01 }]
}

/// Request commands (RFC 1928 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// X'01' CONNECT.
    Connect,
    /// X'02' BIND.
    Bind,
    /// X'03' UDP ASSOCIATE.
    UdpAssociate,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for Command {
    fn from(b: u8) -> Self {
        match b {
            0x01 => Command::Connect,
            0x02 => Command::Bind,
            0x03 => Command::UdpAssociate,
            other => Command::Unknown(other),
        }
    }
}

impl From<Command> for u8 {
    fn from(c: Command) -> u8 {
        match c {
            Command::Connect => 0x01,
            Command::Bind => 0x02,
            Command::UdpAssociate => 0x03,
            Command::Unknown(b) => b,
        }
    }
}

/// Address types (RFC 1928 section 5).
pub mod atyp {
    /// X'01' IP V4 address.
    pub const IPV4: u8 = 0x01;
    /// X'03' DOMAINNAME: one length octet, then the name.
    pub const DOMAINNAME: u8 = 0x03;
    /// X'04' IP V6 address.
    pub const IPV6: u8 = 0x04;
}

/// A request's DST.ADDR and DST.PORT, as the client asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetAddr {
    /// ATYP IPv4 or IPv6.
    Ip(SocketAddr),
    /// ATYP DOMAINNAME: the name's octets as sent (not necessarily UTF-8), and the port.
    Domain(Box<[u8]>, u16),
}

impl TargetAddr {
    /// The same address, borrowed.
    pub fn borrowed(&self) -> TargetRef<'_> {
        match self {
            TargetAddr::Ip(a) => TargetRef::Ip(*a),
            TargetAddr::Domain(name, port) => TargetRef::Domain(name, *port),
        }
    }

    /// The port asked for.
    pub fn port(&self) -> u16 {
        self.borrowed().port()
    }

    /// Bytes this address takes on the wire (ATYP, address, port).
    pub fn buffer_len(&self) -> usize {
        self.borrowed().buffer_len()
    }

    /// Writes ATYP, address and port into `out`, returning the length.
    ///
    /// # Panics
    /// If `out` is shorter than `buffer_len()` or a name is longer than 255 bytes.
    pub fn emit(&self, out: &mut [u8]) -> usize {
        self.borrowed().emit(out)
    }
}

impl From<TargetRef<'_>> for TargetAddr {
    fn from(addr: TargetRef<'_>) -> Self {
        match addr {
            TargetRef::Ip(a) => TargetAddr::Ip(a),
            TargetRef::Domain(name, port) => TargetAddr::Domain(name.into(), port),
        }
    }
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.borrowed().fmt(f)
    }
}

/// ATYP, DST.ADDR and DST.PORT borrowed from the bytes they were parsed
/// from: what a request and a UDP datagram's header (`socks5::udp`) both
/// carry, read without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetRef<'a> {
    /// ATYP IPv4 or IPv6.
    Ip(SocketAddr),
    /// ATYP DOMAINNAME: the name's octets as sent (not necessarily UTF-8), and the port.
    Domain(&'a [u8], u16),
}

impl<'a> TargetRef<'a> {
    /// Parses ATYP, address and port at the start of `buf`. An unknown ATYP
    /// is an error as soon as it is in.
    pub fn parse(buf: &'a [u8]) -> Result<Status<Self>, WireError> {
        let Some(&kind) = buf.first() else {
            return Ok(Status::Partial);
        };
        let (addr_end, name_start) = match kind {
            atyp::IPV4 => (1 + 4, 1),
            atyp::IPV6 => (1 + 16, 1),
            atyp::DOMAINNAME => match buf.get(1) {
                Some(&len) => (2 + len as usize, 2),
                None => return Ok(Status::Partial),
            },
            other => return Err(WireError::AddressType(other)),
        };
        let end = addr_end + 2;
        if buf.len() < end {
            return Ok(Status::Partial);
        }
        let port = u16::from_be_bytes([buf[addr_end], buf[addr_end + 1]]);
        let raw = &buf[name_start..addr_end];
        let addr = match kind {
            atyp::IPV4 => {
                let octets: [u8; 4] = raw.try_into().expect("4 bytes by construction");
                TargetRef::Ip(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(octets)), port))
            }
            atyp::IPV6 => {
                let octets: [u8; 16] = raw.try_into().expect("16 bytes by construction");
                TargetRef::Ip(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
            }
            _ => TargetRef::Domain(raw, port),
        };
        Ok(Status::Complete(addr, end))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            TargetRef::Ip(a) => a.port(),
            TargetRef::Domain(_, p) => *p,
        }
    }

    /// Bytes this address takes on the wire (ATYP, address, port).
    pub fn buffer_len(&self) -> usize {
        match self {
            TargetRef::Ip(SocketAddr::V4(_)) => 1 + 4 + 2,
            TargetRef::Ip(SocketAddr::V6(_)) => 1 + 16 + 2,
            TargetRef::Domain(name, _) => 1 + 1 + name.len() + 2,
        }
    }

    /// Writes ATYP, address and port into `out`, returning the length.
    ///
    /// # Panics
    /// If `out` is shorter than `buffer_len()` or a name is longer than 255 bytes.
    pub fn emit(&self, out: &mut [u8]) -> usize {
        let (n, port) = match self {
            TargetRef::Ip(SocketAddr::V4(a)) => {
                out[0] = atyp::IPV4;
                out[1..5].copy_from_slice(&a.ip().octets());
                (5, a.port())
            }
            TargetRef::Ip(SocketAddr::V6(a)) => {
                out[0] = atyp::IPV6;
                out[1..17].copy_from_slice(&a.ip().octets());
                (17, a.port())
            }
            TargetRef::Domain(name, port) => {
                out[0] = atyp::DOMAINNAME;
                out[1] = u8::try_from(name.len()).expect("a name of at most 255 bytes");
                out[2..2 + name.len()].copy_from_slice(name);
                (2 + name.len(), *port)
            }
        };
        out[n..n + 2].copy_from_slice(&port.to_be_bytes());
        n + 2
    }
}

impl fmt::Display for TargetRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetRef::Ip(a) => write!(f, "{a}"),
            TargetRef::Domain(name, port) => {
                // Names come from the network: print them escaped, never raw.
                for chunk in name.utf8_chunks() {
                    write_log_safe(f, chunk.valid())?;
                    for b in chunk.invalid() {
                        write!(f, "\\x{b:02x}")?;
                    }
                }
                write!(f, ":{port}")
            }
        }
    }
}

/// The IP address a DOMAINNAME names literally ("192.0.2.7", "2001:db8::9"
/// or "[2001:db8::9]"), which never goes to the resolver.
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    literal.parse().ok()
}

pub use crate::users::write_log_safe;

/// A SOCKS request.
///
/// ```text
/// +----+-----+-------+------+----------+----------+
/// |VER | CMD |  RSV  | ATYP | DST.ADDR | DST.PORT |
/// +----+-----+-------+------+----------+----------+
/// | 1  |  1  | X'00' |  1   | Variable |    2     |
/// +----+-----+-------+------+----------+----------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// CMD.
    pub command: Command,
    /// DST.ADDR and DST.PORT.
    pub target: TargetAddr,
}

impl Request {
    /// Parses a request. RSV is not checked: RFC 1928 only reserves it.
    pub fn parse(buf: &[u8]) -> Result<Status<Self>, WireError> {
        let Some(&ver) = buf.first() else {
            return Ok(Status::Partial);
        };
        if ver != SOCKS_VERSION {
            return Err(WireError::Version(ver));
        }
        if buf.len() < 3 {
            return Ok(Status::Partial);
        }
        let command = Command::from(buf[1]);
        match TargetRef::parse(&buf[3..])? {
            Status::Partial => Ok(Status::Partial),
            Status::Complete(target, n) => Ok(Status::Complete(
                Request {
                    command,
                    target: target.into(),
                },
                3 + n,
            )),
        }
    }

    /// Bytes this request takes on the wire.
    pub fn buffer_len(&self) -> usize {
        3 + self.target.buffer_len()
    }

    /// Writes this request into `out`, returning the length.
    ///
    /// # Panics
    /// If `out` is shorter than `buffer_len()`.
    pub fn emit(&self, out: &mut [u8]) -> usize {
        out[0] = SOCKS_VERSION;
        out[1] = self.command.into();
        out[2] = 0x00;
        3 + self.target.emit(&mut out[3..])
    }
}

/// Reply codes, the REP field (RFC 1928 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reply {
    /// X'00' succeeded.
    Succeeded,
    /// X'01' general SOCKS server failure.
    GeneralFailure,
    /// X'02' connection not allowed by ruleset.
    NotAllowed,
    /// X'03' Network unreachable.
    NetworkUnreachable,
    /// X'04' Host unreachable.
    HostUnreachable,
    /// X'05' Connection refused.
    ConnectionRefused,
    /// X'06' TTL expired.
    TtlExpired,
    /// X'07' Command not supported.
    CommandNotSupported,
    /// X'08' Address type not supported.
    AddressTypeNotSupported,
    /// X'09' to X'FF' unassigned.
    Unknown(u8),
}

impl From<u8> for Reply {
    fn from(b: u8) -> Self {
        match b {
            0x00 => Reply::Succeeded,
            0x01 => Reply::GeneralFailure,
            0x02 => Reply::NotAllowed,
            0x03 => Reply::NetworkUnreachable,
            0x04 => Reply::HostUnreachable,
            0x05 => Reply::ConnectionRefused,
            0x06 => Reply::TtlExpired,
            0x07 => Reply::CommandNotSupported,
            0x08 => Reply::AddressTypeNotSupported,
            other => Reply::Unknown(other),
        }
    }
}

impl From<Reply> for u8 {
    fn from(r: Reply) -> u8 {
        match r {
            Reply::Succeeded => 0x00,
            Reply::GeneralFailure => 0x01,
            Reply::NotAllowed => 0x02,
            Reply::NetworkUnreachable => 0x03,
            Reply::HostUnreachable => 0x04,
            Reply::ConnectionRefused => 0x05,
            Reply::TtlExpired => 0x06,
            Reply::CommandNotSupported => 0x07,
            Reply::AddressTypeNotSupported => 0x08,
            Reply::Unknown(b) => b,
        }
    }
}

/// Writes a reply with BND.ADDR and BND.PORT from `bound` into `out`.
///
/// Failure replies carry the unspecified IPv4 address and port 0.
///
/// # Panics
/// If `out` is shorter than `MAX_REPLY_LEN`.
pub fn emit_reply(reply: Reply, bound: SocketAddr, out: &mut [u8]) -> usize {
    out[0] = SOCKS_VERSION;
    out[1] = reply.into();
    out[2] = 0x00;
    3 + TargetAddr::Ip(bound).emit(&mut out[3..])
}

/// A parsed server reply, as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyMessage {
    /// REP.
    pub reply: Reply,
    /// BND.ADDR and BND.PORT.
    pub bound: TargetAddr,
}

impl ReplyMessage {
    /// Parses a reply (the client side of `emit_reply`).
    pub fn parse(buf: &[u8]) -> Result<Status<Self>, WireError> {
        // A reply has the request's layout, with REP where CMD stands.
        match Request::parse(buf)? {
            Status::Partial => Ok(Status::Partial),
            Status::Complete(req, n) => Ok(Status::Complete(
                ReplyMessage {
                    reply: Reply::from(u8::from(req.command)),
                    bound: req.target,
                },
                n,
            )),
        }
    }
}

/// The unspecified address used as BND in failure replies.
pub const UNSPECIFIED: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

#[cfg(test)]
#[path = "wire_tests.rs"]
pub(crate) mod tests;
