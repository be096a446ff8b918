//! The access-rules files socks5d is started with (docs/rules.md).
//!
//! socks5d's default rules deny loopback targets, and every target of the
//! benchmark is on loopback, so socks5d always gets a file: `allow` for
//! the comparison, a rate rule for the rate cases, and, for the peer
//! `socks5d-rules1000`, a thousand rules that it must judge every request
//! against.

use std::fmt::Write as _;

/// The user whose tunnels the rate cases limit.
pub const LIMITED_USER: &str = "limited";

/// The limit of [`LIMITED_USER`], as the rule writes it and as `loadgen
/// rate --limit` reads it (both count `M` as 1024²): 8 MiB/s.
pub const RATE_LIMIT: &str = "8M";

/// Which rules file socks5d is started with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RulesFile {
    /// `allow`: every request.
    Allow,
    /// [`LIMITED_USER`] limited to [`RATE_LIMIT`], both directions
    /// together; everyone else unlimited.
    Rate,
    /// [`thousand_rules`]: 999 rules that match no request of the
    /// benchmark, then `allow`.
    Thousand,
}

impl RulesFile {
    /// The file's name in the run's temporary folder.
    pub fn file_name(self) -> &'static str {
        match self {
            RulesFile::Allow => "socks5d-allow.rules",
            RulesFile::Rate => "socks5d-rate.rules",
            RulesFile::Thousand => "socks5d-rules1000.rules",
        }
    }

    /// The file's text.
    pub fn text(self) -> String {
        match self {
            RulesFile::Allow => "allow\n".to_owned(),
            RulesFile::Rate => format!(
                "# socks5d make bench: one user limited, every other one not.\n\
                 allow user {LIMITED_USER} rate {RATE_LIMIT}\n\
                 allow\n"
            ),
            RulesFile::Thousand => thousand_rules(),
        }
    }
}

/// 1,000 rules, the last `allow`. The 999 before it are of every kind an
/// operator writes (other users, other ports, other client and target
/// blocks, names and domains, other commands, administrators, rates and
/// `log`), and none of them matches what the benchmark sends: a CONNECT
/// from 127.0.0.1, by a user whose name starts with `s5bench`, to an
/// address on 127.0.0.1 at an unprivileged port. Many hold on all but one
/// condition (loopback client and target, but a privileged port; a
/// loopback target, but BIND or UDP), so judging has to weigh them rather
/// than rule them out by one lookup.
pub fn thousand_rules() -> String {
    let mut r: Vec<String> = Vec::with_capacity(1_000);
    // Other users: alone, and with domains, ports and a rate.
    for i in 0..150 {
        r.push(format!("deny user u{i}"));
    }
    for i in 0..150 {
        r.push(format!(
            "allow user u{}, \"build bot {i}\" to .site{i}.example port 80,443 rate 10M",
            150 + i
        ));
    }
    // Loopback to loopback, but at privileged ports only.
    for p in 1..=150 {
        r.push(format!("deny from 127.0.0.0/8 to 127.0.0.0/8 port {p}"));
    }
    // Other clients: other loopback addresses, private and IPv6 blocks.
    for i in 0..50 {
        r.push(format!("deny from 127.0.0.{}/32", i + 2));
    }
    for i in 0..50 {
        r.push(format!("deny from 10.{i}.0.0/16,2001:db8:{i:x}::/48"));
    }
    // Other targets: blocks that hold no loopback address.
    for i in 0..100 {
        r.push(format!(
            "deny to 198.18.{}.0/24,fd00:{i:x}::/32 log",
            i % 256
        ));
    }
    // Names and domains: never a request to an address.
    for i in 0..150 {
        if i % 2 == 0 {
            r.push(format!("deny to bad{i}.example"));
        } else {
            r.push(format!("deny to .ads{i}.example log"));
        }
    }
    // Other commands, to loopback and at any unprivileged port.
    for i in 0..100 {
        let cmd = if i % 2 == 0 { "bind" } else { "udp" };
        let lo = 1024 + i * 640;
        let hi = (lo + 639).min(65_535);
        r.push(format!(
            "deny cmd {cmd} from 127.0.0.0/8 to 127.0.0.0/8 port {lo}-{hi}"
        ));
    }
    // Administrators only.
    for i in 0..99 {
        r.push(format!(
            "allow user @admins to 127.0.0.0/8 port {} log",
            1024 + i
        ));
    }
    r.push("allow".to_owned());
    let mut text = String::from(
        "# socks5d make bench: 999 rules that match no request of the benchmark, then allow.\n",
    );
    for line in &r {
        let _ = writeln!(text, "{line}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports;
    use socks5d::rules::{Cmd, Origin, Rate, Request, Rules, Verdict};
    use std::net::{IpAddr, Ipv4Addr};

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn connect<'a>(user: &'a str, port: u16) -> Request<'a> {
        Request {
            client: LOOPBACK,
            user: Some(user),
            admin: false,
            cmd: Cmd::Connect,
            name: None,
            addr: LOOPBACK,
            port,
        }
    }

    /// What the benchmark's requests get from the 1,000 rules: the last
    /// rule's allow, with no rate, at every port its targets may take, for
    /// any bench user; and the rules above it do match other requests.
    #[test]
    fn only_the_last_of_the_thousand_rules_matches_the_benchmark() {
        let text = RulesFile::Thousand.text();
        let rules = Rules::parse("rules1000", &text).unwrap();
        assert_eq!(rules.len(), 1_000);
        let last = Verdict::Allow {
            rate: Rate::default(),
            log: false,
            origin: Origin::File {
                line: text.lines().count() as u32,
            },
        };
        let (lo, hi) = ports::range(ports::ephemeral_low());
        for user in ["s5bench1", "s5bench4194304"] {
            for port in (lo..hi).chain([1024, 65_535]) {
                let r = connect(user, port);
                assert_eq!(rules.judge(&r), last, "{port}");
                assert_eq!(rules.judge_linear(&r), last, "{port}");
            }
        }
        // The rules above are not dead: each kind catches its own requests.
        let line = |r: &Request<'_>| match rules.judge(r).origin() {
            Origin::File { line } => line,
            Origin::Default(_) => 0,
        };
        let at = |needle: &str| text.lines().position(|l| l == needle).unwrap() as u32 + 1;
        assert_eq!(line(&connect("u3", 2000)), at("deny user u3"));
        assert_eq!(
            line(&connect("s5bench1", 22)),
            at("deny from 127.0.0.0/8 to 127.0.0.0/8 port 22")
        );
        let udp = Request {
            cmd: Cmd::Udp,
            ..connect("s5bench1", 1700)
        };
        assert_eq!(
            line(&udp),
            at("deny cmd udp from 127.0.0.0/8 to 127.0.0.0/8 port 1664-2303")
        );
        let admin = Request {
            admin: true,
            ..connect("root", 1030)
        };
        assert_eq!(
            line(&admin),
            at("allow user @admins to 127.0.0.0/8 port 1030 log")
        );
    }

    #[test]
    fn the_rate_file_limits_one_user() {
        let rules = Rules::parse("rate", &RulesFile::Rate.text()).unwrap();
        let limited = rules.judge(&connect(LIMITED_USER, 30_000));
        assert_eq!(limited.rate().total, Some(8 << 20));
        assert_eq!((limited.rate().up, limited.rate().down), (None, None));
        let other = rules.judge(&connect("s5bench1", 30_000));
        assert!(other.is_allow() && other.rate().is_unlimited(), "{other:?}");
        assert_eq!(
            crate::args::parse_size(RATE_LIMIT),
            limited.rate().total,
            "loadgen reads the limit as the rule does"
        );
        let allow = Rules::parse("allow", &RulesFile::Allow.text()).unwrap();
        assert!(
            allow
                .judge(&connect("s5bench1", 30_000))
                .rate()
                .is_unlimited()
        );
    }
}
