//! socks5d: configuration, start the workers and aggregator, wait for a
//! termination signal, drain.

use std::io::Write;
use std::process::ExitCode;

use socks5d::cli::{self, Command};
use socks5d::server::Server;
use socks5d::sys;
use socks5d::sys::notify::{State, notify};
use socks5d::sys::signal::Request;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();

    let args: Vec<String> = std::env::args().collect();
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
            eprintln!("socks5d: {e} (see socks5d -h)");
            return ExitCode::from(2);
        }
    };

    // Passwords given with -u or --admin: hidden from /proc/PID/cmdline and
    // ps from here on, before any thread starts.
    let passwords = cli::password_spans(&args);
    drop(args);
    if !passwords.is_empty() {
        match sys::argv::overwrite(&passwords) {
            Ok(()) => log::warn!(
                "passwords given with -u or --admin were visible to other local users \
                 (ps, /proc) until now and stay in the shell's history; they are hidden \
                 from now on. A users file (--users-file) keeps them off the command line"
            ),
            Err(e) => log::warn!(
                "passwords given with -u or --admin stay visible to other local users \
                 (ps, /proc): cannot overwrite them ({e}); a users file (--users-file) \
                 keeps them off the command line"
            ),
        }
    }

    // Signals go to one thread only: block them before any thread starts.
    if let Err(e) = sys::signal::block() {
        eprintln!("socks5d: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }

    let grace = opts.config.worker.grace;
    let mgmt_addrs = opts.config.mgmt.as_ref().map(|m| {
        m.addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    });
    let server = match Server::start(opts.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("socks5d: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(user) = &opts.run_as {
        if let Err(e) = sys::privs::drop_to(user) {
            eprintln!("socks5d: --run-as {user}: {e}");
            return ExitCode::FAILURE;
        }
        log::info!("running as {user}");
    }
    let users = server.users().snapshot().len();
    if users == 0 {
        log::warn!("no users: clients connect without authentication (method X'00')");
    } else {
        log::info!("{users} user(s); clients must authenticate (RFC 1929)");
    }
    log::info!("{} workers", server.workers());
    if let (Some(port), Some(addrs)) = (server.mgmt_port(), mgmt_addrs) {
        log::info!("management (SCTP) listening on {addrs} port {port}");
    }
    for a in server.local_addrs() {
        log::info!("SOCKS5 listening on {a}");
    }
    notify(State::Ready);

    loop {
        match sys::signal::wait() {
            Ok(Request::Reload) => {
                log::info!("SIGHUP: reloading");
                notify(State::Reloading);
                server.reload();
                notify(State::Ready);
            }
            Ok(Request::Stop(sig)) => {
                log::info!("{sig}: no new connections; open tunnels have {grace:?} to finish");
                notify(State::Stopping);
                break;
            }
            Err(e) => {
                log::error!("waiting for signals: {e}; stopping");
                break;
            }
        }
    }
    let totals = server.shutdown();
    log::info!(
        "stopped: {} connections served, {} bytes relayed",
        totals.historic,
        totals.bytes()
    );
    let _ = std::io::stdout().flush();
    ExitCode::SUCCESS
}
