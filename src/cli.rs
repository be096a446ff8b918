//! The command line of socks5d, in the style of the classic socks5d(8) page.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use crate::config_file::{self, Entry, Origin};
use crate::mgmt::audit;
use crate::server::{AccessLog, Config, MetricsConfig, MgmtConfig, UnixSocket};
use crate::sys::sctp::PathParams;
use crate::users::redis_store::{self, RedisUsers};
use crate::users::{Role, Secret, UserError, UserTable, file};

/// The usage text printed by `-h`.
pub const USAGE: &str = "\
Usage: socks5d [OPTION]...
       socks5d user (add|del|passwd|list) ...   change a users file (socks5d user -h)
A SOCKS version 5 proxy (RFC 1928) with username/password authentication (RFC 1929).

  -h, --help                  print this help and exit
  -v, --version               print the version and exit
      --config PATH           read options from PATH, one per line, without their
                              dashes ('port 1080'); the command line wins
  -l, --listen ADDR           SOCKS address or host name (all its addresses);
                              repeatable (default: 0.0.0.0 and ::)
  -p, --port PORT             SOCKS port (default: 1080)
  -L, --mgmt-listen ADDR      management address or host name; repeatable
                              (default: 127.0.0.1 and ::1)
  -P, --mgmt-port PORT        management SCTP port (default: 8080)
      --mgmt-unix PATH        also serve the management protocol on a Unix-domain
                              socket at PATH (SOCK_SEQPACKET; log in still needed);
                              a stale socket there is replaced, a live server's
                              never (default: none)
      --mgmt-unix-mode OCTAL  permissions of that socket (default: 0600, owner only)
      --mgmt-unix-group GROUP group of that socket, a name or a number (default:
                              socks5d's own)
      --metrics-listen ADDR:PORT
                              serve Prometheus metrics (GET /metrics, plain HTTP)
                              on ADDR:PORT ([v6]:PORT, a host name's first
                              address, or a bare PORT on 127.0.0.1) (default: off)
      --metrics-max-users N   the most users with metrics series of their own; the
                              rest are summed into user=\"other\" (default: 100)
  -u, --user USER:PASS        a proxy user; repeatable. The password is everything
                              after the first ':'
      --admin USER:PASS       an administrator (may also use the proxy); repeatable
      --user-env VAR          a proxy user from the environment variable VAR
                              (USER:PASS): no password on the command line
      --admin-env VAR         an administrator from the environment variable VAR
      --users-file PATH       users file: loaded at start, rewritten on every change
                              made over the management protocol; created if missing
      --users-redis URL       users kept in Redis, shared by several instances
                              (redis://[:PASSWORD@]HOST:PORT/DB): loaded at start,
                              changed there first, followed; not with --users-file
                              or -u (docs/fleet.md)
      --users-redis-prefix PREFIX
                              prefix of the Redis key and channel (default: socks5d:)
      --max-users N           the most users the table may hold (default: 100000)
      --max-admin-sessions N  the most management sessions logged in at once; a log in
                              past it gets X'03' (default: 64)
      --max-mgmt-unauthenticated N
                              the most management associations not logged in at
                              once; past it the oldest is aborted (default: 32)
      --mgmt-login-grace S    seconds a management association may take to log in
                              before it is aborted (default: 10)
      --mgmt-heartbeat S      SCTP heartbeat interval of each idle path of a
                              management association (default: 1)
      --mgmt-path-max-retrans N
                              timeouts in a row, plus one, that make such a path
                              inactive; its traffic moves to the peer's other
                              addresses (default: 2)
      --mgmt-rto-min S        least SCTP retransmission timeout; keep it above the
                              peers' delayed acknowledgement, 0.2 on Linux
                              (default: 0.3)
      --mgmt-rto-max S        greatest SCTP retransmission timeout: a request on
                              a failed path goes on the next path after at most
                              this long (default: 1)
      --max-login-failures N  refused management log ins from one source (an
                              address, or a local user over --mgmt-unix) within a
                              minute that start a penalty (default: 10)
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
      --require-management    exit if the management SCTP socket cannot be opened
                              (by default a kernel without SCTP only gets a warning;
                              a --mgmt-unix socket that cannot be made is always fatal)
      --allow-open-proxy      allow running with no user on a non-loopback address
      --max-connections N     the most client connections open at once; beyond it
                              new clients are closed at once (default: no limit)
      --max-sessions-per-user N
                              the most requests one user may have served at once;
                              past it a request gets X'02' (default: no limit)
      --max-sessions-per-client N
                              the most connections one client address may have
                              open; past it a new one is closed at accept
                              (default: no limit)
      --proxy-protocol-from CIDR
                              a balancer: its connections must start with a
                              PROXY protocol header (v1 or v2) naming the
                              client; from anyone else one is refused;
                              repeatable (default: none)
      --workers N             worker threads (default: the CPUs we may run on)
      --no-pin                do not pin workers to CPUs
      --handshake-timeout S   seconds from accept to the reply to CONNECT (default: 10)
      --connect-timeout S     seconds for each connection attempt to a target (default: 10)
      --connect-attempt-delay S
                              seconds an attempt to one of a name's addresses runs
                              alone before the next address is tried too, as RFC
                              8305 says (default: 0.25; at least 0.01)
      --idle-timeout S        close tunnels, and UDP associations with no datagram,
                              idle this long; 0 is never (default: 0)
      --bind-timeout S        seconds a BIND waits for its inbound connection
                              (default: 120)
      --rules PATH            access rules: who may reach what, first match wins
                              (docs/rules.md); read again on SIGHUP and RELOAD
                              (default: deny loopback, link-local, multicast,
                              broadcast, unspecified and socks5d's own ports;
                              allow the rest)
      --print-default-rules   print that default as a rules file and exit
      --max-udp-associations N
                              the most UDP associations open at once; past it
                              UDP ASSOCIATE gets X'01' (default: 4096)
      --udp-public-addr ADDR  the address UDP ASSOCIATE replies announce, for a
                              server behind NAT (default: the address the
                              client's control connection reached)
      --grace S               on SIGINT/SIGTERM, seconds open tunnels may finish (default: 10)
      --access-log DEST       '-' for standard output (default), a file, or 'off'
      --audit-log DEST        administrator log ins, user changes and reloads: 'log'
                              with the diagnostics (default), '-' for standard
                              output, a file, or 'off'
      --map-host NAME=ADDR[,ADDR]...
                              answer NAME with these addresses, tried in this
                              order, without asking DNS; repeatable
      --buffer-kib N          relay buffer per direction while bytes are in flight,
                              in KiB (default: 32)
      --pool-threads N        threads resolving names, off the workers (default: 4)
      --hash-memory-kib N     Argon2id memory of new password hashes and of the
                              check a refusal costs, in KiB (default: 19456, OWASP's
                              minimum: 15 to 25 ms and 19 MiB a check here)
      --hash-passes N         Argon2id passes over that memory (default: 2)
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
    /// Print the default access rules for this configuration and exit.
    pub print_default_rules: bool,
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

/// Whether `name` is a host name as RFC 1123 writes them: dot-separated
/// labels of letters, digits and '-', 1 to 63 bytes each, not starting or
/// ending with '-'.
fn valid_host_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name.trim_end_matches('.').split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A listen address: an IP literal, or a host name resolved once, now (all
/// of its addresses, in the resolver's order).
fn parse_listen(opt: &str, v: &str) -> Result<Vec<IpAddr>, UsageError> {
    if let Ok(ip) = parse_addr(opt, v) {
        return Ok(vec![ip]);
    }
    if !valid_host_name(v) {
        return err(format!(
            "{opt}: '{}' is neither an IP address nor a host name",
            v.escape_default()
        ));
    }
    let resolved = (v, 0)
        .to_socket_addrs()
        .map_err(|e| UsageError(format!("{opt}: cannot resolve '{v}': {e}")))?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for a in resolved {
        if !ips.contains(&a.ip()) {
            ips.push(a.ip());
        }
    }
    if ips.is_empty() {
        return err(format!("{opt}: '{v}' has no address"));
    }
    Ok(ips)
}

/// The metrics endpoint's address: `IP:PORT`, `[IPv6]:PORT`, `NAME:PORT`
/// (the name resolved once, now; its first address) or a bare `PORT` on
/// 127.0.0.1.
fn parse_metrics_listen(opt: &str, v: &str) -> Result<SocketAddr, UsageError> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(SocketAddr::new(
            Ipv4Addr::LOCALHOST.into(),
            parse_port(opt, v)?,
        ));
    }
    if let Ok(a) = v.parse::<SocketAddr>() {
        return Ok(a);
    }
    let Some((host, port)) = v.rsplit_once(':') else {
        return err(format!("{opt}: '{}' is not ADDR:PORT", v.escape_default()));
    };
    let port = parse_port(opt, port)?;
    if host.contains(':') || host.starts_with('[') {
        return err(format!(
            "{opt}: '{}' is not ADDR:PORT (an IPv6 address goes in brackets: [::1]:9464)",
            v.escape_default()
        ));
    }
    let ip = parse_listen(opt, host)?[0];
    Ok(SocketAddr::new(ip, port))
}

/// The longest path a Unix socket address holds (sun_path, less its NUL).
const MAX_SOCKET_PATH: usize = 107;

fn parse_socket_path(opt: &str, v: &str) -> Result<PathBuf, UsageError> {
    if v.is_empty() {
        return err(format!("{opt}: empty path"));
    }
    if v.len() > MAX_SOCKET_PATH {
        return err(format!(
            "{opt}: the path is {} bytes; a socket path holds at most {MAX_SOCKET_PATH}",
            v.len()
        ));
    }
    Ok(PathBuf::from(v))
}

/// Permission bits in octal, as chmod takes them: 600, 0660, 0o666.
fn parse_mode(opt: &str, v: &str) -> Result<u32, UsageError> {
    let digits = v.strip_prefix("0o").unwrap_or(v);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 && !digits.is_empty() => Ok(m),
        _ => err(format!(
            "{opt}: '{}' is not an octal mode from 0 to 0777",
            v.escape_default()
        )),
    }
}

/// A group name, or a number.
fn parse_group(opt: &str, v: &str) -> Result<u32, UsageError> {
    if let Ok(gid) = v.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(v) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => err(format!("{opt}: no group '{}'", v.escape_default())),
        Err(e) => err(format!(
            "{opt}: cannot look up group '{}': {e}",
            v.escape_default()
        )),
    }
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

/// An SCTP timer's seconds: fractions allowed, in whole milliseconds as
/// the kernel takes them, from 0.01 s to an hour.
fn parse_sctp_time(opt: &str, v: &str) -> Result<Duration, UsageError> {
    match v.parse::<f64>() {
        Ok(s) if (0.01..=3600.0).contains(&s) => {
            Ok(Duration::from_millis((s * 1000.0).round() as u64))
        }
        _ => err(format!(
            "{opt}: '{v}' is not a number of seconds from 0.01 to 3600"
        )),
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

/// `--users-redis` and `--users-redis-prefix` as a store, checked against
/// the options they exclude: the users come from Redis alone.
fn redis_users(
    url: Option<String>,
    prefix: Option<String>,
    cfg: &Config,
    plain: &[(String, String)],
) -> Result<Option<RedisUsers>, UsageError> {
    let Some(url) = url else {
        return match prefix {
            Some(_) => err("--users-redis-prefix: needs --users-redis"),
            None => Ok(None),
        };
    };
    if cfg.users_file.is_some() {
        return err("--users-redis: the users are in Redis or in a users file, not both");
    }
    if !plain.is_empty() {
        return err(
            "--users-redis: the users come from Redis alone; add them there with \
             'socks5d user add NAME --users-redis URL', not with -u, --user, --admin, \
             --user-env or --admin-env",
        );
    }
    let prefix = prefix.as_deref().unwrap_or(redis_store::DEFAULT_PREFIX);
    RedisUsers::new(&url, prefix)
        .map(Some)
        .map_err(|e| UsageError(format!("--users-redis: {e}")))
}

/// Where the password is in a `redis://[USER]:PASSWORD@HOST...` URL, if it
/// has one: the bytes between the first ':' of its user part and the '@'.
fn url_password(url: &str) -> Option<Range<usize>> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let at = start + url[start..authority_end].rfind('@')?;
    let colon = start + url[start..at].find(':')?;
    (colon + 1 < at).then_some(colon + 1..at)
}

/// Where the Redis password is in `args` (the whole argv, the program
/// first): in each value of `--users-redis`. main overwrites it in the
/// process's own argument memory, as it does [`password_spans`].
pub fn redis_password_spans(args: &[String]) -> Vec<(usize, Range<usize>)> {
    let mut spans = Vec::new();
    for (i, a) in args.iter().enumerate().skip(1) {
        let (at, v) = if args[i - 1] == "--users-redis" {
            (0, a.as_str())
        } else if let Some(v) = a.strip_prefix("--users-redis=") {
            ("--users-redis=".len(), v)
        } else {
            continue;
        };
        if let Some(r) = url_password(v) {
            spans.push((i, at + r.start..at + r.end));
        }
    }
    spans
}

/// Where the passwords are in `args` (the whole argv, the program first):
/// for each value of `-u`, `--user` and `--admin`, the bytes after its
/// first ':'. main overwrites them in the process's own argument memory.
pub fn password_spans(args: &[String]) -> Vec<(usize, Range<usize>)> {
    let mut spans = Vec::new();
    let mut value_of_next = false;
    for (i, a) in args.iter().enumerate().skip(1) {
        let value = if value_of_next {
            value_of_next = false;
            Some((0, a.as_str()))
        } else if matches!(a.as_str(), "-u" | "--user" | "--admin") {
            value_of_next = true;
            None
        } else {
            ["--user=", "--admin="]
                .iter()
                .find_map(|p| a.strip_prefix(p).map(|v| (p.len(), v)))
        };
        if let Some((at, v)) = value
            && let Some(colon) = v.find(':')
            && colon + 1 < v.len()
        {
            spans.push((i, at + colon + 1..at + v.len()));
        }
    }
    spans
}

/// The usage of `socks5d user`, which changes a users file directly.
pub const USER_USAGE: &str = "\
Usage: socks5d user add NAME [--admin] WHERE [OPTION]...
       socks5d user del NAME WHERE
       socks5d user passwd NAME WHERE [OPTION]...
       socks5d user list WHERE
WHERE: --users-file PATH, --users-redis URL [--users-redis-prefix PREFIX],
       or --config PATH
Change the users file directly, for first set-up and scripts, without a
password on any command line. Safe while socks5d runs on the same file: both
take the file's lock, and the server reads the file again before its next
change, on SIGHUP and on RELOAD. In Redis, the change is made and published
as a running socks5d makes it: every instance applies it at once.

      --admin                 the new user is an administrator
      --users-file PATH       the users file (created if missing)
      --users-redis URL       the users in Redis (redis://[:PASSWORD@]HOST:PORT/DB)
      --users-redis-prefix PREFIX
                              the prefix of their key (default: socks5d:)
      --config PATH           take the users file or Redis from this config file
      --password-stdin        read the password from the first line of standard
                              input (default: asked twice on the terminal)
      --hash-memory-kib N     Argon2id memory of the new hash, in KiB (default: 19456)
      --hash-passes N         Argon2id passes of the new hash (default: 2)";

/// What `socks5d user` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAction {
    /// Add a user.
    Add {
        /// The name.
        name: String,
        /// Whether an administrator.
        admin: bool,
    },
    /// Delete a user.
    Del {
        /// The name.
        name: String,
    },
    /// Set a user's password.
    Passwd {
        /// The name.
        name: String,
    },
    /// List the users and their roles.
    List,
}

/// Where `socks5d user` changes the users.
#[derive(Debug, Clone)]
pub enum UsersAt {
    /// A users file.
    File(PathBuf),
    /// Redis.
    Redis(RedisUsers),
}

/// `socks5d user ...` parsed.
#[derive(Debug, Clone)]
pub struct UserCommand {
    /// What to do.
    pub action: UserAction,
    /// Where the users are.
    pub users: UsersAt,
    /// Read the password from standard input.
    pub password_stdin: bool,
    /// The cost of a new hash.
    pub cost: file::Cost,
}

/// Parses the arguments after `socks5d user`; `Ok(None)` asks for the usage.
pub fn parse_user_command(args: &[String]) -> Result<Option<UserCommand>, UsageError> {
    let mut words = Vec::new();
    let mut admin = false;
    let mut users_file = None;
    let mut redis_url: Option<String> = None;
    let mut redis_prefix: Option<String> = None;
    let mut config = None;
    let mut password_stdin = false;
    let mut cost = file::Cost::DEFAULT;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (opt, inline) = match a.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        let mut value = || -> Result<String, UsageError> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| UsageError(format!("{opt}: missing value")))
        };
        match opt {
            "-h" | "--help" => return Ok(None),
            "--admin" => admin = true,
            "--password-stdin" => password_stdin = true,
            "--users-file" => users_file = Some(PathBuf::from(value()?)),
            "--users-redis" => redis_url = Some(value()?),
            "--users-redis-prefix" => redis_prefix = Some(value()?),
            "--config" => config = Some(value()?),
            "--hash-memory-kib" => {
                let v = value()?;
                cost.m_kib = match v.parse::<u32>() {
                    Ok(n) if (8..=file::Cost::MAX.m_kib).contains(&n) => n,
                    _ => return err(format!("{opt}: '{v}' is not a number from 8 to 1048576")),
                };
            }
            "--hash-passes" => {
                let v = value()?;
                cost.t = match v.parse::<u32>() {
                    Ok(n) if (1..=file::Cost::MAX.t).contains(&n) => n,
                    _ => return err(format!("{opt}: '{v}' is not a number from 1 to 64")),
                };
            }
            o if o.starts_with('-') => {
                return err(format!("unknown option '{}'", o.escape_default()));
            }
            w => words.push(w.to_owned()),
        }
    }
    let action = match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["add", name] => UserAction::Add {
            name: name.to_owned(),
            admin,
        },
        ["del", name] => UserAction::Del {
            name: name.to_owned(),
        },
        ["passwd", name] => UserAction::Passwd {
            name: name.to_owned(),
        },
        ["list"] => UserAction::List,
        _ => return err("expected: add NAME, del NAME, passwd NAME or list"),
    };
    if admin && !matches!(action, UserAction::Add { .. }) {
        return err("--admin goes with add");
    }
    if let UserAction::Add { name, .. } | UserAction::Del { name } | UserAction::Passwd { name } =
        &action
        && !crate::users::valid_name(name.as_bytes())
    {
        return err(format!(
            "'{}': {}",
            name.escape_default(),
            UserError::InvalidName
        ));
    }
    if let (None, None, Some(c)) = (&users_file, &redis_url, &config) {
        let path = PathBuf::from(c);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| UsageError(format!("--config: cannot read {c}: {e}")))?;
        let entries = config_file::parse(&text)
            .map_err(|(line, why)| UsageError(format!("{c}:{line}: {why}")))?;
        let last = |name: &str| {
            entries
                .iter()
                .rev()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        users_file = last("users-file").map(PathBuf::from);
        redis_url = last("users-redis");
        redis_prefix = redis_prefix.or_else(|| last("users-redis-prefix"));
        if users_file.is_none() && redis_url.is_none() {
            return err(format!("{c}: no users-file or users-redis line"));
        }
    }
    let users = match (users_file, redis_url) {
        (Some(_), Some(_)) => return err("the users are in a users file or in Redis, not both"),
        (Some(p), None) => UsersAt::File(p),
        (None, Some(url)) => {
            let prefix = redis_prefix
                .as_deref()
                .unwrap_or(redis_store::DEFAULT_PREFIX);
            UsersAt::Redis(
                RedisUsers::new(&url, prefix)
                    .map_err(|e| UsageError(format!("--users-redis: {e}")))?,
            )
        }
        (None, None) => {
            return err(
                "where are the users? give --users-file PATH, --users-redis URL or --config PATH",
            );
        }
    };
    Ok(Some(UserCommand {
        action,
        users,
        password_stdin,
        cost,
    }))
}

/// Whether the command-line option `opt` (as written, `=value` left off)
/// takes a value.
fn takes_value(opt: &str) -> bool {
    matches!(
        opt,
        "-l" | "--listen"
            | "-p"
            | "--port"
            | "-L"
            | "--mgmt-listen"
            | "-P"
            | "--mgmt-port"
            | "--mgmt-unix"
            | "--mgmt-unix-mode"
            | "--mgmt-unix-group"
            | "--metrics-listen"
            | "--metrics-max-users"
            | "-u"
            | "--user"
            | "--admin"
            | "--user-env"
            | "--admin-env"
            | "--users-file"
            | "--users-redis"
            | "--users-redis-prefix"
            | "--max-users"
            | "--max-connections"
            | "--max-sessions-per-user"
            | "--max-sessions-per-client"
            | "--proxy-protocol-from"
            | "--run-as"
            | "--max-mgmt-unauthenticated"
            | "--mgmt-login-grace"
            | "--mgmt-heartbeat"
            | "--mgmt-path-max-retrans"
            | "--mgmt-rto-min"
            | "--mgmt-rto-max"
            | "--max-admin-sessions"
            | "--max-login-failures"
            | "--max-auth-failures"
            | "--auth-penalty"
            | "--auth-penalty-max"
            | "--auth-penalty-exempt"
            | "--check-threads"
            | "--hash-memory-kib"
            | "--hash-passes"
            | "--workers"
            | "--handshake-timeout"
            | "--connect-timeout"
            | "--connect-attempt-delay"
            | "--idle-timeout"
            | "--bind-timeout"
            | "--rules"
            | "--max-udp-associations"
            | "--udp-public-addr"
            | "--grace"
            | "--access-log"
            | "--audit-log"
            | "--pool-threads"
            | "--map-host"
            | "--buffer-kib"
            | "--config"
    )
}

/// The config file `--config` names, if any: its path and option lines.
fn config_file(cli: &[String]) -> Result<Option<(PathBuf, Vec<Entry>)>, UsageError> {
    let mut path = None;
    for (i, a) in cli.iter().enumerate() {
        if let Some(p) = a.strip_prefix("--config=") {
            path = Some(p.to_owned());
        } else if a == "--config" {
            path = cli.get(i + 1).cloned();
        }
    }
    let Some(path) = path.map(PathBuf::from) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| UsageError(format!("--config: cannot read {}: {e}", path.display())))?;
    let entries = config_file::parse(&text)
        .map_err(|(line, why)| UsageError(format!("{}:{line}: {why}", path.display())))?;
    if let Some(e) = entries.iter().find(|e| e.name == "config") {
        return err(format!(
            "{}:{}: a config file cannot name another",
            path.display(),
            e.line
        ));
    }
    Ok(Some((path, entries)))
}

/// The config file, if given, and its path (for SIGHUP to read it again).
pub fn config_path(args: &[String]) -> Option<PathBuf> {
    config_file(args).ok().flatten().map(|(p, _)| p)
}

/// Parses the arguments after the program name, with the lines of the
/// config file that `--config` names before them (the command line wins).
pub fn parse<I, S>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let cli: Vec<String> = args.into_iter().map(Into::into).collect();
    let tagged = match config_file(&cli)? {
        Some((path, entries)) => config_file::merge(&path, entries, cli, takes_value),
        None => cli.into_iter().map(|a| (a, Origin::CommandLine)).collect(),
    };
    parse_tagged(tagged)
}

fn parse_tagged(args: Vec<(String, Origin)>) -> Result<Command, UsageError> {
    let mut cfg = Config::default();
    let mut socks_ips: Vec<IpAddr> = Vec::new();
    let mut port = 1080u16;
    let mut mgmt_addrs: Vec<IpAddr> = Vec::new();
    let mut mgmt_port = 8080u16;
    let mut allow_open = false;
    let mut print_default_rules = false;
    let mut users = UserTable::new();
    let mut plain: Vec<(String, String)> = Vec::new();
    let mut required = false;
    let mut run_as: Option<String> = None;
    let mut max_unauthenticated = 32usize;
    let mut login_grace = Duration::from_secs(10);
    let mut paths = PathParams::LAN;
    let mut max_admin_sessions = 64usize;
    let mut max_login_failures = 10u32;
    let mut mgmt_unix: Option<PathBuf> = None;
    let mut mgmt_unix_mode: Option<u32> = None;
    let mut mgmt_unix_group: Option<u32> = None;
    let mut metrics_listen: Option<SocketAddr> = None;
    let mut metrics_max_users: Option<usize> = None;
    let mut users_redis: Option<String> = None;
    let mut users_redis_prefix: Option<String> = None;

    let mut it = args.into_iter();
    while let Some((arg, origin)) = it.next() {
        // One option, with its value: an error names the config file's line
        // when the option came from there.
        let mut step = || -> Result<Option<Command>, UsageError> {
            // Accept both "--opt value" and "--opt=value".
            let (opt, inline) = match arg.split_once('=') {
                Some((o, v)) if o.starts_with("--") => (o.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            let takes_value = takes_value(&opt);
            let value = if takes_value {
                match inline.or_else(|| it.next().map(|(v, _)| v)) {
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
                "-h" | "--help" => return Ok(Some(Command::Help)),
                "-v" | "--version" => return Ok(Some(Command::Version)),
                // Read before the others (config_file).
                "--config" => {}
                "-l" | "--listen" => socks_ips.extend(parse_listen(&opt, v)?),
                "-p" | "--port" => port = parse_port(&opt, v)?,
                "-L" | "--mgmt-listen" => {
                    for ip in parse_listen(&opt, v)? {
                        if !mgmt_addrs.contains(&ip) {
                            mgmt_addrs.push(ip);
                        }
                    }
                }
                "-P" | "--mgmt-port" => mgmt_port = parse_port(&opt, v)?,
                "--mgmt-unix" => mgmt_unix = Some(parse_socket_path(&opt, v)?),
                "--mgmt-unix-mode" => mgmt_unix_mode = Some(parse_mode(&opt, v)?),
                "--mgmt-unix-group" => mgmt_unix_group = Some(parse_group(&opt, v)?),
                "--metrics-listen" => metrics_listen = Some(parse_metrics_listen(&opt, v)?),
                "--metrics-max-users" => {
                    metrics_max_users = match v.parse::<usize>() {
                        Ok(n) if n <= 1_000_000 => Some(n),
                        _ => return err(format!("{opt}: '{v}' is not a number from 0 to 1000000")),
                    };
                }
                "-u" | "--user" => parse_user(&mut users, &mut plain, &opt, v, Role::Proxy)?,
                "--admin" => parse_user(&mut users, &mut plain, &opt, v, Role::Admin)?,
                "--user-env" | "--admin-env" => {
                    let role = if opt == "--admin-env" {
                        Role::Admin
                    } else {
                        Role::Proxy
                    };
                    let Ok(value) = std::env::var(v) else {
                        return err(format!("{opt}: the environment has no {v} (USER:PASS)"));
                    };
                    parse_user(&mut users, &mut plain, &format!("{opt} {v}"), &value, role)?;
                }
                "--users-file" => {
                    if v.is_empty() {
                        return err(format!("{opt}: empty path"));
                    }
                    cfg.users_file = Some(PathBuf::from(v));
                }
                "--users-redis" => users_redis = Some(value.clone()),
                "--users-redis-prefix" => users_redis_prefix = Some(value.clone()),
                "--require-management" => required = true,
                "--max-mgmt-unauthenticated" => max_unauthenticated = parse_count(&opt, v)?,
                "--mgmt-login-grace" => {
                    login_grace = parse_secs(&opt, v, false)?.unwrap_or_default();
                }
                "--mgmt-heartbeat" => paths.heartbeat = parse_sctp_time(&opt, v)?,
                "--mgmt-rto-min" => paths.rto_min = parse_sctp_time(&opt, v)?,
                "--mgmt-rto-max" => paths.rto_max = parse_sctp_time(&opt, v)?,
                "--mgmt-path-max-retrans" => {
                    paths.path_max_retrans = match v.parse::<u16>() {
                        Ok(n) if (1..=100).contains(&n) => n,
                        _ => return err(format!("{opt}: '{v}' is not a number from 1 to 100")),
                    };
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
                "--max-sessions-per-user" | "--max-sessions-per-client" => {
                    let n = match v.parse::<u32>() {
                        Ok(n) if n >= 1 => n,
                        _ => return err(format!("{opt}: '{v}' is not a positive number")),
                    };
                    if opt == "--max-sessions-per-user" {
                        cfg.worker.max_sessions_per_user = Some(n);
                    } else {
                        cfg.worker.max_sessions_per_client = Some(n);
                    }
                }
                "--proxy-protocol-from" => match v.parse() {
                    Ok(c) => cfg.worker.proxy_protocol_from.push(c),
                    Err(e) => return err(format!("{opt}: {e}")),
                },
                "--max-users" => {
                    cfg.max_users = match v.parse::<usize>() {
                        Ok(n) if n >= 1 => n,
                        _ => return err(format!("{opt}: '{v}' is not a positive number")),
                    };
                }
                "--allow-open-proxy" => allow_open = true,
                "--print-default-rules" => print_default_rules = true,
                "--rules" => {
                    if v.is_empty() {
                        return err(format!("{opt}: empty path"));
                    }
                    cfg.rules_file = Some(PathBuf::from(v));
                }
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
                "--bind-timeout" => {
                    cfg.worker.bind_timeout = parse_secs(&opt, v, false)?.unwrap_or_default();
                }
                "--max-udp-associations" => {
                    cfg.worker.max_udp_associations = match v.parse::<usize>() {
                        Ok(n) if n >= 1 => n,
                        _ => return err(format!("{opt}: '{v}' is not a positive number")),
                    };
                }
                "--udp-public-addr" => cfg.worker.udp_public_addr = Some(parse_addr(&opt, v)?),
                "--grace" => {
                    cfg.worker.grace = match v.parse::<f64>() {
                        Ok(s) if (0.0..=1e9).contains(&s) => Duration::from_secs_f64(s),
                        _ => return err(format!("{opt}: '{v}' is not a number of seconds")),
                    };
                }
                "--audit-log" => {
                    cfg.audit_log = match v {
                        "log" => audit::Dest::Diagnostics,
                        "-" => audit::Dest::Stdout,
                        "off" => audit::Dest::Off,
                        "" => return err(format!("{opt}: empty path")),
                        path => audit::Dest::File(PathBuf::from(path)),
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
                "--hash-memory-kib" => {
                    cfg.hash_cost.m_kib = match v.parse::<u32>() {
                        Ok(n) if (8..=file::Cost::MAX.m_kib).contains(&n) => n,
                        _ => {
                            return err(format!(
                                "{opt}: '{v}' is not a number from 8 to {}",
                                file::Cost::MAX.m_kib
                            ));
                        }
                    };
                }
                "--hash-passes" => {
                    cfg.hash_cost.t = match v.parse::<u32>() {
                        Ok(n) if (1..=file::Cost::MAX.t).contains(&n) => n,
                        _ => {
                            return err(format!(
                                "{opt}: '{v}' is not a number from 1 to {}",
                                file::Cost::MAX.t
                            ));
                        }
                    };
                }
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
                    let (name, addrs) = v.split_once('=').ok_or_else(|| {
                        UsageError(format!("{opt}: expected NAME=ADDR[,ADDR]..."))
                    })?;
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
            Ok(None)
        };
        match step() {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            Err(e) => {
                return Err(match origin {
                    Origin::CommandLine => e,
                    file => UsageError(format!("{file}: {e}")),
                });
            }
        }
    }

    if cfg.penalty.max < cfg.penalty.base {
        return err(format!(
            "--auth-penalty-max ({} s) is shorter than --auth-penalty ({} s)",
            cfg.penalty.max.as_secs_f64(),
            cfg.penalty.base.as_secs_f64()
        ));
    }
    if paths.rto_min > paths.rto_max {
        return err(format!(
            "--mgmt-rto-min ({} s) is longer than --mgmt-rto-max ({} s)",
            paths.rto_min.as_secs_f64(),
            paths.rto_max.as_secs_f64()
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
    cfg.users_redis = redis_users(users_redis, users_redis_prefix, &cfg, &plain)?;
    if users.is_empty()
        && cfg.users_redis.is_none()
        && !allow_open
        && !print_default_rules
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
    let unix = match mgmt_unix {
        Some(path) => Some(UnixSocket {
            mode: mgmt_unix_mode.unwrap_or(0o600),
            group: mgmt_unix_group,
            ..UnixSocket::new(path)
        }),
        None if mgmt_unix_mode.is_some() => return err("--mgmt-unix-mode: needs --mgmt-unix"),
        None if mgmt_unix_group.is_some() => return err("--mgmt-unix-group: needs --mgmt-unix"),
        None => None,
    };
    cfg.metrics = match (metrics_listen, metrics_max_users) {
        (Some(addr), max) => Some(MetricsConfig {
            max_users: max.unwrap_or(MetricsConfig::DEFAULT_MAX_USERS),
            ..MetricsConfig::new(addr)
        }),
        (None, Some(_)) => return err("--metrics-max-users: needs --metrics-listen"),
        (None, None) => None,
    };
    cfg.mgmt = Some(MgmtConfig {
        required,
        max_unauthenticated,
        login_grace,
        max_sessions: max_admin_sessions,
        max_failures: max_login_failures,
        unix,
        paths,
        ..MgmtConfig::new(mgmt_addrs, mgmt_port)
    });
    Ok(Command::Run(Box::new(Options {
        config: cfg,
        run_as,
        print_default_rules,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::Authenticator;
    use std::path::Path;

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
        assert_eq!(
            m.paths,
            PathParams {
                heartbeat: Duration::from_secs(1),
                path_max_retrans: 2,
                rto_min: Duration::from_millis(300),
                rto_max: Duration::from_secs(1),
            }
        );
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
    fn management_path_settings() {
        let o = run(&[
            "-l",
            "127.0.0.1",
            "--mgmt-heartbeat",
            "0.5",
            "--mgmt-path-max-retrans=1",
            "--mgmt-rto-min",
            "0.05",
            "--mgmt-rto-max=0.3",
        ])
        .unwrap();
        assert_eq!(
            o.config.mgmt.unwrap().paths,
            PathParams {
                heartbeat: Duration::from_millis(500),
                path_max_retrans: 1,
                rto_min: Duration::from_millis(50),
                rto_max: Duration::from_millis(300),
            }
        );
        // One bound alone may cross the other's default.
        let o = run(&[
            "-l",
            "::1",
            "--mgmt-rto-max",
            "0.1",
            "--mgmt-rto-min",
            "0.1",
        ])
        .unwrap();
        assert_eq!(
            o.config.mgmt.unwrap().paths.rto_max,
            Duration::from_millis(100)
        );
        for bad in [
            &["--mgmt-heartbeat", "0"][..],
            &["--mgmt-heartbeat", "0.001"],
            &["--mgmt-heartbeat", "3601"],
            &["--mgmt-heartbeat", "x"],
            &["--mgmt-path-max-retrans", "0"],
            &["--mgmt-path-max-retrans", "101"],
            &["--mgmt-path-max-retrans", "1.5"],
            &["--mgmt-rto-min", "-1"],
            &["--mgmt-rto-max"],
            &["--mgmt-rto-min", "2"],
            &["--mgmt-rto-max", "0.1"],
        ] {
            let e = run(&[&["-l", "127.0.0.1"], bad].concat()).unwrap_err();
            assert!(e.0.starts_with("--mgmt-"), "{bad:?}: {e}");
            assert!(e.0.contains(bad[0]), "{bad:?}: {e}");
            assert!(!e.0.contains('\n'), "{bad:?}: {e}");
        }
    }

    #[test]
    fn management_unix_socket() {
        let o = run(&["-l", "127.0.0.1"]).unwrap();
        assert_eq!(o.config.mgmt.unwrap().unix, None);
        let o = run(&["-l", "127.0.0.1", "--mgmt-unix", "/run/socks5d.sock"]).unwrap();
        let u = o.config.mgmt.unwrap().unix.unwrap();
        assert_eq!(u.path, PathBuf::from("/run/socks5d.sock"));
        assert_eq!((u.mode, u.group), (0o600, None));
        let o = run(&[
            "-l",
            "127.0.0.1",
            "--mgmt-unix=s",
            "--mgmt-unix-mode",
            "0660",
            "--mgmt-unix-group",
            "0",
        ])
        .unwrap();
        let u = o.config.mgmt.unwrap().unix.unwrap();
        assert_eq!((u.mode, u.group), (0o660, Some(0)));
        let root = run(&["-l", "::1", "--mgmt-unix", "s", "--mgmt-unix-group=root"]).unwrap();
        assert_eq!(root.config.mgmt.unwrap().unix.unwrap().group, Some(0));
        for mode in ["600", "0o640", "0"] {
            assert!(run(&["--mgmt-unix", "s", "--mgmt-unix-mode", mode, "-l", "::1"]).is_ok());
        }
        let long = "x".repeat(108);
        for bad in [
            &["--mgmt-unix", ""][..],
            &["--mgmt-unix", &long],
            &["--mgmt-unix", "s", "--mgmt-unix-mode", "0800"],
            &["--mgmt-unix", "s", "--mgmt-unix-mode", "1777"],
            &["--mgmt-unix", "s", "--mgmt-unix-mode", "rw"],
            &["--mgmt-unix", "s", "--mgmt-unix-mode", ""],
            &[
                "--mgmt-unix",
                "s",
                "--mgmt-unix-group",
                "no-such-group-here",
            ],
            &["--mgmt-unix-mode", "0600"],
            &["--mgmt-unix-group", "0"],
        ] {
            let e = run(&[&["-l", "127.0.0.1"], bad].concat()).unwrap_err();
            assert!(e.0.starts_with("--mgmt-unix"), "{bad:?}: {e}");
            assert!(!e.0.contains('\n'), "{bad:?}: {e}");
        }
    }

    #[test]
    fn metrics_endpoint_options() {
        let o = run(&["-l", "127.0.0.1"]).unwrap();
        assert_eq!(o.config.metrics, None);
        let metrics = |extra: &[&str]| {
            run(&[&["-l", "127.0.0.1"], extra].concat())
                .map(|o| o.config.metrics.expect("the endpoint is on"))
        };
        let m = metrics(&["--metrics-listen", "127.0.0.1:9464"]).unwrap();
        assert_eq!(m.addr, "127.0.0.1:9464".parse().unwrap());
        assert_eq!(m.max_users, 100);
        let m = metrics(&["--metrics-listen=[::1]:0", "--metrics-max-users", "0"]).unwrap();
        assert_eq!(m.addr, "[::1]:0".parse().unwrap());
        assert_eq!(m.max_users, 0);
        // A bare port is on loopback.
        let m = metrics(&["--metrics-listen", "9464"]).unwrap();
        assert_eq!(m.addr, "127.0.0.1:9464".parse().unwrap());
        let m = metrics(&["--metrics-listen", "localhost:9464"]).unwrap();
        assert!(m.addr.ip().is_loopback() && m.addr.port() == 9464, "{m:?}");
        for bad in [
            &["--metrics-listen", "127.0.0.1"][..],
            &["--metrics-listen", "::1:9464"],
            &["--metrics-listen", "[::1]"],
            &["--metrics-listen", "127.0.0.1:70000"],
            &["--metrics-listen", "bad host!:1"],
            &["--metrics-listen", ""],
            &["--metrics-listen", "99999"],
            &["--metrics-listen", "1", "--metrics-max-users", "x"],
            &["--metrics-listen", "1", "--metrics-max-users", "-1"],
            &["--metrics-max-users", "5"],
        ] {
            let e = metrics(bad).unwrap_err();
            assert!(e.0.starts_with("--metrics-"), "{bad:?}: {e}");
            assert!(!e.0.contains('\n'), "{bad:?}: {e}");
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

    /// Host names are resolved once, at start (localhost from /etc/hosts,
    /// asking no name server); every address of the name is listened on.
    #[test]
    fn listen_addresses_may_be_host_names() {
        let o = run(&["-l", "localhost", "-p", "1081", "-L", "localhost"]).unwrap();
        assert!(!o.config.socks.is_empty());
        assert!(
            o.config
                .socks
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 1081)
        );
        let m = o.config.mgmt.as_ref().unwrap();
        assert!(!m.addrs.is_empty() && m.addrs.iter().all(|ip| ip.is_loopback()));
        for good in ["localhost", "a.b-c.example", "x1."] {
            assert!(valid_host_name(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a..b", "a b", "a_b", &"x".repeat(64)] {
            assert!(!valid_host_name(bad), "{bad}");
        }
    }

    #[test]
    fn bad_arguments_are_one_line() {
        for args in [
            &["-p", "70000"][..],
            &["-p"],
            &["-l", "not a host!"],
            &["-l", "-bad-.example"],
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

    #[test]
    fn password_spans_cover_every_password_and_nothing_else() {
        let args: Vec<String> = [
            "socks5d",
            "-u",
            "alice:pa:ss",
            "--admin=root:toor",
            "--user",
            "bob:x",
            "-l",
            "127.0.0.1",
            "--users-file",
            "f:g",
            "-u",
            "nopass:",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let spans = password_spans(&args);
        let shown: Vec<&str> = spans.iter().map(|(i, r)| &args[*i][r.clone()]).collect();
        assert_eq!(shown, ["pa:ss", "toor", "x"]);
    }

    /// A config file sets options; the command line replaces an option of
    /// the file; an error names the file and the line.
    #[test]
    fn config_file_options_and_their_errors() {
        let dir = std::env::temp_dir().join(format!("socks5d-cli-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("socks5d.conf");
        std::fs::write(
            &path,
            "# test\nlisten 127.0.0.1\nport 1081\nworkers 3\nno-pin\nuser alice:pw\n",
        )
        .unwrap();
        let conf = format!("--config={}", path.display());
        let o = run(&[&conf, "-p", "1082"]).unwrap();
        assert_eq!(o.config.socks, ["127.0.0.1:1082".parse().unwrap()]);
        assert_eq!(o.config.workers, Some(3));
        assert!(!o.config.pin);
        assert!(o.config.users.find(b"alice").is_some());
        std::fs::write(&path, "port 1081\nworkers none\n").unwrap();
        let e = run(&["--config", path.to_str().unwrap()]).unwrap_err();
        assert!(
            e.0.starts_with(&format!("{}:2: --workers", path.display())),
            "{e}"
        );
        std::fs::write(&path, "port 1081\n--port 2\n").unwrap();
        let e = run(&["--config", path.to_str().unwrap()]).unwrap_err();
        assert!(e.0.contains(":2: "), "{e}");
        let e = run(&["--config", "/nonexistent/socks5d.conf"]).unwrap_err();
        assert!(e.0.contains("cannot read /nonexistent/socks5d.conf"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn argon2id_cost_options() {
        let o = run(&[
            "-l",
            "127.0.0.1",
            "--hash-memory-kib",
            "4096",
            "--hash-passes",
            "3",
        ])
        .unwrap();
        assert_eq!(
            o.config.hash_cost,
            file::Cost {
                m_kib: 4096,
                t: 3,
                p: 1
            }
        );
        assert_eq!(
            run(&["-l", "127.0.0.1"]).unwrap().config.hash_cost,
            file::Cost::DEFAULT
        );
        for bad in [&["--hash-memory-kib", "7"][..], &["--hash-passes", "0"]] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_commands() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = parse_user_command(&args(&["add", "bob", "--admin", "--users-file", "/u"]))
            .unwrap()
            .unwrap();
        assert_eq!(
            c.action,
            UserAction::Add {
                name: "bob".into(),
                admin: true
            }
        );
        assert!(matches!(&c.users, UsersAt::File(p) if p == Path::new("/u")));
        assert!(!c.password_stdin);
        let c = parse_user_command(&args(&[
            "--users-file=/u",
            "passwd",
            "bob",
            "--password-stdin",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.action, UserAction::Passwd { name: "bob".into() });
        assert!(c.password_stdin);
        assert!(parse_user_command(&args(&["-h"])).unwrap().is_none());
        for bad in [
            &["add", "bob"][..],
            &["add", "--users-file", "/u"],
            &["del", "bob", "--admin", "--users-file", "/u"],
            &["add", "a:b", "--users-file", "/u"],
            &["frob", "--users-file", "/u"],
        ] {
            assert!(parse_user_command(&args(bad)).is_err(), "{bad:?}");
        }
    }

    /// --users-redis: a store of its own, exclusive with a users file and
    /// with users given on the command line; its password never in an
    /// error, and found in the arguments to be hidden.
    #[test]
    fn users_in_redis() {
        let url = "redis://:pw-R3d@127.0.0.1:6390/1";
        let o = run(&["-l", "0.0.0.0", "--users-redis", url]).unwrap();
        let at = o.config.users_redis.unwrap();
        assert_eq!(at.to_string(), "redis://127.0.0.1:6390/1");
        assert_eq!(at.key(), "socks5d:users");
        let o = run(&["--users-redis", url, "--users-redis-prefix", "p:"]).unwrap();
        assert_eq!(o.config.users_redis.unwrap().channel(), "p:users:changes");
        for bad in [
            &["--users-redis", url, "--users-file", "/u"][..],
            &["--users-redis", url, "-u", "a:b"],
            &["--users-redis", url, "--admin", "a:b"],
            &["--users-redis-prefix", "p:"],
            &["--users-redis", "redis//:pw-R3d@h"],
            &["--users-redis", url, "--users-redis-prefix", "a b"],
        ] {
            let e = run(bad).unwrap_err();
            assert!(e.0.starts_with("--users-redis"), "{bad:?}: {e}");
            assert!(!e.0.contains("pw-R3d"), "{bad:?}: {e}");
        }
        let args: Vec<String> = [
            "socks5d",
            "--users-redis",
            url,
            "--users-redis=redis://u:p2@h/0",
        ]
        .map(String::from)
        .into();
        let spans = redis_password_spans(&args);
        let shown: Vec<&str> = spans.iter().map(|(i, r)| &args[*i][r.clone()]).collect();
        assert_eq!(shown, ["pw-R3d", "p2"]);
        for none in [
            "redis://h:1/0",
            "redis://u@h",
            "redis://:@h",
            "redis://h/a:b@c",
        ] {
            assert_eq!(url_password(none), None, "{none}");
        }
        let c = parse_user_command(&["list", "--users-redis", url].map(String::from))
            .unwrap()
            .unwrap();
        assert!(matches!(c.users, UsersAt::Redis(_)));
        assert!(
            parse_user_command(
                &["list", "--users-redis", url, "--users-file", "/u"].map(String::from)
            )
            .is_err()
        );
    }

    #[test]
    fn balancers_for_the_proxy_protocol() {
        let o = run(&["-u", "a:b"]).unwrap();
        assert!(o.config.worker.proxy_protocol_from.is_empty());
        let o = run(&[
            "-u",
            "a:b",
            "--proxy-protocol-from",
            "10.0.0.0/8",
            "--proxy-protocol-from=2001:db8::5",
        ])
        .unwrap();
        let w = &o.config.worker;
        assert!(w.is_balancer("10.1.2.3".parse().unwrap()));
        assert!(w.is_balancer("::ffff:10.1.2.3".parse().unwrap()));
        assert!(w.is_balancer("2001:db8::5".parse().unwrap()));
        assert!(!w.is_balancer("2001:db8::6".parse().unwrap()));
        assert!(!w.is_balancer("11.0.0.1".parse().unwrap()));
        let e = run(&["-u", "a:b", "--proxy-protocol-from", "10.0.0.0/33"]).unwrap_err();
        assert!(e.0.starts_with("--proxy-protocol-from: "), "{e}");
    }

    #[test]
    fn a_user_variable_that_is_not_set_is_an_error() {
        let e = run(&["--user-env", "SOCKS5D_TEST_CLI_NOT_SET"]).unwrap_err();
        assert!(e.0.contains("no SOCKS5D_TEST_CLI_NOT_SET"), "{e}");
    }
}
