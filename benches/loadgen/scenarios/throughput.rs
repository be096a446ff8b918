//! Throughput: N tunnels move a fixed volume together, one way.
//!
//! The tunnels are opened first; the clock starts when all of them are
//! ready and stops when the last one is done: an upload is done when the
//! sink has answered that every byte arrived, a download when the last byte
//! is read. GiB/s is the whole volume over that time.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use super::{Common, Errors, Meter, failed};
use crate::client::is_timeout;
use crate::line::Line;
use crate::targets::{ACK, Bulk, CHUNK, DOWNLOAD, UPLOAD, header};

/// Which way the bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client to target.
    Up,
    /// Target to client.
    Down,
}

/// The knobs of a throughput run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Tunnels in parallel.
    pub tunnels: usize,
    /// Bytes in all, shared evenly among the tunnels.
    pub bytes: u64,
    /// Upload or download.
    pub dir: Dir,
}

fn io_kind(e: &io::Error) -> &'static str {
    if is_timeout(e) {
        "timeout"
    } else if e.kind() == io::ErrorKind::UnexpectedEof {
        "eof"
    } else {
        "io"
    }
}

/// Moves `n` bytes one way over an open tunnel to the sink/source.
fn transfer(s: &mut TcpStream, dir: Dir, n: u64) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut left = n;
    match dir {
        Dir::Up => {
            s.write_all(&header(UPLOAD, n))?;
            while left > 0 {
                let k = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                s.write_all(&buf[..k])?;
                left -= k as u64;
            }
            let mut ack = [0u8; 1];
            s.read_exact(&mut ack)?;
            if ack != [ACK] {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad answer"));
            }
        }
        Dir::Down => {
            s.write_all(&header(DOWNLOAD, n))?;
            while left > 0 {
                let k = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                match s.read(&mut buf[..k]) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(got) => left -= got as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// Runs the scenario; the line has `gib_s` when every tunnel finished.
pub fn run(c: &Common, p: &Params) -> Line {
    let mut line = c.line("throughput");
    let tunnels = p.tunnels.max(1);
    let per = p.bytes / tunnels as u64;
    line.put("tunnels", tunnels)
        .put("dir", if p.dir == Dir::Up { "up" } else { "down" })
        .put("bytes", per * tunnels as u64);
    let bulk = match Bulk::start() {
        Ok(b) => b,
        Err(e) => return failed(line, "target", e),
    };
    let mut errors = Errors::default();
    let mut streams = Vec::new();
    for _ in 0..tunnels {
        match c.route.open(bulk.addr(), c.timeout) {
            Ok(s) => streams.push(s),
            Err(e) => {
                eprintln!("loadgen: opening a tunnel: {e}");
                errors.add(e.kind());
            }
        }
    }
    if errors.total() > 0 {
        errors.put(&mut line);
        return line;
    }
    let go = Arc::new(Barrier::new(tunnels + 1));
    let workers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            let go = Arc::clone(&go);
            let dir = p.dir;
            thread::spawn(move || {
                go.wait();
                transfer(&mut s, dir, per).map(|()| Instant::now())
            })
        })
        .collect();
    let meter = Meter::start(c.proxy_pid);
    let start = Instant::now();
    go.wait();
    let mut last = start;
    for w in workers {
        match w.join() {
            Ok(Ok(end)) => last = last.max(end),
            Ok(Err(e)) => {
                eprintln!("loadgen: transfer: {e}");
                errors.add(io_kind(&e));
            }
            Err(_) => errors.add("panic"),
        }
    }
    meter.finish(&mut line);
    errors.put(&mut line);
    if errors.total() == 0 {
        let secs = (last - start).as_secs_f64().max(1e-9);
        line.num("xfer_secs", secs, 3).num(
            "gib_s",
            (per * tunnels as u64) as f64 / secs / (1u64 << 30) as f64,
            3,
        );
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Route;
    use std::time::Duration;

    fn direct() -> Common {
        Common {
            route: Route::Direct,
            peer: "direct".into(),
            case: "t".into(),
            round: 1,
            proxy_pid: None,
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn direct_upload_and_download_report_a_rate() {
        for (dir, name) in [(Dir::Up, "up"), (Dir::Down, "down")] {
            let p = Params {
                tunnels: 3,
                bytes: 8 << 20,
                dir,
            };
            let l = run(&direct(), &p);
            assert_eq!(l.get("ok"), Some("1"), "{l}");
            assert_eq!(l.get("dir"), Some(name));
            assert!(l.number("gib_s").unwrap() > 0.0, "{l}");
            // Evenly shared: 3 tunnels cannot split 8 MiB exactly.
            assert_eq!(l.number("bytes"), Some(((8u64 << 20) / 3 * 3) as f64));
        }
    }

    #[test]
    fn a_dead_proxy_is_an_error_not_a_number() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = direct();
        c.route = Route::Socks {
            proxy: ([127, 0, 0, 1], port).into(),
            auth: crate::client::Auth::None,
        };
        let l = run(
            &c,
            &Params {
                tunnels: 2,
                bytes: 1 << 20,
                dir: Dir::Up,
            },
        );
        assert_eq!(l.get("ok"), Some("0"));
        assert_eq!(l.get("err_connect"), Some("2"));
        assert_eq!(l.get("gib_s"), None);
    }
}
