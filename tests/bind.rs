//! BIND (RFC 1928 sections 4 and 6) through the real binary, with the raw
//! client of tests/common: the two replies, bytes both ways and
//! half-closes as CONNECT relays them, a peer from the wrong address turned
//! away while the wait goes on, any peer for an unspecified DST.ADDR, IPv6,
//! and the X'06' of --bind-timeout; the access-log line and METRICS X'0D'.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{
    Auth, Daemon, M_BINDS, UnixMgmt, access_fields, bind_accepted, bind_request, connect_from,
    read_reply,
};

const USER: &str = "bea";
const PASS: &str = "bind-pass-K2";
const AUTH: Auth<'static> = Auth::User(USER, PASS);
/// How long socks5d may take to publish a counter or log a line.
const SETTLE: Duration = Duration::from_secs(10);

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a valid literal")
}

/// socks5d with one user and a management socket, `extra` added.
fn start(mgmt: &UnixMgmt, extra: &[&str]) -> Daemon {
    mgmt.start_as(USER, PASS, extra)
}

/// Reads exactly `want.len()` bytes from `s` and compares them.
fn expect_bytes(s: &mut TcpStream, want: &[u8], what: &str) {
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got, want, "{what}");
}

/// Reads `s` to its end, which must come after exactly `want`.
fn expect_end(s: &mut TcpStream, want: &[u8], what: &str) {
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got, want, "{what}");
}

/// A connection from `from` to `bnd` that socks5d must close at once:
/// reading it ends (or is reset) without a byte.
fn turned_away(from: SocketAddr, bnd: SocketAddr) {
    let mut wrong = connect_from(from, bnd);
    let mut buf = [0u8; 16];
    match wrong.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("a peer from {from} was not closed at once: {other:?}"),
    }
}

/// The whole round trip: the first reply names where socks5d listens (the
/// address it reaches DST.ADDR from); a peer from DST.ADDR's IP (its port
/// is not checked) connects; the second reply names that peer; bytes go
/// both ways, and each side's half-close reaches the other while the other
/// direction still carries bytes, as CONNECT relays them. Then the
/// access-log line and METRICS X'0D'.
#[test]
fn a_bind_round_trip() {
    let mgmt = UnixMgmt::new("bind");
    let d = start(&mgmt, &[]);
    let (mut s, bnd) = bind_request(d.addr, AUTH, addr("127.0.0.1:9"));
    assert_eq!(
        bnd.ip(),
        addr("127.0.0.1:0").ip(),
        "BND.ADDR of the first reply"
    );
    assert_ne!(bnd.port(), 0, "BND.PORT of the first reply");

    let mut peer = TcpStream::connect(bnd).expect("connect to BND");
    peer.set_read_timeout(Some(SETTLE)).expect("timeout");
    let peer_addr = peer.local_addr().expect("local address");
    assert_eq!(bind_accepted(&mut s), peer_addr, "BND of the second reply");

    peer.write_all(b"from the peer").expect("peer writes");
    expect_bytes(&mut s, b"from the peer", "the peer's bytes at the client");
    s.write_all(b"from the client").expect("client writes");
    expect_bytes(
        &mut peer,
        b"from the client",
        "the client's bytes at the peer",
    );

    s.write_all(b" and its last").expect("client writes");
    s.shutdown(Shutdown::Write).expect("client half-closes");
    expect_end(
        &mut peer,
        b" and its last",
        "the peer reads to the client's end",
    );
    peer.write_all(b"after the half-close")
        .expect("peer writes on");
    peer.shutdown(Shutdown::Write).expect("peer half-closes");
    expect_end(
        &mut s,
        b"after the half-close",
        "the client reads to the peer's end",
    );
    drop((s, peer));

    let f = access_fields(&d.access_line("cmd=bind", SETTLE));
    let up = (b"from the client".len() + b" and its last".len()).to_string();
    let down = (b"from the peer".len() + b"after the half-close".len()).to_string();
    for (k, v) in [("user", USER), ("up", &up), ("down", &down)] {
        assert_eq!(f.get(k).map(String::as_str), Some(v), "{k} in {f:?}");
    }
    mgmt.wait_metrics(SETTLE, |m| m.get(&M_BINDS) == Some(&1));
}

/// DST.ADDR 127.0.0.1: a connection from 127.0.0.2 is closed at once and
/// the wait goes on; the peer from 127.0.0.1 is then the one accepted.
#[test]
fn a_peer_from_another_address_is_turned_away() {
    let mgmt = UnixMgmt::new("bind");
    let d = start(&mgmt, &[]);
    let (mut s, bnd) = bind_request(d.addr, AUTH, addr("127.0.0.1:0"));
    turned_away(addr("127.0.0.2:0"), bnd);
    turned_away(addr("127.0.0.3:0"), bnd);

    let mut peer = TcpStream::connect(bnd).expect("connect to BND");
    let peer_addr = peer.local_addr().expect("local address");
    assert_eq!(bind_accepted(&mut s), peer_addr, "BND of the second reply");
    peer.write_all(b"the right peer").expect("peer writes");
    expect_bytes(&mut s, b"the right peer", "the right peer's bytes");
}

/// DST.ADDR unspecified (0.0.0.0): a peer from any address is accepted.
#[test]
fn an_unspecified_address_takes_any_peer() {
    let mgmt = UnixMgmt::new("bind");
    let d = start(&mgmt, &[]);
    let (mut s, bnd) = bind_request(d.addr, AUTH, addr("0.0.0.0:0"));
    let mut peer = connect_from(addr("127.0.0.2:0"), bnd);
    let peer_addr = peer.local_addr().expect("local address");
    assert_eq!(bind_accepted(&mut s), peer_addr, "BND of the second reply");
    s.write_all(b"to 127.0.0.2").expect("client writes");
    expect_bytes(&mut peer, b"to 127.0.0.2", "the client's bytes");
}

/// DST.ADDR ::1: socks5d listens on ::1 and the second reply carries an
/// IPv6 address (ATYP X'04').
#[test]
fn a_bind_over_ipv6() {
    let mgmt = UnixMgmt::new("bind");
    let d = start(&mgmt, &[]);
    let (mut s, bnd) = bind_request(d.addr, AUTH, addr("[::1]:0"));
    assert_eq!(
        bnd.ip(),
        addr("[::1]:0").ip(),
        "BND.ADDR of the first reply"
    );
    let mut peer = TcpStream::connect(bnd).expect("connect to BND");
    let peer_addr = peer.local_addr().expect("local address");
    assert_eq!(bind_accepted(&mut s), peer_addr, "BND of the second reply");
    peer.write_all(b"over IPv6").expect("peer writes");
    expect_bytes(&mut s, b"over IPv6", "the peer's bytes");
}

/// No peer within --bind-timeout: the second reply is X'06' (TTL expired)
/// and the connection closes. (The wait is measured from after the first
/// reply came in, a little after socks5d began it: the bound leaves room.)
#[test]
fn no_peer_in_time_is_ttl_expired() {
    let mgmt = UnixMgmt::new("bind");
    let d = start(&mgmt, &["--bind-timeout", "2"]);
    let (mut s, _bnd) = bind_request(d.addr, AUTH, addr("127.0.0.1:0"));
    let t0 = Instant::now();
    let reply = read_reply(&mut s).expect("the second reply");
    let took = t0.elapsed();
    assert_eq!(reply.code, 0x06, "REP of the second reply: {reply:?}");
    assert!(
        took >= Duration::from_millis(1500) && took < SETTLE,
        "the second reply came after {took:?}"
    );
    expect_end(&mut s, b"", "the connection after X'06'");
}
