//! The management suite over socks5d's Unix-domain socket (--mgmt-unix),
//! on the host (no SCTP needed): a test per case of the suite's list
//! (tests/mgmt/) marked to run over both transports or over the Unix
//! socket only, named `module::case` as tests/sctp/ names the same cases
//! over SCTP.
//!
//! The cases run one at a time, as they do inside UML: several measure
//! time (a change in effect within 100 ms, round trips under a second) or
//! memory, which other cases' daemons would disturb.
//!
//! Tests run as root (as `make test` does): some run socks5dctl as other
//! users, one mounts a small tmpfs.

mod common;
mod mgmt;

use std::sync::Mutex;

use mgmt::support::Transport;

/// Held by the case that runs.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs the case `name` over the Unix socket, after any other.
fn run(name: &str) {
    let case = mgmt::case_over(name, Transport::Unix);
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    (case.run)(&Transport::Unix);
}

/// A test for one case of the list, unless it is about SCTP alone.
macro_rules! unix_test {
    (Sctp $module:ident $name:ident) => {};
    (Both $module:ident $name:ident) => {
        unix_test!(@test $module $name);
    };
    (Unix $module:ident $name:ident) => {
        unix_test!(@test $module $name);
    };
    (@test $module:ident $name:ident) => {
        #[test]
        fn $name() {
            crate::run(concat!(stringify!($module), "::", stringify!($name)));
        }
    };
}

/// A module of tests per module of cases.
macro_rules! unix_tests {
    ($($module:ident { $($over:ident $name:ident,)* })*) => {
        $(mod $module {
            $(unix_test!($over $module $name);)*
        })*
    };
}

mgmt::with_cases!(unix_tests);
