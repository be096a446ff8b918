//! Unix-domain SOCK_SEQPACKET sockets: the management protocol's local
//! transport. std and mio have no SOCK_SEQPACKET; nix makes the calls.
//!
//! A SOCK_SEQPACKET connection keeps message boundaries as SCTP does: one
//! `send` is one packet, and one `recv` returns one packet, cut to the
//! buffer if it is longer (the rest is dropped, never read as a second
//! packet). The file of a listening socket is created with the mode asked
//! for from the first instant, a stale one (left by a server that is gone)
//! is replaced, and a live server's is never taken over.

use std::fmt;
use std::fs::{self, Permissions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{
    self, AddressFamily, Backlog, MsgFlags, Shutdown, SockFlag, SockType, UnixAddr, sockopt,
};
use nix::sys::stat::{Mode, fchmod};
use nix::sys::time::TimeVal;

use crate::logfmt::{LogSafe, Quoted};

/// Who may connect to a listening socket's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Permission bits of the file (at most 0o777).
    pub mode: u32,
    /// The file's group, when not the creator's.
    pub group: Option<u32>,
}

/// Why a listening socket could not be made at a path.
#[derive(Debug)]
pub enum BindError {
    /// A server answers on the path: its socket is never taken over.
    Live(PathBuf),
    /// Something that is not a socket is at the path: it is never removed.
    NotSocket(PathBuf),
    /// A step failed: what was being done, and the error.
    Io(PathBuf, &'static str, io::Error),
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::Live(p) => write!(
                f,
                "{}: another server is listening on this socket; stop it or choose \
                 another path",
                p.display()
            ),
            BindError::NotSocket(p) => write!(
                f,
                "{}: exists and is not a socket; it is left alone: remove it or choose \
                 another path",
                p.display()
            ),
            BindError::Io(p, what, e) => write!(f, "{}: {what}: {e}", p.display()),
        }
    }
}

impl std::error::Error for BindError {}

/// The file of a listening socket, as it was made: removed when the
/// listener goes, unless another socket has replaced it since.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = fs::remove_file(&self.path) {
                    // After --run-as the folder may not be ours to change:
                    // the next start finds the file stale and replaces it.
                    log::warn!(
                        "socket file not removed: path={} error={}",
                        LogSafe(self.path.display()),
                        Quoted(e)
                    );
                }
            }
            _ => {}
        }
    }
}

/// A listening, non-blocking SOCK_SEQPACKET socket bound to a path.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    file: SocketFile,
}

impl Listener {
    /// Listens at `path`, a file of mode `access.mode` and group
    /// `access.group`. A socket file at `path` that no server answers on
    /// is replaced; a live one, or anything that is not a socket, is an
    /// error.
    pub fn bind(path: &Path, access: Access) -> Result<Listener, BindError> {
        let fail = |what| move |e: io::Error| BindError::Io(path.to_owned(), what, e);
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail("cannot look at it")(e)),
            Ok(m) if !m.file_type().is_socket() => {
                return Err(BindError::NotSocket(path.to_owned()));
            }
            // Bounded: connect() to a listener whose backlog is full waits.
            Ok(_) => match Conn::connect(path, Some(Duration::from_secs(2))) {
                Ok(_) => return Err(BindError::Live(path.to_owned())),
                // A listener too busy to take us is a live one.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(BindError::Live(path.to_owned()));
                }
                // Nobody listens: the socket of a server that is gone.
                Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                    // No server answers on it.
                    log::info!("stale socket replaced: path={}", LogSafe(path.display()));
                    match fs::remove_file(path) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => {
                            return Err(fail("cannot remove the stale socket")(e));
                        }
                        _ => {}
                    }
                }
                // A socket of another type: someone listens on it.
                Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
                    return Err(BindError::Live(path.to_owned()));
                }
                Err(e) => return Err(fail("cannot tell whether a server listens on it")(e)),
            },
        }
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| fail("socket")(e.into()))?;
        // Linux gives the file bind() creates the mode of the socket's own
        // inode, less the umask: set there first, it is never wider than
        // asked for, not even between bind() and chmod().
        let mode = Mode::from_bits_truncate(access.mode & 0o777);
        fchmod(&fd, mode).map_err(|e| fail("fchmod")(e.into()))?;
        let addr = UnixAddr::new(path).map_err(|e| fail("not a socket path")(e.into()))?;
        socket::bind(fd.as_raw_fd(), &addr).map_err(|e| fail("bind")(e.into()))?;
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                let _ = fs::remove_file(path);
                return Err(fail("cannot look at the new socket")(e));
            }
        };
        // From here on the file goes when the listener does, also on error.
        let file = SocketFile {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        };
        if let Some(gid) = access.group {
            std::os::unix::fs::lchown(path, None, Some(gid)).map_err(fail("chown"))?;
        }
        // The umask may have taken bits the operator asked for.
        fs::set_permissions(path, Permissions::from_mode(access.mode & 0o777))
            .map_err(fail("chmod"))?;
        // Only now may anyone connect: until listen() a connect is refused.
        socket::listen(&fd, Backlog::new(128).unwrap_or(Backlog::MAXCONN))
            .map_err(|e| fail("listen")(e.into()))?;
        Ok(Listener { fd, file })
    }

    /// The path the socket listens at.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Accepts one connection, non-blocking like the listener.
    pub fn accept(&self) -> io::Result<Conn> {
        let fd = socket::accept4(&self.fd, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC)?;
        Ok(Conn { fd })
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The peer of a connection, as the kernel saw it when it connected
/// (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Its user id.
    pub uid: u32,
    /// Its process id.
    pub pid: i32,
}

/// One SOCK_SEQPACKET connection: accepted (non-blocking) or connected
/// (blocking, for clients).
#[derive(Debug)]
pub struct Conn {
    fd: OwnedFd,
}

impl Conn {
    /// A blocking connection to the socket at `path`, with `timeout` on
    /// every send and receive (and on connect, when the listener's backlog
    /// is full).
    pub fn connect(path: &Path, timeout: Option<Duration>) -> io::Result<Conn> {
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let c = Conn { fd };
        if let Some(t) = timeout {
            c.set_timeouts(t)?;
        }
        let addr = UnixAddr::new(path)?;
        socket::connect(c.fd.as_raw_fd(), &addr)?;
        Ok(c)
    }

    /// Sets SO_RCVTIMEO and SO_SNDTIMEO (blocking connections).
    pub fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        let tv = TimeVal::new(
            t.as_secs().try_into().unwrap_or(i64::MAX),
            t.subsec_micros().into(),
        );
        socket::setsockopt(&self.fd, sockopt::ReceiveTimeout, &tv)?;
        socket::setsockopt(&self.fd, sockopt::SendTimeout, &tv)?;
        Ok(())
    }

    /// Who is at the other end.
    pub fn peer_cred(&self) -> io::Result<PeerCred> {
        let c = socket::getsockopt(&self.fd, sockopt::PeerCredentials)?;
        Ok(PeerCred {
            uid: c.uid(),
            pid: c.pid(),
        })
    }

    /// Sends `msg` as one packet. A closed peer is an error (EPIPE), never
    /// a SIGPIPE.
    pub fn send(&self, msg: &[u8]) -> io::Result<usize> {
        Ok(socket::send(
            self.fd.as_raw_fd(),
            msg,
            MsgFlags::MSG_NOSIGNAL,
        )?)
    }

    /// Receives one packet into `buf` and returns its whole length, which
    /// is more than `buf.len()` when the packet was cut to fit (MSG_TRUNC):
    /// only the first `buf.len()` bytes are there, and the rest is gone.
    ///
    /// 0 is an empty packet or the end of the connection; [`peer_closed`]
    /// tells which.
    ///
    /// [`peer_closed`]: Conn::peer_closed
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(socket::recv(self.fd.as_raw_fd(), buf, MsgFlags::MSG_TRUNC)?)
    }

    /// Whether the peer has shut its side down (or closed): a `recv` of 0
    /// is then the end, not an empty packet.
    pub fn peer_closed(&self) -> io::Result<bool> {
        // By hand: nix's PollFd drops revents it has no name for, and
        // POLLRDHUP is one.
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd, alive and writable for the call; a
            // zero timeout never blocks.
            match syscall!(unsafe { libc::poll(&mut pfd, 1, 0) }) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(_) => return Ok(pfd.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0),
            }
        }
    }

    /// Ends this side: the peer reads what was sent, then the end.
    pub fn shutdown_write(&self) -> io::Result<()> {
        Ok(socket::shutdown(self.fd.as_raw_fd(), Shutdown::Write)?)
    }

    /// Receives one whole message of at most `max` bytes (a blocking
    /// client's read); `Ok(None)` at the end of the connection.
    pub fn recv_message(&self, max: usize) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; max + 1];
        let n = self.recv(&mut buf)?;
        if n == 0 && self.peer_closed()? {
            return Ok(None);
        }
        if n > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a message of {n} bytes, more than {max}"),
            ));
        }
        buf.truncate(n);
        Ok(Some(buf))
    }
}

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("socks5d-seqpacket-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    const OWNER_ONLY: Access = Access {
        mode: 0o600,
        group: None,
    };

    #[test]
    fn packets_keep_their_bounds_and_long_ones_are_cut() {
        let dir = temp_dir("bounds");
        let path = dir.join("s");
        let l = Listener::bind(&path, OWNER_ONLY).unwrap();
        let c = Conn::connect(&path, Some(Duration::from_secs(5))).unwrap();
        let a = l.accept().unwrap();
        assert_eq!(a.peer_cred().unwrap().uid, nix::unistd::getuid().as_raw());
        c.send(b"one").unwrap();
        c.send(b"").unwrap();
        c.send(&[7u8; 3000]).unwrap();
        let mut buf = [0u8; 1025];
        assert_eq!(a.recv(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"one");
        assert_eq!(a.recv(&mut buf).unwrap(), 0);
        assert!(!a.peer_closed().unwrap(), "an empty packet, not the end");
        // Cut to the buffer; its whole length is told; the rest is gone.
        assert_eq!(a.recv(&mut buf).unwrap(), 3000);
        let e = a.recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        a.send(b"reply").unwrap();
        a.shutdown_write().unwrap();
        assert_eq!(c.recv_message(100).unwrap().as_deref(), Some(&b"reply"[..]));
        assert_eq!(c.recv_message(100).unwrap(), None);
        drop(c);
        assert_eq!(a.recv(&mut buf).unwrap(), 0);
        assert!(a.peer_closed().unwrap());
        drop(l);
        assert!(!path.exists(), "the file goes with the listener");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_file_has_the_mode_asked_for_whatever_the_umask() {
        let dir = temp_dir("mode");
        for mode in [0o600, 0o660, 0o666] {
            let path = dir.join(format!("s{mode:o}"));
            let l = Listener::bind(&path, Access { mode, group: None }).unwrap();
            let m = fs::symlink_metadata(&path).unwrap();
            assert!(m.file_type().is_socket());
            assert_eq!(m.mode() & 0o777, mode, "{mode:o}");
            drop(l);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_sockets_are_replaced_live_ones_and_other_files_are_not() {
        let dir = temp_dir("stale");
        let path = dir.join("s");
        let live = Listener::bind(&path, OWNER_ONLY).unwrap();
        let e = Listener::bind(&path, OWNER_ONLY).unwrap_err();
        assert!(matches!(e, BindError::Live(_)), "{e}");
        assert!(e.to_string().contains("another server is listening"), "{e}");
        // A socket bound but no longer listened on: what a killed server
        // leaves (its Drop never ran).
        std::mem::forget(live.file);
        drop(live.fd);
        assert!(path.exists());
        let again = Listener::bind(&path, OWNER_ONLY).unwrap();
        drop(again);
        let plain = dir.join("f");
        fs::write(&plain, b"keep me").unwrap();
        let e = Listener::bind(&plain, OWNER_ONLY).unwrap_err();
        assert!(matches!(e, BindError::NotSocket(_)), "{e}");
        assert_eq!(fs::read(&plain).unwrap(), b"keep me");
        fs::remove_dir_all(&dir).unwrap();
    }
}
