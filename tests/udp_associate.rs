//! UDP ASSOCIATE (RFC 1928 sections 4, 6 and 7) through the real binary,
//! with the raw client of tests/common: datagrams to IPv4, IPv6 and named
//! targets and back; the client filter (a foreign address, another port,
//! FRAG != 0) and targets the client never sent to; the association's end
//! with its control connection or its idle time; METRICS, the access log
//! and --max-udp-associations.
//!
//! A drop is shown without waiting blindly: the dropped datagram goes
//! first, a valid one after it on the same path, and once the valid one
//! has come back the target must have received it alone.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{
    Auth, Daemon, IO_TIMEOUT, M_BYTES, M_BYTES_DOWN, M_BYTES_UP, M_UDP_ASSOCIATIONS,
    M_UDP_DATAGRAMS, M_UDP_DROPPED, SocksError, UdpAssociation, UdpClient, UdpEcho, UnixMgmt,
    access_fields, try_udp_associate, udp_datagram, udp_datagram_to_name, wait_until_udp_refused,
};

const USER: &str = "uma";
const PASS: &str = "udp-pass-Q4";
const AUTH: Auth<'static> = Auth::User(USER, PASS);
/// How long socks5d may take to publish a counter or log a line.
const SETTLE: Duration = Duration::from_secs(10);

fn lo4() -> SocketAddr {
    "127.0.0.1:0".parse().expect("a valid literal")
}

/// socks5d with one user, an administrator and a management Unix socket.
struct Proxy {
    d: Daemon,
    mgmt: UnixMgmt,
}

impl Proxy {
    fn start(extra: &[&str]) -> Proxy {
        let mgmt = UnixMgmt::new("udp");
        let d = mgmt.start_as(USER, PASS, extra);
        Proxy { d, mgmt }
    }

    /// A client socket on 127.0.0.1 and its association, for DST from
    /// `dst` (None: the socket's own address).
    fn associate(&self, dst: Option<SocketAddr>) -> (UdpAssociation, UdpClient) {
        UdpClient::associate(self.d.addr, AUTH, lo4(), dst)
    }

    /// Polls METRICS until `want` holds.
    fn metrics(&self, want: impl Fn(&BTreeMap<u8, u64>) -> bool) -> BTreeMap<u8, u64> {
        self.mgmt.wait_metrics(SETTLE, want)
    }

    /// The access-log line of the (first) association that ended, as its
    /// fields.
    fn udp_log(&self) -> HashMap<String, String> {
        access_fields(&self.d.access_line("cmd=udp", SETTLE))
    }
}

/// `field` of an access-log line, which must be there.
fn field<'a>(f: &'a HashMap<String, String>, key: &str) -> &'a str {
    f.get(key)
        .unwrap_or_else(|| panic!("no {key}= in the access-log line {f:?}"))
}

/// Datagrams to an IPv4 target and back: BND is the control connection's
/// local address with an ephemeral port, each answer's header carries the
/// target's address, and the target sees the datagrams from socks5d.
#[test]
fn datagrams_to_an_ipv4_target_and_back() {
    let p = Proxy::start(&[]);
    let echo = UdpEcho::start(lo4());
    let (a, c) = p.associate(None);
    let control_local = a.control.local_addr().expect("local address");
    assert_eq!(a.relay.ip(), control_local.ip(), "BND.ADDR");
    assert_ne!(a.relay.port(), 0, "BND.PORT");

    for (i, len) in [1usize, 512, 1400, 8000].into_iter().enumerate() {
        let data: Vec<u8> = (0..len).map(|k| (k * 7 + i) as u8).collect();
        c.echo(echo.addr, &data);
    }
    let got = echo.received();
    assert_eq!(got.len(), 4, "datagrams at the target");
    for (from, _) in &got {
        assert_eq!(from.ip(), echo.addr.ip(), "the relay sends from loopback");
        assert_ne!(
            *from,
            c.local(),
            "the client's datagrams reach the target only through socks5d"
        );
    }
}

/// An IPv6 target (::1) through a relay reached over IPv4: ATYP X'04' both
/// ways.
#[test]
fn datagrams_to_an_ipv6_target_and_back() {
    let p = Proxy::start(&[]);
    let echo = UdpEcho::start("[::1]:0".parse().expect("a valid literal"));
    let (_a, c) = p.associate(None);
    c.echo(echo.addr, b"over IPv6 and back");
    assert_eq!(echo.payloads(), [b"over IPv6 and back".to_vec()]);
}

/// A target by name (ATYP X'03'), resolved by socks5d (here from its host
/// map); the answer's header carries the address the name resolved to.
#[test]
fn datagrams_to_a_named_target_and_back() {
    let echo = UdpEcho::start(lo4());
    let p = Proxy::start(&["--map-host", "udp-echo.test=127.0.0.1"]);
    let (_a, c) = p.associate(None);
    for data in [&b"by name"[..], b"by name, again"] {
        c.send_raw(&udp_datagram_to_name(
            "udp-echo.test",
            echo.addr.port(),
            data,
        ));
        assert_eq!(c.recv(), (echo.addr, data.to_vec()), "the answer");
    }
}

/// A datagram from 127.0.0.2 (loopback too) on an association whose
/// client is 127.0.0.1 (`dst`) is dropped: the target never gets it, the
/// foreign socket gets nothing back, and it is counted in METRICS and in
/// the access log.
fn a_foreign_source_is_dropped(dst: Option<SocketAddr>) {
    let p = Proxy::start(&[]);
    let echo = UdpEcho::start(lo4());
    let (a, c) = p.associate(dst);
    let foreign = UdpClient::bind("127.0.0.2:0".parse().expect("a valid literal"), c.relay);
    foreign.send_to(echo.addr, b"foreign");
    c.echo(echo.addr, b"valid");
    assert_eq!(
        echo.payloads(),
        [b"valid".to_vec()],
        "what reached the target"
    );
    foreign.sock.set_nonblocking(true).expect("non-blocking");
    let mut buf = [0u8; 64];
    let e = foreign
        .sock
        .recv_from(&mut buf)
        .expect_err("nothing for the foreign socket");
    assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e}");

    p.metrics(|m| m.get(&M_UDP_DROPPED) == Some(&1) && m.get(&M_UDP_DATAGRAMS) == Some(&2));
    drop(a);
    let f = p.udp_log();
    assert_eq!(
        [
            field(&f, "datagrams_up"),
            field(&f, "datagrams_down"),
            field(&f, "dropped")
        ],
        ["1", "1", "1"],
        "{f:?}"
    );
}

/// DST.ADDR 127.0.0.1 and the client's port: only that address and port.
#[test]
fn a_foreign_source_is_dropped_when_the_request_named_the_client() {
    a_foreign_source_is_dropped(None);
}

/// DST.ADDR unspecified (0.0.0.0:0): only the control connection's client
/// IP, 127.0.0.1.
#[test]
fn a_foreign_source_is_dropped_when_the_request_left_it_unspecified() {
    a_foreign_source_is_dropped(Some("0.0.0.0:0".parse().expect("a valid literal")));
}

/// DST.PORT named: a datagram from the right IP but another port is
/// dropped, even as the association's first datagram.
#[test]
fn another_port_is_dropped_when_the_request_named_one() {
    let p = Proxy::start(&[]);
    let echo = UdpEcho::start(lo4());
    let (_a, c) = p.associate(None);
    let other = UdpClient::bind(lo4(), c.relay);
    other.send_to(echo.addr, b"other port");
    c.echo(echo.addr, b"named port");
    assert_eq!(echo.payloads(), [b"named port".to_vec()]);
    p.metrics(|m| m.get(&M_UDP_DROPPED) == Some(&1));
}

/// DST.PORT 0: the first datagram fixes the client's port; one from
/// another port of the same IP afterwards is dropped.
#[test]
fn the_first_datagram_fixes_the_port() {
    let p = Proxy::start(&[]);
    let echo = UdpEcho::start(lo4());
    let (_a, c) = p.associate(Some("127.0.0.1:0".parse().expect("a valid literal")));
    c.echo(echo.addr, b"first");
    let other = UdpClient::bind(lo4(), c.relay);
    other.send_to(echo.addr, b"second socket");
    c.echo(echo.addr, b"first socket again");
    assert_eq!(
        echo.payloads(),
        [b"first".to_vec(), b"first socket again".to_vec()]
    );
    p.metrics(|m| m.get(&M_UDP_DROPPED) == Some(&1));
}

/// A datagram with FRAG != 0 is dropped (socks5d does not reassemble) and
/// counted.
#[test]
fn a_fragment_is_dropped() {
    let p = Proxy::start(&[]);
    let echo = UdpEcho::start(lo4());
    let (_a, c) = p.associate(None);
    c.send_raw(&udp_datagram(1, echo.addr, b"fragment 1"));
    c.send_raw(&udp_datagram(0x81, echo.addr, b"last fragment"));
    c.echo(echo.addr, b"whole");
    assert_eq!(echo.payloads(), [b"whole".to_vec()]);
    p.metrics(|m| m.get(&M_UDP_DROPPED) == Some(&2));
}

/// Only targets the client sent to may answer: a datagram from another
/// socket of 127.0.0.1 to the association's outward address is not
/// delivered, while the target's answers sent after it are.
#[test]
fn a_datagram_from_a_target_never_sent_to_is_not_delivered() {
    let p = Proxy::start(&[]);
    let (_a, c) = p.associate(None);
    let target = UdpSocket::bind(lo4()).expect("bind the target");
    target.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let target_addr = target.local_addr().expect("local address");
    let stranger = UdpSocket::bind(lo4()).expect("bind the stranger");
    let mut buf = [0u8; 2048];
    for round in [&b"one"[..], b"two"] {
        c.send_to(target_addr, round);
        let (n, outward) = target.recv_from(&mut buf).expect("the client's datagram");
        assert_eq!(&buf[..n], round, "at the target");
        stranger
            .send_to(b"stranger", outward)
            .expect("send as the stranger");
        let answer = [b"answer to ", round].concat();
        target.send_to(&answer, outward).expect("answer");
        assert_eq!(c.recv(), (target_addr, answer), "the first datagram back");
    }
}

/// Closing the control connection ends the association: the access log
/// gets its line, and its UDP port is closed (a datagram to it gets ICMP
/// port unreachable).
#[test]
fn the_association_ends_with_its_control_connection() {
    let p = Proxy::start(&[]);
    let echo = UdpEcho::start(lo4());
    let (a, c) = p.associate(None);
    c.echo(echo.addr, b"while it is open");
    drop(a.control);
    let f = p.udp_log();
    assert_eq!(
        [field(&f, "datagrams_up"), field(&f, "datagrams_down")],
        ["1", "1"],
        "{f:?}"
    );
    let probe = udp_datagram(0, echo.addr, b"after the end");
    wait_until_udp_refused(&c.sock, c.relay, &probe, SETTLE);
}

/// With --idle-timeout, an association with no datagram either way for
/// that long ends: its access-log line, its control connection closed, its
/// port closed. (The idle time is measured from after the last answer came
/// back, a little after socks5d sent it: the bound leaves room for that.)
#[test]
fn an_idle_association_ends_after_the_idle_timeout() {
    let p = Proxy::start(&["--idle-timeout", "2"]);
    let echo = UdpEcho::start(lo4());
    let (mut a, c) = p.associate(None);
    c.echo(echo.addr, b"the last datagram");
    let last = Instant::now();
    p.udp_log();
    let idle = last.elapsed();
    assert!(
        idle >= Duration::from_millis(1500),
        "ended after {idle:?} idle"
    );
    let mut buf = [0u8; 16];
    match a.control.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the control connection after the idle timeout: {other:?}"),
    }
    let probe = udp_datagram(0, echo.addr, b"too late");
    wait_until_udp_refused(&c.sock, c.relay, &probe, SETTLE);
}

/// METRICS while an association is open and after it ended: X'09' counts
/// it, X'0A' the datagrams relayed both ways, X'0B' the dropped ones, and
/// X'03' to X'05' the UDP payload bytes. The access-log line says the same.
#[test]
fn metrics_and_the_access_log_count_the_datagrams() {
    let p = Proxy::start(&[]);
    let echo = UdpEcho::start(lo4());
    let (a, c) = p.associate(None);
    let sizes = [10usize, 100, 1000];
    for len in sizes {
        c.echo(echo.addr, &vec![0x5a; len]);
    }
    c.send_raw(&udp_datagram(2, echo.addr, b"a fragment"));
    c.echo(echo.addr, b"");
    p.metrics(|m| m.get(&M_UDP_ASSOCIATIONS) == Some(&1));
    let client = a.control.local_addr().expect("local address");
    drop(a);

    let f = p.udp_log();
    let bytes: u64 = sizes.iter().map(|&n| n as u64).sum();
    let want = [
        ("cmd", "udp".to_owned()),
        ("user", USER.to_owned()),
        ("client", client.to_string()),
        ("datagrams_up", "4".to_owned()),
        ("datagrams_down", "4".to_owned()),
        ("dropped", "1".to_owned()),
        ("up", bytes.to_string()),
        ("down", bytes.to_string()),
    ];
    for (k, v) in want {
        assert_eq!(field(&f, k), v, "{k} in {f:?}");
    }
    let m = p.metrics(|m| m.get(&M_UDP_DATAGRAMS) == Some(&8));
    assert_eq!(m.get(&M_UDP_DROPPED), Some(&1), "dropped: {m:02x?}");
    assert_eq!(m.get(&M_BYTES_UP), Some(&bytes), "payload up: {m:02x?}");
    assert_eq!(m.get(&M_BYTES_DOWN), Some(&bytes), "payload down: {m:02x?}");
    assert_eq!(m.get(&M_BYTES), Some(&(2 * bytes)), "bytes: {m:02x?}");
}

/// --max-udp-associations 1: a second association while the first is open
/// is refused with X'01'; once the first has ended, a new one is made.
#[test]
fn max_udp_associations_caps_the_open_ones() {
    let p = Proxy::start(&["--max-udp-associations", "1"]);
    let echo = UdpEcho::start(lo4());
    let (a, c) = p.associate(None);
    c.echo(echo.addr, b"the one allowed");
    match try_udp_associate(p.d.addr, AUTH, lo4()) {
        Err(SocksError::RequestFailed(rep)) => assert_eq!(rep, 0x01, "REP"),
        Ok(b) => panic!("a second association at the limit: {b:?}"),
        Err(e) => panic!("a second association at the limit: {e:?}"),
    }
    drop(a);
    p.udp_log();
    // The slot is given back as the association ends; the log line may
    // come first, so poll.
    let deadline = Instant::now() + SETTLE;
    let b = loop {
        match try_udp_associate(p.d.addr, AUTH, lo4()) {
            Ok(b) => break b,
            Err(SocksError::RequestFailed(0x01)) if Instant::now() < deadline => {}
            Err(e) => panic!("an association after the first ended: {e:?}"),
        }
    };
    UdpClient::bind(lo4(), b.relay).echo(echo.addr, b"the next one");
    drop(c);
}

/// --udp-public-addr replaces the address the reply announces; the port is
/// still the relay's own.
#[test]
fn udp_public_addr_is_announced() {
    let p = Proxy::start(&["--udp-public-addr", "127.0.0.9"]);
    let (a, _c) = p.associate(None);
    assert_eq!(a.relay.ip().to_string(), "127.0.0.9", "BND.ADDR");
    assert_ne!(a.relay.port(), 0, "BND.PORT");
}
