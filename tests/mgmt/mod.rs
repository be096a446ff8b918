//! The management protocol suite (docs/management-protocol.md): the real
//! socks5d and socks5dctl, each case one body that takes the transport it
//! runs over ([`Transport`]).
//!
//! Two targets run it, both from [`with_cases!`], the one list of cases:
//! - tests/sctp/ over SCTP: every case marked `Both` or `Sctp`, inside
//!   User-Mode Linux when this kernel has no SCTP;
//! - tests/mgmt_unix.rs over the Unix-domain socket (`--mgmt-unix`), on
//!   the host: every case marked `Both` or `Unix`.
//!
//! A case about the protocol itself runs over both; where the transports
//! legitimately differ (an abort is a reset or the end of the connection,
//! a source is an address or a local user) it asserts each one's own
//! expectation. SCTP-only cases are about SCTP itself (its addresses,
//! multi-homing, third-party SCTP clients); Unix-only ones about the socket
//! file, local users and clients of that socket. The C tests (c-tests/,
//! over libsctp) are SCTP-only and run on their own.

pub mod admin;
pub mod clients;
pub mod ctl;
pub mod effects;
pub mod faults;
pub mod local;
pub mod login;
pub mod paths;
pub mod protocol;
pub mod support;
pub mod unauth;

use support::Transport;

/// The transports a case runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// Both: the case is about the protocol.
    Both,
    /// SCTP only: the case is about SCTP itself.
    Sctp,
    /// The Unix socket only: the case is about the socket file, local users
    /// or a client of that socket.
    Unix,
}

impl Over {
    /// Whether a case marked so runs over `t`.
    pub fn includes(self, t: Transport) -> bool {
        matches!(
            (self, t),
            (Over::Both, _) | (Over::Sctp, Transport::Sctp) | (Over::Unix, Transport::Unix)
        )
    }
}

/// One case of the suite.
#[derive(Debug)]
pub struct Case {
    /// `module::function`, as both targets name it.
    pub name: &'static str,
    /// Where it runs.
    pub over: Over,
    /// Its body.
    pub run: fn(&Transport),
}

/// Calls the macro `$then` with every case of the suite, in the order the
/// SCTP target runs them, by module: `module { Over function, ... }`. A case
/// function left out of this list is dead code, which clippy (`-D
/// warnings`) refuses.
macro_rules! with_cases {
    ($then:ident) => {
        $then! {
            protocol {
                Both login_success_and_counters,
                Both list_users_paging,
                Both user_changes_and_their_statuses,
                Both server_error_when_the_users_file_cannot_be_written,
                Both limit_reached_with_max_users,
                Both bad_version_and_unknown_commands,
                Both malformed_requests_keep_the_session,
            }
            login {
                Both failures_close_the_association,
                Both wrong_admin_passwords_hold_memory_fixed,
            }
            admin {
                Both fifty_concurrent_sessions,
                Both stuck_reader_does_not_delay_others,
                Sctp ipv4_and_ipv6_addresses,
            }
            effects {
                Both user_changes_reach_socks_within_100ms,
                Both metrics_equal_the_socks_traffic,
                Both users_file_survives_a_restart,
            }
            clients {
                Both socks5dctl_end_to_end,
                Sctp ncat_and_socat,
            }
            ctl {
                Sctp several_addresses_make_one_association,
                Both reload_and_user_metrics,
            }
            paths {
                Sctp a_session_moves_to_the_other_path_and_back,
                Sctp an_administrator_on_no_path_is_dropped,
            }
            faults {
                Both sigkill_during_user_changes,
                Both session_cap_refuses_the_fourth_log_in,
                Both login_throttle_is_per_source,
            }
            unauth {
                Both held_associations_do_not_keep_an_administrator_out,
                Both login_grace_aborts_a_silent_association,
            }
            local {
                Unix the_socket_is_its_owners_unless_told_otherwise,
                Unix a_stale_socket_is_replaced_and_a_clean_stop_removes_it,
                Unix a_live_servers_socket_and_other_files_are_never_taken_over,
                Unix every_command_with_socks5dctl,
                Unix reload_reads_the_users_file_and_a_bad_one_changes_nothing,
                Unix an_independent_python_client_speaks_the_raw_protocol,
                Unix oversized_messages_are_malformed_never_two,
                Unix a_peer_that_does_not_read_is_aborted_at_the_queue_limit,
                Unix a_silent_connection_is_closed_after_the_log_in_grace_time,
                Unix failed_log_ins_are_counted_per_local_user,
                Unix the_audit_trail_records_who_did_what,
                Unix offline_user_commands_and_a_running_server_lose_no_change,
            }
        }
    };
}
#[allow(unused_imports)] // The Unix target uses it; the SCTP one only here.
pub(crate) use with_cases;

/// [`CASES`] from the list.
macro_rules! table {
    ($($module:ident { $($over:ident $name:ident,)* })*) => {
        /// Every case, in the order the SCTP target runs them.
        pub const CASES: &[Case] = &[$($(Case {
            name: concat!(stringify!($module), "::", stringify!($name)),
            over: Over::$over,
            run: $module::$name,
        },)*)*];
    };
}
with_cases!(table);

/// The cases that run over `t`.
#[allow(dead_code)] // The SCTP target's.
pub fn cases_over(t: Transport) -> impl Iterator<Item = &'static Case> {
    CASES.iter().filter(move |c| c.over.includes(t))
}

/// The case named `name`; fails the test unless it runs over `t`.
#[allow(dead_code)] // The Unix target's.
pub fn case_over(name: &str, t: Transport) -> &'static Case {
    let case = CASES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case named {name}"));
    assert!(
        case.over.includes(t),
        "{name} does not run over {t} ({:?})",
        case.over
    );
    case
}
