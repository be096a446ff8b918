//! The UDP header at every split point and every address type, and one
//! association's decisions: whose datagrams, where to, which names to
//! resolve, what to hold, which replies to let back.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::socks5::wire::tests::{Parsed, cat, check_emit, check_error_from, check_parse, owned};

// ---------------------------------------------------------------- fixtures

/// Header to 192.0.2.10:53.
const HEADER_IPV4: &[u8] = &[0x00, 0x00, 0x00, 0x01, 192, 0, 2, 10, 0x00, 0x35];
/// Header to [2001:db8::1]:8080.
const HEADER_IPV6: &[u8] = &[
    0x00, 0x00, 0x00, 0x04, //
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, //
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
    0x1f, 0x90,
];
/// Header to example.com:443.
const HEADER_NAME: &[u8] = b"\x00\x00\x00\x03\x0bexample.com\x01\xbb";
/// Header to the empty name, port 80.
const HEADER_NAME_0: &[u8] = &[0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x50];

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::new(a, b, c, d).into(), port)
}

fn v6(last: u16, port: u16) -> SocketAddr {
    SocketAddr::new(
        Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, last).into(),
        port,
    )
}

/// `addr` as an IPv4-mapped IPv6 address.
fn mapped(addr: SocketAddr) -> SocketAddr {
    let SocketAddr::V4(a) = addr else {
        panic!("{addr} is not IPv4")
    };
    SocketAddr::new(a.ip().to_ipv6_mapped().into(), a.port())
}

/// The header of a name of 255 bytes, port 443.
fn header_name_255() -> Vec<u8> {
    cat(&[&[0x00, 0x00, 0x00, 0x03, 0xFF], &[b'n'; 255], &[0x01, 0xBB]])
}

/// A datagram to `dest` with `data`.
fn datagram(dest: Dest<'_>, data: &[u8]) -> Vec<u8> {
    let header = Header { frag: 0, dest };
    let mut out = vec![0u8; header.buffer_len()];
    header.emit(&mut out);
    cat(&[&out, data])
}

/// A datagram to `name`:`port` with `data`.
fn to_name(name: &str, port: u16, data: &[u8]) -> Vec<u8> {
    datagram(Dest::Domain(name.as_bytes(), port), data)
}

/// Headers made owned, so that the helpers of the wire tests drive them.
fn parse_header(buf: &[u8]) -> Parsed<(u8, TargetAddr)> {
    owned(Header::parse(buf), |h| (h.frag, TargetAddr::from(h.dest)))
}

// ------------------------------------------------------------------ header

#[test]
fn header_fixtures_at_every_split_point() {
    let name_255 = header_name_255();
    let cases: [(&[u8], TargetAddr); 5] = [
        (HEADER_IPV4, TargetAddr::Ip(v4(192, 0, 2, 10, 53))),
        (HEADER_IPV6, TargetAddr::Ip(v6(1, 8080))),
        (
            HEADER_NAME,
            TargetAddr::Domain((*b"example.com").into(), 443),
        ),
        (HEADER_NAME_0, TargetAddr::Domain((*b"").into(), 80)),
        (&name_255, TargetAddr::Domain([b'n'; 255].into(), 443)),
    ];
    for (fixture, dest) in cases {
        // Every strict prefix is Partial; the whole header, with any DATA
        // behind it, is Complete with DATA's offset.
        check_parse(fixture, parse_header, (0, dest.clone()));
        let header = Header {
            frag: 0,
            dest: dest.borrowed(),
        };
        check_emit(fixture, |out| header.emit(out));
        assert_eq!(header.buffer_len(), fixture.len());
        assert!(fixture.len() <= MAX_HEADER_LEN);
    }
    assert_eq!(name_255.len(), MAX_HEADER_LEN);
    assert_eq!(HEADER_IPV6.len(), MAX_IP_HEADER_LEN);
}

#[test]
fn header_unknown_address_type_is_an_error_once_atyp_is_in() {
    for a in [0x00, 0x02, 0x05, 0xFF] {
        let bad = [0x00, 0x00, 0x00, a, 192, 0, 2, 10, 0x00, 0x35, b'x'];
        check_error_from(&bad, 4, parse_header, WireError::AddressType(a));
    }
}

#[test]
fn header_frag_is_read_as_sent() {
    for frag in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
        let mut fixture = HEADER_IPV4.to_vec();
        fixture[2] = frag;
        check_parse(
            &fixture,
            parse_header,
            (frag, TargetAddr::Ip(v4(192, 0, 2, 10, 53))),
        );
        let header = Header {
            frag,
            dest: Dest::Ip(v4(192, 0, 2, 10, 53)),
        };
        check_emit(&fixture, |out| header.emit(out));
    }
}

#[test]
fn header_rsv_is_not_checked() {
    for rsv in [[0x00, 0x01], [0xAB, 0xCD], [0xFF, 0xFF]] {
        let fixture = cat(&[&rsv, &HEADER_NAME[2..]]);
        check_parse(
            &fixture,
            parse_header,
            (0, TargetAddr::Domain((*b"example.com").into(), 443)),
        );
    }
}

/// `emit_header_before` into a buffer of 0xEE bytes at `end`: the header
/// it wrote, checked to be right in front of `end` and to touch nothing else.
fn header_before(from: SocketAddr, end: usize) -> Vec<u8> {
    let mut buf = vec![0xEE; end + 8];
    let len = emit_header_before(from, &mut buf, end);
    assert!(buf[..end - len].iter().all(|&b| b == 0xEE), "wrote before");
    assert!(buf[end..].iter().all(|&b| b == 0xEE), "wrote past {end}");
    buf[end - len..end].to_vec()
}

#[test]
fn reply_headers_round_trip() {
    let cases = [
        (v4(192, 0, 2, 10, 53), HEADER_IPV4),
        (v6(1, 8080), HEADER_IPV6),
        // IPv4-mapped IPv6, as a dual-stack socket reports an IPv4 peer.
        (mapped(v4(192, 0, 2, 10, 53)), HEADER_IPV4),
    ];
    for (from, fixture) in cases {
        for end in [MAX_IP_HEADER_LEN, fixture.len(), 100] {
            let header = header_before(from, end);
            assert_eq!(header, fixture, "{from} before {end}");
        }
        // Read back, a mapped sender is IPv4.
        let canonical = SocketAddr::new(from.ip().to_canonical(), from.port());
        let want = Header {
            frag: 0,
            dest: Dest::Ip(canonical),
        };
        assert_eq!(
            Header::parse(fixture),
            Ok(Status::Complete(want, fixture.len()))
        );
    }
    // A mapped IPv6 sender whose header a client reads back as IPv4.
    let mut buf = [0u8; MAX_IP_HEADER_LEN + 4];
    buf[MAX_IP_HEADER_LEN..].copy_from_slice(b"DATA");
    let len = emit_header_before(mapped(v4(127, 0, 0, 1, 9)), &mut buf, MAX_IP_HEADER_LEN);
    assert_eq!(len, 10);
    let datagram = &buf[MAX_IP_HEADER_LEN - len..];
    assert_eq!(
        Header::parse(datagram),
        Ok(Status::Complete(
            Header {
                frag: 0,
                dest: Dest::Ip(v4(127, 0, 0, 1, 9)),
            },
            10
        ))
    );
    assert_eq!(&datagram[10..], b"DATA");
}

// ------------------------------------------------------------ association

/// The control connection's peer in these tests.
const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

fn at(t0: Instant, secs: u64) -> Instant {
    t0 + Duration::from_secs(secs)
}

/// An association whose client sent from CLIENT_IP:5000, accepted.
fn associated(limits: Limits) -> Association {
    let mut a = Association::new(&TargetAddr::Ip(v4(0, 0, 0, 0, 0)), CLIENT_IP, limits);
    assert!(a.accepts_client(SocketAddr::new(CLIENT_IP, 5000)));
    a
}

fn resolve(host: &str, port: u16) -> Route {
    Route::Resolve {
        host: host.into(),
        port,
    }
}

fn answer(ips: &[SocketAddr]) -> io::Result<Vec<SocketAddr>> {
    Ok(ips.to_vec())
}

/// Every datagram ready now.
fn drain(a: &mut Association) -> Vec<(SocketAddr, Vec<u8>)> {
    std::iter::from_fn(|| a.poll_ready()).collect()
}

/// Whether the association holds no datagram buffer.
fn holds_no_buffer(a: &Association) -> bool {
    a.waiting.capacity() == 0
        && a.ready.capacity() == 0
        && a.resolving.capacity() == 0
        && a.held_bytes == 0
}

#[test]
fn client_with_ip_and_port_given() {
    let requested = TargetAddr::Ip(v4(203, 0, 113, 9, 4000));
    let mut a = Association::new(&requested, CLIENT_IP, Limits::default());
    assert_eq!(a.client(), None);
    // Not the control connection's IP, not another port, not another IP.
    assert!(!a.accepts_client(SocketAddr::new(CLIENT_IP, 4000)));
    assert!(!a.accepts_client(v4(203, 0, 113, 9, 4001)));
    assert!(!a.accepts_client(v4(203, 0, 113, 10, 4000)));
    assert_eq!(a.client(), None);
    assert!(a.accepts_client(v4(203, 0, 113, 9, 4000)));
    assert_eq!(a.client(), Some(v4(203, 0, 113, 9, 4000)));
    assert!(a.accepts_client(v4(203, 0, 113, 9, 4000)));
    assert!(!a.accepts_client(v4(203, 0, 113, 9, 4001)));
}

#[test]
fn client_with_unspecified_ip_or_a_name_is_the_control_peer() {
    let requests = [
        TargetAddr::Ip(v4(0, 0, 0, 0, 0)),
        TargetAddr::Ip(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0)),
        TargetAddr::Ip(mapped(v4(0, 0, 0, 0, 0))),
        TargetAddr::Domain((*b"client.example").into(), 0),
    ];
    for requested in requests {
        let mut a = Association::new(&requested, CLIENT_IP, Limits::default());
        assert!(!a.accepts_client(v4(203, 0, 113, 9, 4000)), "{requested}");
        assert!(!a.accepts_client(v4(0, 0, 0, 0, 4000)), "{requested}");
        assert!(
            a.accepts_client(SocketAddr::new(CLIENT_IP, 4000)),
            "{requested}"
        );
    }
}

#[test]
fn port_zero_is_fixed_by_the_first_datagram() {
    let mut a = Association::new(
        &TargetAddr::Ip(v4(0, 0, 0, 0, 0)),
        CLIENT_IP,
        Limits::default(),
    );
    // A foreign source fixes nothing.
    assert!(!a.accepts_client(v4(203, 0, 113, 9, 6000)));
    assert!(a.accepts_client(SocketAddr::new(CLIENT_IP, 5000)));
    assert!(!a.accepts_client(SocketAddr::new(CLIENT_IP, 5001)));
    assert!(!a.accepts_client(SocketAddr::new(CLIENT_IP, 0)));
    assert!(a.accepts_client(SocketAddr::new(CLIENT_IP, 5000)));
    assert_eq!(a.client(), Some(SocketAddr::new(CLIENT_IP, 5000)));
}

#[test]
fn port_given_with_unspecified_ip() {
    let requested = TargetAddr::Domain((*b"").into(), 7000);
    let mut a = Association::new(&requested, CLIENT_IP, Limits::default());
    assert!(!a.accepts_client(SocketAddr::new(CLIENT_IP, 7001)));
    assert!(a.accepts_client(SocketAddr::new(CLIENT_IP, 7000)));
}

#[test]
fn mapped_addresses_are_the_same_client() {
    let plain = v4(203, 0, 113, 9, 4000);
    // Requested as mapped, sent from plain IPv4, and the other way round.
    for (requested, from) in [(mapped(plain), plain), (plain, mapped(plain))] {
        let mut a = Association::new(&TargetAddr::Ip(requested), CLIENT_IP, Limits::default());
        assert!(a.accepts_client(from), "{requested} from {from}");
        // Replies go back the way the datagram came, for its socket.
        assert_eq!(a.client(), Some(from));
        assert!(a.accepts_client(plain));
        assert!(a.accepts_client(mapped(plain)));
        assert!(!a.accepts_client(v4(203, 0, 113, 10, 4000)));
    }
    // The control connection over a dual-stack socket.
    let peer = v4(198, 51, 100, 7, 0);
    let mut a = Association::new(
        &TargetAddr::Ip(v4(0, 0, 0, 0, 0)),
        mapped(peer).ip(),
        Limits::default(),
    );
    assert!(a.accepts_client(v4(198, 51, 100, 7, 5000)));
    // An IPv6 address is never an IPv4 one otherwise.
    let mut a = Association::new(&TargetAddr::Ip(v6(7, 0)), CLIENT_IP, Limits::default());
    assert!(!a.accepts_client(SocketAddr::new(CLIENT_IP, 5000)));
    assert!(a.accepts_client(v6(7, 5000)));
}

#[test]
fn send_offsets_are_where_data_starts() {
    let t0 = Instant::now();
    let mut a = associated(Limits::default());
    let cases = [
        (cat(&[HEADER_IPV4, b"q"]), v4(192, 0, 2, 10, 53), 10),
        (cat(&[HEADER_IPV6, b"q"]), v6(1, 8080), 22),
        (
            to_name("192.0.2.7", 9, b"q"),
            v4(192, 0, 2, 7, 9),
            3 + 2 + 9 + 2,
        ),
        // DATA may be empty.
        (HEADER_IPV4.to_vec(), v4(192, 0, 2, 10, 53), 10),
    ];
    for (datagram, to, data) in cases {
        assert_eq!(
            a.on_client_datagram(t0, &datagram),
            Route::Send { to, data }
        );
    }
    // An IPv4-mapped destination goes out as IPv4.
    let d = datagram(Dest::Ip(mapped(v4(192, 0, 2, 10, 53))), b"q");
    assert_eq!(
        a.on_client_datagram(t0, &d),
        Route::Send {
            to: v4(192, 0, 2, 10, 53),
            data: 22
        }
    );
}

#[test]
fn malformed_and_fragmented_datagrams_are_dropped() {
    let t0 = Instant::now();
    let mut a = associated(Limits::default());
    let malformed = Route::Drop(Drop::Malformed);
    for cut in 0..HEADER_IPV6.len() {
        assert_eq!(
            a.on_client_datagram(t0, &HEADER_IPV6[..cut]),
            malformed,
            "{cut}"
        );
    }
    for cut in 0..HEADER_NAME.len() {
        assert_eq!(
            a.on_client_datagram(t0, &HEADER_NAME[..cut]),
            malformed,
            "{cut}"
        );
    }
    let bad_atyp = [0x00, 0x00, 0x00, 0x05, 192, 0, 2, 10, 0x00, 0x35, b'q'];
    assert_eq!(a.on_client_datagram(t0, &bad_atyp), malformed);
    // A name that is not UTF-8, or empty, is never asked for.
    assert_eq!(
        a.on_client_datagram(t0, &datagram(Dest::Domain(b"a\xffb", 53), b"q")),
        malformed
    );
    assert_eq!(
        a.on_client_datagram(t0, &cat(&[HEADER_NAME_0, b"q"])),
        malformed
    );
    for frag in [0x01, 0x80, 0xFF] {
        let mut d = cat(&[HEADER_NAME, b"q"]);
        d[2] = frag;
        assert_eq!(a.on_client_datagram(t0, &d), Route::Drop(Drop::Fragmented));
    }
    assert_eq!(a.held(), 0);
    assert!(!a.accepts_reply(v4(192, 0, 2, 10, 53)));
}

#[test]
fn ip_literal_names_are_never_resolved() {
    let t0 = Instant::now();
    let mut a = associated(Limits::default());
    for (name, to) in [
        ("192.0.2.7", v4(192, 0, 2, 7, 9)),
        ("2001:db8::9", v6(9, 9)),
        ("[2001:db8::9]", v6(9, 9)),
        ("::ffff:192.0.2.7", v4(192, 0, 2, 7, 9)),
    ] {
        let d = to_name(name, 9, b"q");
        let data = d.len() - 1;
        assert_eq!(
            a.on_client_datagram(t0, &d),
            Route::Send { to, data },
            "{name}"
        );
        assert!(a.accepts_reply(to));
    }
    assert_eq!(a.held(), 0);
}

#[test]
fn a_name_is_resolved_once_and_datagrams_wait_behind_it() {
    let t0 = Instant::now();
    let mut a = associated(Limits::default());
    assert_eq!(
        a.on_client_datagram(t0, &to_name("a.example", 53, b"one")),
        resolve("a.example", 53)
    );
    assert_eq!(
        a.on_client_datagram(t0, &to_name("a.example", 54, b"two")),
        Route::Held
    );
    assert_eq!(
        a.on_client_datagram(t0, &to_name("b.example", 80, b"three")),
        resolve("b.example", 80)
    );
    assert_eq!(
        a.on_client_datagram(t0, &to_name("a.example", 55, b"four")),
        Route::Held
    );
    assert_eq!(a.held(), 4);
    assert_eq!(a.poll_ready(), None);
    // The answer carries the port asked; each datagram keeps its own.
    a.handle_resolved(
        at(t0, 1),
        "a.example",
        answer(&[v4(192, 0, 2, 1, 53), v4(192, 0, 2, 2, 53)]),
    );
    assert_eq!(
        drain(&mut a),
        [
            (v4(192, 0, 2, 1, 53), b"one".to_vec()),
            (v4(192, 0, 2, 1, 54), b"two".to_vec()),
            (v4(192, 0, 2, 1, 55), b"four".to_vec()),
        ]
    );
    assert_eq!(a.held(), 1);
    for port in [53, 54, 55] {
        assert!(a.accepts_reply(v4(192, 0, 2, 1, port)));
    }
    assert!(
        !a.accepts_reply(v4(192, 0, 2, 2, 53)),
        "only the first address is used"
    );
    a.handle_resolved(
        at(t0, 1),
        "b.example",
        answer(&[mapped(v4(192, 0, 2, 3, 80))]),
    );
    assert_eq!(drain(&mut a), [(v4(192, 0, 2, 3, 80), b"three".to_vec())]);
    assert_eq!(a.take_unresolved(), 0);
    assert!(holds_no_buffer(&a));
}

#[test]
fn ready_datagrams_wait_for_poll_in_order() {
    let t0 = Instant::now();
    let mut a = associated(Limits::default());
    a.on_client_datagram(t0, &to_name("a.example", 1, b"1"));
    a.on_client_datagram(t0, &to_name("b.example", 2, b"2"));
    a.on_client_datagram(t0, &to_name("a.example", 3, b"3"));
    a.handle_resolved(t0, "b.example", answer(&[v6(2, 0)]));
    a.handle_resolved(t0, "a.example", answer(&[v6(1, 0)]));
    // Not polled yet: not peers yet.
    assert!(!a.accepts_reply(v6(2, 2)));
    assert_eq!(
        drain(&mut a),
        [
            (v6(2, 2), b"2".to_vec()),
            (v6(1, 1), b"1".to_vec()),
            (v6(1, 3), b"3".to_vec()),
        ]
    );
    assert!(a.accepts_reply(v6(2, 2)));
}

#[test]
fn wait_full_by_count() {
    let t0 = Instant::now();
    let limits = Limits {
        max_waiting: 3,
        ..Limits::default()
    };
    let mut a = associated(limits);
    assert_eq!(
        a.on_client_datagram(t0, &to_name("a.example", 1, b"1")),
        resolve("a.example", 1)
    );
    assert_eq!(
        a.on_client_datagram(t0, &to_name("a.example", 2, b"2")),
        Route::Held
    );
    assert_eq!(
        a.on_client_datagram(t0, &to_name("b.example", 3, b"3")),
        resolve("b.example", 3)
    );
    let full = Route::Drop(Drop::WaitFull);
    assert_eq!(
        a.on_client_datagram(t0, &to_name("a.example", 4, b"4")),
        full
    );
    // A new name is not even asked for.
    assert_eq!(
        a.on_client_datagram(t0, &to_name("c.example", 5, b"5")),
        full
    );
    // IP addresses never wait.
    assert!(matches!(
        a.on_client_datagram(t0, &cat(&[HEADER_IPV4, b"6"])),
        Route::Send { .. }
    ));
    // Ready but not polled still counts; polled frees the place.
    a.handle_resolved(t0, "b.example", answer(&[v4(192, 0, 2, 3, 0)]));
    assert_eq!(
        a.on_client_datagram(t0, &to_name("c.example", 5, b"5")),
        full
    );
    assert!(a.poll_ready().is_some());
    assert_eq!(
        a.on_client_datagram(t0, &to_name("c.example", 5, b"5")),
        resolve("c.example", 5)
    );
}

#[test]
fn wait_full_by_bytes() {
    let t0 = Instant::now();
    let limits = Limits {
        max_waiting_bytes: 100,
        ..Limits::default()
    };
    let mut a = associated(limits);
    let full = Route::Drop(Drop::WaitFull);
    assert_eq!(
        a.on_client_datagram(t0, &to_name("a.example", 1, &[1; 101])),
        full
    );
    assert_eq!(
        a.on_client_datagram(t0, &to_name("a.example", 1, &[1; 60])),
        resolve("a.example", 1)
    );
    assert_eq!(
        a.on_client_datagram(t0, &to_name("a.example", 2, &[2; 41])),
        full
    );
    assert_eq!(
        a.on_client_datagram(t0, &to_name("a.example", 2, &[2; 40])),
        Route::Held
    );
    assert_eq!(
        a.on_client_datagram(t0, &to_name("b.example", 3, &[])),
        resolve("b.example", 3)
    );
    assert_eq!(
        a.on_client_datagram(t0, &to_name("b.example", 3, &[3])),
        full
    );
    assert_eq!(a.held_bytes, 100);
    // An error frees the bytes as well.
    a.handle_resolved(
        t0,
        "a.example",
        Err(io::Error::from(io::ErrorKind::NotFound)),
    );
    assert_eq!(a.held_bytes, 0);
    assert_eq!(
        a.on_client_datagram(t0, &to_name("b.example", 3, &[3; 100])),
        Route::Held
    );
}

#[test]
fn names_that_do_not_resolve_are_dropped_and_counted() {
    let t0 = Instant::now();
    let mut a = associated(Limits::default());
    a.on_client_datagram(t0, &to_name("a.example", 1, b"1"));
    a.on_client_datagram(t0, &to_name("b.example", 2, b"2"));
    a.on_client_datagram(t0, &to_name("a.example", 3, b"3"));
    a.handle_resolved(
        t0,
        "a.example",
        Err(io::Error::from(io::ErrorKind::NotFound)),
    );
    assert_eq!(a.take_unresolved(), 2);
    assert_eq!(a.take_unresolved(), 0);
    assert_eq!(a.poll_ready(), None);
    // An empty answer is no answer either; nothing is kept.
    a.handle_resolved(t0, "b.example", answer(&[]));
    assert_eq!(a.take_unresolved(), 1);
    assert!(holds_no_buffer(&a));
    assert!(a.answers.is_empty());
    // The next datagram asks again.
    assert_eq!(
        a.on_client_datagram(t0, &to_name("a.example", 1, b"1")),
        resolve("a.example", 1)
    );
}

#[test]
fn answers_nobody_asked_for_are_ignored() {
    let t0 = Instant::now();
    let mut a = associated(Limits::default());
    a.handle_resolved(t0, "a.example", answer(&[v4(192, 0, 2, 1, 0)]));
    assert_eq!(
        a.on_client_datagram(t0, &to_name("a.example", 1, b"1")),
        resolve("a.example", 1)
    );
    a.handle_resolved(t0, "a.example", answer(&[v4(192, 0, 2, 1, 0)]));
    // A second answer to the same question changes nothing.
    a.handle_resolved(
        t0,
        "a.example",
        Err(io::Error::from(io::ErrorKind::NotFound)),
    );
    assert_eq!(a.take_unresolved(), 0);
    assert_eq!(drain(&mut a).len(), 1);
    assert!(matches!(
        a.on_client_datagram(t0, &to_name("a.example", 1, b"1")),
        Route::Send { .. }
    ));
    // Names are compared as sent.
    a.handle_resolved(
        t0,
        "A.example",
        Err(io::Error::from(io::ErrorKind::NotFound)),
    );
    assert!(matches!(
        a.on_client_datagram(t0, &to_name("a.example", 1, b"1")),
        Route::Send { .. }
    ));
}

#[test]
fn answers_are_kept_for_their_ttl() {
    let t0 = Instant::now();
    let limits = Limits {
        name_ttl: Duration::from_secs(30),
        ..Limits::default()
    };
    let mut a = associated(limits);
    a.on_client_datagram(t0, &to_name("a.example", 1, b"1"));
    a.handle_resolved(at(t0, 10), "a.example", answer(&[v4(192, 0, 2, 1, 1)]));
    drain(&mut a);
    let d = to_name("a.example", 7, b"q");
    let data = d.len() - 1;
    for secs in [10, 25, 39] {
        assert_eq!(
            a.on_client_datagram(at(t0, secs), &d),
            Route::Send {
                to: v4(192, 0, 2, 1, 7),
                data
            },
            "{secs} s"
        );
    }
    // Stale from the TTL on: asked again, and held meanwhile.
    assert_eq!(
        a.on_client_datagram(at(t0, 40), &d),
        resolve("a.example", 7)
    );
    assert_eq!(a.on_client_datagram(at(t0, 40), &d), Route::Held);
    a.handle_resolved(at(t0, 41), "a.example", answer(&[v4(192, 0, 2, 2, 7)]));
    assert_eq!(drain(&mut a).len(), 2);
    assert_eq!(
        a.on_client_datagram(at(t0, 70), &d),
        Route::Send {
            to: v4(192, 0, 2, 2, 7),
            data
        }
    );
}

#[test]
fn a_ttl_past_the_end_of_time_never_expires() {
    let t0 = Instant::now();
    let limits = Limits {
        name_ttl: Duration::MAX,
        ..Limits::default()
    };
    let mut a = associated(limits);
    a.on_client_datagram(t0, &to_name("a.example", 1, b"1"));
    a.handle_resolved(t0, "a.example", answer(&[v4(192, 0, 2, 1, 1)]));
    assert!(matches!(
        a.on_client_datagram(at(t0, 1 << 40), &to_name("a.example", 1, b"1")),
        Route::Send { .. }
    ));
}

#[test]
fn answers_kept_are_bounded_by_max_names() {
    let t0 = Instant::now();
    let limits = Limits {
        max_names: 2,
        ..Limits::default()
    };
    let mut a = associated(limits);
    for (i, name) in ["a.example", "b.example", "c.example"]
        .into_iter()
        .enumerate()
    {
        let i = i as u8 + 1;
        assert_eq!(
            a.on_client_datagram(t0, &to_name(name, 1, b"q")),
            resolve(name, 1)
        );
        a.handle_resolved(t0, name, answer(&[v4(192, 0, 2, i, 0)]));
        drain(&mut a);
    }
    assert_eq!(a.answers.len(), 2);
    // The oldest is forgotten, the two latest kept.
    assert_eq!(
        a.on_client_datagram(t0, &to_name("a.example", 1, b"q")),
        resolve("a.example", 1)
    );
    for (name, i) in [("b.example", 2), ("c.example", 3)] {
        let d = to_name(name, 1, b"q");
        assert_eq!(
            a.on_client_datagram(t0, &d),
            Route::Send {
                to: v4(192, 0, 2, i, 1),
                data: d.len() - 1
            }
        );
    }
    // No answer kept at all.
    let mut a = associated(Limits {
        max_names: 0,
        ..Limits::default()
    });
    a.on_client_datagram(t0, &to_name("a.example", 1, b"q"));
    a.handle_resolved(t0, "a.example", answer(&[v4(192, 0, 2, 1, 0)]));
    assert_eq!(drain(&mut a).len(), 1);
    assert_eq!(
        a.on_client_datagram(t0, &to_name("a.example", 1, b"q")),
        resolve("a.example", 1)
    );
}

#[test]
fn replies_only_from_peers_sent_to() {
    let t0 = Instant::now();
    let mut a = associated(Limits::default());
    assert!(!a.accepts_reply(v4(192, 0, 2, 10, 53)));
    a.on_client_datagram(t0, &cat(&[HEADER_IPV4, b"q"]));
    assert!(a.accepts_reply(v4(192, 0, 2, 10, 53)));
    assert!(a.accepts_reply(mapped(v4(192, 0, 2, 10, 53))));
    assert!(!a.accepts_reply(v4(192, 0, 2, 10, 54)), "another port");
    assert!(!a.accepts_reply(v4(192, 0, 2, 11, 53)), "another IP");
    assert!(
        !a.accepts_reply(SocketAddr::new(CLIENT_IP, 5000)),
        "the client"
    );
    // Mapped destinations are remembered as IPv4.
    a.on_client_datagram(t0, &datagram(Dest::Ip(mapped(v4(192, 0, 2, 20, 1))), b"q"));
    assert!(a.accepts_reply(v4(192, 0, 2, 20, 1)));
    // A dropped datagram makes no peer.
    let mut frag = cat(&[HEADER_IPV6, b"q"]);
    frag[2] = 1;
    a.on_client_datagram(t0, &frag);
    assert!(!a.accepts_reply(v6(1, 8080)));
}

#[test]
fn peers_are_bounded_and_the_least_recent_forgotten() {
    let t0 = Instant::now();
    let mut a = associated(Limits {
        max_peers: 3,
        ..Limits::default()
    });
    let send = |a: &mut Association, port: u16| {
        let d = datagram(Dest::Ip(v4(192, 0, 2, 1, port)), b"q");
        assert!(matches!(a.on_client_datagram(t0, &d), Route::Send { .. }));
    };
    for port in [1, 2, 3] {
        send(&mut a, port);
    }
    // Sending to 1 again makes 2 the oldest.
    send(&mut a, 1);
    send(&mut a, 4);
    let known: Vec<u16> = (1..=4)
        .filter(|&p| a.accepts_reply(v4(192, 0, 2, 1, p)))
        .collect();
    assert_eq!(known, [1, 3, 4]);
    // Many sends to the same few peers keep the bookkeeping bounded.
    for i in 0..1000u16 {
        send(&mut a, 1 + i % 3);
        assert!(a.peers.order.len() <= 2 * 3 + 1);
        assert!(a.peers.last.len() <= 3);
    }
    let known: Vec<u16> = (1..=4)
        .filter(|&p| a.accepts_reply(v4(192, 0, 2, 1, p)))
        .collect();
    assert_eq!(known, [1, 2, 3]);
    // Remembering nothing at all.
    let mut a = associated(Limits {
        max_peers: 0,
        ..Limits::default()
    });
    send(&mut a, 1);
    assert!(!a.accepts_reply(v4(192, 0, 2, 1, 1)));
}

#[test]
fn an_idle_association_holds_no_buffer() {
    let t0 = Instant::now();
    let mut a = associated(Limits::default());
    assert!(holds_no_buffer(&a));
    a.on_client_datagram(t0, &cat(&[HEADER_IPV4, b"q"]));
    assert!(holds_no_buffer(&a));
    for i in 0..8u8 {
        let name = format!("{i}.example");
        a.on_client_datagram(t0, &to_name(&name, 1, &[i; 1000]));
    }
    assert_eq!(a.held(), 8);
    for i in 0..8u8 {
        a.handle_resolved(t0, &format!("{i}.example"), answer(&[v4(192, 0, 2, i, 0)]));
        drain(&mut a);
    }
    assert!(holds_no_buffer(&a));
}
