//! Happy Eyeballs (RFC 8305) in the connection machine: the order of the
//! attempts, their timing, who wins, and the reply when none does.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;

#[test]
fn address_families_are_interleaved_from_the_first() {
    let (a6, b6, c6) = (v6(1, 80), v6(2, 80), v6(3, 80));
    let (a4, b4) = (v4(1, 80), v4(2, 80));
    assert_eq!(interleave(&[a6, b6, c6, a4, b4]), [a6, a4, b6, b4, c6]);
    assert_eq!(interleave(&[a4, b4, a6]), [a4, a6, b4]);
    assert_eq!(interleave(&[a4, b4]), [a4, b4]);
    assert_eq!(interleave(&[]), []);
    let many: Vec<SocketAddr> = (0..300u16).map(|i| v6(i, 80)).collect();
    assert_eq!(interleave(&many), many[..MAX_ATTEMPTS]);
}

#[test]
fn a_dead_first_address_costs_the_attempt_delay() {
    let mut s = Sim::resolving("dual.example", Config::default());
    let (dead, good) = (v6(1, 443), v4(1, 443));
    s.resolved(Ok(vec![dead, good]));
    assert_eq!(s.take_actions(), [connect(0, dead)]);
    s.advance_ms(249);
    assert!(s.take_actions().is_empty(), "too early for the second");
    s.advance_ms(1);
    assert_eq!(s.take_actions(), [connect(1, good)]);
    s.advance_ms(1);
    s.connected(1, good);
    assert_eq!(s.take_sent(), success_from_local());
    assert_eq!(
        s.take_actions(),
        [
            Action::Decided(Outcome::Succeeded),
            Action::Cancel(AttemptId(0)),
            Action::Relay {
                via: AttemptId(1),
                early_data: Vec::new()
            }
        ]
    );
    assert_eq!(s.conn.connected(), Some(good), "the log names the winner");
    assert_eq!(s.elapsed(), Duration::from_millis(251));
}

#[test]
fn a_failed_attempt_starts_the_next_at_once() {
    let mut s = Sim::resolving("three.example", Config::default());
    let addrs = [v4(1, 443), v4(2, 443), v4(3, 443)];
    s.resolved(Ok(addrs.to_vec()));
    assert_eq!(s.take_actions(), [connect(0, addrs[0])]);
    s.advance_ms(10);
    s.connect_failed(0, err(libc::ECONNREFUSED));
    assert_eq!(s.take_actions(), [connect(1, addrs[1])]);
    // The delay for the third counts from the second's start.
    s.advance_ms(249);
    assert!(s.take_actions().is_empty());
    s.advance_ms(1);
    assert_eq!(s.take_actions(), [connect(2, addrs[2])]);
    assert_eq!(s.elapsed(), Duration::from_millis(260));
}

#[test]
fn earlier_attempts_keep_running_and_may_win() {
    let mut s = Sim::resolving("slowstart.example", Config::default());
    let addrs: Vec<SocketAddr> = (1..=4).map(|i| v4(i, 443)).collect();
    s.resolved(Ok(addrs.clone()));
    s.advance_ms(600);
    assert_eq!(
        s.take_actions(),
        [
            connect(0, addrs[0]),
            connect(1, addrs[1]),
            connect(2, addrs[2])
        ]
    );
    s.connected(0, addrs[0]);
    let actions = s.take_actions();
    assert_eq!(
        actions[1..3],
        [Action::Cancel(AttemptId(1)), Action::Cancel(AttemptId(2))]
    );
    // The fourth address is never tried.
    s.advance(secs(20));
    assert!(s.take_actions().is_empty());
    assert_eq!(s.conn.connected(), Some(addrs[0]));
}

#[test]
fn when_every_attempt_fails_the_last_failure_answers() {
    let mut s = Sim::resolving("refused.example", Config::default());
    s.resolved(Ok(vec![v6(1, 443), v4(1, 443)]));
    s.take_actions();
    s.connect_failed(0, err(libc::ENETUNREACH));
    assert_eq!(s.take_actions(), [connect(1, v4(1, 443))]);
    assert!(s.take_sent().is_empty(), "one attempt is left");
    s.connect_failed(1, err(libc::ECONNREFUSED));
    assert_refused(
        &mut s,
        &failure(0x05),
        Outcome::Rejected(Reply::ConnectionRefused),
    );

    // Each attempt has its own timeout; the last to end answers.
    let config = Config {
        connect_timeout: secs(1),
        ..Config::default()
    };
    let mut s = Sim::resolving("dead.example", config);
    s.resolved(Ok(vec![v4(1, 443), v4(2, 443), v4(3, 443)]));
    s.advance_ms(500);
    assert_eq!(s.take_actions().len(), 3, "all three running");
    s.connect_failed(2, err(libc::ECONNREFUSED));
    assert!(s.take_sent().is_empty());
    s.advance_ms(500);
    assert_eq!(s.take_actions(), [Action::Cancel(AttemptId(0))]);
    assert!(s.take_sent().is_empty(), "attempt 1 still runs");
    s.advance_ms(249);
    assert!(s.take_actions().is_empty());
    s.advance_ms(1);
    assert_eq!(s.take_sent(), failure(0x04));
    assert_eq!(
        s.take_actions(),
        [
            Action::Decided(Outcome::Rejected(Reply::HostUnreachable)),
            Action::Cancel(AttemptId(1))
        ]
    );
    assert_eq!(s.elapsed(), Duration::from_millis(1250));
}

#[test]
fn an_attempt_that_times_out_makes_way_for_the_next() {
    // A delay longer than the connect timeout: the timeout starts the next.
    let config = Config {
        connect_timeout: secs(1),
        connection_attempt_delay: secs(5),
        ..Config::default()
    };
    let mut s = Sim::resolving("slow.example", config);
    s.resolved(Ok(vec![v4(1, 443), v4(2, 443)]));
    s.take_actions();
    s.advance(secs(1));
    assert_eq!(
        s.take_actions(),
        [Action::Cancel(AttemptId(0)), connect(1, v4(2, 443))]
    );
    s.connected(1, v4(2, 443));
    assert_eq!(s.conn.connected(), Some(v4(2, 443)));
}

#[test]
fn stale_attempt_news_changes_nothing() {
    let mut s = Sim::connecting(Users::None, Config::default());
    // An attempt that was never started.
    s.connected(5, v4(5, 80));
    s.connect_failed(7, err(libc::ECONNREFUSED));
    assert!(s.take_sent().is_empty() && s.take_actions().is_empty());
    s.connected(0, ipv4_target());
    s.take_sent();
    s.take_actions();
    // Late news after the tunnel is open.
    s.connect_failed(0, err(libc::ECONNREFUSED));
    s.connected(0, ipv4_target());
    assert!(s.take_sent().is_empty() && s.take_actions().is_empty());
    assert_eq!(s.conn.reading(), Reading::Relay);
}

#[test]
fn a_name_with_one_address_has_one_attempt_and_no_attempt_timer() {
    let mut s = Sim::resolving("one.example", Config::default());
    s.resolved(Ok(vec![v4(1, 443)]));
    assert_eq!(s.take_actions(), [connect(0, v4(1, 443))]);
    assert_eq!(s.conn.poll_timeout(), Some(s.t0 + secs(10)));
    s.advance(secs(5));
    assert!(s.take_actions().is_empty());
}
