//! Multi-homing under failure: a logged-in session that outlives a dead
//! network path, and an administrator left with no path at all.
//!
//! Two network namespaces of the test's own, the server's and the
//! client's, joined by two pairs of veth interfaces: path 1 from 10.71.1.2
//! to 10.71.1.1, path 2 from 10.71.2.2 to 10.71.2.1. socks5d listens on
//! both server addresses; the client's one association has both (it starts
//! on path 1, the primary of both ends). A path is cut by netem dropping
//! every packet on both of its interfaces, a silent failure that only
//! timeouts and heartbeats reveal; it is mended by taking netem away.
//!
//! Both ends use the path settings [`PATHS`], whose greatest RTO is below
//! Linux's least (1 s): the bounds asserted here hold only if socks5d
//! applied its options to its associations (and the client its own).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use socks5d::mgmt::wire::{Request, Response};
use socks5d::sys::sctp::{PathParams, PathState, SctpSocket};

use super::support::*;

/// The server's address on each path.
const SERVER: [&str; 2] = ["10.71.1.1", "10.71.2.1"];
/// The client's.
const CLIENT: [&str; 2] = ["10.71.1.2", "10.71.2.2"];

/// Heartbeat 0.5 s, a path inactive after 2 timeouts in a row, an RTO of
/// 0.3 s: the options socks5d is started with, and the client's. The RTO
/// stays above the 0.2 s for which Linux delays an acknowledgement: below
/// it, an answer on path 1 acknowledged over path 2 (where no data of the
/// client's carries the acknowledgement at once) times out, and path 1 is
/// taken for dead again just after it came back.
const PATHS: PathParams = PathParams {
    heartbeat: Duration::from_millis(500),
    path_max_retrans: 1,
    rto_min: Duration::from_millis(300),
    rto_max: Duration::from_millis(300),
};

/// What the bounds allow beyond the protocol's timers: round trips,
/// scheduling on the guest's one CPU, the test's own steps.
const SLACK: Duration = Duration::from_millis(300);

/// Path changes are logged at info for a logged-in session, confirmations
/// at debug: the test waits for both.
const LOG: &str = "info,socks5d::mgmt::endpoint::sctp=debug";

/// The longest a heartbeat takes to come after the previous one on an
/// idle path: HB.interval plus the RTO and half of it again (Linux draws
/// the RTO's share between a half and one and a half).
fn heartbeat_period() -> Duration {
    PATHS.heartbeat + PATHS.rto_max * 3 / 2
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a valid literal")
}

/// Two namespaces, two paths, socks5d on the server's side.
struct TwoPaths {
    /// Killed before the namespaces go.
    daemon: Daemon,
    server: NetNs,
    client: NetNs,
}

impl TwoPaths {
    /// Builds the paths and starts socks5d with [`PATHS`] and `extra`.
    fn new(extra: &[&str]) -> TwoPaths {
        let server = NetNs::new("server");
        let client = NetNs::new("client");
        let client_ns = client.tid().to_string();
        for n in 0..2 {
            let (s, c) = (format!("s{}", n + 1), format!("c{}", n + 1));
            server.ip(&[
                "link", "add", &s, "type", "veth", "peer", "name", &c, "netns", &client_ns,
            ]);
            server.ip(&["addr", "add", &format!("{}/24", SERVER[n]), "dev", &s]);
            server.ip(&["link", "set", &s, "up"]);
            client.ip(&["addr", "add", &format!("{}/24", CLIENT[n]), "dev", &c]);
            client.ip(&["link", "set", &c, "up"]);
        }
        let secs = |d: Duration| d.as_secs_f64().to_string();
        let mut args: Vec<String> = vec![
            "-L".into(),
            SERVER[0].into(),
            "-L".into(),
            SERVER[1].into(),
            "--mgmt-heartbeat".into(),
            secs(PATHS.heartbeat),
            "--mgmt-path-max-retrans".into(),
            PATHS.path_max_retrans.to_string(),
            "--mgmt-rto-min".into(),
            secs(PATHS.rto_min),
            "--mgmt-rto-max".into(),
            secs(PATHS.rto_max),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let daemon = server.run(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Daemon::start_with_env(&Transport::Sctp, &[("RUST_LOG", LOG)], &args)
        });
        assert_eq!(
            daemon.mgmt_addrs,
            format!("{},{}", SERVER[0], SERVER[1]),
            "socks5d's management addresses"
        );
        TwoPaths {
            daemon,
            server,
            client,
        }
    }

    /// The server's address on path `n` with the management port.
    fn server_addr(&self, n: usize) -> SocketAddr {
        SocketAddr::new(ip(SERVER[n]), self.daemon.port())
    }

    /// An administrator's session from the client's namespace: one
    /// association started with both of the server's addresses, with
    /// [`PATHS`], logged in; returned once both ends have confirmed
    /// path 2, so that it can carry the session.
    fn admin(&self) -> Mgmt {
        let addrs = vec![self.server_addr(0), self.server_addr(1)];
        let to = addrs.clone();
        let sock = self
            .client
            .run(move || SctpSocket::connect_many_with(&to, Some(IO_TIMEOUT), Some(&PATHS)))
            .unwrap_or_else(|e| panic!("connect to {addrs:?} from the client's namespace: {e}"));
        let m = Mgmt {
            sock: Sock::Sctp(sock),
            addr: Endpoint::Sctp(addrs[0]),
        };
        assert_eq!(m.login(ADMIN, ADMIN_PW), [0x01, 0x00], "log in");
        let deadline = Instant::now() + Duration::from_secs(10);
        let confirmed = poll_until(deadline, Duration::from_millis(10), || {
            let info = sctp(&m)
                .path_info(self.server_addr(1))
                .unwrap_or_else(|e| panic!("SCTP_GET_PEER_ADDR_INFO of path 2: {e}"));
            (info.state == PathState::Active).then_some(info)
        });
        let info = confirmed.unwrap_or_else(|| panic!("the client never confirmed path 2"));
        assert!(
            info.rto <= PATHS.rto_max,
            "the client's RTO on path 2 is {:?}, above its RTO.Max: its path settings \
             were not applied",
            info.rto
        );
        let line = format!("peer={} state=confirmed", CLIENT[1]);
        let seen = self.daemon.wait_for_line(&line, 1, Duration::from_secs(10));
        assert!(
            seen.is_some(),
            "socks5d never confirmed path 2 ({line}):\n{}",
            self.daemon.stderr()
        );
        m
    }

    /// Path `n` drops every packet, both ways.
    fn cut(&self, n: usize) {
        let netem = ["root", "netem", "loss", "100%"];
        let s = format!("s{}", n + 1);
        let c = format!("c{}", n + 1);
        self.server
            .cmd("tc", &[&["qdisc", "add", "dev", &s][..], &netem].concat());
        self.client
            .cmd("tc", &[&["qdisc", "add", "dev", &c][..], &netem].concat());
    }

    /// Path `n` carries packets again.
    fn mend(&self, n: usize) {
        let s = format!("s{}", n + 1);
        let c = format!("c{}", n + 1);
        self.server.cmd("tc", &["qdisc", "del", "dev", &s, "root"]);
        self.client.cmd("tc", &["qdisc", "del", "dev", &c, "root"]);
    }

    /// Waits, at most `within`, for socks5d's line saying path `n` (the
    /// client's address on it) went to `state`, and returns how long that
    /// took from `since`.
    fn path_logged(&self, n: usize, state: &str, since: Instant, within: Duration) -> Duration {
        let line = "management path changed: link=";
        let want = format!("peer={} state={state}", CLIENT[n]);
        let deadline = since + within;
        let seen = poll_until(deadline, Duration::from_millis(5), || {
            self.daemon
                .stderr()
                .lines()
                .any(|l| l.contains(line) && l.contains(&want))
                .then(|| since.elapsed())
        });
        seen.unwrap_or_else(|| {
            panic!(
                "socks5d did not log path {} {state} within {within:?}:\n{}",
                n + 1,
                self.daemon.stderr()
            )
        })
    }
}

/// The session's SCTP socket.
fn sctp(m: &Mgmt) -> &SctpSocket {
    match &m.sock {
        Sock::Sctp(s) => s,
        Sock::Unix(_) => unreachable!("a case over SCTP"),
    }
}

/// Sends METRICS and returns the server address its answer came from
/// (which says the path the server sent it on); the answer must be
/// METRICS, which a session not logged in does not get.
fn metrics_from(m: &Mgmt) -> IpAddr {
    let mut out = Vec::new();
    Request::Metrics.emit(&mut out);
    m.send_raw(&out);
    let s = sctp(m);
    let mut msg = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut from = None;
    loop {
        let r = s
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("METRICS: receive: {e}"));
        if r.notification {
            continue;
        }
        assert!(r.len > 0, "METRICS: the server closed the session");
        msg.extend_from_slice(&buf[..r.len]);
        from = from.or(r.from);
        if r.eor {
            break;
        }
    }
    match parse_response(&msg, Request::Metrics.command()) {
        Response::Metrics(v) => assert!(v.len() >= 8, "METRICS answered {v:?}"),
        other => panic!("METRICS answered {other:?}"),
    }
    from.expect("recvmsg names the address an answer came from")
}

/// Path 1 fails while the client keeps asking METRICS: the session goes on
/// over path 2, logged in, within two RTOs (the request's retransmission
/// goes to the other path after at most RTO.Max, and so does the answer's);
/// socks5d logs path 1 unreachable. Then path 1 comes back, and the answers
/// with it within a heartbeat.
pub fn a_session_moves_to_the_other_path_and_back(t: &Transport) {
    assert_eq!(*t, Transport::Sctp, "a case about SCTP multi-homing");
    let net = TwoPaths::new(&[]);
    let m = net.admin();
    let (s1, s2) = (ip(SERVER[0]), ip(SERVER[1]));
    for i in 0..10 {
        assert_eq!(metrics_from(&m), s1, "answer {i}: path 1 is the primary");
    }

    net.cut(0);
    let cut = Instant::now();
    let from = metrics_from(&m);
    let failover = cut.elapsed();
    assert_eq!(from, s2, "the first answer after path 1 failed");
    let bound = PATHS.rto_max * 2 + SLACK;
    assert!(
        failover <= bound,
        "the first answer over path 2 came {failover:?} after path 1 failed; at most \
         {bound:?} (2 x RTO.Max + {SLACK:?})"
    );
    // The session goes on over path 2 while socks5d finds path 1 dead:
    // more than Path.Max.Retrans timeouts, a heartbeat period each.
    let bound = heartbeat_period() * (u32::from(PATHS.path_max_retrans) + 1) + SLACK;
    let mut answers = 0;
    let mut unreachable = None;
    while unreachable.is_none() || answers < 20 {
        assert_eq!(metrics_from(&m), s2, "answer {answers} with path 1 down");
        answers += 1;
        if unreachable.is_none()
            && net
                .daemon
                .stderr()
                .contains(&format!("peer={} state=unreachable", CLIENT[0]))
        {
            unreachable = Some(cut.elapsed());
        }
        assert!(
            unreachable.is_some() || cut.elapsed() <= bound,
            "socks5d did not log path 1 unreachable within {bound:?}:\n{}",
            net.daemon.stderr()
        );
    }
    let unreachable = unreachable.unwrap_or_default();

    net.mend(0);
    let mended = Instant::now();
    let bound = heartbeat_period() + SLACK;
    let back = loop {
        let from = metrics_from(&m);
        if from == s1 {
            break mended.elapsed();
        }
        assert_eq!(from, s2, "an answer while path 1 comes back");
        assert!(
            mended.elapsed() <= bound,
            "path 1 carries no answer {bound:?} after it was mended"
        );
    };
    let available = net.path_logged(0, "available", mended, bound);
    for i in 0..10 {
        assert_eq!(metrics_from(&m), s1, "answer {i} with path 1 back");
    }
    println!(
        "(failover {:.0} ms, bound {:.0} ms; path 1 logged unreachable after {:.0} ms; \
         answers over path 1 again {:.0} ms after it was mended, logged available after \
         {:.0} ms, bound {:.0} ms) ",
        failover.as_secs_f64() * 1e3,
        (PATHS.rto_max * 2 + SLACK).as_secs_f64() * 1e3,
        unreachable.as_secs_f64() * 1e3,
        back.as_secs_f64() * 1e3,
        available.as_secs_f64() * 1e3,
        bound.as_secs_f64() * 1e3,
    );
}

/// Both paths fail under an idle logged-in session: socks5d's heartbeats
/// go unanswered until the association's error count reaches
/// Association.Max.Retrans (net.sctp.association_max_retrans), at most one
/// heartbeat period each; the association is then lost, logged, and its
/// session slot free: with --max-admin-sessions 1, a log in refused while
/// it lived (X'03') now succeeds.
pub fn an_administrator_on_no_path_is_dropped(t: &Transport) {
    assert_eq!(*t, Transport::Sctp, "a case about SCTP multi-homing");
    let net = TwoPaths::new(&["--max-admin-sessions", "1"]);
    let m = net.admin();
    let local = net.server_addr(0);
    let log_in_here = move || {
        let m = Mgmt::connect(Endpoint::Sctp(local));
        m.login(ADMIN, ADMIN_PW)
    };
    assert_eq!(
        net.server.run(log_in_here),
        [0x01, 0x03],
        "a second administrator while the first is logged in"
    );
    let max_retrans: u32 = net.server.run(|| {
        let path = "/proc/sys/net/sctp/association_max_retrans";
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{path}: {text:?}: {e}"))
    });

    net.cut(0);
    net.cut(1);
    let cut = Instant::now();
    let bound = heartbeat_period() * max_retrans + SLACK;
    let lost = net
        .daemon
        .wait_for_line("management session lost:", 1, bound)
        .map(|_| cut.elapsed());
    let lost = lost.unwrap_or_else(|| {
        panic!(
            "socks5d did not drop the session on no path within {bound:?} \
             ({max_retrans} x {:?} + {SLACK:?}):\n{}",
            heartbeat_period(),
            net.daemon.stderr()
        )
    });
    assert_eq!(
        net.server.run(log_in_here),
        [0x01, 0x00],
        "a log in once the lost session's slot is free"
    );
    drop(m);
    println!(
        "(session dropped {:.1} s after its last path failed, bound {:.1} s: \
         {max_retrans} x {:.2} s + {:.1} s) ",
        lost.as_secs_f64(),
        bound.as_secs_f64(),
        heartbeat_period().as_secs_f64(),
        SLACK.as_secs_f64()
    );
}
