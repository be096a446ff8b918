//! The PROXY protocol header, versions 1 and 2 (HAProxy's "The PROXY
//! protocol, Versions 1 & 2"), that a layer-4 balancer sends before the
//! client's own bytes to tell the client's address: parsed, with no I/O.
//!
//! [`parse`] takes the bytes received so far and answers like the parsers of
//! [`super::wire`]: [`Parse::Incomplete`] while the header may still become
//! valid, [`Parse::Complete`] with the bytes it used (what follows is the
//! client's, usually its SOCKS greeting in the same segment), or
//! [`Parse::Invalid`] for input that can never become a valid header. An
//! answer other than `Incomplete` depends only on the bytes it looked at:
//! more bytes never change it, so a header cut anywhere, one byte per read
//! included, gives the answer the whole header gives.
//!
//! What is accepted:
//!
//! - version 1: `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n`, at most 107
//!   bytes. Addresses must be of the family named (IPv4 as four decimal
//!   numbers without leading zeros; IPv6 as `std` reads it, which takes
//!   what inet_ntop writes, `::ffff:192.0.2.1` included), ports decimal
//!   from 0 to 65535 without a sign or a leading zero, fields separated by
//!   exactly one space, the line ended by CR LF (a CR or LF alone is
//!   invalid). `PROXY UNKNOWN` with anything up to the CR LF is valid and
//!   carries no address.
//! - version 2: the 12-byte signature, version 2, command LOCAL (the
//!   balancer's own connection, a health check: no address, whatever the
//!   family says) or PROXY. PROXY over TCP (STREAM) with AF_INET or AF_INET6
//!   carries the addresses; every other valid family and transport (AF_UNSPEC,
//!   AF_UNIX, DGRAM, UNSPEC) falls back to the connection's real endpoints,
//!   as the specification asks of a receiver that does not support them.
//!   Unassigned commands, families and transports are invalid, and so is an
//!   address block too short for its family. TLVs after the addresses are
//!   skipped, not read.
//!
//! A header may be at most [`MAX_HEADER_LEN`] bytes: the most a balancer's
//! connection holds before it has said who its client is.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The most bytes a header may have, version 2's TLVs included. A version 2
/// header is 16 bytes, 12 or 36 of addresses and its TLVs; HAProxy's own,
/// with every TLV it can send (ALPN, authority, unique id of at most 128
/// bytes, the TLS ones, CRC32C, namespace), stay under 800, and the
/// cloud balancers' single TLV (an endpoint id) adds tens of bytes. 2 KiB
/// leaves room for custom TLVs while bounding what a balancer's connection
/// makes socks5d hold before its header is complete; a longer one is
/// refused from its 16th byte, before it is buffered.
pub const MAX_HEADER_LEN: usize = 2048;

/// Version 1's longest line, CR LF included (`PROXY UNKNOWN` with two IPv6
/// addresses and ports).
pub const V1_MAX_LEN: usize = 107;

/// What starts a version 1 header.
const V1_PREFIX: &[u8] = b"PROXY ";

/// The 12 bytes that start a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Version 2's fixed part: signature, version and command, family and
/// transport, length.
const V2_FIXED: usize = 16;

/// What [`parse`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// More bytes are needed: every prefix of a valid header says this.
    Incomplete,
    /// A whole header, `consumed` bytes long; the bytes after it are the
    /// client's.
    Complete {
        /// The header's length.
        consumed: usize,
        /// What it says.
        header: Header,
    },
    /// Never a valid header, whatever follows.
    Invalid(Invalid),
}

/// What a valid header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The balancer relays a client's TCP connection: its addresses.
    Proxy {
        /// The client's address and port.
        source: SocketAddr,
        /// The address and port the client connected to (the balancer's).
        destination: SocketAddr,
    },
    /// Version 2 LOCAL: the balancer's own connection (a health check); the
    /// connection's real endpoints apply.
    Local,
    /// Version 1 UNKNOWN, or version 2 PROXY for a family or transport other
    /// than TCP over IPv4 or IPv6: the connection's real endpoints apply.
    Unknown,
}

impl Header {
    /// The client's address the header carries, if it carries one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            Header::Proxy { source, .. } => Some(*source),
            Header::Local | Header::Unknown => None,
        }
    }
}

/// Why bytes are not a PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Neither `PROXY ` nor version 2's signature: no header at all (a
    /// SOCKS greeting, say).
    Signature,
    /// Version 1: the protocol is not TCP4, TCP6 or UNKNOWN.
    V1Protocol,
    /// Version 1: not five fields separated by single spaces.
    V1Fields,
    /// Version 1: an address that is not one of the protocol's family.
    V1Address,
    /// Version 1: a port that is not a decimal number from 0 to 65535
    /// without a leading zero.
    V1Port,
    /// Version 1: a CR or an LF alone.
    V1LineEnd,
    /// Version 1: no CR LF within 107 bytes.
    V1TooLong,
    /// Version 2: a version other than 2.
    V2Version,
    /// Version 2: a command other than LOCAL and PROXY.
    V2Command,
    /// Version 2: an unassigned address family or transport.
    V2Family,
    /// Version 2: fewer address bytes than the family needs.
    V2AddressLength,
    /// Version 2: longer than [`MAX_HEADER_LEN`].
    V2TooLong,
}

impl Invalid {
    /// The reason as one token of a log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::Signature => "no-signature",
            Invalid::V1Protocol => "v1-protocol",
            Invalid::V1Fields => "v1-fields",
            Invalid::V1Address => "v1-address",
            Invalid::V1Port => "v1-port",
            Invalid::V1LineEnd => "v1-line-end",
            Invalid::V1TooLong => "v1-too-long",
            Invalid::V2Version => "v2-version",
            Invalid::V2Command => "v2-command",
            Invalid::V2Family => "v2-family",
            Invalid::V2AddressLength => "v2-address-length",
            Invalid::V2TooLong => "v2-too-long",
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses the PROXY protocol header at the start of `buf`, the bytes
/// received so far.
pub fn parse(buf: &[u8]) -> Parse {
    match buf.first() {
        None => Parse::Incomplete,
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Parse::Invalid(Invalid::Signature),
    }
}

/// Whether `buf` starts like a PROXY protocol header (`PROXY ` or version
/// 2's signature): how a header sent where none is expected is told from
/// other bad input.
pub fn starts_like_header(buf: &[u8]) -> bool {
    buf.starts_with(V1_PREFIX) || buf.starts_with(&V2_SIGNATURE)
}

/// `Invalid(Signature)` when `buf` leaves `sig`, `Incomplete` when it is
/// a strict prefix of it, `None` when it holds all of it.
fn signature(buf: &[u8], sig: &[u8]) -> Option<Parse> {
    let n = buf.len().min(sig.len());
    if buf[..n] != sig[..n] {
        return Some(Parse::Invalid(Invalid::Signature));
    }
    (n < sig.len()).then_some(Parse::Incomplete)
}

// ---------------------------------------------------------------- version 1

fn parse_v1(buf: &[u8]) -> Parse {
    if let Some(p) = signature(buf, V1_PREFIX) {
        return p;
    }
    // The CR of the CR LF may be at most at V1_MAX_LEN - 2. Every check
    // below looks at the bytes in order, so an answer found in a prefix is
    // the answer of every longer input.
    let scan = buf.len().min(V1_MAX_LEN - 1);
    for i in V1_PREFIX.len()..scan {
        match buf[i] {
            b'\r' => {
                return match buf.get(i + 1) {
                    None => Parse::Incomplete,
                    Some(b'\n') => match v1_line(&buf[V1_PREFIX.len()..i]) {
                        Ok(header) => Parse::Complete {
                            consumed: i + 2,
                            header,
                        },
                        Err(e) => Parse::Invalid(e),
                    },
                    Some(_) => Parse::Invalid(Invalid::V1LineEnd),
                };
            }
            b'\n' => return Parse::Invalid(Invalid::V1LineEnd),
            _ => {}
        }
    }
    if scan == V1_MAX_LEN - 1 {
        Parse::Invalid(Invalid::V1TooLong)
    } else {
        Parse::Incomplete
    }
}

/// The line after `PROXY `, without its CR LF.
fn v1_line(line: &[u8]) -> Result<Header, Invalid> {
    if line == b"UNKNOWN" || line.starts_with(b"UNKNOWN ") {
        // "the receiver must ignore anything presented before the CRLF".
        return Ok(Header::Unknown);
    }
    let mut fields = line.split(|&b| b == b' ');
    let v6 = match fields.next() {
        Some(b"TCP4") => false,
        Some(b"TCP6") => true,
        _ => return Err(Invalid::V1Protocol),
    };
    let mut next = || {
        fields
            .next()
            .filter(|f| !f.is_empty())
            .ok_or(Invalid::V1Fields)
    };
    let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
    if fields.next().is_some() {
        return Err(Invalid::V1Fields);
    }
    let (src, dst) = (v1_address(src, v6)?, v1_address(dst, v6)?);
    let (sport, dport) = (v1_port(sport)?, v1_port(dport)?);
    Ok(Header::Proxy {
        source: SocketAddr::new(src, sport),
        destination: SocketAddr::new(dst, dport),
    })
}

fn v1_address(field: &[u8], v6: bool) -> Result<IpAddr, Invalid> {
    let text = std::str::from_utf8(field).map_err(|_| Invalid::V1Address)?;
    if v6 {
        // Only hexadecimal digits, colons and an embedded dotted quad: no
        // zone, no brackets.
        return text
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| Invalid::V1Address);
    }
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for o in &mut octets {
        *o = parts
            .next()
            .and_then(|p| decimal(p.as_bytes(), 3))
            .and_then(|n| u8::try_from(n).ok())
            .ok_or(Invalid::V1Address)?;
    }
    if parts.next().is_some() {
        return Err(Invalid::V1Address);
    }
    Ok(IpAddr::V4(Ipv4Addr::from(octets)))
}

fn v1_port(field: &[u8]) -> Result<u16, Invalid> {
    decimal(field, 5)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or(Invalid::V1Port)
}

/// A decimal number of 1 to `max_digits` digits, without a sign or a
/// leading zero ("0" itself is fine).
fn decimal(digits: &[u8], max_digits: usize) -> Option<u32> {
    if digits.is_empty()
        || digits.len() > max_digits
        || (digits.len() > 1 && digits[0] == b'0')
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

// ---------------------------------------------------------------- version 2

/// Version 2's commands.
const LOCAL: u8 = 0x0;
const PROXY: u8 = 0x1;
/// Its address families.
const AF_UNSPEC: u8 = 0x0;
const AF_INET: u8 = 0x1;
const AF_INET6: u8 = 0x2;
const AF_UNIX: u8 = 0x3;
/// Its transports.
const UNSPEC: u8 = 0x0;
const STREAM: u8 = 0x1;
const DGRAM: u8 = 0x2;

fn parse_v2(buf: &[u8]) -> Parse {
    if let Some(p) = signature(buf, &V2_SIGNATURE) {
        return p;
    }
    let Some(&ver_cmd) = buf.get(12) else {
        return Parse::Incomplete;
    };
    if ver_cmd >> 4 != 2 {
        return Parse::Invalid(Invalid::V2Version);
    }
    let command = ver_cmd & 0x0F;
    if command != LOCAL && command != PROXY {
        return Parse::Invalid(Invalid::V2Command);
    }
    let Some(&fam) = buf.get(13) else {
        return Parse::Incomplete;
    };
    let (family, transport) = (fam >> 4, fam & 0x0F);
    if family > AF_UNIX || transport > DGRAM {
        return Parse::Invalid(Invalid::V2Family);
    }
    let Some(len) = buf.get(14..16) else {
        return Parse::Incomplete;
    };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let total = V2_FIXED + len;
    if total > MAX_HEADER_LEN {
        return Parse::Invalid(Invalid::V2TooLong);
    }
    // LOCAL ignores the family and whatever address block comes with it.
    let needed = match (family, transport) {
        _ if command == LOCAL => 0,
        (AF_UNSPEC, _) | (_, UNSPEC) => 0,
        (AF_INET, _) => 12,
        (AF_INET6, _) => 36,
        _ => 216,
    };
    if len < needed {
        return Parse::Invalid(Invalid::V2AddressLength);
    }
    let Some(block) = buf.get(V2_FIXED..total) else {
        return Parse::Incomplete;
    };
    let header = match (command, family, transport) {
        (PROXY, AF_INET, STREAM) => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    block[at],
                    block[at + 1],
                    block[at + 2],
                    block[at + 3],
                ))
            };
            let (src, dst) = (ip(0), ip(4));
            Header::Proxy {
                source: SocketAddr::new(src, port(block, 8)),
                destination: SocketAddr::new(dst, port(block, 10)),
            }
        }
        (PROXY, AF_INET6, STREAM) => {
            let ip = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&block[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            let (src, dst) = (ip(0), ip(16));
            Header::Proxy {
                source: SocketAddr::new(src, port(block, 32)),
                destination: SocketAddr::new(dst, port(block, 34)),
            }
        }
        (PROXY, _, _) => Header::Unknown,
        _ => Header::Local,
    };
    Parse::Complete {
        consumed: total,
        header,
    }
}

fn port(block: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([block[at], block[at + 1]])
}

/// Writes a version 2 PROXY header for a TCP connection from `source` to
/// `destination` (both of one family) into `out`; returns its length, 28
/// or 52 bytes. For tests, benchmarks and fuzzing: socks5d never sends one.
///
/// # Panics
/// If the families differ or `out` is too short.
pub fn emit_v2(source: SocketAddr, destination: SocketAddr, out: &mut [u8]) -> usize {
    out[..12].copy_from_slice(&V2_SIGNATURE);
    out[12] = 0x20 | PROXY;
    let n = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out[13] = (AF_INET << 4) | STREAM;
            out[16..20].copy_from_slice(&s.octets());
            out[20..24].copy_from_slice(&d.octets());
            24
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out[13] = (AF_INET6 << 4) | STREAM;
            out[16..32].copy_from_slice(&s.octets());
            out[32..48].copy_from_slice(&d.octets());
            48
        }
        _ => panic!("a PROXY header's addresses are of one family"),
    };
    out[n..n + 2].copy_from_slice(&source.port().to_be_bytes());
    out[n + 2..n + 4].copy_from_slice(&destination.port().to_be_bytes());
    let len = (n + 4 - V2_FIXED) as u16;
    out[14..16].copy_from_slice(&len.to_be_bytes());
    n + 4
}

#[cfg(test)]
#[path = "proxy_protocol_tests.rs"]
mod tests;
