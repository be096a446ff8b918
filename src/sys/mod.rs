//! Everything that talks to the kernel below std and mio: socket options,
//! CPU affinity, signals. Unsafe code is allowed here and nowhere else; each
//! block says why it is sound.

pub mod argv;
pub mod cpu;
pub mod net;
pub mod notify;
pub mod privs;
pub mod sctp;
pub mod signal;
