//! Cases 9 and 10: socks5dctl end to end over either transport, and
//! third-party SCTP clients (ncat, socat) speaking the raw protocol.

use std::io::{Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use socks5d::mgmt::wire::Request;
use socks5d::users::Role;

use super::support::*;
use crate::common::scrub_env;

/// One tunnel as bob, closed; then waits until the counters show it.
fn one_tunnel(d: &Daemon, m: &Mgmt) -> u64 {
    let echo = Target::banner_echo();
    let mut s = socks_connect(d.socks, "bob", "bobpw", echo.addr).expect("tunnel as bob");
    let mut banner = vec![0u8; BANNER.len()];
    s.read_exact(&mut banner).expect("banner");
    s.write_all(b"ping").expect("send");
    let mut b = [0u8; 4];
    s.read_exact(&mut b).expect("echo");
    drop(s);
    let bytes = (BANNER.len() + 8) as u64;
    let seen = poll_until(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(10),
        || {
            let v = m.metrics();
            (v[&1] == 1 && v[&2] == 0 && v[&3] == bytes).then_some(())
        },
    );
    assert!(
        seen.is_some(),
        "the tunnel never showed in METRICS: {:?}",
        m.metrics()
    );
    bytes
}

fn ok(c: &Ctl, what: &str) -> String {
    assert_eq!(
        c.code, 0,
        "socks5dctl {what}: exit {}; stderr: {}",
        c.code, c.stderr
    );
    c.stdout.clone()
}

/// `"key": value` pairs of a flat JSON object of numbers.
fn json_numbers(s: &str) -> Vec<(String, u64)> {
    let body = s
        .trim()
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .unwrap_or_else(|| panic!("not a JSON object: {s:?}"));
    body.split(',')
        .map(|kv| {
            let (k, v) = kv
                .split_once(':')
                .unwrap_or_else(|| panic!("not key: value: {kv:?}"));
            let k = k
                .trim()
                .strip_prefix('"')
                .and_then(|k| k.strip_suffix('"'))
                .unwrap_or_else(|| panic!("key {k:?}"));
            (
                k.to_owned(),
                v.trim().parse().unwrap_or_else(|_| panic!("value {v:?}")),
            )
        })
        .collect()
}

/// Runs socks5dctl with `input` on its standard input.
fn ctl_stdin(args: &[&str], input: &str) -> Ctl {
    let mut child = scrub_env(&mut Command::new(SOCKS5DCTL))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run socks5dctl");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())
        .expect("write stdin");
    Ctl::from(wait_output(&mut child, "socks5dctl"))
}

/// Every socks5dctl command, human and --json, and its exit codes.
pub fn socks5dctl_end_to_end(t: &Transport) {
    let d = Daemon::start(t, &["-u", "bob:bobpw"]);
    let m = d.admin();
    let bytes = one_tunnel(&d, &m);
    let target = d.ctl_target();
    let target: Vec<&str> = target.iter().map(String::as_str).collect();
    let base = [&target[..], &["-U", ADMIN]].concat();
    let run = |extra: &[&str]| ctl(&[&base[..], extra].concat(), ADMIN_PW, None);
    let run_new =
        |extra: &[&str], new: &str| ctl(&[&base[..], extra].concat(), ADMIN_PW, Some(new));

    // Counters.
    assert_eq!(
        ok(&run(&["historic"]), "historic"),
        "historic connections: 1\n"
    );
    assert_eq!(
        ok(&run(&["concurrent"]), "concurrent"),
        "concurrent connections: 0\n"
    );
    assert_eq!(
        ok(&run(&["bytes"]), "bytes"),
        format!("bytes transferred: {bytes}\n")
    );
    assert_eq!(
        ok(&run(&["--json", "historic"]), "--json historic"),
        "{\"historic_connections\": 1}\n"
    );
    assert_eq!(
        ok(&run(&["--json", "concurrent"]), "--json concurrent"),
        "{\"concurrent_connections\": 0}\n"
    );
    assert_eq!(
        ok(&run(&["--json", "bytes"]), "--json bytes"),
        format!("{{\"bytes_transferred\": {bytes}}}\n")
    );

    let v = m.metrics();
    let want = [
        ("historic_connections", v[&1]),
        ("concurrent_connections", v[&2]),
        ("bytes_transferred", v[&3]),
        ("bytes_client_to_target", v[&4]),
        ("bytes_target_to_client", v[&5]),
        ("auth_failures", v[&6]),
        ("connect_failures", v[&7]),
        ("refused_at_limit", v[&0x80]),
        ("handshakes_closed_at_fd_limit", v[&0x84]),
        ("mgmt_aborted_before_login", v[&0x85]),
    ];
    let human = ok(&run(&["metrics"]), "metrics");
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(
        lines.len(),
        v.len(),
        "metrics prints a line per ID the server sent ({:02x?}):\n{human}",
        v.keys()
    );
    for (k, val) in want {
        let line = format!("{}: {val}", k.replace('_', " "));
        assert!(
            lines.contains(&line.as_str()),
            "metrics lacks {line:?}:\n{human}"
        );
    }
    assert!(
        lines.iter().any(|l| l.starts_with("uptime seconds: ")),
        "metrics lacks the uptime:\n{human}"
    );
    let json = json_numbers(&ok(&run(&["--json", "metrics"]), "--json metrics"));
    assert_eq!(json.len(), v.len(), "--json metrics: {json:?}");
    for (k, val) in want {
        assert!(
            json.contains(&(k.to_owned(), val)),
            "--json metrics lacks {k}={val}: {json:?}"
        );
    }
    assert!(
        json.iter().any(|(k, _)| k == "uptime_seconds"),
        "--json metrics lacks the uptime: {json:?}"
    );

    // Users.
    assert_eq!(ok(&run(&["users"]), "users"), "user   bob\nadmin  root\n");
    assert_eq!(
        ok(&run(&["--json", "users"]), "--json users"),
        "[{\"name\": \"bob\", \"role\": \"user\"}, {\"name\": \"root\", \"role\": \"admin\"}]\n"
    );
    assert_eq!(
        ok(&run_new(&["add-user", "alice"], "alice-pw"), "add-user"),
        "add-user: done\n"
    );
    assert_eq!(
        ok(
            &run_new(&["--json", "add-user", "carol", "--admin"], "carol-pw"),
            "add-user --admin"
        ),
        "{\"ok\": true}\n"
    );
    assert_eq!(
        m.list_all(),
        [
            (Role::Proxy, b"alice".to_vec()),
            (Role::Proxy, b"bob".to_vec()),
            (Role::Admin, b"carol".to_vec()),
            (Role::Admin, b"root".to_vec())
        ],
        "users after add-user"
    );
    assert!(
        socks_auth_ok(d.socks, "alice", "alice-pw"),
        "alice with the password socks5dctl set"
    );
    assert_eq!(
        Mgmt::connect(d.mgmt()).login("carol", "carol-pw"),
        [0x01, 0x00],
        "carol logs in"
    );
    assert_eq!(
        ok(&run_new(&["passwd", "alice"], "alice-pw2"), "passwd"),
        "passwd: done\n"
    );
    assert_eq!(
        ok(
            &run_new(&["--json", "passwd", "carol"], "carol-pw2"),
            "--json passwd"
        ),
        "{\"ok\": true}\n"
    );
    assert!(
        socks_auth_ok(d.socks, "alice", "alice-pw2")
            && !socks_auth_ok(d.socks, "alice", "alice-pw"),
        "passwd alice"
    );
    assert_eq!(
        Mgmt::connect(d.mgmt()).login("carol", "carol-pw2"),
        [0x01, 0x00],
        "carol's new password"
    );
    // Passwords from standard input: the administrator's, then the new one.
    let c = ctl_stdin(
        &[&base[..], &["--password-stdin", "add-user", "dave"]].concat(),
        "rootpw\ndave-pw\n",
    );
    assert_eq!(ok(&c, "--password-stdin add-user"), "add-user: done\n");
    assert!(
        socks_auth_ok(d.socks, "dave", "dave-pw"),
        "dave with the password from standard input"
    );
    assert_eq!(
        ok(&run(&["del-user", "alice"]), "del-user"),
        "del-user: done\n"
    );
    assert_eq!(
        ok(&run(&["--json", "del-user", "dave"]), "--json del-user"),
        "{\"ok\": true}\n"
    );
    assert_eq!(
        ok(&run(&["del-user", "carol"]), "del-user carol"),
        "del-user: done\n"
    );
    assert_eq!(ok(&run(&["users"]), "users"), "user   bob\nadmin  root\n");
    // The endpoint named another way: over SCTP its IPv6 address, over
    // Unix SOCKS5DCTL_UNIX instead of --unix.
    // (The SOCKS log-ins above were connections too.)
    let historic = m.counter(Request::HistoricConnections);
    let (other, how) = match t {
        Transport::Sctp => {
            let port = d.port().to_string();
            let args = ["-L", "::1", "-P", &port, "-U", ADMIN, "--json", "historic"];
            (ctl(&args, ADMIN_PW, None), "-L ::1 historic")
        }
        Transport::Unix => {
            let mut cmd = ctl_command(ADMIN_PW, None);
            cmd.env("SOCKS5DCTL_UNIX", d.socket())
                .args(["-U", ADMIN, "--json", "historic"]);
            let c = Ctl::from(run_child(cmd, "socks5dctl"));
            (c, "SOCKS5DCTL_UNIX historic")
        }
    };
    assert_eq!(
        ok(&other, how),
        format!("{{\"historic_connections\": {historic}}}\n")
    );

    // Exit codes.
    let code = |c: Ctl, want: i32, what: &str| {
        assert_eq!(
            c.code, want,
            "socks5dctl {what}: stdout {:?}, stderr {:?}",
            c.stdout, c.stderr
        );
        assert!(
            c.stdout.is_empty(),
            "socks5dctl {what} printed a result: {:?}",
            c.stdout
        );
        assert!(
            !c.stderr.contains(ADMIN_PW) && !c.stderr.contains("wrongpw"),
            "a password in stderr: {}",
            c.stderr
        );
    };
    code(
        ctl(&[&base[..], &["historic"]].concat(), "wrongpw", None),
        21,
        "with a wrong password",
    );
    code(
        ctl(
            &[&target[..], &["-U", "bob", "historic"]].concat(),
            "bobpw",
            None,
        ),
        21,
        "as a proxy user",
    );
    code(
        run_new(&["add-user", "bob"], "x"),
        14,
        "add-user of an existing user",
    );
    code(run(&["del-user", "nobody"]), 15, "del-user of no user");
    code(run_new(&["passwd", "nobody"], "x"), 15, "passwd of no user");
    code(
        run(&["del-user", "root"]),
        16,
        "del-user of the last administrator",
    );
    // Where no server is: port 1 over SCTP, a path with no socket over Unix.
    let empty = Folder::new("nowhere");
    let none = empty.path.join("none.sock");
    let nowhere: Vec<&str> = match t {
        Transport::Sctp => vec!["-L", "127.0.0.1", "-P", "1"],
        Transport::Unix => vec!["--unix", none.to_str().expect("a UTF-8 path")],
    };
    code(
        ctl(
            &[&nowhere[..], &["-U", ADMIN, "historic"]].concat(),
            ADMIN_PW,
            None,
        ),
        3,
        "where no server is",
    );
    code(run(&["frobnicate"]), 2, "with an unknown command");
    assert_eq!(
        m.list_all().len(),
        2,
        "the failed commands changed the users"
    );
}

/// Collects a child's standard output in a thread; `read(n)` waits (with a
/// deadline) for exactly the next `n` bytes.
struct OutReader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

impl OutReader {
    fn new(mut out: ChildStdout) -> OutReader {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut b = [0u8; 4096];
            loop {
                match out.read(&mut b) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx.send(b[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        OutReader {
            rx,
            buf: Vec::new(),
        }
    }

    fn read(&mut self, n: usize, what: &str) -> Vec<u8> {
        let deadline = Instant::now() + IO_TIMEOUT;
        while self.buf.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.buf.extend(chunk),
                Err(_) => panic!("{what}: got {:02x?}, want {n} bytes", self.buf),
            }
        }
        self.buf.drain(..n).collect()
    }
}

/// Waits (bounded) for a client to exit; kills it if it does not.
fn exits_within(child: &mut Child, t: Duration) -> bool {
    let deadline = Instant::now() + t;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Logs in and asks HISTORIC_CONNECTIONS through a third-party client whose
/// standard input and output are ours. Each message is written only after
/// the answer to the previous one arrived, so the client cannot merge them.
fn third_party(program: &str, args: &[String], want_historic: u64) {
    let what = format!("{program} {}", args.join(" "));
    let mut child = scrub_env(&mut Command::new(program))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (install it: apt-get install {program}): {e}")
        });
    let mut stdin = child.stdin.take().expect("piped");
    let mut out = OutReader::new(child.stdout.take().expect("piped"));
    stdin
        .write_all(&login_bytes(ADMIN.as_bytes(), ADMIN_PW.as_bytes()))
        .expect("write the log in");
    stdin.flush().expect("flush");
    assert_eq!(out.read(2, &what), [0x01, 0x00], "{what}: log-in reply");
    stdin.write_all(&[0x01, 0x01]).expect("write the request");
    stdin.flush().expect("flush");
    let mut want = vec![0x01, 0x00, 0x01];
    want.extend_from_slice(&want_historic.to_be_bytes());
    assert_eq!(
        out.read(11, &what),
        want,
        "{what}: HISTORIC_CONNECTIONS response"
    );
    drop(stdin);
    assert!(
        exits_within(&mut child, Duration::from_secs(10)),
        "{what} did not exit after its input ended"
    );
}

/// ncat over IPv4 and socat over IPv6, raw bytes both ways; and a refused
/// log in ends ncat by itself (the server shuts the association down).
pub fn ncat_and_socat(t: &Transport) {
    assert_eq!(*t, Transport::Sctp, "a case about SCTP clients");
    let d = Daemon::start(t, &["-u", "bob:bobpw"]);
    let m = d.admin();
    one_tunnel(&d, &m);
    assert_eq!(m.counter(Request::HistoricConnections), 1);
    let port = d.port().to_string();

    third_party(
        "ncat",
        &["--sctp".into(), "127.0.0.1".into(), port.clone()],
        1,
    );
    third_party(
        "socat",
        &["-".into(), format!("SCTP6-CONNECT:[::1]:{port}")],
        1,
    );
    third_party(
        "socat",
        &["-".into(), format!("SCTP4-CONNECT:127.0.0.1:{port}")],
        1,
    );

    // A wrong password: X'01', then the server closes and ncat ends although
    // its input is still open.
    let mut child = scrub_env(&mut Command::new("ncat"))
        .args(["--sctp", "127.0.0.1", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ncat");
    let mut stdin = child.stdin.take().expect("piped");
    let mut out = OutReader::new(child.stdout.take().expect("piped"));
    stdin
        .write_all(&login_bytes(b"root", b"wrong"))
        .expect("write the log in");
    assert_eq!(
        out.read(2, "ncat, wrong password"),
        [0x01, 0x01],
        "ncat: refused log in"
    );
    assert!(
        exits_within(&mut child, Duration::from_secs(10)),
        "ncat still runs: the server did not close"
    );
    drop(stdin);
}
