//! Per-source penalties for failed authentications, in the manner of
//! OpenSSH's PerSourcePenalties.
//!
//! Failed authentications are counted per source (an IPv4 address, an
//! IPv6 /64: one host's share of addresses, or the user id of a peer on a
//! Unix-domain socket); a source that reaches the
//! threshold within [`PenaltyConfig::window`] is penalised: while the penalty
//! lasts, its authentications are refused without a check. Each repeated
//! offence doubles the penalty, up to [`PenaltyConfig::max`]. Networks on the
//! exempt list are never counted.
//!
//! Asking whether a source is penalised costs one atomic load while no
//! penalty is running anywhere, so the handshake's hot path pays nothing
//! until an attack starts. The table is bounded: past [`MAX_SOURCES`]
//! tracked sources, new ones are not tracked (OpenSSH's "permissive"
//! overflow), which keeps memory fixed and never refuses a source that did
//! nothing.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The most sources tracked at once.
pub const MAX_SOURCES: usize = 65_536;

/// Where failures come from, as penalties and fair queueing count them.
///
/// A network peer is known by its address: an IPv4 address, or the /64 of
/// an IPv6 address (an IPv4-mapped IPv6 address is its IPv4 address). A
/// peer on a Unix-domain socket has no address, and every local user
/// connects from the same place; the kernel tells its user id
/// (SO_PEERCRED), so one local user's failures cannot lock another out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A network peer's address, as [`Source::of`] groups them.
    Addr(IpAddr),
    /// A local peer's user id.
    Uid(u32),
}

impl Source {
    /// The source `ip` belongs to.
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::Addr(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::Addr(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    Source::Addr(IpAddr::V6(Ipv6Addr::from(bits)))
                }
            },
        }
    }
}

/// A peer as the kernel names it: a network peer's address, or the user id
/// of a peer on a Unix-domain socket. Its [`Source`] is what is counted;
/// the exempt networks are matched against the address itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A network peer.
    Addr(IpAddr),
    /// A local peer's user id (SO_PEERCRED).
    Uid(u32),
}

impl Peer {
    /// The source this peer's failures are counted under.
    pub fn source(self) -> Source {
        match self {
            Peer::Addr(ip) => Source::of(ip),
            Peer::Uid(uid) => Source::Uid(uid),
        }
    }
}

impl From<IpAddr> for Peer {
    fn from(ip: IpAddr) -> Peer {
        Peer::Addr(ip)
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Addr(ip) => write!(f, "{ip}"),
            Peer::Uid(uid) => write!(f, "uid:{uid}"),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Addr(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Source::Addr(IpAddr::V6(v6)) => write!(f, "{v6}/64"),
            Source::Uid(uid) => write!(f, "uid:{uid}"),
        }
    }
}

/// An address block: `ADDR/PREFIX`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the block (IPv4-mapped IPv6 addresses count as
    /// their IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{addr}' is not an IPv4 or IPv6 address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("'/{p}' is not a prefix length from 0 to {max}")),
            },
        };
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// When a source is penalised, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PenaltyConfig {
    /// Failures within `window` that start a penalty.
    pub threshold: u32,
    /// How long failures are remembered towards the threshold.
    pub window: Duration,
    /// The first penalty; each repeated offence doubles it.
    pub base: Duration,
    /// The longest penalty. A source that stays clean this long after its
    /// last penalty starts again from `base`.
    pub max: Duration,
    /// Sources never counted.
    pub exempt: Vec<Cidr>,
}

impl Default for PenaltyConfig {
    fn default() -> Self {
        PenaltyConfig {
            threshold: 10,
            window: Duration::from_secs(60),
            base: Duration::from_secs(30),
            max: Duration::from_secs(600),
            exempt: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    /// When the first of `failures` happened.
    since: Instant,
    /// Penalties so far (the next one is `base << offences`).
    offences: u32,
    /// The current or last penalty's end.
    until: Option<Instant>,
}

impl Entry {
    /// Whether the entry holds nothing worth keeping at `now`.
    fn stale(&self, now: Instant, cfg: &PenaltyConfig) -> bool {
        let failures_gone = self.failures == 0 || now >= self.since + cfg.window;
        let penalty_forgotten = self.until.is_none_or(|u| now >= u + cfg.max);
        failures_gone && penalty_forgotten
    }
}

/// A penalty that has just started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// The source penalised.
    pub source: Source,
    /// How long the penalty lasts.
    pub length: Duration,
    /// How many failures led to it.
    pub failures: u32,
}

/// The penalty table, shared by whoever checks passwords for one service.
#[derive(Debug)]
pub struct Penalties {
    cfg: PenaltyConfig,
    /// The end of the latest penalty, in nanoseconds after `epoch` (0: none
    /// ever): when `now` is past it, nobody is penalised.
    latest_end: AtomicU64,
    epoch: Instant,
    table: Mutex<HashMap<Source, Entry>>,
}

impl Penalties {
    /// An empty table.
    pub fn new(cfg: PenaltyConfig) -> Self {
        Penalties {
            cfg,
            latest_end: AtomicU64::new(0),
            epoch: Instant::now(),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &PenaltyConfig {
        &self.cfg
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether `peer` is never counted. The exempt list names networks, so
    /// a local user (a uid) is never exempt.
    fn exempt(&self, peer: Peer) -> bool {
        match peer {
            Peer::Addr(ip) => self.cfg.exempt.iter().any(|c| c.contains(ip)),
            Peer::Uid(_) => false,
        }
    }

    /// Whether authentications from `from` (an address or a [`Peer`]) are
    /// to be refused unchecked now.
    pub fn is_penalised(&self, from: impl Into<Peer>, now: Instant) -> bool {
        let end = self.latest_end.load(Ordering::Acquire);
        if end == 0 || self.nanos(now) >= end {
            return false;
        }
        let source = from.into().source();
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table
            .get(&source)
            .and_then(|e| e.until)
            .is_some_and(|u| now < u)
    }

    /// Counts a failed authentication from `from` (an address or a
    /// [`Peer`]); returns the penalty it starts, if any (the caller logs and
    /// counts it once).
    pub fn failure(&self, from: impl Into<Peer>, now: Instant) -> Option<Started> {
        let peer = from.into();
        if self.exempt(peer) {
            return None;
        }
        let source = peer.source();
        let cfg = &self.cfg;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !table.contains_key(&source) && table.len() >= MAX_SOURCES {
            table.retain(|_, e| !e.stale(now, cfg));
            if table.len() >= MAX_SOURCES {
                return None;
            }
        }
        let e = table.entry(source).or_insert(Entry {
            failures: 0,
            since: now,
            offences: 0,
            until: None,
        });
        if e.until.is_some_and(|u| now < u) {
            // Already penalised (a check that was queued before it began).
            return None;
        }
        if e.until.is_some_and(|u| now >= u + cfg.max) {
            e.offences = 0;
        }
        if e.failures == 0 || now >= e.since + cfg.window {
            e.failures = 0;
            e.since = now;
        }
        e.failures += 1;
        if e.failures < cfg.threshold {
            return None;
        }
        let length = cfg
            .base
            .saturating_mul(1u32 << e.offences.min(20))
            .min(cfg.max);
        let failures = e.failures;
        e.offences = e.offences.saturating_add(1);
        e.failures = 0;
        let until = now + length;
        e.until = Some(until);
        self.latest_end
            .fetch_max(self.nanos(until).max(1), Ordering::AcqRel);
        Some(Started {
            source,
            length,
            failures,
        })
    }

    /// How many sources are tracked.
    pub fn tracked(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PenaltyConfig {
        PenaltyConfig {
            threshold: 3,
            window: Duration::from_secs(60),
            base: Duration::from_secs(10),
            max: Duration::from_secs(40),
            exempt: vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()],
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_group_ipv6_by_64_and_unmap_ipv4() {
        assert_eq!(
            Source::of(ip("2001:db8:1:2:aaaa::1")),
            Source::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:192.0.2.1")),
            Source::of(ip("192.0.2.1"))
        );
        assert_eq!(Source::of(ip("2001:db8::7")).to_string(), "2001:db8::/64");
    }

    #[test]
    fn cidr_parse_and_contains() {
        let c: Cidr = "192.0.2.0/24".parse().unwrap();
        assert!(c.contains(ip("192.0.2.200")));
        assert!(c.contains(ip("::ffff:192.0.2.1")));
        assert!(!c.contains(ip("192.0.3.1")));
        assert!(!c.contains(ip("::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
        assert_eq!(one.to_string(), "::1/128");
        for bad in ["", "1.2.3.4/33", "::/129", "x/8", "1.2.3.4/", "1.2.3/8"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn threshold_starts_a_penalty_that_doubles_and_caps() {
        let p = Penalties::new(cfg());
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert!(!p.is_penalised(a, t0));
        assert_eq!(p.failure(a, t0), None);
        assert_eq!(p.failure(a, t0), None);
        let s = p.failure(a, t0).expect("third failure starts a penalty");
        assert_eq!(s.length, Duration::from_secs(10));
        assert_eq!(s.failures, 3);
        assert!(p.is_penalised(a, t0 + Duration::from_secs(9)));
        assert!(!p.is_penalised(ip("192.0.2.2"), t0), "another source");
        // Failures during the penalty neither extend it nor count.
        assert_eq!(p.failure(a, t0 + Duration::from_secs(5)), None);
        let mut now = t0 + Duration::from_secs(10);
        assert!(!p.is_penalised(a, now), "over after 10 s");
        // Repeated offences: 20 s, then 40 s, then capped at 40 s.
        for want in [20, 40, 40] {
            assert_eq!(p.failure(a, now), None);
            assert_eq!(p.failure(a, now), None);
            let s = p.failure(a, now).expect("a penalty");
            assert_eq!(s.length, Duration::from_secs(want));
            now += s.length;
            assert!(p.is_penalised(a, now - Duration::from_millis(1)));
            assert!(!p.is_penalised(a, now));
        }
    }

    #[test]
    fn clean_sources_are_forgiven() {
        let p = Penalties::new(cfg());
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        // Failures spread wider than the window never reach the threshold.
        for i in 0..10u64 {
            assert_eq!(p.failure(a, t0 + Duration::from_secs(61 * i)), None);
        }
        // After a penalty and `max` of good behaviour, the next is `base` again.
        let t1 = t0 + Duration::from_secs(1000);
        for _ in 0..3 {
            p.failure(a, t1);
        }
        let t2 = t1 + Duration::from_secs(10 + 40);
        let mut last = None;
        for _ in 0..3 {
            last = p.failure(a, t2);
        }
        assert_eq!(last.map(|s| s.length), Some(Duration::from_secs(10)));
    }

    #[test]
    fn exempt_networks_are_never_counted() {
        let p = Penalties::new(cfg());
        let t0 = Instant::now();
        for a in ["10.1.2.3", "::1", "::ffff:10.0.0.1"] {
            for _ in 0..100 {
                assert_eq!(p.failure(ip(a), t0), None, "{a}");
            }
            assert!(!p.is_penalised(ip(a), t0));
        }
        assert_eq!(p.tracked(), 0);
    }

    /// Local users are told apart by uid: one user's failures penalise
    /// that user only, and no network exemption covers them.
    #[test]
    fn uids_are_sources_of_their_own() {
        let p = Penalties::new(PenaltyConfig {
            exempt: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
            ..cfg()
        });
        let t0 = Instant::now();
        let (a, b) = (Peer::Uid(1001), Peer::Uid(1002));
        assert_eq!(p.failure(a, t0), None);
        assert_eq!(p.failure(a, t0), None);
        let s = p.failure(a, t0).expect("the third failure of uid 1001");
        assert_eq!(s.source, Source::Uid(1001));
        assert_eq!(s.source.to_string(), "uid:1001");
        assert!(p.is_penalised(a, t0));
        assert!(!p.is_penalised(b, t0), "another local user");
        assert!(!p.is_penalised(ip("127.0.0.1"), t0), "a network peer");
        assert_ne!(Source::Uid(0), Source::of(ip("0.0.0.0")));
    }

    #[test]
    fn the_table_is_bounded() {
        let p = Penalties::new(PenaltyConfig {
            threshold: 2,
            ..cfg()
        });
        let t0 = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            let a = IpAddr::V4((0xC000_0000u32 + i).into());
            p.failure(a, t0);
        }
        assert_eq!(p.tracked(), MAX_SOURCES);
        // Stale entries make room again.
        let later = t0 + Duration::from_secs(61);
        p.failure(ip("203.0.113.1"), later);
        assert!(p.tracked() <= 2, "{}", p.tracked());
    }
}
