//! The real `socks5d` binary: its command line, its refusal to run as an open
//! proxy, draining on SIGTERM and SIGINT, and the access log.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use common::{
    Auth, Daemon, access_fields, access_lines, close_tunnel, echo_server, exchange, run_brief,
    socks_connect, temp_path, wait_until_refused,
};

const USER: &str = "alice";
const PASS: &str = "wonderland";

/// socks5d on 127.0.0.1, any port, with user USER, and `extra`.
fn daemon_with_user(extra: &[&str]) -> Daemon {
    let user = format!("{USER}:{PASS}");
    let mut args = vec!["-l", "127.0.0.1", "-p", "0", "-u", &user];
    args.extend_from_slice(extra);
    Daemon::start(&args)
}
const BANNER: &[u8] = b"hello from the target\n";

#[test]
fn help_lists_every_option_on_stdout() {
    for flag in ["-h", "--help"] {
        let out = run_brief(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}: {out:?}");
        assert!(
            out.stderr.is_empty(),
            "{flag} wrote to stderr: {}",
            out.stderr
        );
        assert!(out.stdout.starts_with("Usage: socks5d"), "{}", out.stdout);
        for option in [
            "-h, --help",
            "-v, --version",
            "-l, --listen",
            "-p, --port",
            "-L, --mgmt-listen",
            "-P, --mgmt-port",
            "-u, --user",
            "--allow-open-proxy",
            "--workers",
            "--no-pin",
            "--handshake-timeout",
            "--connect-timeout",
            "--idle-timeout",
            "--grace",
            "--access-log",
            "--pool-threads",
        ] {
            assert!(
                out.stdout.contains(option),
                "{flag}: usage lacks '{option}':\n{}",
                out.stdout
            );
        }
    }
}

#[test]
fn version_prints_name_and_version() {
    for flag in ["-v", "--version"] {
        let out = run_brief(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}: {out:?}");
        assert_eq!(
            out.stdout,
            format!("socks5d {}\n", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
        assert!(
            out.stderr.is_empty(),
            "{flag} wrote to stderr: {}",
            out.stderr
        );
    }
}

#[test]
fn bad_arguments_give_one_line_and_status_2() {
    // (arguments, a word the message must contain)
    let cases: &[(&[&str], &str)] = &[
        (&["-p", "99999"], "99999"),
        (&["-p"], "missing value"),
        (&["-l", "not an ip"], "not an ip"),
        (&["-u", "nocolon"], "USER:PASS"),
        (&["--bogus"], "--bogus"),
        (&["--workers", "0"], "--workers"),
        (&["-u", "a:b", "-u", "a:c"], "twice"),
    ];
    let mut failures = Vec::new();
    for (args, word) in cases {
        let out = run_brief(args);
        let lines: Vec<&str> = out.stderr.lines().collect();
        if out.status.code() != Some(2) {
            failures.push(format!("{args:?}: exit {:?}, want 2", out.status));
        }
        if lines.len() != 1 {
            failures.push(format!(
                "{args:?}: {} stderr lines: {:?}",
                lines.len(),
                out.stderr
            ));
        } else if !lines[0].starts_with("socks5d: ") || !lines[0].contains(word) {
            failures.push(format!("{args:?}: message {:?} lacks {word:?}", lines[0]));
        }
        if !out.stdout.is_empty() {
            failures.push(format!("{args:?}: wrote to stdout: {:?}", out.stdout));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn duplicate_user_message_hides_the_password() {
    let out = run_brief(&["-u", "alice:topsecret", "-u", "alice:topsecret2"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{:?}", out.stderr);
    assert!(out.stderr.contains("alice"), "{:?}", out.stderr);
    assert!(
        !out.stderr.contains("topsecret") && !out.stdout.contains("topsecret"),
        "the password leaked: stdout {:?}, stderr {:?}",
        out.stdout,
        out.stderr
    );
}

/// Passwords given with -u and --admin vanish from /proc/PID/cmdline (what
/// ps shows every local user) once socks5d has read them; the names stay,
/// the users still log in, and one warning says so.
#[test]
fn passwords_on_the_command_line_are_hidden_from_other_users() {
    let d = Daemon::start(&[
        "-l",
        "127.0.0.1",
        "-p",
        "0",
        "-u",
        "alice:wonderland",
        "--admin=root:hunter2-secret",
        "--user",
        "bob:a:b:c",
    ]);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", d.pid())).expect("read cmdline");
    let shown = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    for secret in ["wonderland", "hunter2-secret", "a:b:c"] {
        assert!(!shown.contains(secret), "{secret:?} in {shown:?}");
    }
    for kept in ["alice:", "--admin=root:", "bob:", "-l 127.0.0.1"] {
        assert!(shown.contains(kept), "{kept:?} not in {shown:?}");
    }
    let target = echo_server(BANNER);
    let mut t = socks_connect(d.addr, Auth::User("alice", "wonderland"), target);
    exchange(&mut t, b"", BANNER);
    drop(socks_connect(d.addr, Auth::User("bob", "a:b:c"), target));
    let warnings = d
        .stderr()
        .lines()
        .filter(|l| l.contains("command-line passwords hidden: options=-u,--admin "))
        .count();
    assert_eq!(warnings, 1, "{}", d.stderr());
}

/// A users file in a folder that does not exist: start-up says which
/// folder is missing.
#[test]
fn users_file_in_a_missing_folder_names_the_folder() {
    let dir = temp_path("no-such-folder");
    let path = dir.join("users");
    let out = run_brief(&[
        "-l",
        "127.0.0.1",
        "-p",
        "0",
        "--users-file",
        path.to_str().expect("a UTF-8 path"),
    ]);
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains(&format!("the folder {} does not exist", dir.display())),
        "{}",
        out.stderr
    );
}

/// Users given with -u go into the users file only once start-up has
/// succeeded: a start that fails (its port is taken) leaves the file as it
/// was.
#[test]
fn a_failed_start_leaves_the_users_file_alone() {
    let dir = temp_path("failed-start");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("users");
    let users = path.to_str().expect("a UTF-8 path");
    socks5d::users::file::create_new(&path).expect("an empty users file");
    let before = std::fs::read(&path).expect("read the users file");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("local_addr").port().to_string();
    let out = run_brief(&[
        "-l",
        "127.0.0.1",
        "-p",
        &port,
        "--users-file",
        users,
        "-u",
        "carol:carol-pw",
    ]);
    assert!(!out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("cannot listen"), "{}", out.stderr);
    assert_eq!(std::fs::read(&path).expect("read again"), before);
}

/// --config: the file's options apply, the command line's win; SIGHUP reads
/// the file again and names the settings that changed and need a restart.
#[test]
fn config_file_then_sighup_names_what_needs_a_restart() {
    let dir = temp_path("config");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("socks5d.conf");
    std::fs::write(
        &path,
        "listen 127.0.0.1\nport 0\nuser alice:wonderland\nworkers 1\naccess-log off\n",
    )
    .expect("write the config");
    let conf = path.to_str().expect("a UTF-8 path");
    let d = Daemon::start(&["--config", conf, "--no-pin", "--workers", "2"]);
    let target = echo_server(BANNER);
    let mut t = socks_connect(d.addr, Auth::User(USER, PASS), target);
    exchange(&mut t, b"", BANNER);
    assert!(
        d.stderr().contains("workers started: workers=2"),
        "{}",
        d.stderr()
    );
    assert!(
        d.stderr().contains(&format!(
            "config file with passwords readable by others: path={} mode=",
            path.display()
        )),
        "{}",
        d.stderr()
    );
    std::fs::write(
        &path,
        "listen 127.0.0.1\nport 0\nuser alice:wonderland\nworkers 4\nidle-timeout 5\n",
    )
    .expect("rewrite the config");
    d.signal(Signal::SIGHUP);
    let line = d.stderr_line(
        "config changes wait for a restart: ",
        Duration::from_secs(10),
    );
    // workers is the command line's; access-log went, idle-timeout came.
    assert!(
        line.ends_with(&format!(
            "path={} settings=access-log,idle-timeout",
            path.display()
        )),
        "{line}"
    );
}

/// --user-env and --admin-env: users from the environment, so that no
/// password is ever on the command line.
#[test]
fn users_from_the_environment() {
    let d = Daemon::start_with_env(
        &[
            "-l",
            "127.0.0.1",
            "-p",
            "0",
            "--user-env",
            "TEST_SOCKS_USER",
            "--admin-env",
            "TEST_SOCKS_ADMIN",
        ],
        &[
            ("TEST_SOCKS_USER", "alice:wonderland"),
            ("TEST_SOCKS_ADMIN", "root:env-admin-pw"),
        ],
    );
    let target = echo_server(BANNER);
    let mut t = socks_connect(d.addr, Auth::User(USER, PASS), target);
    exchange(&mut t, b"", BANNER);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", d.pid())).expect("read cmdline");
    let shown = String::from_utf8_lossy(&cmdline);
    assert!(
        !shown.contains("wonderland") && !shown.contains("env-admin-pw"),
        "{shown}"
    );
    assert!(
        !d.stderr().contains("command-line passwords"),
        "no warning without passwords on the command line:\n{}",
        d.stderr()
    );
}

#[test]
fn refuses_to_be_an_open_proxy_on_default_addresses() {
    for args in [&[][..], &["-p", "0"], &["-l", "0.0.0.0", "-p", "0"]] {
        let out = run_brief(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {:?}", out.stderr);
        assert!(
            out.stderr.contains("open proxy"),
            "{args:?}: {:?}",
            out.stderr
        );
    }
}

#[test]
fn allow_open_proxy_starts_and_relays_without_auth() {
    let target = echo_server(BANNER);
    let mut d = Daemon::start(&["--allow-open-proxy", "-l", "127.0.0.1", "-p", "0"]);
    let mut t = socks_connect(d.addr, Auth::None, target);
    exchange(&mut t, b"ping", &[BANNER, b"ping"].concat());
    assert!(close_tunnel(t).is_empty());
    assert!(d.terminate().success());
}

/// The management endpoint cannot be opened (no SCTP in this kernel, or an
/// address that is not ours: 192.0.2.1 is TEST-NET-1): socks5d logs one line
/// saying why and keeps serving SOCKS.
#[test]
fn without_a_management_socket_socks_goes_on() {
    let target = echo_server(BANNER);
    let mut d = Daemon::start(&[
        "-l",
        "127.0.0.1",
        "-p",
        "0",
        "-u",
        "alice:pw",
        "--admin",
        "root:rootpw",
        "-L",
        "192.0.2.1",
        "-P",
        "0",
    ]);
    let mut t = socks_connect(d.addr, Auth::User("alice", "pw"), target);
    exchange(&mut t, b"ping", &[BANNER, b"ping"].concat());
    assert!(close_tunnel(t).is_empty());
    assert!(d.terminate().success());
    let err = d.stderr();
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("management endpoint"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("management endpoint not served: port=")
            && lines[0].ends_with(" socks=serving"),
        "{err}"
    );
    // The reason names the error (with its errno) so that it can be acted on.
    assert!(lines[0].contains("os error"), "{err}");
    assert!(!err.contains("rootpw"), "{err}");
}

/// `--require-management` turns the same situation into a start-up failure.
#[test]
fn require_management_makes_it_fatal() {
    let out = run_brief(&[
        "-l",
        "127.0.0.1",
        "-p",
        "0",
        "--admin",
        "root:rootpw",
        "-L",
        "192.0.2.1",
        "-P",
        "0",
        "--require-management",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("management endpoint"), "{out:?}");
}

/// Opens a tunnel to an echo target through a daemon started with `grace`,
/// and proves it relays.
fn daemon_with_tunnel(grace: &str) -> (Daemon, std::net::TcpStream) {
    let target = echo_server(BANNER);
    let d = daemon_with_user(&["--grace", grace]);
    let mut t = socks_connect(d.addr, Auth::User(USER, PASS), target);
    exchange(&mut t, b"before", &[BANNER, b"before"].concat());
    (d, t)
}

/// The signal stops new connections, the open tunnel keeps relaying, and
/// once it closes socks5d exits 0 long before the grace period is over.
fn drains_then_exits(sig: Signal) {
    let grace = Duration::from_secs(5);
    let (mut d, mut t) = daemon_with_tunnel("5");
    let signalled = Instant::now();
    d.signal(sig);

    wait_until_refused(d.addr, Duration::from_secs(4));
    assert!(
        d.wait_timeout(Duration::ZERO).is_none(),
        "socks5d exited with a tunnel open; stderr:\n{}",
        d.stderr()
    );
    exchange(&mut t, b"after the signal", b"after the signal");

    let closed = Instant::now();
    assert!(close_tunnel(t).is_empty());
    let status = d.wait_exit(grace);
    let since_close = closed.elapsed();
    let since_signal = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{sig}; stderr:\n{}", d.stderr());
    assert!(
        since_close < Duration::from_secs(2) && since_signal < grace - Duration::from_secs(1),
        "{sig}: exit came {since_close:?} after the tunnel closed, {since_signal:?} after \
         the signal; the grace period is {grace:?}"
    );
}

#[test]
fn sigterm_drains_open_tunnels() {
    drains_then_exits(Signal::SIGTERM);
}

#[test]
fn sigint_drains_open_tunnels() {
    drains_then_exits(Signal::SIGINT);
}

#[test]
fn sigterm_with_a_tunnel_left_open_exits_after_the_grace_period() {
    let grace = Duration::from_secs(1);
    let (mut d, mut t) = daemon_with_tunnel("1");
    let signalled = Instant::now();
    d.signal(Signal::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", d.stderr());
    assert!(
        took >= grace - Duration::from_millis(100) && took < grace + Duration::from_secs(3),
        "exit came {took:?} after SIGTERM; the grace period is {grace:?}"
    );
    // socks5d closed the tunnel on its way out.
    let mut rest = Vec::new();
    match t.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "unexpected bytes {rest:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

/// One tunnel: `payload` up, the banner and the echo down. Returns the
/// client's address and the target's.
fn one_tunnel(d: &Daemon, target: SocketAddr, payload: &[u8]) -> SocketAddr {
    let mut t = socks_connect(d.addr, Auth::User(USER, PASS), target);
    let client = t.local_addr().expect("local_addr");
    // Two writes, so the counts add up across reads.
    let (a, b) = payload.split_at(payload.len() / 3);
    exchange(&mut t, a, &[BANNER, a].concat());
    exchange(&mut t, b, b);
    assert!(close_tunnel(t).is_empty());
    client
}

fn check_record(log: &str, client: SocketAddr, target: SocketAddr, up: usize, down: usize) {
    let lines = access_lines(log);
    assert_eq!(lines.len(), 1, "want one access-log line, got:\n{log}");
    let f = access_fields(lines[0]);
    let want = [
        ("client", client.to_string()),
        ("user", USER.to_owned()),
        ("target", target.to_string()),
        ("connected", target.to_string()),
        ("reply", "00".to_owned()),
        ("up", up.to_string()),
        ("down", down.to_string()),
    ];
    for (key, value) in want {
        assert_eq!(
            f.get(key).map(String::as_str),
            Some(value.as_str()),
            "{key}= in {:?}",
            lines[0]
        );
    }
    let ms = f.get("duration_ms").expect("duration_ms=");
    assert!(
        ms.parse::<u64>().is_ok(),
        "duration_ms={ms} in {:?}",
        lines[0]
    );
    assert!(f["time"].ends_with('Z'), "timestamp in {:?}", lines[0]);
    assert!(
        !lines[0].contains(PASS),
        "the password is in {:?}",
        lines[0]
    );
}

#[test]
fn access_log_on_stdout_by_default() {
    let target = echo_server(BANNER);
    let mut d = daemon_with_user(&[]);
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let client = one_tunnel(&d, target, &payload);
    assert_eq!(d.terminate().code(), Some(0), "stderr:\n{}", d.stderr());
    check_record(
        &d.stdout(),
        client,
        target,
        payload.len(),
        BANNER.len() + payload.len(),
    );
}

#[test]
fn access_log_to_a_file() {
    let target = echo_server(BANNER);
    let path = temp_path("access.log");
    let path_arg = path.to_str().expect("a UTF-8 temp path");
    let mut d = daemon_with_user(&["--access-log", path_arg]);
    let payload = b"to the file, please".repeat(50);
    let client = one_tunnel(&d, target, &payload);
    assert_eq!(d.terminate().code(), Some(0), "stderr:\n{}", d.stderr());
    let log = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    let log = log.unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    check_record(
        &log,
        client,
        target,
        payload.len(),
        BANNER.len() + payload.len(),
    );
    assert!(d.stdout().is_empty(), "stdout: {:?}", d.stdout());
}

#[test]
fn access_log_off_writes_nothing() {
    let target = echo_server(BANNER);
    let mut d = daemon_with_user(&["--access-log", "off"]);
    one_tunnel(&d, target, b"nobody writes this down");
    assert_eq!(d.terminate().code(), Some(0), "stderr:\n{}", d.stderr());
    assert!(d.stdout().is_empty(), "stdout: {:?}", d.stdout());
    assert!(!d.stderr().contains("reply="), "stderr:\n{}", d.stderr());
}
