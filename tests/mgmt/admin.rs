//! Cases 3 to 5: many administrators at once, one that stops reading, and
//! (over SCTP) the IPv4 and IPv6 management addresses.

use std::os::fd::AsFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use socks5d::mgmt::wire::{Request, Status};
use socks5d::users::Role;

use super::support::*;

/// A meeting point for threads, with a deadline, that a failing thread can
/// break so that the others stop waiting for it.
struct Gate {
    state: Mutex<(usize, bool)>,
    cond: Condvar,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            state: Mutex::new((0, false)),
            cond: Condvar::new(),
        }
    }

    /// Arrives and waits until `n` threads have arrived in all.
    fn arrive_and_wait(&self, n: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += 1;
        self.cond.notify_all();
        while s.0 < n {
            assert!(!s.1, "another session failed before {what}");
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "only {} of {n} sessions reached {what} in 60 s",
                s.0
            );
            s = self
                .cond
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn break_(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.cond.notify_all();
    }
}

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}

/// 50 administrators logged in at the same time, each running several
/// requests, user changes among them.
pub fn fifty_concurrent_sessions(t: &Transport) {
    const N: usize = 50;
    let d = Daemon::start(t, &[]);
    let addr = d.mgmt();
    let gate_in = Arc::new(Gate::new());
    let gate_out = Arc::new(Gate::new());
    let mut threads = Vec::new();
    for i in 0..N {
        let (gate_in, gate_out) = (Arc::clone(&gate_in), Arc::clone(&gate_out));
        let addr = addr.clone();
        let t = thread::Builder::new()
            .name(format!("session-{i}"))
            .spawn(move || {
                let r = panic::catch_unwind(AssertUnwindSafe(|| {
                    let m = Mgmt::admin(addr);
                    // Every session is logged in before any request is made.
                    gate_in.arrive_and_wait(N, "log in");
                    let name = format!("s{i:02}");
                    for round in 0..3 {
                        assert_eq!(m.counter(Request::HistoricConnections), 0, "HISTORIC");
                        assert_eq!(m.counter(Request::ConcurrentConnections), 0, "CONCURRENT");
                        assert_eq!(m.counter(Request::BytesTransferred), 0, "BYTES");
                        let v = m.metrics();
                        assert!((1..=8).all(|id| v.contains_key(&id)), "METRICS: {v:?}");
                        let (total, users) = m.list_page(0);
                        assert!(
                            total >= 1 && users.contains(&(Role::Admin, b"root".to_vec())),
                            "LIST_USERS"
                        );
                        let pw = format!("pw-{round}");
                        assert_eq!(
                            m.add_user(&name, &pw, Role::Proxy),
                            Status::Success,
                            "ADD_USER {name}"
                        );
                        assert_eq!(
                            m.add_user(&name, &pw, Role::Proxy),
                            Status::UserExists,
                            "ADD_USER {name} again"
                        );
                        assert_eq!(
                            m.set_password(&name, "x"),
                            Status::Success,
                            "SET_PASSWORD {name}"
                        );
                        assert_eq!(m.delete_user(&name), Status::Success, "DELETE_USER {name}");
                    }
                    // Every session is still open while the others work.
                    gate_out.arrive_and_wait(N, "the end of the requests");
                    assert!(m.metrics().len() >= 8, "METRICS at the end");
                }));
                if r.is_err() {
                    gate_in.break_();
                    gate_out.break_();
                }
                r.map_err(panic_text)
            })
            .expect("spawn");
        threads.push(t);
    }
    let mut failed = Vec::new();
    for (i, t) in threads.into_iter().enumerate() {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => failed.push(format!("session {i}: {msg}")),
            Err(e) => failed.push(format!("session {i}: {}", panic_text(e))),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {N} sessions failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    let m = d.admin();
    assert_eq!(
        m.list_all(),
        [(Role::Admin, b"root".to_vec())],
        "users after all sessions"
    );
}

/// How a client that stops reading fared.
#[derive(Debug)]
struct Stuck {
    sent: usize,
    send_blocked: usize,
    send_error: Option<String>,
    /// When a send first failed: the session was gone.
    gone_after: Option<Duration>,
    /// When a send last succeeded: the session was still there.
    last_alive: Duration,
    received: usize,
    /// How reading ended: an error or the end of the session.
    end: Option<String>,
    ended_after: Duration,
}

/// What a stuck client saw once it had sent its first `mark` requests.
#[derive(Debug)]
struct Queued {
    sent: usize,
    /// An answer was waiting unread (poll said readable within 5 s).
    answer_waiting: bool,
    /// The most answer bytes the kernel holds for it ([`Sock::kernel_room`]).
    room: usize,
    at: Duration,
}

/// Whether a message waits unread on `sock`, within `within`.
fn readable(sock: &Sock, within: Duration) -> bool {
    let ms = u16::try_from(within.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
}

/// A client that sends `req` up to `bound` times, one every `pace`, and
/// never reads until its session is gone (or `limit` after `started`
/// passes); then it reads, and reading must end in an error or the end.
/// Once it has sent `mark` requests it reports on `queued` whether an answer
/// waits unread (the server answers; this client does not read).
#[allow(clippy::too_many_arguments)]
fn stuck_client(
    a: Mgmt,
    req: Vec<u8>,
    bound: usize,
    mark: usize,
    pace: Duration,
    started: Instant,
    limit: Duration,
    queued: mpsc::Sender<Queued>,
) -> Stuck {
    let mut r = Stuck {
        sent: 0,
        send_blocked: 0,
        send_error: None,
        gone_after: None,
        last_alive: Duration::ZERO,
        received: 0,
        end: None,
        ended_after: Duration::ZERO,
    };
    // Short timeouts: sends must not hang when the buffers are full.
    a.sock
        .set_timeouts(Duration::from_millis(200))
        .expect("SO_SNDTIMEO");
    let room = a.sock.kernel_room();
    while r.sent < bound && started.elapsed() < limit {
        match a.sock.send_message(&req) {
            Ok(()) => {
                r.sent += 1;
                r.last_alive = started.elapsed();
            }
            Err(e) if is_timeout(&e) => r.send_blocked += 1,
            Err(e) => {
                r.send_error = Some(e.to_string());
                break;
            }
        }
        if r.sent == mark {
            let _ = queued.send(Queued {
                sent: r.sent,
                answer_waiting: readable(&a.sock, Duration::from_secs(5)),
                room,
                at: started.elapsed(),
            });
        }
        thread::sleep(pace);
    }
    drop(queued);
    // Wait, without reading, for the server to drop the session. A send on
    // an aborted session fails; the probe is a request with an 11-byte
    // answer, so it hardly adds to what the server holds for us.
    let mut probes = 0;
    while r.send_error.is_none() && started.elapsed() < limit {
        thread::sleep(Duration::from_millis(200));
        match a.sock.send_message(&[0x01, 0x01]) {
            Ok(()) => {
                probes += 1;
                r.last_alive = started.elapsed();
            }
            Err(e) if is_timeout(&e) => r.send_blocked += 1,
            Err(e) => r.send_error = Some(format!("{e} (after {probes} probes)")),
        }
    }
    if r.send_error.is_some() {
        r.gone_after = Some(started.elapsed());
    }
    // Reading gives what was delivered before the abort, then must end.
    while started.elapsed() < limit + Duration::from_secs(5) {
        match a.sock.recv_message(70_000) {
            Ok(Some(_)) => r.received += 1,
            Ok(None) => {
                r.end = Some("end of session".into());
                break;
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                r.end = Some(e.to_string());
                break;
            }
        }
    }
    r.ended_after = started.elapsed();
    r
}

/// Administrators that send LIST_USERS (64 KB answers) and never read do
/// not delay another: every METRICS round trip of B takes under 1 s, and
/// each stuck session is aborted within about 20 s. A "fast" one keeps
/// sending (its queue grows without bound, and it is aborted for it); a
/// "slow" one sends five requests and then just sits there (its queue never
/// drains, and it stays until its peer has taken nothing for 10 s).
///
/// The premise is checked before B measures: each stuck client has an
/// answer waiting unread, and owes more answer bytes than the kernel holds
/// for it (over SCTP its receive buffer; over Unix the server's send
/// buffer), so the rest waits at the server. And it is checked to have
/// held to the end: the slow session was still there after B's last round
/// trip.
pub fn stuck_reader_does_not_delay_others(t: &Transport) {
    /// Requests each stuck client sends before B starts.
    const MARK: usize = 5;
    let d = Daemon::start(t, &[]);
    let m = d.admin();
    // 300 users of 250-byte names: a LIST_USERS page is as large as a
    // response may be.
    let names: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("{i:03}-{}", "x".repeat(246)).into_bytes())
        .collect();
    m.add_users_pipelined(&names, b"pw");
    let mut req = Vec::new();
    Request::ListUsers { offset: 0 }.emit(&mut req);
    let page = m.raw(&req);
    assert!(
        page.len() <= 65535,
        "a LIST_USERS response of {} bytes",
        page.len()
    );
    // "as many as fit in one response": 9 header bytes, 252 per user here.
    let count = u16::from_be_bytes([page[7], page[8]]) as usize;
    assert_eq!(
        count,
        (65535 - 9) / 252,
        "COUNT of a page of 250-byte names ({} bytes)",
        page.len()
    );
    assert_eq!(page.len(), 9 + 252 * count, "page length");

    let b = d.admin();
    let limit = Duration::from_secs(20);
    let started = Instant::now();
    let spawn = |name: &str, bound: usize, pace: Duration| {
        let a = Mgmt::admin(d.mgmt());
        let (tx, rx) = mpsc::channel();
        let req = req.clone();
        let t = thread::Builder::new()
            .name(name.into())
            .spawn(move || stuck_client(a, req, bound, MARK, pace, started, limit, tx))
            .expect("spawn");
        (t, rx)
    };
    let (fast, fast_queued) = spawn("stuck-fast", 400, Duration::from_millis(10));
    let (slow, slow_queued) = spawn("stuck-slow", MARK, Duration::from_millis(20));

    // The premise, before B measures anything.
    let mut premise = Vec::new();
    for (name, rx) in [("fast", &fast_queued), ("slow", &slow_queued)] {
        let q = rx
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|e| {
                panic!("the {name} stuck client did not send {MARK} requests within 15 s ({e})")
            });
        let owed = q.sent * page.len();
        assert!(
            q.answer_waiting,
            "the {name} stuck client: no answer waiting unread 5 s after its {} requests: \
             the server answered nothing, so nothing is queued for it; socks5d's warnings:\n{}",
            q.sent,
            d.warnings()
        );
        assert!(
            owed > q.room,
            "the {name} stuck client is owed {owed} bytes of answers, which fit in the {} bytes \
             the kernel holds for it: nothing need wait at the server, so B would measure nothing",
            q.room
        );
        premise.push(format!(
            "{name}: {owed} bytes owed at {:.0} ms, the kernel holds {}",
            q.at.as_secs_f64() * 1e3,
            q.room
        ));
    }

    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        let v = match b
            .sock
            .send_message(&[0x01, 0x04])
            .and_then(|()| b.sock.recv_message(70_000))
        {
            Ok(Some(reply)) => parse_response(&reply, socks5d::mgmt::wire::Command::Metrics),
            other => panic!(
                "B's METRICS {i}, {:?} after it was sent: {other:?}; socks5d's warnings:\n{}",
                t.elapsed(),
                d.warnings()
            ),
        };
        let v: std::collections::BTreeMap<u8, u64> = match v {
            socks5d::mgmt::wire::Response::Metrics(v) => v.into_iter().collect(),
            other => panic!("B's METRICS {i}: {other:?}"),
        };
        let took = t.elapsed();
        assert!(
            (1..=8).all(|id| v.contains_key(&id)),
            "B's METRICS {i}: {v:?}"
        );
        assert!(
            took < Duration::from_secs(1),
            "B's METRICS round trip {i} took {took:?} while others do not read; socks5d's warnings:\n{}",
            d.warnings()
        );
        slowest = slowest.max(took);
        thread::sleep(Duration::from_millis(100));
    }
    let measured_until = started.elapsed();
    let mut stuck = Vec::new();
    for (name, t) in [("fast", fast), ("slow", slow)] {
        let r = t
            .join()
            .unwrap_or_else(|e| panic!("stuck client {name}: {}", panic_text(e)));
        assert!(
            r.end.is_some() && r.gone_after.is_some(),
            "the {name} stuck session was not aborted within {limit:?}: {r:?} (B's slowest round trip {slowest:?})"
        );
        assert!(
            r.received < r.sent,
            "the {name} client received every answer, so it was never stuck: {r:?}"
        );
        stuck.push(r);
    }
    assert!(
        stuck[1].last_alive >= measured_until,
        "the slow stuck session was gone before B's last round trip ended ({measured_until:?}): \
         B was not measured against a stuck reader: {:?}",
        stuck[1]
    );
    println!(
        "({}; B's slowest of 20 round trips {:.1} ms, the last at {:.2} s; the stuck ones \
         aborted after {:.2} s and {:.2} s) ",
        premise.join("; "),
        slowest.as_secs_f64() * 1e3,
        measured_until.as_secs_f64(),
        stuck[0].gone_after.unwrap_or_default().as_secs_f64(),
        stuck[1].gone_after.unwrap_or_default().as_secs_f64()
    );
    // The server still serves new sessions.
    assert!(
        d.admin().metrics().len() >= 8,
        "a new session after the stuck ones were dropped"
    );
    assert!(
        b.metrics().len() >= 8,
        "B after the stuck ones were dropped"
    );
}

/// `-L 127.0.0.1 -L ::1` serves both; `-L ::1` alone does not serve
/// 127.0.0.1, and `-L 127.0.0.1` alone does not serve ::1 (SCTP only).
pub fn ipv4_and_ipv6_addresses(t: &Transport) {
    assert_eq!(*t, Transport::Sctp, "a case about SCTP addresses");
    let both = Daemon::start(t, &["-L", "127.0.0.1", "-L", "::1"]);
    let v4 = Mgmt::admin(both.mgmt());
    let v6 = Mgmt::admin(both.mgmt6());
    assert!(
        v4.metrics().len() >= 8 && v6.metrics().len() >= 8,
        "METRICS over both"
    );
    assert_eq!(
        v4.add_user("via-v4", "pw", Role::Proxy),
        Status::Success,
        "ADD_USER over IPv4"
    );
    assert_eq!(
        v6.add_user("via-v6", "pw", Role::Proxy),
        Status::Success,
        "ADD_USER over IPv6"
    );
    let users = |m: &Mgmt| {
        m.list_all()
            .into_iter()
            .map(|(_, n)| String::from_utf8_lossy(&n).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(users(&v6), ["root", "via-v4", "via-v6"], "users over IPv6");
    assert_eq!(users(&v4), ["root", "via-v4", "via-v6"], "users over IPv4");
    assert_eq!(v6.counter(Request::HistoricConnections), 0);
    drop((v4, v6, both));

    let only6 = Daemon::start(t, &["-L", "::1"]);
    assert!(
        !only6.mgmt_addrs.contains("127.0.0.1"),
        "management line: {}",
        only6.mgmt_addrs
    );
    assert!(
        Mgmt::admin(only6.mgmt6()).metrics().len() >= 8,
        "METRICS over ::1"
    );
    refused(only6.mgmt(), "-L ::1");
    drop(only6);

    let only4 = Daemon::start(t, &["-L", "127.0.0.1"]);
    assert!(
        Mgmt::admin(only4.mgmt()).metrics().len() >= 8,
        "METRICS over 127.0.0.1"
    );
    refused(only4.mgmt6(), "-L 127.0.0.1");
}

/// Nothing answers at `addr`: the connect fails, or at least no log in works.
fn refused(addr: Endpoint, how: &str) {
    match Mgmt::try_connect(addr.clone()) {
        Err(_) => {}
        Ok(c) => {
            let mut msg = Vec::new();
            msg.extend_from_slice(&login_bytes(ADMIN.as_bytes(), ADMIN_PW.as_bytes()));
            let sent = c.sock.send_message(&msg);
            let got = c.sock.recv_message(1024);
            assert!(
                sent.is_err() || !matches!(got, Ok(Some(_))),
                "with {how}, {addr} answered a log in: {got:?}"
            );
        }
    }
}
