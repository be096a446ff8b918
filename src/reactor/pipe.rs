//! One direction of a tunnel: bytes read from one socket, written to the other.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

use super::pool::BufferPool;

/// Why a pump stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pump {
    /// Blocked on a socket: an edge will come when it can go on.
    Blocked,
    /// Used its budget while both sockets were still ready: drive again soon.
    Budget,
    /// The source ended and everything was delivered: the destination's
    /// write side may be shut down (every later pump says so again).
    Ended,
}

/// A bounded buffer between a source and a destination socket.
///
/// The buffer comes from the worker's pool when there is something to read
/// and goes back as soon as it is empty, so an idle pipe holds no memory.
/// When the destination does not take bytes, the pipe stops reading from the
/// source: backpressure, never unbounded buffering.
#[derive(Debug, Default)]
pub struct Pipe {
    buf: Option<Box<[u8]>>,
    // Offsets into a buffer of at most 1 MiB (--buffer-kib): u32 keeps an
    // idle tunnel's slab entry small.
    start: u32,
    end: u32,
    /// Leading buffered bytes that are SOCKS control data, not payload.
    control: u32,
    /// The source sent FIN.
    eof: bool,
    /// Payload bytes delivered to the destination.
    delivered: u64,
}

/// Readiness of one socket as last reported by mio, cleared on `WouldBlock`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ready {
    /// A read may make progress.
    pub read: bool,
    /// A write may make progress.
    pub write: bool,
    /// The peer has closed its side (or the socket failed): read on until
    /// the end of the stream, even after a short read.
    pub hup: bool,
}

impl Ready {
    /// After a read of `n` bytes into `room` bytes of space: a short read
    /// drained the socket, so the next bytes will bring a new edge and no
    /// read that would only answer EAGAIN is needed. Once the peer has
    /// closed, no new edge will come: go on until the end of the stream.
    pub fn after_read(&mut self, n: usize, room: usize) {
        if n < room && !self.hup {
            self.read = false;
        }
    }
}

impl Pipe {
    /// Payload bytes delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Queues control bytes (a SOCKS reply) that are not counted as payload.
    pub fn push_control(&mut self, bytes: &[u8], pool: &mut BufferPool) {
        let buf = self.buf.get_or_insert_with(|| pool.take());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        // Replies are a few bytes and sent before any payload: they always fit.
        let end = self.end as usize;
        buf[end..end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len() as u32;
        self.control += bytes.len() as u32;
    }

    /// Queues payload bytes that arrived before the tunnel was open (sent
    /// right after the request). Fails if they do not fit in one buffer.
    pub fn push_payload(&mut self, bytes: &[u8], pool: &mut BufferPool) -> io::Result<()> {
        let buf = self.buf.get_or_insert_with(|| pool.take());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let end = self.end as usize;
        if buf.len() - end < bytes.len() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        buf[end..end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len() as u32;
        Ok(())
    }

    /// Reads once from `src` into an empty buffer, taking one from the pool
    /// if needed. Returns `Ok(0)` at end of stream; sets `eof` then.
    pub fn fill(
        &mut self,
        src: &mut TcpStream,
        ready: &mut Ready,
        pool: &mut BufferPool,
        max: usize,
    ) -> io::Result<usize> {
        // `pump` reads only once everything buffered has been written.
        debug_assert_eq!(self.start, self.end);
        self.start = 0;
        self.end = 0;
        let buf = self.buf.get_or_insert_with(|| pool.take());
        let room = buf.len().min(max.max(1));
        loop {
            match src.read(&mut buf[..room]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    ready.after_read(n, room);
                    self.end = n as u32;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes buffered bytes to `dst` until it blocks or the buffer is empty.
    /// Returns the payload bytes written.
    pub fn flush(&mut self, dst: &mut TcpStream, ready: &mut Ready) -> io::Result<u64> {
        let mut payload = 0u64;
        while self.start < self.end && ready.write {
            let buf = self.buf.as_ref().expect("pending bytes live in a buffer");
            match dst.write(&buf[self.start as usize..self.end as usize]) {
                Ok(n) => {
                    let n = n as u32;
                    self.start += n;
                    let ctl = n.min(self.control);
                    self.control -= ctl;
                    payload += u64::from(n - ctl);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.write = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.delivered += payload;
        Ok(payload)
    }

    /// Gives the buffer back if it is empty.
    pub fn release(&mut self, pool: &mut BufferPool) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if let Some(b) = self.buf.take() {
                pool.give(b);
            }
        }
    }

    /// Moves bytes from `src` to `dst` until a socket blocks, the source ends,
    /// or `budget` bytes were read (never more: a rate limit's grant). Adds
    /// payload written to `*counted`, and bytes read to `*read`.
    ///
    /// On end of stream, once everything is delivered, says `Ended`; the
    /// caller decides whether to pass the half-close on.
    #[allow(clippy::too_many_arguments)]
    pub fn pump(
        &mut self,
        src: &mut TcpStream,
        src_ready: &mut Ready,
        dst: &mut TcpStream,
        dst_ready: &mut Ready,
        pool: &mut BufferPool,
        budget: usize,
        counted: &mut u64,
        read: &mut usize,
    ) -> io::Result<Pump> {
        let mut read_total = 0usize;
        let result = loop {
            if self.pending() > 0 {
                *counted += self.flush(dst, dst_ready)?;
                if self.pending() > 0 {
                    break Pump::Blocked;
                }
            }
            if self.eof {
                break Pump::Ended;
            }
            if !src_ready.read {
                break Pump::Blocked;
            }
            if read_total >= budget {
                break Pump::Budget;
            }
            match self.fill(src, src_ready, pool, budget - read_total) {
                Ok(n) => read_total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    src_ready.read = false;
                    break Pump::Blocked;
                }
                Err(e) => return Err(e),
            }
        };
        self.release(pool);
        *read = read_total;
        Ok(result)
    }

    /// Returns the buffer to the pool, dropping what it held.
    pub fn discard(&mut self, pool: &mut BufferPool) {
        self.start = 0;
        self.end = 0;
        self.control = 0;
        if let Some(b) = self.buf.take() {
            pool.give(b);
        }
    }
}
