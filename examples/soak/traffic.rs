//! The soak's traffic: its bulk target (checked bytes both ways; the echo
//! target is the tests' one) and its clients, on the tests' raw SOCKS5
//! client, each kind looping on its own thread.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::socks::{Auth, IO_TIMEOUT, bad, dial, greet, login, try_tunnel};

pub const USER: &str = "soak";
pub const PASS: &str = "soak-Zq7xK3-pw";
const BULK_DOWN: u64 = 4 << 20;
const BULK_UP: u64 = 1 << 20;

// ------------------------------------------------------------ the targets

/// Deterministic bytes: position `i` of stream `seed`.
pub fn pattern_byte(seed: u64, i: u64) -> u8 {
    let x = (i ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    (x >> 56) as u8
}

pub fn fill(seed: u64, from: u64, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(seed, from + k as u64);
    }
}

pub fn serve(handle: fn(TcpStream)) -> io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(600)));
            let _ = c.set_write_timeout(Some(IO_TIMEOUT));
            thread::spawn(move || handle(c));
        }
    });
    Ok(addr)
}

/// Reads a seed and a length (u64 each, big-endian), sends that many
/// pattern bytes while counting and checking what comes up (seed + 1)
/// until end of stream, then answers the count (u64) and closes.
pub fn bulk(mut c: TcpStream) {
    let mut head = [0u8; 16];
    if c.read_exact(&mut head).is_err() {
        return;
    }
    let seed = u64::from_be_bytes(head[..8].try_into().expect("8 bytes"));
    let len = u64::from_be_bytes(head[8..].try_into().expect("8 bytes"));
    let Ok(mut up) = c.try_clone() else { return };
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0u64;
        loop {
            match up.read(&mut buf) {
                Ok(0) => return Some(n),
                Ok(k) => {
                    if buf[..k]
                        .iter()
                        .enumerate()
                        .any(|(i, b)| *b != pattern_byte(seed + 1, n + i as u64))
                    {
                        return None;
                    }
                    n += k as u64;
                }
                Err(_) => return None,
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0;
    while off < len {
        let k = buf.len().min((len - off) as usize);
        fill(seed, off, &mut buf[..k]);
        if c.write_all(&buf[..k]).is_err() {
            return;
        }
        off += k as u64;
    }
    let got = reader.join().ok().flatten().unwrap_or(u64::MAX);
    let _ = c.write_all(&got.to_be_bytes());
    let _ = c.shutdown(Shutdown::Write);
}

// ---------------------------------------------------------------- clients

/// A tunnel as the soak's user to `target`: the tests' raw SOCKS5 client.
pub fn tunnel(proxy: SocketAddr, target: SocketAddr) -> io::Result<TcpStream> {
    try_tunnel(proxy, Auth::User(USER, PASS), target, IO_TIMEOUT)
}

pub fn round_trip(s: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    s.write_all(data)?;
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back)?;
    if back != data {
        return Err(bad("the echo differs".into()));
    }
    Ok(())
}

/// Half-close, read to the end (nothing expected).
pub fn close(mut s: TcpStream) -> io::Result<()> {
    s.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)?;
    if !rest.is_empty() {
        return Err(bad(format!("{} unexpected bytes at the close", rest.len())));
    }
    Ok(())
}

pub fn bulk_once(proxy: SocketAddr, target: SocketAddr, seed: u64) -> io::Result<u64> {
    let mut s = tunnel(proxy, target)?;
    let mut head = seed.to_be_bytes().to_vec();
    head.extend_from_slice(&BULK_DOWN.to_be_bytes());
    s.write_all(&head)?;
    let mut w = s.try_clone()?;
    let writer = thread::spawn(move || -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut off = 0;
        while off < BULK_UP {
            let k = buf.len().min((BULK_UP - off) as usize);
            fill(seed + 1, off, &mut buf[..k]);
            w.write_all(&buf[..k])?;
            off += k as u64;
        }
        w.shutdown(Shutdown::Write)
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    while got < BULK_DOWN {
        let want = buf.len().min((BULK_DOWN - got) as usize);
        let k = s.read(&mut buf[..want])?;
        if k == 0 {
            return Err(bad(format!("bulk: end of stream after {got} bytes")));
        }
        if buf[..k]
            .iter()
            .enumerate()
            .any(|(i, b)| *b != pattern_byte(seed, got + i as u64))
        {
            return Err(bad(format!("bulk: wrong bytes near offset {got}")));
        }
        got += k as u64;
    }
    writer
        .join()
        .map_err(|_| bad("bulk writer panicked".into()))??;
    let mut count = [0u8; 8];
    s.read_exact(&mut count)?;
    if u64::from_be_bytes(count) != BULK_UP {
        return Err(bad(format!(
            "bulk: the target checked {} of {BULK_UP} bytes up",
            u64::from_be_bytes(count) as i64
        )));
    }
    // Our side is shut already (the writer): read the target's end.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)?;
    if !rest.is_empty() {
        return Err(bad(format!("bulk: {} bytes after the count", rest.len())));
    }
    Ok(BULK_DOWN + BULK_UP)
}

pub fn short_once(proxy: SocketAddr, echo: SocketAddr) -> io::Result<u64> {
    let mut s = tunnel(proxy, echo)?;
    round_trip(&mut s, &[0xA5; 64])?;
    close(s)?;
    Ok(64)
}

pub fn failed_login_once(proxy: SocketAddr) -> io::Result<()> {
    let mut s = dial(proxy, IO_TIMEOUT)?;
    greet(&mut s, Auth::User(USER, PASS))?;
    match login(&mut s, USER, "not-the-password")? {
        0x01 => {}
        st => return Err(bad(format!("a wrong password got X'{st:02X}'"))),
    }
    // socks5d closes after the refusal.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)?;
    Ok(())
}

pub fn abandon_once(proxy: SocketAddr, step: u64) -> io::Result<()> {
    let mut s = dial(proxy, IO_TIMEOUT)?;
    match step % 3 {
        0 => {}
        1 => s.write_all(&[0x05])?,
        _ => {
            s.write_all(&[0x05, 0x01, 0x02])?;
            let mut m = [0u8; 2];
            s.read_exact(&mut m)?;
            s.write_all(&[0x01, 0x04, b's'])?;
        }
    }
    Ok(()) // dropped: closed mid-handshake
}

// ------------------------------------------------------------ the load

#[derive(Default)]
pub struct Stats {
    pub tunnels: AtomicU64,
    pub bytes: AtomicU64,
    pub refused: AtomicU64,
    pub abandoned: AtomicU64,
    pub idle_open: AtomicU64,
    pub errors: AtomicU64,
    pub first_errors: Mutex<Vec<String>>,
}

impl Stats {
    pub fn error(&self, what: &str, e: &io::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap_or_else(|e| e.into_inner());
        if first.len() < 10 {
            first.push(format!("{what}: {e}"));
        }
    }
}

/// Runs `f` on its own thread until `stop`, pausing `pace` between runs.
pub fn worker(
    stop: &Arc<AtomicBool>,
    pace: Duration,
    mut f: impl FnMut(u64) + Send + 'static,
) -> thread::JoinHandle<()> {
    let stop = Arc::clone(stop);
    thread::spawn(move || {
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            f(i);
            i += 1;
            if !pace.is_zero() {
                thread::sleep(pace); // the traffic's pace
            }
        }
    })
}
