//! Helpers for the management suite, on the tests' shared library
//! (tests/common): the transport a case runs over, the real `socks5d`
//! binary with its management endpoint on it, a management client over
//! either transport, TCP targets, curl and socks5dctl runners.
//!
//! Every wait has a deadline and every socket a timeout; a failure says what
//! the daemon wrote to standard error.

mod daemon;
mod mgmt;
mod netns;
mod process;
mod socks;
mod transport;

use std::time::Duration;

pub use daemon::*;
pub use mgmt::*;
pub use netns::*;
pub use process::*;
pub use socks::*;
pub use transport::*;

/// The management client under test.
pub const SOCKS5DCTL: &str = env!("CARGO_BIN_EXE_socks5dctl");

/// The administrator every daemon gets unless told otherwise.
pub const ADMIN: &str = "root";
/// Its password.
pub const ADMIN_PW: &str = "rootpw";

/// Start-up may take this long (debug build, one UML CPU, Argon2id).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Read and write timeout of every socket the tests open.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a child process (curl, socks5dctl, ncat) may run.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

const MGMT_READY: &str = "management listening: transport=sctp addrs=";
