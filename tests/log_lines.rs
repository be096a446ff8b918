//! Every line socks5d and socks5dctl write on standard error has the
//! format README.md describes ("Log lines"): a fixed message of lowercase
//! words, then a colon and `key=value` fields, each value one token or
//! quoted; never Rust debug text, never a password.
//!
//! socks5d runs with every level on (RUST_LOG=trace: its crates' lines
//! too) through start-up, tunnels, a refused log in, a
//! connection refused by its target, a rule with `log`, a UDP datagram
//! dropped, management log ins good and bad, a reload that works and one
//! that does not, and a stop; socks5dctl and `socks5d user` fail in their
//! ways. Each line is checked by [`check_line`], which is tested on lines
//! of the old style and on debug text too.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    Auth, Daemon, SocksError, UdpClient, UnixMgmt, closed_port, echo_server, exchange, run_brief,
    scrub_env, socks_connect, temp_path, try_socks_connect, try_socks_login, udp_datagram,
    wait_output,
};
use nix::sys::signal::Signal;

/// socks5dctl, built by cargo for this test run.
const SOCKS5DCTL: &str = env!("CARGO_BIN_EXE_socks5dctl");
/// How long socks5d may take to log a line.
const SETTLE: Duration = Duration::from_secs(10);

/// The passwords of the run; none may show in any line.
const SECRETS: &[&str] = &[
    "alice-pw-L9q",
    "bob-pw-L9q",
    "wrong-pw-L9q",
    common::MGMT_ADMIN_PW,
];

/// Whether `w` is a word of a message: `[a-z][a-z0-9-]*` (a number is a
/// variable part, which belongs in a field).
fn message_word(w: &str) -> bool {
    w.starts_with(|c: char| c.is_ascii_lowercase())
        && w.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Checks `body`, a line without its time stamp and level (or its program
/// name): `message [": " field (" " field)*]`, where the message is words
/// `[a-z][a-z0-9-]*` separated by single spaces, a field is
/// `key=value`, a key is `[a-z][a-z0-9_]*`, and a value is either quoted
/// (`"` then printable ASCII but `"`, spaces included, then `"`) or a token
/// (printable ASCII but space and `"`, at least one character): the
/// regular expression of README.md, "Log lines". Values must not look like
/// debug text either ([`looks_like_debug`]). Returns what is wrong.
fn check_line(body: &str) -> Result<(), String> {
    let (message, fields) = match body.split_once(": ") {
        Some((m, f)) => (m, Some(f)),
        None => (body, None),
    };
    if !message.split(' ').all(message_word) {
        return Err(format!("the message {message:?} is not lowercase words"));
    }
    let Some(mut rest) = fields else {
        return Ok(());
    };
    loop {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("no '=' in the field at {rest:?}"))?;
        let key_ok = key.starts_with(|c: char| c.is_ascii_lowercase())
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !key_ok {
            return Err(format!("the key {key:?} is not [a-z][a-z0-9_]*"));
        }
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| format!("the quoted value of {key} does not end"))?;
            let inner = &quoted[..end];
            if !inner.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
                return Err(format!("the quoted value of {key} is not printable ASCII"));
            }
            (&after[..end + 2], &quoted[end + 1..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if value.is_empty() {
            return Err(format!("{key} has an empty value"));
        }
        if !value.starts_with('"') && !value.chars().all(|c| c.is_ascii_graphic() && c != '"') {
            return Err(format!("the value {value:?} of {key} is not one token"));
        }
        if looks_like_debug(value) {
            return Err(format!(
                "the value {value:?} of {key} looks like Rust debug text"
            ));
        }
        if next.is_empty() {
            return Ok(());
        }
        rest = next
            .strip_prefix(' ')
            .filter(|r| !r.starts_with(' '))
            .ok_or_else(|| format!("after {key}={value}: not one space then a field"))?;
    }
}

/// Whether a value looks like what `{:?}` writes: a capitalised word
/// (an enum's variant: `Fragmented`, `None`, `Some(..)`, `Os { .. }`) or
/// braces. Values of the format are numbers, lowercase words, addresses,
/// paths, all-capital names such as `SIGTERM`, and free text in quotes; no
/// name this test gives socks5d is capitalised.
fn looks_like_debug(value: &str) -> bool {
    let mut c = value.chars();
    let capitalised = matches!(
        (c.next(), c.next()),
        (Some(a), Some(b)) if a.is_ascii_uppercase() && b.is_ascii_lowercase()
    );
    // Braces other than those of the `\u{..}` escapes.
    let mut rest = value.to_owned();
    while let Some(i) = rest.find("\\u{") {
        match rest[i..].find('}') {
            Some(j) => rest.replace_range(i..i + j + 1, ""),
            None => break,
        }
    }
    capitalised || (!value.starts_with('"') && (rest.contains('{') || rest.contains('}')))
}

/// The body of a line of socks5d's logger: `[TIME LEVEL] BODY`, the time
/// RFC 3339 in UTC to the second.
fn logger_body(line: &str) -> Result<&str, String> {
    let rest = line
        .strip_prefix('[')
        .ok_or_else(|| "no '[' time stamp".to_owned())?;
    let (stamp, body) = rest
        .split_once("] ")
        .ok_or_else(|| "no '] ' after the time stamp and level".to_owned())?;
    let (time, level) = stamp
        .split_once(' ')
        .ok_or_else(|| "no level after the time stamp".to_owned())?;
    let time_ok = time.len() == 20
        && time.ends_with('Z')
        && time.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == 'Z',
            _ => c.is_ascii_digit(),
        });
    if !time_ok {
        return Err(format!("the time stamp {time:?}"));
    }
    if !["ERROR", "WARN ", "INFO ", "DEBUG", "TRACE"].contains(&level.trim_start()) {
        return Err(format!("the level {level:?}"));
    }
    Ok(body)
}

/// The body of a line socks5d prints without its logger.
fn socks5d_body(line: &str) -> Result<&str, String> {
    line.strip_prefix("socks5d: ")
        .ok_or_else(|| "no 'socks5d: ' first".to_owned())
}

/// The body of a line of socks5dctl.
fn socks5dctl_body(line: &str) -> Result<&str, String> {
    line.strip_prefix("socks5dctl: ")
        .ok_or_else(|| "no 'socks5dctl: ' first".to_owned())
}

/// Checks every line of `text` with `body_of` then [`check_line`]; fails
/// the test naming each bad line, and if a password shows.
fn assert_all_lines(what: &str, text: &str, body_of: impl Fn(&str) -> Result<&str, String>) {
    let bad: Vec<String> = text
        .lines()
        .filter_map(|l| {
            body_of(l)
                .and_then(check_line)
                .err()
                .map(|why| format!("  {l}\n    ({why})"))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: lines not in the log-line format:\n{}",
        bad.join("\n")
    );
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what}: a password shows:\n{text}");
    }
}

/// `socks5dctl ARGS` over the management socket at `socket` as root with
/// `password`.
fn ctl(socket: &Path, password: &str, args: &[&str]) -> common::Ctl {
    let mut cmd = Command::new(SOCKS5DCTL);
    scrub_env(&mut cmd)
        .args(["--unix", socket.to_str().expect("a UTF-8 path"), "-U"])
        .arg(common::MGMT_ADMIN)
        .args(args)
        .env("SOCKS5DCTL_PASSWORD", password)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run socks5dctl");
    wait_output(&mut child, "socks5dctl", SETTLE).into()
}

#[test]
fn the_checker_takes_the_format_and_refuses_the_old_style() {
    for good in [
        "socks5 listening: addr=127.0.0.1:1080",
        "users file reloaded: path=/var/lib/socks5d/users users=3",
        "rules not reloaded: error=\"rules.conf:7: 'port 70000' is not a port\"",
        "no users file or rules file to reload",
        "audit: event=login result=ok user=root peer=uid:0 transport=unix",
        "stopping: signal=SIGTERM grace_s=0.5",
        "user change refused: op=add-user user=a\\u{20}b error=\"user exists\"",
    ] {
        assert_eq!(check_line(good), Ok(()), "{good}");
    }
    for bad in [
        "SOCKS5 listening on 127.0.0.1:1080",
        "SIGTERM: no new connections; open tunnels have 10s to finish",
        "users file /x reloaded: 3 user(s)",
        "management association 5: not logged in; aborting (Grace)",
        "resolving \"example.com\": failed",
        "connect Some(127.0.0.1:9): refused",
        "connect failed: error=Os { code: 111, kind: ConnectionRefused }",
        "connect attempt failed: addr=None",
        "connect attempt failed: addr=Some(127.0.0.1:9)",
        "udp datagram from the client dropped: reason=Fragmented",
        "x: a=Os{code:2}",
        "stopped: connections=1  bytes=2",
        "stopped: connections=",
        "rules not reloaded: error=\"unterminated",
        "rules not reloaded: error=\"a\" b",
        "x: Key=1",
        "2 workers",
        "users file /x reloaded",
        "management (SCTP) listening on 127.0.0.1 port 8080",
        "audit event=login result=ok",
        "",
    ] {
        assert!(check_line(bad).is_err(), "taken: {bad:?}");
    }
    assert!(logger_body("[2026-01-02T03:04:05Z INFO ] socks5 listening: addr=x").is_ok());
    assert!(logger_body("socks5 listening: addr=x").is_err());
    assert!(logger_body("[2026-01-02 03:04:05 INFO ] x").is_err());
}

/// socks5d's standard error, every level on, through what it does.
#[test]
fn every_line_of_a_run_has_the_format() {
    let dir = temp_path("log-lines");
    fs::create_dir_all(&dir).expect("mkdir");
    let users = dir.join("users");
    let rules = dir.join("socks.rules");
    fs::write(&rules, "deny user bob to 127.0.0.1 log\nallow\n").expect("write the rules");
    let mgmt = UnixMgmt::new("log-lines-mgmt");
    let mut args: Vec<String> = [
        "-l",
        "127.0.0.1",
        "-p",
        "0",
        "-u",
        "alice:alice-pw-L9q",
        "-u",
        "bob:bob-pw-L9q",
        "--grace",
        "1",
        "-P",
        "0",
        "--auth-penalty-exempt",
        "127.0.0.0/8",
        "--users-file",
    ]
    .map(String::from)
    .to_vec();
    args.push(users.to_str().expect("a UTF-8 path").to_owned());
    args.extend([
        "--rules".to_owned(),
        rules.to_str().expect("UTF-8").to_owned(),
    ]);
    args.extend(mgmt.args());
    args.extend(["--metrics-listen".to_owned(), "127.0.0.1:0".to_owned()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut d = Daemon::start_with_env(&argv, &[("RUST_LOG", "trace")]);

    // A tunnel, a refused log in, a target that refuses, a rule that logs.
    let target = echo_server(b"hi");
    let mut t = socks_connect(d.addr, Auth::User("alice", "alice-pw-L9q"), target);
    exchange(&mut t, b"", b"hi");
    drop(t);
    assert!(matches!(
        try_socks_login(d.addr, Auth::User("alice", "wrong-pw-L9q")),
        Err(SocksError::AuthFailed(_))
    ));
    let closed = SocketAddr::from(([127, 0, 0, 1], closed_port()));
    assert!(try_socks_connect(d.addr, Auth::User("alice", "alice-pw-L9q"), closed).is_err());
    d.stderr_line("connect attempt failed: ", SETTLE);
    assert!(matches!(
        try_socks_connect(d.addr, Auth::User("bob", "bob-pw-L9q"), target),
        Err(SocksError::ConnectFailed(0x02))
    ));
    d.stderr_line("rule decided: decision=deny ", SETTLE);

    // A fragmented datagram, which socks5d drops.
    let (assoc, udp) = UdpClient::associate(
        d.addr,
        Auth::User("alice", "alice-pw-L9q"),
        "127.0.0.1:0".parse().expect("an address"),
        None,
    );
    udp.send_raw(&udp_datagram(1, target, b"a fragment"));
    d.stderr_line("udp datagram from the client dropped: ", SETTLE);
    drop(assoc);

    // Management: a refused log in, a good one that reloads; socks5dctl's
    // own failure line.
    let refused = ctl(&mgmt.socket, "wrong-pw-L9q", &["metrics"]);
    assert_eq!(refused.code, 21, "{refused:?}");
    assert_all_lines("socks5dctl", &refused.stderr, socks5dctl_body);
    assert_eq!(refused.stderr.lines().count(), 1, "{refused:?}");
    let reload = ctl(&mgmt.socket, common::MGMT_ADMIN_PW, &["reload"]);
    assert_eq!(reload.code, 0, "{reload:?}");
    d.stderr_line("audit: event=change op=reload ", SETTLE);

    // SIGHUP with rules that do not parse, then the stop.
    fs::write(&rules, "allow to 300.0.0.1\n").expect("spoil the rules");
    d.signal(Signal::SIGHUP);
    d.stderr_line("rules not reloaded: error=\"", SETTLE);
    assert!(d.terminate().success(), "{}", d.stderr());

    let err = d.stderr();
    assert_all_lines("socks5d", &err, logger_body);
    // The run reached what it was meant to: each level, and these lines.
    for level in ["DEBUG]", "TRACE]", "INFO ]", "WARN ]"] {
        assert!(err.contains(level), "no {level} line:\n{err}");
    }
    for want in [
        "] command-line passwords hidden: ",
        "] management listening: transport=unix path=",
        "] socks5 listening: addr=127.0.0.1:",
        "] metrics listening: addr=127.0.0.1:",
        "] audit: event=login result=refused user=root ",
        "] users file reloaded: path=",
        "] stopping: signal=SIGTERM grace_s=1",
        "] stopped: connections=",
    ] {
        assert!(err.contains(want), "no line with {want:?}:\n{err}");
    }
    let _ = fs::remove_dir_all(&dir);
}

/// What socks5d prints without its logger: a bad command line, and a
/// `socks5d user` that cannot read its file.
#[test]
fn the_messages_of_short_runs_have_the_format() {
    for args in [
        &["-u", "alice:alice-pw-L9q", "-u", "alice:bob-pw-L9q"][..],
        &["--frob"],
        &["user", "add"],
        &["user", "list", "--users-file", "/nonexistent/socks5d/users"],
    ] {
        let out = run_brief(args);
        assert!(!out.status.success(), "{args:?}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {out:?}");
        assert_all_lines(&format!("socks5d {args:?}"), &out.stderr, socks5d_body);
    }
    let unreachable = {
        let mut cmd = Command::new(SOCKS5DCTL);
        scrub_env(&mut cmd)
            .args(["--unix", "/nonexistent/socks5d.sock", "metrics"])
            .env("SOCKS5DCTL_PASSWORD", "x")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run socks5dctl");
        common::Ctl::from(wait_output(&mut child, "socks5dctl", SETTLE))
    };
    assert_eq!(unreachable.code, 3, "{unreachable:?}");
    assert!(
        unreachable
            .stderr
            .starts_with("socks5dctl: cannot connect: target=/nonexistent/socks5d.sock "),
        "{unreachable:?}"
    );
    assert_all_lines("socks5dctl", &unreachable.stderr, socks5dctl_body);
}
