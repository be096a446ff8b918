//! Byte fixtures for every RFC 1928 / RFC 1929 message: parse, emit, every
//! split point, every error.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use super::*;

// ---------------------------------------------------------------- fixtures

/// Greeting: VER 5, NMETHODS 1, X'00'.
pub(crate) const GREETING_NO_AUTH: &[u8] = &[0x05, 0x01, 0x00];
/// Greeting: VER 5, NMETHODS 2, X'00' and X'02'.
pub(crate) const GREETING_BOTH: &[u8] = &[0x05, 0x02, 0x00, 0x02];
/// Greeting: VER 5, NMETHODS 3, GSSAPI, USERNAME/PASSWORD and an unassigned X'80'.
const GREETING_THREE: &[u8] = &[0x05, 0x03, 0x01, 0x02, 0x80];
/// Greeting: VER 5, NMETHODS 0.
pub(crate) const GREETING_NONE: &[u8] = &[0x05, 0x00];

/// Auth request: VER 1, "alice" / "secret".
pub(crate) const AUTH_ALICE: &[u8] = b"\x01\x05alice\x06secret";
/// Auth request: VER 1, ULEN 0, PLEN 0.
pub(crate) const AUTH_EMPTY: &[u8] = &[0x01, 0x00, 0x00];
/// Auth request: ULEN 0, password "p".
const AUTH_NO_USER: &[u8] = &[0x01, 0x00, 0x01, b'p'];
/// Auth request: user "u", PLEN 0.
const AUTH_NO_PASSWORD: &[u8] = &[0x01, 0x01, b'u', 0x00];

/// CONNECT 192.0.2.10:80.
pub(crate) const REQUEST_IPV4: &[u8] = &[0x05, 0x01, 0x00, 0x01, 192, 0, 2, 10, 0x00, 0x50];
/// CONNECT example.com:443.
pub(crate) const REQUEST_DOMAIN: &[u8] = b"\x05\x01\x00\x03\x0bexample.com\x01\xbb";
/// CONNECT [2001:db8::1]:8080.
pub(crate) const REQUEST_IPV6: &[u8] = &[
    0x05, 0x01, 0x00, 0x04, //
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, //
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
    0x1f, 0x90,
];

/// The unspecified IPv4 BND of a failure reply: X'01', 0.0.0.0, port 0.
const BND_UNSPECIFIED: &[u8] = &[0x01, 0, 0, 0, 0, 0x00, 0x00];
/// BND 203.0.113.5:1080.
const BND_IPV4: &[u8] = &[0x01, 203, 0, 113, 5, 0x04, 0x38];
/// BND [2001:db8::5]:1080.
const BND_IPV6: &[u8] = &[
    0x04, //
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, //
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, //
    0x04, 0x38,
];

fn bnd_ipv4() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 5), 1080))
}

fn bnd_ipv6() -> SocketAddr {
    let ip = Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 5);
    SocketAddr::V6(SocketAddrV6::new(ip, 1080, 0, 0))
}

pub(crate) fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// ----------------------------------------------------------------- helpers

pub(crate) type Parsed<T> = Result<Status<T>, WireError>;

/// Makes a borrowed message owned, so one helper can drive every parser.
pub(crate) fn owned<T, U>(r: Parsed<T>, f: impl FnOnce(T) -> U) -> Parsed<U> {
    r.map(|s| match s {
        Status::Partial => Status::Partial,
        Status::Complete(m, n) => Status::Complete(f(m), n),
    })
}

fn parse_greeting(buf: &[u8]) -> Parsed<Vec<u8>> {
    owned(Greeting::parse(buf), |g| g.methods.to_vec())
}

fn parse_auth(buf: &[u8]) -> Parsed<(Vec<u8>, Vec<u8>)> {
    owned(AuthRequest::parse(buf), |a| {
        (a.username.to_vec(), a.password.to_vec())
    })
}

/// The parse contract on one whole message: Complete with its length; Partial
/// for every strict prefix, the empty one included; and trailing bytes (a
/// second message, early payload) left alone.
pub(crate) fn check_parse<T>(fixture: &[u8], parse: impl Fn(&[u8]) -> Parsed<T>, expected: T)
where
    T: Clone + fmt::Debug + PartialEq,
{
    let len = fixture.len();
    assert_eq!(
        parse(fixture),
        Ok(Status::Complete(expected.clone(), len)),
        "whole fixture {fixture:02x?}"
    );
    for cut in 0..len {
        assert_eq!(
            parse(&fixture[..cut]),
            Ok(Status::Partial),
            "prefix of {cut} bytes of {fixture:02x?}"
        );
    }
    let trailers: [&[u8]; 4] = [&[0x00], &[0x05, 0x01, 0x00], &[0xFF; 300], fixture];
    for trailer in trailers {
        let buf = cat(&[fixture, trailer]);
        assert_eq!(
            parse(&buf),
            Ok(Status::Complete(expected.clone(), len)),
            "{fixture:02x?} followed by {} more bytes",
            trailer.len()
        );
    }
}

/// The emit contract: exactly the fixture's bytes, nothing written past them,
/// and no more room needed than the fixture's length.
pub(crate) fn check_emit(fixture: &[u8], emit: impl Fn(&mut [u8]) -> usize) {
    let mut out = [0xEE; 600];
    let n = emit(&mut out);
    assert_eq!(&out[..n], fixture);
    assert!(out[n..].iter().all(|&b| b == 0xEE), "wrote past {n} bytes");
    let mut exact = vec![0xEE; fixture.len()];
    assert_eq!(emit(&mut exact), fixture.len());
    assert_eq!(exact, fixture);
}

/// Every non-empty prefix of `bad` (and `bad` with trailing bytes) is `err`:
/// the error is reported as soon as the offending byte is in.
pub(crate) fn check_error_from<T>(
    bad: &[u8],
    at: usize,
    parse: impl Fn(&[u8]) -> Parsed<T>,
    err: WireError,
) where
    T: fmt::Debug + PartialEq,
{
    for cut in 0..at {
        assert_eq!(
            parse(&bad[..cut]),
            Ok(Status::Partial),
            "prefix of {cut} bytes of {bad:02x?}"
        );
    }
    for cut in at..=bad.len() {
        assert_eq!(
            parse(&bad[..cut]),
            Err(err),
            "prefix of {cut} bytes of {bad:02x?}"
        );
    }
    assert_eq!(parse(&cat(&[bad, &[0u8; 64]])), Err(err));
}

/// Formats with `write_log_safe`, which needs a `Formatter`.
struct LogSafe<'a>(&'a str);

impl fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_log_safe(f, self.0)
    }
}

fn log_safe(s: &str) -> String {
    LogSafe(s).to_string()
}

// ---------------------------------------------------------------- greeting

#[test]
fn greeting_fixtures_parse_and_emit() {
    let cases: [(&[u8], &[u8]); 4] = [
        (GREETING_NO_AUTH, &[0x00]),
        (GREETING_BOTH, &[0x00, 0x02]),
        (GREETING_THREE, &[0x01, 0x02, 0x80]),
        (GREETING_NONE, &[]),
    ];
    for (fixture, methods) in cases {
        check_parse(fixture, parse_greeting, methods.to_vec());
        check_emit(fixture, |out| Greeting { methods }.emit(out));
    }
}

#[test]
fn greeting_with_255_methods() {
    let methods: Vec<u8> = (0..=254).collect();
    let fixture = cat(&[&[0x05, 0xFF], &methods]);
    assert_eq!(fixture.len(), 257);
    check_parse(&fixture, parse_greeting, methods.clone());
    check_emit(&fixture, |out| Greeting { methods: &methods }.emit(out));
}

#[test]
fn greeting_nmethods_zero_offers_nothing() {
    let Ok(Status::Complete(g, 2)) = Greeting::parse(GREETING_NONE) else {
        panic!("NMETHODS = 0 must parse as a complete, empty greeting");
    };
    assert!(g.methods.is_empty());
    for m in [0x00, 0x01, 0x02, 0x03, 0x80, 0xFF] {
        assert!(!g.offers(Method::from(m)), "offers X'{m:02X}'");
    }
}

#[test]
fn greeting_offers_exactly_its_methods() {
    let Ok(Status::Complete(g, _)) = Greeting::parse(GREETING_THREE) else {
        panic!("fixture must parse");
    };
    assert!(g.offers(Method::Gssapi));
    assert!(g.offers(Method::UsernamePassword));
    assert!(g.offers(Method::Unknown(0x80)));
    assert!(!g.offers(Method::NoAuth));
    assert!(!g.offers(Method::NoAcceptable));
    assert!(!g.offers(Method::Unknown(0x81)));
}

#[test]
fn greeting_wrong_version_is_an_error_from_the_first_byte() {
    // X'04' is a SOCKS4 client's CONNECT: 04 01 port ip userid NUL.
    let socks4 = [0x04, 0x01, 0x00, 0x50, 127, 0, 0, 1, 0x00];
    check_error_from(&socks4, 1, parse_greeting, WireError::Version(0x04));
    for v in [0x00, 0x01, 0x06, 0xFF] {
        check_error_from(&[v, 0x01, 0x00], 1, parse_greeting, WireError::Version(v));
    }
}

#[test]
fn method_selection_bytes() {
    assert_eq!(emit_method_selection(Method::NoAuth), [0x05, 0x00]);
    assert_eq!(emit_method_selection(Method::Gssapi), [0x05, 0x01]);
    assert_eq!(
        emit_method_selection(Method::UsernamePassword),
        [0x05, 0x02]
    );
    assert_eq!(emit_method_selection(Method::NoAcceptable), [0x05, 0xFF]);
    assert_eq!(emit_method_selection(Method::Unknown(0x7F)), [0x05, 0x7F]);
}

#[test]
fn method_codes() {
    assert_eq!(Method::from(0x00), Method::NoAuth);
    assert_eq!(Method::from(0x01), Method::Gssapi);
    assert_eq!(Method::from(0x02), Method::UsernamePassword);
    assert_eq!(Method::from(0x03), Method::Unknown(0x03));
    assert_eq!(Method::from(0xFF), Method::NoAcceptable);
    for b in 0..=255u8 {
        assert_eq!(u8::from(Method::from(b)), b);
    }
}

// ------------------------------------------------------------ auth request

#[test]
fn auth_fixtures_parse_and_emit() {
    let cases: [(&[u8], &[u8], &[u8]); 4] = [
        (AUTH_ALICE, b"alice", b"secret"),
        (AUTH_EMPTY, b"", b""),
        (AUTH_NO_USER, b"", b"p"),
        (AUTH_NO_PASSWORD, b"u", b""),
    ];
    for (fixture, username, password) in cases {
        check_parse(fixture, parse_auth, (username.to_vec(), password.to_vec()));
        let req = AuthRequest { username, password };
        check_emit(fixture, |out| req.emit(out));
    }
}

#[test]
fn auth_with_255_byte_fields() {
    let username = [b'u'; 255];
    let password = [0x00; 255]; // any octet is allowed on the wire
    let fixture = cat(&[&[0x01, 0xFF], &username, &[0xFF], &password]);
    assert_eq!(fixture.len(), 513);
    check_parse(&fixture, parse_auth, (username.to_vec(), password.to_vec()));
    let req = AuthRequest {
        username: &username,
        password: &password,
    };
    check_emit(&fixture, |out| req.emit(out));
}

#[test]
fn auth_wrong_version_is_an_error_from_the_first_byte() {
    // A client that repeats the SOCKS VER X'05' here is the usual mistake.
    let bad = cat(&[&[0x05], &AUTH_ALICE[1..]]);
    check_error_from(&bad, 1, parse_auth, WireError::Version(0x05));
    for v in [0x00, 0x02, 0xFF] {
        check_error_from(&[v, 0x00, 0x00], 1, parse_auth, WireError::Version(v));
    }
}

#[test]
fn auth_status_bytes() {
    assert_eq!(emit_auth_status(true), [0x01, 0x00]);
    assert_eq!(emit_auth_status(false), [0x01, 0x01]);
}

#[test]
fn auth_request_debug_never_shows_the_password() {
    let req = AuthRequest {
        username: b"alice",
        password: b"hunter2",
    };
    for text in [format!("{req:?}"), format!("{req:#?}")] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
        assert!(text.contains("alice"), "{text}");
    }
    // The same for a parsed request.
    let Ok(Status::Complete(parsed, _)) = AuthRequest::parse(AUTH_ALICE) else {
        panic!("fixture must parse");
    };
    let text = format!("{parsed:?}");
    assert!(!text.contains("secret"), "{text}");
}

// ----------------------------------------------------------------- request

fn connect(target: TargetAddr) -> Request {
    Request {
        command: Command::Connect,
        target,
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> TargetAddr {
    TargetAddr::Ip(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(a, b, c, d),
        port,
    )))
}

fn domain(name: &[u8], port: u16) -> TargetAddr {
    TargetAddr::Domain(name.into(), port)
}

/// Parse, emit and `buffer_len` of one request fixture.
fn check_request(fixture: &[u8], req: Request) {
    check_parse(fixture, Request::parse, req.clone());
    check_emit(fixture, |out| req.emit(out));
    assert_eq!(req.buffer_len(), fixture.len());
    assert_eq!(req.target.buffer_len(), fixture.len() - 3);
    check_emit(&fixture[3..], |out| req.target.emit(out));
}

#[test]
fn request_ipv4() {
    check_request(REQUEST_IPV4, connect(v4(192, 0, 2, 10, 80)));
}

#[test]
fn request_domainname() {
    check_request(REQUEST_DOMAIN, connect(domain(b"example.com", 443)));
}

#[test]
fn request_ipv6() {
    let ip = Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 1);
    let target = TargetAddr::Ip(SocketAddr::V6(SocketAddrV6::new(ip, 8080, 0, 0)));
    check_request(REQUEST_IPV6, connect(target));
}

#[test]
fn request_every_command_parses() {
    for (cmd, command) in [
        (0x01, Command::Connect),
        (0x02, Command::Bind),
        (0x03, Command::UdpAssociate),
        (0x00, Command::Unknown(0x00)),
        (0x04, Command::Unknown(0x04)),
        (0xFF, Command::Unknown(0xFF)),
    ] {
        let fixture = cat(&[&[0x05, cmd], &REQUEST_IPV4[2..]]);
        let req = Request {
            command,
            target: v4(192, 0, 2, 10, 80),
        };
        check_request(&fixture, req);
    }
}

#[test]
fn command_codes() {
    for b in 0..=255u8 {
        assert_eq!(u8::from(Command::from(b)), b);
    }
}

#[test]
fn request_ports_0_and_65535() {
    let lo = [0x05, 0x01, 0x00, 0x01, 10, 0, 0, 1, 0x00, 0x00];
    check_request(&lo, connect(v4(10, 0, 0, 1, 0)));
    let hi = [0x05, 0x01, 0x00, 0x01, 10, 0, 0, 1, 0xFF, 0xFF];
    check_request(&hi, connect(v4(10, 0, 0, 1, 65535)));
    let hi_name = b"\x05\x01\x00\x03\x01a\xff\xff";
    check_request(hi_name, connect(domain(b"a", 65535)));
    assert_eq!(domain(b"a", 65535).port(), 65535);
    assert_eq!(v4(10, 0, 0, 1, 0).port(), 0);
}

#[test]
fn request_port_is_big_endian() {
    // 0x1234 must not come out as 0x3412.
    let fixture = [0x05, 0x01, 0x00, 0x01, 10, 0, 0, 1, 0x12, 0x34];
    check_request(&fixture, connect(v4(10, 0, 0, 1, 0x1234)));
}

#[test]
fn request_domain_of_length_0() {
    let fixture = [0x05, 0x01, 0x00, 0x03, 0x00, 0x00, 0x50];
    check_request(&fixture, connect(domain(b"", 80)));
}

#[test]
fn request_domain_of_length_255() {
    let name = [b'a'; 255];
    let fixture = cat(&[&[0x05, 0x01, 0x00, 0x03, 0xFF], &name, &[0x01, 0xBB]]);
    assert_eq!(fixture.len(), 262);
    check_request(&fixture, connect(domain(&name, 443)));
}

#[test]
fn request_rsv_is_not_checked() {
    let mut fixture = REQUEST_IPV4.to_vec();
    fixture[2] = 0xAA;
    assert_eq!(
        Request::parse(&fixture),
        Ok(Status::Complete(
            connect(v4(192, 0, 2, 10, 80)),
            REQUEST_IPV4.len()
        ))
    );
}

#[test]
fn request_wrong_version_is_an_error_from_the_first_byte() {
    for v in [0x04, 0x00, 0x01, 0x06, 0xFF] {
        let bad = cat(&[&[v], &REQUEST_DOMAIN[1..]]);
        check_error_from(&bad, 1, Request::parse, WireError::Version(v));
    }
}

#[test]
fn request_unknown_address_type_is_an_error_once_atyp_is_in() {
    for a in [0x00, 0x02, 0x05, 0x06, 0xFF] {
        // Three bytes are not enough to know; the fourth, ATYP, is.
        let bad = [0x05, 0x01, 0x00, a, 10, 0, 0, 1, 0x00, 0x50];
        check_error_from(&bad, 4, Request::parse, WireError::AddressType(a));
    }
    assert_eq!(
        Request::parse(&[0x05, 0x01, 0x00, 0x05]),
        Err(WireError::AddressType(0x05))
    );
}

#[test]
fn version_is_checked_before_address_type() {
    assert_eq!(
        Request::parse(&[0x04, 0x01, 0x00, 0x05]),
        Err(WireError::Version(0x04))
    );
}

// ------------------------------------------------------------- target addr

#[test]
fn target_addr_display() {
    assert_eq!(v4(192, 0, 2, 10, 80).to_string(), "192.0.2.10:80");
    let ip = Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 1);
    let v6 = TargetAddr::Ip(SocketAddr::V6(SocketAddrV6::new(ip, 8080, 0, 0)));
    assert_eq!(v6.to_string(), "[2001:db8::1]:8080");
    assert_eq!(domain(b"example.com", 443).to_string(), "example.com:443");
    assert_eq!(domain(b"", 80).to_string(), ":80");
    assert_eq!(
        domain("ñandú.example".as_bytes(), 1).to_string(),
        "\\u{f1}and\\u{fa}.example:1"
    );
}

#[test]
fn non_utf8_domain_is_displayed_escaped() {
    assert_eq!(
        domain(b"a\xffb.example", 80).to_string(),
        "a\\xffb.example:80"
    );
    // A truncated multi-byte sequence and a lone continuation byte.
    assert_eq!(domain(b"\xc3\x80\xc3", 1).to_string(), "\\u{c0}\\xc3:1");
    assert_eq!(domain(b"\x80", 1).to_string(), "\\x80:1");
}

#[test]
fn domain_cannot_forge_a_log_line() {
    let shown = domain(b"evil.example\n2024-01-01 user=admin \\x41", 80).to_string();
    assert_eq!(
        shown,
        "evil.example\\u{a}2024-01-01\\u{20}user=admin\\u{20}\\\\x41:80"
    );
    assert!(!shown.chars().any(|c| c.is_whitespace() || c.is_control()));
}

#[test]
fn target_ref_is_the_borrowed_target_addr() {
    let ip = Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 1);
    let targets = [
        v4(192, 0, 2, 10, 80),
        TargetAddr::Ip(SocketAddr::V6(SocketAddrV6::new(ip, 8080, 0, 0))),
        domain(b"example.com", 443),
        domain(b"", 1),
        domain(&[b'a'; 255], 65535),
        domain(b"a\xffb\n", 7),
    ];
    for target in targets {
        let mut raw = vec![0u8; target.buffer_len()];
        target.emit(&mut raw);
        let borrowed = target.borrowed();
        let parse = |buf: &[u8]| owned(TargetRef::parse(buf), TargetAddr::from);
        check_parse(&raw, parse, target.clone());
        check_emit(&raw, |out| borrowed.emit(out));
        assert_eq!(borrowed.buffer_len(), raw.len());
        assert_eq!(borrowed.port(), target.port());
        assert_eq!(TargetAddr::from(borrowed), target);
        assert_eq!(borrowed.to_string(), target.to_string());
    }
    check_error_from(
        &[0x02, 1, 2, 3, 4, 0, 80],
        1,
        |buf| owned(TargetRef::parse(buf), TargetAddr::from),
        WireError::AddressType(0x02),
    );
}

#[test]
fn ip_literals() {
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 9));
    let cases = [
        ("192.0.2.7", Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)))),
        ("2001:db8::9", Some(v6)),
        ("[2001:db8::9]", Some(v6)),
        (
            "::ffff:192.0.2.7",
            Some("::ffff:192.0.2.7".parse().unwrap()),
        ),
        ("[192.0.2.7]", Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)))),
        ("example.com", None),
        ("", None),
        ("[]", None),
        ("[2001:db8::9", None),
        ("2001:db8::9]", None),
        ("192.0.2.7.", None),
        ("192.0.2", None),
        ("0x7f.1", None),
    ];
    for (host, ip) in cases {
        assert_eq!(ip_literal(host), ip, "{host:?}");
    }
}

// ----------------------------------------------------------- write_log_safe

#[test]
fn write_log_safe_escapes_whitespace_control_and_backslash() {
    let cases = [
        ("plain-name.example_1", "plain-name.example_1"),
        ("ñandú", "\\u{f1}and\\u{fa}"),
        // Invisible format characters: a bidi override, a zero-width space, a BOM.
        ("\u{202e}", "\\u{202e}"),
        ("\u{200b}", "\\u{200b}"),
        ("\u{feff}", "\\u{feff}"),
        ("a b", "a\\u{20}b"),
        ("\t", "\\u{9}"),
        ("\n", "\\u{a}"),
        ("\r", "\\u{d}"),
        ("\0", "\\u{0}"),
        ("\x1b[31m", "\\u{1b}[31m"),
        ("\x7f", "\\u{7f}"),
        ("\u{85}", "\\u{85}"),
        ("\u{a0}", "\\u{a0}"),
        ("\u{2028}", "\\u{2028}"),
        ("\u{3000}", "\\u{3000}"),
        ("\\", "\\\\"),
        ("\"", "\\u{22}"),
        ("\"bob", "\\u{22}bob"),
        ("\\u{20}", "\\\\u{20}"),
        ("", ""),
    ];
    for (raw, shown) in cases {
        assert_eq!(log_safe(raw), shown, "{raw:?}");
    }
}

#[test]
fn write_log_safe_output_is_one_token() {
    let chars = (0..=0x3100u32)
        .chain(0xFEFF..=0xFFFF)
        .filter_map(char::from_u32);
    for c in chars {
        let shown = log_safe(&c.to_string());
        assert!(
            shown.chars().all(|s| s.is_ascii_graphic()),
            "{c:?} shown as {shown:?}"
        );
        if c != '\\' && c != '"' && c.is_ascii_graphic() {
            assert_eq!(shown, c.to_string(), "{c:?} must be kept");
        }
    }
}

// ------------------------------------------------------------------ replies

#[test]
fn reply_codes() {
    let named = [
        (0x00, Reply::Succeeded),
        (0x01, Reply::GeneralFailure),
        (0x02, Reply::NotAllowed),
        (0x03, Reply::NetworkUnreachable),
        (0x04, Reply::HostUnreachable),
        (0x05, Reply::ConnectionRefused),
        (0x06, Reply::TtlExpired),
        (0x07, Reply::CommandNotSupported),
        (0x08, Reply::AddressTypeNotSupported),
        (0x09, Reply::Unknown(0x09)),
        (0xFF, Reply::Unknown(0xFF)),
    ];
    for (b, reply) in named {
        assert_eq!(Reply::from(b), reply);
        assert_eq!(u8::from(reply), b);
    }
    for b in 0..=255u8 {
        assert_eq!(u8::from(Reply::from(b)), b);
    }
}

#[test]
fn every_reply_code_with_ipv4_and_ipv6_bnd() {
    for code in 0x00..=0x08u8 {
        let reply = Reply::from(code);
        for (bnd, bnd_bytes) in [(bnd_ipv4(), BND_IPV4), (bnd_ipv6(), BND_IPV6)] {
            let fixture = cat(&[&[0x05, code, 0x00], bnd_bytes]);
            check_emit(&fixture, |out| emit_reply(reply, bnd, out));
            let msg = ReplyMessage {
                reply,
                bound: TargetAddr::Ip(bnd),
            };
            check_parse(&fixture, ReplyMessage::parse, msg);
        }
    }
}

#[test]
fn failure_reply_with_unspecified_bnd() {
    for code in 0x01..=0x08u8 {
        let fixture = cat(&[&[0x05, code, 0x00], BND_UNSPECIFIED]);
        assert_eq!(fixture.len(), 10);
        check_emit(&fixture, |out| {
            emit_reply(Reply::from(code), UNSPECIFIED, out)
        });
    }
}

#[test]
fn max_reply_len_fits_an_ipv6_reply() {
    let mut out = [0u8; MAX_REPLY_LEN];
    assert_eq!(
        emit_reply(Reply::Succeeded, bnd_ipv6(), &mut out),
        MAX_REPLY_LEN
    );
    assert_eq!(3 + BND_IPV6.len(), MAX_REPLY_LEN);
}

#[test]
fn reply_message_with_domain_bnd() {
    // Servers may answer with a DOMAINNAME BND; a client must read it.
    let fixture = b"\x05\x00\x00\x03\x0bexample.com\x04\x38";
    let msg = ReplyMessage {
        reply: Reply::Succeeded,
        bound: domain(b"example.com", 1080),
    };
    check_parse(fixture, ReplyMessage::parse, msg);
}

#[test]
fn reply_message_errors() {
    let bad_ver = cat(&[&[0x04, 0x00, 0x00], BND_IPV4]);
    check_error_from(&bad_ver, 1, ReplyMessage::parse, WireError::Version(0x04));
    let bad_atyp = [0x05, 0x00, 0x00, 0x02, 1, 2, 3, 4, 0, 0];
    check_error_from(
        &bad_atyp,
        4,
        ReplyMessage::parse,
        WireError::AddressType(0x02),
    );
}

#[test]
fn wire_error_display() {
    assert_eq!(
        WireError::Version(0x04).to_string(),
        "unsupported version X'04'"
    );
    assert_eq!(
        WireError::AddressType(0x05).to_string(),
        "unsupported address type X'05'"
    );
    assert_eq!(
        WireError::AddressType(0xAB).to_string(),
        "unsupported address type X'AB'"
    );
}
