//! Associations (or Unix connections) that do not log in: held open in
//! numbers, they cannot keep an administrator out (the oldest give way,
//! --max-mgmt-unauthenticated); a silent one is aborted when its log-in
//! grace time ends (--mgmt-login-grace), while logged-in sessions stay.
//! An abort is what the transport makes of it ([`Transport::aborted`]).

use std::time::{Duration, Instant};

use socks5d::mgmt::wire;

use super::support::*;

/// socks5d's default --max-mgmt-unauthenticated.
const DEFAULT_CAP: usize = 32;
/// METRICS ID X'85': management associations aborted before logging in.
const ABORTED: u8 = 0x85;

/// Lines of the rate-limited report of aborts before log in.
fn abort_lines(d: &Daemon) -> usize {
    d.warnings()
        .lines()
        .filter(|l| l.contains("management sessions aborted before log in: "))
        .count()
}

/// Whether `m` was aborted by the server, as its transport shows an abort.
/// A live session with nothing to read would block; the caller says how
/// long it may (the socket's receive timeout).
fn was_aborted(t: &Transport, m: &Mgmt, wait: Duration) -> bool {
    m.sock
        .set_timeouts(wait)
        .unwrap_or_else(|e| panic!("SO_RCVTIMEO: {e}"));
    t.aborted(&m.sock.recv_message(wire::MAX_RESPONSE + 1))
}

/// 200 associations opened first and held without a word: an
/// administrator still logs in at the first try and gets METRICS, and
/// socks5dctl works at once. The oldest held ones, and only they, were
/// aborted (as many as METRICS X'85' says: all but the cap); the log says
/// so in a line per 10 s at most, not a line per association.
pub fn held_associations_do_not_keep_an_administrator_out(t: &Transport) {
    const HELD: usize = 200;
    // A grace time longer than the case, so that only the cap frees places.
    let d = Daemon::start(t, &["--mgmt-login-grace", "300"]);
    let started = Instant::now();
    let held: Vec<Mgmt> = (0..HELD)
        .map(|i| {
            Mgmt::try_connect(d.mgmt()).unwrap_or_else(|e| panic!("held association {i}: {e}"))
        })
        .collect();
    let opened = started.elapsed();

    let started_admin = Instant::now();
    let m = Mgmt::connect(d.mgmt());
    assert_eq!(
        m.login(ADMIN, ADMIN_PW),
        [0x01, 0x00],
        "log in behind {HELD} held associations"
    );
    let v = m.metrics();
    let admin_took = started_admin.elapsed();
    assert!(v.len() >= 8, "METRICS: {v:?}");
    // Every held COMM_UP came before the administrator's, and the log-in
    // reply leaves only after the cap was applied to them: all but the cap
    // are gone, plus one if the administrator's association was counted
    // before its log in was read.
    let first = v[&ABORTED] as usize;
    assert!(
        (HELD - DEFAULT_CAP..=HELD - DEFAULT_CAP + 1).contains(&first),
        "METRICS X'85' = {first} after {HELD} held associations, cap {DEFAULT_CAP}"
    );

    let started_ctl = Instant::now();
    let c = d.ctl(&["-U", ADMIN, "metrics"], ADMIN_PW, None);
    let ctl_took = started_ctl.elapsed();
    assert_eq!(
        c.code, 0,
        "socks5dctl metrics behind held associations: {c:?}"
    );
    assert!(
        c.stdout.contains("uptime seconds: "),
        "socks5dctl metrics:\n{}",
        c.stdout
    );
    assert!(
        ctl_took < Duration::from_secs(10),
        "socks5dctl took {ctl_took:?}"
    );

    let aborted = m.metrics()[&ABORTED] as usize;
    assert!(
        (first..=first + 1).contains(&aborted),
        "METRICS X'85' went from {first} to {aborted} over one socks5dctl run"
    );
    // The oldest `aborted` were reset (waiting, if their ABORT is still on
    // its way); the newer ones are still open, with nothing to read.
    for (i, h) in held.iter().enumerate() {
        if i < aborted {
            assert!(
                was_aborted(t, h, IO_TIMEOUT),
                "held association {i} of {HELD}: want it aborted ({aborted} were)"
            );
        } else {
            assert!(
                !was_aborted(t, h, Duration::from_millis(1)),
                "held association {i} of {HELD}: aborted, but only the oldest {aborted} should be"
            );
        }
    }

    // The first abort is logged at once; the rest are counted into at
    // most one more line per 10 s.
    let logged = poll_until(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(5),
        || (abort_lines(&d) > 0).then_some(()),
    );
    assert!(
        logged.is_some(),
        "no log line about the aborts:\n{}",
        d.stderr()
    );
    let lines = abort_lines(&d);
    let most = 2 + started.elapsed().as_secs() as usize / 10;
    assert!(
        lines <= most,
        "{lines} log lines about {aborted} aborts in {:?} (at most {most}):\n{}",
        started.elapsed(),
        d.warnings()
    );
    println!(
        "({HELD} held opened in {:.2}s; log in and METRICS {:.0} ms, socks5dctl {:.0} ms; \
         {aborted} aborted; {lines} log line(s)) ",
        opened.as_secs_f64(),
        admin_took.as_secs_f64() * 1e3,
        ctl_took.as_secs_f64() * 1e3
    );
}

/// With `--mgmt-login-grace 1`, an association that sends nothing is
/// aborted about 1 s after it opened, not before and not much after, while
/// a session logged in before it is still served after its own grace time
/// has passed; METRICS X'85' counts the one abort and the log says why.
pub fn login_grace_aborts_a_silent_association(t: &Transport) {
    let d = Daemon::start(t, &["--mgmt-login-grace", "1"]);
    let admin = d.admin();
    let t0 = Instant::now();
    let silent = Mgmt::connect(d.mgmt());
    // Blocks until the abort arrives; the socket's timeout bounds it.
    let got = silent.sock.recv_message(wire::MAX_RESPONSE + 1);
    let took = t0.elapsed();
    assert!(
        t.aborted(&got),
        "the silent session after {took:?}: want an abort, got a receive timeout"
    );
    // The server starts the grace time when the association is up, after t0.
    assert!(
        took >= Duration::from_millis(950),
        "aborted after {took:?}, before the grace time of 1 s"
    );
    assert!(
        took < Duration::from_secs(5),
        "aborted only after {took:?} (grace time 1 s)"
    );

    // The administrator's session opened before the silent one: its grace
    // time is over too, and it is still served.
    let v = admin.metrics();
    assert_eq!(v.get(&ABORTED), Some(&1), "METRICS X'85': {v:?}");
    assert_eq!(
        admin.counter(wire::Request::HistoricConnections),
        0,
        "HISTORIC after the grace time"
    );
    let logged = poll_until(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(5),
        || {
            d.warnings()
                .lines()
                .any(|l| {
                    l.contains(
                        "management sessions aborted before log in: count=1 to_make_room=0 \
                         grace_over=1",
                    )
                })
                .then_some(())
        },
    );
    assert!(
        logged.is_some(),
        "no log line about the grace time:\n{}",
        d.stderr()
    );
    println!(
        "(aborted {:.0} ms after connecting) ",
        took.as_secs_f64() * 1e3
    );
}
