//! socks5dctl: the command-line client of the socks5d management protocol
//! (docs/management-protocol.md).

use std::io::{self, BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::Duration;

use socks5d::mgmt::wire::{
    self, Login, LoginStatus, MAX_RESPONSE, Request, Response, Status, metric,
};
use socks5d::sys::sctp::SctpSocket;
use socks5d::users::{Role, valid_name, valid_password};

const USAGE: &str = "\
Usage: socks5dctl [OPTION]... COMMAND [ARG]...
Manage a running socks5d over its SCTP management protocol.

Commands:
  metrics                 every counter
  historic                SOCKS connections accepted since start
  concurrent              SOCKS connections open now
  bytes                   payload bytes relayed, both directions
  users                   list the users and their roles
  add-user NAME [--admin] add a user (a proxy user, or an administrator)
  del-user NAME           delete a user
  passwd NAME             change a user's password

Options:
  -L ADDR                 management address (default: 127.0.0.1)
  -P PORT                 management SCTP port (default: 8080)
  -U ADMIN                administrator to log in as (default: $SOCKS5DCTL_USER, else 'admin')
      --password-stdin    read the administrator's password from the first line of
                          standard input (and a new password from the second line)
      --json              print results as JSON
  -h, --help              print this help

Passwords are never taken from the command line. The administrator's password
comes from --password-stdin, else $SOCKS5DCTL_PASSWORD, else the terminal (not
echoed); a new password (add-user, passwd) from the second line of standard
input, else $SOCKS5DCTL_NEW_PASSWORD, else the terminal, asked twice.

Exit status:
  0   success
  2   bad command line
  3   cannot reach the server (no SCTP, refused, timed out)
  4   the server broke the protocol
  21  log in refused: wrong user or password, or not an administrator
  22  log in: version not supported        23  log in: server error
  24  log in: malformed message
  11  unsupported version   12  unknown command   13  malformed request
  14  user already exists   15  no such user      16  forbidden: last administrator
  17  server error: the change could not be made durable
  18  limit reached: the user table is full";

struct Args {
    addr: IpAddr,
    port: u16,
    user: String,
    password_stdin: bool,
    json: bool,
    command: String,
    rest: Vec<String>,
}

enum Failure {
    Usage(String),
    Transport(String),
    Protocol(String),
    Login(LoginStatus),
    Request(Status),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Transport(_) => 3,
            Failure::Protocol(_) => 4,
            Failure::Login(s) => 20 + u8::from(*s).min(9),
            Failure::Request(s) => 10 + u8::from(*s).min(9),
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Usage(m) => format!("{m} (see socks5dctl -h)"),
            Failure::Transport(m) => m.clone(),
            Failure::Protocol(m) => format!("protocol error: {m}"),
            Failure::Login(s) => format!("log in failed: {}", login_text(*s)),
            Failure::Request(s) => request_text(*s).to_owned(),
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
            "server error: the change could not be made durable; nothing was changed"
        }
        Status::LimitReached => "limit reached: the user table is full",
        Status::Unknown(_) => "unknown status",
    }
}

fn parse_args() -> Result<Option<Args>, Failure> {
    let mut args = Args {
        addr: IpAddr::from([127, 0, 0, 1]),
        port: 8080,
        user: std::env::var("SOCKS5DCTL_USER").unwrap_or_else(|_| "admin".into()),
        password_stdin: false,
        json: false,
        command: String::new(),
        rest: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    let usage = |m: String| Failure::Usage(m);
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| usage(format!("{name}: missing value")))
        };
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "-L" => {
                let v = value("-L")?;
                let bare = v.trim_start_matches('[').trim_end_matches(']');
                args.addr = bare
                    .parse()
                    .map_err(|_| usage(format!("-L: '{v}' is not an IP address")))?;
            }
            "-P" => {
                let v = value("-P")?;
                args.port = v
                    .parse()
                    .map_err(|_| usage(format!("-P: '{v}' is not a port")))?;
            }
            "-U" => args.user = value("-U")?,
            "--password-stdin" => args.password_stdin = true,
            "--json" => args.json = true,
            "--admin" if !args.command.is_empty() => args.rest.push(a),
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(usage(format!("unknown option '{}'", s.escape_default())));
            }
            _ if args.command.is_empty() => args.command = a,
            _ => args.rest.push(a),
        }
    }
    if args.command.is_empty() {
        return Err(usage("no command".into()));
    }
    Ok(Some(args))
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

/// Asks on the terminal with echo off.
fn prompt(text: &str) -> Result<String, Failure> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = io::stdin();
    let fd = stdin.as_fd();
    let Ok(saved) = tcgetattr(fd) else {
        return Err(Failure::Usage(
            "no terminal to ask for a password: use --password-stdin or SOCKS5DCTL_PASSWORD".into(),
        ));
    };
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    eprint!("{text}");
    let _ = io::stderr().flush();
    let _ = tcsetattr(fd, SetArg::TCSANOW, &quiet);
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(fd, SetArg::TCSANOW, &saved);
    eprintln!();
    r.map_err(|e| Failure::Usage(format!("reading the password: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

struct Client {
    sock: SctpSocket,
}

impl Client {
    fn connect(addr: SocketAddr) -> Result<Client, Failure> {
        let sock = SctpSocket::connect(addr, Some(Duration::from_secs(10))).map_err(|e| {
            let hint = socks5d::sys::sctp::unsupported_hint(&e)
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            Failure::Transport(format!("cannot connect to {addr}: {e}{hint}"))
        })?;
        Ok(Client { sock })
    }

    fn exchange(&self, msg: &[u8]) -> Result<Vec<u8>, Failure> {
        self.sock
            .send_message(msg)
            .map_err(|e| Failure::Transport(format!("send: {e}")))?;
        match self.sock.recv_message(MAX_RESPONSE) {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(Failure::Transport(
                "the server closed the association".into(),
            )),
            Err(e) => Err(Failure::Transport(format!("receive: {e}"))),
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
        metric::REFUSED => "refused_at_limit",
        metric::AUTH_PENALISED => "auth_refused_penalised",
        metric::PENALTIES => "auth_penalties",
        metric::CHECKS_REFUSED => "auth_checks_refused_busy",
        metric::MGMT_ABORTED => "mgmt_aborted_before_login",
        metric::LOG_SUPPRESSED => "access_log_lines_suppressed",
        metric::EVICTED => "handshakes_closed_at_fd_limit",
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
        "metrics" | "historic" | "concurrent" | "bytes" | "users" if args.rest.is_empty() => {}
        _ if takes_name => {
            name_arg()?;
            if args.command != "add-user" && args.rest.iter().any(|a| a == "--admin") {
                return Err(Failure::Usage("--admin goes with add-user only".into()));
            }
        }
        "metrics" | "historic" | "concurrent" | "bytes" | "users" => {
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
    let client = Client::connect(SocketAddr::new(args.addr, args.port))?;
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
            let mut all: Vec<(Role, Vec<u8>)> = Vec::new();
            loop {
                let offset = u32::try_from(all.len()).unwrap_or(u32::MAX);
                let Response::Users { total, users } =
                    client.request(&Request::ListUsers { offset })?
                else {
                    return Err(Failure::Protocol("unexpected response".into()));
                };
                let got = users.len();
                all.extend(users);
                if got == 0 || all.len() >= total as usize {
                    break;
                }
            }
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
            if args.json {
                println!("{{\"ok\": true}}");
            } else {
                println!("{}: done", args.command);
            }
            Ok(())
        }
        _ => unreachable!("checked above"),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
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
