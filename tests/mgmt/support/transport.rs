//! The transport a case runs over: SCTP (socks5d's one-to-many socket, a
//! one-to-one association per client) or the Unix-domain SOCK_SEQPACKET
//! socket of `--mgmt-unix` (a connection per client). It says how socks5d
//! is started, where a client connects, how socks5dctl is pointed at it,
//! and what the client sees where the two legitimately differ.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt};
use socks5d::sys::sctp::SctpSocket;
use socks5d::sys::seqpacket::Conn;

use super::*;

/// A user id the tests run clients as (none needs to exist in /etc/passwd).
pub const UID_A: u32 = 64_001;
/// Another.
pub const UID_B: u32 = 64_002;
/// A group id the tests give a socket to.
pub const GID_OPERATORS: u32 = 64_100;

/// What the management protocol is carried by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// SCTP: `-P 0`, clients on one-to-one associations.
    Sctp,
    /// The Unix-domain socket: `--mgmt-unix PATH`, clients on
    /// SOCK_SEQPACKET connections.
    Unix,
}

impl Transport {
    /// Its name in the audit trail and in case names.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Sctp => "sctp",
            Transport::Unix => "unix",
        }
    }

    /// socks5d's options for a flood of wrong administrator passwords that
    /// must all be checked, none refused unchecked by a penalty: loopback
    /// exempt over SCTP; over Unix, where no network exemption covers a
    /// local user (docs/management-protocol.md section 9.9), a threshold the
    /// flood stays under.
    pub fn unpenalised(self) -> &'static [&'static str] {
        match self {
            Transport::Sctp => &["--auth-penalty-exempt", "127.0.0.0/8"],
            Transport::Unix => &["--max-login-failures", "100000"],
        }
    }

    /// socks5d's options that let [`Daemon::ctl_from_elsewhere`] in: none
    /// over SCTP; over Unix a socket every local user may connect to.
    pub fn open_to_others(self) -> &'static [&'static str] {
        match self {
            Transport::Sctp => &[],
            Transport::Unix => &["--mgmt-unix-mode", "0666"],
        }
    }

    /// How socks5d names the source of this process's sessions when it
    /// counts refused log ins: the address 127.0.0.1 over SCTP, the local
    /// user (SO_PEERCRED) over Unix.
    pub fn this_source(self) -> String {
        match self {
            Transport::Sctp => "127.0.0.1".to_owned(),
            Transport::Unix => format!("uid:{}", nix::unistd::getuid()),
        }
    }

    /// Whether `got`, a receive on a session the server has aborted before
    /// it sent anything, shows that abort. SCTP: an ABORT, read as
    /// ECONNRESET. Unix: "aborting is closing the socket"
    /// (docs/management-protocol.md section 2.9), read as the end of the
    /// connection (a reset only when the server left input of ours unread,
    /// which a silent client never sends). A receive timeout is `false`;
    /// anything else fails the test.
    pub fn aborted(self, got: &io::Result<Option<Vec<u8>>>) -> bool {
        match (self, got) {
            (_, Err(e)) if is_timeout(e) => false,
            (Transport::Sctp, Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => true,
            (Transport::Unix, Ok(None)) => true,
            (t, other) => panic!(
                "a session aborted over {}: want {}, got {other:?}",
                t.name(),
                match t {
                    Transport::Sctp => "a reset (ABORT)",
                    Transport::Unix => "the end of the connection",
                }
            ),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `e` is a socket timeout.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Where a management client connects: an SCTP address, or the path of
/// the Unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// socks5d's SCTP port at one of its addresses.
    Sctp(SocketAddr),
    /// socks5d's Unix-domain socket.
    Unix(PathBuf),
}

impl Endpoint {
    /// A blocking client socket connected to it, with [`IO_TIMEOUT`] on
    /// every send and receive.
    pub fn open(&self) -> io::Result<Sock> {
        match self {
            Endpoint::Sctp(a) => SctpSocket::connect(*a, Some(IO_TIMEOUT)).map(Sock::Sctp),
            Endpoint::Unix(p) => Conn::connect(p, Some(IO_TIMEOUT)).map(Sock::Unix),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Sctp(a) => write!(f, "SCTP {a}"),
            Endpoint::Unix(p) => write!(f, "Unix socket {}", p.display()),
        }
    }
}

/// A client's socket: one one-to-one SCTP association, or one
/// SOCK_SEQPACKET connection. Each message is one SCTP user message or one
/// packet.
#[derive(Debug)]
pub enum Sock {
    /// A one-to-one SCTP association.
    Sctp(SctpSocket),
    /// A Unix-domain SOCK_SEQPACKET connection.
    Unix(Conn),
}

impl Sock {
    /// Sends `msg` as one message.
    pub fn send_message(&self, msg: &[u8]) -> io::Result<()> {
        match self {
            Sock::Sctp(s) => s.send_message(msg),
            Sock::Unix(c) => match c.send(msg)? {
                n if n == msg.len() => Ok(()),
                n => Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("a packet of {} bytes sent as {n}", msg.len()),
                )),
            },
        }
    }

    /// Receives one whole message of at most `max` bytes; `Ok(None)` at the
    /// end (the server's graceful close; over Unix also its abort).
    pub fn recv_message(&self, max: usize) -> io::Result<Option<Vec<u8>>> {
        match self {
            Sock::Sctp(s) => s.recv_message(max),
            Sock::Unix(c) => c.recv_message(max),
        }
    }

    /// Sets the send and receive timeouts.
    pub fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        match self {
            Sock::Sctp(s) => s.set_timeouts(t),
            Sock::Unix(c) => c.set_timeouts(t),
        }
    }

    /// The most answer bytes the kernel holds for this client before the
    /// rest must wait at the server. SCTP: this socket's receive buffer.
    /// Unix: the server's send buffer (an AF_UNIX sender is charged for
    /// what its peer has not read), of the system's default size, which
    /// socks5d does not change.
    pub fn kernel_room(&self) -> usize {
        match self {
            Sock::Sctp(s) => getsockopt(s, sockopt::RcvBuf).expect("SO_RCVBUF"),
            Sock::Unix(_) => {
                let path = "/proc/sys/net/core/wmem_default";
                let text =
                    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
                text.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{path}: {text:?}: {e}"))
            }
        }
    }
}

impl AsFd for Sock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Sock::Sctp(s) => s.as_fd(),
            Sock::Unix(c) => c.as_fd(),
        }
    }
}
