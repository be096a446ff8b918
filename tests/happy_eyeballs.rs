//! Happy Eyeballs (RFC 8305) through the real binary: a name whose first
//! address never answers connects through its second one after the
//! Connection Attempt Delay, not after the connect timeout.
//!
//! The address that never answers is a listener whose accept queue is full:
//! Linux drops every new SYN to it, so a connection attempt hangs as it
//! would towards a host that is down. Each test checks that premise first.

mod common;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{
    Auth, Daemon, access_fields, access_lines, close_tunnel, echo_server, exchange, run_brief,
    socks_connect, socks_connect_name,
};

const USER: &str = "alice";
const PASS: &str = "wonderland";
const BANNER: &[u8] = b"the address that answers\n";
/// Far longer than any test here may take: an attempt left to time out
/// fails the test.
const CONNECT_TIMEOUT: &str = "10";

/// A listener on `addr` that never accepts and whose queue is full, and
/// the connection that fills it.
struct Unanswering {
    addr: SocketAddr,
    _listener: TcpListener,
    _queued: TcpStream,
}

impl Unanswering {
    fn start(addr: SocketAddr) -> io::Result<Unanswering> {
        // Backlog 0: one connection completes into the queue, and from then
        // on the kernel drops SYNs (LISTENOVERFLOWS).
        let listener = socks5d::sys::net::reuseport_listener(addr, 0)?;
        let queued = TcpStream::connect(addr)?;
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            other => panic!("{addr} was meant never to answer a connect, got {other:?}"),
        }
        Ok(Unanswering {
            addr,
            _listener: listener,
            _queued: queued,
        })
    }
}

/// An echo target on 127.0.0.1 and an address that never answers on
/// `dead_ip`, both on one port (a name's addresses share DST.PORT).
fn targets(dead_ip: IpAddr) -> (Unanswering, SocketAddr) {
    for _ in 0..20 {
        let good = echo_server(BANNER);
        match Unanswering::start(SocketAddr::new(dead_ip, good.port())) {
            Ok(dead) => return (dead, good),
            // That port is taken on the other address: another pair.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => panic!("a listener on {dead_ip}: {e}"),
        }
    }
    panic!("no port free on both 127.0.0.1 and {dead_ip}");
}

fn daemon(extra: &[&str]) -> Daemon {
    let mut args = vec!["--connect-timeout", CONNECT_TIMEOUT];
    args.extend_from_slice(extra);
    Daemon::start_as(USER, PASS, &args)
}

/// CONNECT to `name` (mapped to the dead address, then the good one): it
/// must succeed through the good one within `at_least`..1 s, which the
/// access log confirms.
fn connects_past_the_dead_address(dead_ip: IpAddr, extra: &[&str], at_least: Duration) {
    let (dead, good) = targets(dead_ip);
    let name = "eyeballs.test";
    let map = format!("{name}={},{}", dead.addr.ip(), good.ip());
    let mut args = vec!["--map-host", &map];
    args.extend_from_slice(extra);
    let mut d = daemon(&args);

    let started = Instant::now();
    let (mut t, rep) = socks_connect_name(d.addr, Auth::User(USER, PASS), name, good.port());
    let took = started.elapsed();
    assert_eq!(rep, 0x00, "CONNECT {name} via {map}");
    exchange(&mut t, b"ping", &[BANNER, b"ping"].concat());
    assert!(close_tunnel(t).is_empty());
    assert!(
        took < Duration::from_secs(1),
        "CONNECT took {took:?} with {map}: the dead address held it up"
    );
    assert!(
        took >= at_least,
        "CONNECT took {took:?}: the second address was tried before the attempt delay"
    );

    assert_eq!(d.terminate().code(), Some(0), "stderr:\n{}", d.stderr());
    let log = d.stdout();
    let lines = access_lines(&log);
    assert_eq!(lines.len(), 1, "one access-log line:\n{log}");
    let f = access_fields(lines[0]);
    assert_eq!(f["target"], format!("{name}:{}", good.port()));
    assert_eq!(f["connected"], good.to_string(), "the winner is logged");
    assert_eq!(f["reply"], "00");
}

#[test]
fn a_dead_first_address_of_the_same_family_costs_the_attempt_delay() {
    let dead = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    connects_past_the_dead_address(dead, &[], Duration::from_millis(245));
}

#[test]
fn a_dead_ipv6_address_first_then_ipv4() {
    let dead = IpAddr::V6(Ipv6Addr::LOCALHOST);
    connects_past_the_dead_address(dead, &[], Duration::from_millis(245));
}

#[test]
fn the_attempt_delay_is_an_option() {
    let dead = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    connects_past_the_dead_address(
        dead,
        &["--connect-attempt-delay", "0.1"],
        Duration::from_millis(95),
    );
    let help = run_brief(&["--help"]);
    assert!(
        help.stdout.contains("--connect-attempt-delay S"),
        "{}",
        help.stdout
    );
    for bad in ["0.001", "0", "soon"] {
        let out = run_brief(&["-l", "127.0.0.1", "--connect-attempt-delay", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{bad}: {}", out.stderr);
    }
}

/// A target given as one IP address has one attempt, as before: the dead
/// address costs the whole connect timeout and the client gets X'04'.
#[test]
fn an_ip_target_is_one_attempt_with_the_connect_timeout() {
    let (dead, good) = targets(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let d = daemon(&["--connect-timeout", "0.5"]);
    let started = Instant::now();
    let (_t, rep) = socks_connect_name(
        d.addr,
        Auth::User(USER, PASS),
        &dead.addr.ip().to_string(),
        dead.addr.port(),
    );
    let took = started.elapsed();
    assert_eq!(rep, 0x04, "an attempt that timed out");
    assert!(
        took >= Duration::from_millis(495),
        "answered after {took:?}, before the connect timeout"
    );
    // The good address alone still works at once.
    let mut t = socks_connect(d.addr, Auth::User(USER, PASS), good);
    exchange(&mut t, b"x", &[BANNER, b"x"].concat());
}
