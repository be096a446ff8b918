//! socks5d: configuration, start the workers and aggregator, wait for a
//! termination signal, drain.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;

use socks5d::cli::{self, Command};
use socks5d::config_file::{self, Entry};
use socks5d::logfmt::{LogSafe, Quoted};
use socks5d::server::Server;
use socks5d::sys;
use socks5d::sys::notify::{State, notify};
use socks5d::sys::signal::Request;

/// The safe default rules for `config`'s listeners, as a rules file.
fn default_rules_text(config: &socks5d::server::Config) -> String {
    let mut own = config.socks.clone();
    if let Some(m) = &config.mgmt {
        own.extend(
            m.addrs
                .iter()
                .map(|&a| std::net::SocketAddr::new(a, m.port)),
        );
    }
    let host = sys::net::host_addrs().unwrap_or_default();
    socks5d::rules::Rules::print_default(&own, &host)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();

    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("user") {
        // The password of a --users-redis URL, hidden from ps while the
        // command runs.
        let _ = sys::argv::overwrite(&cli::redis_password_spans(&args));
        return user_command(&args[2..]);
    }
    let opts = match cli::parse(args.iter().skip(1).cloned()) {
        Ok(Command::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("socks5d {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(o)) => o,
        Err(e) => {
            eprintln!(
                "socks5d: bad command line: error={} help=\"socks5d -h\"",
                Quoted(e)
            );
            return ExitCode::from(2);
        }
    };
    if opts.print_default_rules {
        print!("{}", default_rules_text(&opts.config));
        return ExitCode::SUCCESS;
    }

    // The config file, to tell on SIGHUP which of its settings changed;
    // options the command line gives are not the file's.
    let given: Vec<String> = args
        .iter()
        .skip(1)
        .filter_map(|a| config_file::long_name(a))
        .map(str::to_owned)
        .collect();
    let mut config = cli::config_path(&args).map(|path| {
        let entries = read_config(&path).unwrap_or_default();
        warn_if_readable(&path, &entries);
        (path, entries)
    });

    // Passwords given with -u or --admin, and in a --users-redis URL: hidden
    // from /proc/PID/cmdline and ps from here on, before any thread starts.
    let passwords = cli::password_spans(&args);
    let redis_password = cli::redis_password_spans(&args);
    drop(args);
    if let Err(e) = sys::argv::overwrite(&redis_password) {
        log::warn!(
            "redis password not hidden: option=--users-redis error={} hint=\"it stays \
             visible to other local users (ps, /proc); a config file (--config) keeps it \
             off the command line\"",
            Quoted(e)
        );
    }
    if !passwords.is_empty() {
        match sys::argv::overwrite(&passwords) {
            Ok(()) => log::warn!(
                "command-line passwords hidden: options=-u,--admin hint=\"they were visible \
                 to other local users (ps, /proc) until now and stay in the shell's history; \
                 a users file (--users-file) keeps them off the command line\""
            ),
            Err(e) => log::warn!(
                "command-line passwords not hidden: options=-u,--admin error={} hint=\"they \
                 stay visible to other local users (ps, /proc); a users file (--users-file) \
                 keeps them off the command line\"",
                Quoted(e)
            ),
        }
    }

    // Signals go to one thread only: block them before any thread starts.
    if let Err(e) = sys::signal::block() {
        eprintln!("socks5d: cannot block signals: error={}", Quoted(e));
        return ExitCode::FAILURE;
    }

    let grace = opts.config.worker.grace;
    let mgmt_addrs = opts.config.mgmt.as_ref().map(|m| {
        m.addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    });
    let server = match Server::start(opts.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("socks5d: not started: error={}", Quoted(e));
            return ExitCode::FAILURE;
        }
    };
    if let Some(user) = &opts.run_as {
        if let Err(e) = sys::privs::drop_to(user) {
            eprintln!(
                "socks5d: cannot drop privileges: run_as={} error={}",
                LogSafe(user),
                Quoted(e)
            );
            return ExitCode::FAILURE;
        }
        log::info!("privileges dropped: run_as={}", LogSafe(user));
    }
    let users = server.users().snapshot().len();
    if users == 0 {
        log::warn!("clients connect without authentication: users=0 method=x00");
    } else {
        log::info!("clients must authenticate: users={users} method=x02");
    }
    log::info!("workers started: workers={}", server.workers());
    if let (Some(port), Some(addrs)) = (server.mgmt_port(), mgmt_addrs) {
        log::info!("management listening: transport=sctp addrs={addrs} port={port}");
    }
    if let Some(path) = server.mgmt_unix() {
        log::info!(
            "management listening: transport=unix path={}",
            LogSafe(path.display())
        );
    }
    if let Some(a) = server.metrics_addr() {
        log::info!("metrics listening: addr={a} path=/metrics");
    }
    for a in server.local_addrs() {
        log::info!("socks5 listening: addr={a}");
    }
    notify(State::Ready);

    loop {
        match sys::signal::wait() {
            Ok(Request::Reload) => {
                log::info!("reloading: signal=SIGHUP");
                notify(State::Reloading);
                server.reload();
                if let Some((path, entries)) = &mut config {
                    match read_config(path) {
                        Ok(now) => {
                            let mut names = config_file::changed(entries, &now);
                            names.retain(|n| !given.contains(n));
                            if !names.is_empty() {
                                log::warn!(
                                    "config changes wait for a restart: path={} settings={}",
                                    LogSafe(path.display()),
                                    names.join(",")
                                );
                            }
                            *entries = now;
                        }
                        Err(e) => log::error!("config not reloaded: error={}", Quoted(e)),
                    }
                }
                notify(State::Ready);
            }
            Ok(Request::Stop(sig)) => {
                log::info!("stopping: signal={sig} grace_s={}", grace.as_secs_f64());
                notify(State::Stopping);
                break;
            }
            Err(e) => {
                log::error!("stopping on a signal error: error={}", Quoted(e));
                break;
            }
        }
    }
    let totals = server.shutdown();
    log::info!(
        "stopped: connections={} bytes={}",
        totals.historic,
        totals.bytes()
    );
    let _ = std::io::stdout().flush();
    ExitCode::SUCCESS
}

/// The config file's option lines, or why not.
fn read_config(path: &Path) -> Result<Vec<Entry>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    config_file::parse(&text).map_err(|(line, why)| format!("{}:{line}: {why}", path.display()))
}

/// A config file that holds passwords must be for its owner's eyes only.
fn warn_if_readable(path: &Path, entries: &[Entry]) {
    let has_passwords = entries.iter().any(|e| {
        e.name == "user"
            || e.name == "admin"
            || (e.name == "users-redis" && e.value.as_deref().is_some_and(|v| v.contains('@')))
    });
    if let Ok(meta) = std::fs::metadata(path)
        && has_passwords
        && meta.permissions().mode() & 0o077 != 0
    {
        log::warn!(
            "config file with passwords readable by others: path={} mode={:o} hint={}",
            LogSafe(path.display()),
            meta.permissions().mode() & 0o777,
            Quoted(format_args!("chmod 600 {}", path.display()))
        );
    }
}

/// `socks5d user ...`: changes the users file directly (see
/// `cli::USER_USAGE`). Exit status 0, 1 when the change is refused or the
/// file cannot be written, 2 for a bad command line.
fn user_command(args: &[String]) -> ExitCode {
    use socks5d::users::Role;
    use socks5d::users::store::{UserChange, edit_file};

    let cmd = match cli::parse_user_command(args) {
        Ok(Some(c)) => c,
        Ok(None) => {
            println!("{}", cli::USER_USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!(
                "socks5d: bad command line: error={} help=\"socks5d user -h\"",
                Quoted(e)
            );
            return ExitCode::from(2);
        }
    };
    let password = |name: &str| -> Result<Vec<u8>, String> {
        if cmd.password_stdin {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("reading standard input: {e}"))?;
            let p = line.trim_end_matches(['\r', '\n']).as_bytes().to_vec();
            wipe_string(&mut line);
            return Ok(p);
        }
        let ask = |what: &str| match socks5d::sys::term::read_hidden(what) {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err("no terminal to ask for the password: use --password-stdin".to_owned()),
            Err(e) => Err(format!("reading the password: {e}")),
        };
        let mut a = ask(&format!("Password for {name}: "))?;
        let mut b = ask(&format!("Again, password for {name}: "))?;
        let same = a == b;
        wipe_string(&mut b);
        if !same {
            wipe_string(&mut a);
            return Err("the two passwords differ".into());
        }
        Ok(std::mem::take(&mut a).into_bytes())
    };
    let change = match &cmd.action {
        cli::UserAction::List => UserChange::Reload,
        cli::UserAction::Del { name } => UserChange::Delete {
            name: name.as_bytes().to_vec(),
        },
        cli::UserAction::Add { name, admin } => match password(name) {
            Ok(p) => UserChange::Add {
                name: name.as_bytes().to_vec(),
                password: p,
                role: if *admin { Role::Admin } else { Role::Proxy },
            },
            Err(e) => {
                eprintln!("socks5d: no password: error={}", Quoted(e));
                return ExitCode::FAILURE;
            }
        },
        cli::UserAction::Passwd { name } => match password(name) {
            Ok(p) => UserChange::SetPassword {
                name: name.as_bytes().to_vec(),
                password: p,
            },
            Err(e) => {
                eprintln!("socks5d: no password: error={}", Quoted(e));
                return ExitCode::FAILURE;
            }
        },
    };
    let (edited, place, hint) = match &cmd.users {
        cli::UsersAt::File(path) => (
            edit_file(path, &change, cmd.cost),
            format!("path={}", LogSafe(path.display())),
            "a running socks5d reads it at its next change, on SIGHUP or on RELOAD",
        ),
        cli::UsersAt::Redis(at) => (
            socks5d::users::redis_store::edit(at, &change, cmd.cost),
            format!("store={at} key={}", LogSafe(at.key())),
            "published: every running socks5d on this store applies it at once",
        ),
    };
    let what = match &cmd.users {
        cli::UsersAt::File(_) => "users file",
        cli::UsersAt::Redis(_) => "users store",
    };
    match edited {
        Ok(table) => {
            if let cli::UserAction::List = cmd.action {
                for u in table.iter() {
                    let role = match u.role {
                        Role::Admin => "admin",
                        Role::Proxy => "user",
                    };
                    println!("{role}\t{}", u.name);
                }
            } else {
                eprintln!(
                    "socks5d: {what} changed: {change} {place} hint={}",
                    Quoted(hint)
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            match cmd.action {
                cli::UserAction::List => {
                    eprintln!("socks5d: {what} not read: {place} error={}", Quoted(e))
                }
                _ => eprintln!(
                    "socks5d: {what} not changed: {change} {place} error={}",
                    Quoted(e)
                ),
            }
            ExitCode::FAILURE
        }
    }
}

/// Wipes a string's bytes before it is freed (`into_bytes` keeps its
/// buffer).
fn wipe_string(s: &mut String) {
    let mut v = std::mem::take(s).into_bytes();
    socks5d::users::wipe(&mut v);
}
