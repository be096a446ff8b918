//! SOCKS version 5: the wire format (RFC 1928, RFC 1929), the PROXY
//! protocol header a balancer may send first, the state
//! machine of one client connection, and the routing of one UDP
//! association. Nothing here does I/O.

pub mod connection;
pub mod proxy_protocol;
pub mod udp;
pub mod wire;

use std::io;

use wire::Reply;

/// Why a CONNECT failed, as the reply code the client gets.
///
/// This is the one place where errors become reply codes (RFC 1928 section 6).
pub fn reply_for_error(err: &io::Error) -> Reply {
    match err.raw_os_error() {
        Some(libc::ECONNREFUSED) => Reply::ConnectionRefused,
        Some(libc::ENETUNREACH | libc::ENETDOWN) => Reply::NetworkUnreachable,
        Some(libc::EHOSTUNREACH | libc::EHOSTDOWN | libc::ETIMEDOUT) => Reply::HostUnreachable,
        Some(libc::EACCES | libc::EPERM) => Reply::NotAllowed,
        _ => match err.kind() {
            io::ErrorKind::ConnectionRefused => Reply::ConnectionRefused,
            io::ErrorKind::TimedOut => Reply::HostUnreachable,
            io::ErrorKind::NotFound => Reply::HostUnreachable,
            io::ErrorKind::PermissionDenied => Reply::NotAllowed,
            _ => Reply::GeneralFailure,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_to_reply() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(
            reply_for_error(&e(libc::ECONNREFUSED)),
            Reply::ConnectionRefused
        );
        assert_eq!(
            reply_for_error(&e(libc::ENETUNREACH)),
            Reply::NetworkUnreachable
        );
        assert_eq!(
            reply_for_error(&e(libc::EHOSTUNREACH)),
            Reply::HostUnreachable
        );
        assert_eq!(reply_for_error(&e(libc::ETIMEDOUT)), Reply::HostUnreachable);
        assert_eq!(reply_for_error(&e(libc::EACCES)), Reply::NotAllowed);
        assert_eq!(reply_for_error(&e(libc::EPERM)), Reply::NotAllowed);
        assert_eq!(
            reply_for_error(&e(libc::EADDRNOTAVAIL)),
            Reply::GeneralFailure
        );
        // Name resolution failures are reported as NotFound / TimedOut kinds.
        let nf = io::Error::new(io::ErrorKind::NotFound, "no such name");
        assert_eq!(reply_for_error(&nf), Reply::HostUnreachable);
        let to = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
        assert_eq!(reply_for_error(&to), Reply::HostUnreachable);
    }
}
