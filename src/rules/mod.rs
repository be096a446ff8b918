//! Access rules: who may reach what (`--rules PATH`, docs/rules.md), with
//! no I/O.
//!
//! ```text
//! # rules.conf: first match wins; a request no rule matches is denied
//! deny  to 169.254.169.254                  # the cloud's metadata service
//! allow user @admins log
//! allow user alice,bob to .example.com port 80,443 rate 10M
//! deny  to 127.0.0.0/8,::1
//! allow cmd connect port 443
//! ```
//!
//! [`Rules::parse`] reads a file's text into a compiled [`Rules`], once per
//! load; judging a request then allocates nothing. A request to a name is
//! judged in two steps: [`Rules::judge_name`] before the name is resolved
//! (rules on names decide it there, unless a rule on addresses comes
//! first), then [`Rules::judge`] for each address the name resolves to, so
//! that a name resolving to 127.0.0.1 is judged as 127.0.0.1 by a rule on
//! addresses. A request to an address goes straight to [`Rules::judge`].
//!
//! Without a rules file, socks5d judges by [`Rules::default_for`]: deny
//! loopback, unspecified, link-local, multicast and broadcast targets and
//! socks5d's own listening ports, allow the rest. [`Rules::print_default`]
//! writes that as a rules file to start from.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are judged as the IPv4
//! address they carry, both the client's and the target's.

mod default;
mod index;
mod parse;
mod shared;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub use parse::Error;
pub use shared::{Reader, Shared};

use index::{Hit, Index, Query};
use parse::{Addr, Rule, Target, UserSel, in_domain, trim_name};

/// A SOCKS command, as `cmd` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cmd {
    /// CONNECT (`cmd connect`).
    Connect = 0,
    /// BIND (`cmd bind`).
    Bind = 1,
    /// UDP ASSOCIATE (`cmd udp`).
    Udp = 2,
}

/// The limits of an `allow` rule's `rate` option, in bytes per second; `None`
/// is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rate {
    /// Both directions together (`rate N`).
    pub total: Option<u64>,
    /// From the client to the target (`rate up N`).
    pub up: Option<u64>,
    /// From the target to the client (`rate down N`).
    pub down: Option<u64>,
}

impl Rate {
    /// Whether the rule sets no limit.
    pub fn is_unlimited(&self) -> bool {
        *self == Rate::default()
    }
}

/// Where a verdict came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A line of the rules file (the file's name is [`Rules::file`]).
    File {
        /// The line number, from 1.
        line: u32,
    },
    /// socks5d's own rule, with its reason: "loopback", "unspecified",
    /// "link-local", "multicast", "broadcast", "own-address" and "allow"
    /// (the default's last rule), or "no-rule" (no rule of a file matched).
    Default(&'static str),
}

/// What a rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The request may go ahead.
    Allow {
        /// The rule's rate limits.
        rate: Rate,
        /// Whether the rule says `log`: write the decision to the log.
        log: bool,
        /// The rule.
        origin: Origin,
    },
    /// The request is refused.
    Deny {
        /// Whether the rule says `log`.
        log: bool,
        /// The rule.
        origin: Origin,
    },
}

impl Verdict {
    /// Whether the request may go ahead.
    pub fn is_allow(&self) -> bool {
        matches!(self, Verdict::Allow { .. })
    }

    /// The rule that decided.
    pub fn origin(&self) -> Origin {
        match *self {
            Verdict::Allow { origin, .. } | Verdict::Deny { origin, .. } => origin,
        }
    }

    /// Whether the rule says `log`.
    pub fn log(&self) -> bool {
        match *self {
            Verdict::Allow { log, .. } | Verdict::Deny { log, .. } => log,
        }
    }

    /// The rate limits of an allow (none for a deny).
    pub fn rate(&self) -> Rate {
        match *self {
            Verdict::Allow { rate, .. } => rate,
            Verdict::Deny { .. } => Rate::default(),
        }
    }

    /// The verdict of `rule`.
    fn of(rule: &Rule) -> Verdict {
        match rule.allow {
            true => Verdict::Allow {
                rate: rule.rate,
                log: rule.log,
                origin: rule.origin,
            },
            false => Verdict::Deny {
                log: rule.log,
                origin: rule.origin,
            },
        }
    }
}

/// What is known of a request to a name before it is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameVerdict {
    /// A rule decided on what is known: every address the name resolves to
    /// would get this same verdict from [`Rules::judge`].
    Decided(Verdict),
    /// The first rule that may match judges the target's address: resolve
    /// the name and judge each address.
    NeedsAddress,
}

/// A request to an address: an address target, or one address a name
/// resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The client's address.
    pub client: IpAddr,
    /// The authenticated user, if any.
    pub user: Option<&'a str>,
    /// Whether that user is an administrator (`user @admins`).
    pub admin: bool,
    /// The command.
    pub cmd: Cmd,
    /// The name the client sent, when the address is what it resolved to:
    /// rules on names judge it.
    pub name: Option<&'a str>,
    /// The target's address.
    pub addr: IpAddr,
    /// The target's port.
    pub port: u16,
}

/// A request to a name, before it is resolved. (A name that is an IP
/// literal, `"127.0.0.1"` sent as a name, is better judged as the address
/// it is, with [`Rules::judge`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRequest<'a> {
    /// The client's address.
    pub client: IpAddr,
    /// The authenticated user, if any.
    pub user: Option<&'a str>,
    /// Whether that user is an administrator.
    pub admin: bool,
    /// The command.
    pub cmd: Cmd,
    /// The name the client sent.
    pub name: &'a str,
    /// The target's port.
    pub port: u16,
}

impl<'a> NameRequest<'a> {
    /// The same request to one address the name resolved to.
    pub fn resolved(&self, addr: IpAddr) -> Request<'a> {
        Request {
            client: self.client,
            user: self.user,
            admin: self.admin,
            cmd: self.cmd,
            name: Some(self.name),
            addr,
            port: self.port,
        }
    }
}

/// The verdict when no rule of a file matches.
const NO_RULE: Verdict = Verdict::Deny {
    log: false,
    origin: Origin::Default("no-rule"),
};

/// A compiled set of rules, for every worker to judge with (share it in an
/// `Arc`; a reload makes a new one).
#[derive(Debug)]
pub struct Rules {
    /// The file's name, for origins and errors.
    file: Arc<str>,
    /// The rules as written, in order.
    rules: Vec<Rule>,
    /// Each rule's verdict.
    verdicts: Vec<Verdict>,
    /// The rules compiled for judging.
    index: Index,
}

impl Rules {
    /// Parses the text of a rules file; `file` names it in errors and in
    /// [`Rules::describe`]. Every error names the file and its line.
    pub fn parse(file: &str, text: &str) -> Result<Rules, Error> {
        let file: Arc<str> = file.into();
        let rules = parse::parse(&file, text)?;
        Ok(Rules::compile(file, rules))
    }

    /// The rules in force without a rules file: deny targets in loopback
    /// (127.0.0.0/8, ::1), unspecified (0.0.0.0/8, ::), link-local
    /// (169.254.0.0/16, fe80::/10), multicast (224.0.0.0/4, ff00::/8) and
    /// broadcast (255.255.255.255), and socks5d's own listening ports
    /// (`own_listeners`: a listener on an unspecified address stands for its
    /// port on each of `host_addrs`, the host's interface addresses, or on
    /// every address when none are given); allow everything else.
    pub fn default_for(own_listeners: &[SocketAddr], host_addrs: &[IpAddr]) -> Rules {
        let rules = default::rules(own_listeners, host_addrs)
            .into_iter()
            .map(|(_, rule)| rule)
            .collect();
        Rules::compile("default".into(), rules)
    }

    /// [`Rules::default_for`] as the text of a rules file, with comments,
    /// for an operator to start from: it parses to rules that decide every
    /// request the same way.
    pub fn print_default(own_listeners: &[SocketAddr], host_addrs: &[IpAddr]) -> String {
        default::text(&default::rules(own_listeners, host_addrs))
    }

    /// Compiles `rules`, read from `file`.
    fn compile(file: Arc<str>, rules: Vec<Rule>) -> Rules {
        Rules {
            file,
            verdicts: rules.iter().map(Verdict::of).collect(),
            index: Index::new(&rules),
            rules,
        }
    }

    /// The file's name, as given to [`Rules::parse`] ("default" for
    /// [`Rules::default_for`]).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there is no rule (every request is denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// An origin as the access log writes it: `FILE:LINE` or
    /// `default:REASON`.
    pub fn describe(&self, origin: Origin) -> Described<'_> {
        Described {
            file: &self.file,
            origin,
        }
    }

    /// The verdict on a request to an address: the first rule whose every
    /// condition holds. A `to` name or domain is judged on `name`, a `to`
    /// block on `addr`. No rule matching is a deny (`default:no-rule`).
    pub fn judge(&self, r: &Request<'_>) -> Verdict {
        match self.index.first(&query(r)) {
            Some(Hit::Rule(n)) => self.verdicts[n],
            _ => NO_RULE,
        }
    }

    /// The verdict on a request to a name before it is resolved: walking the
    /// rules in order, the first rule that matches on what is known decides,
    /// unless a rule that would need the address to judge its `to` comes
    /// first (`NeedsAddress`).
    pub fn judge_name(&self, r: &NameRequest<'_>) -> NameVerdict {
        match self.index.first(&name_query(r)) {
            Some(Hit::Rule(n)) => NameVerdict::Decided(self.verdicts[n]),
            Some(Hit::NeedsAddress) => NameVerdict::NeedsAddress,
            None => NameVerdict::Decided(NO_RULE),
        }
    }

    /// [`Rules::judge`] by walking the rules one by one: the reference the
    /// index is checked against (tests, fuzzing, the benchmark).
    pub fn judge_linear(&self, r: &Request<'_>) -> Verdict {
        let q = query(r);
        self.rules
            .iter()
            .find(|rule| holds_except_to(rule, &q) && to_holds(rule, &q) == Some(true))
            .map_or(NO_RULE, Verdict::of)
    }

    /// [`Rules::judge_name`] by walking the rules one by one.
    pub fn judge_name_linear(&self, r: &NameRequest<'_>) -> NameVerdict {
        let q = name_query(r);
        for rule in self.rules.iter().filter(|rule| holds_except_to(rule, &q)) {
            match to_holds(rule, &q) {
                Some(true) => return NameVerdict::Decided(Verdict::of(rule)),
                Some(false) => {}
                None => return NameVerdict::NeedsAddress,
            }
        }
        NameVerdict::Decided(NO_RULE)
    }
}

/// The rules as the text of a rules file, one per line, each value written
/// the way it is compared (names lowercase, blocks with host bits clear).
impl fmt::Display for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for rule in &self.rules {
            writeln!(f, "{rule}")?;
        }
        Ok(())
    }
}

/// An [`Origin`] shown with its file: `rules.conf:7`, `default:loopback`.
#[derive(Debug, Clone, Copy)]
pub struct Described<'a> {
    file: &'a str,
    origin: Origin,
}

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Origin::File { line } => write!(f, "{}:{line}", self.file),
            Origin::Default(reason) => write!(f, "default:{reason}"),
        }
    }
}

/// The index's view of a request to an address.
fn query<'a>(r: &Request<'a>) -> Query<'a> {
    Query {
        client: Addr::of(r.client),
        user: r.user,
        admin: r.admin,
        cmd: r.cmd,
        port: r.port,
        name: r.name.map(trim_name),
        addr: Some(Addr::of(r.addr)),
    }
}

/// The index's view of a request to a name, unresolved.
fn name_query<'a>(r: &NameRequest<'a>) -> Query<'a> {
    Query {
        client: Addr::of(r.client),
        user: r.user,
        admin: r.admin,
        cmd: r.cmd,
        port: r.port,
        name: Some(trim_name(r.name)),
        addr: None,
    }
}

/// Whether every condition of `rule` but `to` holds for `q`.
fn holds_except_to(rule: &Rule, q: &Query<'_>) -> bool {
    let from = rule.from.is_empty() || rule.from.iter().any(|n| n.contains(q.client));
    let user = rule.users.is_empty()
        || rule.users.iter().any(|u| match u {
            UserSel::Admins => q.admin,
            UserSel::Name(n) => q.user == Some(&**n),
        });
    let cmd = rule.cmds.is_empty() || rule.cmds.contains(&q.cmd);
    let port = rule.ports.is_empty() || rule.ports.iter().any(|&(a, b)| (a..=b).contains(&q.port));
    from && user && cmd && port
}

/// Whether `rule`'s `to` holds for `q`; `None` when that turns on the
/// address and `q` has none.
fn to_holds(rule: &Rule, q: &Query<'_>) -> Option<bool> {
    if rule.to.is_empty() {
        return Some(true);
    }
    let mut unknown = false;
    for t in &rule.to {
        let hit = match (t, q.name, q.addr) {
            (Target::Name(s), Some(name), _) => name.eq_ignore_ascii_case(s.as_bytes()),
            (Target::Domain(s), Some(name), _) => in_domain(name, s.as_bytes()),
            (Target::Net(net), _, Some(a)) => net.contains(a),
            (Target::Net(_), _, None) => {
                unknown = true;
                false
            }
            _ => false,
        };
        if hit {
            return Some(true);
        }
    }
    if unknown { None } else { Some(false) }
}
