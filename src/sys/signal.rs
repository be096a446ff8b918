//! Signals, taken synchronously by one thread: waited for (socks5d), or
//! read from a descriptor that polls with others (socks5dctl top).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

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

/// Signals read from a descriptor (signalfd(2)) rather than delivered: for
/// a single-threaded program that waits in poll(2) for its input and its
/// signals alike. They stay blocked after the reader is dropped; it is
/// meant to live until the program exits.
#[derive(Debug)]
pub struct SignalReader {
    fd: SignalFd,
}

impl SignalReader {
    /// Blocks `signals` in the calling thread and opens a descriptor that
    /// becomes readable when one of them is pending.
    pub fn new(signals: &[Signal]) -> io::Result<SignalReader> {
        let mut set = SigSet::empty();
        for s in signals {
            set.add(*s);
        }
        set.thread_block()?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(SignalReader { fd })
    }

    /// Takes the next pending signal; `None` when there is none.
    pub fn next(&self) -> io::Result<Option<Signal>> {
        let Some(info) = self.fd.read_signal()? else {
            return Ok(None);
        };
        let signo = i32::try_from(info.ssi_signo).map_err(|_| io::ErrorKind::InvalidData)?;
        Ok(Some(Signal::try_from(signo)?))
    }
}

impl AsFd for SignalReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::raise;

    /// A signal raised while the reader exists is read from it, once.
    /// (SIGWINCH: ignored by default, harmless should it ever get through.)
    #[test]
    fn a_blocked_signal_is_read_from_the_descriptor() {
        let r = SignalReader::new(&[Signal::SIGWINCH]).expect("signalfd");
        assert_eq!(r.next().expect("read"), None);
        raise(Signal::SIGWINCH).expect("raise");
        assert_eq!(r.next().expect("read"), Some(Signal::SIGWINCH));
        assert_eq!(r.next().expect("read"), None);
    }
}
