//! A Redis server of the test's own (Debian's `redis-server`): on a free
//! loopback port, in a folder of its own, saving nothing by itself
//! (`--save "" --appendonly no`). Ready once it answers PING (polled with a
//! deadline, never a sleep); stopped with `SHUTDOWN SAVE`, so that a
//! restart on the same port (and folder) finds the same data; edited while
//! stopped through a second server on another port that loads the same
//! dump, so that a test can change what the first will hold once it is
//! back, with nobody else able to see the change meanwhile. Killed and its
//! folder removed when dropped. `redis-cli` runs commands on it.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::child::wait_output;
use super::daemon::{BIN, temp_path};

/// How long redis-server may take to answer its first PING.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a redis-cli run, or a shutdown, may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(15);

/// A user's value in the store as socks5d writes it, `ROLE HASH`, the
/// hash made at the tests' cheap cost (64 KiB, one pass).
pub fn user_value(role: &str, password: &str) -> String {
    let cheap = socks5d::users::file::Cost {
        m_kib: 64,
        t: 1,
        p: 1,
    };
    let hash = socks5d::users::file::hash_password_with(password.as_bytes(), cheap);
    format!("{role} {}", hash.as_str())
}

/// A running (or stopped) redis-server.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    password: Option<String>,
    child: Option<Child>,
}

/// A port free on 127.0.0.1 now (the kernel's pick; the server binds it
/// right after).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// One command in RESP, as every Redis takes it.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

impl RedisServer {
    /// A new server without a password.
    pub fn start() -> RedisServer {
        RedisServer::launch(None)
    }

    /// A new server that wants `password` (`--requirepass`).
    pub fn start_with_password(password: &str) -> RedisServer {
        RedisServer::launch(Some(password.to_owned()))
    }

    fn launch(password: Option<String>) -> RedisServer {
        let dir = temp_path("redis");
        fs::create_dir_all(&dir).expect("create the folder of redis-server");
        let mut r = RedisServer {
            port: free_port(),
            dir,
            password,
            child: None,
        };
        r.restart();
        r
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://[:PASSWORD@]127.0.0.1:PORT/0`, for `--users-redis`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// Starts redis-server on `port` in the folder (its dump loaded, if
    /// any) and waits until it answers PING.
    fn spawn_on(&self, port: u16) -> Child {
        let log = fs::File::create(self.dir.join(format!("redis-{port}.log")))
            .expect("create the log of redis-server");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--dbfilename",
                "dump.rdb",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null());
        if let Some(pw) = &self.password {
            cmd.args(["--requirepass", pw]);
        }
        let mut child = cmd
            .spawn()
            .expect("run redis-server (apt-get install redis-server; make test installs it)");
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.answers_ping(port) {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "redis-server on port {port} exited ({st}): {}",
                    self.log(port)
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "redis-server on port {port} did not answer PING within {READY_TIMEOUT:?}: {}",
                    self.log(port)
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
        child
    }

    fn log(&self, port: u16) -> String {
        fs::read_to_string(self.dir.join(format!("redis-{port}.log"))).unwrap_or_default()
    }

    /// Whether a server on `port` answers PING (after AUTH, with a
    /// password) with PONG now.
    fn answers_ping(&self, port: u16) -> bool {
        let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut req = Vec::new();
        if let Some(pw) = &self.password {
            req.extend(resp(&["AUTH", pw]));
        }
        req.extend(resp(&["PING"]));
        if s.write_all(&req).is_err() {
            return false;
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.windows(5).any(|w| w == b"+PONG") {
            match s.read(&mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                // Loading its dump, a server answers -LOADING: not yet.
                _ => return false,
            }
            if got.starts_with(b"-") && !got.starts_with(b"-LOADING") {
                return false;
            }
        }
        true
    }

    /// Starts the server again on its port, with what it last saved.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server already runs");
        self.child = Some(self.spawn_on(self.port));
    }

    /// Saves and stops the server (`SHUTDOWN SAVE`), and waits until the
    /// process is gone.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("redis-server runs");
        shutdown(self.cli_on(self.port), &mut child);
    }

    /// Runs each of `commands` with redis-cli on a second server that
    /// loads this one's dump, then saves it: while this one is stopped,
    /// the data it will find when restarted changes, seen by nobody else.
    pub fn edit_stopped(&self, commands: &[&[&str]]) {
        assert!(self.child.is_none(), "stop redis-server first");
        let port = free_port();
        let mut child = self.spawn_on(port);
        for c in commands {
            run_cli(self.cli_on(port).args(*c));
        }
        shutdown(self.cli_on(port), &mut child);
    }

    /// `socks5d user ARGS --users-redis URL --password-stdin` with
    /// `password` on its standard input (cheap hashes): its exit success
    /// and standard error.
    pub fn user_command(&self, args: &[&str], password: &str) -> (bool, String) {
        let mut child = Command::new(BIN)
            .arg("user")
            .args(args)
            .args(["--users-redis", &self.url(), "--password-stdin"])
            .args(["--hash-memory-kib", "64", "--hash-passes", "1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run socks5d user");
        let mut stdin = child.stdin.take().expect("stdin was piped");
        writeln!(stdin, "{password}").expect("write the password");
        drop(stdin);
        let out = wait_output(&mut child, "socks5d user", Duration::from_secs(30));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Adds `name` to the store with `socks5d user add` (the first
    /// administrator of an empty store comes this way).
    pub fn seed(&self, name: &str, password: &str, admin: bool) {
        let mut args = vec!["add", name];
        if admin {
            args.push("--admin");
        }
        let (ok, err) = self.user_command(&args, password);
        assert!(ok, "socks5d user add {name}: {err}");
    }

    /// Sends `commands` at once with `redis-cli --pipe` (each a command
    /// and its arguments), as a script changing many users would; fails
    /// the test if any is refused.
    pub fn pipe(&self, commands: &[Vec<String>]) {
        let mut input = Vec::new();
        for c in commands {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            input.extend_from_slice(&resp(&args));
        }
        let mut child = self
            .cli_on(self.port)
            .arg("--pipe")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run redis-cli --pipe");
        let mut stdin = child.stdin.take().expect("stdin was piped");
        stdin.write_all(&input).expect("write the commands");
        drop(stdin);
        let out = wait_output(&mut child, "redis-cli --pipe", CLI_TIMEOUT);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("errors: 0,"),
            "redis-cli --pipe: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// redis-cli against `port`, the password given if any.
    fn cli_on(&self, port: u16) -> Command {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
        if let Some(pw) = &self.password {
            cmd.args(["-a", pw, "--no-auth-warning"]);
        }
        cmd
    }

    /// `redis-cli ARGS` against the server: what it printed, without the
    /// last line end. Fails the test if redis-cli fails.
    pub fn cli(&self, args: &[&str]) -> String {
        run_cli(self.cli_on(self.port).args(args))
    }
}

/// Runs a redis-cli command; its standard output without the last line
/// end. An error reply fails the test.
fn run_cli(cmd: &mut Command) -> String {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run redis-cli (apt-get install redis-tools; make test installs it)");
    let out = wait_output(&mut child, "redis-cli", CLI_TIMEOUT);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !text.starts_with("ERR") && !text.starts_with("(error)"),
        "redis-cli {cmd:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.strip_suffix('\n').unwrap_or(&text).to_owned()
}

/// `SHUTDOWN SAVE` through `cli`, then waits for `child` to be gone.
fn shutdown(mut cli: Command, child: &mut Child) {
    let mut c = cli
        .args(["SHUTDOWN", "SAVE"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run redis-cli");
    // redis-cli reports the connection the shutdown closes as an error:
    // whether the server went is what counts.
    let _ = wait_output(&mut c, "redis-cli SHUTDOWN", CLI_TIMEOUT);
    let deadline = Instant::now() + CLI_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server did not stop on SHUTDOWN SAVE");
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
