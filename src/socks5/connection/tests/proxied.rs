//! A balancer's connection (`--proxy-protocol-from`): the PROXY header
//! first, cut anywhere, with the greeting behind it; what a bad or missing
//! header does; and a header from a peer that is no balancer.

use super::*;
use crate::socks5::proxy_protocol::{self, Invalid};

/// The balancer's address.
fn balancer() -> SocketAddr {
    SocketAddr::new(Ipv4Addr::new(10, 0, 0, 2).into(), 51000)
}

/// The client a header names.
fn carried() -> SocketAddr {
    v6(7, 4000)
}

fn v2_header() -> Vec<u8> {
    let mut out = [0u8; 52];
    let n = proxy_protocol::emit_v2(carried(), v6(1, 1080), &mut out);
    out[..n].to_vec()
}

const V1_HEADER: &[u8] = b"PROXY TCP4 192.0.2.44 192.0.2.1 4000 1080\r\n";

/// v2 LOCAL, no address.
const V2_LOCAL: &[u8] = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";

impl Sim {
    /// A connection from the balancer, nothing received yet.
    fn behind_balancer(users: Users) -> Sim {
        let mut s = Sim::new(users);
        s.conn = Connection::behind_balancer(s.now, Arc::new(Config::default()), balancer());
        s
    }

    /// The driver's answer to `Action::Client`.
    fn proxied(&mut self, admitted: bool) {
        let users = self.users;
        self.conn.handle_proxied(self.now, admitted, &users);
        self.pump();
    }
}

#[test]
fn the_header_names_the_client_before_the_greeting_behind_it_is_read() {
    for (header, client, via) in [
        (v2_header(), carried(), Some(balancer())),
        (V1_HEADER.to_vec(), v4(44, 4000), Some(balancer())),
        (V2_LOCAL.to_vec(), balancer(), None),
        (b"PROXY UNKNOWN\r\n".to_vec(), balancer(), None),
    ] {
        let all = [&header[..], GREETING_NO_AUTH, REQUEST_IPV4].concat();
        // Whole, cut at every point, and one byte at a time.
        let mut cuttings: Vec<Vec<usize>> = (0..=all.len()).map(|k| vec![k]).collect();
        cuttings.push((0..all.len()).collect());
        for cuts in cuttings {
            let mut s = Sim::behind_balancer(Users::None);
            assert!(s.conn.is_anonymous());
            let mut fed = 0;
            let mut told = false;
            let mut later = Vec::new();
            for end in cuts.iter().copied().chain([all.len()]) {
                s.input(&all[fed..end]);
                fed = end;
                let actions = s.take_actions();
                if told {
                    later.extend(actions);
                    continue;
                }
                if fed < header.len() {
                    assert!(actions.is_empty(), "{actions:?} at {fed} of {cuts:?}");
                    continue;
                }
                // Nothing of the greeting is answered until the driver has
                // applied the address.
                assert_eq!(actions, [Action::Client(client)], "at {fed}");
                assert!(s.take_sent().is_empty());
                assert_eq!(s.conn.reading(), Reading::Paused);
                assert!(!s.conn.client_admitted());
                s.proxied(true);
                told = true;
            }
            assert!(told, "the header was not recognised: {cuts:?}");
            assert_eq!(s.take_sent(), SELECT_NO_AUTH, "{cuts:?}");
            later.extend(s.take_actions());
            assert_eq!(later, [connect(0, ipv4_target())], "{cuts:?}");
            assert!(s.conn.client_admitted());
            assert_eq!(s.conn.via(), via);
            s.assert_open();
        }
    }
}

#[test]
fn a_client_the_driver_does_not_admit_is_closed() {
    let mut s = Sim::behind_balancer(Users::None);
    s.input(&[&v2_header()[..], GREETING_NO_AUTH].concat());
    assert_eq!(s.take_actions(), [Action::Client(carried())]);
    s.proxied(false);
    assert_eq!(s.take_actions(), [Action::Close]);
    assert!(s.take_sent().is_empty());
    assert!(!s.conn.client_admitted(), "nothing to give back");
}

#[test]
fn a_bad_header_is_counted_and_closed_without_an_answer() {
    for (bytes, why) in [
        (GREETING_NO_AUTH.to_vec(), Invalid::Signature),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 80 080\r\n".to_vec(),
            Invalid::V1Port,
        ),
        (
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x05".to_vec(),
            Invalid::V2AddressLength,
        ),
    ] {
        let mut s = Sim::behind_balancer(Users::None);
        s.input(&bytes);
        assert_eq!(
            s.take_actions(),
            [
                Action::Decided(Outcome::ProxyHeader(ProxyRefusal::Invalid(why))),
                Action::Close
            ]
        );
        assert!(s.take_sent().is_empty());
        assert!(!s.conn.client_admitted());
    }
}

#[test]
fn no_header_in_time_or_a_balancer_that_leaves_mid_header() {
    let missing = || Action::Decided(Outcome::ProxyHeader(ProxyRefusal::Missing));
    // Too slow: the handshake timeout covers the header.
    let mut s = Sim::behind_balancer(Users::None);
    s.input(&v2_header()[..10]);
    s.advance(secs(9));
    s.assert_open();
    s.advance(secs(1));
    assert_eq!(s.take_actions(), [missing(), Action::Close]);
    // Nothing at all, in time: the same.
    let mut s = Sim::behind_balancer(Users::None);
    s.advance(secs(10));
    assert_eq!(s.take_actions(), [missing(), Action::Close]);
    // Part of a header, then the end.
    let mut s = Sim::behind_balancer(Users::None);
    s.input(b"PROXY TCP4 ");
    s.stream_end(Direction::Up);
    assert_eq!(s.take_actions(), [missing(), Action::Close]);
    // A health check that connects and leaves without a byte is no fault.
    let mut s = Sim::behind_balancer(Users::None);
    s.stream_end(Direction::Up);
    assert_eq!(s.take_actions(), [Action::Close]);
    assert_eq!(s.conn.outcome(), None);
    assert!(s.conn.is_health_check());
}

/// A balancer's health check (nothing, or its own header and then the
/// end) is told apart from clients, whom the access log names: a client
/// behind a header, a balancer's connection refused, and a balancer's own
/// connection that went on to a request.
#[test]
fn health_checks_are_told_apart_from_clients() {
    // HAProxy's version 1 checks name the connection's own endpoints.
    let own_v1 = b"PROXY TCP4 10.0.0.2 10.0.0.1 51000 1080\r\n";
    for header in [V2_LOCAL, b"PROXY UNKNOWN\r\n", own_v1] {
        let mut s = Sim::behind_balancer(Users::None);
        s.input(header);
        s.proxied(true);
        s.stream_end(Direction::Up);
        assert!(s.conn.is_health_check(), "{header:?}");
        // The same, with a greeting: still nothing a client asked for.
        let mut s = Sim::behind_balancer(Users::None);
        s.input(&[header, GREETING_NO_AUTH].concat());
        s.proxied(true);
        s.stream_end(Direction::Up);
        assert!(s.conn.is_health_check(), "{header:?} and a greeting");
        // A request on the balancer's own connection is a client's.
        let mut s = Sim::behind_balancer(Users::None);
        s.input(&[header, GREETING_NO_AUTH, REQUEST_IPV4].concat());
        s.proxied(true);
        s.stream_end(Direction::Up);
        assert!(!s.conn.is_health_check(), "{header:?} and a request");
    }
    // A client named by the header, even one that leaves at once.
    let mut s = Sim::behind_balancer(Users::None);
    s.input(&v2_header());
    s.proxied(true);
    s.stream_end(Direction::Up);
    assert!(!s.conn.is_health_check());
    // A balancer's connection refused for its header.
    let mut s = Sim::behind_balancer(Users::None);
    s.input(b"PROXY TCP4 ");
    s.stream_end(Direction::Up);
    assert!(!s.conn.is_health_check());
    // A client's own connection that leaves without a byte.
    let mut s = Sim::new(Users::None);
    s.stream_end(Direction::Up);
    assert!(!s.conn.is_health_check());
}

#[test]
fn a_header_from_a_peer_that_is_no_balancer_is_a_bad_version() {
    let untrusted = Outcome::ProxyHeader(ProxyRefusal::Untrusted);
    for header in [v2_header(), V1_HEADER.to_vec()] {
        let mut s = Sim::new(Users::None);
        s.input(&[&header[..], GREETING_NO_AUTH].concat());
        assert_refused(&mut s, &[0x05, 0xFF], untrusted);
        assert_eq!(s.conn.via(), None);
    }
    // Other bad versions stay bad versions.
    let mut s = Sim::new(Users::None);
    s.input(b"PROXY");
    assert_refused(&mut s, &[0x05, 0xFF], Outcome::BadVersion);
    let mut s = Sim::new(Users::None);
    s.input(&[0x04, 0x01, 0x00, 0x50]);
    assert_refused(&mut s, &[0x05, 0xFF], Outcome::BadVersion);
    // A balancer that sends a second header sends a bad greeting.
    let mut s = Sim::behind_balancer(Users::None);
    s.input(&[&v2_header()[..], &v2_header()[..]].concat());
    assert_eq!(s.take_actions(), [Action::Client(carried())]);
    s.proxied(true);
    assert_refused(&mut s, &[0x05, 0xFF], Outcome::BadVersion);
}

#[test]
fn the_greeting_behind_the_header_is_judged_after_a_slow_check_too() {
    // With users: the log in behind the header goes on as usual.
    let mut s = Sim::behind_balancer(Users::Alice);
    s.input(
        &[
            &v2_header()[..],
            GREETING_USERPASS,
            AUTH_ALICE,
            REQUEST_IPV4,
        ]
        .concat(),
    );
    assert_eq!(s.take_actions(), [Action::Client(carried())]);
    s.proxied(true);
    assert_eq!(s.take_sent(), [SELECT_USERPASS, AUTH_OK].concat());
    assert_eq!(s.take_actions(), [connect(0, ipv4_target())]);
    assert_eq!(s.conn.user().map(|u| &**u), Some("alice"));
}
