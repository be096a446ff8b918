//! A pseudo-terminal for a child that wants a terminal (socks5dctl top):
//! the child gets the slave side as its standard input, output and error;
//! the test keeps the master (what the child drew, the keys it types) and a
//! descriptor of the slave (its settings, before and after).

use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::pty::{Winsize, openpty};
use nix::sys::termios::{Termios, tcgetattr};

/// A pseudo-terminal and everything read from its master so far.
#[derive(Debug)]
pub struct Pty {
    /// The master side: the test's end.
    pub master: OwnedFd,
    /// The slave side: the terminal the child sees.
    pub slave: OwnedFd,
    out: Vec<u8>,
}

impl Pty {
    /// A new pseudo-terminal of `rows` by `cols`.
    pub fn open(rows: u16, cols: u16) -> Pty {
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let p = openpty(&size, None).expect("openpty");
        Pty {
            master: p.master,
            slave: p.slave,
            out: Vec::new(),
        }
    }

    /// The slave side, for a child's standard input, output or error.
    pub fn stdio(&self) -> Stdio {
        Stdio::from(self.slave.try_clone().expect("dup the pty's slave"))
    }

    /// The slave's terminal settings now.
    pub fn settings(&self) -> Termios {
        tcgetattr(&self.slave).expect("tcgetattr on the pty's slave")
    }

    /// Types `keys` on the terminal.
    pub fn type_keys(&self, keys: &[u8]) {
        let n = nix::unistd::write(&self.master, keys).expect("write to the pty's master");
        assert_eq!(n, keys.len(), "keys written");
    }

    /// Reads what the child wrote, waiting at most `wait` for the first
    /// byte; false when nothing came.
    fn read_some(&mut self, wait: Duration) -> bool {
        let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::try_from(ms).expect("a poll timeout")) {
            Ok(0) | Err(Errno::EINTR) => return false,
            Ok(_) => {}
            Err(e) => panic!("poll on the pty's master: {e}"),
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(&self.master, &mut buf) {
            Ok(n) => {
                self.out.extend_from_slice(&buf[..n]);
                n > 0
            }
            // The slave side is closed everywhere (not while the test
            // holds it).
            Err(Errno::EIO) => false,
            Err(e) => panic!("read from the pty's master: {e}"),
        }
    }

    /// Reads until what the child wrote since byte `from` holds `needle`;
    /// returns the offset just past it. Fails the test, with the output,
    /// after `within`.
    pub fn wait_for(&mut self, from: usize, needle: &str, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = find(&self.out[from.min(self.out.len())..], needle.as_bytes()) {
                return from + i + needle.len();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{needle:?} did not appear on the terminal within {within:?}; it shows:\n{}",
                self.text()
            );
            self.read_some(left.min(Duration::from_millis(100)));
        }
    }

    /// Reads whatever the child wrote that is still unread (all of it, once
    /// the child has exited: its writes are in the terminal's buffer).
    pub fn drain(&mut self) {
        while self.read_some(Duration::ZERO) {}
    }

    /// Every byte read so far.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Every byte read so far, as text with escapes shown.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.out)
            .escape_debug()
            .to_string()
    }
}

/// The offset of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
