//! The rules in force without a rules file, and their text.
//!
//! Denied targets, each with its reason:
//!
//! | reason | IPv4 | IPv6 |
//! |---|---|---|
//! | loopback | 127.0.0.0/8 | ::1 |
//! | unspecified | 0.0.0.0/8 | :: |
//! | link-local | 169.254.0.0/16 | fe80::/10 |
//! | multicast | 224.0.0.0/4 | ff00::/8 |
//! | broadcast | 255.255.255.255 | |
//! | own-address | socks5d's listening ports on the host's addresses | |
//!
//! All of 0.0.0.0/8 is "unspecified": 0.0.0.0 reaches the host itself on
//! Linux, and the rest of the block is "this network" (RFC 1122), never a
//! destination. Everything else is allowed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::Origin;
use super::parse::{Addr, Net, Rule, Target, parse_net};

/// The blocks denied whatever socks5d listens on, with their reasons.
const DENIED: &[(&str, &[&str])] = &[
    ("loopback", &["127.0.0.0/8", "::1"]),
    ("unspecified", &["0.0.0.0/8", "::"]),
    ("link-local", &["169.254.0.0/16", "fe80::/10"]),
    ("multicast", &["224.0.0.0/4", "ff00::/8"]),
    ("broadcast", &["255.255.255.255"]),
];

/// The reason of the rules that keep socks5d from connecting to itself.
const OWN: &str = "own-address";

/// A deny rule on `blocks` (and `port`, when given).
fn deny(reason: &'static str, blocks: impl IntoIterator<Item = Net>, port: Option<u16>) -> Rule {
    let mut rule = Rule::new(Origin::Default(reason), false);
    rule.to = blocks.into_iter().map(Target::Net).collect();
    rule.ports = port.map(|p| vec![(p, p)]).unwrap_or_default();
    rule
}

/// The default rules, each with its reason.
pub(crate) fn rules(own: &[SocketAddr], host: &[IpAddr]) -> Vec<(&'static str, Rule)> {
    let mut out = Vec::new();
    let mut always = Vec::new();
    for &(reason, blocks) in DENIED {
        let nets: Vec<Net> = blocks
            .iter()
            .map(|b| parse_net(b).expect("the default's blocks parse"))
            .collect();
        always.extend(nets.iter().copied());
        out.push((reason, deny(reason, nets, None)));
    }
    let denied_already = |a: Addr| always.iter().any(|n| n.contains(a));
    let host: BTreeSet<Net> = host
        .iter()
        .filter(|&&ip| !denied_already(Addr::of(ip)))
        .map(|&ip| Net::host(ip))
        .collect();
    // Per port: the addresses it is socks5d's on, or `None` for every
    // address (an unspecified listener on a host whose addresses are not
    // given).
    let mut ports: BTreeMap<u16, Option<BTreeSet<Net>>> = BTreeMap::new();
    // Port 0 is no listening port (a socket not yet bound): nothing to deny.
    for l in own.iter().filter(|l| l.port() != 0) {
        let entry = ports
            .entry(l.port())
            .or_insert_with(|| Some(BTreeSet::new()));
        if l.ip().is_unspecified() && host.is_empty() {
            *entry = None;
        }
        let Some(addrs) = entry else { continue };
        if l.ip().is_unspecified() {
            addrs.extend(host.iter().copied());
        } else if !denied_already(Addr::of(l.ip())) {
            addrs.insert(Net::host(l.ip()));
        }
    }
    for (port, addrs) in ports {
        match addrs {
            None => out.push((OWN, deny(OWN, [], Some(port)))),
            Some(addrs) if addrs.is_empty() => {}
            Some(addrs) => out.push((OWN, deny(OWN, addrs, Some(port)))),
        }
    }
    out.push(("allow", Rule::new(Origin::Default("allow"), true)));
    out
}

/// The rules as a rules file, each with its reason as a comment.
pub(crate) fn text(rules: &[(&'static str, Rule)]) -> String {
    let mut s = String::from(
        "# socks5d's default rules: what it allows without --rules.\n\
         # One rule a line, first match wins; a request that no rule matches is\n\
         # denied. Conditions: from CIDR, user NAME|@admins, cmd connect|bind|udp,\n\
         # to CIDR|NAME|.DOMAIN, port N|N-M; options: rate N[K|M|G], log.\n\
         #\n\
         # Denied: the proxy host itself, its local link, and what is no single\n\
         # host (unspecified, multicast, broadcast):\n",
    );
    for (reason, rule) in rules {
        if *reason == "allow" {
            s.push_str("\n# Everything else.\n");
        }
        let line = rule.to_string();
        let _ = writeln!(s, "{line:<44} # {reason}");
    }
    s
}
