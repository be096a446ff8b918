//! The peers: how each proxy is found, started on 127.0.0.1 and stopped,
//! and the throw-away system user that Dante checks passwords against
//! (the Redis server that socks5d-redis takes its user from is in
//! [`super::redis`]).
//!
//! Every proxy is started fresh for every run (so a memory baseline is a
//! real baseline and no run inherits another's state) and stopped after it:
//! SIGTERM to the process we started and to its descendants (Dante forks),
//! SIGKILL to whatever is left after a few seconds. Only processes this
//! program started are ever signalled, by pid, checked against their start
//! time so that a reused pid is left alone.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::rules::{LIMITED_USER, RulesFile};
use super::spawn::command;
use crate::{ports, procfs};

/// A proxy under test, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// No proxy: the generator connects straight to its target.
    Direct,
    /// This project, user/password.
    Socks5d,
    /// This project judging every request against 1,000 access rules
    /// (999 that do not match, then `allow`).
    Socks5dRules1000,
    /// This project behind a balancer: `--proxy-protocol-from 127.0.0.1/32`,
    /// a PROXY protocol v2 header before each handshake.
    Socks5dProxyProto,
    /// This project with its users kept in Redis (`--users-redis`), the
    /// bench's user added there with `socks5d user add`.
    Socks5dRedis,
    /// microsocks, user/password.
    Microsocks,
    /// Dante's danted, user/password checked against a system user.
    Dante,
    /// Dante's danted with no authentication.
    DanteNoAuth,
}

impl Kind {
    /// Every peer, in report order.
    pub const ALL: [Kind; 8] = [
        Kind::Direct,
        Kind::Socks5d,
        Kind::Socks5dRules1000,
        Kind::Socks5dProxyProto,
        Kind::Socks5dRedis,
        Kind::Microsocks,
        Kind::Dante,
        Kind::DanteNoAuth,
    ];

    /// The name on the command line, in result lines and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Socks5d => "socks5d",
            Kind::Socks5dRules1000 => "socks5d-rules1000",
            Kind::Socks5dProxyProto => "socks5d-proxyproto",
            Kind::Socks5dRedis => "socks5d-redis",
            Kind::Microsocks => "microsocks",
            Kind::Dante => "dante",
            Kind::DanteNoAuth => "dante-noauth",
        }
    }

    /// The peer called `name`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether clients log in with RFC 1929.
    pub fn authenticates(self) -> bool {
        matches!(
            self,
            Kind::Socks5d
                | Kind::Socks5dRules1000
                | Kind::Socks5dProxyProto
                | Kind::Socks5dRedis
                | Kind::Microsocks
                | Kind::Dante
        )
    }

    /// Whether this is socks5d (with whichever rules, wherever its users).
    pub fn is_socks5d(self) -> bool {
        matches!(
            self,
            Kind::Socks5d | Kind::Socks5dRules1000 | Kind::Socks5dProxyProto | Kind::Socks5dRedis
        )
    }
}

/// Finds `name` on PATH or in the sbin folders, which a non-login root
/// shell may lack.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Our effective user id, from the `Uid:` line of /proc/self/status (real,
/// effective, saved, file system).
pub fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The programs the comparison uses, found once.
#[derive(Clone, Debug)]
pub struct Tools {
    /// The socks5d binary (release build).
    pub socks5d: PathBuf,
    /// microsocks, if installed.
    pub microsocks: Option<PathBuf>,
    /// danted, if installed.
    pub danted: Option<PathBuf>,
    /// redis-server, if installed (for socks5d-redis).
    pub redis_server: Option<PathBuf>,
    /// taskset, for the pinned runs.
    pub taskset: Option<PathBuf>,
    /// Whether we run as root (Dante needs it: system users, privileges).
    pub root: bool,
}

impl Tools {
    /// Looks everything up.
    pub fn find(socks5d: PathBuf) -> Tools {
        Tools {
            socks5d,
            microsocks: find_program("microsocks"),
            danted: find_program("danted"),
            redis_server: find_program("redis-server"),
            taskset: find_program("taskset"),
            root: effective_uid() == Some(0),
        }
    }

    /// Why `kind` cannot be benched here, if it cannot.
    pub fn missing(&self, kind: Kind) -> Option<String> {
        match kind {
            Kind::Direct => None,
            k if k.is_socks5d() && !self.socks5d.is_file() => Some(format!(
                "{} not found (make bench builds it)",
                self.socks5d.display()
            )),
            Kind::Socks5dRedis if self.redis_server.is_none() => {
                Some("redis-server not installed (apt-get install redis-server)".into())
            }
            Kind::Socks5d
            | Kind::Socks5dRules1000
            | Kind::Socks5dProxyProto
            | Kind::Socks5dRedis => None,
            Kind::Microsocks if self.microsocks.is_none() => {
                Some("not installed (apt-get install microsocks)".into())
            }
            Kind::Microsocks => None,
            Kind::Dante | Kind::DanteNoAuth if self.danted.is_none() => {
                Some("not installed (apt-get install dante-server)".into())
            }
            Kind::Dante | Kind::DanteNoAuth if !self.root => {
                Some("needs root (a throw-away system user, privileged password checks)".into())
            }
            Kind::Dante | Kind::DanteNoAuth => None,
        }
    }
}

/// The credentials every authenticating peer is started with.
#[derive(Clone, Debug)]
pub struct Creds {
    /// User name.
    pub user: String,
    /// Password.
    pub pass: String,
    /// Where socks5d-redis finds the user: the URL of the comparison's
    /// Redis server once it runs and the user is added there.
    pub users_redis: Option<String>,
}

/// `len` random letters and digits from /dev/urandom.
pub fn random_alnum(len: usize) -> Result<String, String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut b = vec![0u8; len];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect())
}

/// A system user made for Dante's password checks and deleted on drop.
#[derive(Debug)]
pub struct SystemUser {
    name: String,
}

/// Runs `cmd` to its end with `stdin` (if any) on its standard input;
/// an error names the command, its exit status and its standard error.
pub fn run_quiet(cmd: &mut Command, stdin: Option<&str>) -> Result<(), String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("{what}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl SystemUser {
    /// `useradd` (no home, no login shell) and `chpasswd`.
    pub fn create(creds: &Creds) -> Result<SystemUser, String> {
        run_quiet(
            command(find_program("useradd").ok_or("useradd not found")?).args([
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "socks5d make bench, throw-away",
                &creds.user,
            ]),
            None,
        )?;
        let user = SystemUser {
            name: creds.user.clone(),
        };
        run_quiet(
            &mut command(find_program("chpasswd").ok_or("chpasswd not found")?),
            Some(&format!("{}:{}\n", creds.user, creds.pass)),
        )?;
        Ok(user)
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        let deleted = find_program("userdel")
            .ok_or_else(|| "userdel not found".to_owned())
            .and_then(|p| run_quiet(command(p).arg(&self.name), None));
        if let Err(e) = deleted {
            eprintln!(
                "bench: could not delete the throw-away user '{}': {e}",
                self.name
            );
        }
    }
}

/// Dante's configuration: loopback in and out, CONNECT and UDP ASSOCIATE
/// (with the replies, `udpreply`) to and from loopback only.
pub fn dante_config(port: u16, auth: bool, log: &Path) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# socks5d make bench: Dante on loopback, started and stopped by loadgen."
    );
    let _ = writeln!(c, "logoutput: {}", log.display());
    let _ = writeln!(c, "internal: 127.0.0.1 port = {port}");
    let _ = writeln!(c, "external: 127.0.0.1");
    let _ = writeln!(c, "clientmethod: none");
    let _ = writeln!(c, "socksmethod: {}", if auth { "username" } else { "none" });
    let _ = writeln!(c, "user.privileged: root");
    let _ = writeln!(c, "user.unprivileged: nobody");
    let _ = writeln!(c, "client pass {{\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n}}");
    let _ = writeln!(
        c,
        "socks pass {{\n  from: 127.0.0.0/8 to: 127.0.0.0/8\n  command: connect udpassociate udpreply\n}}"
    );
    c
}

/// A proxy we started.
#[derive(Debug)]
pub struct Running {
    child: Child,
    /// The loopback port it serves.
    pub port: u16,
}

impl Running {
    /// A process we just started, serving loopback `port`.
    pub fn new(child: Child, port: u16) -> Running {
        Running { child, port }
    }

    /// Whether it has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The pid of the process we started (Dante's mother process).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it and every process it forked; waits for them all.
    pub fn stop(mut self) {
        let procs = procfs::tree(self.child.id());
        let signal_all = |sig: Signal| {
            for s in &procs {
                // Only if the pid still names the process we saw.
                if procfs::stat(s.pid).is_some_and(|now| now.start == s.start && now.state != 'Z') {
                    let _ = kill(Pid::from_raw(s.pid as i32), sig);
                }
            }
        };
        let all_gone = |child: &mut Child| {
            matches!(child.try_wait(), Ok(Some(_)))
                && procs.iter().skip(1).all(|s| {
                    procfs::stat(s.pid).is_none_or(|now| now.start != s.start || now.state == 'Z')
                })
        };
        signal_all(Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_gone(&mut self.child) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if !all_gone(&mut self.child) {
            signal_all(Signal::SIGKILL);
            let _ = self.child.wait();
            let deadline = Instant::now() + Duration::from_secs(2);
            while !all_gone(&mut self.child) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// socks5d's arguments after its path: on 127.0.0.1:`port`, the rules of
/// `rules_path` (which holds `rules`), no access log, one worker when
/// `pinned`. Every socks5d peer gets the same but for what it is there to
/// measure: socks5d-proxyproto takes a balancer's headers first, and
/// socks5d-redis takes its users from Redis (`--users-redis`, where the
/// bench's user was added) in place of `-u`. Only socks5d has the rate
/// rules, and with them the limited user besides the bench's.
fn socks5d_args(
    kind: Kind,
    port: u16,
    creds: &Creds,
    rules: RulesFile,
    rules_path: &Path,
    pinned: bool,
) -> Result<Vec<String>, String> {
    let mut argv: Vec<String> = Vec::new();
    if kind == Kind::Socks5dProxyProto {
        argv.extend(["--proxy-protocol-from", "127.0.0.1/32"].map(String::from));
    }
    argv.extend(["-l", "127.0.0.1", "-p"].map(String::from));
    argv.push(port.to_string());
    if kind == Kind::Socks5dRedis {
        let url = creds
            .users_redis
            .as_ref()
            .ok_or("socks5d-redis: no Redis server holds the user")?;
        argv.extend(["--users-redis".into(), url.clone()]);
    } else {
        argv.push("-u".into());
        argv.push(format!("{}:{}", creds.user, creds.pass));
        if rules == RulesFile::Rate {
            argv.push("-u".into());
            argv.push(format!("{LIMITED_USER}:{}", creds.pass));
        }
    }
    argv.extend(["--access-log", "off"].map(String::from));
    argv.push("--rules".into());
    argv.push(rules_path.display().to_string());
    if pinned {
        argv.extend(["--workers", "1"].map(String::from));
    }
    Ok(argv)
}

/// Starts `kind` on a fresh loopback port; `pinned` runs it on CPU 0 only
/// (socks5d also with one worker). socks5d gets `rules` and, with the rate
/// rules, the limited user besides the bench's (same password). Waits
/// until it accepts connections.
pub fn start(
    kind: Kind,
    tools: &Tools,
    creds: &Creds,
    rules: RulesFile,
    pinned: bool,
    tmp: &Path,
    log: &File,
) -> Result<Running, String> {
    let port = ports::unused().map_err(|e| format!("no free port: {e}"))?;
    let mut argv: Vec<String> = Vec::new();
    if pinned {
        let taskset = tools.taskset.as_ref().ok_or("taskset not found")?;
        argv.extend([taskset.display().to_string(), "-c".into(), "0".into()]);
    }
    let program = |p: &Option<PathBuf>| -> Result<String, String> {
        p.as_ref()
            .map(|p| p.display().to_string())
            .ok_or_else(|| format!("{} is not installed", kind.name()))
    };
    match kind {
        Kind::Direct => return Err("direct has no proxy to start".into()),
        Kind::Socks5d | Kind::Socks5dRules1000 | Kind::Socks5dProxyProto | Kind::Socks5dRedis => {
            // The targets are on loopback, which socks5d's default rules deny.
            let path = tmp.join(rules.file_name());
            fs::write(&path, rules.text()).map_err(|e| format!("{}: {e}", path.display()))?;
            argv.push(tools.socks5d.display().to_string());
            argv.extend(socks5d_args(kind, port, creds, rules, &path, pinned)?);
        }
        Kind::Microsocks => {
            argv.push(program(&tools.microsocks)?);
            argv.extend(["-i", "127.0.0.1", "-p"].map(String::from));
            argv.push(port.to_string());
            argv.extend([
                "-u".into(),
                creds.user.clone(),
                "-P".into(),
                creds.pass.clone(),
            ]);
        }
        Kind::Dante | Kind::DanteNoAuth => {
            let conf = tmp.join(format!("danted-{port}.conf"));
            let dlog = tmp.join(format!("danted-{port}.log"));
            fs::write(&conf, dante_config(port, kind == Kind::Dante, &dlog))
                .map_err(|e| format!("{}: {e}", conf.display()))?;
            argv.push(program(&tools.danted)?);
            argv.extend(["-f".into(), conf.display().to_string()]);
            argv.extend([
                "-p".into(),
                tmp.join(format!("danted-{port}.pid")).display().to_string(),
            ]);
        }
    }
    let out = log.try_clone().map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let _ = writeln!(
        &*log,
        "--- {} on 127.0.0.1:{port}: {}",
        kind.name(),
        redact(&argv, creds)
    );
    let child = command(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    let mut running = Running { child, port };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(format!(
                "{} exited at start: {status} (see peers.log)",
                kind.name()
            ));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            running.stop();
            return Err(format!(
                "{} did not listen on {addr} within 10 s",
                kind.name()
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
    if matches!(kind, Kind::Dante | Kind::DanteNoAuth) {
        // The mother accepts before its children are all forked.
        thread::sleep(Duration::from_millis(300));
    }
    Ok(running)
}

/// The command line with the password masked, for the log.
fn redact(argv: &[String], creds: &Creds) -> String {
    argv.join(" ").replace(&creds.pass, "********")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name()), Some(k));
        }
        assert_eq!(Kind::from_name("squid"), None);
        assert!(Kind::Dante.authenticates() && !Kind::DanteNoAuth.authenticates());
    }

    #[test]
    fn dante_config_stays_on_loopback() {
        let c = dante_config(1234, true, Path::new("/tmp/x.log"));
        assert!(c.contains("internal: 127.0.0.1 port = 1234\n"));
        assert!(c.contains("external: 127.0.0.1\n"));
        assert!(c.contains("socksmethod: username\n"));
        assert!(c.contains("to: 127.0.0.0/8\n  command: connect udpassociate udpreply\n"));
        assert!(dante_config(1, false, Path::new("/x")).contains("socksmethod: none\n"));
    }

    #[test]
    fn passwords_are_random_and_masked() {
        let a = random_alnum(16).unwrap();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, random_alnum(16).unwrap());
        let creds = Creds {
            user: "u".into(),
            pass: a.clone(),
            users_redis: None,
        };
        let shown = redact(&["x".into(), format!("u:{a}")], &creds);
        assert!(!shown.contains(&a), "{shown}");
    }

    /// socks5d-redis is started exactly as socks5d is, but for `-u
    /// USER:PASS` in place of `--users-redis URL`; without a Redis holding
    /// the user it is not started at all.
    #[test]
    fn socks5d_redis_differs_from_socks5d_by_where_its_users_are() {
        let mut creds = Creds {
            user: "u".into(),
            pass: "pw".into(),
            users_redis: None,
        };
        let rules = Path::new("/tmp/allow.rules");
        let args = |kind, creds: &Creds, pinned| {
            socks5d_args(kind, 1080, creds, RulesFile::Allow, rules, pinned)
        };
        assert!(args(Kind::Socks5dRedis, &creds, false).is_err());
        creds.users_redis = Some("redis://127.0.0.1:6400/0".into());
        for pinned in [false, true] {
            let plain = args(Kind::Socks5d, &creds, pinned).unwrap();
            let redis = args(Kind::Socks5dRedis, &creds, pinned).unwrap();
            let swapped: Vec<String> = plain
                .join("\n")
                .replace("-u\nu:pw", "--users-redis\nredis://127.0.0.1:6400/0")
                .split('\n')
                .map(String::from)
                .collect();
            assert_eq!(redis, swapped, "{plain:?}");
            assert!(plain.contains(&"u:pw".to_owned()), "{plain:?}");
            assert_eq!(plain.contains(&"--workers".to_owned()), pinned);
        }
    }

    /// A stand-in proxy (`sleep`, which forks nothing and listens nowhere)
    /// is stopped promptly.
    #[test]
    fn stop_ends_the_process() {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let r = Running::new(child, 0);
        let t = Instant::now();
        r.stop();
        assert!(t.elapsed() < Duration::from_secs(4));
        assert!(procfs::stat(pid).is_none_or(|s| s.state == 'Z'));
    }
}
