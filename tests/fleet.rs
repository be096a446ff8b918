//! Several socks5d behind the real engines of a fleet: HAProxy in TCP mode
//! sending the PROXY protocol in front of two instances whose users live in
//! one Redis server, and Prometheus adding the instances up with the
//! recording rules of contrib/. Everything on loopback, started by the
//! test: clients come from several 127.0.0.x source addresses, the
//! balancer from 127.0.0.1, the only address the instances take a PROXY
//! header from.
//!
//! The cases run one at a time: each starts a whole fleet, and one times
//! how soon a change made on one instance is in force on the other.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Auth, CMD_UDP_ASSOCIATE, Haproxy, Instance, PrometheusServer, ProxyHeader, RedisServer,
    UdpClient, UdpEcho, access_fields, add_proxy_user, connect_from, curl, greet, http_server,
    login, metrics_addr, read_reply, send_request, temp_path, udp_datagram, user_value,
};
use socks5d::mgmt::wire::Request;

/// Held by the case that runs.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The administrator in the store.
const ADMIN: &str = "root";
const ADMIN_PW: &str = "root-pw-F4q";
/// A proxy user in the store from the start.
const ALICE: &str = "alice";
const ALICE_PW: &str = "alice-pw-F4q";
/// The balancer's address: the only one the instances take a header from.
const BALANCER: &str = "127.0.0.1/32";
/// A client the access rules deny, whatever it asks for.
const DENIED_CLIENT: [u8; 4] = [127, 0, 0, 66];
/// How long a change may take to show when the tests wait for it.
const SETTLE: Duration = Duration::from_secs(10);
/// How long an instance may take to notice Redis gone or back.
const RECONNECT: Duration = Duration::from_secs(15);
/// The body of the test's HTTP target.
const BODY: &[u8] = b"through the fleet\n";

/// METRICS X'88': connections closed for a PROXY header.
const M_PROXY_REFUSED: u8 = 0x88;
/// METRICS X'89': 1 while the user table is stale.
const M_STALE: u8 = 0x89;
/// METRICS X'8A': times the Redis store was lost.
const M_LOST: u8 = 0x8A;
/// STATUS X'07': the change could not be made durable; nothing changed.
const NOT_DURABLE: u8 = 0x07;

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// 127.0.0.`n`.
fn lo(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

fn body(path: &str) -> Option<&'static [u8]> {
    (path == "/hello").then_some(BODY)
}

/// Redis, two instances on it behind HAProxy sending `header`, and the
/// rules file they share.
struct Fleet {
    redis: RedisServer,
    instances: [Instance; 2],
    haproxy: Haproxy,
    rules: PathBuf,
}

impl Fleet {
    fn start(header: ProxyHeader) -> Fleet {
        let redis = RedisServer::start();
        redis.seed(ADMIN, ADMIN_PW, true);
        redis.seed(ALICE, ALICE_PW, false);
        // One policy for the fleet, keyed on the client's address: the
        // instances see the real one only through the PROXY header.
        let rules = temp_path("fleet-rules");
        let deny = IpAddr::from(DENIED_CLIENT);
        fs::write(&rules, format!("deny from {deny}\nallow\n")).unwrap();
        let rules_arg = rules.to_str().expect("a UTF-8 path").to_owned();
        let instance = |tag: &str| {
            Instance::start(
                &redis,
                tag,
                (ADMIN, ADMIN_PW),
                &[
                    "--proxy-protocol-from",
                    BALANCER,
                    "--rules",
                    &rules_arg,
                    "--metrics-listen",
                    "127.0.0.1:0",
                    // The address UDP ASSOCIATE announces: the instance's
                    // own, which clients reach without the balancer.
                    "--udp-public-addr",
                    "127.0.0.1",
                    // The test's direct clients poll with a user not yet
                    // there: no penalty for that one source.
                    "--auth-penalty-exempt",
                    "127.0.0.2/32",
                ],
            )
            // The test's own direct clients come from outside the
            // balancer's block.
            .with_client(lo(2))
        };
        let instances = [instance("fleet-a"), instance("fleet-b")];
        let servers = [instances[0].daemon.addr, instances[1].daemon.addr];
        let haproxy = Haproxy::start(&servers, header);
        Fleet {
            redis,
            instances,
            haproxy,
            rules,
        }
    }

    /// The access-log lines of both instances that have `needle`, with
    /// which instance wrote each.
    fn access_lines(&self, needle: &str) -> Vec<(usize, String)> {
        self.instances
            .iter()
            .enumerate()
            .flat_map(|(i, inst)| {
                inst.daemon
                    .stdout()
                    .lines()
                    .filter(|l| l.contains(needle))
                    .map(|l| (i, l.to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Polls until both instances together wrote `n` access-log lines
    /// with `needle`; fails the test after [`SETTLE`].
    fn wait_access_lines(&self, needle: &str, n: usize) -> Vec<(usize, String)> {
        let t0 = Instant::now();
        loop {
            let lines = self.access_lines(needle);
            if lines.len() >= n {
                return lines;
            }
            assert!(
                t0.elapsed() < SETTLE,
                "{} access lines with {needle:?}, wanted {n}: {lines:#?}",
                lines.len()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Logs in as `user` through the balancer from `from`.
    fn login_through(&self, from: IpAddr, user: &str, password: &str) -> Result<TcpStream, u8> {
        let mut s = connect_from(SocketAddr::new(from, 0), self.haproxy.addr);
        greet(&mut s, Auth::User(user, password)).expect("greeting through the balancer");
        match login(&mut s, user, password).expect("RFC 1929 reply through the balancer") {
            0x00 => Ok(s),
            st => Err(st),
        }
    }
}

impl Fleet {
    /// Tunnels to `echo` through the balancer as alice, one from each
    /// 127.0.0.`n` of `clients`, held open (round robin spreads them).
    fn tunnels(&self, clients: std::ops::Range<u8>, echo: SocketAddr) -> Vec<TcpStream> {
        clients
            .map(|n| {
                let mut s = self.login_through(lo(n), ALICE, ALICE_PW).expect("log in");
                common::connect_request(&mut s, echo).expect("CONNECT through the fleet");
                s
            })
            .collect()
    }

    /// Puts HAProxy's server `server` in `state` (drain, ready) on its
    /// admin socket, which answers nothing when it did.
    fn set_state(&self, server: &str, state: &str) {
        let cmd = format!("set server socks5d/{server} state {state}");
        let out = self.haproxy.admin(&cmd).unwrap();
        assert!(out.trim().is_empty(), "{cmd}: {out}");
    }

    /// curl from 127.0.0.`n` of `clients` through the balancer to `http`,
    /// each getting the body.
    fn curls(&self, clients: std::ops::Range<u8>, http: SocketAddr, when: &str) {
        for n in clients {
            assert!(curl_from(self, lo(n), http), "curl from {n} {when}");
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.rules);
    }
}

/// `curl --socks5-hostname` through the balancer from `from` to the HTTP
/// target `http`: whether it got the body.
fn curl_from(fleet: &Fleet, from: IpAddr, http: SocketAddr) -> bool {
    let out = curl(&[
        "--interface",
        &from.to_string(),
        "--socks5-hostname",
        &fleet.haproxy.addr.to_string(),
        "-U",
        &format!("{ALICE}:{ALICE_PW}"),
        "--fail",
        &format!("http://{http}/hello"),
    ]);
    if out.status.success() {
        assert_eq!(out.stdout, BODY, "the body through the fleet");
    }
    out.status.success()
}

/// curl from six client addresses through HAProxy reaches the target
/// through both instances; each instance's access log names the real
/// client (and the balancer as via=); a client the shared rules deny by
/// its address is denied through the balancer; HAProxy's own health
/// checks (a LOCAL header each second) are neither refused nor logged.
fn curl_through_the_balancer(header: ProxyHeader) {
    let _turn = turn();
    let fleet = Fleet::start(header);
    let http = http_server("127.0.0.1:0", body);
    let clients: Vec<IpAddr> = (2..8).map(lo).collect();
    for &c in &clients {
        assert!(
            curl_from(&fleet, c, http),
            "curl from {c} through the fleet"
        );
    }
    let target = format!(" target={http} ");
    let lines = fleet.wait_access_lines(&target, clients.len());
    let mut seen = BTreeSet::new();
    let mut served_by = [0; 2];
    for (i, line) in &lines {
        let f = access_fields(line);
        let client: SocketAddr = f["client"].parse().expect("client=ADDR:PORT");
        let via: SocketAddr = f["via"].parse().expect("via=ADDR:PORT");
        assert_eq!(via.ip(), lo(1), "via= is the balancer: {line}");
        assert_eq!(f["user"], ALICE, "{line}");
        assert_eq!(f["reply"], "00", "{line}");
        seen.insert(client.ip());
        served_by[*i] += 1;
    }
    assert_eq!(
        seen,
        clients.iter().copied().collect(),
        "each request logged with its real client: {lines:#?}"
    );
    assert!(
        served_by.iter().all(|&n| n > 0),
        "both instances served: {served_by:?}"
    );

    // The rule on the client's address, through the balancer.
    let denied = IpAddr::from(DENIED_CLIENT);
    assert!(!curl_from(&fleet, denied, http), "{denied} is denied");
    let lines = fleet.wait_access_lines(&format!("client={denied}:"), 1);
    let f = access_fields(&lines[0].1);
    assert_eq!(f["reply"], "02", "X'02' by the rules: {lines:?}");

    // HAProxy checked each instance every second all along, with a header.
    for inst in &fleet.instances {
        let m = inst.session().metrics();
        assert_eq!(m.get(&M_PROXY_REFUSED), Some(&0), "{m:02x?}");
    }
    let quiet = fleet.access_lines(&format!("client={}:", lo(1)));
    assert!(quiet.is_empty(), "health checks logged: {quiet:#?}");
}

#[test]
fn curl_through_haproxy_with_proxy_v2() {
    curl_through_the_balancer(ProxyHeader::V2);
}

#[test]
fn curl_through_haproxy_with_proxy_v1() {
    curl_through_the_balancer(ProxyHeader::V1);
}

/// Taking an instance out for maintenance as docs/fleet.md says: drained
/// on HAProxy's admin socket, it gets no new client while a tunnel it
/// holds goes on; made ready again, it gets clients again.
#[test]
fn a_drained_instance_gets_no_new_clients() {
    let _turn = turn();
    let fleet = Fleet::start(ProxyHeader::V2);
    let http = http_server("127.0.0.1:0", body);
    let echo = common::echo_server(b"");
    // A tunnel on each instance (round robin), held open.
    let mut held = fleet.tunnels(2..4, echo);
    let served = |fleet: &Fleet| {
        let mut by = [0; 2];
        for (i, _) in fleet.access_lines(&format!(" target={http} ")) {
            by[i] += 1;
        }
        by
    };
    fleet.set_state("s0", "drain");
    fleet.curls(4..8, http, "while s0 drains");
    let by = fleet.wait_access_lines(&format!(" target={http} "), 4);
    assert_eq!(
        served(&fleet),
        [0, 4],
        "only s1 served while s0 drained: {by:#?}"
    );
    // The drained instance's tunnel goes on.
    for t in &mut held {
        common::exchange(t, b"still here", b"still here");
    }
    fleet.set_state("s0", "ready");
    fleet.curls(4..8, http, "after s0 is back");
    fleet.wait_access_lines(&format!(" target={http} "), 8);
    let by = served(&fleet);
    assert!(by[0] > 0 && by[0] + by[1] == 8, "s0 serves again: {by:?}");
}

/// A user added over one instance's management socket logs in through
/// the other within 100 ms (the median of five; the slowest within the
/// settle time of a loaded machine), and through the balancer; a deleted
/// one is refused everywhere.
#[test]
fn users_changed_on_one_instance_are_in_force_on_the_other() {
    let _turn = turn();
    let fleet = Fleet::start(ProxyHeader::V2);
    let [a, b] = &fleet.instances;
    let sa = a.session();
    let mut took = Vec::new();
    for i in 0..5 {
        let name = format!("carol{i}");
        assert_eq!(
            sa.status(&add_proxy_user(&name, "carol-pw")),
            0,
            "ADD_USER {name}"
        );
        took.push(b.wait_login(&name, "carol-pw", true, SETTLE));
    }
    took.sort();
    eprintln!("from A's reply to a log in on B: {took:?}");
    assert!(
        took[took.len() / 2] < Duration::from_millis(100),
        "median over 100 ms: {took:?}"
    );
    // Through the balancer, round robin: one connection to each.
    for n in 3..5 {
        assert!(
            fleet.login_through(lo(n), "carol0", "carol-pw").is_ok(),
            "carol0 through the balancer"
        );
    }
    let sb = b.session();
    let del = Request::DeleteUser {
        username: b"carol0",
    };
    assert_eq!(sb.status(&del), 0, "DELETE_USER on B");
    a.wait_login("carol0", "carol-pw", false, SETTLE);
    for n in 3..5 {
        assert_eq!(
            fleet.login_through(lo(n), "carol0", "carol-pw").err(),
            Some(0x01),
            "carol0 refused through the balancer"
        );
    }
}

/// Redis stopped: users log in through the balancer on both instances
/// from the table each holds, ADD_USER answers X'07' on either, and both
/// say their table is stale. Redis back with a user added and one deleted
/// in Redis meanwhile: both instances pick the changes up.
#[test]
fn redis_down_and_back_behind_the_balancer() {
    let _turn = turn();
    let mut fleet = Fleet::start(ProxyHeader::V2);
    fleet.redis.stop();
    for inst in &fleet.instances {
        inst.wait_metric(M_STALE, 1, RECONNECT);
    }
    // Four connections, two to each instance.
    for n in 2..6 {
        assert!(
            fleet.login_through(lo(n), ALICE, ALICE_PW).is_ok(),
            "alice through the balancer with Redis down"
        );
    }
    for inst in &fleet.instances {
        assert_eq!(
            inst.session().status(&add_proxy_user("dave", "dave-pw")),
            NOT_DURABLE,
            "ADD_USER with Redis down"
        );
    }
    // Meanwhile, in Redis directly: dave in, alice out.
    let dave = user_value("user", "dave-pw");
    fleet.redis.edit_stopped(&[
        &["HSET", "socks5d:users", "dave", &dave],
        &["HDEL", "socks5d:users", ALICE],
    ]);
    fleet.redis.restart();
    for inst in &fleet.instances {
        inst.wait_metric(M_STALE, 0, RECONNECT);
        inst.wait_metric(M_LOST, 1, SETTLE);
        inst.wait_login("dave", "dave-pw", true, SETTLE);
        inst.wait_login(ALICE, ALICE_PW, false, SETTLE);
    }
}

/// UDP ASSOCIATE through the balancer: the reply names the instance's own
/// address (--udp-public-addr), the client sends there directly, and the
/// relay takes datagrams from the client's real address, carried in the
/// PROXY header (with DST.ADDR 0.0.0.0 the relay's filter is the control
/// connection's client), and from no other.
#[test]
fn udp_associate_through_the_balancer() {
    let _turn = turn();
    let fleet = Fleet::start(ProxyHeader::V2);
    let echo = UdpEcho::start("127.0.0.1:0".parse().unwrap());
    let client = lo(7);
    let mut control = connect_from(SocketAddr::new(client, 0), fleet.haproxy.addr);
    greet(&mut control, Auth::User(ALICE, ALICE_PW)).unwrap();
    assert_eq!(login(&mut control, ALICE, ALICE_PW).unwrap(), 0x00);
    send_request(
        &mut control,
        CMD_UDP_ASSOCIATE,
        "0.0.0.0:0".parse().unwrap(),
    )
    .unwrap();
    let reply = read_reply(&mut control).unwrap();
    assert_eq!(reply.code, 0x00, "UDP ASSOCIATE through the balancer");
    let relay = reply.bnd.expect("BND an address");
    assert!(
        fleet
            .instances
            .iter()
            .any(|i| i.daemon.addr.ip() == relay.ip()),
        "the relay is an instance's own address: {relay}"
    );
    let stranger = UdpClient::bind(SocketAddr::new(lo(8), 0), relay);
    stranger.send_raw(&udp_datagram(0, echo.addr, b"from a stranger"));
    let c = UdpClient::bind(SocketAddr::new(client, 0), relay);
    c.send_raw(&udp_datagram(0, echo.addr, b"from the client"));
    let (from, data) = c.recv();
    assert_eq!((from, &data[..]), (echo.addr, &b"from the client"[..]));
    drop(control);
    let line = fleet.wait_access_lines(" cmd=udp ", 1).remove(0).1;
    let f = access_fields(&line);
    assert!(f["client"].starts_with("127.0.0.7:"), "{line}");
    assert_eq!(
        f["datagrams_up"], "1",
        "the stranger's datagram dropped: {line}"
    );
    assert_eq!(echo.payloads(), [b"from the client".to_vec()]);
}

/// Prometheus scraping both instances with contrib's fleet rules: the
/// recorded fleet totals are the sums of the instances.
#[test]
fn prometheus_adds_the_instances_up() {
    let _turn = turn();
    let fleet = Fleet::start(ProxyHeader::V2);
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/prometheus-fleet.rules.yml");
    let targets: Vec<SocketAddr> = fleet
        .instances
        .iter()
        .map(|i| metrics_addr(&i.daemon))
        .collect();
    let prom = PrometheusServer::start(&targets, &[&rules]);
    let echo = common::echo_server(b"hello");
    // Four tunnels held open through the balancer: two on each instance.
    let tunnels = fleet.tunnels(2..6, echo);
    prom.wait_for(
        &[
            ("job:socks5d_instances_up:sum", &["2"]),
            ("job:socks5d_user_sessions_open:sum{user=\"alice\"}", &["4"]),
            (
                "count(socks5d_user_sessions_open{user=\"alice\"} == 2)",
                &["2"],
            ),
        ],
        Duration::from_secs(60),
    );
    // Every other rule gives a series for the job once it has two samples.
    for rule in [
        "job:socks5d_connections_open:sum",
        "job:socks5d_connections:rate1m",
        "job:socks5d_auth_failures:rate1m",
        "job:socks5d_requests_denied:rate1m",
        "count(job:socks5d_bytes:rate1m)",
        "count(job:socks5d_user_bytes:rate1m{user=\"alice\"})",
        "count(job:socks5d_handshake_seconds:p99_5m)",
    ] {
        let t0 = Instant::now();
        while prom.query(rule).is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(60), "{rule}: no series");
            thread::sleep(Duration::from_millis(200));
        }
    }
    drop(tunnels);
}

/// The example configurations of docs/fleet.md are what HAProxy and
/// Prometheus take.
#[test]
fn contribs_fleet_configurations_are_valid() {
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let out = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(contrib.join("haproxy.cfg"))
        .output()
        .expect("run haproxy (make test installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("WARNING"), "{text}");
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(contrib.join("prometheus.yml"))
        .output()
        .expect("run promtool (make test installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("prometheus-fleet.rules.yml"), "{text}");
}
