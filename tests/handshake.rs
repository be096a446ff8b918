//! The SOCKS5 handshake against the real server over loopback TCP: method
//! negotiation, RFC 1929 log in, requests and their replies, name
//! resolution, the handshake timeout and the access log.

mod common;
mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use socks5d::server::AccessLog;

use support::*;

#[test]
fn handshake_one_byte_per_write_completes_and_relays() {
    let proxy = Proxy::start(1);
    let echo = Echo::start(v4_any_port());
    let mut s = dial(proxy.addr);
    // `dial` set TCP_NODELAY: each one-byte write leaves as its own segment.
    // The pause between bytes has nothing to wait for; it only keeps the
    // bytes from being coalesced in the server's receive queue, so that the
    // server really does see each message split over many reads.
    let send_bytewise = |s: &mut std::net::TcpStream, bytes: &[u8]| {
        for b in bytes {
            s.write_all(std::slice::from_ref(b)).expect("send a byte");
            s.flush().expect("flush");
            thread::sleep(Duration::from_millis(2));
        }
    };
    send_bytewise(&mut s, &greeting(&[0x02]));
    assert_eq!(read_method(&mut s).unwrap(), 0x02);
    send_bytewise(&mut s, &auth_request(&user_name(0), &password(0)));
    assert_eq!(read_auth_status(&mut s).unwrap(), 0x00);
    send_bytewise(&mut s, &request(CMD_CONNECT, &Dst::Ip(echo.addr)));
    let reply = read_reply(&mut s).unwrap();
    assert_eq!(reply.code, REP_SUCCEEDED, "{reply:?}");
    // The tunnel relays, also when the payload comes a byte at a time.
    send_bytewise(&mut s, b"split payload");
    let mut back = [0u8; 13];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"split payload");
    round_trip(&mut s, &pattern(1, 10_000));
}

#[test]
fn wrong_password_gets_status_01_and_close() {
    let proxy = Proxy::start(2);
    let mut s = dial(proxy.addr);
    s.write_all(&greeting(&[0x02])).unwrap();
    assert_eq!(read_method(&mut s).unwrap(), 0x02);
    // User 0's name with user 1's password.
    s.write_all(&auth_request(&user_name(0), &password(1)))
        .unwrap();
    assert_eq!(read_auth_status(&mut s).unwrap(), 0x01);
    expect_eof(&mut s, Duration::from_secs(5));
}

#[test]
fn unknown_user_gets_status_01_and_close() {
    let proxy = Proxy::start(1);
    let mut s = dial(proxy.addr);
    s.write_all(&greeting(&[0x02])).unwrap();
    assert_eq!(read_method(&mut s).unwrap(), 0x02);
    s.write_all(&auth_request(b"nobody", &password(0))).unwrap();
    assert_eq!(read_auth_status(&mut s).unwrap(), 0x01);
    expect_eof(&mut s, Duration::from_secs(5));
}

#[test]
fn no_auth_only_greeting_with_users_gets_ff_and_close() {
    let proxy = Proxy::start(1);
    let mut s = dial(proxy.addr);
    s.write_all(&greeting(&[0x00])).unwrap();
    assert_eq!(read_method(&mut s).unwrap(), 0xFF);
    expect_eof(&mut s, Duration::from_secs(5));
}

#[test]
fn without_users_method_00_is_accepted_and_connect_works() {
    let proxy = Proxy::start(0);
    let echo = Echo::start(v4_any_port());
    let mut s = dial(proxy.addr);
    // A client offering both: with no users the server must pick X'00'.
    s.write_all(&greeting(&[0x02, 0x00])).unwrap();
    assert_eq!(read_method(&mut s).unwrap(), 0x00);
    s.write_all(&request(CMD_CONNECT, &Dst::Ip(echo.addr)))
        .unwrap();
    let reply = read_reply(&mut s).unwrap();
    assert_eq!(reply.code, REP_SUCCEEDED, "{reply:?}");
    round_trip(&mut s, b"no authentication needed");
}

/// Sends `req` after a successful log in and returns the reply; the server
/// must close the connection after a refusal.
fn refused_request(proxy: &Proxy, req: &[u8]) -> Reply {
    let mut s = dial(proxy.addr);
    let (u, p) = proxy.creds().expect("users configured");
    s.write_all(&greeting(&[0x02])).unwrap();
    assert_eq!(read_method(&mut s).unwrap(), 0x02);
    s.write_all(&auth_request(u, p)).unwrap();
    assert_eq!(read_auth_status(&mut s).unwrap(), 0x00);
    s.write_all(req).unwrap();
    let reply = read_reply(&mut s).unwrap();
    expect_eof(&mut s, Duration::from_secs(5));
    reply
}

#[test]
fn unknown_commands_get_07() {
    let proxy = Proxy::start(1);
    // A target that exists, so a server that wrongly treated the command as
    // CONNECT would answer X'00'.
    let echo = Echo::start(v4_any_port());
    for cmd in [0x00, 0x04, 0x09, 0xFF] {
        let reply = refused_request(&proxy, &request(cmd, &Dst::Ip(echo.addr)));
        assert_eq!(reply.code, REP_COMMAND_NOT_SUPPORTED, "CMD {cmd:#04x}");
    }
}

#[test]
fn unknown_address_type_gets_08() {
    let proxy = Proxy::start(1);
    let raw = Dst::Raw(vec![0x05, 127, 0, 0, 1, 0, 80]);
    let reply = refused_request(&proxy, &request(CMD_CONNECT, &raw));
    assert_eq!(reply.code, REP_ADDRESS_TYPE_NOT_SUPPORTED);
}

#[test]
fn connect_to_closed_port_gets_05() {
    let proxy = Proxy::start(1);
    let dst = Dst::Ip(closed_port(Ipv4Addr::LOCALHOST.into()));
    let (mut s, reply) = proxy.connect(&dst);
    assert_eq!(reply.code, REP_CONNECTION_REFUSED, "{reply:?}");
    expect_eof(&mut s, Duration::from_secs(5));
}

#[test]
fn ipv6_target_works() {
    let proxy = Proxy::start(1);
    let echo = Echo::start(v6_any_port());
    let mut s = proxy.tunnel(&Dst::Ip(echo.addr));
    assert_eq!(echo.next_peer().ip(), IpAddr::from(Ipv6Addr::LOCALHOST));
    round_trip(&mut s, &pattern(6, 5_000));
}

#[test]
fn domain_target_localhost_works() {
    let proxy = Proxy::start(1);
    let first = *resolve("localhost").first().expect("localhost resolves");
    let echo = Echo::start(SocketAddr::new(first, 0));
    let mut s = proxy.tunnel(&Dst::Name("localhost".into(), echo.addr.port()));
    round_trip(&mut s, &pattern(7, 5_000));
}

/// A name with two addresses, a target listening on only one of them:
/// socks5d must try every address the name resolves to, in order, not only
/// the first. The name comes from the server's host map (`--map-host`), so
/// the test does not depend on what this machine's hosts file says.
#[test]
fn every_resolved_address_is_tried() {
    let log = temp_path("every-address");
    let v4: IpAddr = Ipv4Addr::LOCALHOST.into();
    let v6: IpAddr = Ipv6Addr::LOCALHOST.into();
    let mut cfg = config(1);
    cfg.access_log = AccessLog::File(log.clone());
    cfg.hosts.insert("six-first.test".into(), vec![v6, v4]);
    cfg.hosts.insert("four-first.test".into(), vec![v4, v6]);
    let proxy = Proxy::with_config(cfg);

    // The listener is on the second address of each name.
    for (name, only) in [("six-first.test", v4), ("four-first.test", v6)] {
        let echo = Echo::start(SocketAddr::new(only, 0));
        let port = echo.addr.port();
        let (mut s, reply) = proxy.connect(&Dst::Name(name.into(), port));
        assert_eq!(
            reply.code, REP_SUCCEEDED,
            "{name}:{port}, target only on {only}"
        );
        round_trip(&mut s, b"found it");
        close_and_drain(s);
        let line = wait_log_line(&log, Duration::from_secs(5), |l| {
            l.contains(&format!(" target={name}:{port} "))
        });
        let want = format!(" connected={} ", SocketAddr::new(only, port));
        assert!(line.contains(&want), "expected {want:?} in {line:?}");
    }

    // Neither address listens: the last error (refused) is the reply.
    let port = closed_port(v4).port();
    let (mut s, reply) = proxy.connect(&Dst::Name("six-first.test".into(), port));
    assert_eq!(reply.code, REP_CONNECTION_REFUSED, "{reply:?}");
    expect_eof(&mut s, Duration::from_secs(5));
    let _ = std::fs::remove_file(&log);
}

#[test]
fn unresolvable_name_gets_04() {
    let proxy = Proxy::start(1);
    let (mut s, reply) = proxy.connect(&Dst::Name("no-such-host.invalid".into(), 80));
    assert_eq!(reply.code, REP_HOST_UNREACHABLE, "{reply:?}");
    expect_eof(&mut s, Duration::from_secs(5));
}

#[test]
fn success_reply_bnd_is_the_outbound_socket_address() {
    let proxy = Proxy::start(1);
    for bind in [v4_any_port(), v6_any_port()] {
        let target = Target::start(bind);
        let (_s, reply) = proxy.connect(&Dst::Ip(target.addr));
        assert_eq!(reply.code, REP_SUCCEEDED);
        let (_conn, peer) = target.accept();
        assert_eq!(
            reply.bnd,
            Some(peer),
            "BND must be the proxy's address as the target sees it"
        );
    }
}

#[test]
fn stalled_handshake_is_closed_after_timeout_while_others_proceed() {
    let mut cfg = config(1);
    cfg.worker.handshake_timeout = Duration::from_secs(1);
    // One worker: the stalled client and the others share one event loop.
    cfg.workers = Some(1);
    let proxy = Proxy::with_config(cfg);
    let echo = Echo::start(v4_any_port());

    let addr = proxy.addr;
    let (done_tx, done) = mpsc::channel();
    let stalled = thread::spawn(move || {
        let start = Instant::now();
        let mut s = dial(addr);
        s.write_all(&[0x05]).unwrap(); // one byte of the greeting, then nothing
        expect_eof(&mut s, Duration::from_secs(5));
        let took = start.elapsed();
        let _ = done_tx.send(());
        took
    });

    // Full tunnels, one after another, for as long as the stalled client is
    // waiting for its timeout.
    let mut tunnels = 0;
    let mut slowest = Duration::ZERO;
    let give_up = Instant::now() + Duration::from_secs(10);
    // Until the stalled client reports, or its thread ends in a panic.
    while matches!(done.try_recv(), Err(mpsc::TryRecvError::Empty)) {
        assert!(
            Instant::now() < give_up,
            "the stalled client never finished"
        );
        let t = Instant::now();
        let mut s = proxy.tunnel(&Dst::Ip(echo.addr));
        round_trip(&mut s, &pattern(tunnels, 2_000));
        close_and_drain(s);
        slowest = slowest.max(t.elapsed());
        tunnels += 1;
    }
    let took = stalled.join().expect("stalled client");
    assert!(
        took >= Duration::from_millis(900),
        "closed after {took:?}, before the 1 s handshake timeout"
    );
    assert!(took <= Duration::from_secs(5), "closed after {took:?}");
    assert!(tunnels >= 3, "only {tunnels} tunnels during the stall");
    assert!(
        slowest < Duration::from_millis(500),
        "a tunnel took {slowest:?} while another client stalled"
    );
}

#[test]
fn access_log_line_of_a_tunnel() {
    let log = temp_path("access");
    let mut cfg = config(1);
    cfg.access_log = AccessLog::File(log.clone());
    let proxy = Proxy::with_config(cfg);
    let target = Target::start(v4_any_port());

    let mut s = proxy.tunnel(&Dst::Ip(target.addr));
    let (mut conn, _) = target.accept();
    let up = pattern(10, 1_234);
    let down = pattern(11, 5_678);
    s.write_all(&up).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    assert!(got == up);
    conn.write_all(&down).unwrap();
    drop(conn);
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    assert!(back == down);
    drop(s);

    let line = wait_log_line(&log, Duration::from_secs(5), |l| l.contains(" reply="));
    let user = String::from_utf8(user_name(0)).unwrap();
    for want in [
        format!(" user={user} "),
        format!(" target={} ", target.addr),
        format!(" connected={} ", target.addr),
        " reply=00 ".to_owned(),
        " up=1234 ".to_owned(),
        " down=5678 ".to_owned(),
    ] {
        assert!(line.contains(&want), "expected {want:?} in {line:?}");
    }
    drop(proxy); // every record written
    let text = std::fs::read_to_string(&log).unwrap();
    let pw = String::from_utf8(password(0)).unwrap();
    assert!(!text.contains(&pw), "the password is in the access log");
    let _ = std::fs::remove_file(&log);
}
