//! Everything that talks to the kernel below std and mio: socket options,
//! Unix-domain SOCK_SEQPACKET sockets, CPU affinity, signals. Unsafe code is
//! allowed here and nowhere else; each block says why it is sound.

/// Runs a libc call and turns its -1 into the `io::Error` of errno.
macro_rules! syscall {
    ($e:expr) => {{
        let r = $e;
        if r == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }};
}

pub mod argv;
pub mod cpu;
pub mod net;
pub mod notify;
pub mod privs;
pub mod sctp;
pub mod seqpacket;
pub mod signal;
