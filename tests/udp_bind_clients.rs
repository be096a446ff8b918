//! Third-party SOCKS5 clients through the real binary, for UDP ASSOCIATE
//! and BIND, each with a user name and password:
//! - PySocks (Debian's python3-socks) sends datagrams to a UDP echo
//!   (tests/pysocks_udp_client.py), with its request's DST.ADDR as an
//!   address and, as PySocks does by default, as a name;
//! - Dante's `socksify` around `drill` (ldnsutils) asks a small DNS
//!   responder of the test over UDP;
//! - Dante's `socksify` around curl's active FTP (`-P -`): curl's bind(2),
//!   listen(2) and accept(2) become a BIND, and pyftpdlib's data
//!   connection comes in through socks5d.
//!
//! `dig` is not among them: it sends its queries with sendmmsg(2), which
//! socksify's library does not intercept, so they would reach the relay
//! without the UDP request header. socksify adds direct routes for the
//! host's own networks, loopback included; SOCKS_AUTOADD_LANROUTES=no
//! leaves them out, so that loopback targets go through socks5d.
//!
//! Each test also reads socks5d's side (its access log, METRICS) to show
//! that the traffic went through it and not around it.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{
    BRIEF_TIMEOUT, Daemon, M_BINDS, M_UDP_DATAGRAMS, UdpEcho, UnixMgmt, access_fields, temp_path,
};

const USER: &str = "tp-user";
const PASS: &str = "tp-pass-W7";
/// Debian's python3, whose dist-packages hold python3-socks and
/// python3-pyftpdlib (another python3 first on PATH may not have them).
const PYTHON: &str = "/usr/bin/python3";
const SOCKSIFY: &str = "/usr/bin/socksify";
const DRILL: &str = "/usr/bin/drill";
const CURL: &str = "/usr/bin/curl";
/// How long socks5d may take to publish a counter or log a line.
const SETTLE: Duration = Duration::from_secs(10);
/// How long one client run may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Fails the test, saying what to install, when `path` is missing.
fn need(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} not found: apt-get install {package} (make test installs it)"
    );
}

/// socks5d with one user and a management socket.
fn start(mgmt: &UnixMgmt) -> Daemon {
    mgmt.start_as(USER, PASS, &[])
}

/// Runs `cmd` (its environment scrubbed of proxy variables first) to its
/// end; fails the test if it outlives [`CLIENT_TIMEOUT`] or exits non-zero.
fn run_ok(cmd: &mut Command, what: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let out: Output = common::wait_output(&mut child, what, CLIENT_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A Dante client configuration (socks.conf) that sends every TCP and UDP
/// request through socks5d at `proxy`, logging in as the user SOCKS_USERNAME
/// and SOCKS_PASSWORD name.
fn socks_conf(proxy: SocketAddr, dir: &Path) -> PathBuf {
    let path = dir.join("socks.conf");
    let text = format!(
        "route {{\n  from: 0.0.0.0/0 to: 0.0.0.0/0 via: {} port = {}\n  \
         proxyprotocol: socks_v5\n  command: connect bind udpassociate\n  \
         method: username\n}}\n",
        proxy.ip(),
        proxy.port()
    );
    fs::write(&path, text).expect("write socks.conf");
    path
}

/// `socksify PROGRAM` with the configuration at `conf`, the user's
/// credentials, and no direct routes for the host's networks.
fn socksify(conf: &Path, program: &str) -> Command {
    let mut cmd = Command::new(SOCKSIFY);
    common::scrub_env(&mut cmd)
        .arg(program)
        .env("SOCKS_CONF", conf)
        .env("SOCKS_AUTOADD_LANROUTES", "no")
        .env("SOCKS_USERNAME", USER)
        .env("SOCKS_PASSWORD", PASS)
        .env_remove("SOCKS_SERVER")
        .env_remove("SOCKS5_SERVER");
    cmd
}

/// A folder of the test's own, removed when dropped.
struct Folder(PathBuf);

impl Folder {
    fn new(tag: &str) -> Folder {
        let dir = temp_path(tag);
        fs::create_dir_all(&dir).expect("create the test folder");
        Folder(dir)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- PySocks

/// tests/pysocks_udp_client.py: three datagrams to a UDP echo and back,
/// REMOTE_DNS as the script takes it; then socks5d's access-log line.
fn pysocks_round_trips(remote_dns: &str) {
    need(PYTHON, "python3");
    need("/usr/lib/python3/dist-packages/socks.py", "python3-socks");
    let mgmt = UnixMgmt::new("pysocks");
    let d = start(&mgmt);
    let echo = UdpEcho::start("127.0.0.1:0".parse().expect("a valid literal"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pysocks_udp_client.py");
    let mut cmd = Command::new(PYTHON);
    common::scrub_env(&mut cmd)
        .arg(&script)
        .arg(d.addr.port().to_string())
        .arg(echo.addr.port().to_string())
        .arg("3")
        .arg(remote_dns)
        .env("SOCKS_TEST_USER", USER)
        .env("SOCKS_TEST_PASSWORD", PASS);
    let out = run_ok(&mut cmd, "pysocks_udp_client.py");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(echo.payloads().len(), 3, "datagrams at the target");

    let f = access_fields(&d.access_line("cmd=udp", SETTLE));
    for (k, v) in [
        ("user", USER),
        ("datagrams_up", "3"),
        ("datagrams_down", "3"),
    ] {
        assert_eq!(f.get(k).map(String::as_str), Some(v), "{k} in {f:?}");
    }
}

/// PySocks with `rdns=False`: UDP ASSOCIATE for 0.0.0.0 and its port.
#[test]
fn pysocks_udp_with_a_password() {
    pysocks_round_trips("no");
}

/// PySocks' default `rdns=True`: its UDP ASSOCIATE names DST.ADDR "0" (a
/// name, ATYP X'03'), and its datagrams still go through.
#[test]
fn pysocks_udp_with_its_default_remote_dns() {
    pysocks_round_trips("yes");
}

// ------------------------------------------------------- socksify + drill

/// The address a query for any name is answered with (no traffic goes to
/// it: it is only the answer's data).
const ANSWER: [u8; 4] = [127, 0, 1, 7];

/// A DNS answer to the query `q`: the question echoed, one A record
/// (ANSWER, TTL 60); `None` for anything that is not a query.
fn dns_answer(q: &[u8]) -> Option<Vec<u8>> {
    let mut end = 12;
    while *q.get(end)? != 0 {
        end += 1 + usize::from(q[end]);
    }
    let question = q.get(12..end + 5)?;
    let mut a = q[..2].to_vec();
    // QR, RD and RA set, NOERROR; one question, one answer.
    a.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    a.extend_from_slice(question);
    // A pointer to the question's name, TYPE A, CLASS IN, TTL, RDLENGTH.
    a.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    a.extend_from_slice(&ANSWER);
    Some(a)
}

/// A DNS responder on 127.0.0.1 that answers every query with ANSWER and
/// reports each query's sender; runs until the test ends.
fn dns_responder() -> (SocketAddr, mpsc::Receiver<SocketAddr>) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind the DNS responder");
    let addr = sock.local_addr().expect("local address");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if let Some(a) = dns_answer(&buf[..n]) {
                let _ = sock.send_to(&a, from);
                let _ = tx.send(from);
            }
        }
    });
    (addr, rx)
}

/// `socksify drill`: one query over UDP through socks5d, answered; the
/// responder saw it come from socks5d's relay, and socks5d logged the
/// association with one datagram each way.
#[test]
fn socksify_drill_queries_dns_through_udp_associate() {
    need(SOCKSIFY, "dante-client");
    need(DRILL, "ldnsutils");
    let mgmt = UnixMgmt::new("drill");
    let d = start(&mgmt);
    let dir = Folder::new("drill");
    let conf = socks_conf(d.addr, &dir.0);
    let (dns, queries) = dns_responder();
    let mut cmd = socksify(&conf, DRILL);
    cmd.args([
        "-p",
        &dns.port().to_string(),
        "through-socks5d.test",
        "@127.0.0.1",
        "A",
    ]);
    let out = run_ok(&mut cmd, "socksify drill");
    assert!(
        out.lines()
            .any(|l| l.starts_with("through-socks5d.test.") && l.ends_with("\t127.0.1.7")),
        "drill's answer:\n{out}"
    );
    let from = queries
        .recv_timeout(SETTLE)
        .expect("the query at the responder");

    let f = access_fields(&d.access_line("cmd=udp", SETTLE));
    for (k, v) in [
        ("user", USER),
        ("datagrams_up", "1"),
        ("datagrams_down", "1"),
    ] {
        assert_eq!(f.get(k).map(String::as_str), Some(v), "{k} in {f:?}");
    }
    let client = f.get("client").expect("client= in the access-log line");
    assert_ne!(
        &from.to_string(),
        client,
        "the query came from socks5d, not drill"
    );
    mgmt.wait_metrics(SETTLE, |m| m.get(&M_UDP_DATAGRAMS) == Some(&2));
}

// ---------------------------------------------------- socksify + curl -P

/// pyftpdlib serving `dir` read-only to anonymous users on 127.0.0.1; its
/// standard error (its log) is kept. Killed when dropped.
struct FtpServer {
    child: Child,
    addr: SocketAddr,
    log: mpsc::Receiver<String>,
}

impl FtpServer {
    fn start(dir: &Path) -> FtpServer {
        let mut child = Command::new(PYTHON)
            .args(["-m", "pyftpdlib", "-i", "127.0.0.1", "-p", "0", "-d"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {PYTHON} -m pyftpdlib: {e}"));
        let (tx, log) = mpsc::channel();
        let err = child.stderr.take().expect("stderr was piped");
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = FtpServer {
            child,
            addr: "0.0.0.0:0".parse().expect("a valid literal"),
            log,
        };
        // ">>> starting FTP server on 127.0.0.1:PORT, pid=N <<<"
        let line = server.wait_for("starting FTP server on ");
        let addr = line
            .split("starting FTP server on ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|a| a.parse().ok());
        server.addr = addr.unwrap_or_else(|| panic!("no address in pyftpdlib's {line:?}"));
        server
    }

    /// The next log line holding `needle`; fails the test after
    /// BRIEF_TIMEOUT or when the log ends.
    fn wait_for(&self, needle: &str) -> String {
        loop {
            match self.log.recv_timeout(BRIEF_TIMEOUT) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(e) => panic!("pyftpdlib did not log {needle:?}: {e}"),
            }
        }
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `socksify curl -P -`: active FTP, so curl listens for pyftpdlib's data
/// connection; socksify turns that into a BIND, the file comes in over
/// socks5d's accepted connection, and socks5d logs and counts the BIND.
#[test]
fn socksify_curl_active_ftp_through_bind() {
    need(SOCKSIFY, "dante-client");
    need(CURL, "curl");
    need(PYTHON, "python3");
    need(
        "/usr/lib/python3/dist-packages/pyftpdlib",
        "python3-pyftpdlib",
    );
    let mgmt = UnixMgmt::new("ftp");
    let d = start(&mgmt);
    let dir = Folder::new("ftp");
    let body = "a file that came in over BIND\n".repeat(100);
    let root = dir.0.join("root");
    fs::create_dir_all(&root).expect("create the FTP root");
    fs::write(root.join("file.txt"), &body).expect("write the file");
    let ftp = FtpServer::start(&root);
    let conf = socks_conf(d.addr, &dir.0);

    let url = format!("ftp://{}/file.txt", ftp.addr);
    let mut cmd = socksify(&conf, CURL);
    cmd.args([
        "-q",
        "--silent",
        "--show-error",
        "--max-time",
        "30",
        "-P",
        "-",
        &url,
    ]);
    let out = run_ok(&mut cmd, "socksify curl -P -");
    assert_eq!(out, body, "the file curl fetched");
    ftp.wait_for("RETR");

    let f = access_fields(&d.access_line("cmd=bind", SETTLE));
    assert_eq!(f.get("user").map(String::as_str), Some(USER), "{f:?}");
    assert_eq!(f.get("down"), Some(&body.len().to_string()), "{f:?}");
    mgmt.wait_metrics(SETTLE, |m| m.get(&M_BINDS) == Some(&1));
}
