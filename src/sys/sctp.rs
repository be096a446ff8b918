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
    /// One of the peer's addresses (a path) changed state.
    pub const PEER_ADDR_CHANGE: u16 = 0x8002;
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

/// `spc_state` values of a PEER_ADDR_CHANGE notification.
pub mod addr_state {
    /// The path answers again (after it was unreachable).
    pub const AVAILABLE: i32 = 0;
    /// The path failed: more than Path.Max.Retrans timeouts in a row.
    pub const UNREACHABLE: i32 = 1;
    /// The peer removed the address.
    pub const REMOVED: i32 = 2;
    /// The peer added the address.
    pub const ADDED: i32 = 3;
    /// The path is now the primary one.
    pub const MADE_PRIM: i32 = 4;
    /// A heartbeat confirmed the address.
    pub const CONFIRMED: i32 = 5;
    /// The path may have failed (one timeout; reported only when
    /// net.sctp.pf_expose asks for it).
    pub const POTENTIALLY_FAILED: i32 = 6;
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

/// `struct sctp_rtoinfo` (linux/sctp.h): the retransmission timeout's
/// initial value and bounds, in milliseconds (0 leaves one unchanged).
#[repr(C)]
struct SctpRtoinfo {
    srto_assoc_id: AssocId,
    srto_initial: u32,
    srto_max: u32,
    srto_min: u32,
}

/// `struct sctp_paddrparams` (linux/sctp.h). The C struct is packed with
/// a 4-byte alignment of the whole: 155 bytes of fields (`spp_pathmtu`
/// right after the 2-byte `spp_pathmaxrxt`), then one byte of padding. The
/// kernel takes exactly its size.
#[repr(C, packed)]
struct SctpPaddrparams {
    spp_assoc_id: AssocId,
    spp_address: libc::sockaddr_storage,
    spp_hbinterval: u32,
    spp_pathmaxrxt: u16,
    spp_pathmtu: u32,
    spp_sackdelay: u32,
    spp_flags: u32,
    spp_ipv6_flowlabel: u32,
    spp_dscp: u8,
    _padding: u8,
}

/// `struct sctp_paddrinfo` (linux/sctp.h), packed like
/// [`SctpPaddrparams`]: 152 bytes.
#[repr(C, packed)]
struct SctpPaddrinfo {
    spinfo_assoc_id: AssocId,
    spinfo_address: libc::sockaddr_storage,
    spinfo_state: i32,
    spinfo_cwnd: u32,
    spinfo_srtt: u32,
    spinfo_rto: u32,
    spinfo_mtu: u32,
}

/// `getsockopt` of one peer address's path (`struct sctp_paddrinfo`).
const SCTP_GET_PEER_ADDR_INFO: libc::c_int = 15;

/// The state of a path, as SCTP_GET_PEER_ADDR_INFO tells it (`enum
/// sctp_spinfo_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// Failed: more than Path.Max.Retrans timeouts in a row.
    Inactive,
    /// Potentially failed: a timeout; no new data goes there.
    PotentiallyFailed,
    /// Confirmed and answering.
    Active,
    /// Not yet confirmed by a heartbeat.
    Unconfirmed,
    /// A value this code does not know.
    Other(i32),
}

/// What the kernel knows of one path of an association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathInfo {
    /// Its state.
    pub state: PathState,
    /// Its smoothed round-trip time.
    pub srtt: Duration,
    /// Its retransmission timeout now.
    pub rto: Duration,
}

/// `SPP_HB_ENABLE`: heartbeats on, at `spp_hbinterval` (0 would leave the
/// interval unchanged).
const SPP_HB_ENABLE: u32 = 1;

/// How the associations of a socket watch their peer's addresses and
/// leave one that stops answering (RFC 9260 sections 6.3 and 8). An idle
/// path gets a HEARTBEAT every `heartbeat` plus its RTO (give or take half
/// the RTO); an unanswered chunk is sent again after one RTO, which doubles
/// at each timeout up to `rto_max` and is never below `rto_min`; a
/// retransmission goes to another active address of the peer, so a request
/// whose path has failed gets through after one RTO; a path with more than
/// `path_max_retrans` timeouts in a row is inactive until a heartbeat on
/// it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathParams {
    /// HB.interval.
    pub heartbeat: Duration,
    /// Path.Max.Retrans.
    pub path_max_retrans: u16,
    /// RTO.Min.
    pub rto_min: Duration,
    /// RTO.Max.
    pub rto_max: Duration,
}

impl PathParams {
    /// For a LAN, where Linux's own (HB.interval 30 s, Path.Max.Retrans 5,
    /// RTO from 1 s to 60 s) take minutes to find an idle dead path: a
    /// request and its answer cross to another path within 2 x RTO.Max,
    /// 2 s (docs/sctp.md, "Paths that fail").
    pub const LAN: PathParams = PathParams {
        heartbeat: Duration::from_secs(1),
        path_max_retrans: 2,
        rto_min: Duration::from_millis(300),
        rto_max: Duration::from_secs(1),
    };

    /// RTO.Initial, the RTO of a path with no round trip measured yet (an
    /// INIT's, a new path's): RFC 9260's 1 second, kept within
    /// [`rto_min`, `rto_max`].
    ///
    /// [`rto_min`]: PathParams::rto_min
    /// [`rto_max`]: PathParams::rto_max
    pub fn rto_initial(&self) -> Duration {
        Duration::from_secs(1).min(self.rto_max).max(self.rto_min)
    }
}

/// A duration in whole milliseconds for a socket option, at least 1 (0
/// would leave the kernel's value unchanged).
fn millis(d: Duration) -> u32 {
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

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
    /// address in `addrs` on `port` (multi-homed with bindx) and listening,
    /// whose associations all have `paths`.
    pub fn listen_many(addrs: &[IpAddr], port: u16, paths: &PathParams) -> io::Result<SctpSocket> {
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
            sn::PEER_ADDR_CHANGE,
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
        let s = SctpSocket { fd };
        // Before listen(), so that no association starts without them.
        s.set_path_params(paths)?;
        // SAFETY: `raw` is a valid socket owned by `s`.
        syscall!(unsafe { libc::listen(raw, 128) })?;
        Ok(s)
    }

    /// Sets `p` for every association the socket starts or accepts from now
    /// on (SCTP_FUTURE_ASSOC, which on a one-to-one socket not yet
    /// connected is its association-to-be): SCTP_RTOINFO and
    /// SCTP_PEER_ADDR_PARAMS, heartbeats on.
    pub fn set_path_params(&self, p: &PathParams) -> io::Result<()> {
        let raw = self.as_raw_fd();
        let rto = SctpRtoinfo {
            srto_assoc_id: libc::SCTP_FUTURE_ASSOC,
            srto_initial: millis(p.rto_initial()),
            srto_max: millis(p.rto_max),
            srto_min: millis(p.rto_min),
        };
        setsockopt(raw, SOL_SCTP, libc::SCTP_RTOINFO, &rto)?;
        // SAFETY: the struct is plain old data; all-zero is valid (the
        // address all-zero means every peer address).
        let mut spp: SctpPaddrparams = unsafe { mem::zeroed() };
        spp.spp_assoc_id = libc::SCTP_FUTURE_ASSOC;
        spp.spp_hbinterval = millis(p.heartbeat);
        spp.spp_pathmaxrxt = p.path_max_retrans.max(1);
        spp.spp_flags = SPP_HB_ENABLE;
        setsockopt(raw, SOL_SCTP, libc::SCTP_PEER_ADDR_PARAMS, &spp)
    }

    /// A blocking one-to-one (SOCK_STREAM) socket connected to `addr`.
    pub fn connect(addr: SocketAddr, timeout: Option<Duration>) -> io::Result<SctpSocket> {
        SctpSocket::connect_with(addr, timeout, None)
    }

    /// [`SctpSocket::connect`], the association with `paths` (the
    /// kernel's own with `None`).
    fn connect_with(
        addr: SocketAddr,
        timeout: Option<Duration>,
        paths: Option<&PathParams>,
    ) -> io::Result<SctpSocket> {
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
        if let Some(p) = paths {
            s.set_path_params(p)?;
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
        SctpSocket::connect_many_with(addrs, timeout, None)
    }

    /// [`SctpSocket::connect_many`], the association with `paths` (the
    /// kernel's own with `None`).
    pub fn connect_many_with(
        addrs: &[SocketAddr],
        timeout: Option<Duration>,
        paths: Option<&PathParams>,
    ) -> io::Result<SctpSocket> {
        match addrs {
            [] => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no address to connect to",
                ));
            }
            [one] => return SctpSocket::connect_with(*one, timeout, paths),
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
        if let Some(p) = paths {
            s.set_path_params(p)?;
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

    /// The path to the peer's address `peer` of a one-to-one socket's
    /// association (SCTP_GET_PEER_ADDR_INFO).
    pub fn path_info(&self, peer: SocketAddr) -> io::Result<PathInfo> {
        // SAFETY: the struct is plain old data; all-zero is valid.
        let mut info: SctpPaddrinfo = unsafe { mem::zeroed() };
        let packed = pack_addrs(&[peer]);
        // SAFETY: `packed` is one sockaddr_in or sockaddr_in6, shorter than
        // the sockaddr_storage it is copied into; the field is unaligned,
        // so it is written through a byte pointer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                packed.as_ptr(),
                std::ptr::addr_of_mut!(info.spinfo_address).cast::<u8>(),
                packed.len(),
            );
        }
        let mut len = mem::size_of::<SctpPaddrinfo>() as libc::socklen_t;
        // SAFETY: `info` is writable for `len` bytes for the call.
        syscall!(unsafe {
            libc::getsockopt(
                self.as_raw_fd(),
                SOL_SCTP,
                SCTP_GET_PEER_ADDR_INFO,
                (&mut info as *mut SctpPaddrinfo).cast(),
                &mut len,
            )
        })?;
        let state = match info.spinfo_state {
            0 => PathState::Inactive,
            1 => PathState::PotentiallyFailed,
            2 => PathState::Active,
            3 => PathState::Unconfirmed,
            other => PathState::Other(other),
        };
        Ok(PathInfo {
            state,
            srtt: Duration::from_millis(u64::from(info.spinfo_srtt)),
            rto: Duration::from_millis(u64::from(info.spinfo_rto)),
        })
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
    /// `SCTP_PEER_ADDR_CHANGE`: a path changed state.
    PeerAddrChange {
        /// The association.
        assoc: AssocId,
        /// The peer's address (IPv4 when v4-mapped), if its family is
        /// known.
        peer: Option<IpAddr>,
        /// `spc_state` (see [`addr_state`]).
        state: i32,
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

/// The IP address of a sockaddr in `b` (its bytes, native family).
fn ip_at(b: &[u8]) -> Option<IpAddr> {
    match libc::c_int::from(u16_at(b, 0)?) {
        libc::AF_INET => {
            let o: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(IpAddr::from(o))
        }
        libc::AF_INET6 => {
            let o: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let ip = std::net::Ipv6Addr::from(o);
            Some(ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4))
        }
        _ => None,
    }
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
            // struct sctp_paddr_change (packed): type, flags, length(u32),
            // aaddr (sockaddr_storage) at 8, state at 136, error, assoc_id
            // at 144.
            sn::PEER_ADDR_CHANGE => Notification::PeerAddrChange {
                assoc: i32_at(b, 144)?,
                peer: ip_at(b.get(8..136)?),
                state: i32_at(b, 136)?,
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
        assert_eq!(mem::size_of::<SctpRtoinfo>(), 16);
        assert_eq!(mem::size_of::<SctpPaddrinfo>(), 152);
        assert_eq!(mem::offset_of!(SctpPaddrinfo, spinfo_state), 132);
        assert_eq!(mem::offset_of!(SctpPaddrinfo, spinfo_rto), 144);
        // Packed: offsetof(spp_hbinterval) 132, spp_pathmaxrxt 136,
        // spp_pathmtu 138, spp_flags 146, spp_dscp 154; sizeof 156.
        assert_eq!(mem::size_of::<SctpPaddrparams>(), 156);
        assert_eq!(mem::offset_of!(SctpPaddrparams, spp_hbinterval), 132);
        assert_eq!(mem::offset_of!(SctpPaddrparams, spp_pathmaxrxt), 136);
        assert_eq!(mem::offset_of!(SctpPaddrparams, spp_pathmtu), 138);
        assert_eq!(mem::offset_of!(SctpPaddrparams, spp_flags), 146);
        assert_eq!(mem::offset_of!(SctpPaddrparams, spp_dscp), 154);
        assert_eq!(mem::size_of::<libc::sctp_sndinfo>(), 16);
        assert_eq!(mem::size_of::<libc::sctp_rcvinfo>(), 28);
        assert_eq!(mem::size_of::<libc::sockaddr_in>(), 16);
        assert_eq!(mem::size_of::<libc::sockaddr_in6>(), 28);
    }

    #[test]
    fn path_params_in_milliseconds() {
        let lan = PathParams::LAN;
        assert_eq!(lan.rto_initial(), Duration::from_secs(1));
        let slow = PathParams {
            rto_min: Duration::from_secs(2),
            rto_max: Duration::from_secs(5),
            ..lan
        };
        assert_eq!(slow.rto_initial(), Duration::from_secs(2));
        let fast = PathParams {
            rto_min: Duration::from_millis(50),
            rto_max: Duration::from_millis(300),
            ..lan
        };
        assert_eq!(fast.rto_initial(), Duration::from_millis(300));
        assert_eq!(millis(Duration::from_micros(1500)), 1);
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_secs(1 << 40)), u32::MAX);
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
        let mut pc = vec![0u8; 148];
        pc[0..2].copy_from_slice(&sn::PEER_ADDR_CHANGE.to_ne_bytes());
        let sin = sockaddr_in(&"10.71.1.2:9".parse().unwrap());
        // SAFETY: sockaddr_in is plain old data.
        pc[8..24].copy_from_slice(unsafe { as_bytes(&sin) });
        pc[136..140].copy_from_slice(&addr_state::UNREACHABLE.to_ne_bytes());
        pc[144..148].copy_from_slice(&5i32.to_ne_bytes());
        assert_eq!(
            Notification::parse(&pc),
            Some(Notification::PeerAddrChange {
                assoc: 5,
                peer: Some("10.71.1.2".parse().unwrap()),
                state: addr_state::UNREACHABLE
            })
        );
        let mapped = sockaddr_in6(&"[::ffff:10.71.2.2]:9".parse().unwrap());
        pc[8..24].fill(0);
        // SAFETY: sockaddr_in6 is plain old data.
        pc[8..36].copy_from_slice(unsafe { as_bytes(&mapped) });
        match Notification::parse(&pc) {
            Some(Notification::PeerAddrChange { peer, .. }) => {
                assert_eq!(peer, Some("10.71.2.2".parse().unwrap()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Notification::parse(&pc[..147]), None);
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
