//! The Unix-domain socket's own cases (--mgmt-unix), on the host: the
//! socket file's permissions, a stale file replaced and a live server's
//! never taken over, socks5dctl's SOCKS5DCTL_UNIX, an independent Python
//! client, one packet as one message, a reader that stops reading, failed
//! log ins counted per local user, the audit trail's `transport=unix`, and
//! `socks5d user` beside a running server.
//!
//! The suite runs as root (as `make test` does): some cases run socks5dctl
//! as other users (`CommandExt::uid`) to see what the socket's mode lets
//! them do and that one user's failures do not lock another out.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::support::*;
use crate::common::{self, Auth, close_tunnel, echo_server, exchange, run_brief, socks_connect};

/// How socks5dctl is run: as whom, with which passwords.
#[derive(Clone, Copy)]
struct As<'a> {
    ids: Option<(u32, u32)>,
    password: &'a str,
    new_password: Option<&'a str>,
}

const ROOT: As<'static> = As {
    ids: None,
    password: ADMIN_PW,
    new_password: None,
};

/// The cases here are about the Unix socket alone.
fn unix_only(t: &Transport) {
    assert_eq!(*t, Transport::Unix, "a case about the Unix socket");
}

fn text(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// `socks5dctl --unix SOCKET -U root ARGS` as `who`, started.
fn spawn_ctl(socket: &Path, who: As<'_>, args: &[&str]) -> Child {
    let mut cmd = ctl_command(who.password, who.new_password);
    cmd.arg("--unix")
        .arg(socket)
        .args(["-U", ADMIN])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = who.ids {
        cmd.uid(uid).gid(gid);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot run {SOCKS5DCTL}: {e}"))
}

/// Waits for a socks5dctl run, failing the test if it outlives
/// [`CHILD_TIMEOUT`] (its own timeouts are 10 s).
fn finish(mut child: Child) -> Ctl {
    Ctl::from(wait_output(&mut child, "socks5dctl"))
}

fn ctl_as(socket: &Path, who: As<'_>, args: &[&str]) -> Ctl {
    finish(spawn_ctl(socket, who, args))
}

/// socks5dctl as root, expecting success; its standard output.
fn ok(socket: &Path, args: &[&str]) -> String {
    let c = ctl_as(socket, ROOT, args);
    assert_eq!(c.code, 0, "socks5dctl {args:?}: {c:?}");
    c.stdout
}

/// Waits until the daemon's standard error holds `needle`.
fn wait_stderr(d: &Daemon, needle: &str) {
    d.stderr_line(needle, Duration::from_secs(10));
}

/// The arguments of a second server on `socket`, for a run that must stop
/// at start.
fn second_server(socket: &Path) -> Vec<String> {
    [
        "-l",
        "127.0.0.1",
        "-p",
        "0",
        "-P",
        "0",
        "--admin",
        &format!("{ADMIN}:{ADMIN_PW}"),
        "--mgmt-unix",
        text(socket),
    ]
    .map(String::from)
    .to_vec()
}

// ------------------------------------------------------- the socket file

/// 0600 by default: another user cannot even connect, root can. With
/// --mgmt-unix-mode and --mgmt-unix-group, members of the group can and
/// others still cannot.
pub fn the_socket_is_its_owners_unless_told_otherwise(t: &Transport) {
    unix_only(t);
    let mut d = Daemon::start(t, &[]);
    let socket = d.socket().to_owned();
    let m = fs::symlink_metadata(&socket).expect("the socket exists");
    assert!(m.file_type().is_socket());
    assert_eq!((m.mode() & 0o777, m.uid()), (0o600, 0));
    let stranger = As {
        ids: Some((UID_A, UID_A)),
        ..ROOT
    };
    let c = ctl_as(&socket, stranger, &["historic"]);
    assert_eq!(c.code, 3, "another user connects to a 0600 socket: {c:?}");
    assert!(c.stderr.contains("Permission denied"), "{c:?}");
    assert_eq!(ok(&socket, &["historic"]), "historic connections: 0\n");
    d.terminate();

    let group = GID_OPERATORS.to_string();
    let mut d = Daemon::start(
        t,
        &[
            "--mgmt-unix-mode",
            "0660",
            "--mgmt-unix-group",
            group.as_str(),
        ],
    );
    let shared = d.socket().to_owned();
    let m = fs::symlink_metadata(&shared).expect("the socket exists");
    assert_eq!((m.mode() & 0o777, m.gid()), (0o660, GID_OPERATORS));
    let operator = As {
        ids: Some((UID_A, GID_OPERATORS)),
        ..ROOT
    };
    let c = ctl_as(&shared, operator, &["historic"]);
    assert_eq!(c.code, 0, "a member of the socket's group: {c:?}");
    let c = ctl_as(&shared, stranger, &["historic"]);
    assert_eq!(c.code, 3, "not a member: {c:?}");
    assert!(c.stderr.contains("Permission denied"), "{c:?}");
    d.terminate();
}

/// A server killed with SIGKILL leaves its socket behind: the next one
/// replaces it and says so. A clean stop removes the file.
pub fn a_stale_socket_is_replaced_and_a_clean_stop_removes_it(t: &Transport) {
    unix_only(t);
    let mut first = Daemon::start(t, &[]);
    let socket = first.socket().to_owned();
    first.kill();
    let m = fs::symlink_metadata(&socket).expect("a killed server leaves its socket");
    assert!(m.file_type().is_socket());

    // `first` keeps the folder until the end.
    let mut second = Daemon::start_on(&socket, &[]);
    assert!(
        second
            .stderr()
            .contains(&format!("stale socket replaced: path={}", text(&socket))),
        "{}",
        second.stderr()
    );
    assert_eq!(ok(&socket, &["concurrent"]), "concurrent connections: 0\n");
    assert!(second.terminate().success());
    assert!(
        fs::symlink_metadata(&socket).is_err(),
        "the socket is still there after a clean stop"
    );
}

/// A second server on a live server's socket stops at start with one line
/// naming the path, and the first goes on serving; a file that is not a
/// socket is never removed.
pub fn a_live_servers_socket_and_other_files_are_never_taken_over(t: &Transport) {
    unix_only(t);
    let d = Daemon::start(t, &[]);
    let socket = d.socket().to_owned();
    let args = second_server(&socket);
    let out = run_brief(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(text(&socket)))
        .collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(
        lines[0].contains("another server is listening on this socket"),
        "{}",
        out.stderr
    );
    assert_eq!(ok(&socket, &["historic"]), "historic connections: 0\n");
    drop(d);

    let dir = Folder::new("live");
    let plain = dir.path.join("notes.txt");
    fs::write(&plain, "keep me\n").expect("write a plain file");
    let args = second_server(&plain);
    let out = run_brief(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("is not a socket"), "{}", out.stderr);
    assert_eq!(
        fs::read_to_string(&plain).expect("still there"),
        "keep me\n"
    );
}

// ----------------------------------------------------- the commands

/// Every socks5dctl command over the Unix socket, human and --json, the
/// socket taken from SOCKS5DCTL_UNIX too, and the exit statuses of a
/// refusal and of a wrong password; no password in socks5d's log.
pub fn every_command_with_socks5dctl(t: &Transport) {
    unix_only(t);
    let dir = Folder::new("ctl");
    let users = dir.path.join("users");
    let mut d = Daemon::start(t, &["--users-file", text(&users)]);
    let socket = d.socket().to_owned();

    assert_eq!(ok(&socket, &["historic"]), "historic connections: 0\n");
    assert_eq!(ok(&socket, &["concurrent"]), "concurrent connections: 0\n");
    assert_eq!(ok(&socket, &["bytes"]), "bytes transferred: 0\n");
    assert_eq!(
        ok(&socket, &["--json", "historic"]),
        "{\"historic_connections\": 0}\n"
    );
    let metrics = ok(&socket, &["metrics"]);
    assert!(metrics.contains("uptime seconds: "), "{metrics}");
    let json = ok(&socket, &["--json", "metrics"]);
    assert!(json.contains("\"mgmt_aborted_before_login\": 0"), "{json}");

    let add = As {
        new_password: Some("alice-pw"),
        ..ROOT
    };
    let c = ctl_as(&socket, add, &["add-user", "alice"]);
    assert_eq!(
        (c.code, c.stdout.as_str()),
        (0, "add-user: done\n"),
        "{c:?}"
    );
    assert_eq!(ok(&socket, &["users"]), "user   alice\nadmin  root\n");
    assert_eq!(
        ok(&socket, &["--json", "users"]),
        "[{\"name\": \"alice\", \"role\": \"user\"}, {\"name\": \"root\", \"role\": \"admin\"}]\n"
    );
    // No SOCKS traffic yet: every user's counters are zero.
    assert_eq!(
        ok(&socket, &["user-metrics"]),
        "alice: sessions opened 0, sessions open 0, bytes client to target 0, bytes target to client 0, auth failures 0, requests denied 0\nroot: sessions opened 0, sessions open 0, bytes client to target 0, bytes target to client 0, auth failures 0, requests denied 0\n"
    );
    assert_eq!(
        ok(&socket, &["--json", "user-metrics"]),
        "[{\"name\": \"alice\", \"sessions_opened\": 0, \"sessions_open\": 0, \"bytes_client_to_target\": 0, \"bytes_target_to_client\": 0, \"auth_failures\": 0, \"requests_denied\": 0}, {\"name\": \"root\", \"sessions_opened\": 0, \"sessions_open\": 0, \"bytes_client_to_target\": 0, \"bytes_target_to_client\": 0, \"auth_failures\": 0, \"requests_denied\": 0}]\n"
    );
    let c = ctl_as(&socket, add, &["passwd", "alice"]);
    assert_eq!(c.code, 0, "{c:?}");
    assert_eq!(ok(&socket, &["reload"]), "reload: done\n");
    assert_eq!(ok(&socket, &["--json", "reload"]), "{\"ok\": true}\n");
    assert_eq!(ok(&socket, &["del-user", "alice"]), "del-user: done\n");
    let c = ctl_as(&socket, ROOT, &["del-user", "alice"]);
    assert_eq!(c.code, 15, "no such user: {c:?}");

    // SOCKS5DCTL_UNIX names the socket when no option does.
    let mut env = ctl_command(ADMIN_PW, None);
    env.args(["-U", ADMIN, "concurrent"])
        .env("SOCKS5DCTL_UNIX", &socket);
    let c = Ctl::from(run_child(env, "socks5dctl"));
    assert_eq!(
        (c.code, c.stdout.as_str()),
        (0, "concurrent connections: 0\n"),
        "{c:?}"
    );

    let wrong = As {
        password: "wrong",
        ..ROOT
    };
    let c = ctl_as(&socket, wrong, &["historic"]);
    assert_eq!(c.code, 21, "a wrong password: {c:?}");
    assert!(d.terminate().success());
    assert!(!d.stderr().contains(ADMIN_PW), "a password in the log");
    assert!(!d.stderr().contains("alice-pw"), "a password in the log");
}

/// RELOAD reads the users file again, as SIGHUP does: a user renamed in
/// the file by hand is known by its new name, to the SOCKS workers too; a
/// file that does not parse changes nothing and answers X'07' (exit 17).
pub fn reload_reads_the_users_file_and_a_bad_one_changes_nothing(t: &Transport) {
    unix_only(t);
    let dir = Folder::new("reload");
    let users = dir.path.join("users");
    let target = echo_server(b"");
    let d = Daemon::start(t, &["--users-file", text(&users)]);
    let socket = d.socket().to_owned();
    let add = As {
        new_password: Some("alice-pw"),
        ..ROOT
    };
    assert_eq!(ctl_as(&socket, add, &["add-user", "alice"]).code, 0);
    let before = fs::read_to_string(&users).expect("read the users file");
    assert!(before.contains("\nalice:user:"), "{before}");
    fs::write(&users, before.replace("\nalice:user:", "\nzed:user:")).expect("rename alice to zed");

    assert_eq!(ok(&socket, &["reload"]), "reload: done\n");
    assert_eq!(ok(&socket, &["users"]), "admin  root\nuser   zed\n");
    let mut tunnel = socks_connect(d.socks, Auth::User("zed", "alice-pw"), target);
    exchange(&mut tunnel, b"renamed", b"renamed");
    assert!(close_tunnel(tunnel).is_empty());

    fs::write(&users, "zed:nobody:not-a-hash\n").expect("spoil the users file");
    let c = ctl_as(&socket, ROOT, &["reload"]);
    assert_eq!(c.code, 17, "a bad users file: {c:?}");
    assert!(c.stderr.contains("could not be read"), "{c:?}");
    wait_stderr(&d, "users file not reloaded: path=");
    assert_eq!(ok(&socket, &["users"]), "admin  root\nuser   zed\n");
}

/// tests/mgmt_unix_client.py, written from the protocol document with
/// Python's socket module alone: log in and its failures, every command,
/// every kind of bad request, oversized ones, pipelining and a half-close.
pub fn an_independent_python_client_speaks_the_raw_protocol(t: &Transport) {
    unix_only(t);
    let dir = Folder::new("python");
    let users = dir.path.join("users");
    let d = Daemon::start(t, &["--users-file", text(&users)]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mgmt_unix_client.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(d.socket())
        .arg(ADMIN)
        .env("SOCKS5D_TEST_PASSWORD", ADMIN_PW)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 (make deps installs it): {e}"));
    let c = finish(child);
    assert_eq!(c.code, 0, "{}\n{}", c.stdout, c.stderr);
    assert_eq!(
        c.stdout.lines().last(),
        Some("34 passed, 0 failed"),
        "{}",
        c.stdout
    );
}

/// One packet is one message: a log in or a request over 1024 bytes is
/// malformed as over SCTP, whatever valid messages its bytes start with,
/// and is never read as two.
pub fn oversized_messages_are_malformed_never_two(t: &Transport) {
    unix_only(t);
    let d = Daemon::start(t, &[]);

    // A good log in, then more bytes: X'04', and closed.
    let c = Mgmt::connect(d.mgmt());
    let mut big = login_bytes(ADMIN.as_bytes(), ADMIN_PW.as_bytes());
    big.extend(std::iter::repeat_n(0x01, 1500));
    assert_eq!(c.raw(&big), [0x01, 0x04], "an oversized log in");
    c.expect_closed("a malformed log in");

    // A request of HISTORIC_CONNECTIONS requests, 2000 bytes: one X'03'.
    let c = d.admin();
    let many: Vec<u8> = [0x01, 0x01].repeat(1000);
    assert_eq!(c.raw(&many), [0x01, 0x03, 0x01], "one answer, malformed");
    let next = c.raw(&[0x01, 0x02]);
    assert_eq!(
        next[..3],
        [0x01, 0x00, 0x02],
        "the next answer is CONCURRENT's"
    );
    // 1024 bytes is not too long: other rules decide (trailing bytes).
    let mut edge = vec![0x01, 0x01];
    edge.resize(1024, 0);
    assert_eq!(c.raw(&edge), [0x01, 0x03, 0x01]);
}

// ------------------------------------------------------------- limits

/// A logged-in peer that sends requests and reads no answer: once what
/// waits for it passes the queue limit it is aborted, and the server
/// holds nothing more for it; another administrator is served meanwhile.
pub fn a_peer_that_does_not_read_is_aborted_at_the_queue_limit(t: &Transport) {
    unix_only(t);
    let d = Daemon::start(t, &[]);
    let c = d.admin();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0usize;
    let refused = loop {
        assert!(
            Instant::now() < deadline,
            "still connected after {sent} unread METRICS"
        );
        match c.sock.send_message(&[0x01, 0x04]) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            refused.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ),
        "after {sent} requests: {refused}"
    );
    // 256 KiB of 220-byte answers is 1191; the kernel holds some more.
    assert!(sent > 1191, "aborted after only {sent} requests");
    wait_stderr(&d, " reason=does-not-read");
    assert_eq!(ok(d.socket(), &["historic"]), "historic connections: 0\n");
}

/// A connection that never logs in is closed at the end of the log-in
/// grace time and counted (METRICS X'85').
pub fn a_silent_connection_is_closed_after_the_log_in_grace_time(t: &Transport) {
    unix_only(t);
    let d = Daemon::start(t, &["--mgmt-login-grace", "0.3"]);
    let c = Mgmt::connect(d.mgmt());
    let t0 = Instant::now();
    let got = c.sock.recv_message(65_535);
    let took = t0.elapsed();
    assert!(t.aborted(&got), "closed after the grace time");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
    let json = ok(d.socket(), &["--json", "metrics"]);
    assert!(json.contains("\"mgmt_aborted_before_login\": 1"), "{json}");
}

/// Failures are counted per local user (SO_PEERCRED): a flood of wrong
/// passwords from one uid gets that uid penalised (its right password is
/// then refused too), while an administrator working from another uid
/// logs in at the first try, also during a second flood.
pub fn failed_log_ins_are_counted_per_local_user(t: &Transport) {
    unix_only(t);
    let d = Daemon::start(
        t,
        &["--mgmt-unix-mode", "0666", "--max-login-failures", "3"],
    );
    let socket = d.socket().to_owned();
    let a = As {
        ids: Some((UID_A, UID_A)),
        password: "wrong",
        new_password: None,
    };
    let b = As {
        ids: Some((UID_B, UID_B)),
        ..ROOT
    };
    let flood = |n: usize| -> Vec<Child> {
        (0..n)
            .map(|_| spawn_ctl(&socket, a, &["historic"]))
            .collect()
    };
    for c in flood(12).into_iter().map(finish) {
        assert_eq!(c.code, 21, "a wrong password from uid {UID_A}: {c:?}");
    }
    wait_stderr(
        &d,
        &format!("management log ins refused unchecked: source=uid:{UID_A} failures=3 "),
    );
    let right_from_a = As {
        password: ADMIN_PW,
        ..a
    };
    let c = ctl_as(&socket, right_from_a, &["historic"]);
    assert_eq!(
        c.code, 21,
        "uid {UID_A} is penalised, right password too: {c:?}"
    );

    let second = flood(12);
    let c = ctl_as(&socket, b, &["historic"]);
    assert_eq!(
        (c.code, c.stdout.as_str()),
        (0, "historic connections: 0\n"),
        "the administrator at uid {UID_B}, at the first try: {c:?}"
    );
    for c in second.into_iter().map(finish) {
        assert_eq!(c.code, 21, "{c:?}");
    }
    assert_eq!(ok(&socket, &["concurrent"]), "concurrent connections: 0\n");
}

// ------------------------------------------------------------ audit trail

/// The audit trail, to a file of its own: log ins (good and refused),
/// user changes with who made them and their status, reloads by RELOAD and
/// by SIGHUP; key=value lines, never a password, never Rust debug text.
/// Refused log ins from one source are written ten a minute at most and
/// the rest summarised when socks5d stops.
pub fn the_audit_trail_records_who_did_what(t: &Transport) {
    unix_only(t);
    let dir = Folder::new("audit");
    let log = dir.path.join("audit.log");
    let users = dir.path.join("users");
    let mut d = Daemon::start(
        t,
        &[
            "--users-file",
            text(&users),
            "--audit-log",
            text(&log),
            "--auth-penalty-exempt",
            "127.0.0.0/8",
        ],
    );
    let socket = d.socket().to_owned();
    let adder = As {
        new_password: Some("bob-pw-Xy1"),
        ..ROOT
    };
    assert_eq!(ctl_as(&socket, adder, &["add-user", "bob"]).code, 0);
    assert_ne!(ctl_as(&socket, ROOT, &["del-user", "nobody"]).code, 0);
    ok(&socket, &["reload"]);
    let wrong = As {
        password: "not-it",
        ..ROOT
    };
    for _ in 0..15 {
        assert_ne!(ctl_as(&socket, wrong, &["historic"]).code, 0);
    }
    d.signal(Signal::SIGHUP);
    wait_stderr(&d, "users file reloaded: path=");
    assert!(d.terminate().success());

    let all = fs::read_to_string(&log).expect("read the audit log");
    let lines: Vec<&str> = all
        .lines()
        .map(|l| l.split_once(' ').expect("a time stamp first").1)
        .collect();
    let has = |want: &str| lines.contains(&want);
    for want in [
        "event=login result=ok user=root peer=uid:0 transport=unix",
        "event=change op=add-user user=bob role=user by=root transport=unix status=ok",
        "event=change op=del-user user=nobody by=root transport=unix status=no-such-user",
        "event=change op=reload by=root transport=unix status=ok",
        "event=reload by=sighup status=ok",
        "event=login result=left-out count=5 window_s=60 peer=uid:0",
    ] {
        assert!(has(want), "no line {want:?} in:\n{all}");
    }
    let refused = lines
        .iter()
        .filter(|l| l.starts_with("event=login result=refused user=root peer=uid:0"))
        .count();
    assert_eq!(refused, 10, "{all}");
    for secret in [ADMIN_PW, "bob-pw-Xy1", "not-it"] {
        assert!(!all.contains(secret), "a password in the audit log:\n{all}");
    }
    let stderr = d.stderr();
    assert!(!stderr.contains("UserChange"), "debug text:\n{stderr}");
    assert!(!all.contains("UserChange"), "debug text:\n{all}");
}

// ------------------------------------------------ socks5d user (offline)

/// `socks5d user add NAME` on `users` (cheap hashes), the password on its
/// standard input; fails the test unless it succeeds.
fn offline_add(users: &Path, name: &str) {
    let mut child = Command::new(common::BIN)
        .args(["user", "add", name, "--users-file"])
        .arg(users)
        .args(["--hash-memory-kib", "64", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run socks5d user");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"offline-pw\n")
        .expect("the password");
    let o = child.wait_with_output().expect("socks5d user");
    assert!(
        o.status.success(),
        "socks5d user add {name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `socks5d user` and a running server change one users file in turns and
/// at once: no change from either side is lost (both take the file's lock,
/// and the server reads the file again when it changed under it), and the
/// server serves the offline users after its next change, without a reload.
pub fn offline_user_commands_and_a_running_server_lose_no_change(t: &Transport) {
    unix_only(t);
    let dir = Folder::new("offline-users");
    let users = dir.path.join("users");
    let d = Daemon::start(
        t,
        &["--users-file", text(&users), "--hash-memory-kib", "64"],
    );
    let socket = d.socket().to_owned();
    let online = |name: &str| {
        let who = As {
            new_password: Some("online-pw"),
            ..ROOT
        };
        ctl_as(&socket, who, &["add-user", name])
    };
    // In turns, then both at once (socks5d user in a thread of its own).
    for i in 0..5 {
        offline_add(&users, &format!("off-{i}"));
        assert_eq!(online(&format!("on-{i}")).code, 0);
    }
    let both = thread::spawn({
        let users: PathBuf = users.clone();
        move || {
            for i in 15..25 {
                offline_add(&users, &format!("off-{i}"));
            }
        }
    });
    for i in 15..25 {
        assert_eq!(online(&format!("on-{i}")).code, 0);
    }
    both.join().expect("the offline thread");

    let file = fs::read_to_string(&users).expect("read the users file");
    let names: Vec<&str> = file
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(':').next())
        .collect();
    for i in (0..5).chain(15..25) {
        assert!(
            names.contains(&format!("off-{i}").as_str()),
            "off-{i} lost:\n{file}"
        );
    }
    for i in (0..5).chain(15..25) {
        assert!(
            names.contains(&format!("on-{i}").as_str()),
            "on-{i} lost:\n{file}"
        );
    }
    // The server reads the offline users in before its next change: after
    // one more, the listing over the socket has them all, with no reload.
    assert_eq!(online("on-last").code, 0);
    let listed = ok(&socket, &["users"]);
    for i in (0..5).chain(15..25) {
        assert!(listed.contains(&format!("off-{i}")), "{listed}");
    }
    drop(d);
}
