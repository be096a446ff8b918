//! Case 2: log-in failures, each answered and then closed by the server.

use super::support::*;
use crate::common::{anon_kib, assert_check_memory_held};

/// Wrong password, unknown user, proxy user: the same X'01' and a closed
/// session. Bad VER: X'02' and closed. Malformed: X'04' and closed.
pub fn failures_close_the_association(t: &Transport) {
    let d = Daemon::start(t, &["-u", "bob:bobpw"]);
    let denied: &[(&str, Vec<u8>)] = &[
        ("wrong password", login_bytes(b"root", b"wrong")),
        ("unknown user", login_bytes(b"nobody", b"rootpw")),
        (
            "proxy user with its right password",
            login_bytes(b"bob", b"bobpw"),
        ),
    ];
    let mut replies = Vec::new();
    for (what, msg) in denied {
        let c = Mgmt::connect(d.mgmt());
        let reply = c.raw(msg);
        assert_eq!(reply, [0x01, 0x01], "log in with {what}");
        c.expect_closed(what);
        replies.push(reply);
    }
    assert!(
        replies.windows(2).all(|w| w[0] == w[1]),
        "denials differ: {replies:02x?}"
    );

    let mut bad_ver = login_bytes(b"root", b"rootpw");
    bad_ver[0] = 0x02;
    let versions: &[(&str, Vec<u8>)] = &[
        ("VER 2", bad_ver),
        ("a SOCKS5 greeting", vec![0x05, 0x01, 0x00]),
        ("an HTTP request", b"GET / HTTP/1.0\r\n\r\n".to_vec()),
    ];
    for (what, msg) in versions {
        let c = Mgmt::connect(d.mgmt());
        assert_eq!(c.raw(msg), [0x01, 0x02], "log in with {what}");
        c.expect_closed(what);
    }

    let mut trailing = login_bytes(b"root", b"rootpw");
    trailing.push(0);
    let mut short = login_bytes(b"root", b"rootpw");
    short.pop();
    let malformed: &[(&str, Vec<u8>)] = &[
        (
            "ULEN 0",
            vec![0x01, 0, 6, b'r', b'o', b'o', b't', b'p', b'w'],
        ),
        ("PLEN 0", vec![0x01, 4, b'r', b'o', b'o', b't', 0]),
        ("PLEN past the end", short),
        ("a trailing byte", trailing),
        ("no PLEN", vec![0x01, 4, b'r', b'o', b'o', b't']),
        ("ULEN past the end", vec![0x01, 10, b'r', b'o', b'o', b't']),
        ("VER alone", vec![0x01]),
        ("garbage after VER 1", vec![0x01, 0xde, 0xad, 0xbe, 0xef]),
        ("a METRICS request before logging in", vec![0x01, 0x04]),
    ];
    for (what, msg) in malformed {
        let c = Mgmt::connect(d.mgmt());
        assert_eq!(c.raw(msg), [0x01, 0x04], "log in with {what}");
        c.expect_closed(what);
    }

    // The server is none the worse.
    let m = d.admin();
    assert!(m.metrics().len() >= 8);
}

/// 500 wrong administrator passwords, eight sessions at a time: every
/// refusal is an Argon2id check at the default cost (19 MiB), yet socks5d's
/// memory stays at start-up plus one Argon2id memory per checker thread,
/// allocated once. (It grew by 19 MiB per check, to hundreds of MiB, when
/// each check allocated its own.)
pub fn wrong_admin_passwords_hold_memory_fixed(t: &Transport) {
    // Every attempt is checked, none refused by a penalty: loopback exempt
    // over SCTP, a threshold above 500 over Unix (no exemption covers a
    // local user).
    let d = Daemon::start(t, &[&["--check-threads", "2"], t.unpenalised()].concat());
    let at_start = anon_kib(d.pid());
    let attempt = |addr| {
        let c = Mgmt::connect(addr);
        assert_eq!(c.login(ADMIN, "wrong"), [0x01, 0x01], "a wrong password");
    };
    let round = |n: usize| {
        let left = std::sync::atomic::AtomicUsize::new(n);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    while left
                        .fetch_update(
                            std::sync::atomic::Ordering::Relaxed,
                            std::sync::atomic::Ordering::Relaxed,
                            |k| k.checked_sub(1),
                        )
                        .is_ok()
                    {
                        attempt(d.mgmt());
                    }
                });
            }
        });
    };
    round(20);
    let warmed = anon_kib(d.pid());
    round(480);
    let after = anon_kib(d.pid());
    // Two checker threads, 19 MiB each.
    assert_check_memory_held(at_start, warmed, after, 2, 19 * 1024);
    let ok = Mgmt::admin(d.mgmt());
    assert!(ok.metrics().len() >= 8, "the right password still works");
    // Else the refusals cost no check and the memory proves nothing.
    assert!(
        !d.warnings().contains("refused unchecked"),
        "a penalty cut the checks short:\n{}",
        d.warnings()
    );
}
