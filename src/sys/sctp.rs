//! Raw SCTP sockets through libc: the server's one-to-many socket and the
//! client's one-to-one socket, messages with their association and stream,
//! and notifications. Values the libc crate lacks come from
//! `/usr/include/linux/sctp.h` (see docs/sctp.md); their sizes are tested.

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `SOL_SCTP` is `IPPROTO_SCTP` for socket options.
pub const SOL_SCTP: libc::c_int = libc::IPPROTO_SCTP;
/// `setsockopt` to add addresses to a socket (sctp_bindx without libsctp).
const SCTP_SOCKOPT_BINDX_ADD: libc::c_int = 100;
/// `setsockopt` to start an association to several addresses of one peer
/// (sctp_connectx without libsctp); the call returns the association id.
const SCTP_SOCKOPT_CONNECTX: libc::c_int = 110;
/// `setsockopt` to subscribe to one notification type.
const SCTP_EVENT: libc::c_int = 127;

/// Notification types (`enum sctp_sn_type`).
pub mod sn {
    /// An association came up, went down, restarted or failed.
    pub const ASSOC_CHANGE: u16 = 0x8001;
    /// The peer started a graceful shutdown.
    pub const SHUTDOWN_EVENT: u16 = 0x8005;
    /// A partially delivered message will not be completed.
    pub const PARTIAL_DELIVERY_EVENT: u16 = 0x8006;
    /// Everything sent on the association was acknowledged.
    pub const SENDER_DRY_EVENT: u16 = 0x8009;
    /// A message could not be sent.
    pub const SEND_FAILED_EVENT: u16 = 0x800d;
}

/// `sac_state` values of an ASSOC_CHANGE notification.
pub mod assoc_state {
    /// The association is up.
    pub const COMM_UP: u16 = 0;
    /// The association failed.
    pub const COMM_LOST: u16 = 1;
    /// The peer restarted.
    pub const RESTART: u16 = 2;
    /// A graceful shutdown completed.
    pub const SHUTDOWN_COMP: u16 = 3;
    /// The association could not be started.
    pub const CANT_STR_ASSOC: u16 = 4;
}

/// `struct sctp_event` (linux/sctp.h).
#[repr(C)]
struct SctpEvent {
    se_assoc_id: libc::sctp_assoc_t,
    se_type: u16,
    se_on: u8,
}

/// An SCTP association id.
pub type AssocId = libc::sctp_assoc_t;

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of `size_of::<T>()` bytes for the call.
    syscall!(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Packs addresses as the kernel's bindx wants them: `sockaddr_in` and
/// `sockaddr_in6` back to back.
fn pack_addrs(addrs: &[SocketAddr]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in addrs {
        match a {
            SocketAddr::V4(v4) => {
                let sin = sockaddr_in(v4);
                // SAFETY: `sockaddr_in` is plain old data; viewing it as bytes is sound.
                out.extend_from_slice(unsafe { as_bytes(&sin) });
            }
            SocketAddr::V6(v6) => {
                let sin6 = sockaddr_in6(v6);
                // SAFETY: as above, for `sockaddr_in6`.
                out.extend_from_slice(unsafe { as_bytes(&sin6) });
            }
        }
    }
    out
}

/// # Safety
/// `T` must be plain old data with no padding the caller cares about.
unsafe fn as_bytes<T>(v: &T) -> &[u8] {
    // SAFETY: the pointer and length describe `v` exactly.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), mem::size_of::<T>()) }
}

fn sockaddr_in(a: &SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

fn sockaddr_in6(a: &SocketAddrV6) -> libc::sockaddr_in6 {
    libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: a.port().to_be(),
        sin6_flowinfo: a.flowinfo(),
        sin6_addr: libc::in6_addr {
            s6_addr: a.ip().octets(),
        },
        sin6_scope_id: a.scope_id(),
    }
}

/// What one `recvmsg` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes written into the buffer.
    pub len: usize,
    /// This piece ends a message (MSG_EOR).
    pub eor: bool,
    /// The bytes are a notification, not data.
    pub notification: bool,
    /// The association the data came on (0 for notifications: read it from
    /// the notification).
    pub assoc: AssocId,
    /// The stream the data came on.
    pub stream: u16,
    /// The peer's address the piece came from (IPv4 peers of an IPv6
    /// socket appear v4-mapped), when the kernel gave one.
    pub from: Option<IpAddr>,
}

/// How a message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    /// Ordinary data.
    Data,
    /// Graceful shutdown of the association (zero-length message, SCTP_EOF).
    Eof,
    /// Abort the association (SCTP_ABORT).
    Abort,
}

/// An SCTP socket, non-blocking one-to-many on the server side or blocking
/// one-to-one on the client side.
#[derive(Debug)]
pub struct SctpSocket {
    fd: OwnedFd,
}

impl AsRawFd for SctpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for SctpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Why the kernel cannot do SCTP, in words an operator can act on, if `err`
/// is the error `socket()` gave.
pub fn unsupported_hint(err: &io::Error) -> Option<&'static str> {
    match err.raw_os_error() {
        Some(libc::ESOCKTNOSUPPORT | libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT) => Some(
            "this kernel has no SCTP: load the module with 'modprobe sctp' \
             (package linux-modules-extra or the distribution's kernel), or run \
             where SCTP is available",
        ),
        _ => None,
    }
}

impl SctpSocket {
    /// A non-blocking one-to-many (SOCK_SEQPACKET) socket bound to every
    /// address in `addrs` on `port` (multi-homed with bindx) and listening.
    pub fn listen_many(addrs: &[IpAddr], port: u16) -> io::Result<SctpSocket> {
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no address to bind",
            ));
        }
        let any_v6 = addrs.iter().any(IpAddr::is_ipv6);
        let fd = dual_stack(any_v6, libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK)?;
        let raw = fd.as_raw_fd();
        setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &1 as &libc::c_int,
        )?;
        let sockaddrs: Vec<SocketAddr> =
            addrs.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
        let packed = pack_addrs(&sockaddrs);
        // SAFETY: `packed` holds `packed.len()` bytes of sockaddrs for the call.
        syscall!(unsafe {
            libc::setsockopt(
                raw,
                SOL_SCTP,
                SCTP_SOCKOPT_BINDX_ADD,
                packed.as_ptr().cast(),
                packed.len() as libc::socklen_t,
            )
        })?;
        // Data pieces carry an SCTP_RCVINFO (association, stream).
        setsockopt(raw, SOL_SCTP, libc::SCTP_RECVRCVINFO, &1 as &libc::c_int)?;
        for ty in [
            sn::ASSOC_CHANGE,
            sn::SHUTDOWN_EVENT,
            sn::PARTIAL_DELIVERY_EVENT,
            sn::SENDER_DRY_EVENT,
            sn::SEND_FAILED_EVENT,
        ] {
            let ev = SctpEvent {
                se_assoc_id: libc::SCTP_FUTURE_ASSOC,
                se_type: ty,
                se_on: 1,
            };
            setsockopt(raw, SOL_SCTP, SCTP_EVENT, &ev)?;
        }
        // SAFETY: `raw` is a valid socket owned by `fd`.
        syscall!(unsafe { libc::listen(raw, 128) })?;
        Ok(SctpSocket { fd })
    }

    /// A blocking one-to-one (SOCK_STREAM) socket connected to `addr`.
    pub fn connect(addr: SocketAddr, timeout: Option<Duration>) -> io::Result<SctpSocket> {
        let family = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let fd = socket(family, libc::SOCK_STREAM)?;
        let s = SctpSocket { fd };
        if let Some(t) = timeout {
            s.set_timeouts(t)?;
        }
        let raw = s.as_raw_fd();
        let r = match addr {
            SocketAddr::V4(a) => {
                let sin = sockaddr_in(&a);
                // SAFETY: `sin` is a valid sockaddr_in of the given length.
                unsafe {
                    libc::connect(
                        raw,
                        (&sin as *const libc::sockaddr_in).cast(),
                        mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                }
            }
            SocketAddr::V6(a) => {
                let sin6 = sockaddr_in6(&a);
                // SAFETY: `sin6` is a valid sockaddr_in6 of the given length.
                unsafe {
                    libc::connect(
                        raw,
                        (&sin6 as *const libc::sockaddr_in6).cast(),
                        mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    )
                }
            }
        };
        syscall!(r)?;
        Ok(s)
    }

    /// A blocking one-to-one (SOCK_STREAM) socket whose association is
    /// started with every address in `addrs` (one peer's, all on the same
    /// port; IPv4 and IPv6 may be mixed), as sctp_connectx does: the INIT
    /// goes to the first, and when it is not answered the retransmissions
    /// try the others. `timeout` bounds the association's start too. One
    /// address is a plain connect().
    pub fn connect_many(addrs: &[SocketAddr], timeout: Option<Duration>) -> io::Result<SctpSocket> {
        match addrs {
            [] => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no address to connect to",
                ));
            }
            [one] => return SctpSocket::connect(*one, timeout),
            _ => {}
        }
        let any_v6 = addrs.iter().any(SocketAddr::is_ipv6);
        let s = SctpSocket {
            fd: dual_stack(any_v6, libc::SOCK_STREAM)?,
        };
        let raw = s.as_raw_fd();
        if let Some(t) = timeout {
            s.set_timeouts(t)?;
        }
        let packed = pack_addrs(addrs);
        // SAFETY: `packed` holds `packed.len()` bytes of sockaddrs for the
        // call. On a blocking socket the kernel returns once the
        // association is up (or has failed, or SO_SNDTIMEO ran out).
        syscall!(unsafe {
            libc::setsockopt(
                raw,
                SOL_SCTP,
                SCTP_SOCKOPT_CONNECTX,
                packed.as_ptr().cast(),
                packed.len() as libc::socklen_t,
            )
        })?;
        Ok(s)
    }

    /// The local port (after binding to port 0).
    pub fn local_port(&self) -> io::Result<u16> {
        // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
        let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `ss` and `len` are valid for writing for the call.
        syscall!(unsafe {
            libc::getsockname(
                self.as_raw_fd(),
                (&mut ss as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        })?;
        // Both sockaddr_in and sockaddr_in6 keep the port right after the
        // family, in network order.
        // SAFETY: the kernel wrote at least the family and port.
        let port = unsafe {
            match ss.ss_family as libc::c_int {
                libc::AF_INET => (*(&ss as *const _ as *const libc::sockaddr_in)).sin_port,
                _ => (*(&ss as *const _ as *const libc::sockaddr_in6)).sin6_port,
            }
        };
        Ok(u16::from_be(port))
    }

    /// Sets SO_RCVTIMEO and SO_SNDTIMEO (blocking sockets).
    pub fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        };
        setsockopt(self.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        setsockopt(self.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDTIMEO, &tv)
    }

    /// Sets the send buffer: SO_SNDBUFFORCE when privileged (it is not
    /// capped by net.core.wmem_max), else SO_SNDBUF.
    pub fn set_send_buffer(&self, bytes: usize) -> io::Result<()> {
        let v = bytes.min(i32::MAX as usize) as libc::c_int;
        setsockopt(self.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &v)
            .or_else(|_| setsockopt(self.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, &v))
    }

    /// Receives one piece of a message or notification into `buf`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for one SCTP_RCVINFO cmsg, aligned for cmsghdr.
        let mut control = [0u64; 16];
        // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
        let mut name: libc::sockaddr_storage = unsafe { mem::zeroed() };
        // SAFETY: msghdr is plain old data; all-zero is a valid starting value.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of_val(&control);
        // SAFETY: `msg` points to `name`, `iov` (over `buf`) and `control`,
        // all alive and writable for the call.
        let n = syscall!(unsafe { libc::recvmsg(self.as_raw_fd(), &mut msg, 0) })? as usize;
        let from = if msg.msg_namelen > 0 {
            ip_of(&name)
        } else {
            None
        };
        let mut out = Received {
            len: n,
            eor: msg.msg_flags & libc::MSG_EOR != 0,
            notification: msg.msg_flags & libc::MSG_NOTIFICATION != 0,
            assoc: 0,
            stream: 0,
            from,
        };
        // SAFETY: the CMSG_* macros walk the control buffer the kernel filled,
        // bounded by msg_controllen.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::IPPROTO_SCTP && (*c).cmsg_type == libc::SCTP_RCVINFO {
                    let info: libc::sctp_rcvinfo =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    out.assoc = info.rcv_assoc_id;
                    out.stream = info.rcv_sid;
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok(out)
    }

    /// Sends one whole message on `assoc`'s `stream` (one-to-many), or on the
    /// connected association (one-to-one, where `assoc` is ignored).
    pub fn send(
        &self,
        assoc: AssocId,
        stream: u16,
        data: &[u8],
        kind: SendKind,
    ) -> io::Result<usize> {
        let flags = match kind {
            SendKind::Data => 0,
            SendKind::Eof => libc::SCTP_EOF,
            SendKind::Abort => libc::SCTP_ABORT,
        };
        let info = libc::sctp_sndinfo {
            snd_sid: stream,
            snd_flags: flags as u16,
            snd_ppid: 0,
            snd_context: 0,
            snd_assoc_id: assoc,
        };
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut _,
            iov_len: data.len(),
        };
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain old data; all-zero is a valid starting value.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space =
            unsafe { libc::CMSG_SPACE(mem::size_of::<libc::sctp_sndinfo>() as u32) } as usize;
        debug_assert!(space <= mem::size_of_val(&control));
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: the control buffer has room for one cmsg of `sctp_sndinfo`
        // (checked above); `msg` points only to live buffers during the call.
        let n = unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::IPPROTO_SCTP;
            (*c).cmsg_type = libc::SCTP_SNDINFO;
            (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<libc::sctp_sndinfo>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), info);
            syscall!(libc::sendmsg(self.as_raw_fd(), &msg, libc::MSG_NOSIGNAL))?
        };
        Ok(n as usize)
    }

    /// Sends a whole message on a one-to-one socket.
    pub fn send_message(&self, data: &[u8]) -> io::Result<()> {
        let n = self.send(0, 0, data, SendKind::Data)?;
        if n != data.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short SCTP send"));
        }
        Ok(())
    }

    /// Receives one whole data message on a one-to-one socket, skipping
    /// notifications. `Ok(None)` when the peer has shut the association down.
    pub fn recv_message(&self, max: usize) -> io::Result<Option<Vec<u8>>> {
        let mut msg = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let r = self.recv(&mut buf)?;
            if r.len == 0 && !r.notification {
                return Ok(None);
            }
            if r.notification {
                continue;
            }
            if msg.len() + r.len > max {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "SCTP message too long",
                ));
            }
            msg.extend_from_slice(&buf[..r.len]);
            if r.eor {
                return Ok(Some(msg));
            }
        }
    }
}

/// The IP address in a sockaddr the kernel filled in.
fn ip_of(ss: &libc::sockaddr_storage) -> Option<IpAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4))
        }
        _ => None,
    }
}

/// An SCTP socket of type `ty` for these addresses: with any IPv6 one, an
/// AF_INET6 socket with IPV6_V6ONLY off, which takes IPv4 addresses too, so
/// one socket serves both families (IPv4 peers appear v4-mapped).
fn dual_stack(any_v6: bool, ty: libc::c_int) -> io::Result<OwnedFd> {
    if !any_v6 {
        return socket(libc::AF_INET, ty);
    }
    let fd = socket(libc::AF_INET6, ty)?;
    setsockopt(
        fd.as_raw_fd(),
        libc::IPPROTO_IPV6,
        libc::IPV6_V6ONLY,
        &0 as &libc::c_int,
    )?;
    Ok(fd)
}

fn socket(family: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned descriptor is owned below.
    let fd =
        syscall!(unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, libc::IPPROTO_SCTP) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A notification, decoded from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    /// `SCTP_ASSOC_CHANGE` with its state (see [`assoc_state`]).
    AssocChange {
        /// The association.
        assoc: AssocId,
        /// `sac_state`.
        state: u16,
    },
    /// `SCTP_SHUTDOWN_EVENT`: the peer is closing.
    Shutdown {
        /// The association.
        assoc: AssocId,
    },
    /// `SCTP_PARTIAL_DELIVERY_EVENT`: a partial message is abandoned.
    PartialDeliveryAborted {
        /// The association.
        assoc: AssocId,
    },
    /// `SCTP_SENDER_DRY_EVENT`: all sent data was acknowledged.
    SenderDry {
        /// The association.
        assoc: AssocId,
    },
    /// `SCTP_SEND_FAILED_EVENT`.
    SendFailed {
        /// The association.
        assoc: AssocId,
    },
    /// Anything else.
    Other(u16),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Notification {
    /// Decodes a whole notification (native byte order, layouts of
    /// linux/sctp.h). `None` if it is too short for its type.
    pub fn parse(b: &[u8]) -> Option<Notification> {
        let ty = u16_at(b, 0)?;
        Some(match ty {
            // struct sctp_assoc_change: type, flags, length(u32), state, error,
            // outbound, inbound, assoc_id at 16.
            sn::ASSOC_CHANGE => Notification::AssocChange {
                assoc: i32_at(b, 16)?,
                state: u16_at(b, 8)?,
            },
            // sctp_shutdown_event / sctp_sender_dry_event: assoc_id at 8.
            sn::SHUTDOWN_EVENT => Notification::Shutdown {
                assoc: i32_at(b, 8)?,
            },
            sn::SENDER_DRY_EVENT => Notification::SenderDry {
                assoc: i32_at(b, 8)?,
            },
            // sctp_pdapi_event: type, flags, length, indication(u32), assoc_id at 12.
            sn::PARTIAL_DELIVERY_EVENT => Notification::PartialDeliveryAborted {
                assoc: i32_at(b, 12)?,
            },
            // sctp_send_failed_event: type, flags, length, error(u32),
            // sndinfo(16 bytes, assoc id last), assoc_id at 28.
            sn::SEND_FAILED_EVENT => Notification::SendFailed {
                assoc: i32_at(b, 28)?,
            },
            other => Notification::Other(other),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_c() {
        assert_eq!(mem::size_of::<SctpEvent>(), 8);
        assert_eq!(mem::size_of::<libc::sctp_sndinfo>(), 16);
        assert_eq!(mem::size_of::<libc::sctp_rcvinfo>(), 28);
        assert_eq!(mem::size_of::<libc::sockaddr_in>(), 16);
        assert_eq!(mem::size_of::<libc::sockaddr_in6>(), 28);
    }

    #[test]
    fn packs_mixed_addresses() {
        let a: Vec<SocketAddr> = vec![
            "127.0.0.1:8080".parse().unwrap(),
            "[::1]:8080".parse().unwrap(),
        ];
        let p = pack_addrs(&a);
        assert_eq!(p.len(), 16 + 28);
        assert_eq!(u16::from_ne_bytes([p[0], p[1]]), libc::AF_INET as u16);
        assert_eq!(&p[2..4], &8080u16.to_be_bytes());
        assert_eq!(&p[4..8], &[127, 0, 0, 1]);
        assert_eq!(u16::from_ne_bytes([p[16], p[17]]), libc::AF_INET6 as u16);
        assert_eq!(p[16 + 8 + 15], 1);
    }

    #[test]
    fn parses_notifications() {
        let mut ac = vec![0u8; 20];
        ac[0..2].copy_from_slice(&sn::ASSOC_CHANGE.to_ne_bytes());
        ac[8..10].copy_from_slice(&assoc_state::COMM_LOST.to_ne_bytes());
        ac[16..20].copy_from_slice(&7i32.to_ne_bytes());
        assert_eq!(
            Notification::parse(&ac),
            Some(Notification::AssocChange {
                assoc: 7,
                state: assoc_state::COMM_LOST
            })
        );
        let mut dry = vec![0u8; 12];
        dry[0..2].copy_from_slice(&sn::SENDER_DRY_EVENT.to_ne_bytes());
        dry[8..12].copy_from_slice(&3i32.to_ne_bytes());
        assert_eq!(
            Notification::parse(&dry),
            Some(Notification::SenderDry { assoc: 3 })
        );
        assert_eq!(Notification::parse(&dry[..10]), None);
        assert_eq!(Notification::parse(&[]), None);
    }

    /// socket() fails with ESOCKTNOSUPPORT (94) for a one-to-many socket
    /// and EPROTONOSUPPORT (93) for a one-to-one one: both get the hint.
    #[test]
    fn no_sctp_hint() {
        for errno in [libc::ESOCKTNOSUPPORT, libc::EPROTONOSUPPORT] {
            let e = io::Error::from_raw_os_error(errno);
            assert!(
                unsupported_hint(&e).unwrap().contains("modprobe sctp"),
                "{errno}"
            );
        }
        assert_eq!((libc::EPROTONOSUPPORT, libc::ESOCKTNOSUPPORT), (93, 94));
        assert!(unsupported_hint(&io::Error::from_raw_os_error(libc::EACCES)).is_none());
    }
}
