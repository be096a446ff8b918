//! Kernel pipes for splice(2): bytes move socket → pipe → socket without
//! being copied through user space.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use nix::unistd::pipe2;

/// A non-blocking pipe used as one direction's buffer.
#[derive(Debug)]
pub struct KernelPipe {
    read: OwnedFd,
    write: OwnedFd,
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

impl KernelPipe {
    /// A new pipe holding up to about `size` bytes (the kernel rounds it to
    /// pages and may give less than asked when the system limit is lower).
    pub fn new(size: usize) -> io::Result<Self> {
        let (read, write) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // Linux pipes start at 64 KiB (16 slots). Another size costs one more
        // call; failing to set it only changes speed.
        if size != 64 * 1024 {
            let _ = fcntl(
                &write,
                FcntlArg::F_SETPIPE_SZ(size.min(i32::MAX as usize) as i32),
            );
        }
        Ok(KernelPipe { read, write })
    }

    /// Moves up to `len` bytes from `src` into the pipe. `Ok(0)` is the end
    /// of `src`'s stream.
    pub fn fill_from(&self, src: impl AsFd, len: usize) -> io::Result<usize> {
        Ok(splice(src, None, &self.write, None, len, flags())?)
    }

    /// Moves up to `len` bytes from the pipe to `dst`.
    pub fn drain_to(&self, dst: impl AsFd, len: usize) -> io::Result<usize> {
        Ok(splice(&self.read, None, dst, None, len, flags())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn moves_bytes_through_the_pipe() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let (c, mut d) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let p = KernelPipe::new(64 * 1024).unwrap();
        a.write_all(b"hello, splice").unwrap();
        let n = p.fill_from(&b, 1 << 16).unwrap();
        assert_eq!(n, 13);
        assert_eq!(p.drain_to(&c, n).unwrap(), 13);
        let mut got = [0u8; 13];
        d.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello, splice");
        // Nothing more to read: EAGAIN, not end of stream.
        let e = p.fill_from(&b, 1 << 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        assert_eq!(p.fill_from(&b, 1 << 16).unwrap(), 0);
    }
}
