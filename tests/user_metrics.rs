//! Per-user accounting through the real binary: after a user's traffic,
//! USER_METRICS (through socks5dctl --json over --mgmt-unix) has exactly
//! the sessions, bytes, failed log ins and denied requests it made, and a
//! user without traffic has zeros.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Auth, SocksError, UnixMgmt, echo_server, try_socks_connect, try_socks_login};

/// How long socks5d may take to publish a count.
const SETTLE: Duration = Duration::from_secs(10);

/// `socks5dctl --json user-metrics` now.
fn user_metrics(mgmt: &UnixMgmt) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_socks5dctl"))
        .arg("--unix")
        .arg(&mgmt.socket)
        .args(["-U", common::MGMT_ADMIN, "--json", "user-metrics"])
        .env("SOCKS5DCTL_PASSWORD", common::MGMT_ADMIN_PW)
        .output()
        .expect("run socks5dctl");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Polls until `socks5dctl --json user-metrics` prints `want`.
fn wait_for(mgmt: &UnixMgmt, want: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let got = user_metrics(mgmt);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "USER_METRICS did not become\n  {want}within {SETTLE:?}; last:\n  {got}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn entry(name: &str, c: [u64; 6]) -> String {
    format!(
        "{{\"name\": \"{name}\", \"sessions_opened\": {}, \"sessions_open\": {}, \
         \"bytes_client_to_target\": {}, \"bytes_target_to_client\": {}, \
         \"auth_failures\": {}, \"requests_denied\": {}}}",
        c[0], c[1], c[2], c[3], c[4], c[5]
    )
}

#[test]
fn user_metrics_count_exactly_the_users_traffic() {
    let mgmt = UnixMgmt::new("user-metrics");
    let rules = mgmt.socket.with_file_name("um.rules");
    let echo = echo_server(b"hi");
    let port = common::closed_port();
    fs::write(&rules, format!("deny to 127.0.0.1 port {port}\nallow\n")).unwrap();
    let d = mgmt.start_as(
        "alice",
        "alice-pw",
        &["-u", "bob:bob-pw", "--rules", rules.to_str().unwrap()],
    );
    let alice = Auth::User("alice", "alice-pw");

    // Two tunnels: 1,000 bytes up and back (plus the target's 2-byte
    // banner) each.
    for _ in 0..2 {
        let mut t = try_socks_connect(d.addr, alice, echo).expect("a tunnel");
        let mut banner = [0u8; 2];
        t.read_exact(&mut banner).unwrap();
        t.write_all(&[7u8; 1000]).unwrap();
        let mut back = [0u8; 1000];
        t.read_exact(&mut back).unwrap();
    }
    // One wrong password and one denied request.
    assert!(matches!(
        try_socks_login(d.addr, Auth::User("alice", "wrong")),
        Err(SocksError::AuthFailed(_))
    ));
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert!(matches!(
        try_socks_connect(d.addr, alice, target),
        Err(SocksError::ConnectFailed(0x02))
    ));
    // A made-up name's failures are not kept (no entry appears for it).
    assert!(try_socks_login(d.addr, Auth::User("mallory", "x")).is_err());

    let want = format!(
        "[{}, {}, {}]\n",
        entry("alice", [2, 0, 2000, 2004, 1, 1]),
        entry("bob", [0; 6]),
        entry("root", [0; 6]),
    );
    wait_for(&mgmt, &want);
    drop(d);
}
