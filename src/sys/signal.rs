//! Termination signals, taken synchronously by one thread.

use std::io;

use nix::sys::signal::{SigSet, Signal};

/// The signals that ask socks5d to stop.
fn termination() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

/// Blocks SIGINT and SIGTERM in the calling thread and in every thread it
/// starts afterwards, so that only `wait_for_termination` receives them.
pub fn block_termination() -> io::Result<()> {
    termination().thread_block()?;
    Ok(())
}

/// Waits until SIGINT or SIGTERM arrives; returns its name.
pub fn wait_for_termination() -> io::Result<&'static str> {
    let sig = termination().wait()?;
    Ok(sig.as_str())
}
