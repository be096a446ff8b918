//! The terminal: a password asked with echo off, raw mode for a full-screen
//! view (restored when dropped), and the window size.

use std::io::{self, BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::termios::{LocalFlags, SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

/// Prints `prompt` on standard error and reads one line from standard
/// input with echo off; `Ok(None)` when standard input is no terminal.
pub fn read_hidden(prompt: &str) -> io::Result<Option<String>> {
    let stdin = io::stdin();
    let fd = stdin.as_fd();
    let Ok(saved) = tcgetattr(fd) else {
        return Ok(None);
    };
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    eprint!("{prompt}");
    let _ = io::stderr().flush();
    let _ = tcsetattr(fd, SetArg::TCSANOW, &quiet);
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(fd, SetArg::TCSANOW, &saved);
    eprintln!();
    r?;
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

/// A terminal in raw mode until dropped, when its settings are put back:
/// every key arrives as typed, one byte at a time, unechoed, Ctrl-C
/// included (as byte 3, no SIGINT); output processing is left as it was,
/// so a newline still returns the carriage.
#[derive(Debug)]
pub struct RawMode {
    /// A duplicate of the terminal's descriptor, so that the guard does not
    /// borrow its owner.
    fd: OwnedFd,
    /// The settings to put back.
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal on `fd` into raw mode; an error if `fd` is no
    /// terminal.
    pub fn enter(fd: BorrowedFd<'_>) -> io::Result<RawMode> {
        let fd = fd.try_clone_to_owned()?;
        let saved = tcgetattr(&fd)?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        raw.output_flags = saved.output_flags;
        tcsetattr(&fd, SetArg::TCSAFLUSH, &raw)?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing to do about a failure here (a terminal that hung up).
        let _ = tcsetattr(&self.fd, SetArg::TCSANOW, &self.saved);
    }
}

/// The size of the terminal on `fd`: (rows, columns).
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which
    // points to a live, writable one for the call.
    syscall!(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) })?;
    Ok((ws.ws_row, ws.ws_col))
}

/// Sets the size of the terminal on `fd` (either side of a pseudo-terminal)
/// to `rows` by `cols`; the kernel sends SIGWINCH to the terminal's
/// foreground process group, if it has one.
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which
    // points to a live one for the call.
    syscall!(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::pty::openpty;

    /// A size set on a pseudo-terminal is the size read back from either
    /// side; raw mode turns echo and line editing off and is undone on drop.
    #[test]
    fn window_size_and_raw_mode_on_a_pty() {
        let pty = openpty(None, None).expect("openpty");
        set_window_size(pty.master.as_fd(), 31, 97).expect("TIOCSWINSZ");
        assert_eq!(
            window_size(pty.slave.as_fd()).expect("TIOCGWINSZ"),
            (31, 97)
        );
        assert_eq!(
            window_size(pty.master.as_fd()).expect("TIOCGWINSZ"),
            (31, 97)
        );

        let before = tcgetattr(&pty.slave).expect("tcgetattr");
        assert!(
            before
                .local_flags
                .contains(LocalFlags::ICANON | LocalFlags::ECHO)
        );
        let raw = RawMode::enter(pty.slave.as_fd()).expect("raw mode");
        let during = tcgetattr(&pty.slave).expect("tcgetattr");
        assert!(
            !during
                .local_flags
                .intersects(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG)
        );
        assert_eq!(during.output_flags, before.output_flags);
        drop(raw);
        let after = tcgetattr(&pty.slave).expect("tcgetattr");
        assert_eq!(after.local_flags, before.local_flags);
        assert_eq!(after.input_flags, before.input_flags);
    }

    #[test]
    fn no_terminal_no_raw_mode() {
        let f = std::fs::File::open("/dev/null").expect("open /dev/null");
        assert!(RawMode::enter(f.as_fd()).is_err());
        assert!(window_size(f.as_fd()).is_err());
    }
}
