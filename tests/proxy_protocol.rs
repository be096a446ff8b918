//! `--proxy-protocol-from`, through the binary: the test plays the balancer
//! from 127.0.0.1 and sends PROXY protocol headers, versions 1 and 2,
//! naming other loopback (and IPv6) clients. The carried client is the
//! client of the access log (with `via=`), of the access rules and of
//! `--max-sessions-per-client`; a header split over writes, or sent with
//! the greeting in one write, works; LOCAL keeps the balancer as client; a
//! header from a peer that is no balancer, and a balancer's connection
//! without a valid header, are closed and counted (METRICS X'88').
//!
//! curl's `--haproxy-protocol` does not help here: with `--socks5` it
//! sends its header through the tunnel to the target, not to the proxy.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Auth, Daemon, UnixMgmt, access_fields, connect_request, dial_proxy, echo_server, exchange,
    read_method, read_reply, send_connect, temp_path,
};

/// How long socks5d may take to log a line or count something.
const SETTLE: Duration = Duration::from_secs(10);
/// METRICS ID X'02': connections open now.
const M_CONCURRENT: u8 = 0x02;
/// METRICS ID X'87': connections and requests refused for a session limit.
const M_SESSION_LIMIT: u8 = 0x87;
/// METRICS ID X'88': connections closed for a PROXY header.
const M_PROXY_REFUSED: u8 = 0x88;

/// The greeting offering USERNAME/PASSWORD.
const GREETING: [u8; 3] = [0x05, 0x01, 0x02];
/// The proxy user of these tests.
const USER: Auth<'static> = Auth::User("alice", "alice-pw");
/// Its RFC 1929 log in.
const LOGIN: &[u8] = b"\x01\x05alice\x08alice-pw";

/// A version 1 header for a TCP connection from `src` to `dst`.
fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// A version 2 header, command PROXY (`cmd` 0x21) or LOCAL (0x20), for a
/// TCP connection from `src` to `dst`, with a TLV (HAProxy's unique id) to
/// skip.
fn v2(cmd: u8, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut block = Vec::new();
    let fam = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            block.extend_from_slice(&s.octets());
            block.extend_from_slice(&d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            block.extend_from_slice(&s.octets());
            block.extend_from_slice(&d.octets());
            0x21
        }
        _ => panic!("one family"),
    };
    block.extend_from_slice(&src.port().to_be_bytes());
    block.extend_from_slice(&dst.port().to_be_bytes());
    block.extend_from_slice(&[0x05, 0x00, 0x04, b'i', b'd', b'4', b'2']);
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(cmd);
    h.push(fam);
    h.extend_from_slice(&(block.len() as u16).to_be_bytes());
    h.extend_from_slice(&block);
    h
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

/// socks5d with `--proxy-protocol-from FROM`, the user alice, on
/// 127.0.0.1, its management socket for METRICS, and `extra`.
fn daemon(from: &str, mgmt: &UnixMgmt, extra: &[&str]) -> Daemon {
    let mut args = vec!["--proxy-protocol-from", from];
    args.extend_from_slice(extra);
    mgmt.start_as("alice", "alice-pw", &args)
}

/// Sends `header`, the greeting and the log in in one write, as balancers
/// do with the client's first segment; reads their answers.
fn greet_behind(d: &Daemon, header: &[u8]) -> TcpStream {
    let mut s = dial_proxy(d.addr);
    s.write_all(&[header, &GREETING, LOGIN].concat())
        .expect("send the header, the greeting and the log in");
    read_login(&mut s);
    s
}

/// Reads the method selection and the log in's status.
fn read_login(s: &mut TcpStream) {
    read_method(s, 0x02).expect("the greeting behind the header is answered");
    let mut status = [0u8; 2];
    s.read_exact(&mut status).expect("the log in is answered");
    assert_eq!(status, [0x01, 0x00], "alice logs in");
}

/// A tunnel to `target` through `d` for the client `header` names.
fn tunnel_behind(d: &Daemon, header: &[u8], target: SocketAddr) -> TcpStream {
    let mut s = greet_behind(d, header);
    connect_request(&mut s, target).expect("CONNECT behind the header");
    s
}

/// Whether socks5d closed `s` (end of stream or reset) without sending
/// anything first.
fn closed_silently(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(n) => panic!("socks5d answered {:02x?}", &buf[..n]),
    }
}

/// The access-log line of the connection from local port `port` of ours
/// (the balancer's side).
fn line_of(d: &Daemon, s: &TcpStream, via: bool) -> std::collections::HashMap<String, String> {
    let local = s.local_addr().expect("local address");
    let needle = if via {
        format!(" via={local} ")
    } else {
        format!(" client={local} ")
    };
    access_fields(&d.access_line(&needle, SETTLE))
}

/// METRICS once every connection has closed: whatever a connection
/// counted, it counted before its close, which these numbers include.
fn settled(mgmt: &UnixMgmt) -> std::collections::BTreeMap<u8, u64> {
    mgmt.wait_metrics(SETTLE, |m| m.get(&M_CONCURRENT).copied() == Some(0))
}

#[test]
fn v1_and_v2_headers_name_the_client_and_the_greeting_behind_them_is_kept() {
    let mgmt = UnixMgmt::new("pp-names");
    let d = daemon("127.0.0.1/32", &mgmt, &[]);
    let echo = echo_server(b"");
    let to = d.addr;
    for client in [
        addr("127.0.0.5:40005"),
        addr("[::ffff:127.0.0.6]:40006"),
        addr("[2001:db8::7]:40007"),
    ] {
        let dst = if client.is_ipv4() {
            to
        } else {
            addr("[2001:db8::1]:1080")
        };
        for (version, header) in [("v1", v1(client, dst)), ("v2", v2(0x21, client, dst))] {
            let mut t = tunnel_behind(&d, &header, echo);
            exchange(&mut t, b"through the balancer", b"through the balancer");
            let _ = t.shutdown(std::net::Shutdown::Write);
            let mut rest = Vec::new();
            t.read_to_end(&mut rest).expect("the tunnel closes");
            let f = line_of(&d, &t, true);
            assert_eq!(f["client"], client.to_string(), "{version} {client}");
            assert_eq!(f["via"], t.local_addr().unwrap().to_string());
            assert_eq!(f["reply"], "00");
            assert_eq!(f["target"], echo.to_string());
        }
    }
    assert_eq!(settled(&mgmt).get(&M_PROXY_REFUSED).copied(), Some(0));
}

#[test]
fn a_header_split_over_several_writes_works() {
    let mgmt = UnixMgmt::new("pp-split");
    let d = daemon("127.0.0.1/32", &mgmt, &[]);
    let echo = echo_server(b"");
    for header in [
        v1(addr("127.0.0.8:1234"), d.addr),
        v2(0x21, addr("127.0.0.9:1234"), d.addr),
    ] {
        let mut s = dial_proxy(d.addr);
        // A write per piece, a pause between them so that they arrive apart:
        // socks5d must keep a partial header and wait for the rest.
        for piece in header.chunks(header.len() / 3 + 1) {
            s.write_all(piece).expect("send a piece of the header");
            thread::sleep(Duration::from_millis(30));
        }
        s.write_all(&[&GREETING[..], LOGIN].concat())
            .expect("send the greeting");
        read_login(&mut s);
        connect_request(&mut s, echo).expect("CONNECT");
        exchange(&mut s, b"split", b"split");
        let _ = s.shutdown(std::net::Shutdown::Write);
        let f = line_of(&d, &s, true);
        assert!(f["client"].starts_with("127.0.0."), "{f:?}");
        assert_ne!(f["client"], s.local_addr().unwrap().to_string());
    }
}

#[test]
fn an_access_rule_keyed_on_the_client_judges_the_carried_address() {
    let mgmt = UnixMgmt::new("pp-rules");
    let rules = temp_path("pp-rules");
    std::fs::write(
        &rules,
        "allow from 127.0.0.5\nallow from 2001:db8::5\ndeny\n",
    )
    .expect("write the rules");
    let rules_arg = rules.to_str().expect("a UTF-8 path");
    let d = daemon("127.0.0.1/32", &mgmt, &["--rules", rules_arg]);
    let echo = echo_server(b"");
    // The balancer's own address, 127.0.0.1, is denied: only the carried
    // address can let these through.
    for allowed in [addr("127.0.0.5:1000"), addr("[2001:db8::5]:1000")] {
        let dst = if allowed.is_ipv4() {
            d.addr
        } else {
            addr("[2001:db8::1]:1080")
        };
        let mut t = tunnel_behind(&d, &v2(0x21, allowed, dst), echo);
        exchange(&mut t, b"allowed", b"allowed");
    }
    for denied in [addr("127.0.0.6:1000"), addr("[2001:db8::6]:1000")] {
        let dst = if denied.is_ipv4() {
            d.addr
        } else {
            addr("[2001:db8::1]:1080")
        };
        let mut s = greet_behind(&d, &v1(denied, dst));
        send_connect(&mut s, echo).expect("send CONNECT");
        let reply = read_reply(&mut s).expect("a reply");
        assert_eq!(reply.code, 0x02, "{denied} was let through");
        let f = line_of(&d, &s, true);
        assert_eq!(f["client"], denied.to_string());
        assert_eq!(f["reply"], "02");
    }
    // Without a header the balancer is judged as itself: denied.
    let mgmt2 = UnixMgmt::new("pp-rules-direct");
    let direct = daemon("127.0.0.2/32", &mgmt2, &["--rules", rules_arg]);
    let got = common::try_socks_connect(direct.addr, USER, echo);
    assert!(
        matches!(got, Err(common::SocksError::ConnectFailed(0x02))),
        "127.0.0.1 itself was let through: {got:?}"
    );
    let _ = std::fs::remove_file(&rules);
}

#[test]
fn max_sessions_per_client_counts_the_carried_address() {
    let mgmt = UnixMgmt::new("pp-limit");
    let d = daemon("127.0.0.1/32", &mgmt, &["--max-sessions-per-client", "1"]);
    let echo = echo_server(b"");
    let a = addr("127.0.0.5:1000");
    let b = addr("127.0.0.6:1000");
    let first = tunnel_behind(&d, &v2(0x21, a, d.addr), echo);
    // A second connection for the same client is closed once its header
    // names it; the balancer's address holds two by then, and is no limit.
    let mut second = dial_proxy(d.addr);
    second
        .write_all(&[&v2(0x21, a, d.addr)[..], &GREETING].concat())
        .expect("send");
    assert!(closed_silently(&mut second), "a second session for {a}");
    mgmt.wait_metrics(SETTLE, |m| m.get(&M_SESSION_LIMIT).copied() == Some(1));
    let mut other = tunnel_behind(&d, &v1(b, d.addr), echo);
    exchange(&mut other, b"another client", b"another client");
    // Closing gives the session back to the carried address.
    let local = first.local_addr().unwrap();
    drop(first);
    d.access_line(&format!("client={a} via={local} "), SETTLE);
    let mut again = tunnel_behind(&d, &v2(0x21, a, d.addr), echo);
    exchange(&mut again, b"again", b"again");
    drop((other, again));
    let m = settled(&mgmt);
    assert_eq!(m.get(&M_SESSION_LIMIT).copied(), Some(1));
    assert_eq!(m.get(&M_PROXY_REFUSED).copied(), Some(0));
}

#[test]
fn local_and_unknown_keep_the_balancer_as_client() {
    let mgmt = UnixMgmt::new("pp-local");
    let d = daemon("127.0.0.1/32", &mgmt, &[]);
    let echo = echo_server(b"");
    let any = addr("127.0.0.9:9");
    for header in [v2(0x20, any, any), b"PROXY UNKNOWN\r\n".to_vec()] {
        let mut t = tunnel_behind(&d, &header, echo);
        exchange(&mut t, b"health", b"health");
        let _ = t.shutdown(std::net::Shutdown::Write);
        let f = line_of(&d, &t, false);
        assert_eq!(f["client"], t.local_addr().unwrap().to_string());
        assert!(!f.contains_key("via"), "{f:?}");
        assert_eq!(f["reply"], "00");
    }
    assert_eq!(settled(&mgmt).get(&M_PROXY_REFUSED).copied(), Some(0));
}

/// Health checks are no fault and no client's: a connect and close, a
/// LOCAL header and close, and HAProxy's version 1 check (a header naming
/// the connection's own endpoints) leave no access-log line, and are not
/// counted as refused. One worker: its lines come in the order its
/// connections close, so the tunnel's line, written after the checks
/// closed, says they would have been written by then.
#[test]
fn health_checks_are_neither_logged_nor_counted() {
    let mgmt = UnixMgmt::new("pp-checks");
    let d = daemon("127.0.0.1/32", &mgmt, &["--workers", "1"]);
    let echo = echo_server(b"");
    let mut checks = Vec::new();
    let probe = dial_proxy(d.addr);
    checks.push(probe.local_addr().unwrap());
    drop(probe);
    let any = addr("127.0.0.9:9");
    let mut local = dial_proxy(d.addr);
    local.write_all(&v2(0x20, any, any)).unwrap();
    checks.push(local.local_addr().unwrap());
    drop(local);
    let mut own = dial_proxy(d.addr);
    let me = own.local_addr().unwrap();
    own.write_all(&v1(me, d.addr)).unwrap();
    checks.push(me);
    drop(own);
    let mut t = tunnel_behind(&d, &v1(addr("127.0.0.5:4000"), d.addr), echo);
    exchange(&mut t, b"client", b"client");
    let _ = t.shutdown(std::net::Shutdown::Write);
    d.access_line(" client=127.0.0.5:4000 ", SETTLE);
    let log = d.stdout();
    for c in &checks {
        assert!(!log.contains(&format!("client={c} ")), "{c} logged:\n{log}");
    }
    assert_eq!(settled(&mgmt).get(&M_PROXY_REFUSED).copied(), Some(0));
}

#[test]
fn a_header_from_a_peer_that_is_no_balancer_is_refused_and_counted() {
    let mgmt = UnixMgmt::new("pp-untrusted");
    // Only 127.0.0.2 is a balancer; the test connects from 127.0.0.1. One
    // worker: the lines are bounded per worker.
    let d = daemon("127.0.0.2/32", &mgmt, &["--workers", "1"]);
    let echo = echo_server(b"");
    for header in [
        v1(addr("192.0.2.1:1"), d.addr),
        v2(0x21, addr("192.0.2.1:1"), d.addr),
    ] {
        let mut s = dial_proxy(d.addr);
        s.write_all(&[&header[..], &GREETING].concat())
            .expect("send");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("socks5d closes");
        assert_eq!(answer, [0x05, 0xFF], "answered as a bad version");
        let f = line_of(&d, &s, false);
        assert_eq!(f["reply"], "bad-version");
    }
    mgmt.wait_metrics(SETTLE, |m| m.get(&M_PROXY_REFUSED).copied() == Some(2));
    let line = d.stderr_line("connection closed for its proxy header:", SETTLE);
    assert!(line.contains("source=127.0.0.1 reason=untrusted"), "{line}");
    // Clients that send no header are served as ever.
    let mut t = common::socks_connect(d.addr, USER, echo);
    exchange(&mut t, b"plain", b"plain");
    // One line at most per 10 s: the second refusal was counted, not logged.
    let lines = d
        .stderr()
        .lines()
        .filter(|l| l.contains("closed for its proxy header"))
        .count();
    assert_eq!(lines, 1, "{}", d.stderr());
}

#[test]
fn a_balancer_connection_without_a_valid_header_is_closed_and_counted() {
    let mgmt = UnixMgmt::new("pp-missing");
    let d = daemon("127.0.0.1/32", &mgmt, &["--handshake-timeout", "0.5"]);
    let cases: [(&str, &[u8]); 3] = [
        ("socks directly", &GREETING),
        (
            "a malformed header",
            b"PROXY TCP4 127.0.0.5 127.0.0.1 80 080\r\n",
        ),
        ("too slow", b"PROXY TCP4 "),
    ];
    for (i, (what, bytes)) in cases.iter().enumerate() {
        let mut s = dial_proxy(d.addr);
        let t0 = Instant::now();
        s.write_all(bytes).expect("send");
        assert!(closed_silently(&mut s), "{what}");
        if *what == "too slow" {
            assert!(t0.elapsed() >= Duration::from_millis(400), "{what}");
        }
        let f = line_of(&d, &s, false);
        assert_eq!(f["reply"], "bad-proxy-header", "{what}");
        mgmt.wait_metrics(SETTLE, |m| {
            m.get(&M_PROXY_REFUSED).copied() == Some(i as u64 + 1)
        });
    }
    let line = d.stderr_line("connection closed for its proxy header:", SETTLE);
    assert!(
        line.contains("source=127.0.0.1 reason=invalid detail=no-signature"),
        "{line}"
    );
}
