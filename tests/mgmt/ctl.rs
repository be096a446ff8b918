//! socks5dctl and the later commands: over SCTP one association started
//! with several addresses of the server (sctp_connectx); over either
//! transport RELOAD (X'0A') and USER_METRICS (X'09').

use std::fs;
use std::panic;
use std::process::Command;
use std::thread;

use nix::sched::CloneFlags;
use socks5d::mgmt::wire::{Request, Response, Status};

use super::support::*;

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let mut c = Command::new("ip");
    c.args(args);
    let out = run_child(c, "ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Several -L: the association is started with every address, so an INIT
/// the first does not answer is retried on the next.
///
/// In a network namespace of its own, so that nothing outside changes:
/// packets to 10.9.0.2 go out on lo and are dropped on the way back in (no
/// host has that address and nothing forwards), silently, like a path that
/// is down; socks5d listens on 10.9.1.1 only. With `-L 10.9.0.2 -L 10.9.1.1`
/// socks5dctl gets in once the first INIT times out (the initial RTO: 1 s
/// with socks5dctl's path settings, 3 s with Linux's own); with
/// `-L 10.9.0.2` alone it cannot.
pub fn several_addresses_make_one_association(t: &Transport) {
    assert_eq!(*t, Transport::Sctp, "a case about SCTP multi-homing");
    let run = thread::spawn(|| {
        // The namespace is this thread's, and its children's.
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .expect("a network namespace of its own (the suite runs as root)");
        ip(&["link", "set", "lo", "up"]);
        ip(&["addr", "add", "10.9.1.1/32", "dev", "lo"]);
        ip(&[
            "route",
            "add",
            "10.9.0.0/24",
            "dev",
            "lo",
            "src",
            "10.9.1.1",
        ]);
        let d = Daemon::start(&Transport::Sctp, &["-L", "10.9.1.1"]);
        let port = d.port().to_string();
        let c = ctl(
            &[
                "-L",
                "10.9.0.2",
                "--mgmt-listen",
                "10.9.1.1",
                "-P",
                &port,
                "-U",
                ADMIN,
                "historic",
            ],
            ADMIN_PW,
            None,
        );
        assert_eq!(
            (c.code, c.stdout.as_str()),
            (0, "historic connections: 0\n"),
            "over 10.9.0.2 (down) and 10.9.1.1: {c:?}"
        );
        let c = ctl(
            &["-L", "10.9.0.2", "-P", &port, "-U", ADMIN, "historic"],
            ADMIN_PW,
            None,
        );
        assert_eq!(c.code, 3, "10.9.0.2 alone leads nowhere: {c:?}");
    });
    if let Err(p) = run.join() {
        panic::resume_unwind(p);
    }
}

/// RELOAD and USER_METRICS through socks5dctl and a raw session; over
/// SCTP, socks5dctl's association has the IPv4 and the IPv6 address.
pub fn reload_and_user_metrics(t: &Transport) {
    let dir = ScratchDir::new("reload");
    let users = dir.path.join("users");
    let users_arg = users.to_str().expect("a UTF-8 scratch path");
    let d = Daemon::start(t, &["--users-file", users_arg, "-u", "bob:bobpw"]);
    let mut target = d.ctl_target();
    if *t == Transport::Sctp {
        target.extend(["-L".to_owned(), "::1".to_owned()]);
    }
    let base: Vec<&str> = target
        .iter()
        .map(String::as_str)
        .chain(["-U", ADMIN])
        .collect();
    let run = |extra: &[&str]| ctl(&[&base[..], extra].concat(), ADMIN_PW, None);

    let c = run(&["reload"]);
    assert_eq!((c.code, c.stdout.as_str()), (0, "reload: done\n"), "{c:?}");
    let c = run(&["--json", "user-metrics"]);
    assert_eq!(
        (c.code, c.stdout.as_str()),
        (
            0,
            "[{\"name\": \"bob\", \"sessions_opened\": 0, \"sessions_open\": 0, \"bytes_client_to_target\": 0, \"bytes_target_to_client\": 0, \"auth_failures\": 0, \"requests_denied\": 0}, {\"name\": \"root\", \"sessions_opened\": 0, \"sessions_open\": 0, \"bytes_client_to_target\": 0, \"bytes_target_to_client\": 0, \"auth_failures\": 0, \"requests_denied\": 0}]\n"
        ),
        "{c:?}"
    );

    let m = d.admin();
    assert_eq!(
        m.request(&Request::Reload),
        Response::Done { command: 0x0A },
        "RELOAD"
    );
    match m.request(&Request::UserMetrics { offset: 1 }) {
        Response::UserMetrics { total, users } => {
            assert_eq!(total, 2);
            let names: Vec<&[u8]> = users.iter().map(|u| &u.name[..]).collect();
            assert_eq!(names, [&b"root"[..]], "from offset 1");
        }
        other => panic!("USER_METRICS answered {other:?}"),
    }

    // Edited by hand into something that does not parse: nothing changes.
    fs::write(&users, "bob:nobody:x\n").expect("spoil the users file");
    assert_eq!(
        m.request(&Request::Reload),
        Response::Failed {
            status: Status::ServerError,
            command: 0x0A
        },
        "RELOAD of a bad file"
    );
    let c = run(&["reload"]);
    assert_eq!(c.code, 17, "{c:?}");
    assert_eq!(m.list_all().len(), 2, "the users are as they were");
}
