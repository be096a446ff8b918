//! The Prometheus endpoint (--metrics-listen) through the real binary: a
//! scrape holds exactly the traffic the test made (totals and per user,
//! equal to USER_METRICS), `promtool check metrics` has nothing to say
//! about it, --metrics-max-users sums the rest into user="other", a real
//! Prometheus server scraping socks5d on loopback sees the exact count, and
//! the HTTP edge cases (unknown path, other methods, oversized and slow
//! requests, many keep-alive clients, the connection limit) leave the
//! endpoint up and SOCKS clients as fast as before, an address taken
//! stops the start, and contrib/'s scrape configuration and Grafana
//! dashboard fit the endpoint.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::{
    Auth, Daemon, HttpConn, PrometheusServer, SocksError, UM_AUTH_FAILED, UM_BYTES_DOWN,
    UM_BYTES_UP, UM_DENIED, UM_OPEN, UM_SESSIONS, UnixMgmt, echo_server, metrics_addr, open_fds,
    promtool_check, rss_kib, samples, scrape, try_socks_connect, try_socks_login,
};

/// How long socks5d may take to publish a count (workers report every
/// 20 to 40 ms).
const SETTLE: Duration = Duration::from_secs(10);

/// The echo target's banner.
const BANNER: &[u8] = b"hi";

/// One tunnel through `proxy` as `auth` to the echo target `echo`: the
/// banner, then `n` bytes up and the same `n` back; closed at the end.
fn tunnel(proxy: SocketAddr, auth: Auth<'_>, echo: SocketAddr, n: usize) {
    let mut t = try_socks_connect(proxy, auth, echo).expect("a tunnel");
    let mut banner = [0u8; 2];
    t.read_exact(&mut banner).expect("the banner");
    let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    t.write_all(&data).expect("write through the tunnel");
    let mut back = vec![0u8; n];
    t.read_exact(&mut back).expect("the echo");
    assert_eq!(back, data);
}

/// A user's expected counters, in USER_METRICS order X'01' to X'06':
/// sessions, open, bytes up, bytes down, failed log ins, denied.
type Want = [u64; 6];

/// `user`'s series in `s` as [`Want`] (absent series read as `None`).
fn user_series(s: &BTreeMap<String, f64>, user: &str) -> Option<Want> {
    let get = |series: String| s.get(&series).map(|v| *v as u64);
    Some([
        get(format!("socks5d_user_sessions_total{{user=\"{user}\"}}"))?,
        get(format!("socks5d_user_sessions_open{{user=\"{user}\"}}"))?,
        get(format!(
            "socks5d_user_bytes_total{{user=\"{user}\",direction=\"up\"}}"
        ))?,
        get(format!(
            "socks5d_user_bytes_total{{user=\"{user}\",direction=\"down\"}}"
        ))?,
        get(format!(
            "socks5d_user_auth_failures_total{{user=\"{user}\"}}"
        ))?,
        get(format!("socks5d_user_denied_total{{user=\"{user}\"}}"))?,
    ])
}

/// A USER_METRICS entry as [`Want`].
fn user_metrics_of(values: &BTreeMap<u8, u64>) -> Want {
    [
        UM_SESSIONS,
        UM_OPEN,
        UM_BYTES_UP,
        UM_BYTES_DOWN,
        UM_AUTH_FAILED,
        UM_DENIED,
    ]
    .map(|id| values.get(&id).copied().unwrap_or(u64::MAX))
}

/// Scrapes until `done` holds for the samples; returns the last scrape's
/// body. Fails the test with the last body after [`SETTLE`].
fn scrape_until(addr: SocketAddr, done: impl Fn(&BTreeMap<String, f64>) -> bool) -> String {
    let deadline = Instant::now() + SETTLE;
    loop {
        let body = scrape(addr).text();
        if done(&samples(&body)) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "the scrape did not reach the expected values within {SETTLE:?}; last:\n{body}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The rules file beside the management socket: every target but
/// 127.0.0.1:`port`, which is denied.
fn rules_denying(mgmt: &UnixMgmt, port: u16) -> PathBuf {
    let rules = mgmt.socket.with_file_name("prometheus.rules");
    fs::write(&rules, format!("deny to 127.0.0.1 port {port}\nallow\n")).unwrap();
    rules
}

/// Seconds since the Unix epoch.
fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_scrape_holds_exactly_the_traffic_made_and_promtool_finds_nothing_to_say() {
    let started = now_secs();
    let mgmt = UnixMgmt::new("prom-exact");
    let denied_port = common::closed_port();
    let rules = rules_denying(&mgmt, denied_port);
    let d = mgmt.start_as(
        "alice",
        "alice-pw",
        &[
            "-u",
            "bob:bob-pw",
            "--rules",
            rules.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
            "--workers",
            "2",
        ],
    );
    let m = metrics_addr(&d);
    // Every worker has its series from the start, before it reports.
    let first = samples(&scrape(m).text());
    for w in ["0", "1"] {
        let series = format!("socks5d_worker_sessions{{worker=\"{w}\"}}");
        assert_eq!(first.get(&series), Some(&0.0), "{series}");
    }
    let echo = echo_server(BANNER);
    let alice = Auth::User("alice", "alice-pw");

    tunnel(d.addr, alice, echo, 1000);
    tunnel(d.addr, alice, echo, 3000);
    tunnel(d.addr, Auth::User("bob", "bob-pw"), echo, 500);
    assert!(matches!(
        try_socks_login(d.addr, Auth::User("alice", "wrong")),
        Err(SocksError::AuthFailed(_))
    ));
    assert!(matches!(
        try_socks_connect(
            d.addr,
            alice,
            SocketAddr::from(([127, 0, 0, 1], denied_port))
        ),
        Err(SocksError::ConnectFailed(0x02))
    ));

    let want: [(&str, Want); 3] = [
        ("alice", [2, 0, 4000, 4004, 1, 1]),
        ("bob", [1, 0, 500, 502, 0, 0]),
        // The administrator made no traffic: zeros of its own.
        ("root", [0; 6]),
    ];
    let body = scrape_until(m, |s| {
        want.iter().all(|(u, w)| user_series(s, u) == Some(*w))
            && s.get("socks5d_connections_open") == Some(&0.0)
            && s.get("socks5d_worker_sessions{worker=\"0\"}") == Some(&0.0)
            && s.get("socks5d_worker_sessions{worker=\"1\"}") == Some(&0.0)
    });
    let s = samples(&body);
    // USER_METRICS says the same.
    let um = mgmt.user_metrics();
    for (user, w) in want {
        assert_eq!(user_metrics_of(&um[user]), w, "USER_METRICS of {user}");
    }
    assert_eq!(um.len(), 3, "{um:?}");

    let exact = [
        // Three tunnels, the failed log in, the denied request.
        ("socks5d_connections_total", 5.0),
        ("socks5d_bytes_total{direction=\"up\"}", 4500.0),
        ("socks5d_bytes_total{direction=\"down\"}", 4506.0),
        ("socks5d_auth_failures_total", 1.0),
        ("socks5d_requests_denied_total", 1.0),
        (
            "socks5d_user_bytes_total{user=\"other\",direction=\"up\"}",
            0.0,
        ),
        ("socks5d_user_other_users", 0.0),
        // Four requests answered (three tunnels, one denied), three
        // targets connected.
        ("socks5d_handshake_seconds_count", 4.0),
        ("socks5d_handshake_seconds_bucket{le=\"+Inf\"}", 4.0),
        ("socks5d_connect_seconds_count", 3.0),
        ("socks5d_worker_buffers_in_use{worker=\"0\"}", 0.0),
        ("socks5d_worker_buffers_in_use{worker=\"1\"}", 0.0),
    ];
    for (series, v) in exact {
        assert_eq!(s.get(series), Some(&v), "{series} in:\n{body}");
    }
    assert!(s["socks5d_handshake_seconds_sum"] > 0.0, "{body}");

    // The process's own figures agree with /proc, seen from outside.
    let pid = d.pid();
    let start = s["process_start_time_seconds"];
    assert!(
        start >= started - 2.0 && start <= now_secs() + 1.0,
        "start {start}"
    );
    let fds = s["process_open_fds"];
    let outside = open_fds(pid).len() as f64;
    assert!(
        (fds - outside).abs() <= 4.0,
        "{fds} descriptors, {outside} in /proc"
    );
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let soft: f64 = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .expect("Max open files");
    assert_eq!(s["process_max_fds"], soft);
    let rss = s["process_resident_memory_bytes"];
    let outside = (rss_kib(pid) * 1024) as f64;
    assert!(
        rss > outside / 2.0 && rss < outside * 2.0,
        "{rss} resident, {outside} in /proc"
    );
    assert!(s["process_cpu_seconds_total"] > 0.0, "{body}");

    let said = promtool_check(body.as_bytes());
    assert!(
        said.trim().is_empty(),
        "promtool check metrics:\n{said}\n{body}"
    );
}

#[test]
fn past_the_cap_users_are_summed_into_other() {
    let mgmt = UnixMgmt::new("prom-cap");
    let d = mgmt.start_as(
        "alice",
        "alice-pw",
        &[
            "-u",
            "bob:bob-pw",
            "-u",
            "carol:carol-pw",
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-max-users",
            "1",
        ],
    );
    let m = metrics_addr(&d);
    let echo = echo_server(BANNER);

    // Alice is the first with traffic: she takes the one place.
    tunnel(d.addr, Auth::User("alice", "alice-pw"), echo, 100);
    scrape_until(m, |s| {
        user_series(s, "alice") == Some([1, 0, 100, 102, 0, 0])
    });
    tunnel(d.addr, Auth::User("bob", "bob-pw"), echo, 200);
    tunnel(d.addr, Auth::User("carol", "carol-pw"), echo, 300);
    tunnel(d.addr, Auth::User("carol", "carol-pw"), echo, 1);
    let body = scrape_until(m, |s| {
        user_series(s, "other") == Some([3, 0, 501, 507, 0, 0])
    });
    let s = samples(&body);
    assert_eq!(user_series(&s, "alice"), Some([1, 0, 100, 102, 0, 0]));
    // Bob, carol and the idle administrator.
    assert_eq!(s["socks5d_user_other_users"], 3.0);
    for user in ["bob", "carol", "root"] {
        assert!(
            !body.contains(&format!("user=\"{user}\"")),
            "{user} has series of its own:\n{body}"
        );
    }
    // USER_METRICS still has each of them, and the sum is theirs.
    let um = mgmt.user_metrics();
    let mut sum = [0u64; 6];
    for user in ["bob", "carol", "root"] {
        for (s, v) in sum.iter_mut().zip(user_metrics_of(&um[user])) {
            *s += v;
        }
    }
    assert_eq!(sum, [3, 0, 501, 507, 0, 0]);
    assert_eq!(user_metrics_of(&um["alice"]), [1, 0, 100, 102, 0, 0]);
    assert!(promtool_check(body.as_bytes()).trim().is_empty());
}

#[test]
fn a_prometheus_server_scraping_socks5d_sees_the_exact_count() {
    let d = Daemon::start_as("alice", "alice-pw", &["--metrics-listen", "127.0.0.1:0"]);
    let m = metrics_addr(&d);
    let prom = PrometheusServer::start(&[m], &[]);
    let echo = echo_server(BANNER);
    tunnel(d.addr, Auth::User("alice", "alice-pw"), echo, 12_345);

    prom.wait_for(
        &[
            ("socks5d_bytes_total{direction=\"up\"}", &["12345"]),
            ("socks5d_bytes_total{direction=\"down\"}", &["12347"]),
            (
                "socks5d_user_bytes_total{user=\"alice\",direction=\"up\"}",
                &["12345"],
            ),
            ("socks5d_connections_total", &["1"]),
            ("up{job=\"socks5d\"}", &["1"]),
        ],
        Duration::from_secs(30),
    );
    let targets = prom.get("/api/v1/targets");
    assert!(
        targets.contains("\"health\":\"up\"") && targets.contains("\"lastError\":\"\""),
        "{targets}"
    );
}

/// A raw request on a new connection, and its response.
fn raw(addr: SocketAddr, request: &[u8]) -> (common::Response, HttpConn) {
    let mut c = HttpConn::connect(addr).unwrap();
    c.send(request).unwrap();
    let r = c.read_response(false).unwrap();
    (r, c)
}

#[test]
fn http_by_the_book_and_the_endpoint_stays_up() {
    let d = Daemon::start_as("alice", "alice-pw", &["--metrics-listen", "[::1]:0"]);
    let m = metrics_addr(&d);
    assert!(m.is_ipv6(), "{m}");

    // One keep-alive connection through a 404, a 405, a HEAD and a GET.
    let mut c = HttpConn::connect(m).unwrap();
    let r = c.request("GET", "/nope").unwrap();
    assert_eq!(r.status, 404, "{r:?}");
    let r = c.request("DELETE", "/metrics").unwrap();
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let head = c.request("HEAD", "/metrics").unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let r = c.request("GET", "/metrics?x=1").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        r.text().contains("\nsocks5d_connections_total 0\n"),
        "{}",
        r.text()
    );
    assert!(r.header("connection").is_none(), "{r:?}");
    // Two requests in one write: two answers, in order.
    c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response(false).unwrap().status, 404);
    assert_eq!(c.read_response(false).unwrap().status, 200);
    // Connection: close is honoured.
    c.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    c.expect_closed().unwrap();

    // An oversized request head: 431, then the end.
    let mut big = b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Pad: ".to_vec();
    big.resize(9 * 1024, b'a');
    let (r, mut c) = raw(m, &big);
    assert_eq!(r.status, 431, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"));
    c.expect_closed().unwrap();
    // Garbage: 400, then the end.
    let (r, mut c) = raw(m, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n");
    assert_eq!(r.status, 400, "{r:?}");
    c.expect_closed().unwrap();
    // A POST with a body: 405, and the body is not taken for a request.
    let (r, mut c) = raw(
        m,
        b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 23\r\n\r\nGET /metrics HTTP/1.1\r\n",
    );
    assert_eq!(r.status, 405, "{r:?}");
    c.expect_closed().unwrap();

    // Many keep-alive clients at once, each with several requests.
    let clients: Vec<_> = (0..40)
        .map(|_| {
            thread::spawn(move || {
                let mut c = HttpConn::connect(m).unwrap();
                for _ in 0..5 {
                    let r = c.request("GET", "/metrics").unwrap();
                    assert_eq!(r.status, 200);
                    assert!(r.text().contains("\nsocks5d_connections_total "));
                }
            })
        })
        .collect();
    for t in clients {
        t.join().expect("a keep-alive client");
    }
    // Still up.
    assert_eq!(scrape(m).status, 200);
}

#[test]
fn a_slow_client_is_closed_after_the_request_timeout() {
    let d = Daemon::start_as("alice", "alice-pw", &["--metrics-listen", "127.0.0.1:0"]);
    let m = metrics_addr(&d);
    let mut slow = HttpConn::connect(m).unwrap();
    let t0 = Instant::now();
    slow.send(b"GET /metr").unwrap();
    // A byte every 500 ms keeps it busy but never completes a request.
    let dribble = {
        let mut s = slow.stream().try_clone().unwrap();
        thread::spawn(move || {
            for _ in 0..40 {
                thread::sleep(Duration::from_millis(500));
                if s.write_all(b"i").is_err() {
                    return;
                }
            }
        })
    };
    // Others are served meanwhile.
    assert_eq!(scrape(m).status, 200);
    slow.expect_closed().unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(15),
        "closed after {took:?}"
    );
    dribble.join().unwrap();
    assert_eq!(scrape(m).status, 200);
}

#[test]
fn past_the_connection_limit_a_client_gets_503_until_a_place_is_free() {
    let d = Daemon::start_as("alice", "alice-pw", &["--metrics-listen", "127.0.0.1:0"]);
    let m = metrics_addr(&d);
    // 64 connections, each answered once and kept open.
    let mut held: Vec<HttpConn> = (0..64)
        .map(|_| {
            let mut c = HttpConn::connect(m).unwrap();
            assert_eq!(c.request("GET", "/metrics").unwrap().status, 200);
            c
        })
        .collect();
    let mut c = HttpConn::connect(m).unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 503, "{r:?}");
    c.expect_closed().unwrap();
    // One leaves: its place goes to the next client (once the endpoint has
    // seen it leave).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = HttpConn::connect(m).unwrap();
        c.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = c.read_response(false).unwrap();
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(Instant::now() < deadline, "no place came free");
        thread::sleep(Duration::from_millis(10));
    }
    // Those held are still served.
    assert_eq!(held[0].request("GET", "/metrics").unwrap().status, 200);
}

/// Milliseconds of tunnels one after the other (handshake, 1,000 bytes
/// each way), at least `n` and for at least `min_time`, sorted.
fn tunnel_times(proxy: SocketAddr, echo: SocketAddr, n: usize, min_time: Duration) -> Vec<f64> {
    let t0 = Instant::now();
    let mut ms = Vec::new();
    while ms.len() < n || t0.elapsed() < min_time {
        let t = Instant::now();
        tunnel(proxy, Auth::User("alice", "alice-pw"), echo, 1000);
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    ms
}

/// Waits until `count` reaches `n`; fails the test after 10 s.
fn wait_count(count: &AtomicU64, n: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while count.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "{what}: {count:?} of {n} in 10 s"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn socks_clients_are_not_slowed_by_the_endpoints_clients() {
    let d = Daemon::start_as(
        "alice",
        "alice-pw",
        &["--metrics-listen", "127.0.0.1:0", "--access-log", "off"],
    );
    let m = metrics_addr(&d);
    let echo = echo_server(BANNER);
    // Warm up, then the time of a tunnel with the endpoint idle.
    tunnel_times(d.addr, echo, 20, Duration::ZERO);
    let before = tunnel_times(d.addr, echo, 100, Duration::from_secs(1));

    // The endpoint's clients: 60 slow ones holding places with a byte now
    // and then, one sending oversized requests, and two scraping.
    let stop = Arc::new(AtomicBool::new(false));
    let oversized = Arc::new(AtomicU64::new(0));
    let scrapes = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    let mut slow: Vec<TcpStream> = (0..60)
        .map(|_| {
            let mut s = TcpStream::connect(m).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    {
        let stop = Arc::clone(&stop);
        load.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for s in &mut slow {
                    s.write_all(b"X").expect("a slow client is still open");
                }
                thread::sleep(Duration::from_millis(100));
            }
        }));
    }
    {
        let (stop, count) = (Arc::clone(&stop), Arc::clone(&oversized));
        load.push(thread::spawn(move || {
            let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
            big.resize(16 * 1024, b'a');
            while !stop.load(Ordering::Relaxed) {
                let mut c = HttpConn::connect(m).unwrap();
                // The endpoint may close before it has read it all.
                let _ = c.send(&big);
                assert_eq!(c.read_response(false).unwrap().status, 431);
                count.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(2));
            }
        }));
    }
    for _ in 0..2 {
        let (stop, count) = (Arc::clone(&stop), Arc::clone(&scrapes));
        load.push(thread::spawn(move || {
            let mut c = HttpConn::connect(m).unwrap();
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(c.request("GET", "/metrics").unwrap().status, 200);
                count.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(2));
            }
        }));
    }
    wait_count(&oversized, 10, "oversized requests answered");
    wait_count(&scrapes, 20, "scrapes answered");
    let (o0, s0) = (
        oversized.load(Ordering::Relaxed),
        scrapes.load(Ordering::Relaxed),
    );
    let during = tunnel_times(d.addr, echo, 100, Duration::from_secs(1));
    let (o1, s1) = (
        oversized.load(Ordering::Relaxed),
        scrapes.load(Ordering::Relaxed),
    );
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("a load thread");
    }
    let median = |v: &[f64]| v[v.len() / 2];
    let p99 = |v: &[f64]| v[v.len() * 99 / 100];
    eprintln!(
        "tunnel ms, endpoint idle: median {:.2}, p99 {:.2} ({} tunnels); endpoint busy: \
         median {:.2}, p99 {:.2} ({} tunnels, {} scrapes and {} oversized requests meanwhile)",
        median(&before),
        p99(&before),
        before.len(),
        median(&during),
        p99(&during),
        during.len(),
        s1 - s0,
        o1 - o0
    );
    // The load went on while the tunnels were timed.
    assert!(
        s1 - s0 >= 20 && o1 - o0 >= 10,
        "scrapes {s0}..{s1}, oversized {o0}..{o1}"
    );
    assert!(
        median(&during) <= 3.0 * median(&before) + 5.0,
        "tunnels slowed: median {} ms, then {} ms",
        median(&before),
        median(&during)
    );
    // The endpoint is still up.
    assert_eq!(scrape(m).status, 200);
}

#[test]
fn an_address_taken_stops_the_start_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = common::run_brief(&["-l", "127.0.0.1", "-p", "0", "--metrics-listen", &addr]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!(
            "socks5d: not started: error=\"metrics endpoint: cannot listen on {addr}: Address \
             already in use (os error 98)\""
        ),
        "{out:?}"
    );
}

/// The family names a scrape's `# TYPE` lines announce, and a histogram's
/// series (`_bucket`, `_sum` and `_count`).
fn announced(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for l in exposition.lines() {
        let Some(rest) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("# TYPE NAME KIND");
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// contrib/'s monitoring files fit the endpoint: promtool takes the scrape
/// configuration, and every socks5d_ and process_ name the Grafana
/// dashboard queries is one a scrape announces.
#[test]
fn contribs_monitoring_files_fit_the_endpoint() {
    let contrib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(contrib.join("prometheus.yml"))
        .output()
        .expect("run promtool");
    assert!(out.status.success(), "promtool check config: {out:?}");

    let d = Daemon::start_as("alice", "alice-pw", &["--metrics-listen", "127.0.0.1:0"]);
    let names = announced(&scrape(metrics_addr(&d)).text());
    let dashboard = fs::read_to_string(contrib.join("grafana-dashboard.json")).unwrap();
    let mut queried = BTreeSet::new();
    for prefix in ["socks5d_", "process_"] {
        for (at, _) in dashboard.match_indices(prefix) {
            let name: String = dashboard[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            queried.insert(name);
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");
    let unknown: Vec<_> = queried.difference(&names).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries {unknown:?}, which socks5d does not export"
    );
}
