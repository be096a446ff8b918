//! The Redis server that socks5d-redis takes its users from: Debian's
//! `redis-server`, started once for the whole comparison on a free
//! loopback port, in a folder of its own, saving nothing (`--save ""
//! --appendonly no`); ready once it answers PING (polled with a deadline);
//! the bench's user added with `socks5d user add --users-redis`. Stopped
//! like a proxy (SIGTERM, then SIGKILL) and its folder removed when
//! dropped, whatever ends the comparison.

use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use super::peers::{Creds, Running, run_quiet};
use super::spawn::command;
use crate::ports;

/// How long redis-server may take to answer its first PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A redis-server we started, and its folder.
#[derive(Debug)]
pub struct Redis {
    running: Option<Running>,
    dir: PathBuf,
}

impl Redis {
    /// Starts `program` (redis-server) in `dir`, which it creates, and
    /// waits until it answers PING; its output goes to `redis.log` there.
    pub fn start(program: &Path, dir: PathBuf) -> Result<Redis, String> {
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log_path = dir.join("redis.log");
        let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let port = ports::unused().map_err(|e| format!("no free port: {e}"))?;
        let child = command(program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{}: {e}", program.display()));
        let mut redis = Redis { running: None, dir };
        let mut running = Running::new(child?, port);
        let deadline = Instant::now() + READY_TIMEOUT;
        while !answers_ping(port) {
            let why = match running.exited() {
                Some(status) => format!("exited at start ({status})"),
                None if Instant::now() > deadline => {
                    format!("did not answer PING within {} s", READY_TIMEOUT.as_secs())
                }
                None => {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            running.stop();
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            return Err(format!(
                "redis-server on 127.0.0.1:{port} {why}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ));
        }
        redis.running = Some(running);
        Ok(redis)
    }

    /// `redis://127.0.0.1:PORT/0`, for `--users-redis`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port())
    }

    /// The loopback port it serves.
    pub fn port(&self) -> u16 {
        self.running.as_ref().map_or(0, |r| r.port)
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.running.as_ref().map_or(0, Running::pid)
    }

    /// Adds the bench's user with `socks5d user add NAME --users-redis URL
    /// --password-stdin`, at socks5d's default Argon2id cost: the cost that
    /// `socks5d`, given no cost option, hashes with and spends on refusals.
    pub fn add_user(&self, socks5d: &Path, creds: &Creds) -> Result<(), String> {
        run_quiet(
            command(socks5d)
                .args(["user", "add", &creds.user, "--users-redis", &self.url()])
                .arg("--password-stdin"),
            Some(&format!("{}\n", creds.pass)),
        )
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether a Redis server on loopback `port` answers PING with PONG now.
fn answers_ping(port: u16) -> bool {
    let addr = (Ipv4Addr::LOCALHOST, port).into();
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    // Loading, a server answers -LOADING: not ready yet, as any error.
    while !got.ends_with(b"\r\n") {
        match s.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
    got == b"+PONG\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::peers::find_program;
    use crate::procfs;

    /// A server of its own answers PING on loopback; dropped, it is gone
    /// and so is its folder.
    #[test]
    fn starts_answers_and_goes_with_its_folder() {
        let program = find_program("redis-server")
            .expect("redis-server (apt-get install redis-server; make test installs it)");
        let dir = std::env::temp_dir().join(format!("loadgen-redis-test-{}", std::process::id()));
        let redis = Redis::start(&program, dir.clone()).unwrap();
        let (port, pid) = (redis.port(), redis.pid());
        assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/0"));
        assert!(answers_ping(port));
        assert!(dir.join("redis.log").is_file());
        drop(redis);
        assert!(procfs::stat(pid).is_none_or(|s| s.state == 'Z'));
        assert!(!answers_ping(port));
        assert!(!dir.exists());
    }

    /// Nothing listening is no PONG.
    #[test]
    fn no_server_no_pong() {
        let port = ports::unused().unwrap();
        assert!(!answers_ping(port));
    }
}
