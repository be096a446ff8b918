//! The management session driven with no socket: messages in, actions out.

use std::sync::Arc;

use super::*;
use crate::metrics::Snapshot;
use crate::users::file::{Cost, hash_password_with};
use crate::users::{Role, Secret, UserTable};

struct Fake {
    users: Arc<UserTable>,
    metrics: Snapshot,
}

impl Backend for Fake {
    fn metrics(&self) -> Snapshot {
        self.metrics
    }
    fn users(&self) -> Arc<UserTable> {
        Arc::clone(&self.users)
    }
    /// Made-up counters, a different number of them per user, so that the
    /// test sees they are carried as given.
    fn user_metrics(&self, user: &[u8]) -> Vec<(u8, u64)> {
        (1..=user.len() as u8)
            .map(|id| (id, u64::from(id) * 100))
            .collect()
    }
}

fn backend() -> Fake {
    let mut t = UserTable::new();
    t.add(b"root", b"rootpw", Role::Admin).unwrap();
    t.add(b"bob", b"bobpw", Role::Proxy).unwrap();
    // Known only by its stored hash, as after a restart.
    t.insert(
        b"carol",
        Role::Admin,
        Secret::from_stored(hash_password_with(b"carolpw", Cost::CHEAP)),
    );
    Fake {
        users: Arc::new(t),
        metrics: Snapshot {
            historic: 42,
            concurrent: 3,
            bytes_up: 1000,
            bytes_down: 2000,
            auth_failed: 5,
            connect_failed: 6,
            uptime_secs: 77,
            refused: 9,
            auth_penalised: 10,
            penalties: 11,
            checks_refused: 12,
            log_suppressed: 13,
            evicted: 14,
            mgmt_aborted: 15,
            udp_associations: 16,
            udp_datagrams: 17,
            udp_dropped: 18,
            binds: 19,
            denied: 20,
            session_limit: 21,
            proxy_refused: 22,
            users_store_stale: 1,
            users_store_lost: 23,
        },
    }
}

fn login(user: &[u8], pass: &[u8]) -> Vec<u8> {
    let mut v = vec![1, user.len() as u8];
    v.extend_from_slice(user);
    v.push(pass.len() as u8);
    v.extend_from_slice(pass);
    v
}

fn sent(s: &mut Session) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(a) = s.poll_action() {
        match a {
            Action::Send { stream, message } => out.push((stream, message)),
            other => panic!("unexpected action {other:?}"),
        }
    }
    out
}

/// Answers the session's claim of a session place.
fn claim(s: &mut Session, granted: bool, b: &Fake) {
    assert!(matches!(s.poll_action(), Some(Action::ClaimSlot)));
    assert!(s.poll_action().is_none());
    assert!(s.is_checking());
    assert!(
        s.admin().is_none(),
        "not logged in before the place is given"
    );
    s.slot_claimed(granted, b);
}

fn logged_in(b: &Fake) -> Session {
    let mut s = Session::new();
    s.handle_message(0, &login(b"root", b"rootpw"), b).unwrap();
    claim(&mut s, true, b);
    assert_eq!(sent(&mut s), [(0, vec![1, 0])]);
    assert!(!s.is_checking());
    s
}

#[test]
fn admin_with_known_password_logs_in_at_once() {
    let b = backend();
    let s = logged_in(&b);
    assert_eq!(s.admin().map(|a| &**a), Some("root"));
    assert!(!s.is_closed());
}

#[test]
fn every_refusal_goes_to_the_slow_check() {
    // Wrong password, unknown user, non-administrator: the session cannot
    // tell them apart quickly, so each is checked off the worker.
    let b = backend();
    for (u, p) in [
        (&b"root"[..], &b"nope"[..]),
        (b"nobody", b"x"),
        (b"bob", b"bobpw"),
    ] {
        let mut s = Session::new();
        s.handle_message(3, &login(u, p), &b).unwrap();
        match s.poll_action() {
            Some(Action::CheckLogin(c)) => {
                assert_eq!(c.username, u);
                assert!(!format!("{c:?}").contains(std::str::from_utf8(p).unwrap()));
            }
            other => panic!("{other:?}"),
        }
        assert!(s.poll_action().is_none());
        s.login_checked(None, &b);
        let out: Vec<_> = std::iter::from_fn(|| s.poll_action()).collect();
        assert!(matches!(&out[0], Action::Send { stream: 3, message } if message == &[1, 1]));
        assert!(matches!(out[1], Action::Shutdown));
        assert!(s.is_closed());
    }
}

#[test]
fn stored_hash_admin_logs_in_after_the_slow_check() {
    let b = backend();
    let mut s = Session::new();
    s.handle_message(0, &login(b"carol", b"carolpw"), &b)
        .unwrap();
    let Some(Action::CheckLogin(c)) = s.poll_action() else {
        panic!()
    };
    // What the blocking pool does:
    let admin = b.users.check_admin(&c.username, &c.password);
    assert_eq!(admin.as_deref(), Some("carol"));
    // Requests sent meanwhile wait, in order.
    assert!(s.is_checking());
    s.handle_message(1, &[1, 1], &b).unwrap();
    s.handle_message(2, &[1, 2], &b).unwrap();
    assert!(s.poll_action().is_none());
    s.login_checked(admin, &b);
    // ... and while the session place is claimed.
    s.handle_message(3, &[1, 3], &b).unwrap();
    claim(&mut s, true, &b);
    let out = sent(&mut s);
    assert_eq!(out[0], (0, vec![1, 0]));
    assert_eq!(out[1].0, 1);
    assert_eq!(out[1].1[..3], [1, 0, 1]);
    assert_eq!(out[2].0, 2);
    assert_eq!(out[2].1[..3], [1, 0, 2]);
    assert_eq!(out[3].0, 3);
    assert_eq!(out[3].1[..3], [1, 0, 3]);
    assert_eq!(s.admin().map(|a| &**a), Some("carol"));
}

#[test]
fn good_credentials_without_a_session_place_get_server_error_and_close() {
    let b = backend();
    // The quick path and the slow path alike.
    let mut quick = Session::new();
    quick
        .handle_message(2, &login(b"root", b"rootpw"), &b)
        .unwrap();
    let mut slow = Session::new();
    slow.handle_message(2, &login(b"carol", b"carolpw"), &b)
        .unwrap();
    assert!(matches!(slow.poll_action(), Some(Action::CheckLogin(_))));
    slow.login_checked(Some(Arc::from("carol")), &b);
    for mut s in [quick, slow] {
        // A request pipelined behind the log in is dropped with it.
        s.handle_message(2, &[1, 1], &b).unwrap();
        claim(&mut s, false, &b);
        let out: Vec<_> = std::iter::from_fn(|| s.poll_action()).collect();
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(&out[0], Action::Send { stream: 2, message } if message == &[1, 3]));
        assert!(matches!(out[1], Action::Shutdown));
        assert!(s.is_closed());
        assert!(!s.is_checking());
        assert!(s.admin().is_none());
        s.handle_message(2, &[1, 1], &b).unwrap();
        assert!(s.poll_action().is_none());
    }
}

#[test]
fn malformed_login_is_answered_and_closed() {
    let b = backend();
    for (msg, status) in [
        (vec![2, 1, b'a', 1, b'b'], 2u8),
        (vec![1, 0, 1, b'b'], 4),
        (vec![1, 1, b'a', 0], 4),
        (vec![1, 1, b'a', 1, b'b', 9], 4),
        (vec![], 4),
    ] {
        let mut s = Session::new();
        s.handle_message(0, &msg, &b).unwrap();
        let out: Vec<_> = std::iter::from_fn(|| s.poll_action()).collect();
        assert!(
            matches!(&out[0], Action::Send { message, .. } if message == &[1, status]),
            "{msg:?}"
        );
        assert!(matches!(out[1], Action::Shutdown));
        assert!(s.is_closed());
        // Nothing more is answered.
        s.handle_message(0, &[1, 1], &b).unwrap();
        assert!(s.poll_action().is_none());
    }
}

#[test]
fn counters_and_metrics() {
    let b = backend();
    let mut s = logged_in(&b);
    s.handle_message(5, &[1, 1], &b).unwrap();
    s.handle_message(5, &[1, 2], &b).unwrap();
    s.handle_message(5, &[1, 3], &b).unwrap();
    s.handle_message(6, &[1, 4], &b).unwrap();
    let out = sent(&mut s);
    let u64_be = |v: u64| v.to_be_bytes().to_vec();
    assert_eq!(out[0], (5, [vec![1, 0, 1], u64_be(42)].concat()));
    assert_eq!(out[1], (5, [vec![1, 0, 2], u64_be(3)].concat()));
    assert_eq!(out[2], (5, [vec![1, 0, 3], u64_be(3000)].concat()));
    let m = &out[3].1;
    assert_eq!(out[3].0, 6);
    assert_eq!(m[..4], [1, 0, 4, 24]);
    let values: Vec<(u8, u64)> = m[4..]
        .chunks(9)
        .map(|c| (c[0], u64::from_be_bytes(c[1..9].try_into().unwrap())))
        .collect();
    assert_eq!(
        values,
        [
            (1, 42),
            (2, 3),
            (3, 3000),
            (4, 1000),
            (5, 2000),
            (6, 5),
            (7, 6),
            (8, 77),
            (9, 16),
            (10, 17),
            (11, 18),
            (12, 20),
            (13, 19),
            (0x80, 9),
            (0x81, 10),
            (0x82, 11),
            (0x83, 12),
            (0x84, 14),
            (0x85, 15),
            (0x86, 13),
            (0x87, 21),
            (0x88, 22),
            (0x89, 1),
            (0x8A, 23)
        ]
    );
}

#[test]
fn list_users_pages_in_name_order() {
    let b = backend();
    let mut s = logged_in(&b);
    s.handle_message(0, &[1, 5, 0, 0, 0, 1], &b).unwrap();
    s.handle_message(0, &[1, 5, 0, 0, 0, 9], &b).unwrap();
    let out = sent(&mut s);
    // bob, carol, root; from offset 1: carol (admin), root (admin).
    assert_eq!(
        out[0].1,
        [
            &[1, 0, 5, 0, 0, 0, 3, 0, 2, 1, 5][..],
            b"carol",
            &[1, 4],
            b"root"
        ]
        .concat()
    );
    assert_eq!(out[1].1, [1, 0, 5, 0, 0, 0, 3, 0, 0]);
}

#[test]
fn user_metrics_pages_in_name_order_with_the_backends_values() {
    let b = backend();
    let mut s = logged_in(&b);
    s.handle_message(0, &[1, 9, 0, 0, 0, 1], &b).unwrap();
    s.handle_message(0, &[1, 9, 0, 0, 0, 3], &b).unwrap();
    let out = sent(&mut s);
    let Some(wire::Response::UserMetrics { total, users }) =
        wire::Response::parse(&out[0].1, Command::UserMetrics)
    else {
        panic!("{:02x?}", out[0].1)
    };
    assert_eq!(total, 3);
    let got: Vec<(&[u8], usize)> = users
        .iter()
        .map(|u| (&u.name[..], u.values.len()))
        .collect();
    // bob, carol, root; from offset 1: carol (5 values), root (4).
    assert_eq!(got, [(&b"carol"[..], 5), (&b"root"[..], 4)]);
    assert_eq!(users[1].values[3], (4, 400));
    assert_eq!(out[1].1, [1, 0, 9, 0, 0, 0, 3, 0, 0]);
}

#[test]
fn reload_goes_to_the_writer_and_its_status_is_the_answer() {
    let b = backend();
    let mut s = logged_in(&b);
    s.handle_message(7, &[1, 0x0A], &b).unwrap();
    let Some(Action::Change(UserChange::Reload)) = s.poll_action() else {
        panic!("RELOAD is a change")
    };
    s.handle_message(7, &[1, 1], &b).unwrap();
    assert!(s.poll_action().is_none(), "requests wait behind it");
    s.change_done(status_of(Err(UserError::Unreadable)), &b);
    s.handle_message(7, &[1, 0x0A], &b).unwrap();
    let out: Vec<_> = std::iter::from_fn(|| s.poll_action()).collect();
    assert!(matches!(&out[0], Action::Send { stream: 7, message } if message == &[1, 7, 0x0A]));
    assert!(matches!(&out[1], Action::Send { message, .. } if message[..3] == [1, 0, 1]));
    assert!(matches!(out[2], Action::Change(UserChange::Reload)));
    s.change_done(Status::Success, &b);
    assert_eq!(sent(&mut s), [(7, vec![1, 0, 0x0A])]);
}

#[test]
fn user_changes_wait_for_the_writer_and_keep_order() {
    let b = backend();
    let mut s = logged_in(&b);
    let mut add = vec![1, 6, 0, 5];
    add.extend_from_slice(b"alice");
    add.push(2);
    add.extend_from_slice(b"pw");
    s.handle_message(4, &add, &b).unwrap();
    let Some(Action::Change(change)) = s.poll_action() else {
        panic!()
    };
    let UserChange::Add { name, role, .. } = &change else {
        panic!("{change:?}")
    };
    assert_eq!((name.as_slice(), *role), (&b"alice"[..], Role::Proxy));
    // A metric asked meanwhile is answered after the change, not before.
    s.handle_message(4, &[1, 1], &b).unwrap();
    assert!(s.poll_action().is_none());
    s.change_done(Status::UserExists, &b);
    let out = sent(&mut s);
    assert_eq!(out[0], (4, vec![1, 4, 6]));
    assert_eq!(out[1].1[..3], [1, 0, 1]);
}

#[test]
fn bad_requests_get_a_status_and_the_session_goes_on() {
    let b = backend();
    let mut s = logged_in(&b);
    s.handle_message(0, &[2, 1], &b).unwrap();
    s.handle_message(0, &[1, 0x0B], &b).unwrap();
    s.handle_message(0, &[1, 1, 0], &b).unwrap();
    s.handle_message(0, &[1], &b).unwrap();
    s.handle_message(0, &[1, 2], &b).unwrap();
    let out = sent(&mut s);
    assert_eq!(out[0].1, [1, 1, 1]);
    assert_eq!(out[1].1, [1, 2, 0x0B]);
    assert_eq!(out[2].1, [1, 3, 1]);
    assert_eq!(out[3].1, [1, 3, 0]);
    assert_eq!(out[4].1[..3], [1, 0, 2]);
    assert!(!s.is_closed());
}

#[test]
fn pipelining_is_bounded() {
    let b = backend();
    let mut s = logged_in(&b);
    s.handle_message(0, &[1, 7, 1, b'x'], &b).unwrap();
    assert!(matches!(s.poll_action(), Some(Action::Change(_))));
    for _ in 0..MAX_PENDING {
        s.handle_message(0, &[1, 1], &b).unwrap();
    }
    assert_eq!(s.handle_message(0, &[1, 1], &b), Err(TooManyPending));
}

#[test]
fn passwords_are_never_printed() {
    let c = UserChange::SetPassword {
        name: b"alice".to_vec(),
        password: b"hunter2".to_vec(),
    };
    assert!(!format!("{c:?}").contains("hunter2"));
    let c = Credentials {
        username: b"root".to_vec(),
        password: b"hunter2".to_vec(),
    };
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn a_throttled_log_in_is_refused_unchecked_like_a_wrong_password() {
    let b = backend();
    let mut s = Session::new();
    assert!(s.awaits_login());
    s.throttle();
    // Even the right password: throttling must slow guessing, not only
    // wrong guesses.
    s.handle_message(0, &login(b"root", b"rootpw"), &b).unwrap();
    let out: Vec<_> = std::iter::from_fn(|| s.poll_action()).collect();
    assert!(matches!(&out[0], Action::Send { message, .. } if message == &[1, 1]));
    assert!(matches!(out[1], Action::Shutdown));
    assert!(s.is_closed());
}

/// Idle: nothing under way. A check, a change or a request waiting behind
/// one is not; the endpoint closes a Unix peer that has shut its side
/// down only when idle, so that it gets every answer first.
#[test]
fn idle_only_when_nothing_is_under_way() {
    let b = backend();
    let mut s = Session::new();
    assert!(s.is_idle(), "waiting for a log in");
    s.handle_message(0, &login(b"carol", b"carolpw"), &b)
        .unwrap();
    assert!(!s.is_idle(), "an action to take");
    let Some(Action::CheckLogin(_)) = s.poll_action() else {
        panic!("a check")
    };
    assert!(!s.is_idle(), "the check under way");
    s.handle_message(0, &[1, 1], &b).unwrap();
    s.login_checked(Some(Arc::from("carol")), &b);
    claim(&mut s, true, &b);
    assert!(!s.is_idle(), "answers to send");
    assert_eq!(sent(&mut s).len(), 2);
    assert!(s.is_idle(), "logged in, all answered");
    s.handle_message(0, &[1, 7, 1, b'x'], &b).unwrap();
    assert!(matches!(s.poll_action(), Some(Action::Change(_))));
    assert!(!s.is_idle(), "a change under way");
    s.change_done(Status::NoSuchUser, &b);
    assert_eq!(sent(&mut s).len(), 1);
    assert!(s.is_idle());
}
