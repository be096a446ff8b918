//! The environment every curl, socks5dctl and ncat run of the tests is
//! scrubbed of: a proxy variable (a NO_PROXY=127.0.0.1 makes curl bypass
//! socks5d and the test pass for nothing), a curlrc's home, an inherited
//! administrator name, password or management socket.

use std::process::Command;

/// The variables removed from every client the tests run.
pub const SCRUBBED_ENV: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "socks_proxy",
    "SOCKS_PROXY",
    "CURL_HOME",
    "SOCKS5DCTL_USER",
    "SOCKS5DCTL_PASSWORD",
    "SOCKS5DCTL_NEW_PASSWORD",
    "SOCKS5DCTL_UNIX",
];

/// Removes [`SCRUBBED_ENV`] from `cmd`'s environment; set what the run
/// needs afterwards.
pub fn scrub_env(cmd: &mut Command) -> &mut Command {
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd
}
