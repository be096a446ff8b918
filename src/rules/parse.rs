//! The rules file's syntax: lines into [`Rule`]s, and [`Rule`]s back into
//! lines (`Display`), so that what parses prints as text that parses to the
//! same rule.
//!
//! A line is split into words and commas (`lex`); a word in double quotes
//! may hold spaces, commas and `#` (`\"` and `\\` inside it). `#` outside
//! quotes starts a comment. A rule is an action and then keywords, each
//! with its values (`parse_rule`).

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use super::{Cmd, Origin, Rate};

/// A rules file that does not parse: the file, the line (from 1) and what
/// is wrong, shown as `rules.conf:7: 'port 70000' is not a port (1 to 65535)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The file's name as given to [`super::Rules::parse`].
    pub file: Arc<str>,
    /// The line number, from 1.
    pub line: u32,
    /// What is wrong with the line.
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for Error {}

// ----------------------------------------------------------------- addresses

/// An address as rules judge it: IPv4 (IPv4-mapped IPv6 included) or IPv6,
/// as integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Addr {
    /// An IPv4 address, or an IPv6 one of the form `::ffff:a.b.c.d`.
    V4(u32),
    /// Any other IPv6 address.
    V6(u128),
}

impl Addr {
    /// `ip` as rules judge it: `::ffff:a.b.c.d` is `a.b.c.d`.
    pub(crate) fn of(ip: IpAddr) -> Addr {
        match ip {
            IpAddr::V4(v4) => Addr::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Addr::V4(u32::from(v4)),
                None => Addr::V6(u128::from(v6)),
            },
        }
    }
}

/// The mask of the first `prefix` bits of a 32-bit address.
pub(crate) fn mask4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// The mask of the first `prefix` bits of a 128-bit address.
pub(crate) fn mask6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// An address block, its host bits zero. A block inside `::ffff:0:0/96` is
/// kept as the IPv4 block it maps, so that it matches mapped addresses as
/// their IPv4 selves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Net {
    /// An IPv4 network and its prefix length (0 to 32).
    V4(u32, u8),
    /// An IPv6 network and its prefix length (0 to 128).
    V6(u128, u8),
}

impl Net {
    /// Whether `a` is inside the block (an IPv6 block never holds an IPv4
    /// address, nor the other way round).
    pub(crate) fn contains(&self, a: Addr) -> bool {
        match (*self, a) {
            (Net::V4(n, p), Addr::V4(a)) => a & mask4(p) == n,
            (Net::V6(n, p), Addr::V6(a)) => a & mask6(p) == n,
            _ => false,
        }
    }

    /// The one-address block of `ip` (/32 or /128).
    pub(crate) fn host(ip: IpAddr) -> Net {
        match Addr::of(ip) {
            Addr::V4(a) => Net::V4(a, 32),
            Addr::V6(a) => Net::V6(a, 128),
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Net::V4(n, 32) => write!(f, "{}", std::net::Ipv4Addr::from(n)),
            Net::V4(n, p) => write!(f, "{}/{p}", std::net::Ipv4Addr::from(n)),
            Net::V6(n, 128) => write!(f, "{}", std::net::Ipv6Addr::from(n)),
            Net::V6(n, p) => write!(f, "{}/{p}", std::net::Ipv6Addr::from(n)),
        }
    }
}

/// `ADDR` or `ADDR/PREFIX`; the error says why not (host bits set, prefix
/// too long, not an address).
pub(crate) fn parse_net(s: &str) -> Result<Net, String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("'{addr}' is not an IPv4 or IPv6 address"))?;
    let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match digits(p).filter(|&n| n <= u64::from(max)) {
            Some(n) => n as u8,
            None => return Err(format!("'/{p}' is not a prefix length (0 to {max})")),
        },
    };
    let net = match ip {
        IpAddr::V4(v4) => Net::V4(u32::from(v4), prefix),
        IpAddr::V6(v6) => Net::V6(u128::from(v6), prefix),
    };
    let (set, zeroed) = match net {
        Net::V4(n, p) => (n & !mask4(p) != 0, Net::V4(n & mask4(p), p)),
        Net::V6(n, p) => (n & !mask6(p) != 0, Net::V6(n & mask6(p), p)),
    };
    if set {
        return Err(format!("host bits are set: write {zeroed}"));
    }
    Ok(match net {
        Net::V6(n, p) if p >= 96 && n >> 32 == 0xffff => Net::V4(n as u32, p - 96),
        other => other,
    })
}

/// A string of ASCII digits (at most 19) as a number.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

// --------------------------------------------------------------------- names

/// A request's name as rules compare it: without one trailing dot.
pub(crate) fn trim_name(name: &str) -> &[u8] {
    let b = name.as_bytes();
    b.strip_suffix(b".").unwrap_or(b)
}

/// Whether `name` (any case) is `suffix` (lowercase) or ends with
/// `.suffix`: the domain and its subdomains.
pub(crate) fn in_domain(name: &[u8], suffix: &[u8]) -> bool {
    match name.len().checked_sub(suffix.len()) {
        Some(0) => name.eq_ignore_ascii_case(suffix),
        Some(k) => name[k - 1] == b'.' && name[k..].eq_ignore_ascii_case(suffix),
        None => false,
    }
}

/// A host name of a rule (without `.` in front for a suffix): lowercase,
/// without its trailing dot, or why it is not one.
fn host_name(s: &str) -> Result<Box<str>, String> {
    let t = s.strip_suffix('.').unwrap_or(s);
    if t.is_empty() {
        return Err("names no domain".into());
    }
    if t.len() > 253 {
        return Err("is longer than a name may be (253 bytes)".into());
    }
    if t.contains('*') {
        return Err(
            "is not a name: for a domain and all its subdomains write '.example.com'".into(),
        );
    }
    if !t.is_ascii() {
        return Err("is not a name: write international names in their xn-- form".into());
    }
    for label in t.split('.') {
        if label.is_empty() {
            return Err("is not a name: it has an empty label".into());
        }
        if label.len() > 63 {
            return Err("is not a name: a label is longer than 63 bytes".into());
        }
        if let Some(c) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(format!(
                "is not a name: '{}' may not be in one",
                c.escape_default()
            ));
        }
    }
    Ok(t.to_ascii_lowercase().into())
}

// --------------------------------------------------------------------- rules

/// Who a `user` value stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum UserSel {
    /// One user, by exact name.
    Name(Box<str>),
    /// Every administrator (`@admins`).
    Admins,
}

/// One `to` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// An address block, judged on the target's address.
    Net(Net),
    /// One name, lowercase, without a trailing dot.
    Name(Box<str>),
    /// A domain and its subdomains (written `.example.com`; kept without the
    /// dot, lowercase).
    Domain(Box<str>),
}

/// One rule as written: every condition's values (an empty list is no
/// condition: anything matches), its options and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    /// Its line of the file, or the default's reason.
    pub origin: Origin,
    /// `allow` (else `deny`).
    pub allow: bool,
    /// `from`: the client's address.
    pub from: Vec<Net>,
    /// `user`.
    pub users: Vec<UserSel>,
    /// `cmd`.
    pub cmds: Vec<Cmd>,
    /// `to`: names and address blocks.
    pub to: Vec<Target>,
    /// `port`: inclusive ranges (a single port is `(p, p)`).
    pub ports: Vec<(u16, u16)>,
    /// `rate` (allow only).
    pub rate: Rate,
    /// `log`.
    pub log: bool,
}

impl Rule {
    /// A rule with no condition and no option.
    pub(crate) fn new(origin: Origin, allow: bool) -> Rule {
        Rule {
            origin,
            allow,
            from: Vec::new(),
            users: Vec::new(),
            cmds: Vec::new(),
            to: Vec::new(),
            ports: Vec::new(),
            rate: Rate::default(),
            log: false,
        }
    }
}

/// The keywords after the action, for error messages.
const KEYWORDS: &str = "from, user, cmd, to, port, rate, log";

/// The rules of `text`, each line numbered from 1 for `Origin::File`; the
/// first error names its line.
pub(crate) fn parse(file: &Arc<str>, text: &str) -> Result<Vec<Rule>, Error> {
    let mut rules = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let wrong = |message| Error {
            file: file.clone(),
            line,
            message,
        };
        let tokens = lex(raw).map_err(wrong)?;
        if tokens.is_empty() {
            continue;
        }
        rules.push(parse_rule(Origin::File { line }, &tokens).map_err(wrong)?);
    }
    Ok(rules)
}

/// A piece of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    /// A word; `quoted` when it was written in double quotes.
    Word { text: Cow<'a, str>, quoted: bool },
    /// `,`, between the values of one keyword.
    Comma,
}

/// Whether `b` ends a bare word.
fn ends_word(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b',' | b'#')
}

/// The words and commas of one line, up to its comment.
fn lex(line: &str) -> Result<Vec<Token<'_>>, String> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' => i += 1,
            b'#' => break,
            b',' => {
                out.push(Token::Comma);
                i += 1;
            }
            b'"' => {
                let (text, next) = quoted(line, i)?;
                if next < b.len() && !ends_word(b[next]) {
                    return Err("a closing quote must end its word".into());
                }
                out.push(Token::Word { text, quoted: true });
                i = next;
            }
            _ => {
                let start = i;
                while i < b.len() && !ends_word(b[i]) {
                    match b[i] {
                        b'"' => return Err("a quote inside a word".into()),
                        c if c < 0x20 || c == 0x7F => {
                            return Err(format!("a control character (0x{c:02X})"));
                        }
                        _ => i += 1,
                    }
                }
                out.push(Token::Word {
                    text: Cow::Borrowed(&line[start..i]),
                    quoted: false,
                });
            }
        }
    }
    Ok(out)
}

/// The quoted word that starts at `line[open]` (a `"`) and the index after
/// its closing quote.
fn quoted(line: &str, open: usize) -> Result<(Cow<'_, str>, usize), String> {
    let mut text = String::new();
    let mut chars = line[open + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            '"' => return Ok((Cow::Owned(text), open + 1 + k + 1)),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => text.push(e),
                _ => return Err("in quotes, '\\' comes only before '\"' or '\\'".into()),
            },
            c if c.is_control() => {
                return Err(format!("a control character ({})", c.escape_default()));
            }
            c => text.push(c),
        }
    }
    Err("a quote that does not end".into())
}

/// Reads a line's tokens in order.
struct Cursor<'t, 'a> {
    tokens: &'t [Token<'a>],
    next: usize,
}

impl<'t, 'a> Cursor<'t, 'a> {
    /// The next token, if any, consumed.
    fn take(&mut self) -> Option<&'t Token<'a>> {
        let t = self.tokens.get(self.next);
        self.next += usize::from(t.is_some());
        t
    }

    /// The next token, if any, left in place.
    fn peek(&self) -> Option<&'t Token<'a>> {
        self.tokens.get(self.next)
    }

    /// The next token if it is the bare word `w`, consumed.
    fn take_bare(&mut self, w: &str) -> bool {
        let hit = matches!(self.peek(), Some(Token::Word { text, quoted: false }) if text == w);
        self.next += usize::from(hit);
        hit
    }

    /// The values of `keyword`: one word, then more after commas.
    fn values(&mut self, keyword: &str) -> Result<Vec<(&'t str, bool)>, String> {
        let mut out = Vec::new();
        loop {
            match self.take() {
                Some(Token::Word { text, quoted }) => out.push((text.as_ref(), *quoted)),
                Some(Token::Comma) if out.is_empty() => {
                    return Err(format!("'{keyword}' needs a value before its comma"));
                }
                Some(Token::Comma) => return Err(format!("'{keyword}': two commas in a row")),
                None if out.is_empty() => return Err(format!("'{keyword}' needs a value")),
                None => return Err(format!("'{keyword}': the line ends with a comma")),
            }
            if !matches!(self.peek(), Some(Token::Comma)) {
                return Ok(out);
            }
            self.next += 1;
        }
    }
}

/// One rule from its tokens (not empty).
fn parse_rule(origin: Origin, tokens: &[Token<'_>]) -> Result<Rule, String> {
    let mut c = Cursor { tokens, next: 0 };
    let allow = match c.take() {
        Some(Token::Word {
            text,
            quoted: false,
        }) if text == "allow" || text == "deny" => text == "allow",
        Some(Token::Word {
            text,
            quoted: false,
        }) => return Err(format!("'{text}' is not an action (allow or deny)")),
        _ => return Err("a rule starts with allow or deny".into()),
    };
    let mut rule = Rule::new(origin, allow);
    let mut after_values = false;
    while let Some(t) = c.take() {
        let keyword = match t {
            Token::Word {
                text,
                quoted: false,
            } => text.as_ref(),
            Token::Word { text, .. } => {
                return Err(format!("'\"{text}\"' is not a keyword ({KEYWORDS})"));
            }
            Token::Comma => return Err(format!("a comma where a keyword belongs ({KEYWORDS})")),
        };
        let was_values = std::mem::replace(&mut after_values, true);
        match keyword {
            "from" => {
                for (v, _) in c.values(keyword)? {
                    let net = parse_net(v)
                        .map_err(|why| format!("'from {v}' is not an address or block: {why}"))?;
                    rule.from.push(net);
                }
            }
            "user" => {
                for (v, quoted) in c.values(keyword)? {
                    rule.users.push(user(v, quoted)?);
                }
            }
            "cmd" => {
                for (v, _) in c.values(keyword)? {
                    rule.cmds.push(match v {
                        "connect" => Cmd::Connect,
                        "bind" => Cmd::Bind,
                        "udp" => Cmd::Udp,
                        _ => {
                            return Err(format!(
                                "'cmd {v}' is not a command (connect, bind or udp)"
                            ));
                        }
                    });
                }
            }
            "to" => {
                for (v, _) in c.values(keyword)? {
                    rule.to.push(target(v)?);
                }
            }
            "port" => {
                for (v, _) in c.values(keyword)? {
                    rule.ports.push(ports(v)?);
                }
            }
            "rate" => {
                after_values = false;
                rate(&mut c, &mut rule.rate)?;
            }
            "log" => {
                after_values = false;
                if std::mem::replace(&mut rule.log, true) {
                    return Err("'log' is given twice".into());
                }
            }
            other if was_values => {
                return Err(format!(
                    "'{other}' is not a keyword ({KEYWORDS}); one keyword's values are \
                     separated by commas, as in 'port 80,443'"
                ));
            }
            other => return Err(format!("'{other}' is not a keyword ({KEYWORDS})")),
        }
    }
    if !allow && rule.rate != Rate::default() {
        return Err("'rate' belongs on allow rules only".into());
    }
    Ok(rule)
}

/// A `user` value: `@admins`, or a user's name (quoted, any name that
/// socks5d's users may have, `@` in front included).
fn user(v: &str, quoted: bool) -> Result<UserSel, String> {
    if !quoted && v.starts_with('@') {
        return match v {
            "@admins" => Ok(UserSel::Admins),
            _ => Err(format!(
                "'user {v}': the one group is @admins (write a name that starts with @ in quotes)"
            )),
        };
    }
    let ok = (1..=255).contains(&v.len()) && v.bytes().all(|b| b >= 0x20 && b != 0x7F && b != b':');
    if !ok {
        return Err(format!(
            "'user \"{}\"' is not a user name (1 to 255 bytes, no ':' or control characters)",
            v.escape_default()
        ));
    }
    Ok(UserSel::Name(v.into()))
}

/// A `to` value: a block, an exact name or `.domain`.
fn target(v: &str) -> Result<Target, String> {
    if let Some(domain) = v.strip_prefix('.') {
        return host_name(domain)
            .map(Target::Domain)
            .map_err(|why| format!("'to {v}' {why}"));
    }
    let name_part = v.strip_suffix('.').unwrap_or(v);
    let last_label = name_part.rsplit('.').next().unwrap_or("");
    let numeric = !last_label.is_empty() && last_label.bytes().all(|b| b.is_ascii_digit());
    if v.contains('/') || v.contains(':') || numeric {
        return parse_net(v)
            .map(Target::Net)
            .map_err(|why| format!("'to {v}' is not an address or block: {why}"));
    }
    host_name(v)
        .map(Target::Name)
        .map_err(|why| format!("'to {v}' {why}"))
}

/// A `port` value: `N` or `N-M`, 1 to 65535.
fn ports(v: &str) -> Result<(u16, u16), String> {
    let one = |s: &str| {
        digits(s)
            .filter(|n| (1..=65535).contains(n))
            .map(|n| n as u16)
    };
    let range = match v.split_once('-') {
        Some((a, b)) => one(a).zip(one(b)),
        None => one(v).map(|p| (p, p)),
    };
    match range {
        Some((a, b)) if a <= b => Ok((a, b)),
        Some(_) => Err(format!("'port {v}': the range runs backwards")),
        None => Err(format!(
            "'port {v}' is not a port (1 to 65535) or range (N-M)"
        )),
    }
}

/// The options after `rate`: `N`, or `up N` and/or `down M`.
fn rate(c: &mut Cursor<'_, '_>, rate: &mut Rate) -> Result<(), String> {
    let mut any = false;
    loop {
        let (dir, slot) = if c.take_bare("up") {
            (" up", &mut rate.up)
        } else if c.take_bare("down") {
            (" down", &mut rate.down)
        } else if any {
            return Ok(());
        } else {
            ("", &mut rate.total)
        };
        let v = match c.take() {
            Some(Token::Word { text, .. }) => text.as_ref(),
            _ => {
                return Err(format!(
                    "'rate{dir}' needs a value: rate N, or rate up N down M (bytes per \
                     second; K, M and G are 1024, 1024² and 1024³)"
                ));
            }
        };
        let n = bytes_per_second(v).ok_or_else(|| {
            format!(
                "'rate{dir} {v}' is not a rate (bytes per second from 1, with K, M or G \
                 for 1024, 1024² or 1024³)"
            )
        })?;
        if slot.replace(n).is_some() {
            let what = if dir.is_empty() { "rate N" } else { dir.trim() };
            return Err(format!("'{what}' is given twice in one rule"));
        }
        if dir.is_empty() {
            return Ok(());
        }
        any = true;
    }
}

/// `N`, `NK`, `NM` or `NG` (either case) as bytes per second, from 1.
fn bytes_per_second(v: &str) -> Option<u64> {
    let (num, unit) = match v.as_bytes().last()?.to_ascii_uppercase() {
        b'K' => (&v[..v.len() - 1], 1 << 10),
        b'M' => (&v[..v.len() - 1], 1 << 20),
        b'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    digits(num)?.checked_mul(unit).filter(|&n| n > 0)
}

// ------------------------------------------------------------------ printing

/// A user's name as a rule writes it: bare, or in quotes when it would not
/// read back as itself.
fn write_user(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    let plain = !name.starts_with('@')
        && !name
            .bytes()
            .any(|b| matches!(b, b' ' | b'\t' | b',' | b'#' | b'"' | b'\\'));
    if plain {
        return f.write_str(name);
    }
    f.write_str("\"")?;
    for c in name.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

/// A number of bytes per second in the largest unit that holds it exactly.
fn write_rate(f: &mut fmt::Formatter<'_>, n: u64) -> fmt::Result {
    for (unit, size) in [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
        if n.is_multiple_of(size) {
            return write!(f, "{}{unit}", n / size);
        }
    }
    write!(f, "{n}")
}

/// Writes `keyword v1,v2,...` for a condition that has values.
fn write_list<T>(
    f: &mut fmt::Formatter<'_>,
    keyword: &str,
    values: &[T],
    mut each: impl FnMut(&mut fmt::Formatter<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    for (i, v) in values.iter().enumerate() {
        f.write_str(if i == 0 { " " } else { "," })?;
        if i == 0 {
            write!(f, "{keyword} ")?;
        }
        each(f, v)?;
    }
    Ok(())
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cmd::Connect => "connect",
            Cmd::Bind => "bind",
            Cmd::Udp => "udp",
        })
    }
}

/// The rule as one line of a rules file (no comment).
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.allow { "allow" } else { "deny" })?;
        write_list(f, "from", &self.from, |f, n| write!(f, "{n}"))?;
        write_list(f, "user", &self.users, |f, u| match u {
            UserSel::Admins => f.write_str("@admins"),
            UserSel::Name(n) => write_user(f, n),
        })?;
        write_list(f, "cmd", &self.cmds, |f, c| write!(f, "{c}"))?;
        write_list(f, "to", &self.to, |f, t| match t {
            Target::Net(n) => write!(f, "{n}"),
            Target::Name(n) => f.write_str(n),
            Target::Domain(d) => write!(f, ".{d}"),
        })?;
        write_list(f, "port", &self.ports, |f, &(a, b)| {
            if a == b {
                write!(f, "{a}")
            } else {
                write!(f, "{a}-{b}")
            }
        })?;
        let r = self.rate;
        if let Some(n) = r.total {
            f.write_str(" rate ")?;
            write_rate(f, n)?;
        }
        if r.up.is_some() || r.down.is_some() {
            f.write_str(" rate")?;
            for (dir, v) in [("up", r.up), ("down", r.down)] {
                if let Some(n) = v {
                    write!(f, " {dir} ")?;
                    write_rate(f, n)?;
                }
            }
        }
        if self.log {
            f.write_str(" log")?;
        }
        Ok(())
    }
}
