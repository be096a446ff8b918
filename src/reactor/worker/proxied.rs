//! The driver's side of the PROXY protocol (`--proxy-protocol-from`): the
//! client's address a balancer's header names is applied where socks5d
//! uses a client's address, and connections closed for a header are
//! counted and logged, a bounded number of lines.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::Ctx;
use super::sockets::Sockets;
use crate::logfmt::LogSafe;
use crate::socks5::connection::ProxyRefusal;

/// At most one line about refused PROXY headers per worker in this time:
/// anyone who can connect can send one.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// When the last line about a refused header was written, and how many
/// were left out since.
#[derive(Debug, Default)]
pub(super) struct ProxyLog {
    last_line: Option<Instant>,
    left_out: u64,
}

impl ProxyLog {
    /// Whether a line may be written at `now`; counts it if not. Returns
    /// the lines left out before it.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.last_line.is_some_and(|t| now < t + LOG_EVERY) {
            self.left_out += 1;
            return None;
        }
        self.last_line = Some(now);
        Some(std::mem::take(&mut self.left_out))
    }
}

impl Ctx {
    /// A connection from `ip` closed for its PROXY header: counted (METRICS
    /// X'88'), and logged at most once per [`LOG_EVERY`].
    pub(super) fn proxy_refused(&mut self, why: ProxyRefusal, ip: IpAddr) {
        self.counters.proxy_refused += 1;
        let Some(left_out) = self.proxy_log.admit(self.now) else {
            return;
        };
        // untrusted: a header from a source not in --proxy-protocol-from;
        // invalid, missing: a balancer's bytes were no header, or too few.
        let (reason, detail) = match why {
            ProxyRefusal::Untrusted => ("untrusted", "-"),
            ProxyRefusal::Invalid(e) => ("invalid", e.as_str()),
            ProxyRefusal::Missing => ("missing", "-"),
        };
        log::warn!(
            "connection closed for its proxy header: source={} reason={reason} detail={detail} \
             left_out={left_out} window_s={}",
            LogSafe(ip),
            LOG_EVERY.as_secs()
        );
    }
}

/// A balancer's PROXY header named `client`: from now on it is the
/// connection's client for the access log and its rules, penalties, rate
/// limits and UDP association, and its `--max-sessions-per-client` count
/// is taken now (a balancer's connection takes none at accept). Past that
/// limit the connection closes.
pub(super) fn client_known(s: &mut Sockets, ctx: &mut Ctx, client: SocketAddr) {
    let admitted = ctx
        .limits
        .per_client
        .as_ref()
        .is_none_or(|c| c.take(&client.ip().to_canonical()));
    if !admitted {
        ctx.counters.session_limit += 1;
    }
    s.peer = client;
    let now = ctx.now;
    s.conn.handle_proxied(now, admitted, &ctx.gate(client.ip()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_what_was_left_out() {
        let mut log = ProxyLog::default();
        let t0 = Instant::now();
        assert_eq!(log.admit(t0), Some(0));
        for _ in 0..1000 {
            assert_eq!(log.admit(t0 + LOG_EVERY / 2), None);
        }
        assert_eq!(log.admit(t0 + LOG_EVERY), Some(1000));
        assert_eq!(log.admit(t0 + LOG_EVERY), None);
        assert_eq!(log.admit(t0 + 3 * LOG_EVERY), Some(1));
    }
}
