//! Cases 6 to 8: what the management protocol changes in the SOCKS service:
//! users (each change in effect within 100 ms of its response), the
//! counters, and the users file across a restart.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use socks5d::mgmt::wire::{Request, Status};
use socks5d::users::Role;

use super::support::*;

/// docs/management-protocol.md section 6: a change takes effect "within 100 ms of the response".
const EFFECT: Duration = Duration::from_millis(100);

/// Probes from `since` (the moment the response arrived) until `seen` says
/// the change is in effect, and returns when the probe that saw it ended.
/// Fails unless that is within [`EFFECT`]: a probe can only show that the
/// change was in effect by the time it ended, so the whole probe, its round
/// trips included, must fit in the 100 ms. Probes follow each other at once
/// (each is a SOCKS exchange of its own, nothing to sleep for).
fn in_effect_within(since: Instant, what: &str, mut seen: impl FnMut() -> bool) -> Duration {
    let mut probes = 0;
    loop {
        let hit = seen();
        probes += 1;
        let at = since.elapsed();
        assert!(
            at <= EFFECT,
            "{what}: {} {at:?} after the response ({probes} probes); docs/management-protocol.md section 6 \
             allows {EFFECT:?}",
            if hit {
                "first seen in effect only"
            } else {
                "still not in effect"
            }
        );
        if hit {
            return at;
        }
    }
}

fn url(t: &Target) -> String {
    format!("http://{}/", t.addr)
}

/// ADD_USER, then the new user authenticates; SET_PASSWORD, then the new
/// password does; DELETE_USER, then the user is refused: each within 100 ms
/// of the response, measured to the end of the first SOCKS authentication
/// that shows it (a refusal's time includes the Argon2id check every refusal
/// costs). Then curl agrees, the old password is refused, and a tunnel
/// already open is not cut by the deletion.
pub fn user_changes_reach_socks_within_100ms(t: &Transport) {
    // The refusals here must not add up to a penalty (--max-auth-failures).
    let d = Daemon::start(t, &["--auth-penalty-exempt", "127.0.0.0/8"]);
    let m = d.admin();
    let http = Target::http();
    let echo = Target::banner_echo();
    assert!(
        curl(d.socks, "alice", "pw-1", &url(&http)).is_err(),
        "curl as alice before she exists"
    );

    assert_eq!(m.add_user("alice", "pw-1", Role::Proxy), Status::Success);
    let added = in_effect_within(Instant::now(), "ADD_USER alice", || {
        socks_auth_ok(d.socks, "alice", "pw-1")
    });
    assert_eq!(
        curl(d.socks, "alice", "pw-1", &url(&http)).as_deref(),
        Ok("hello"),
        "curl as alice after ADD_USER"
    );

    assert_eq!(m.set_password("alice", "pw-2"), Status::Success);
    // A user has one password: the new one working is the change.
    let changed = in_effect_within(Instant::now(), "SET_PASSWORD alice", || {
        socks_auth_ok(d.socks, "alice", "pw-2")
    });
    assert!(
        !socks_auth_ok(d.socks, "alice", "pw-1"),
        "alice's old password after SET_PASSWORD"
    );
    assert!(
        curl(d.socks, "alice", "pw-1", &url(&http)).is_err(),
        "curl with alice's old password"
    );
    assert_eq!(
        curl(d.socks, "alice", "pw-2", &url(&http)).as_deref(),
        Ok("hello"),
        "curl with alice's new password"
    );

    // A tunnel opened before the deletion.
    let mut tunnel = socks_connect(d.socks, "alice", "pw-2", echo.addr).expect("a tunnel as alice");
    let mut banner = vec![0u8; BANNER.len()];
    tunnel.read_exact(&mut banner).expect("banner");

    assert_eq!(m.delete_user("alice"), Status::Success);
    let deleted = in_effect_within(Instant::now(), "DELETE_USER alice", || {
        !socks_auth_ok(d.socks, "alice", "pw-2")
    });
    println!(
        "(in effect, to the end of the first probe that showed it: ADD_USER {:.1} ms, \
         SET_PASSWORD {:.1} ms, DELETE_USER {:.1} ms) ",
        added.as_secs_f64() * 1e3,
        changed.as_secs_f64() * 1e3,
        deleted.as_secs_f64() * 1e3
    );
    assert!(
        curl(d.socks, "alice", "pw-2", &url(&http)).is_err(),
        "curl as alice after DELETE_USER"
    );

    // "Tunnels already open are not cut."
    tunnel
        .write_all(b"still here")
        .expect("send through the old tunnel");
    let mut back = [0u8; 10];
    tunnel
        .read_exact(&mut back)
        .expect("the open tunnel was cut by DELETE_USER");
    assert_eq!(&back, b"still here");
}

/// One tunnel through [`Target::banner_echo`]: `up` bytes each way after
/// the banner, then an orderly close.
fn tunnel(proxy: SocketAddr, target: SocketAddr, up: usize, seed: u64) {
    let mut s = socks_connect(proxy, "bob", "bobpw", target).expect("tunnel as bob");
    let mut banner = vec![0u8; BANNER.len()];
    s.read_exact(&mut banner).expect("banner");
    assert_eq!(banner, BANNER);
    let data = pattern(seed, up);
    // Write and read together: the echo could fill both directions' buffers.
    let mut w = s.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        w.write_all(&data).expect("send payload");
        w.shutdown(Shutdown::Write).expect("half-close");
        data
    });
    let mut back = Vec::with_capacity(up);
    s.read_to_end(&mut back).expect("read the echo to the end");
    let data = writer.join().expect("writer");
    assert!(
        back == data,
        "echo of {up} bytes came back as {} bytes, or changed",
        back.len()
    );
}

/// After k tunnels with known bytes, one failed authentication and one
/// refused CONNECT, METRICS is exact.
pub fn metrics_equal_the_socks_traffic(t: &Transport) {
    let d = Daemon::start(t, &["-u", "bob:bobpw"]);
    let m = d.admin();
    let echo = Target::banner_echo();
    let sizes = [1usize, 1000, 70_000, 300_000];
    for (i, &n) in sizes.iter().enumerate() {
        tunnel(d.socks, echo.addr, n, i as u64);
    }
    match socks_auth(d.socks, "bob", "wrong") {
        Err(SocksError::AuthFailed(_) | SocksError::AuthClosed) => {}
        Ok(_) => panic!("bob authenticated with a wrong password"),
        Err(e) => panic!("wrong password: {e:?}"),
    }
    let closed = closed_port();
    match socks_connect(d.socks, "bob", "bobpw", closed) {
        Err(SocksError::ConnectFailed(rep)) => assert_ne!(rep, 0),
        Ok(_) => panic!("CONNECT to the closed port {closed} succeeded"),
        Err(e) => panic!("CONNECT to a closed port: {e:?}"),
    }

    let up: u64 = sizes.iter().map(|&n| n as u64).sum();
    let down = up + (sizes.len() * BANNER.len()) as u64;
    let historic = sizes.len() as u64 + 2;
    let want = [
        (1u8, historic),
        (2, 0),
        (3, up + down),
        (4, up),
        (5, down),
        (6, 1),
        (7, 1),
    ];
    let matches =
        |v: &std::collections::BTreeMap<u8, u64>| want.iter().all(|(id, x)| v.get(id) == Some(x));
    let mut last = m.metrics();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !matches(&last) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        last = m.metrics();
    }
    assert!(
        matches(&last),
        "METRICS {last:?}, want {want:?} (IDs: 1 historic, 2 concurrent, 3 bytes, 4 up, 5 down, 6 auth failures, 7 connect failures)"
    );
    // Stable, and the single counters agree.
    assert_eq!(
        m.counter(Request::HistoricConnections),
        historic,
        "HISTORIC_CONNECTIONS"
    );
    assert_eq!(
        m.counter(Request::ConcurrentConnections),
        0,
        "CONCURRENT_CONNECTIONS"
    );
    assert_eq!(
        m.counter(Request::BytesTransferred),
        up + down,
        "BYTES_TRANSFERRED"
    );
    let again = m.metrics();
    assert!(matches(&again), "METRICS moved without traffic: {again:?}");
}

/// The users file keeps an added user and a changed password across a
/// SIGTERM and a start with no --admin; it is 0600 and holds no password.
pub fn users_file_survives_a_restart(t: &Transport) {
    let dir = ScratchDir::new("restart");
    let file = dir.path.join("users");
    let path = file.to_str().expect("a UTF-8 path");
    let mut d = Daemon::start(t, &["--users-file", path]);
    let m = d.admin();
    assert_eq!(
        m.add_user("alice", "old-secret-1", Role::Proxy),
        Status::Success,
        "ADD_USER alice"
    );
    assert_eq!(
        m.set_password("alice", "new-secret-2"),
        Status::Success,
        "SET_PASSWORD alice"
    );
    assert_eq!(
        m.add_user("admin2", "adm-secret-3", Role::Admin),
        Status::Success,
        "ADD_USER admin2"
    );
    drop(m);
    let st = d.terminate();
    assert!(
        st.success(),
        "socks5d ended with {st} on SIGTERM; stderr:\n{}",
        d.stderr()
    );
    drop(d);

    let meta = fs::metadata(&file).expect("the users file exists");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "mode of the users file"
    );
    let text = fs::read_to_string(&file).expect("read the users file");
    for secret in [ADMIN_PW, "old-secret-1", "new-secret-2", "adm-secret-3"] {
        assert!(
            !text.contains(secret),
            "the users file holds a plaintext password:\n{text}"
        );
    }
    for name in ["root", "alice", "admin2"] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name}:"))),
            "no line for {name}:\n{text}"
        );
    }

    let d = Daemon::start_without_admin(t, &["--users-file", path]);
    let m = d.admin();
    assert_eq!(
        m.list_all(),
        [
            (Role::Admin, b"admin2".to_vec()),
            (Role::Proxy, b"alice".to_vec()),
            (Role::Admin, b"root".to_vec())
        ],
        "users after the restart"
    );
    assert_eq!(
        Mgmt::connect(d.mgmt()).login("admin2", "adm-secret-3"),
        [0x01, 0x00],
        "admin2 after the restart"
    );
    assert!(
        socks_auth_ok(d.socks, "alice", "new-secret-2"),
        "alice's new password after the restart"
    );
    assert!(
        !socks_auth_ok(d.socks, "alice", "old-secret-1"),
        "alice's old password works after the restart"
    );
    assert_eq!(
        Mgmt::connect(d.mgmt()).login(ADMIN, "wrong"),
        [0x01, 0x01],
        "root with a wrong password"
    );
}
