//! socks5d under systemd: the unit in contrib/ passes `systemd-analyze
//! verify`, and socks5d tells `$NOTIFY_SOCKET` when it is ready, reloading
//! and stopping. (Running the unit itself needs systemd as PID 1, which
//! these test machines do not have: the unit's sandboxing is checked by
//! `verify`, the notifications by listening on the socket as systemd would.)

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use common::{BIN, Daemon, temp_path};

fn next_message(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn expect_states(sock: &UnixDatagram, daemon: &mut Daemon) {
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let ready = next_message(sock);
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    daemon.signal(Signal::SIGHUP);
    let reloading = next_message(sock);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!(usec > 0, "{reloading:?}");
    let again = next_message(sock);
    assert!(again.starts_with("READY=1\n"), "{again:?}");
    daemon.signal(Signal::SIGTERM);
    let stopping = next_message(sock);
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping:?}");
    assert!(daemon.wait_exit(Duration::from_secs(20)).success());
}

/// READY=1 once listening, RELOADING=1 then READY=1 around SIGHUP,
/// STOPPING=1 on SIGTERM; to a socket named by its path.
#[test]
fn notifies_a_path_socket() {
    let dir = temp_path("notify");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    let mut d = Daemon::start_with_env(
        &["-l", "127.0.0.1", "-p", "0", "-u", "alice:pw"],
        &[("NOTIFY_SOCKET", path.to_str().expect("UTF-8"))],
    );
    expect_states(&sock, &mut d);
}

/// The same to an abstract socket, written with a leading '@' as systemd
/// does.
#[test]
fn notifies_an_abstract_socket() {
    let name = format!("socks5d-test-notify-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("an abstract name");
    let sock = UnixDatagram::bind_addr(&addr).expect("bind the notify socket");
    let mut d = Daemon::start_with_env(
        &["-l", "127.0.0.1", "-p", "0", "-u", "alice:pw"],
        &[("NOTIFY_SOCKET", &format!("@{name}"))],
    );
    expect_states(&sock, &mut d);
}

/// `systemd-analyze verify` on the unit, its ExecStart pointed at the
/// binary under test and its man pages found in man/.
#[test]
fn the_unit_verifies() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(top.join("contrib/socks5d.service")).expect("the unit");
    assert!(
        unit.contains("ExecStart=/usr/sbin/socks5d --config /etc/socks5d/socks5d.conf"),
        "{unit}"
    );
    let dir = temp_path("unit");
    std::fs::create_dir_all(dir.join("man/man8")).expect("mkdir");
    for page in ["socks5d.8", "socks5dctl.8"] {
        std::fs::copy(top.join("man").join(page), dir.join("man/man8").join(page))
            .expect("copy a man page");
    }
    let path = dir.join("socks5d.service");
    std::fs::write(&path, unit.replace("/usr/sbin/socks5d", BIN)).expect("write the unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("MANPATH", dir.join("man"))
        .output()
        .expect("run systemd-analyze (package systemd; make test installs it)");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
