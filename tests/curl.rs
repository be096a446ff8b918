//! The real `socks5d` binary with a real client: curl through the proxy to a
//! small HTTP/1.1 server run by the test.

mod common;

use std::net::SocketAddr;
use std::process::Output;
use std::sync::OnceLock;

use common::{Daemon, access_fields, access_lines, closed_port, curl, response_head};

const USER: &str = "carol";
const PASS: &str = "s3cr3t-pass";
/// The size of /big: 50 MiB.
const BIG_LEN: usize = 50 * 1024 * 1024;
const SMALL_BODY: &[u8] = b"a small body\n";

/// The /big body: a splitmix64 stream, so that every offset holds different
/// bytes and a lost, repeated or reordered chunk shows.
fn big_body() -> &'static [u8] {
    static BODY: OnceLock<Vec<u8>> = OnceLock::new();
    BODY.get_or_init(|| {
        let mut state = 0x5eed_5eed_5eed_5eedu64;
        let mut body = Vec::with_capacity(BIG_LEN);
        while body.len() < BIG_LEN {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            body.extend_from_slice(&z.to_le_bytes());
        }
        body.truncate(BIG_LEN);
        body
    })
}

/// The bodies of the test's HTTP server: GET /big and GET /small.
fn bodies(path: &str) -> Option<&'static [u8]> {
    match path {
        "/big" => Some(big_body()),
        "/small" => Some(SMALL_BODY),
        _ => None,
    }
}

/// The test's HTTP server on `bind` (port 0).
fn http_server(bind: &str) -> SocketAddr {
    common::http_server(bind, bodies)
}

fn start_with_user() -> Daemon {
    Daemon::start_as(USER, PASS, &[])
}

fn credentials() -> String {
    format!("{USER}:{PASS}")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Compares a download with the expected body, naming the first difference
/// instead of dumping 50 MiB.
fn assert_same_body(got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "download differs: got {} bytes, want {}; first difference at offset {first}",
        got.len(),
        want.len()
    );
}

/// The access-log record whose target is `target`.
fn record_for<'a>(log: &'a str, target: &str) -> &'a str {
    access_lines(log)
        .into_iter()
        .find(|l| access_fields(l).get("target").map(String::as_str) == Some(target))
        .unwrap_or_else(|| panic!("no access-log line with target={target}:\n{log}"))
}

/// curl downloads /big through socks5d; the body arrives intact and the
/// access log counts every byte the server sent.
fn download_big(socks_flag: &str, host: &str, want_target: impl Fn(u16) -> String) {
    let http = http_server("127.0.0.1:0");
    let mut d = start_with_user();
    let proxy = d.addr.to_string();
    let url = format!("http://{host}:{}/big", http.port());
    let out = curl(&[socks_flag, &proxy, "-U", &credentials(), "--fail", &url]);
    assert!(
        out.status.success(),
        "curl {url} via {socks_flag}: {:?}\n{}",
        out.status,
        stderr_of(&out)
    );
    assert_same_body(&out.stdout, big_body());

    assert_eq!(d.terminate().code(), Some(0), "stderr:\n{}", d.stderr());
    let log = d.stdout();
    let f = access_fields(record_for(&log, &want_target(http.port())));
    assert_eq!(f["user"], USER);
    assert_eq!(f["reply"], "00");
    assert_eq!(f["connected"], http.to_string());
    let down = response_head("200 OK", BIG_LEN).len() + BIG_LEN;
    assert_eq!(f["down"], down.to_string(), "down= counts every byte sent");
}

#[test]
fn big_download_with_local_resolution() {
    download_big("--socks5", "127.0.0.1", |port| format!("127.0.0.1:{port}"));
}

#[test]
fn big_download_with_proxy_resolution() {
    // --socks5-hostname sends the name: socks5d resolves "localhost".
    download_big("--socks5-hostname", "localhost", |port| {
        format!("localhost:{port}")
    });
}

#[test]
fn ipv6_target() {
    let http = http_server("[::1]:0");
    let mut d = start_with_user();
    let url = format!("http://[::1]:{}/small", http.port());
    let out = curl(&[
        "--socks5",
        &d.addr.to_string(),
        "-U",
        &credentials(),
        "--fail",
        &url,
    ]);
    assert!(
        out.status.success(),
        "curl {url}: {:?}\n{}",
        out.status,
        stderr_of(&out)
    );
    assert_eq!(out.stdout, SMALL_BODY);
    assert_eq!(d.terminate().code(), Some(0), "stderr:\n{}", d.stderr());
    let log = d.stdout();
    let f = access_fields(record_for(&log, &http.to_string()));
    assert_eq!(f["reply"], "00");
    assert_eq!(f["connected"], http.to_string());
}

#[test]
fn wrong_password_is_rejected() {
    let http = http_server("127.0.0.1:0");
    let mut d = start_with_user();
    let url = format!("http://127.0.0.1:{}/small", http.port());
    let out = curl(&[
        "--socks5",
        &d.addr.to_string(),
        "-U",
        &format!("{USER}:not-the-password"),
        &url,
    ]);
    // 97: CURLE_PROXY, the SOCKS handshake failed.
    assert_eq!(out.status.code(), Some(97), "{}", stderr_of(&out));
    assert!(out.stdout.is_empty(), "a body came through");
    assert_eq!(d.terminate().code(), Some(0), "stderr:\n{}", d.stderr());
    let log = d.stdout();
    let lines = access_lines(&log);
    assert_eq!(lines.len(), 1, "{log}");
    let f = access_fields(lines[0]);
    assert_eq!(f["reply"], "auth-failed", "{}", lines[0]);
    assert_eq!(f["user"], USER, "{}", lines[0]);
    assert!(!log.contains("not-the-password"), "{log}");
}

#[test]
fn no_authentication_is_refused_when_users_exist() {
    let http = http_server("127.0.0.1:0");
    let mut d = start_with_user();
    let url = format!("http://127.0.0.1:{}/small", http.port());
    let out = curl(&["--socks5", &d.addr.to_string(), &url]);
    assert!(
        !out.status.success(),
        "curl without -U got through: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "a body came through");
    assert_eq!(d.terminate().code(), Some(0), "stderr:\n{}", d.stderr());
    let log = d.stdout();
    let lines = access_lines(&log);
    assert_eq!(lines.len(), 1, "{log}");
    assert_eq!(
        access_fields(lines[0])["reply"],
        "no-method",
        "{}",
        lines[0]
    );
}

#[test]
fn refused_target_port_gives_reply_5() {
    let port = closed_port();
    let mut d = start_with_user();
    let url = format!("http://127.0.0.1:{port}/small");
    let out = curl(&["--socks5", &d.addr.to_string(), "-U", &credentials(), &url]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(97), "{err}");
    // RFC 1928: X'05' Connection refused.
    assert!(err.contains("(5)"), "curl's message lacks '(5)': {err}");
    assert_eq!(d.terminate().code(), Some(0), "stderr:\n{}", d.stderr());
    let log = d.stdout();
    let f = access_fields(record_for(&log, &format!("127.0.0.1:{port}")));
    assert_eq!(f["reply"], "05");
    assert_eq!(f["user"], USER);
}

#[test]
fn passwords_never_reach_the_logs() {
    const SECRET: &str = "Zq8-only-in-argv-7f3a";
    const WRONG: &str = "Wx5-wrong-guess-c91e";
    let http = http_server("127.0.0.1:0");
    let user = format!("{USER}:{SECRET}");
    let mut d = Daemon::start_with_env(
        &["-l", "127.0.0.1", "-p", "0", "-u", &user],
        &[("RUST_LOG", "debug")],
    );
    let proxy = d.addr.to_string();
    let small = format!("http://127.0.0.1:{}/small", http.port());
    let refused = format!("http://127.0.0.1:{}/small", closed_port());

    let ok = curl(&["--socks5", &proxy, "-U", &user, "--fail", &small]);
    assert!(ok.status.success(), "{}", stderr_of(&ok));
    let ok = curl(&["--socks5-hostname", &proxy, "-U", &user, "--fail", &small]);
    assert!(ok.status.success(), "{}", stderr_of(&ok));
    let bad = curl(&["--socks5", &proxy, "-U", &format!("{USER}:{WRONG}"), &small]);
    assert_eq!(bad.status.code(), Some(97), "{}", stderr_of(&bad));
    let bad = curl(&["--socks5", &proxy, "-U", &user, &refused]);
    assert_eq!(bad.status.code(), Some(97), "{}", stderr_of(&bad));

    assert_eq!(d.terminate().code(), Some(0), "stderr:\n{}", d.stderr());
    let (out, err) = (d.stdout(), d.stderr());
    assert_eq!(
        access_lines(&out).len(),
        4,
        "one record per request:\n{out}"
    );
    for secret in [SECRET, WRONG] {
        assert!(!out.contains(secret), "stdout holds {secret}:\n{out}");
        assert!(!err.contains(secret), "stderr holds {secret}:\n{err}");
    }
}
