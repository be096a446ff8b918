//! Batches of datagrams, sent and received with one `sendmmsg` or
//! `recvmmsg` each: the generator's second `unsafe` module.
//!
//! A datagram per system call would make the generator and the echo target
//! the bottleneck of the UDP scenario long before any proxy is; a batch of
//! up to [`BATCH`] costs one call. std has neither call, and nix's wrappers
//! read their unused address slots as initialised when sent messages are
//! counted, so the two calls are made through libc here, each in one
//! `unsafe` block on buffers this module owns.

#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::ptr;

/// Datagrams per system call, at most.
pub const BATCH: usize = 64;
/// Room for one datagram: the largest the scenario sends (1,400 bytes of
/// payload and a SOCKS5 UDP header of at most 22) with a margin, so that a
/// longer one shows as truncated rather than fitting by luck.
pub const ROOM: usize = 2048;

/// Big enough for an IPv4 or an IPv6 socket address, which is all a
/// datagram's peer can be here; kept as the kernel wrote it and handed back
/// as is, never read.
type Name = libc::sockaddr_in6;

fn empty_name() -> Name {
    Name {
        sin6_family: 0,
        sin6_port: 0,
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr { s6_addr: [0; 16] },
        sin6_scope_id: 0,
    }
}

fn empty_header() -> libc::mmsghdr {
    libc::mmsghdr {
        msg_hdr: libc::msghdr {
            msg_name: ptr::null_mut(),
            msg_namelen: 0,
            msg_iov: ptr::null_mut(),
            msg_iovlen: 0,
            msg_control: ptr::null_mut(),
            msg_controllen: 0,
            msg_flags: 0,
        },
        msg_len: 0,
    }
}

/// [`BATCH`] buffers of [`ROOM`] bytes, their lengths and their peers'
/// addresses, and the kernel's headers for them, all allocated once.
pub struct Batch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    names: Vec<Name>,
    namelens: Vec<libc::socklen_t>,
    truncated: Vec<bool>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("lens", &self.lens).finish()
    }
}

impl Default for Batch {
    fn default() -> Batch {
        Batch::new()
    }
}

impl Batch {
    /// Empty buffers.
    pub fn new() -> Batch {
        Batch {
            bufs: vec![vec![0u8; ROOM]; BATCH],
            lens: vec![0; BATCH],
            names: vec![empty_name(); BATCH],
            namelens: vec![0; BATCH],
            truncated: vec![false; BATCH],
            iovs: vec![
                libc::iovec {
                    iov_base: ptr::null_mut(),
                    iov_len: 0,
                };
                BATCH
            ],
            hdrs: vec![empty_header(); BATCH],
        }
    }

    /// Buffer `i`, whole, to be filled before [`Batch::send`].
    pub fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i]
    }

    /// Datagram `i` as received (or as set by [`Batch::set_len`]).
    pub fn datagram(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i]]
    }

    /// Whether datagram `i` was longer than [`ROOM`] and cut.
    pub fn truncated(&self, i: usize) -> bool {
        self.truncated[i]
    }

    /// Sets the length of datagram `i` for [`Batch::send`].
    pub fn set_len(&mut self, i: usize, len: usize) {
        self.lens[i] = len.min(ROOM);
    }

    /// Points header `i` at buffer `i` (its whole room to receive, its
    /// length to send) and, with `named`, at address slot `i`.
    fn aim(&mut self, i: usize, receive: bool, named: bool) {
        let buf = &mut self.bufs[i];
        self.iovs[i] = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: if receive { buf.len() } else { self.lens[i] },
        };
        let (name, namelen) = match (named, receive) {
            (false, _) => (ptr::null_mut(), 0),
            (true, true) => (
                ptr::from_mut(&mut self.names[i]).cast(),
                size_of::<Name>() as libc::socklen_t,
            ),
            (true, false) => (ptr::from_mut(&mut self.names[i]).cast(), self.namelens[i]),
        };
        let h = &mut self.hdrs[i];
        *h = empty_header();
        h.msg_hdr.msg_name = name;
        h.msg_hdr.msg_namelen = namelen;
        h.msg_hdr.msg_iov = ptr::from_mut(&mut self.iovs[i]);
        h.msg_hdr.msg_iovlen = 1;
    }

    /// Receives between 1 and `max` datagrams (at most [`BATCH`]) and their
    /// senders' addresses: blocks for the first (up to the socket's receive
    /// timeout, an error of kind `WouldBlock` then), takes whatever else is
    /// queued without waiting.
    pub fn recv(&mut self, fd: &impl AsRawFd, max: usize) -> io::Result<usize> {
        let max = max.clamp(1, BATCH);
        for i in 0..max {
            self.aim(i, true, true);
        }
        // SAFETY: `hdrs[..max]` was just aimed (by `aim`) at `max` iovecs,
        // buffers and address slots owned by `self`, each as long as the
        // length given with it, and none of them is touched until the call
        // returns; no control buffer is given. recvmmsg writes only into
        // those, and the null timeout is allowed.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                max as libc::c_uint,
                libc::MSG_WAITFORONE,
                ptr::null_mut(),
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        for i in 0..n {
            let h = &self.hdrs[i];
            self.lens[i] = (h.msg_len as usize).min(ROOM);
            self.namelens[i] = h.msg_hdr.msg_namelen;
            self.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        }
        Ok(n)
    }

    /// Sends datagrams `0..n` (at most [`BATCH`]), each back to the address
    /// it came from when `reply`, else on the connected socket; returns once
    /// all are sent (a full send buffer blocks, up to the socket's send
    /// timeout).
    pub fn send(&mut self, fd: &impl AsRawFd, n: usize, reply: bool) -> io::Result<()> {
        let n = n.min(BATCH);
        for i in 0..n {
            self.aim(i, false, reply);
        }
        let mut done = 0;
        while done < n {
            // SAFETY: `hdrs[done..n]` were aimed (by `aim`) at iovecs,
            // buffers and, with `reply`, addresses owned by `self`, with
            // lengths within them; nothing is touched until the call
            // returns, and sendmmsg only reads them (and writes each
            // header's msg_len).
            let sent = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.hdrs[done..n].as_mut_ptr(),
                    (n - done) as libc::c_uint,
                    0,
                )
            };
            match usize::try_from(sent) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => done += k,
                Err(_) => return Err(io::Error::last_os_error()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn a_batch_goes_out_and_comes_back_with_its_addresses() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Batch::new();
        for i in 0..10 {
            out.buf_mut(i)[..3].copy_from_slice(&[i as u8, 1, 2]);
            out.set_len(i, 3 + i);
        }
        out.send(&a, 10, false).unwrap();
        let mut back = Batch::new();
        let mut got = 0;
        while got < 10 {
            let n = back.recv(&b, BATCH).unwrap();
            for i in 0..n {
                let d = back.datagram(i);
                assert_eq!(d.len(), 3 + d[0] as usize);
                assert_eq!(d[0] as usize, got + i);
                assert!(!back.truncated(i));
            }
            // Echo them to where they came from.
            back.send(&b, n, true).unwrap();
            got += n;
        }
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut seen = 0;
        while seen < 10 {
            seen += out.recv(&a, BATCH).unwrap();
        }
        // Nothing more: the receive timeout ends the wait.
        a.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let e = out.recv(&a, BATCH).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_datagram_longer_than_room_is_marked_truncated() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        a.send_to(&vec![7u8; ROOM + 1], b.local_addr().unwrap())
            .unwrap();
        let mut batch = Batch::new();
        assert_eq!(batch.recv(&b, 4).unwrap(), 1);
        assert!(batch.truncated(0));
    }
}
