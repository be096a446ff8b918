//! The command line of socks5d, in the style of the classic socks5d(8) page.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::server::{AccessLog, Config, MgmtConfig};
use crate::users::{Role, Secret, UserError, UserTable, file};

/// The usage text printed by `-h`.
pub const USAGE: &str = "\
Usage: socks5d [OPTION]...
A SOCKS version 5 proxy (RFC 1928) with username/password authentication (RFC 1929).

  -h, --help                  print this help and exit
  -v, --version               print the version and exit
  -l, --listen ADDR           SOCKS address; repeatable (default: 0.0.0.0 and ::)
  -p, --port PORT             SOCKS port (default: 1080)
  -L, --mgmt-listen ADDR      management address; repeatable (default: 127.0.0.1 and ::1)
  -P, --mgmt-port PORT        management SCTP port (default: 8080)
  -u, --user USER:PASS        a proxy user; repeatable. The password is everything
                              after the first ':'
      --admin USER:PASS       an administrator (may also use the proxy); repeatable
      --users-file PATH       users file: loaded at start, rewritten on every change
                              made over the management protocol; created if missing
      --max-users N           the most users the table may hold (default: 100000)
      --max-admin-sessions N  the most management sessions logged in at once; a log in
                              past it gets X'03' (default: 64)
      --max-mgmt-unauthenticated N
                              the most management associations not logged in at
                              once; past it the oldest is aborted (default: 32)
      --mgmt-login-grace S    seconds a management association may take to log in
                              before it is aborted (default: 10)
      --max-login-failures N  refused management log ins from one source address
                              within a minute that start a penalty (default: 10)
      --max-auth-failures N   failed SOCKS authentications from one source (an IPv4
                              address or an IPv6 /64) within a minute that start a
                              penalty: its authentications are then refused
                              unchecked (default: 10)
      --auth-penalty S        the first penalty, in seconds; each repeated offence
                              doubles it (default: 30)
      --auth-penalty-max S    the longest penalty, in seconds (default: 600)
      --auth-penalty-exempt CIDR
                              never penalise this network (SOCKS and management);
                              repeatable (default: none)
      --run-as USER           drop root for USER once every socket is bound (the
                              users file's folder must be writable by USER)
      --require-management    exit if the management endpoint cannot be opened
                              (by default a kernel without SCTP only gets a warning)
      --allow-open-proxy      allow running with no user on a non-loopback address
      --max-connections N     the most client connections open at once; beyond it
                              new clients are closed at once (default: no limit)
      --workers N             worker threads (default: the CPUs we may run on)
      --no-pin                do not pin workers to CPUs
      --handshake-timeout S   seconds from accept to the reply to CONNECT (default: 10)
      --connect-timeout S     seconds for each connection attempt to a target (default: 10)
      --connect-attempt-delay S
                              seconds an attempt to one of a name's addresses runs
                              alone before the next address is tried too, as RFC
                              8305 says (default: 0.25; at least 0.01)
      --idle-timeout S        close tunnels idle this long; 0 is never (default: 0)
      --grace S               on SIGINT/SIGTERM, seconds open tunnels may finish (default: 10)
      --access-log DEST       '-' for standard output (default), a file, or 'off'
      --map-host NAME=ADDR[,ADDR]...
                              answer NAME with these addresses, tried in this
                              order, without asking DNS; repeatable
      --buffer-kib N          relay buffer per direction while bytes are in flight,
                              in KiB (default: 32)
      --pool-threads N        threads resolving names, off the workers (default: 4)
      --check-threads N       threads checking passwords against stored Argon2id
                              hashes, each holding the hash's memory cost (19 MiB
                              by default) for good (default: 2)

With no -u, clients need no authentication (method X'00'); socks5d then
refuses to listen on a non-loopback address unless --allow-open-proxy is given.
Diagnostics go to standard error; RUST_LOG (error, warn, info, debug) sets how many.";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Print the usage and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
    /// Run the server.
    Run(Box<Options>),
}

/// Everything the command line sets.
#[derive(Debug)]
pub struct Options {
    /// The server configuration.
    pub config: Config,
    /// Drop root for this user once every socket is bound.
    pub run_as: Option<String>,
}

/// A command line that cannot be used; printed as one line, exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn err<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

fn parse_addr(opt: &str, v: &str) -> Result<IpAddr, UsageError> {
    let bare = v
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v);
    bare.parse()
        .or_else(|_| err(format!("{opt}: '{v}' is not an IPv4 or IPv6 address")))
}

fn parse_port(opt: &str, v: &str) -> Result<u16, UsageError> {
    v.parse()
        .or_else(|_| err(format!("{opt}: '{v}' is not a port number (0 to 65535)")))
}

fn parse_count(opt: &str, v: &str) -> Result<usize, UsageError> {
    match v.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => err(format!("{opt}: '{v}' is not a number from 1 to 1024")),
    }
}

/// Seconds, fractions allowed; `zero_is_none` maps 0 to `None`.
/// The least Connection Attempt Delay (RFC 8305 section 5).
const MIN_ATTEMPT_DELAY: Duration = Duration::from_millis(10);

fn parse_secs(opt: &str, v: &str, zero_is_none: bool) -> Result<Option<Duration>, UsageError> {
    match v.parse::<f64>() {
        Ok(s) if s == 0.0 && zero_is_none => Ok(None),
        Ok(s) if s > 0.0 && s <= 1e9 => Ok(Some(Duration::from_secs_f64(s))),
        _ => err(format!("{opt}: '{v}' is not a positive number of seconds")),
    }
}

fn parse_user(
    table: &mut UserTable,
    plain: &mut Vec<(String, String)>,
    opt: &str,
    v: &str,
    role: Role,
) -> Result<(), UsageError> {
    let Some((name, pass)) = v.split_once(':') else {
        return err(format!("{opt}: expected USER:PASS"));
    };
    match table.add(name.as_bytes(), pass.as_bytes(), role) {
        Ok(()) => {
            plain.push((name.to_owned(), pass.to_owned()));
            Ok(())
        }
        // Never echo the argument: it holds a password.
        Err(UserError::Exists) => err(format!(
            "{opt}: user '{}' given twice",
            name.escape_default()
        )),
        Err(e) => err(format!("{opt}: {e}")),
    }
}

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut cfg = Config::default();
    let mut socks_ips: Vec<IpAddr> = Vec::new();
    let mut port = 1080u16;
    let mut mgmt_addrs: Vec<IpAddr> = Vec::new();
    let mut mgmt_port = 8080u16;
    let mut allow_open = false;
    let mut users = UserTable::new();
    let mut plain: Vec<(String, String)> = Vec::new();
    let mut required = false;
    let mut run_as: Option<String> = None;
    let mut max_unauthenticated = 32usize;
    let mut login_grace = Duration::from_secs(10);
    let mut max_admin_sessions = 64usize;
    let mut max_login_failures = 10u32;

    let mut it = args.into_iter().map(Into::into);
    while let Some(arg) = it.next() {
        // Accept both "--opt value" and "--opt=value".
        let (opt, inline) = match arg.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let takes_value = matches!(
            opt.as_str(),
            "-l" | "--listen"
                | "-p"
                | "--port"
                | "-L"
                | "--mgmt-listen"
                | "-P"
                | "--mgmt-port"
                | "-u"
                | "--user"
                | "--admin"
                | "--users-file"
                | "--max-users"
                | "--max-connections"
                | "--run-as"
                | "--max-mgmt-unauthenticated"
                | "--mgmt-login-grace"
                | "--max-admin-sessions"
                | "--max-login-failures"
                | "--max-auth-failures"
                | "--auth-penalty"
                | "--auth-penalty-max"
                | "--auth-penalty-exempt"
                | "--check-threads"
                | "--workers"
                | "--handshake-timeout"
                | "--connect-timeout"
                | "--connect-attempt-delay"
                | "--idle-timeout"
                | "--grace"
                | "--access-log"
                | "--pool-threads"
                | "--map-host"
                | "--buffer-kib"
        );
        let value = if takes_value {
            match inline.or_else(|| it.next()) {
                Some(v) => v,
                None => return err(format!("{opt}: missing value")),
            }
        } else {
            if inline.is_some() {
                return err(format!("{opt} takes no value"));
            }
            String::new()
        };
        let v = value.as_str();
        match opt.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-v" | "--version" => return Ok(Command::Version),
            "-l" | "--listen" => socks_ips.push(parse_addr(&opt, v)?),
            "-p" | "--port" => port = parse_port(&opt, v)?,
            "-L" | "--mgmt-listen" => mgmt_addrs.push(parse_addr(&opt, v)?),
            "-P" | "--mgmt-port" => mgmt_port = parse_port(&opt, v)?,
            "-u" | "--user" => parse_user(&mut users, &mut plain, &opt, v, Role::Proxy)?,
            "--admin" => parse_user(&mut users, &mut plain, &opt, v, Role::Admin)?,
            "--users-file" => {
                if v.is_empty() {
                    return err(format!("{opt}: empty path"));
                }
                cfg.users_file = Some(PathBuf::from(v));
            }
            "--require-management" => required = true,
            "--max-mgmt-unauthenticated" => max_unauthenticated = parse_count(&opt, v)?,
            "--mgmt-login-grace" => {
                login_grace = parse_secs(&opt, v, false)?.unwrap_or_default();
            }
            "--max-admin-sessions" => max_admin_sessions = parse_count(&opt, v)?,
            "--max-login-failures" => {
                max_login_failures = match v.parse::<u32>() {
                    Ok(n) if n >= 1 => n,
                    _ => return err(format!("{opt}: '{v}' is not a positive number")),
                };
            }
            "--run-as" => {
                if v.is_empty() {
                    return err(format!("{opt}: empty user name"));
                }
                run_as = Some(v.to_owned());
            }
            "--max-connections" => {
                cfg.worker.max_connections = match v.parse::<usize>() {
                    Ok(n) if n >= 1 => Some(n),
                    _ => return err(format!("{opt}: '{v}' is not a positive number")),
                };
            }
            "--max-users" => {
                cfg.max_users = match v.parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => return err(format!("{opt}: '{v}' is not a positive number")),
                };
            }
            "--allow-open-proxy" => allow_open = true,
            "--workers" => cfg.workers = Some(parse_count(&opt, v)?),
            "--no-pin" => cfg.pin = false,
            "--handshake-timeout" => {
                cfg.worker.handshake_timeout = parse_secs(&opt, v, false)?.unwrap_or_default();
            }
            "--connect-timeout" => {
                cfg.worker.connect_timeout = parse_secs(&opt, v, false)?.unwrap_or_default();
            }
            "--connect-attempt-delay" => {
                let delay = parse_secs(&opt, v, false)?.unwrap_or_default();
                // RFC 8305 section 5: "a subsequent connection MUST NOT be
                // started within 10 milliseconds of the previous attempt."
                if delay < MIN_ATTEMPT_DELAY {
                    return err(format!("{opt}: '{v}' is less than 0.01 seconds"));
                }
                cfg.worker.connect_attempt_delay = delay;
            }
            "--idle-timeout" => cfg.worker.idle_timeout = parse_secs(&opt, v, true)?,
            "--grace" => {
                cfg.worker.grace = match v.parse::<f64>() {
                    Ok(s) if (0.0..=1e9).contains(&s) => Duration::from_secs_f64(s),
                    _ => return err(format!("{opt}: '{v}' is not a number of seconds")),
                };
            }
            "--access-log" => {
                cfg.access_log = match v {
                    "-" => AccessLog::Stdout,
                    "off" => AccessLog::Off,
                    "" => return err(format!("{opt}: empty path")),
                    path => AccessLog::File(PathBuf::from(path)),
                };
            }
            "--pool-threads" => cfg.pool_threads = parse_count(&opt, v)?,
            "--check-threads" => cfg.check_threads = parse_count(&opt, v)?,
            "--max-auth-failures" => {
                cfg.penalty.threshold = match v.parse::<u32>() {
                    Ok(n) if n >= 1 => n,
                    _ => return err(format!("{opt}: '{v}' is not a positive number")),
                };
            }
            "--auth-penalty" => {
                cfg.penalty.base = parse_secs(&opt, v, false)?.unwrap_or_default();
            }
            "--auth-penalty-max" => {
                cfg.penalty.max = parse_secs(&opt, v, false)?.unwrap_or_default();
            }
            "--auth-penalty-exempt" => match v.parse() {
                Ok(c) => cfg.penalty.exempt.push(c),
                Err(e) => return err(format!("{opt}: {e}")),
            },
            "--buffer-kib" => {
                cfg.worker.buffer_size = match v.parse::<usize>() {
                    Ok(n) if (4..=1024).contains(&n) => n * 1024,
                    _ => return err(format!("{opt}: '{v}' is not a number from 4 to 1024")),
                };
            }
            "--map-host" => {
                let (name, addrs) = v
                    .split_once('=')
                    .ok_or_else(|| UsageError(format!("{opt}: expected NAME=ADDR[,ADDR]...")))?;
                if name.is_empty() || name.len() > 255 {
                    return err(format!("{opt}: the name must be 1 to 255 bytes"));
                }
                let ips = addrs
                    .split(',')
                    .map(|a| parse_addr(&opt, a))
                    .collect::<Result<Vec<_>, _>>()?;
                cfg.hosts.insert(name.to_ascii_lowercase(), ips);
            }
            other if other.starts_with('-') => {
                return err(format!("unknown option '{}'", other.escape_default()));
            }
            other => return err(format!("unexpected argument '{}'", other.escape_default())),
        }
    }

    if cfg.penalty.max < cfg.penalty.base {
        return err(format!(
            "--auth-penalty-max ({} s) is shorter than --auth-penalty ({} s)",
            cfg.penalty.max.as_secs_f64(),
            cfg.penalty.base.as_secs_f64()
        ));
    }
    if socks_ips.is_empty() {
        socks_ips = vec![
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ];
    }
    if mgmt_addrs.is_empty() {
        mgmt_addrs = vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
    }
    if users.is_empty()
        && !allow_open
        && let Some(open) = socks_ips.iter().find(|ip| !ip.is_loopback())
    {
        return err(format!(
            "refusing to run an open proxy on {open}: with no user anyone can relay \
                 through it; add -u USER:PASS, listen on loopback (-l 127.0.0.1), \
                 or pass --allow-open-proxy"
        ));
    }
    let mut seen = Vec::new();
    for ip in socks_ips {
        let a = SocketAddr::new(ip, port);
        if seen.contains(&a) {
            return err(format!("-l: {ip} given twice"));
        }
        seen.push(a);
    }
    cfg.socks = seen;
    // Users kept in a users file need their stored hash now: the password
    // is known only here.
    if cfg.users_file.is_some() {
        for (name, pass) in &plain {
            let hash = file::hash_password_with(pass.as_bytes(), cfg.hash_cost);
            users
                .set_secret(name.as_bytes(), Secret::with_hash(pass.as_bytes(), hash))
                .expect("the user was just added");
        }
    }
    cfg.users = users;
    cfg.mgmt = Some(MgmtConfig {
        required,
        max_unauthenticated,
        login_grace,
        max_sessions: max_admin_sessions,
        max_failures: max_login_failures,
        ..MgmtConfig::new(mgmt_addrs, mgmt_port)
    });
    Ok(Command::Run(Box::new(Options {
        config: cfg,
        run_as,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socks5::session::Authenticator;

    fn run(args: &[&str]) -> Result<Options, UsageError> {
        match parse(args.iter().copied())? {
            Command::Run(o) => Ok(*o),
            other => panic!("expected Run, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let o = run(&["-u", "a:b"]).unwrap();
        let socks: Vec<String> = o.config.socks.iter().map(|a| a.to_string()).collect();
        assert_eq!(socks, ["0.0.0.0:1080", "[::]:1080"]);
        let m = o.config.mgmt.as_ref().unwrap();
        assert_eq!(m.port, 8080);
        assert_eq!(m.addrs.len(), 2);
        assert!(m.addrs.iter().all(|a| a.is_loopback()));
        assert!(!m.required);
        assert_eq!(m.max_sessions, 64);
        assert_eq!(m.max_unauthenticated, 32);
        assert_eq!(m.login_grace, Duration::from_secs(10));
        assert_eq!(o.config.worker.handshake_timeout, Duration::from_secs(10));
        assert_eq!(o.config.worker.idle_timeout, None);
        assert_eq!(
            o.config.worker.connect_attempt_delay,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn connect_attempt_delay_has_an_rfc_8305_floor() {
        let delay = |v: &str| {
            run(&["-l", "127.0.0.1", "--connect-attempt-delay", v])
                .map(|o| o.config.worker.connect_attempt_delay)
        };
        assert_eq!(delay("0.1").unwrap(), Duration::from_millis(100));
        assert_eq!(delay("0.01").unwrap(), Duration::from_millis(10));
        assert_eq!(delay("2").unwrap(), Duration::from_secs(2));
        for bad in ["0.009", "0", "-1", "x", ""] {
            let e = delay(bad).unwrap_err();
            assert!(e.0.starts_with("--connect-attempt-delay"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn classic_options() {
        let o = run(&[
            "-l",
            "127.0.0.1",
            "-l",
            "[::1]",
            "-p",
            "1081",
            "-L",
            "::1",
            "-P",
            "9090",
            "-u",
            "alice:pa:ss",
            "-u",
            "bob:x",
        ])
        .unwrap();
        let socks: Vec<String> = o.config.socks.iter().map(|a| a.to_string()).collect();
        assert_eq!(socks, ["127.0.0.1:1081", "[::1]:1081"]);
        let m = o.config.mgmt.as_ref().unwrap();
        assert_eq!(m.addrs, ["::1".parse::<IpAddr>().unwrap()]);
        assert_eq!(m.port, 9090);
        // The password is everything after the first ':'.
        assert!(o.config.users.verify(b"alice", b"pa:ss").is_some());
        assert!(o.config.users.verify(b"bob", b"x").is_some());
    }

    #[test]
    fn long_options() {
        let o = run(&[
            "--listen=127.0.0.1",
            "--workers",
            "3",
            "--idle-timeout",
            "2.5",
            "--handshake-timeout=1",
            "--access-log",
            "off",
            "--map-host",
            "Multi.Test=::1,127.0.0.1",
        ])
        .unwrap();
        assert_eq!(
            o.config.hosts["multi.test"],
            [
                "::1".parse::<IpAddr>().unwrap(),
                "127.0.0.1".parse().unwrap()
            ]
        );
        assert!(run(&["--map-host", "x"]).is_err());
        assert!(run(&["--map-host", "x=bad"]).is_err());
        assert_eq!(o.config.workers, Some(3));
        assert_eq!(
            o.config.worker.idle_timeout,
            Some(Duration::from_millis(2500))
        );
        assert_eq!(o.config.worker.handshake_timeout, Duration::from_secs(1));
        assert_eq!(o.config.access_log, AccessLog::Off);
    }

    #[test]
    fn admins_and_users_file() {
        let o = run(&[
            "-l",
            "127.0.0.1",
            "--admin",
            "root:pw",
            "-u",
            "bob:x",
            "--require-management",
        ])
        .unwrap();
        let t = &o.config.users;
        assert_eq!(t.find(b"root").unwrap().role, Role::Admin);
        assert_eq!(t.find(b"bob").unwrap().role, Role::Proxy);
        assert!(t.check_admin(b"root", b"pw").is_some());
        assert!(t.check_admin(b"bob", b"x").is_none());
        assert!(o.config.mgmt.unwrap().required);
        // A user given twice, once as admin, is refused.
        assert!(run(&["--admin", "a:b", "-u", "a:c"]).is_err());
        assert!(run(&["--users-file", ""]).is_err());
    }

    #[test]
    fn management_limits() {
        let o = run(&[
            "-l",
            "127.0.0.1",
            "--max-mgmt-unauthenticated",
            "5",
            "--mgmt-login-grace=2.5",
            "--max-admin-sessions",
            "3",
        ])
        .unwrap();
        let m = o.config.mgmt.unwrap();
        assert_eq!(m.max_unauthenticated, 5);
        assert_eq!(m.login_grace, Duration::from_millis(2500));
        assert_eq!(m.max_sessions, 3);
        for bad in [
            &["--max-mgmt-unauthenticated", "0"][..],
            &["--max-mgmt-unauthenticated", "x"],
            &["--mgmt-login-grace", "0"],
            &["--mgmt-login-grace", "-1"],
            &["--mgmt-login-grace"],
        ] {
            let e = run(&[&["-l", "127.0.0.1"], bad].concat()).unwrap_err();
            assert!(e.0.starts_with(bad[0]), "{bad:?}: {e}");
        }
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(parse(["-h"]), Ok(Command::Help)));
        assert!(matches!(parse(["--version"]), Ok(Command::Version)));
    }

    #[test]
    fn open_proxy_needs_a_flag() {
        let e = run(&[]).unwrap_err();
        assert!(e.0.contains("open proxy"), "{e}");
        assert!(run(&["-l", "0.0.0.0"]).is_err());
        assert!(run(&["--allow-open-proxy"]).is_ok());
        assert!(run(&["-l", "127.0.0.1"]).is_ok());
        assert!(run(&["-l", "::1"]).is_ok());
    }

    #[test]
    fn bad_arguments_are_one_line() {
        for args in [
            &["-p", "70000"][..],
            &["-p"],
            &["-l", "example.com"],
            &["-u", "nocolon"],
            &["-u", ":pass"],
            &["-u", "a:"],
            &["-u", "a:b", "-u", "a:c"],
            &["--workers", "0"],
            &["--handshake-timeout", "-1"],
            &["--bogus"],
            &["stray"],
            &["--no-pin=1"],
        ] {
            let e = run(args).unwrap_err();
            assert!(!e.0.contains('\n'), "{args:?}: {e}");
        }
        // A password never appears in an error.
        let e = run(&["-u", "a:secret1", "-u", "a:secret2"]).unwrap_err();
        assert!(!e.0.contains("secret"), "{e}");
    }
}
