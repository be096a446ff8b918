//! The access rules through the real binary: the safe default (no
//! `--rules`) refuses loopback, link-local and a name that resolves to
//! loopback with X'02' and the rule in the access log; a rules file lets a
//! loopback target through, judges users, BIND and UDP datagrams; SIGHUP
//! and RELOAD read it again, and a broken one changes nothing.
//!
//! The default's tests run in a network namespace of their own (a thread's,
//! and its children's): had the rules let them through, their requests to
//! 169.254.169.254 could go nowhere but that namespace's loopback.

mod common;

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::{
    Auth, Daemon, M_UDP_DROPPED, SocksError, UdpClient, UdpEcho, UnixMgmt, access_fields,
    echo_server, socks_connect_name, temp_path, try_request, try_socks_connect,
};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;

/// METRICS X'0C': requests denied by the access rules.
const M_DENIED: u8 = 0x0C;
const CMD_BIND: u8 = 0x02;
/// How long socks5d may take to log a line or publish a counter.
const SETTLE: Duration = Duration::from_secs(10);

/// Runs `f` on a thread in a network namespace of its own, with only a
/// loopback interface, up.
fn in_private_namespace(f: impl FnOnce() + Send + 'static) {
    thread::spawn(move || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .expect("a network namespace of its own (the tests run as root)");
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("run ip");
        assert!(up.success(), "ip link set lo up: {up}");
        f();
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// A target on `ip` that accepts and echoes (a wrong allow would connect).
fn target_on(ip: &str) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).expect("bind a target");
    let addr = l.local_addr().expect("its address");
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            thread::spawn(move || common::serve_echo(c, b""));
        }
    });
    addr
}

/// The REP a CONNECT to `target` gets (X'00': a tunnel).
fn connect_reply(proxy: SocketAddr, auth: Auth<'_>, target: SocketAddr) -> u8 {
    match try_socks_connect(proxy, auth, target) {
        Ok(_) => 0x00,
        Err(SocksError::ConnectFailed(rep)) => rep,
        Err(e) => panic!("CONNECT to {target}: {e:?}"),
    }
}

/// The access-log fields of the first line naming `target`.
fn logged(d: &Daemon, target: &str) -> std::collections::HashMap<String, String> {
    access_fields(&d.access_line(&format!("target={target} "), SETTLE))
}

/// socks5d on 127.0.0.1 with the users alice and bob and the rules file
/// `rules`.
fn alice_and_bob(rules: &Path) -> Daemon {
    let rules = rules.to_str().expect("a UTF-8 path");
    Daemon::start_as("alice", "alice-pw", &["-u", "bob:bob-pw", "--rules", rules])
}

fn write_rules(path: &Path, text: &str) {
    fs::write(path, text).expect("write the rules file");
}

#[test]
fn the_default_denies_loopback_link_local_and_a_name_that_is_loopback() {
    in_private_namespace(|| {
        let v4 = target_on("127.0.0.1");
        let v6 = target_on("::1");
        let map = "--map-host=sneaky.test=127.0.0.1";
        let d = Daemon::start_with_default_rules(&["-l", "127.0.0.1", "-p", "0", map]);
        let metadata: SocketAddr = "169.254.169.254:80".parse().unwrap();
        for (target, reason) in [(v4, "loopback"), (v6, "loopback"), (metadata, "link-local")] {
            assert_eq!(
                connect_reply(d.addr, Auth::None, target),
                0x02,
                "CONNECT to {target} under the default rules"
            );
            let f = logged(&d, &target.to_string());
            assert_eq!(f["reply"], "02");
            assert_eq!(f["rule"], format!("default:{reason}"), "{f:?}");
        }
        // A name is judged on each address it resolves to (DNS rebinding).
        let (_s, rep) = socks_connect_name(d.addr, Auth::None, "sneaky.test", v4.port());
        assert_eq!(rep, 0x02, "a name that resolves to 127.0.0.1");
        let f = logged(&d, &format!("sneaky.test:{}", v4.port()));
        assert_eq!(f["rule"], "default:loopback", "{f:?}");
        // socks5d's own port, on the address it listens on, is loopback too;
        // the printed default names it.
        let printed = Command::new(common::BIN)
            .args(["-l", "127.0.0.1", "-p", "1080", "--print-default-rules"])
            .output()
            .expect("run socks5d --print-default-rules");
        let text = String::from_utf8_lossy(&printed.stdout);
        assert!(printed.status.success(), "{text}");
        assert!(text.contains("deny to 127.0.0.0/8,::1"), "{text}");
        assert!(text.contains("deny to 169.254.0.0/16,fe80::/10"), "{text}");
        assert!(text.lines().any(|l| l.starts_with("allow")), "{text}");
    });
}

#[test]
fn the_printed_default_is_a_rules_file_that_decides_the_same() {
    in_private_namespace(|| {
        let dir = temp_path("rules-printed");
        fs::create_dir_all(&dir).unwrap();
        let rules = dir.join("default.rules");
        let printed = Command::new(common::BIN)
            .args(["-l", "127.0.0.1", "--print-default-rules"])
            .output()
            .expect("run socks5d --print-default-rules");
        fs::write(&rules, &printed.stdout).unwrap();
        let v4 = target_on("127.0.0.1");
        let d = Daemon::start(&[
            "-l",
            "127.0.0.1",
            "-p",
            "0",
            "--rules",
            rules.to_str().unwrap(),
        ]);
        assert_eq!(connect_reply(d.addr, Auth::None, v4), 0x02);
        let f = logged(&d, &v4.to_string());
        assert!(
            f["rule"].starts_with(&format!("{}:", rules.display())),
            "a line of the file: {f:?}"
        );
        let _ = fs::remove_dir_all(dir);
    });
}

#[test]
fn a_rules_file_lets_loopback_through_and_judges_users_and_bind() {
    let dir = temp_path("rules-file");
    fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("socks.rules");
    write_rules(
        &rules,
        "# tests\n\
         deny cmd bind user bob\n\
         allow user alice to 127.0.0.0/8\n\
         deny user bob to 127.0.0.1 log\n\
         allow\n",
    );
    let echo = echo_server(b"");
    let d = alice_and_bob(&rules);
    let alice = Auth::User("alice", "alice-pw");
    let bob = Auth::User("bob", "bob-pw");
    assert_eq!(connect_reply(d.addr, alice, echo), 0x00, "alice may");
    assert_eq!(connect_reply(d.addr, bob, echo), 0x02, "bob may not");
    let f = access_fields(&d.access_line("user=bob ", SETTLE));
    assert_eq!(f["rule"], format!("{}:4", rules.display()));
    // `log` on that rule: the decision is in the log too.
    d.stderr_line("rule decided: decision=deny ", SETTLE);
    // BIND is judged like CONNECT, with its own `cmd`.
    match try_request(d.addr, bob, CMD_BIND, echo) {
        Err(SocksError::RequestFailed(0x02)) => {}
        other => panic!("BIND for bob: {other:?}"),
    }
    assert!(
        try_request(d.addr, alice, CMD_BIND, echo).is_ok(),
        "BIND for alice"
    );
    let _ = fs::remove_dir_all(dir);
}

/// `socks5dctl --unix SOCKET -U root reload`: its exit status.
fn ctl_reload(mgmt: &UnixMgmt) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_socks5dctl"))
        .arg("--unix")
        .arg(&mgmt.socket)
        .args(["-U", common::MGMT_ADMIN, "reload"])
        .env("SOCKS5DCTL_PASSWORD", common::MGMT_ADMIN_PW)
        .output()
        .expect("run socks5dctl")
}

#[test]
fn sighup_and_reload_read_the_rules_again_and_a_broken_file_changes_nothing() {
    let mgmt = UnixMgmt::new("rules-reload");
    let rules = mgmt.socket.with_file_name("socks.rules");
    write_rules(&rules, "allow\n");
    let echo = echo_server(b"");
    let d = mgmt.start_as("alice", "alice-pw", &["--rules", rules.to_str().unwrap()]);
    let alice = Auth::User("alice", "alice-pw");
    assert_eq!(connect_reply(d.addr, alice, echo), 0x00);

    // SIGHUP with a good file: new requests see it at once.
    write_rules(&rules, "deny to 127.0.0.1\nallow\n");
    d.signal(Signal::SIGHUP);
    d.wait_for_line(
        &format!("rules reloaded: path={} rules=2", rules.display()),
        1,
        SETTLE,
    )
    .expect("the reload logged");
    assert_eq!(connect_reply(d.addr, alice, echo), 0x02);

    // SIGHUP with a broken one: the error names the file and line, and the
    // rules in force stay.
    write_rules(&rules, "allow\nallow to 300.0.0.1\n");
    d.signal(Signal::SIGHUP);
    let line = d.stderr_line("rules not reloaded: error=", SETTLE);
    assert!(
        line.contains(&format!("{}:2", rules.display())),
        "the error names the file and line: {line}"
    );
    assert_eq!(connect_reply(d.addr, alice, echo), 0x02, "still denied");

    // RELOAD with the broken file: X'07' (socks5dctl fails), nothing changes.
    let out = ctl_reload(&mgmt);
    assert!(!out.status.success(), "RELOAD of a broken file succeeded");
    assert_eq!(connect_reply(d.addr, alice, echo), 0x02, "still denied");
    // RELOAD with a good one.
    write_rules(&rules, "allow\n");
    let out = ctl_reload(&mgmt);
    assert!(
        out.status.success(),
        "RELOAD: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(connect_reply(d.addr, alice, echo), 0x00, "allowed again");
}

#[test]
fn a_denied_udp_datagram_is_dropped_and_counted() {
    let mgmt = UnixMgmt::new("rules-udp");
    let rules = mgmt.socket.with_file_name("udp.rules");
    let denied = UdpEcho::start("127.0.0.1:0".parse().unwrap());
    let allowed = UdpEcho::start("127.0.0.1:0".parse().unwrap());
    write_rules(
        &rules,
        &format!(
            "deny cmd udp to 127.0.0.1 port {}\nallow\n",
            denied.addr.port()
        ),
    );
    let d = mgmt.start_as("uma", "uma-pw", &["--rules", rules.to_str().unwrap()]);
    let (_control, client) = UdpClient::associate(
        d.addr,
        Auth::User("uma", "uma-pw"),
        "127.0.0.1:0".parse().unwrap(),
        None,
    );
    // The denied datagram first, then one allowed on the same path: once
    // the second is back, the first was judged (datagrams are handled in
    // order) and must not have reached its target.
    client.send_to(denied.addr, b"to the denied port");
    client.echo(allowed.addr, b"to the allowed port");
    assert!(
        denied.received().is_empty(),
        "the denied target got a datagram"
    );
    mgmt.wait_metrics(SETTLE, |m| {
        m.get(&M_UDP_DROPPED).copied().unwrap_or(0) >= 1
            && m.get(&M_DENIED).copied().unwrap_or(0) >= 1
    });
}

#[test]
fn sessions_per_user_and_per_client_are_limited() {
    let mgmt = UnixMgmt::new("limits");
    let echo = echo_server(b"");
    let d = mgmt.start_as(
        "alice",
        "alice-pw",
        &[
            "-u",
            "bob:bob-pw",
            "--max-sessions-per-user",
            "2",
            "--max-sessions-per-client",
            "4",
        ],
    );
    let alice = Auth::User("alice", "alice-pw");
    let bob = Auth::User("bob", "bob-pw");
    // Per user: two tunnels of alice's, the third refused after log in.
    let a1 = try_socks_connect(d.addr, alice, echo).expect("alice's first");
    let a2 = try_socks_connect(d.addr, alice, echo).expect("alice's second");
    assert_eq!(connect_reply(d.addr, alice, echo), 0x02, "alice's third");
    let f = access_fields(&d.access_line("rule=default:max-sessions-per-user", SETTLE));
    assert_eq!(f["user"], "alice");
    // Another user has sessions of its own.
    let b1 = try_socks_connect(d.addr, bob, echo).expect("bob's first");
    // Per client address: 127.0.0.1 has 3 open; a 4th connection is let
    // in, a 5th is closed at accept (before any byte is read).
    let fourth = common::dial_proxy(d.addr);
    let mut fifth = common::dial_proxy(d.addr);
    let mut buf = [0u8; 1];
    use std::io::Read;
    let got = fifth.read(&mut buf);
    let closed = match &got {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    assert!(
        closed,
        "the fifth connection from 127.0.0.1 was served: {got:?}"
    );
    drop((fourth, fifth));
    mgmt.wait_metrics(SETTLE, |m| m.get(&0x87).copied().unwrap_or(0) >= 2);
    // Closing gives a session back: once socks5d has closed alice's first
    // tunnel (its access-log line), she may have another.
    drop(a1);
    d.access_line(
        &format!("user=alice cmd=connect target={echo} connected={echo} reply=00"),
        SETTLE,
    );
    assert_eq!(
        connect_reply(d.addr, alice, echo),
        0x00,
        "alice's session given back"
    );
    drop((a2, b1));
}

/// A target that sends `n` bytes to each connection, then closes.
fn source_of(n: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a source");
    let addr = l.local_addr().expect("its address");
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            thread::spawn(move || {
                use std::io::Write;
                let mut c = c;
                let chunk = vec![0x5au8; 16 * 1024];
                let mut left = n;
                while left > 0 {
                    let k = left.min(chunk.len());
                    if c.write_all(&chunk[..k]).is_err() {
                        return;
                    }
                    left -= k;
                }
            });
        }
    });
    addr
}

#[test]
fn a_rate_limit_is_shared_by_the_users_tunnels() {
    use std::io::Read;
    use std::time::Instant;
    let dir = temp_path("rules-rate");
    fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rate.rules");
    // 256 KiB/s for alice's tunnels together; bob has no limit.
    write_rules(&rules, "allow user alice rate 256K\nallow\n");
    const N: usize = 512 * 1024;
    let source = source_of(N);
    let d = alice_and_bob(&rules);
    let proxy = d.addr;
    let fetch = move |auth: Auth<'static>| {
        thread::spawn(move || {
            let mut s = try_socks_connect(proxy, auth, source).expect("a tunnel");
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut got = 0;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return got,
                    Ok(n) => got += n,
                    Err(e) => panic!("after {got} bytes: {e}"),
                }
            }
        })
    };
    // Two tunnels of alice's at once: 1 MiB at 256 KiB/s together, less the
    // buckets' start (a quarter of a second's worth): at least 3.75 s. A
    // limit per tunnel instead of per user would take half that.
    let t0 = Instant::now();
    let a = fetch(Auth::User("alice", "alice-pw"));
    let b = fetch(Auth::User("alice", "alice-pw"));
    assert_eq!(a.join().unwrap() + b.join().unwrap(), 2 * N);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(3_500),
        "alice's 1 MiB took {took:?}: faster than her 256 KiB/s"
    );
    assert!(
        took < Duration::from_secs(30),
        "alice's 1 MiB took {took:?}"
    );
    // Bob's download is not limited (and not slowed by alice's).
    let t1 = Instant::now();
    assert_eq!(fetch(Auth::User("bob", "bob-pw")).join().unwrap(), N);
    assert!(
        t1.elapsed() < Duration::from_millis(1_500),
        "bob's unlimited 512 KiB took {:?}",
        t1.elapsed()
    );
    let _ = fs::remove_dir_all(dir);
}
