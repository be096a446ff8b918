//! Signals, taken synchronously by one thread.

use std::io;

use nix::sys::signal::{SigSet, Signal};

/// What a signal asks of socks5d.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGINT or SIGTERM (its name): stop.
    Stop(&'static str),
    /// SIGHUP: reload the users file and reopen the access log.
    Reload,
}

fn handled() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and in every
/// thread it starts afterwards, so that only `wait` receives them.
pub fn block() -> io::Result<()> {
    handled().thread_block()?;
    Ok(())
}

/// Waits for the next SIGINT, SIGTERM or SIGHUP.
pub fn wait() -> io::Result<Request> {
    Ok(match handled().wait()? {
        Signal::SIGHUP => Request::Reload,
        sig => Request::Stop(sig.as_str()),
    })
}
