//! Short-lived children of the tests (socks5dctl, curl, ncat): their output
//! read while they run, and a deadline.

use std::io::Read;
use std::process::{Child, Output};
use std::thread;
use std::time::{Duration, Instant};

/// Reads a child's stdout and stderr to the end (on threads of their own,
/// so that neither pipe fills up) and waits for it, killing it and failing
/// the test after `timeout`.
pub fn wait_output(child: &mut Child, what: &str, timeout: Duration) -> Output {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut v);
        }
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut v);
        }
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(st) => break st,
            None if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} still ran after {timeout:?}");
            }
        }
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

/// What a socks5dctl run produced.
#[derive(Debug)]
pub struct Ctl {
    /// The exit code (-1 for a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Ctl {
    fn from(out: Output) -> Ctl {
        Ctl {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}
