//! Telling a service manager how start-up, reloads and stops go, by the
//! `sd_notify` protocol: one datagram of `KEY=VALUE` lines to the Unix
//! socket named in `$NOTIFY_SOCKET` (a path, or an abstract name written
//! with a leading '@'). Without `$NOTIFY_SOCKET` nothing is sent. A failed
//! send is logged, never fatal: the service goes on either way.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// What to tell the manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Every socket is bound and the service serves.
    Ready,
    /// A reload starts (SIGHUP); `Ready` follows when it is done.
    Reloading,
    /// The service is stopping (SIGINT or SIGTERM).
    Stopping,
}

/// The datagram for `state`. `monotonic` is CLOCK_MONOTONIC now, which a
/// reload message must carry (systemd 253 and later match it with the
/// reload they asked for).
pub fn message(state: State, monotonic: Duration) -> String {
    match state {
        State::Ready => "READY=1\nSTATUS=serving\n".to_owned(),
        State::Reloading => format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading\n",
            monotonic.as_micros()
        ),
        State::Stopping => "STOPPING=1\nSTATUS=stopping\n".to_owned(),
    }
}

fn monotonic_now() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Sends `state` to `$NOTIFY_SOCKET`, if set.
pub fn notify(state: State) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let send = || -> io::Result<()> {
        let addr = match path.to_str().and_then(|p| p.strip_prefix('@')) {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(&path)?,
        };
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(message(state, monotonic_now()).as_bytes(), &addr)?;
        Ok(())
    };
    if let Err(e) = send() {
        log::warn!(
            "readiness not notified: notify_socket={} error={}",
            crate::logfmt::LogSafe(path.to_string_lossy()),
            crate::logfmt::Quoted(e)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(
            message(State::Ready, Duration::ZERO),
            "READY=1\nSTATUS=serving\n"
        );
        assert_eq!(
            message(State::Reloading, Duration::from_millis(1500)),
            "RELOADING=1\nMONOTONIC_USEC=1500000\nSTATUS=reloading\n"
        );
        assert!(message(State::Stopping, Duration::ZERO).starts_with("STOPPING=1\n"));
    }
}
