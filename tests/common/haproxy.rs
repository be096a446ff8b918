//! HAProxy (Debian's `haproxy`) in TCP mode in front of socks5d instances,
//! sending the PROXY protocol: the balancer of a fleet, started for a test
//! on loopback with a configuration of its own.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::temp_path;

/// What HAProxy sends its servers in front of each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `send-proxy`: version 1, text.
    V1,
    /// `send-proxy-v2`: version 2, binary.
    V2,
}

/// A running HAProxy, killed and its folder removed when dropped.
pub struct Haproxy {
    child: Child,
    dir: PathBuf,
    /// Where clients connect (its frontend).
    pub addr: SocketAddr,
}

impl Haproxy {
    /// The configuration of a frontend on `listen` balancing round robin
    /// over `servers`, each sent `header` and health-checked with it (a
    /// LOCAL header, `check-send-proxy`), with its admin socket at `stats`.
    pub fn config(
        listen: SocketAddr,
        servers: &[SocketAddr],
        header: ProxyHeader,
        stats: &str,
    ) -> String {
        let send = match header {
            ProxyHeader::V1 => "send-proxy",
            ProxyHeader::V2 => "send-proxy-v2",
        };
        let mut cfg = format!(
            "global\n\
             \x20   maxconn 1000\n\
             \x20   stats socket {stats} level admin\n\
             \n\
             defaults\n\
             \x20   mode tcp\n\
             \x20   timeout connect 5s\n\
             \x20   timeout client 60s\n\
             \x20   timeout server 60s\n\
             \n\
             frontend socks\n\
             \x20   bind {listen}\n\
             \x20   default_backend socks5d\n\
             \n\
             backend socks5d\n\
             \x20   balance roundrobin\n"
        );
        for (i, s) in servers.iter().enumerate() {
            cfg.push_str(&format!(
                "    server s{i} {s} {send} check check-send-proxy inter 1s\n"
            ));
        }
        cfg
    }

    /// Starts HAProxy in front of `servers` and waits until it listens and
    /// every server passed its health check.
    pub fn start(servers: &[SocketAddr], header: ProxyHeader) -> Haproxy {
        let dir = temp_path("haproxy");
        fs::create_dir_all(&dir).unwrap();
        // A free loopback port for the frontend.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let stats = dir.join("admin.sock");
        let cfg = dir.join("haproxy.cfg");
        fs::write(
            &cfg,
            Self::config(addr, servers, header, &stats.display().to_string()),
        )
        .unwrap();
        let log = fs::File::create(dir.join("haproxy.log")).unwrap();
        // -db: in the foreground, not a daemon.
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run haproxy (Debian's haproxy; make test installs it)");
        let mut h = Haproxy { child, dir, addr };
        h.wait_servers_up(servers.len(), Duration::from_secs(30));
        h
    }

    /// What HAProxy logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }

    /// One command on the admin socket, and its answer.
    pub fn admin(&self, command: &str) -> std::io::Result<String> {
        let mut s = UnixStream::connect(self.dir.join("admin.sock"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("{command}\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// The servers' names and states ("UP", "DOWN", ...), from `show stat`.
    pub fn server_states(&self) -> std::io::Result<Vec<(String, String)>> {
        let csv = self.admin("show stat")?;
        // Columns: pxname, svname, ..., status (the 18th).
        Ok(csv
            .lines()
            .filter(|l| l.starts_with("socks5d,"))
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                let (name, status) = (*f.get(1)?, *f.get(17)?);
                (name != "BACKEND").then(|| (name.to_owned(), status.to_owned()))
            })
            .collect())
    }

    /// Waits until `n` servers are UP, failing the test after `within`.
    pub fn wait_servers_up(&mut self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("haproxy exited ({st}):\n{}", self.log());
            }
            let states = self.server_states().unwrap_or_default();
            if states.iter().filter(|(_, s)| s == "UP").count() == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy's servers not all up in {within:?}: {states:?}\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
