//! socks5dctl: the command-line client of the socks5d management protocol
//! (docs/management-protocol.md), over SCTP or over socks5d's Unix-domain
//! socket; `top` (top.rs) is its live view.

mod top;

use std::io::{self, BufRead};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use socks5d::logfmt::{LogSafe, Quoted};
use socks5d::mgmt::wire::{
    self, Login, LoginStatus, MAX_RESPONSE, Request, Response, Status, UserMetrics, metric,
    user_metric,
};
use socks5d::sys::sctp::{self, PathParams, SctpSocket};
use socks5d::sys::seqpacket::Conn;
use socks5d::users::{Role, valid_name, valid_password};

const USAGE: &str = "\
Usage: socks5dctl [OPTION]... COMMAND [ARG]...
Manage a running socks5d over its management protocol, over SCTP or over its
Unix-domain socket.

Commands:
  metrics                 every counter
  historic                SOCKS connections accepted since start
  concurrent              SOCKS connections open now
  bytes                   payload bytes relayed, both directions
  users                   list the users and their roles
  user-metrics            every user's counters (those the server keeps)
  add-user NAME [--admin] add a user (a proxy user, or an administrator)
  del-user NAME           delete a user
  passwd NAME             change a user's password
  reload                  make the server read its users (file or Redis) and its
                          access rules again (as SIGHUP)
  top [--interval S] [--once] [--users N]
                          a live view, redrawn every S seconds (default 1, from
                          0.1 to 60): connections, throughput, failures per
                          second, and the N busiest users (default 10); q or
                          Ctrl-C quits; --once prints one frame (two samples
                          S seconds apart) as plain text

Options:
  -L, --mgmt-listen ADDR  management address (default: 127.0.0.1); give it more
                          than once for one association over several addresses
                          of the server (multi-homing, sctp_connectx)
  -P, --mgmt-port PORT    management SCTP port (default: 8080)
      --unix PATH         use socks5d's Unix-domain socket at PATH instead of SCTP
                          (default: $SOCKS5DCTL_UNIX when no -L or -P is given)
  -U, --user ADMIN        administrator to log in as (default: $SOCKS5DCTL_USER,
                          else 'admin')
      --password-stdin    read the administrator's password from the first line of
                          standard input (and a new password from the second line)
      --json              print results as JSON
  -h, --help              print this help
  -v, --version           print the version

Passwords are never taken from the command line. The administrator's password
comes from --password-stdin, else $SOCKS5DCTL_PASSWORD, else the terminal (not
echoed); a new password (add-user, passwd) from the second line of standard
input, else $SOCKS5DCTL_NEW_PASSWORD, else the terminal, asked twice.

Exit status:
  0   success
  2   bad command line
  3   cannot reach the server (no SCTP, no such socket, refused, timed out)
  4   the server broke the protocol
  5   top: the terminal failed
  21  log in refused: wrong user or password, or not an administrator
  22  log in: version not supported        23  log in: server error
  24  log in: malformed message
  11  unsupported version   12  unknown command   13  malformed request
  14  user already exists   15  no such user      16  forbidden: last administrator
  17  server error: the change could not be made durable, or reload: the users
      file could not be read (nothing changed)
  18  limit reached: the user table is full";

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// Its SCTP endpoint: one association to all of these addresses.
    Sctp(Vec<SocketAddr>),
    /// Its Unix-domain socket.
    Unix(PathBuf),
}

/// What the command line asks for.
enum Parsed {
    Help,
    Version,
    Run(Args),
}

#[derive(Debug)]
struct Args {
    target: Target,
    user: String,
    password_stdin: bool,
    json: bool,
    command: String,
    rest: Vec<String>,
    /// The options of `top`.
    top: top::Options,
}

/// Why socks5dctl failed. Its message is a log line of socks5d's format
/// (README.md, "Log lines"): a fixed message, then `key=value` fields.
enum Failure {
    /// What is wrong with the command line.
    Usage(String),
    /// The server could not be reached: the whole line after the message.
    Transport(String),
    /// What in the server's answer broke the protocol.
    Protocol(String),
    /// What went wrong with the terminal of `top`.
    Terminal(String),
    Login(LoginStatus),
    Request(Status),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Transport(_) => 3,
            Failure::Protocol(_) => 4,
            Failure::Terminal(_) => 5,
            Failure::Login(s) => 20 + u8::from(*s).min(9),
            Failure::Request(s) => 10 + u8::from(*s).min(9),
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Usage(m) => format!(
                "bad command line: error={} help=\"socks5dctl -h\"",
                Quoted(m)
            ),
            Failure::Transport(m) => m.clone(),
            Failure::Protocol(m) => format!("protocol error: error={}", Quoted(m)),
            Failure::Terminal(m) => format!("terminal error: error={}", Quoted(m)),
            Failure::Login(s) => format!(
                "log in failed: status=x{:02x} reason={}",
                u8::from(*s),
                Quoted(login_text(*s))
            ),
            Failure::Request(s) => format!(
                "request failed: status=x{:02x} reason={}",
                u8::from(*s),
                Quoted(request_text(*s))
            ),
        }
    }
}

fn login_text(s: LoginStatus) -> &'static str {
    match s {
        LoginStatus::Denied => "wrong user or password, or not an administrator",
        LoginStatus::BadVersion => "the server does not support this protocol version",
        LoginStatus::ServerError => "server error",
        LoginStatus::Malformed => "the server found the log-in message malformed",
        LoginStatus::Success | LoginStatus::Unknown(_) => "unexpected status",
    }
}

fn request_text(s: Status) -> &'static str {
    match s {
        Status::Success => "success",
        Status::UnsupportedVersion => "the server does not support this protocol version",
        Status::UnknownCommand => "the server does not know this command",
        Status::Malformed => {
            "malformed request (check the name and password: no ':' or control characters in names; no NUL, CR or LF in passwords; 1 to 255 bytes)"
        }
        Status::UserExists => "user already exists",
        Status::NoSuchUser => "no such user",
        Status::Forbidden => {
            "forbidden: the change would leave the server without an administrator"
        }
        Status::ServerError => {
            "server error: the change could not be made durable (or, for reload, the \
             users file could not be read); nothing was changed"
        }
        Status::LimitReached => "limit reached: the user table is full",
        Status::Unknown(_) => "unknown status",
    }
}

/// Reads the command line `argv` (without the program name); `env` looks
/// up an environment variable.
fn parse_args(
    argv: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Parsed, Failure> {
    let mut args = Args {
        target: Target::Unix(PathBuf::new()),
        user: env("SOCKS5DCTL_USER").unwrap_or_else(|| "admin".into()),
        password_stdin: false,
        json: false,
        command: String::new(),
        rest: Vec::new(),
        top: top::Options::default(),
    };
    // Options of `top`, as given, to refuse them with any other command.
    let mut top_options: Vec<String> = Vec::new();
    let mut addrs: Vec<IpAddr> = Vec::new();
    let mut port: Option<u16> = None;
    let mut unix: Option<PathBuf> = None;
    let mut it = argv.into_iter();
    let usage = |m: String| Failure::Usage(m);
    while let Some(a) = it.next() {
        // "--opt value" and "--opt=value" alike.
        let (opt, inline) = match a.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| usage(format!("{name}: missing value")))
        };
        match opt.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-v" | "--version" => return Ok(Parsed::Version),
            "-L" | "--mgmt-listen" => {
                let v = value(&opt)?;
                let bare = v
                    .strip_prefix('[')
                    .and_then(|b| b.strip_suffix(']'))
                    .unwrap_or(&v);
                let ip: IpAddr = bare
                    .parse()
                    .map_err(|_| usage(format!("{opt}: '{v}' is not an IP address")))?;
                if !addrs.contains(&ip) {
                    addrs.push(ip);
                }
            }
            "-P" | "--mgmt-port" => {
                let v = value(&opt)?;
                port = Some(
                    v.parse()
                        .map_err(|_| usage(format!("{opt}: '{v}' is not a port")))?,
                );
            }
            "--unix" => {
                let v = value(&opt)?;
                if v.is_empty() {
                    return Err(usage("--unix: empty path".into()));
                }
                unix = Some(PathBuf::from(v));
            }
            "-U" | "--user" => args.user = value(&opt)?,
            "--password-stdin" if inline.is_none() => args.password_stdin = true,
            "--json" if inline.is_none() => args.json = true,
            "--admin" if inline.is_none() && !args.command.is_empty() => args.rest.push(a),
            "--interval" => {
                let v = value(&opt)?;
                args.top.interval =
                    top::parse_interval(&v).map_err(|m| usage(format!("{opt}: {m}")))?;
                top_options.push(opt);
            }
            "--users" => {
                let v = value(&opt)?;
                args.top.users = top::parse_users(&v).map_err(|m| usage(format!("{opt}: {m}")))?;
                top_options.push(opt);
            }
            "--once" if inline.is_none() => {
                args.top.once = true;
                top_options.push(opt);
            }
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(usage(format!("unknown option '{}'", a.escape_default())));
            }
            _ if args.command.is_empty() => args.command = a,
            _ => args.rest.push(a),
        }
    }
    let sctp_given = !addrs.is_empty() || port.is_some();
    args.target = match unix {
        Some(_) if sctp_given => {
            return Err(usage(
                "--unix and -L/-P name two different transports: give one".into(),
            ));
        }
        Some(path) => Target::Unix(path),
        None => match env("SOCKS5DCTL_UNIX").filter(|p| !p.is_empty()) {
            Some(path) if !sctp_given => Target::Unix(PathBuf::from(path)),
            _ => {
                if addrs.is_empty() {
                    addrs.push(IpAddr::from([127, 0, 0, 1]));
                }
                let port = port.unwrap_or(8080);
                Target::Sctp(addrs.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
            }
        },
    };
    if args.command.is_empty() {
        return Err(usage("no command".into()));
    }
    if args.command != "top"
        && let Some(o) = top_options.first()
    {
        return Err(usage(format!("{o} goes with top only")));
    }
    if args.command == "top" && args.json {
        return Err(usage("top has no --json output".into()));
    }
    Ok(Parsed::Run(args))
}

/// Reads passwords: stdin lines, the environment, or the terminal.
struct Passwords {
    stdin_lines: Option<io::Lines<io::StdinLock<'static>>>,
}

impl Passwords {
    fn next_stdin(&mut self) -> Option<String> {
        self.stdin_lines.as_mut()?.next()?.ok()
    }

    fn admin(&mut self, user: &str) -> Result<String, Failure> {
        if self.stdin_lines.is_some() {
            return self.next_stdin().ok_or_else(|| {
                Failure::Usage("--password-stdin: no password on standard input".into())
            });
        }
        if let Ok(p) = std::env::var("SOCKS5DCTL_PASSWORD") {
            return Ok(p);
        }
        prompt(&format!("Password for {user}: "))
    }

    fn new_password(&mut self, name: &str) -> Result<String, Failure> {
        if self.stdin_lines.is_some() {
            return self.next_stdin().ok_or_else(|| {
                Failure::Usage("--password-stdin: no new password on the second line".into())
            });
        }
        if let Ok(p) = std::env::var("SOCKS5DCTL_NEW_PASSWORD") {
            return Ok(p);
        }
        let a = prompt(&format!("New password for {name}: "))?;
        let b = prompt(&format!("Again, new password for {name}: "))?;
        if a != b {
            return Err(Failure::Usage("the two passwords differ".into()));
        }
        Ok(a)
    }
}

/// Every entry of a paged listing (LIST_USERS, USER_METRICS): `page`
/// answers TOTAL and the entries from OFFSET on; asks again until TOTAL is
/// reached or a page comes back empty.
fn pages<T>(
    mut page: impl FnMut(u32) -> Result<(u32, Vec<T>), Failure>,
) -> Result<Vec<T>, Failure> {
    let mut all = Vec::new();
    loop {
        let offset = u32::try_from(all.len()).unwrap_or(u32::MAX);
        let (total, entries) = page(offset)?;
        let got = entries.len();
        all.extend(entries);
        if got == 0 || all.len() >= total as usize {
            return Ok(all);
        }
    }
}

/// Asks on the terminal with echo off.
fn prompt(text: &str) -> Result<String, Failure> {
    match socks5d::sys::term::read_hidden(text) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(Failure::Usage(
            "no terminal to ask for a password: use --password-stdin or SOCKS5DCTL_PASSWORD".into(),
        )),
        Err(e) => Err(Failure::Usage(format!("reading the password: {e}"))),
    }
}

/// Why an SCTP socket could not be opened or connected, in words an
/// operator can act on: the kernel's SCTP hint (the same the server logs),
/// and the other way in.
fn sctp_failure(target: &str, e: &io::Error) -> String {
    let line = connect_failure(target, e);
    match sctp::unsupported_hint(e) {
        Some(hint) => format!(
            "{line} hint={}",
            Quoted(format_args!(
                "{hint}; or manage socks5d over its Unix-domain socket (socks5d \
                 --mgmt-unix PATH, socks5dctl --unix PATH)"
            ))
        ),
        None => line,
    }
}

/// The line saying that `target` could not be connected to.
fn connect_failure(target: impl std::fmt::Display, e: &io::Error) -> String {
    format!(
        "cannot connect: target={} error={}",
        LogSafe(target),
        Quoted(e)
    )
}

/// A connection to the server: one SCTP association, or one Unix
/// connection. Either carries one message per request and per response.
enum Client {
    Sctp(SctpSocket),
    Unix(Conn),
}

impl Client {
    fn connect(target: &Target) -> Result<Client, Failure> {
        let timeout = Some(Duration::from_secs(10));
        match target {
            // socks5d's own path settings: a request whose path fails
            // mid-command goes on another of the server's addresses within
            // a second, not after Linux's RTO of 1 to 60 s.
            Target::Sctp(addrs) => {
                SctpSocket::connect_many_with(addrs, timeout, Some(&PathParams::LAN))
                    .map(Client::Sctp)
                    .map_err(|e| {
                        let names: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
                        Failure::Transport(sctp_failure(&names.join(","), &e))
                    })
            }
            Target::Unix(path) => Conn::connect(path, timeout)
                .map(Client::Unix)
                .map_err(|e| Failure::Transport(connect_failure(path.display(), &e))),
        }
    }

    fn exchange(&self, msg: &[u8]) -> Result<Vec<u8>, Failure> {
        let sent = match self {
            Client::Sctp(s) => s.send_message(msg),
            Client::Unix(c) => c.send(msg).map(drop),
        };
        sent.map_err(|e| Failure::Transport(format!("send failed: error={}", Quoted(e))))?;
        let received = match self {
            Client::Sctp(s) => s.recv_message(MAX_RESPONSE),
            Client::Unix(c) => c.recv_message(MAX_RESPONSE),
        };
        match received {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(Failure::Transport("server closed the connection".into())),
            Err(e) => Err(Failure::Transport(format!(
                "receive failed: error={}",
                Quoted(e)
            ))),
        }
    }

    fn login(&self, user: &str, password: &str) -> Result<(), Failure> {
        let login = Login {
            username: user.as_bytes(),
            password: password.as_bytes(),
        };
        if !(1..=255).contains(&user.len()) || !(1..=255).contains(&password.len()) {
            return Err(Failure::Usage(
                "user and password must be 1 to 255 bytes".into(),
            ));
        }
        let mut out = Vec::new();
        login.emit(&mut out);
        let reply = self.exchange(&out)?;
        match wire::parse_login_reply(&reply) {
            Some(LoginStatus::Success) => Ok(()),
            Some(s) => Err(Failure::Login(s)),
            None => Err(Failure::Protocol("malformed log-in reply".into())),
        }
    }

    fn request(&self, req: &Request<'_>) -> Result<Response, Failure> {
        let mut out = Vec::new();
        req.emit(&mut out);
        let reply = self.exchange(&out)?;
        match Response::parse(&reply, req.command()) {
            Some(Response::Failed { status, .. }) => Err(Failure::Request(status)),
            Some(r) => Ok(r),
            None => Err(Failure::Protocol("malformed response".into())),
        }
    }
}

fn metric_name(id: u8) -> Option<&'static str> {
    Some(match id {
        metric::HISTORIC => "historic_connections",
        metric::CONCURRENT => "concurrent_connections",
        metric::BYTES => "bytes_transferred",
        metric::BYTES_UP => "bytes_client_to_target",
        metric::BYTES_DOWN => "bytes_target_to_client",
        metric::AUTH_FAILED => "auth_failures",
        metric::CONNECT_FAILED => "connect_failures",
        metric::UPTIME => "uptime_seconds",
        metric::UDP_ASSOCIATIONS => "udp_associations",
        metric::UDP_DATAGRAMS => "udp_datagrams",
        metric::UDP_DROPPED => "udp_datagrams_dropped",
        metric::DENIED => "requests_denied_by_rules",
        metric::BINDS => "binds_accepted",
        metric::REFUSED => "refused_at_limit",
        metric::AUTH_PENALISED => "auth_refused_penalised",
        metric::PENALTIES => "auth_penalties",
        metric::CHECKS_REFUSED => "auth_checks_refused_busy",
        metric::MGMT_ABORTED => "mgmt_aborted_before_login",
        metric::LOG_SUPPRESSED => "access_log_lines_suppressed",
        metric::EVICTED => "handshakes_closed_at_fd_limit",
        metric::SESSION_LIMIT => "refused_at_session_limit",
        metric::PROXY_REFUSED => "refused_for_proxy_header",
        metric::USERS_STORE_STALE => "users_store_stale",
        metric::USERS_STORE_LOST => "users_store_lost",
        _ => return None,
    })
}

fn json_string(s: &[u8]) -> String {
    let mut out = String::from("\"");
    for c in String::from_utf8_lossy(s).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn run(args: Args) -> Result<(), Failure> {
    let mut pw = Passwords {
        stdin_lines: args.password_stdin.then(|| io::stdin().lock().lines()),
    };
    let name_arg = || -> Result<&String, Failure> {
        match args.rest.iter().find(|a| *a != "--admin") {
            Some(n) if args.rest.iter().filter(|a| *a != "--admin").count() == 1 => Ok(n),
            _ => Err(Failure::Usage(format!(
                "{}: expected one user name",
                args.command
            ))),
        }
    };
    // Check the command line before asking for any password.
    let takes_name = matches!(args.command.as_str(), "add-user" | "del-user" | "passwd");
    match args.command.as_str() {
        "metrics" | "historic" | "concurrent" | "bytes" | "users" | "user-metrics" | "reload"
        | "top"
            if args.rest.is_empty() => {}
        _ if takes_name => {
            name_arg()?;
            if args.command != "add-user" && args.rest.iter().any(|a| a == "--admin") {
                return Err(Failure::Usage("--admin goes with add-user only".into()));
            }
        }
        "metrics" | "historic" | "concurrent" | "bytes" | "users" | "user-metrics" | "reload"
        | "top" => {
            return Err(Failure::Usage(format!(
                "{}: takes no argument",
                args.command
            )));
        }
        other => {
            return Err(Failure::Usage(format!(
                "unknown command '{}'",
                other.escape_default()
            )));
        }
    }

    if args.command == "top" {
        top::check_terminal(&args.top)?;
    }
    if takes_name && !valid_name(name_arg()?.as_bytes()) {
        return Err(Failure::Usage(
            "invalid user name: 1 to 255 bytes, no ':' and no control characters".into(),
        ));
    }
    let admin_pw = pw.admin(&args.user)?;
    let new_pw = match args.command.as_str() {
        "add-user" | "passwd" => {
            let p = pw.new_password(name_arg()?)?;
            if !valid_password(p.as_bytes()) {
                return Err(Failure::Usage(
                    "invalid password: 1 to 255 bytes, no NUL, CR or LF".into(),
                ));
            }
            Some(p)
        }
        _ => None,
    };
    let client = Client::connect(&args.target)?;
    client.login(&args.user, &admin_pw)?;

    let counter = |cmd: Request<'static>, label: &str, key: &str| -> Result<(), Failure> {
        match client.request(&cmd)? {
            Response::Counter { value, .. } => {
                if args.json {
                    println!("{{\"{key}\": {value}}}");
                } else {
                    println!("{label}: {value}");
                }
                Ok(())
            }
            _ => Err(Failure::Protocol("unexpected response".into())),
        }
    };
    match args.command.as_str() {
        "historic" => counter(
            Request::HistoricConnections,
            "historic connections",
            "historic_connections",
        ),
        "concurrent" => counter(
            Request::ConcurrentConnections,
            "concurrent connections",
            "concurrent_connections",
        ),
        "bytes" => counter(
            Request::BytesTransferred,
            "bytes transferred",
            "bytes_transferred",
        ),
        "metrics" => {
            let Response::Metrics(values) = client.request(&Request::Metrics)? else {
                return Err(Failure::Protocol("unexpected response".into()));
            };
            let known: Vec<(&str, u64)> = values
                .iter()
                .filter_map(|(id, v)| Some((metric_name(*id)?, *v)))
                .collect();
            if args.json {
                let body: Vec<String> =
                    known.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
                println!("{{{}}}", body.join(", "));
            } else {
                for (k, v) in known {
                    println!("{}: {v}", k.replace('_', " "));
                }
            }
            Ok(())
        }
        "users" => {
            let all: Vec<(Role, Vec<u8>)> =
                pages(
                    |offset| match client.request(&Request::ListUsers { offset })? {
                        Response::Users { total, users } => Ok((total, users)),
                        _ => Err(Failure::Protocol("unexpected response".into())),
                    },
                )?;
            let role = |r: Role| if r == Role::Admin { "admin" } else { "user" };
            if args.json {
                let body: Vec<String> = all
                    .iter()
                    .map(|(r, n)| {
                        format!(
                            "{{\"name\": {}, \"role\": \"{}\"}}",
                            json_string(n),
                            role(*r)
                        )
                    })
                    .collect();
                println!("[{}]", body.join(", "));
            } else {
                for (r, n) in &all {
                    println!("{:<6} {}", role(*r), String::from_utf8_lossy(n));
                }
            }
            Ok(())
        }
        "add-user" | "del-user" | "passwd" => {
            let name = name_arg()?.as_bytes();
            let new_pw = new_pw.unwrap_or_default();
            let req = match args.command.as_str() {
                "add-user" => Request::AddUser {
                    role: if args.rest.iter().any(|a| a == "--admin") {
                        Role::Admin
                    } else {
                        Role::Proxy
                    },
                    username: name,
                    password: new_pw.as_bytes(),
                },
                "del-user" => Request::DeleteUser { username: name },
                _ => Request::SetPassword {
                    username: name,
                    password: new_pw.as_bytes(),
                },
            };
            client.request(&req)?;
            done(&args)
        }
        "reload" => {
            client.request(&Request::Reload)?;
            done(&args)
        }
        "user-metrics" => {
            let all: Vec<UserMetrics> =
                pages(
                    |offset| match client.request(&Request::UserMetrics { offset })? {
                        Response::UserMetrics { total, users } => Ok((total, users)),
                        _ => Err(Failure::Protocol("unexpected response".into())),
                    },
                )?;
            print!("{}", user_metrics_text(&all, args.json));
            Ok(())
        }
        "top" => top::run(&client, &args.top),
        _ => unreachable!("checked above"),
    }
}

/// The answer to a change or a reload that succeeded.
fn done(args: &Args) -> Result<(), Failure> {
    if args.json {
        println!("{{\"ok\": true}}");
    } else {
        println!("{}: done", args.command);
    }
    Ok(())
}

fn user_metric_name(id: u8) -> Option<&'static str> {
    Some(match id {
        user_metric::SESSIONS => "sessions_opened",
        user_metric::OPEN => "sessions_open",
        user_metric::BYTES_UP => "bytes_client_to_target",
        user_metric::BYTES_DOWN => "bytes_target_to_client",
        user_metric::AUTH_FAILED => "auth_failures",
        user_metric::DENIED => "requests_denied",
        _ => return None,
    })
}

/// USER_METRICS as lines (one per user) or as a JSON array of objects;
/// IDs this client does not know are left out, as the protocol says.
fn user_metrics_text(users: &[UserMetrics], json: bool) -> String {
    let known = |u: &UserMetrics| -> Vec<(&'static str, u64)> {
        u.values
            .iter()
            .filter_map(|(id, v)| Some((user_metric_name(*id)?, *v)))
            .collect()
    };
    if json {
        let body: Vec<String> = users
            .iter()
            .map(|u| {
                let mut fields = vec![format!("\"name\": {}", json_string(&u.name))];
                fields.extend(known(u).iter().map(|(k, v)| format!("\"{k}\": {v}")));
                format!("{{{}}}", fields.join(", "))
            })
            .collect();
        return format!("[{}]\n", body.join(", "));
    }
    let mut out = String::new();
    for u in users {
        let values = known(u);
        let name = String::from_utf8_lossy(&u.name);
        if values.is_empty() {
            out.push_str(&format!("{name}: no counters kept\n"));
        } else {
            let list: Vec<String> = values
                .iter()
                .map(|(k, v)| format!("{} {v}", k.replace('_', " ")))
                .collect();
            out.push_str(&format!("{name}: {}\n", list.join(", ")));
        }
    }
    out
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1), |k| std::env::var(k).ok()) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("socks5dctl {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(f) => {
            eprintln!("socks5dctl: {}", f.message());
            return ExitCode::from(f.exit_code());
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("socks5dctl: {}", f.message());
            ExitCode::from(f.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str], env: &[(&str, &str)]) -> Result<Args, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let look = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match parse_args(argv.iter().map(|a| a.to_string()), look) {
            Ok(Parsed::Run(a)) => Ok(a),
            Ok(Parsed::Help) => Err("help".into()),
            Ok(Parsed::Version) => Err("version".into()),
            Err(f) => Err(f.message()),
        }
    }

    fn sctp(addrs: &[&str]) -> Target {
        Target::Sctp(addrs.iter().map(|a| a.parse().unwrap()).collect())
    }

    #[test]
    fn short_and_long_options_alike() {
        let short = parse(&["-L", "::1", "-P", "9000", "-U", "root", "metrics"], &[]).unwrap();
        for long in [
            &[
                "--mgmt-listen",
                "::1",
                "--mgmt-port",
                "9000",
                "--user",
                "root",
                "metrics",
            ][..],
            &[
                "--mgmt-listen=[::1]",
                "--mgmt-port=9000",
                "--user=root",
                "metrics",
            ],
        ] {
            let a = parse(long, &[]).unwrap();
            assert_eq!(a.target, short.target, "{long:?}");
            assert_eq!(a.user, "root");
        }
        assert_eq!(short.target, sctp(&["[::1]:9000"]));
        assert_eq!(parse(&["--version"], &[]).unwrap_err(), "version");
        assert_eq!(parse(&["-v"], &[]).unwrap_err(), "version");
        assert_eq!(parse(&["--help"], &[]).unwrap_err(), "help");
    }

    #[test]
    fn several_addresses_make_one_target() {
        let a = parse(
            &["-L", "127.0.0.1", "-L", "::1", "-P", "8081", "users"],
            &[],
        )
        .unwrap();
        assert_eq!(a.target, sctp(&["127.0.0.1:8081", "[::1]:8081"]));
        let d = parse(&["users"], &[]).unwrap();
        assert_eq!(d.target, sctp(&["127.0.0.1:8080"]));
    }

    #[test]
    fn the_unix_socket_from_the_option_or_the_environment() {
        let unix = |p: &str| Target::Unix(PathBuf::from(p));
        let env = [("SOCKS5DCTL_UNIX", "/run/s.sock")];
        assert_eq!(
            parse(&["--unix", "/x", "reload"], &[]).unwrap().target,
            unix("/x")
        );
        assert_eq!(
            parse(&["--unix=/x", "reload"], &env).unwrap().target,
            unix("/x")
        );
        assert_eq!(
            parse(&["reload"], &env).unwrap().target,
            unix("/run/s.sock")
        );
        // -L or -P on the command line wins over the environment.
        let a = parse(&["-P", "9", "reload"], &env).unwrap();
        assert_eq!(a.target, sctp(&["127.0.0.1:9"]));
        let e = parse(&["--unix", "/x", "-L", "::1", "reload"], &[]).unwrap_err();
        assert!(e.contains("two different transports"), "{e}");
        assert!(parse(&["--unix", "", "reload"], &[]).is_err());
    }

    #[test]
    fn bad_command_lines() {
        for argv in [
            &["-L", "example.com", "users"][..],
            &["-P", "x", "users"],
            &["--mgmt-port"],
            &["--frob", "users"],
            &["--json=1", "users"],
            &[],
        ] {
            assert!(parse(argv, &[]).is_err(), "{argv:?}");
        }
    }

    #[test]
    fn the_options_of_top() {
        let a = parse(&["top"], &[]).unwrap();
        assert_eq!(a.top, top::Options::default());
        let a = parse(
            &["top", "--interval", "2.5", "--once", "--users=3"],
            &[("SOCKS5DCTL_UNIX", "/s")],
        )
        .unwrap();
        assert_eq!(a.command, "top");
        assert!(a.rest.is_empty());
        assert_eq!(
            a.top,
            top::Options {
                interval: Duration::from_millis(2500),
                once: true,
                users: 3
            }
        );
        // Before the command as well as after it.
        assert!(parse(&["--once", "top"], &[]).unwrap().top.once);
        for (argv, says) in [
            (&["metrics", "--once"][..], "--once goes with top only"),
            (
                &["users", "--interval", "2"],
                "--interval goes with top only",
            ),
            (&["top", "--interval", "0"], "--interval: '0' is not"),
            (&["top", "--users", "-1"], "--users: '-1' is not"),
            (&["top", "--once=1"], "unknown option"),
            (&["top", "--json", "--once"], "top has no --json"),
        ] {
            let e = parse(argv, &[]).unwrap_err();
            assert!(e.contains(says), "{argv:?}: {e}");
        }
    }

    /// The same explanation as the server's, for both errno values a
    /// kernel without SCTP gives, and the way in without SCTP.
    #[test]
    fn no_sctp_is_explained_for_both_errnos() {
        for errno in [libc::EPROTONOSUPPORT, libc::ESOCKTNOSUPPORT] {
            let e = io::Error::from_raw_os_error(errno);
            let text = sctp_failure("127.0.0.1:8080", &e);
            let hint = sctp::unsupported_hint(&e).unwrap();
            assert!(text.contains(hint), "{text}");
            assert!(text.contains(&format!("os error {errno}")), "{text}");
            assert!(text.contains("--unix PATH"), "{text}");
        }
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert!(!sctp_failure("x", &refused).contains("modprobe"));
    }

    #[test]
    fn user_metrics_human_and_json() {
        let users = [
            UserMetrics {
                name: b"alice".to_vec(),
                values: vec![
                    (user_metric::SESSIONS, 3),
                    (0xEE, 9),
                    (user_metric::BYTES_UP, 100),
                ],
            },
            UserMetrics {
                name: b"b\"ob".to_vec(),
                values: vec![],
            },
        ];
        assert_eq!(
            user_metrics_text(&users, false),
            "alice: sessions opened 3, bytes client to target 100\nb\"ob: no counters kept\n"
        );
        assert_eq!(
            user_metrics_text(&users, true),
            "[{\"name\": \"alice\", \"sessions_opened\": 3, \"bytes_client_to_target\": 100}, \
             {\"name\": \"b\\\"ob\"}]\n"
        );
        assert_eq!(user_metrics_text(&[], true), "[]\n");
    }
}
