//! `socks5dctl top` against the real socks5d, over its management Unix
//! socket (--mgmt-unix): `--once` after known SOCKS traffic (every number of
//! the frame checked) and during traffic (rates above zero); the
//! interactive view in a pseudo-terminal: its frames, a window resize
//! (SIGWINCH), and leaving on `q`, Ctrl-C and SIGINT with the terminal as
//! it was.

mod common;

use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::sys::termios::LocalFlags;
use nix::unistd::Pid;

/// The client under test.
const CTL: &str = env!("CARGO_BIN_EXE_socks5dctl");

/// How long a run of socks5dctl may take (a debug build, a loaded machine).
const CTL_TIMEOUT: Duration = Duration::from_secs(30);

/// What leaves the alternate screen and shows the cursor again.
const LEAVE: &[u8] = b"\x1b[?25h\x1b[?1049l";
/// What enters the alternate screen and hides the cursor.
const ENTER: &[u8] = b"\x1b[?1049h\x1b[?25l";

/// socks5d with the proxy users alice and bob and the administrator of
/// `mgmt` on its Unix socket.
fn daemon(mgmt: &UnixMgmt) -> Daemon {
    mgmt.start_as("alice", "alice-pw", &["-u", "bob:bob-pw"])
}

/// `socks5dctl --unix SOCKET -U root top ARGS`, the password in the
/// environment, its standard streams as given.
fn top_command(mgmt: &UnixMgmt, args: &[&str]) -> Command {
    let mut c = Command::new(CTL);
    scrub_env(&mut c);
    c.arg("--unix")
        .arg(&mgmt.socket)
        .args(["-U", MGMT_ADMIN, "top"])
        .args(args)
        .env("SOCKS5DCTL_PASSWORD", MGMT_ADMIN_PW);
    c
}

/// `top --once ARGS` to its end.
fn top_once(mgmt: &UnixMgmt, args: &[&str]) -> Ctl {
    let mut c = top_command(mgmt, &[&["--once"], args].concat());
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run socks5dctl");
    Ctl::from(wait_output(
        &mut child,
        "socks5dctl top --once",
        CTL_TIMEOUT,
    ))
}

/// A tunnel as `user` to `target` that relays `n` bytes each way.
fn tunnel(
    proxy: SocketAddr,
    user: (&str, &str),
    target: SocketAddr,
    n: usize,
) -> std::net::TcpStream {
    let mut t = socks_connect(proxy, Auth::User(user.0, user.1), target);
    let data = vec![b'x'; n];
    exchange(&mut t, &data, &data);
    t
}

/// Known traffic, then one frame: 3 tunnels of alice relaying 2 KiB each
/// way and closed, 2 of bob relaying 1 KiB each way and held open, one
/// failed log in, one CONNECT refused. The rates are 0 (nothing moves
/// during the interval), the totals exact.
#[test]
fn once_prints_the_counters_of_the_traffic() {
    let mgmt = UnixMgmt::new("top-once");
    let d = daemon(&mgmt);
    let echo = echo_server(b"");
    for _ in 0..3 {
        close_tunnel(tunnel(d.addr, ("alice", "alice-pw"), echo, 2048));
    }
    let held: Vec<_> = (0..2)
        .map(|_| tunnel(d.addr, ("bob", "bob-pw"), echo, 1024))
        .collect();
    assert_eq!(
        try_socks_login(d.addr, Auth::User("alice", "wrong")).err(),
        Some(SocksError::AuthFailed(0x01))
    );
    let refused: SocketAddr = ([127, 0, 0, 1], closed_port()).into();
    assert!(matches!(
        try_socks_connect(d.addr, Auth::User("alice", "alice-pw"), refused),
        Err(SocksError::ConnectFailed(_))
    ));
    // 3 + 2 tunnels, the failed log in, the refused CONNECT.
    mgmt.wait_metrics(Duration::from_secs(10), |m| {
        m[&M_HISTORIC] == 7
            && m[&M_CONCURRENT] == 2
            && m[&M_BYTES_UP] == 8192
            && m[&M_BYTES_DOWN] == 8192
            && m[&M_AUTH_FAILED] == 1
            && m[&M_CONNECT_FAILED] == 1
    });

    let t0 = Instant::now();
    let c = top_once(&mgmt, &["--interval", "0.5"]);
    let took = t0.elapsed();
    assert_eq!(c.code, 0, "{c:?}");
    assert!(
        took >= Duration::from_millis(500),
        "two samples 0.5 s apart: {took:?}"
    );
    assert!(!c.stdout.contains('\x1b'), "no terminal control: {c:?}");
    let lines: Vec<&str> = c.stdout.lines().collect();
    assert!(
        lines[0].starts_with("socks5d up 0:00:") && lines[0].ends_with(", every 0.5 s"),
        "{lines:?}"
    );
    assert_eq!(
        lines[1..7],
        [
            "connections  open 2  new 0.0/s  (total 7)",
            "throughput   up 0 B/s  down 0 B/s  (total up 8.0 KiB, down 8.0 KiB)",
            "failures     auth 0.0/s  connect 0.0/s  (total auth 1, connect 1)",
            "denied       0.0/s  (total 0)",
            "udp          datagrams 0.0/s  dropped 0.0/s  (total 0, dropped 0)",
            "",
        ],
        "{}",
        c.stdout
    );
    // Every user, no rates, so by bytes in all: alice's 3 closed tunnels
    // (12 KiB both ways, her wrong password), bob's 2 open ones, root's
    // nothing.
    assert_eq!(
        lines[7..],
        [
            "top 3 of 3 users by throughput (then bytes in all)",
            "USER   OPEN     NEW           UP         DOWN      TOTAL AUTH FAIL  DENIED",
            "alice     0   0.0/s        0 B/s        0 B/s   12.0 KiB         1       0",
            "bob       2   0.0/s        0 B/s        0 B/s    4.0 KiB         0       0",
            "root      0   0.0/s        0 B/s        0 B/s        0 B         0       0",
        ],
        "{}",
        c.stdout
    );

    let c = top_once(&mgmt, &["--interval", "0.1", "--users", "1"]);
    assert_eq!(c.code, 0, "{c:?}");
    assert!(c.stdout.contains("\ntop 1 of 3 users"), "{}", c.stdout);
    assert_eq!(c.stdout.lines().count(), 7 + 3, "{}", c.stdout);
    drop(held);
}

/// The number before `unit` after `label` in `line`: "new 3.5/s" gives
/// 3.5 for ("new ", "/s").
fn number_after(line: &str, label: &str, unit: &str) -> f64 {
    let rest = &line[line
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} in {line:?}"))
        + label.len()..];
    let end = rest
        .find(unit)
        .unwrap_or_else(|| panic!("{unit:?} in {line:?}"));
    rest[..end]
        .parse()
        .unwrap_or_else(|e| panic!("a number in {line:?}: {e}"))
}

/// Tunnels of alice opened and closed all through the interval: the
/// frame's new connections per second and bytes per second are above zero,
/// and alice is the busiest user, her sessions and bytes per second above
/// zero too.
#[test]
fn once_shows_rates_of_traffic_during_the_interval() {
    let mgmt = UnixMgmt::new("top-rates");
    let d = daemon(&mgmt);
    let echo = echo_server(b"");
    let stop = Arc::new(AtomicBool::new(false));
    let pump = {
        let stop = Arc::clone(&stop);
        let proxy = d.addr;
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                let t = tunnel(proxy, ("alice", "alice-pw"), echo, 4096);
                t.shutdown(Shutdown::Both).expect("close the tunnel");
                n += 1;
            }
            n
        })
    };
    mgmt.wait_metrics(Duration::from_secs(10), |m| m[&M_HISTORIC] >= 1);
    let c = top_once(&mgmt, &["--interval", "1"]);
    stop.store(true, Ordering::Release);
    let tunnels = pump.join().expect("the traffic thread");
    assert_eq!(c.code, 0, "{c:?}");
    let lines: Vec<&str> = c.stdout.lines().collect();
    let new = number_after(lines[1], "new ", "/s");
    assert!(new > 0.0, "{tunnels} tunnels during the run: {}", c.stdout);
    assert!(
        !lines[2].starts_with("throughput   up 0 B/s  down 0 B/s"),
        "{}",
        c.stdout
    );
    // USER OPEN NEW UP-NUMBER UP-UNIT DOWN-NUMBER DOWN-UNIT ...
    let alice: Vec<&str> = lines[9].split_whitespace().collect();
    assert_eq!(alice[0], "alice", "the busiest user first: {}", c.stdout);
    let rate = |i: usize| -> f64 {
        alice[i]
            .trim_end_matches("/s")
            .parse()
            .unwrap_or_else(|e| panic!("{:?}: {e}", alice[i]))
    };
    assert!(rate(2) > 0.0, "sessions per second: {}", c.stdout);
    assert!(
        rate(3) > 0.0 && rate(5) > 0.0,
        "bytes per second: {}",
        c.stdout
    );
}

/// `socks5dctl top ARGS` on the pseudo-terminal `pty`.
fn top_on(pty: &Pty, mgmt: &UnixMgmt, args: &[&str]) -> Child {
    top_command(mgmt, args)
        .stdin(pty.stdio())
        .stdout(pty.stdio())
        .stderr(pty.stdio())
        .spawn()
        .expect("run socks5dctl top on a pty")
}

/// Waits for `child` to exit; kills it and fails the test, with what the
/// terminal shows, after `CTL_TIMEOUT`.
fn wait_exit(child: &mut Child, pty: &mut Pty) -> ExitStatus {
    let deadline = Instant::now() + CTL_TIMEOUT;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            pty.drain();
            return st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "socks5dctl top still ran; the terminal shows:\n{}",
                pty.text()
            );
        }
        // Reading keeps the terminal's buffer from filling up and
        // blocking the child.
        pty.drain();
        thread::sleep(Duration::from_millis(5));
    }
}

/// The checks every interactive run ends with: exit 0, the alternate
/// screen left as the last thing written, the terminal's settings as
/// before (line editing and echo back on).
fn assert_left_cleanly(st: ExitStatus, pty: &Pty, before: &nix::sys::termios::Termios) {
    assert_eq!(
        st.code(),
        Some(0),
        "{st:?}; the terminal shows:\n{}",
        pty.text()
    );
    assert!(
        pty.output().ends_with(LEAVE),
        "the alternate screen was not left last:\n{}",
        pty.text()
    );
    let after = pty.settings();
    assert_eq!(after.local_flags, before.local_flags);
    assert_eq!(after.input_flags, before.input_flags);
    assert_eq!(after.output_flags, before.output_flags);
    assert!(
        after
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO)
    );
}

/// The first frame at once (no rates yet), the next every interval with
/// rates; `q` quits.
#[test]
fn interactive_redraws_and_quits_on_q() {
    let mgmt = UnixMgmt::new("top-pty-q");
    let _d = daemon(&mgmt);
    let mut pty = Pty::open(24, 100);
    let before = pty.settings();
    let mut child = top_on(&pty, &mgmt, &["--interval", "0.2"]);
    let at = pty.wait_for(0, "\x1b[?1049h", CTL_TIMEOUT);
    let first = pty.wait_for(at, "new -/s  (total 0)", CTL_TIMEOUT);
    assert!(
        pty.output().starts_with(ENTER),
        "the alternate screen first:\n{}",
        pty.text()
    );
    pty.wait_for(first, "top 3 of 3 users", CTL_TIMEOUT);
    let raw = pty.settings();
    assert!(
        !raw.local_flags
            .intersects(LocalFlags::ICANON | LocalFlags::ECHO),
        "raw mode while the view runs"
    );
    // A later frame, from two samples.
    let second = pty.wait_for(first, "new 0.0/s  (total 0)", CTL_TIMEOUT);
    pty.wait_for(second, "alice ", CTL_TIMEOUT);
    pty.type_keys(b"q");
    let st = wait_exit(&mut child, &mut pty);
    assert_left_cleanly(st, &pty, &before);
}

/// Ctrl-C in raw mode is a key, not a signal: it quits as `q` does.
#[test]
fn interactive_quits_on_ctrl_c() {
    let mgmt = UnixMgmt::new("top-pty-c");
    let _d = daemon(&mgmt);
    let mut pty = Pty::open(24, 100);
    let before = pty.settings();
    let mut child = top_on(&pty, &mgmt, &["--interval", "60"]);
    pty.wait_for(0, "top 3 of 3 users", CTL_TIMEOUT);
    pty.type_keys(&[0x03]);
    let st = wait_exit(&mut child, &mut pty);
    assert_left_cleanly(st, &pty, &before);
}

/// A resize with SIGWINCH redraws at once to the new size (the interval,
/// 60 s, would not); SIGINT quits as `q` does.
#[test]
fn interactive_follows_the_window_and_stops_on_sigint() {
    let mgmt = UnixMgmt::new("top-pty-winch");
    let _d = daemon(&mgmt);
    let mut pty = Pty::open(24, 100);
    let before = pty.settings();
    let mut child = top_on(&pty, &mgmt, &["--interval", "60"]);
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
    let first = pty.wait_for(0, "top 3 of 3 users", CTL_TIMEOUT);
    // 10 rows: 7 for the counters, 2 for the table's title and heads, 1
    // user; 40 columns cut the lines.
    socks5d::sys::term::set_window_size(pty.master.as_fd(), 10, 40).expect("resize the pty");
    // The pty is not the child's controlling terminal: the kernel tells
    // nobody, so the test sends what it would.
    kill(pid, Signal::SIGWINCH).expect("SIGWINCH");
    // The title cut at 40 columns, the rest of its line cleared.
    let title = pty.wait_for(
        first,
        "top 1 of 3 users by throughput (then byt\x1b[K",
        CTL_TIMEOUT,
    );
    let end = pty.wait_for(title, "\x1b[J", CTL_TIMEOUT);
    let out = pty.output();
    let start = out[..title]
        .windows(3)
        .rposition(|w| w == b"\x1b[H")
        .expect("the frame's start");
    let redrawn = String::from_utf8_lossy(&out[start..end]).into_owned();
    assert_eq!(redrawn.matches("\r\n").count(), 9, "10 rows: {redrawn:?}");
    assert!(redrawn.contains("\r\nalice "), "one user: {redrawn:?}");
    kill(pid, Signal::SIGINT).expect("SIGINT");
    let st = wait_exit(&mut child, &mut pty);
    assert_left_cleanly(st, &pty, &before);
}

/// The server going away ends the view with exit 3, and the terminal is
/// given back before the error is printed on it.
#[test]
fn interactive_restores_the_terminal_when_the_server_goes_away() {
    let mgmt = UnixMgmt::new("top-pty-gone");
    let mut d = daemon(&mgmt);
    let mut pty = Pty::open(24, 100);
    let before = pty.settings();
    let mut child = top_on(&pty, &mgmt, &["--interval", "0.2"]);
    pty.wait_for(0, "top 3 of 3 users", CTL_TIMEOUT);
    d.kill();
    let st = wait_exit(&mut child, &mut pty);
    assert_eq!(
        st.code(),
        Some(3),
        "{st:?}; the terminal shows:\n{}",
        pty.text()
    );
    let out = pty.output();
    let left = find(out, LEAVE).expect("the alternate screen left");
    let after = String::from_utf8_lossy(&out[left + LEAVE.len()..]).into_owned();
    assert!(
        after.starts_with("socks5dctl: ") && after.ends_with("\r\n") && !after.contains('\x1b'),
        "one error line after the screen was left: {after:?}"
    );
    let now = pty.settings();
    assert_eq!(now.local_flags, before.local_flags);
    assert_eq!(now.input_flags, before.input_flags);
}
