//! Child processes with a clean signal mask: the generator's one `unsafe`.
//!
//! The driver blocks SIGINT, SIGTERM and SIGHUP and waits for them in one
//! thread, so that an interrupted `make bench` still stops its proxies and
//! deletes its throw-away user. A blocked signal stays blocked across
//! fork and exec, and std's `Command` does not clear the mask: microsocks
//! and Dante would then ignore SIGTERM (and a terminal's Ctrl-C). Every
//! child is therefore started through [`command`], which empties the mask
//! in the child just before exec.

#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};

/// `Command::new(program)`, whose child starts with no signal blocked.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe functions may be called. It calls
    // sigemptyset and pthread_sigmask, both async-signal-safe (POSIX.1-2008
    // section 2.4.3), on a sigset_t on its own stack; it allocates nothing,
    // takes no lock and touches no state shared with the parent.
    unsafe {
        c.pre_exec(|| {
            pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(io::Error::from)
        });
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    /// A child started while this thread blocks SIGTERM has nothing blocked.
    #[test]
    fn children_start_with_an_empty_mask() {
        let handle = std::thread::spawn(|| {
            let mut set = SigSet::empty();
            set.add(Signal::SIGTERM);
            set.thread_block().unwrap();
            let out = command("grep")
                .args(["^SigBlk:", "/proc/self/status"])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        });
        let mask = handle.join().unwrap();
        assert_eq!(mask.trim(), "SigBlk:\t0000000000000000");
    }
}
