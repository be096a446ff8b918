//! Asking for a password on the terminal, with echo off.

use std::io::{self, BufRead, Write};
use std::os::fd::AsFd;

use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};

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
