//! TCP listening sockets with SO_REUSEPORT.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    self, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, sockopt,
};

/// A non-blocking listener on `addr` that other listeners of this process may
/// share with SO_REUSEPORT, so that the kernel spreads accepts over workers
/// without a shared lock. IPv6 listeners are IPv6-only, so `0.0.0.0` and `::`
/// can both be bound on one port.
pub fn reuseport_listener(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    // Accepted sockets inherit TCP_NODELAY from their listener on Linux:
    // one setsockopt here instead of one per connection.
    socket::setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
    socket::setsockopt(&fd, sockopt::ReusePort, &true)?;
    if addr.is_ipv6() {
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    socket::listen(&fd, Backlog::new(backlog).unwrap_or(Backlog::MAXCONN))?;
    Ok(TcpListener::from(fd))
}

/// Whether a connection waits in `listener`'s accept queue: a listening
/// socket polls readable exactly then. Unlike accept(2), which takes a
/// descriptor before it looks at the queue and so fails with EMFILE at the
/// limit whether anyone waits or not, this needs no descriptor.
pub fn connection_waits(listener: &impl AsFd) -> io::Result<bool> {
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::ZERO)?;
    Ok(n > 0
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN)))
}

/// The addresses of this host's interfaces (getifaddrs(3)): what a
/// listener on an unspecified address is reachable at.
pub fn host_addrs() -> io::Result<Vec<std::net::IpAddr>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
        let Some(addr) = ifa.address else {
            continue;
        };
        if let Some(v4) = addr.as_sockaddr_in() {
            out.push(std::net::IpAddr::V4(v4.ip()));
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            out.push(std::net::IpAddr::V6(v6.ip()));
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let l = reuseport_listener("127.0.0.1:0".parse().unwrap(), 8).unwrap();
        let addr = l.local_addr().unwrap();
        let _c = TcpStream::connect(addr).unwrap();
        l.set_nonblocking(false).unwrap();
        let (s, _) = l.accept().unwrap();
        assert!(s.nodelay().unwrap());
    }

    #[test]
    fn a_waiting_connection_is_seen_without_accepting_it() {
        let l = reuseport_listener("127.0.0.1:0".parse().unwrap(), 8).unwrap();
        assert!(!connection_waits(&l).unwrap());
        // connect() returns once the kernel has queued the connection.
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(connection_waits(&l).unwrap());
        l.set_nonblocking(false).unwrap();
        let _s = l.accept().unwrap();
        assert!(!connection_waits(&l).unwrap());
    }
}
