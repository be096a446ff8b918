//! BIND and UDP ASSOCIATE (RFC 1928 sections 4, 6 and 7) in the machine:
//! the replies, the wait for BIND's peer and its timeout, the wrong peer,
//! an association that lives as long as its control connection.

use super::*;
use crate::socks5::wire::Command;

/// A request with `cmd` for `target`.
fn request(cmd: u8, target: SocketAddr) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    let n = wire::Request {
        command: Command::from(cmd),
        target: TargetAddr::Ip(target),
    }
    .emit(&mut out);
    out.truncate(n);
    out
}

fn reply(code: u8, bound: SocketAddr) -> Vec<u8> {
    let mut out = vec![0u8; wire::MAX_REPLY_LEN];
    let n = wire::emit_reply(Reply::from(code), bound, &mut out);
    out.truncate(n);
    out
}

/// A client whose BIND for `peer` has its listener open on `local()`.
fn binding(peer: SocketAddr, config: Config) -> Sim {
    let mut s = Sim::with(Users::None, config);
    s.input(&[GREETING_NO_AUTH, &request(0x02, peer)].concat());
    assert_eq!(s.take_sent(), SELECT_NO_AUTH);
    assert_eq!(s.take_actions(), [Action::Listen { peer }]);
    assert_eq!(s.conn.command(), Some(Command::Bind));
    s.conn.handle_listening(s.now, Ok(local()));
    s.pump();
    assert_eq!(s.take_sent(), reply(0, local()), "the first reply");
    assert_eq!(s.take_actions(), []);
    assert_eq!(s.conn.outcome(), None, "decided by the second reply");
    s
}

#[test]
fn bind_round_trip_second_reply_names_the_peer() {
    let peer = v4(20, 0);
    let mut s = binding(peer, Config::default());
    // Bytes the client sends before the second reply wait for the peer.
    s.input(b"early");
    s.advance(secs(30));
    s.assert_open();
    let from = v4(20, 5555);
    s.conn.handle_incoming(s.now, from);
    s.pump();
    assert_eq!(s.take_sent(), reply(0, from), "the second reply");
    assert_eq!(
        s.take_actions(),
        [
            Action::Decided(Outcome::Succeeded),
            Action::StopListening,
            Action::Relay {
                via: AttemptId::INBOUND,
                early_data: b"early".to_vec()
            }
        ]
    );
    assert_eq!(s.conn.connected(), Some(from));
    assert_eq!(s.conn.reading(), Reading::Relay);
    // From here it is a tunnel like CONNECT's.
    s.stream_end(Direction::Down);
    assert_eq!(s.take_actions(), [Action::Shutdown(Direction::Down)]);
    s.stream_end(Direction::Up);
    s.assert_closed();
}

#[test]
fn bind_refuses_a_wrong_peer_and_waits_on() {
    let mut s = binding(v4(20, 0), Config::default());
    s.conn.handle_incoming(s.now, v4(99, 4000));
    s.pump();
    assert_eq!(s.take_actions(), [Action::Cancel(AttemptId::INBOUND)]);
    assert_eq!(s.take_sent(), b"", "no second reply for a stranger");
    s.assert_open();
    // The expected peer, from any port, IPv4-mapped or not.
    let mapped: SocketAddr = "[::ffff:192.0.2.20]:7000".parse().unwrap();
    s.conn.handle_incoming(s.now, mapped);
    s.pump();
    assert_eq!(s.take_sent(), reply(0, mapped));
    assert_eq!(s.conn.outcome(), Some(Outcome::Succeeded));
}

#[test]
fn bind_for_the_unspecified_address_takes_any_peer() {
    let mut s = binding(SocketAddr::from(([0, 0, 0, 0], 0)), Config::default());
    s.conn.handle_incoming(s.now, v6(7, 4000));
    s.pump();
    assert_eq!(s.take_sent(), reply(0, v6(7, 4000)));
}

#[test]
fn bind_timeout_answers_06_and_stops_listening() {
    let config = Config {
        bind_timeout: secs(5),
        ..Config::default()
    };
    let mut s = binding(v4(20, 0), config);
    // The handshake timeout (10 s) no longer applies after the first reply.
    s.advance_ms(4_999);
    s.assert_open();
    s.advance_ms(1);
    assert_eq!(s.take_sent(), failure(0x06));
    let actions = s.take_actions();
    assert!(actions.contains(&Action::StopListening), "{actions:?}");
    assert!(
        actions.contains(&Action::Decided(Outcome::Rejected(Reply::TtlExpired))),
        "{actions:?}"
    );
    assert_eq!(s.conn.reading(), Reading::Discard);
}

#[test]
fn bind_listen_failure_has_its_reply() {
    let mut s = Sim::new(Users::None);
    s.input(&[GREETING_NO_AUTH, &request(0x02, v4(20, 0))].concat());
    s.take_sent();
    s.take_actions();
    s.conn.handle_listening(s.now, Err(err(libc::ENETUNREACH)));
    s.pump();
    assert_refused(
        &mut s,
        &failure(0x03),
        Outcome::Rejected(Reply::NetworkUnreachable),
    );
}

#[test]
fn bind_to_a_name_resolves_first_then_listens_toward_its_address() {
    let mut s = Sim::resolving("peer.example", Config::default());
    // Sim::resolving made a CONNECT; a BIND goes the same way until here.
    let mut b = Sim::new(Users::None);
    b.input(&[GREETING_NO_AUTH, &request_for_name(b"peer.example", 0)].concat());
    b.take_sent();
    let actions = b.take_actions();
    assert!(
        matches!(actions[..], [Action::Resolve { .. }]),
        "{actions:?}"
    );
    s.resolved(Ok(vec![v4(30, 443)]));
    assert_eq!(
        s.take_actions(),
        [connect(0, v4(30, 443))],
        "CONNECT connects"
    );

    let mut bind = Sim::new(Users::None);
    let mut req = request_for_name(b"peer.example", 0);
    req[1] = 0x02;
    bind.input(&[GREETING_NO_AUTH, &req].concat());
    bind.take_sent();
    bind.take_actions();
    bind.resolved(Ok(vec![v6(1, 0), v4(30, 0)]));
    assert_eq!(
        bind.take_actions(),
        [Action::Listen { peer: v6(1, 0) }],
        "BIND listens toward the first address"
    );
}

#[test]
fn client_leaving_during_bind_closes() {
    let mut s = binding(v4(20, 0), Config::default());
    s.stream_end(Direction::Up);
    s.assert_closed();
    assert_eq!(s.conn.outcome(), None);
}

// --------------------------------------------------------- UDP ASSOCIATE

fn associated(config: Config) -> Sim {
    let mut s = Sim::with(Users::None, config);
    let from = SocketAddr::from(([0, 0, 0, 0], 0));
    s.input(&[GREETING_NO_AUTH, &request(0x03, from)].concat());
    assert_eq!(s.take_sent(), SELECT_NO_AUTH);
    assert_eq!(s.take_actions(), [Action::Associate]);
    assert_eq!(s.conn.target(), Some(&TargetAddr::Ip(from)));
    assert_eq!(s.conn.reading(), Reading::Paused);
    s.conn.handle_associated(s.now, Ok(local()));
    s.pump();
    assert_eq!(s.take_sent(), success_from_local());
    assert_eq!(s.take_actions(), [Action::Decided(Outcome::Succeeded)]);
    s
}

#[test]
fn association_lives_as_long_as_its_control_connection() {
    let mut s = associated(Config::default());
    // Its bytes are read and dropped; no deadline without an idle timeout.
    assert_eq!(s.conn.reading(), Reading::Handshake);
    s.input(b"anything at all");
    assert_eq!(s.take_actions(), []);
    assert_eq!(s.conn.poll_timeout(), None);
    s.advance(secs(3600));
    s.assert_open();
    s.stream_end(Direction::Up);
    s.assert_closed();
}

#[test]
fn association_idle_timeout_counts_datagrams() {
    let config = Config {
        idle_timeout: Some(secs(60)),
        ..Config::default()
    };
    let mut s = associated(config);
    s.advance(secs(50));
    s.conn.handle_relayed(s.now);
    s.advance(secs(50));
    s.assert_open();
    s.advance(secs(10));
    s.assert_closed();
}

#[test]
fn association_refused_by_the_driver_answers_its_reply() {
    let mut s = Sim::new(Users::None);
    s.input(&[GREETING_NO_AUTH, &request(0x03, v4(1, 0))].concat());
    s.take_sent();
    assert_eq!(s.take_actions(), [Action::Associate]);
    s.conn.handle_associated(s.now, Err(Reply::GeneralFailure));
    s.pump();
    assert_refused(
        &mut s,
        &failure(0x01),
        Outcome::Rejected(Reply::GeneralFailure),
    );
}

// ------------------------------------------------------------ the rules

/// No users, these rules, and a per-user limit that is always reached.
struct Judged {
    rules: Rules,
    full: bool,
}

impl Authenticator for Judged {
    fn requires_auth(&self) -> bool {
        false
    }

    fn verify(&self, _: &[u8], _: &[u8]) -> Option<Arc<str>> {
        None
    }

    fn check(&self, _: &[u8], _: &[u8]) -> crate::users::Verdict {
        crate::users::Verdict::Reject
    }
}

impl Context for Judged {
    fn rules(&self) -> &Rules {
        &self.rules
    }

    fn is_admin(&self, _: &str) -> bool {
        false
    }

    fn client(&self) -> std::net::IpAddr {
        client_ip()
    }

    fn take_user_session(&self, _: &Arc<str>) -> bool {
        !self.full
    }
}

fn judged(text: &str) -> Judged {
    Judged {
        rules: Rules::parse("t.rules", text).unwrap(),
        full: false,
    }
}

fn new_conn() -> Connection {
    Connection::new(Instant::now(), Arc::new(Config::default()))
}

/// Everything queued for the client, and every action, after `f`.
fn outputs(conn: &mut Connection) -> (Vec<u8>, Vec<Action>) {
    let mut sent = Vec::new();
    while let Some(t) = conn.poll_transmit() {
        sent.extend_from_slice(t.as_bytes());
    }
    let mut actions = Vec::new();
    while let Some(a) = conn.poll_action() {
        let close = a == Action::Close;
        actions.push(a);
        if close {
            break;
        }
    }
    (sent, actions)
}

#[test]
fn a_denied_address_gets_02_and_names_its_rule() {
    let ctx = judged("deny to 192.0.2.0/24 port 80\nallow\n");
    let mut conn = new_conn();
    conn.handle_input(
        conn.started(),
        &[GREETING_NO_AUTH, &request(0x01, v4(10, 80))].concat(),
        &ctx,
    );
    let (sent, actions) = outputs(&mut conn);
    assert_eq!(sent, [SELECT_NO_AUTH, &failure(0x02)].concat());
    let denied = Outcome::Denied(rules::Origin::File { line: 1 });
    assert!(actions.contains(&Action::Decided(denied)), "{actions:?}");
    assert!(!actions.iter().any(|a| matches!(a, Action::Connect { .. })));
    // Another port is let through, by the last rule.
    let mut conn = new_conn();
    conn.handle_input(
        conn.started(),
        &[GREETING_NO_AUTH, &request(0x01, v4(10, 443))].concat(),
        &ctx,
    );
    let (_, actions) = outputs(&mut conn);
    assert_eq!(actions, [connect(0, v4(10, 443))]);
    assert_eq!(conn.rule(), Some((rules::Origin::File { line: 2 }, false)));
}

#[test]
fn a_names_addresses_are_judged_and_a_denied_one_is_not_tried() {
    let ctx = judged("deny to 192.0.2.0/24\nallow\n");
    let mut conn = new_conn();
    let now = conn.started();
    conn.handle_input(
        now,
        &[GREETING_NO_AUTH, &request_for_name(b"mixed.example", 443)].concat(),
        &ctx,
    );
    let (_, actions) = outputs(&mut conn);
    assert!(
        matches!(actions[..], [Action::Resolve { .. }]),
        "{actions:?}"
    );
    conn.handle_resolved(now, Ok(vec![v4(1, 443), v6(1, 443), v4(2, 443)]), &ctx);
    let (_, actions) = outputs(&mut conn);
    // Only the IPv6 address is tried: the others are in the denied block.
    assert_eq!(actions, [connect(0, v6(1, 443))]);

    // Every address denied: X'02', the first denial's rule.
    let mut conn = new_conn();
    conn.handle_input(
        now,
        &[GREETING_NO_AUTH, &request_for_name(b"sneaky.example", 80)].concat(),
        &ctx,
    );
    outputs(&mut conn);
    conn.handle_resolved(now, Ok(vec![v4(9, 80)]), &ctx);
    let (sent, actions) = outputs(&mut conn);
    assert_eq!(sent, failure(0x02));
    let denied = Outcome::Denied(rules::Origin::File { line: 1 });
    assert!(actions.contains(&Action::Decided(denied)), "{actions:?}");
}

#[test]
fn a_name_rule_decides_before_resolving() {
    let ctx = judged("deny to .blocked.example\nallow\n");
    let mut conn = new_conn();
    conn.handle_input(
        conn.started(),
        &[
            GREETING_NO_AUTH,
            &request_for_name(b"www.Blocked.Example.", 80),
        ]
        .concat(),
        &ctx,
    );
    let (sent, actions) = outputs(&mut conn);
    assert_eq!(sent, [SELECT_NO_AUTH, &failure(0x02)].concat());
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Resolve { .. })),
        "a denied name is not resolved: {actions:?}"
    );
}

#[test]
fn a_user_past_its_session_limit_gets_02() {
    let mut ctx = judged("allow\n");
    ctx.full = true;
    let mut s = Sim::new(Users::Alice);
    s.input(&[GREETING_USERPASS, AUTH_ALICE].concat());
    s.take_sent();
    // Log in with the Sim's users, then the request judged by `ctx`.
    s.conn.handle_input(s.now, &request(0x01, v4(10, 80)), &ctx);
    s.pump();
    assert_eq!(s.take_sent(), failure(0x02));
    let actions = s.take_actions();
    assert!(
        actions.contains(&Action::Decided(Outcome::Denied(USER_LIMIT))),
        "{actions:?}"
    );
    assert!(!s.conn.holds_user_session(), "nothing taken to give back");
}
