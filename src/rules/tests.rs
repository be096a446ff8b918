//! Tests of the rules: the parser and its errors, matching each condition,
//! the two-step judgement of names, the default, and the index against the
//! rule-by-rule walk.

use std::net::{IpAddr, SocketAddr};

use super::*;

/// The rules of `text`, read as `rules.conf`.
fn rules(text: &str) -> Rules {
    Rules::parse("rules.conf", text).unwrap_or_else(|e| panic!("{e}"))
}

/// The error of `text`, shown as an operator sees it.
fn error(text: &str) -> String {
    match Rules::parse("rules.conf", text) {
        Ok(r) => panic!("{text:?} parsed: {r}"),
        Err(e) => e.to_string(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A CONNECT from 192.0.2.1 by nobody to `addr`:`port`, no name.
fn to(addr: &str, port: u16) -> Request<'static> {
    Request {
        client: ip("192.0.2.1"),
        user: None,
        admin: false,
        cmd: Cmd::Connect,
        name: None,
        addr: ip(addr),
        port,
    }
}

/// A CONNECT from 192.0.2.1 by nobody to `name`:`port`, unresolved.
fn to_name(name: &str, port: u16) -> NameRequest<'_> {
    NameRequest {
        client: ip("192.0.2.1"),
        user: None,
        admin: false,
        cmd: Cmd::Connect,
        name,
        port,
    }
}

/// The line of the file rule that decided, or the default's reason.
fn origin(v: Verdict) -> String {
    match v.origin() {
        Origin::File { line } => format!("line {line}"),
        Origin::Default(reason) => reason.to_owned(),
    }
}

/// `judge` on `r`, checked against the rule-by-rule walk.
fn judge(rules: &Rules, r: &Request<'_>) -> Verdict {
    let v = rules.judge(r);
    assert_eq!(v, rules.judge_linear(r), "index and walk differ on {r:?}");
    v
}

/// `judge_name` on `r`, checked against the rule-by-rule walk.
fn judge_name(rules: &Rules, r: &NameRequest<'_>) -> NameVerdict {
    let v = rules.judge_name(r);
    assert_eq!(
        v,
        rules.judge_name_linear(r),
        "index and walk differ on {r:?}"
    );
    v
}

/// Whether `r` is allowed, checked against the walk.
fn allowed(rules: &Rules, r: &Request<'_>) -> bool {
    judge(rules, r).is_allow()
}

// ------------------------------------------------------------------ parsing

#[test]
fn comments_blank_lines_and_line_endings() {
    let r = rules("# a comment\n\n   \t\ndeny port 25   # no mail\r\n  allow # the rest\n# end");
    assert_eq!(r.len(), 2);
    let v = judge(&r, &to("198.51.100.1", 25));
    assert!(!v.is_allow());
    assert_eq!(r.describe(v.origin()).to_string(), "rules.conf:4");
    let v = judge(&r, &to("198.51.100.1", 80));
    assert!(v.is_allow());
    assert_eq!(r.describe(v.origin()).to_string(), "rules.conf:5");
}

#[test]
fn allow_alone_allows_everything_and_deny_alone_denies() {
    let all = rules("allow");
    let none = rules("deny");
    for r in [
        to("127.0.0.1", 1),
        to("::", 65535),
        Request {
            user: Some("alice"),
            admin: true,
            cmd: Cmd::Udp,
            ..to("198.51.100.1", 53)
        },
    ] {
        assert!(allowed(&all, &r));
        let v = judge(&none, &r);
        assert_eq!(
            v,
            Verdict::Deny {
                log: false,
                origin: Origin::File { line: 1 }
            }
        );
    }
}

#[test]
fn an_empty_file_denies_everything_as_no_rule() {
    for text in ["", "# only comments\n\n"] {
        let r = rules(text);
        assert!(r.is_empty());
        let v = judge(&r, &to("198.51.100.1", 80));
        assert_eq!(v.origin(), Origin::Default("no-rule"));
        assert!(!v.is_allow());
        assert_eq!(r.describe(v.origin()).to_string(), "default:no-rule");
        assert_eq!(
            judge_name(&r, &to_name("example.com", 80)),
            NameVerdict::Decided(v)
        );
    }
}

#[test]
fn a_request_no_rule_matches_is_denied() {
    let r = rules("allow port 80");
    let v = judge(&r, &to("198.51.100.1", 81));
    assert_eq!(origin(v), "no-rule");
    assert!(!v.is_allow());
}

#[test]
fn every_error_names_the_file_and_line() {
    let cases: &[(&str, &str)] = &[
        (
            "allow\npermit",
            "rules.conf:2: 'permit' is not an action (allow or deny)",
        ),
        (
            "Allow",
            "rules.conf:1: 'Allow' is not an action (allow or deny)",
        ),
        (", allow", "rules.conf:1: a rule starts with allow or deny"),
        (
            "\"allow\"",
            "rules.conf:1: a rule starts with allow or deny",
        ),
        (
            "\n\nallow frm 10.0.0.0/8",
            "rules.conf:3: 'frm' is not a keyword (from, user, cmd, to, port, rate, log)",
        ),
        (
            "allow port 80 443",
            "rules.conf:1: '443' is not a keyword (from, user, cmd, to, port, rate, log); \
             one keyword's values are separated by commas, as in 'port 80,443'",
        ),
        (
            "allow \"port\" 80",
            "rules.conf:1: '\"port\"' is not a keyword (from, user, cmd, to, port, rate, log)",
        ),
        (
            "allow log , port 80",
            "rules.conf:1: a comma where a keyword belongs (from, user, cmd, to, port, rate, log)",
        ),
        ("allow port", "rules.conf:1: 'port' needs a value"),
        (
            "allow port log",
            "rules.conf:1: 'port log' is not a port (1 to 65535) or range (N-M)",
        ),
        (
            "allow port ,80",
            "rules.conf:1: 'port' needs a value before its comma",
        ),
        (
            "allow port 80,,443",
            "rules.conf:1: 'port': two commas in a row",
        ),
        (
            "allow port 80,",
            "rules.conf:1: 'port': the line ends with a comma",
        ),
        (
            "allow port 80, # x",
            "rules.conf:1: 'port': the line ends with a comma",
        ),
        (
            "# ok\n\n\n\n\n\ndeny port 70000",
            "rules.conf:7: 'port 70000' is not a port (1 to 65535) or range (N-M)",
        ),
        (
            "deny port 0",
            "rules.conf:1: 'port 0' is not a port (1 to 65535) or range (N-M)",
        ),
        (
            "deny port +80",
            "rules.conf:1: 'port +80' is not a port (1 to 65535) or range (N-M)",
        ),
        (
            "deny port 80-",
            "rules.conf:1: 'port 80-' is not a port (1 to 65535) or range (N-M)",
        ),
        (
            "deny port -80",
            "rules.conf:1: 'port -80' is not a port (1 to 65535) or range (N-M)",
        ),
        (
            "deny port 1-2-3",
            "rules.conf:1: 'port 1-2-3' is not a port (1 to 65535) or range (N-M)",
        ),
        (
            "deny port 99999999999999999999999",
            "rules.conf:1: 'port 99999999999999999999999' is not a port (1 to 65535) or range (N-M)",
        ),
        (
            "deny port 90-80",
            "rules.conf:1: 'port 90-80': the range runs backwards",
        ),
        (
            "deny from 10.0.0.256",
            "rules.conf:1: 'from 10.0.0.256' is not an address or block: \
             '10.0.0.256' is not an IPv4 or IPv6 address",
        ),
        (
            "deny from 10.0.0.0/33",
            "rules.conf:1: 'from 10.0.0.0/33' is not an address or block: \
             '/33' is not a prefix length (0 to 32)",
        ),
        (
            "deny from ::/129",
            "rules.conf:1: 'from ::/129' is not an address or block: \
             '/129' is not a prefix length (0 to 128)",
        ),
        (
            "deny from 10.0.0.0/",
            "rules.conf:1: 'from 10.0.0.0/' is not an address or block: \
             '/' is not a prefix length (0 to 32)",
        ),
        (
            "deny from 10.0.0.1/8",
            "rules.conf:1: 'from 10.0.0.1/8' is not an address or block: \
             host bits are set: write 10.0.0.0/8",
        ),
        (
            "deny from 2001:db8::1/64",
            "rules.conf:1: 'from 2001:db8::1/64' is not an address or block: \
             host bits are set: write 2001:db8::/64",
        ),
        (
            "deny from example.com",
            "rules.conf:1: 'from example.com' is not an address or block: \
             'example.com' is not an IPv4 or IPv6 address",
        ),
        (
            "deny user @staff",
            "rules.conf:1: 'user @staff': the one group is @admins \
             (write a name that starts with @ in quotes)",
        ),
        (
            "deny user \"\"",
            "rules.conf:1: 'user \"\"' is not a user name \
             (1 to 255 bytes, no ':' or control characters)",
        ),
        (
            "deny user a:b",
            "rules.conf:1: 'user \"a:b\"' is not a user name \
             (1 to 255 bytes, no ':' or control characters)",
        ),
        (
            "deny cmd associate",
            "rules.conf:1: 'cmd associate' is not a command (connect, bind or udp)",
        ),
        (
            "deny cmd CONNECT",
            "rules.conf:1: 'cmd CONNECT' is not a command (connect, bind or udp)",
        ),
        ("deny to .", "rules.conf:1: 'to .' names no domain"),
        ("deny to ..", "rules.conf:1: 'to ..' names no domain"),
        (
            "deny to ..com",
            "rules.conf:1: 'to ..com' is not a name: it has an empty label",
        ),
        (
            "deny to a..com",
            "rules.conf:1: 'to a..com' is not a name: it has an empty label",
        ),
        (
            "deny to *.example.com",
            "rules.conf:1: 'to *.example.com' is not a name: \
             for a domain and all its subdomains write '.example.com'",
        ),
        (
            "deny to ex!ample.com",
            "rules.conf:1: 'to ex!ample.com' is not a name: '!' may not be in one",
        ),
        (
            "deny to bücher.de",
            "rules.conf:1: 'to bücher.de' is not a name: write international names in their xn-- form",
        ),
        (
            "deny to 300.1.1.1",
            "rules.conf:1: 'to 300.1.1.1' is not an address or block: \
             '300.1.1.1' is not an IPv4 or IPv6 address",
        ),
        (
            "deny to 10.0.0.0/8/9",
            "rules.conf:1: 'to 10.0.0.0/8/9' is not an address or block: \
             '/8/9' is not a prefix length (0 to 32)",
        ),
        (
            "deny to fe80::1%eth0",
            "rules.conf:1: 'to fe80::1%eth0' is not an address or block: \
             'fe80::1%eth0' is not an IPv4 or IPv6 address",
        ),
        (
            "deny rate 1M",
            "rules.conf:1: 'rate' belongs on allow rules only",
        ),
        (
            "deny rate up 1M",
            "rules.conf:1: 'rate' belongs on allow rules only",
        ),
        (
            "allow rate 0",
            "rules.conf:1: 'rate 0' is not a rate (bytes per second from 1, \
             with K, M or G for 1024, 1024² or 1024³)",
        ),
        (
            "allow rate 10X",
            "rules.conf:1: 'rate 10X' is not a rate (bytes per second from 1, \
             with K, M or G for 1024, 1024² or 1024³)",
        ),
        (
            "allow rate M",
            "rules.conf:1: 'rate M' is not a rate (bytes per second from 1, \
             with K, M or G for 1024, 1024² or 1024³)",
        ),
        (
            "allow rate 9999999999999999999G",
            "rules.conf:1: 'rate 9999999999999999999G' is not a rate (bytes per second from 1, \
             with K, M or G for 1024, 1024² or 1024³)",
        ),
        (
            "allow rate up 1M down x",
            "rules.conf:1: 'rate down x' is not a rate (bytes per second from 1, \
             with K, M or G for 1024, 1024² or 1024³)",
        ),
        (
            "allow rate",
            "rules.conf:1: 'rate' needs a value: rate N, or rate up N down M \
             (bytes per second; K, M and G are 1024, 1024² and 1024³)",
        ),
        (
            "allow rate up",
            "rules.conf:1: 'rate up' needs a value: rate N, or rate up N down M \
             (bytes per second; K, M and G are 1024, 1024² and 1024³)",
        ),
        (
            "allow rate 1M rate 2M",
            "rules.conf:1: 'rate N' is given twice in one rule",
        ),
        (
            "allow rate up 1M up 2M",
            "rules.conf:1: 'up' is given twice in one rule",
        ),
        (
            "allow rate down 1M rate down 2M",
            "rules.conf:1: 'down' is given twice in one rule",
        ),
        ("allow log log", "rules.conf:1: 'log' is given twice"),
        (
            "allow user \"bob",
            "rules.conf:1: a quote that does not end",
        ),
        ("allow user b\"ob\"", "rules.conf:1: a quote inside a word"),
        (
            "allow user \"bob\"x",
            "rules.conf:1: a closing quote must end its word",
        ),
        (
            "allow user \"b\\ob\"",
            "rules.conf:1: in quotes, '\\' comes only before '\"' or '\\'",
        ),
        ("allow\u{1}", "rules.conf:1: a control character (0x01)"),
        (
            "allow user \"a\u{7}\"",
            "rules.conf:1: a control character (\\u{7})",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&error(text), want, "{text:?}");
    }
}

#[test]
fn the_first_error_is_reported_with_its_own_file_name() {
    let e = Rules::parse(
        "/etc/socks5d/rules",
        "allow\ndeny port 1\nallow port x\ndeny port y",
    )
    .unwrap_err();
    assert_eq!(e.line, 3);
    assert_eq!(&*e.file, "/etc/socks5d/rules");
    assert!(
        e.to_string().starts_with("/etc/socks5d/rules:3: 'port x'"),
        "{e}"
    );
}

#[test]
fn commas_may_have_spaces_around_them() {
    for text in [
        "deny port 80,443",
        "deny port 80, 443",
        "deny port 80 ,443",
        "deny port 80 , 443",
    ] {
        let r = rules(&format!("{text}\nallow"));
        assert!(!allowed(&r, &to("198.51.100.1", 80)), "{text}");
        assert!(!allowed(&r, &to("198.51.100.1", 443)), "{text}");
        assert!(allowed(&r, &to("198.51.100.1", 8080)), "{text}");
    }
}

#[test]
fn quoted_user_names_hold_any_name_a_user_may_have() {
    let r = rules(
        "allow user \"john doe\",\"a,b#c\",\"say \\\"hi\\\"\",\"back\\\\slash\" # comment\n\
         allow user \"@admins\" port 1\n",
    );
    for name in ["john doe", "a,b#c", "say \"hi\"", "back\\slash"] {
        let req = Request {
            user: Some(name),
            ..to("198.51.100.1", 80)
        };
        assert!(allowed(&r, &req), "{name}");
    }
    // A quoted @admins is a user of that name, not the group.
    let admin = Request {
        user: Some("root"),
        admin: true,
        ..to("198.51.100.1", 1)
    };
    assert!(!allowed(&r, &admin));
    let literal = Request {
        user: Some("@admins"),
        ..to("198.51.100.1", 1)
    };
    assert!(allowed(&r, &literal));
}

#[test]
fn rules_print_as_text_that_parses_to_the_same_rules() {
    let text = "allow from 10.0.0.0/8,::ffff:192.0.2.0/120,2001:DB8::/32,192.0.2.9/32 \
                user alice,@admins,\"john doe\",\"@x\",\"q\\\"\" cmd connect,udp \
                to 10.0.0.0/8,Example.COM.,.Example.org,::1/128 port 80,1000-2000 \
                rate 10m rate up 3k down 1G log\n\
                deny to 0.0.0.0/0 port 1-65535 log\n\
                allow rate 1000\n\
                allow rate up 5";
    let r = rules(text);
    let printed = r.to_string();
    assert_eq!(
        printed,
        "allow from 10.0.0.0/8,192.0.2.0/24,2001:db8::/32,192.0.2.9 \
         user alice,@admins,\"john doe\",\"@x\",\"q\\\"\" cmd connect,udp \
         to 10.0.0.0/8,example.com,.example.org,::1 port 80,1000-2000 \
         rate 10M rate up 3K down 1G log\n\
         deny to 0.0.0.0/0 port 1-65535 log\n\
         allow rate 1000\n\
         allow rate up 5\n"
    );
    let again = rules(&printed);
    let strip = |r: &Rules| -> Vec<Rule> {
        r.rules
            .iter()
            .map(|rule| Rule {
                origin: Origin::Default("x"),
                ..rule.clone()
            })
            .collect()
    };
    assert_eq!(strip(&r), strip(&again));
}

// ------------------------------------------------------------------ from

#[test]
fn cidr_edges_and_off_by_one() {
    let r = rules(
        "allow from 10.0.0.0/24 port 1\n\
         allow from 0.0.0.0/0 port 2\n\
         allow from ::/0 port 3\n\
         allow from 192.0.2.7 port 4\n\
         allow from 192.0.2.7/32 port 5\n\
         allow from 2001:db8::1 port 6\n\
         allow from 2001:db8::/64 port 7\n\
         allow from 198.51.100.0/31 port 8\n\
         allow from 128.0.0.0/1 port 9\n",
    );
    let from = |client: &str, port| Request {
        client: ip(client),
        ..to("203.0.113.1", port)
    };
    let cases: &[(&str, u16, bool)] = &[
        ("10.0.0.0", 1, true),
        ("10.0.0.255", 1, true),
        ("10.0.1.0", 1, false),
        ("9.255.255.255", 1, false),
        ("0.0.0.0", 2, true),
        ("255.255.255.255", 2, true),
        ("::1", 2, false),
        ("::1", 3, true),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 3, true),
        ("10.0.0.1", 3, false),
        ("::ffff:10.0.0.1", 3, false),
        ("192.0.2.7", 4, true),
        ("192.0.2.6", 4, false),
        ("192.0.2.8", 4, false),
        ("192.0.2.7", 5, true),
        ("192.0.2.8", 5, false),
        ("2001:db8::1", 6, true),
        ("2001:db8::2", 6, false),
        ("2001:db8::", 6, false),
        ("2001:db8::ffff:ffff:ffff:ffff", 7, true),
        ("2001:db8:0:1::", 7, false),
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", 7, false),
        ("198.51.100.0", 8, true),
        ("198.51.100.1", 8, true),
        ("198.51.100.2", 8, false),
        ("198.51.99.255", 8, false),
        ("128.0.0.0", 9, true),
        ("127.255.255.255", 9, false),
    ];
    for &(client, port, want) in cases {
        assert_eq!(
            allowed(&r, &from(client, port)),
            want,
            "{client} port {port}"
        );
    }
}

#[test]
fn ipv4_mapped_addresses_are_judged_as_ipv4() {
    let r = rules(
        "deny from 10.0.0.0/8 port 1\n\
         deny to 127.0.0.0/8\n\
         deny to ::ffff:198.51.100.0/120\n\
         deny from ::ffff:203.0.113.0/120 port 2\n\
         allow",
    );
    let mapped_client = Request {
        client: ip("::ffff:10.1.2.3"),
        ..to("203.0.113.9", 1)
    };
    assert!(!allowed(&r, &mapped_client));
    assert!(!allowed(&r, &to("::ffff:127.0.0.1", 80)));
    assert!(!allowed(&r, &to("127.0.0.1", 80)));
    // A mapped block in a rule matches the plain IPv4 address too.
    assert!(!allowed(&r, &to("198.51.100.77", 80)));
    assert!(!allowed(&r, &to("::ffff:198.51.100.77", 80)));
    assert!(allowed(&r, &to("198.51.101.77", 80)));
    let v4_client = Request {
        client: ip("203.0.113.5"),
        ..to("192.0.2.200", 2)
    };
    assert!(!allowed(&r, &v4_client));
    // Not mapped: an IPv6 address whose last 32 bits look like 127.0.0.1.
    assert!(allowed(&r, &to("::127.0.0.1", 80)));
    assert!(allowed(&r, &to("64:ff9b::127.0.0.1", 80)));
}

// ------------------------------------------------------------------ to

#[test]
fn a_domain_holds_itself_and_its_subdomains_only() {
    let r = rules("allow to .example.com\nallow to exact.org");
    let name_hit = |name: &str| {
        let nr = to_name(name, 443);
        let early = judge_name(&r, &nr);
        let late = judge(&r, &nr.resolved(ip("198.51.100.1")));
        assert_eq!(early, NameVerdict::Decided(late), "{name}");
        late.is_allow()
    };
    for name in [
        "example.com",
        "a.example.com",
        "a.b.example.com",
        "EXAMPLE.com",
        "A.Example.COM",
        "example.com.",
        "a.example.com.",
        "exact.org",
        "Exact.ORG.",
    ] {
        assert!(name_hit(name), "{name}");
    }
    for name in [
        "badexample.com",
        "example.com.evil",
        "example.co",
        "xample.com",
        "com",
        "",
        ".",
        "example.com..",
        "www.exact.org",
        "notexact.org",
        "exact.org.uk",
    ] {
        assert!(!name_hit(name), "{name}");
    }
}

#[test]
fn trailing_dots_and_case_in_rules_are_ignored() {
    let r = rules("allow to Example.COM.\nallow to .Sub.Example.NET.");
    for name in [
        "example.com",
        "EXAMPLE.COM.",
        "sub.example.net",
        "x.SUB.example.net.",
    ] {
        assert!(
            allowed(&r, &to_name(name, 80).resolved(ip("198.51.100.1"))),
            "{name}"
        );
    }
}

#[test]
fn name_rules_never_match_a_request_to_an_address() {
    let r = rules("allow to example.com,.example.org");
    assert!(!allowed(&r, &to("198.51.100.1", 80)));
}

#[test]
fn a_to_list_may_mix_names_and_blocks() {
    let r = rules("deny to example.com,10.0.0.0/8\nallow");
    // The name decides before resolution.
    assert_eq!(
        judge_name(&r, &to_name("example.com", 80)),
        NameVerdict::Decided(Verdict::Deny {
            log: false,
            origin: Origin::File { line: 1 }
        })
    );
    // Another name must be resolved: the block judges its address.
    let other = to_name("example.net", 80);
    assert_eq!(judge_name(&r, &other), NameVerdict::NeedsAddress);
    assert!(!allowed(&r, &other.resolved(ip("10.9.9.9"))));
    assert!(allowed(&r, &other.resolved(ip("198.51.100.1"))));
    assert!(!allowed(&r, &to("10.0.0.1", 80)));
}

// ------------------------------------------------------------------ port, cmd, user

#[test]
fn port_ranges_and_lists() {
    let r = rules("allow port 80,443 port 8000-8080\nallow port 65535\n");
    for (port, want) in [
        (79, false),
        (80, true),
        (81, false),
        (443, true),
        (7999, false),
        (8000, true),
        (8040, true),
        (8080, true),
        (8081, false),
        (65534, false),
        (65535, true),
        (0, false),
        (1, false),
    ] {
        assert_eq!(allowed(&r, &to("198.51.100.1", port)), want, "port {port}");
    }
    // A request for port 0 (a BIND may carry one) matches only rules
    // without `port`.
    let any = rules("deny port 1-65535\nallow");
    assert!(allowed(&any, &to("198.51.100.1", 0)));
}

#[test]
fn overlapping_port_ranges() {
    let r = rules("deny port 100-200 port 150-300\ndeny port 250-260,1-5\nallow port 1-1000");
    for (port, line) in [
        (1, 2),
        (5, 2),
        (6, 3),
        (99, 3),
        (100, 1),
        (255, 1),
        (300, 1),
        (301, 3),
    ] {
        assert_eq!(
            origin(judge(&r, &to("198.51.100.1", port))),
            format!("line {line}"),
            "{port}"
        );
    }
}

#[test]
fn commands() {
    let r = rules("deny cmd bind,udp\nallow cmd connect");
    let with = |cmd| Request {
        cmd,
        ..to("198.51.100.1", 80)
    };
    assert!(allowed(&r, &with(Cmd::Connect)));
    assert!(!allowed(&r, &with(Cmd::Bind)));
    assert!(!allowed(&r, &with(Cmd::Udp)));
    assert_eq!(origin(judge(&r, &with(Cmd::Udp))), "line 1");
}

#[test]
fn users_by_exact_name_and_administrators() {
    let r = rules(
        "allow user alice,bob port 1\nallow user @admins port 2\nallow user carol user @admins port 3",
    );
    let as_user = |user, admin, port| Request {
        user,
        admin,
        ..to("198.51.100.1", port)
    };
    assert!(allowed(&r, &as_user(Some("alice"), false, 1)));
    assert!(allowed(&r, &as_user(Some("bob"), true, 1)));
    assert!(
        !allowed(&r, &as_user(Some("Alice"), false, 1)),
        "names are exact"
    );
    assert!(!allowed(&r, &as_user(Some("alic"), false, 1)));
    assert!(
        !allowed(&r, &as_user(None, false, 1)),
        "no user matches no user rule"
    );
    assert!(allowed(&r, &as_user(Some("root"), true, 2)));
    assert!(!allowed(&r, &as_user(Some("alice"), false, 2)));
    // A repeated keyword is one list: carol or any administrator.
    assert!(allowed(&r, &as_user(Some("carol"), false, 3)));
    assert!(allowed(&r, &as_user(Some("root"), true, 3)));
    assert!(!allowed(&r, &as_user(Some("dave"), false, 3)));
}

#[test]
fn every_keyword_must_hold_and_any_value_of_one() {
    let r = rules(
        "allow from 192.0.2.0/24 user alice cmd connect to 198.51.100.0/24,203.0.113.0/24 port 443",
    );
    let base = Request {
        user: Some("alice"),
        ..to("198.51.100.1", 443)
    };
    assert!(allowed(&r, &base));
    assert!(allowed(
        &r,
        &Request {
            addr: ip("203.0.113.9"),
            ..base
        }
    ));
    let breaks = [
        Request {
            client: ip("192.0.3.1"),
            ..base
        },
        Request {
            user: Some("bob"),
            ..base
        },
        Request { user: None, ..base },
        Request {
            cmd: Cmd::Bind,
            ..base
        },
        Request {
            addr: ip("198.51.101.1"),
            ..base
        },
        Request { port: 444, ..base },
    ];
    for b in breaks {
        assert!(!allowed(&r, &b), "{b:?}");
    }
}

#[test]
fn first_match_wins() {
    let r = rules("deny to 10.0.0.0/8 log\nallow to 10.1.0.0/16\nallow rate 5K");
    assert_eq!(
        judge(&r, &to("10.1.2.3", 80)),
        Verdict::Deny {
            log: true,
            origin: Origin::File { line: 1 }
        }
    );
    let flipped = rules("allow to 10.1.0.0/16\ndeny to 10.0.0.0/8 log\nallow rate 5K");
    assert!(allowed(&flipped, &to("10.1.2.3", 80)));
    assert!(!allowed(&flipped, &to("10.2.2.3", 80)));
    assert_eq!(
        judge(&flipped, &to("11.0.0.1", 80)),
        Verdict::Allow {
            rate: Rate {
                total: Some(5 << 10),
                up: None,
                down: None
            },
            log: false,
            origin: Origin::File { line: 3 },
        }
    );
}

// ------------------------------------------------------------------ options

#[test]
fn rates_and_log_reach_the_verdict() {
    let r = rules(
        "allow port 1 rate 100\n\
         allow port 2 rate 10k log\n\
         allow port 3 rate 2M\n\
         allow port 4 rate 1G\n\
         allow port 5 rate up 1M down 8M\n\
         allow port 6 rate down 7 rate 3K\n\
         allow port 7 log\n\
         deny port 8 log\n",
    );
    let rate = |port| judge(&r, &to("198.51.100.1", port)).rate();
    let mk = |total, up, down| Rate { total, up, down };
    assert_eq!(rate(1), mk(Some(100), None, None));
    assert_eq!(rate(2), mk(Some(10 * 1024), None, None));
    assert_eq!(rate(3), mk(Some(2 << 20), None, None));
    assert_eq!(rate(4), mk(Some(1 << 30), None, None));
    assert_eq!(rate(5), mk(None, Some(1 << 20), Some(8 << 20)));
    assert_eq!(rate(6), mk(Some(3 << 10), None, Some(7)));
    assert!(rate(7).is_unlimited());
    let log = |port| judge(&r, &to("198.51.100.1", port)).log();
    assert!(!log(1));
    assert!(log(2));
    assert!(log(7));
    assert!(log(8));
    assert!(!judge(&r, &to("198.51.100.1", 8)).is_allow());
}

// ------------------------------------------------------------------ names in two steps

#[test]
fn judge_name_decides_early_when_no_rule_needs_the_address() {
    let r = rules("allow to .example.com log\ndeny to .example.org\nallow port 22\n");
    let v = judge_name(&r, &to_name("www.example.com", 443));
    assert_eq!(
        v,
        NameVerdict::Decided(Verdict::Allow {
            rate: Rate::default(),
            log: true,
            origin: Origin::File { line: 1 },
        })
    );
    let NameVerdict::Decided(v) = judge_name(&r, &to_name("example.org", 443)) else {
        panic!("undecided");
    };
    assert_eq!(origin(v), "line 2");
    let NameVerdict::Decided(v) = judge_name(&r, &to_name("example.net", 22)) else {
        panic!("undecided");
    };
    assert_eq!(origin(v), "line 3");
    let NameVerdict::Decided(v) = judge_name(&r, &to_name("example.net", 80)) else {
        panic!("undecided");
    };
    assert_eq!(origin(v), "no-rule");
}

#[test]
fn a_block_rule_first_needs_the_address() {
    let r = rules("deny to 127.0.0.0/8,::1\nallow to .example.com\n");
    let req = to_name("evil.example.com", 80);
    assert_eq!(judge_name(&r, &req), NameVerdict::NeedsAddress);
    // A name that resolves to loopback cannot get round the deny.
    assert_eq!(origin(judge(&r, &req.resolved(ip("127.0.0.1")))), "line 1");
    assert_eq!(origin(judge(&r, &req.resolved(ip("::1")))), "line 1");
    assert_eq!(
        origin(judge(&r, &req.resolved(ip("::ffff:127.0.0.2")))),
        "line 1"
    );
    assert_eq!(
        origin(judge(&r, &req.resolved(ip("198.51.100.1")))),
        "line 2"
    );
}

#[test]
fn a_block_rule_that_fails_on_what_is_known_does_not_wait_for_the_address() {
    let r = rules(
        "deny to 10.0.0.0/8 port 25\n\
         deny user mallory to 10.0.0.0/8\n\
         deny cmd udp to 10.0.0.0/8\n\
         deny from 203.0.113.0/24 to 10.0.0.0/8\n\
         allow to .example.com\n\
         deny to 192.168.0.0/16\n\
         allow",
    );
    assert_eq!(
        judge_name(&r, &to_name("a.example.com", 80)),
        NameVerdict::Decided(Verdict::Allow {
            rate: Rate::default(),
            log: false,
            origin: Origin::File { line: 5 },
        })
    );
    // Each of the first four rules holds for one request except on its
    // address: those wait.
    assert_eq!(
        judge_name(&r, &to_name("a.example.com", 25)),
        NameVerdict::NeedsAddress
    );
    let mallory = NameRequest {
        user: Some("mallory"),
        ..to_name("a.example.com", 80)
    };
    assert_eq!(judge_name(&r, &mallory), NameVerdict::NeedsAddress);
    let udp = NameRequest {
        cmd: Cmd::Udp,
        ..to_name("a.example.com", 80)
    };
    assert_eq!(judge_name(&r, &udp), NameVerdict::NeedsAddress);
    let outside = NameRequest {
        client: ip("203.0.113.9"),
        ..to_name("a.example.com", 80)
    };
    assert_eq!(judge_name(&r, &outside), NameVerdict::NeedsAddress);
    // A name no name rule takes waits for the block rule after them.
    assert_eq!(
        judge_name(&r, &to_name("example.net", 80)),
        NameVerdict::NeedsAddress
    );
}

#[test]
fn a_decision_on_the_name_is_what_every_address_would_get() {
    let r = rules(
        "deny to .bad.example\n\
         allow user alice to .example.com rate 1M\n\
         deny to 10.0.0.0/8\n\
         allow to .example.com port 443\n\
         allow to 198.51.100.0/24 cmd connect\n",
    );
    let names = [
        "x.bad.example",
        "www.example.com",
        "example.com",
        "other.net",
    ];
    let addrs = [
        "10.1.1.1",
        "198.51.100.5",
        "::1",
        "::ffff:10.0.0.1",
        "2001:db8::1",
    ];
    for name in names {
        for user in [None, Some("alice")] {
            for port in [80, 443] {
                for cmd in [Cmd::Connect, Cmd::Udp] {
                    let req = NameRequest {
                        user,
                        cmd,
                        ..to_name(name, port)
                    };
                    if let NameVerdict::Decided(v) = judge_name(&r, &req) {
                        for a in addrs {
                            assert_eq!(judge(&r, &req.resolved(ip(a))), v, "{req:?} {a}");
                        }
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------ the default

/// The default of a host at 192.0.2.10 and 2001:db8::10 with socks5d on
/// every address's port 1080 and on 192.0.2.10:8080.
fn own() -> (Vec<SocketAddr>, Vec<IpAddr>) {
    let listeners = vec![
        "0.0.0.0:1080".parse().unwrap(),
        "192.0.2.10:8080".parse().unwrap(),
        "127.0.0.1:9000".parse().unwrap(),
    ];
    let host = vec![
        ip("192.0.2.10"),
        ip("2001:db8::10"),
        ip("127.0.0.1"),
        ip("fe80::1"),
    ];
    (listeners, host)
}

/// Each default reason with targets it denies, and targets it allows.
const DEFAULT_CASES: &[(&str, u16, &str)] = &[
    ("127.0.0.1", 80, "loopback"),
    ("127.255.255.255", 80, "loopback"),
    ("::1", 80, "loopback"),
    ("::ffff:127.0.0.1", 80, "loopback"),
    ("127.0.0.1", 9000, "loopback"),
    ("0.0.0.0", 80, "unspecified"),
    ("0.255.255.255", 80, "unspecified"),
    ("::", 80, "unspecified"),
    ("169.254.169.254", 80, "link-local"),
    ("169.254.0.0", 80, "link-local"),
    ("fe80::1", 80, "link-local"),
    ("febf:ffff::1", 80, "link-local"),
    ("224.0.0.1", 80, "multicast"),
    ("239.255.255.255", 80, "multicast"),
    ("ff02::1", 80, "multicast"),
    ("255.255.255.255", 80, "broadcast"),
    ("192.0.2.10", 1080, "own-address"),
    ("::ffff:192.0.2.10", 1080, "own-address"),
    ("2001:db8::10", 1080, "own-address"),
    ("192.0.2.10", 8080, "own-address"),
    ("192.0.2.10", 80, "allow"),
    ("2001:db8::10", 8080, "allow"),
    ("192.0.2.11", 1080, "allow"),
    ("1.0.0.0", 80, "allow"),
    ("126.255.255.255", 80, "allow"),
    ("128.0.0.0", 80, "allow"),
    ("169.253.255.255", 80, "allow"),
    ("169.255.0.0", 80, "allow"),
    ("223.255.255.255", 80, "allow"),
    ("240.0.0.0", 80, "allow"),
    ("255.255.255.254", 80, "allow"),
    ("10.0.0.1", 80, "allow"),
    ("fec0::1", 80, "allow"),
    ("fe7f::1", 80, "allow"),
    ("::2", 80, "allow"),
    ("2001:db8::1", 80, "allow"),
];

#[test]
fn the_default_denies_with_its_reasons() {
    let (listeners, host) = own();
    let r = Rules::default_for(&listeners, &host);
    assert_eq!(r.file(), "default");
    for &(addr, port, reason) in DEFAULT_CASES {
        let v = judge(&r, &to(addr, port));
        assert_eq!(v.origin(), Origin::Default(reason), "{addr} port {port}");
        assert_eq!(v.is_allow(), reason == "allow", "{addr}");
        assert_eq!(
            r.describe(v.origin()).to_string(),
            format!("default:{reason}")
        );
        assert!(!v.log() && v.rate().is_unlimited());
    }
}

#[test]
fn the_default_judges_names_on_their_addresses() {
    let r = Rules::default_for(&[], &[]);
    let req = to_name("localhost", 80);
    assert_eq!(judge_name(&r, &req), NameVerdict::NeedsAddress);
    assert_eq!(
        origin(judge(&r, &req.resolved(ip("127.0.0.1")))),
        "loopback"
    );
    assert_eq!(
        origin(judge(&r, &req.resolved(ip("198.51.100.1")))),
        "allow"
    );
}

#[test]
fn an_unspecified_listener_without_host_addresses_denies_its_port_everywhere() {
    let r = Rules::default_for(&["[::]:1080".parse().unwrap()], &[]);
    assert_eq!(origin(judge(&r, &to("198.51.100.1", 1080))), "own-address");
    assert_eq!(origin(judge(&r, &to("2001:db8::1", 1080))), "own-address");
    assert_eq!(origin(judge(&r, &to("198.51.100.1", 1081))), "allow");
    let name = to_name("example.com", 1080);
    assert_eq!(judge_name(&r, &name), NameVerdict::NeedsAddress);
    assert_eq!(
        origin(judge(&r, &name.resolved(ip("198.51.100.1")))),
        "own-address"
    );
}

#[test]
fn a_loopback_listener_adds_no_rule_of_its_own() {
    let r = Rules::default_for(&["127.0.0.1:1080".parse().unwrap()], &[ip("192.0.2.10")]);
    assert!(!r.to_string().contains("1080"), "{r}");
    assert_eq!(origin(judge(&r, &to("192.0.2.10", 1080))), "allow");
}

#[test]
fn a_listener_on_port_zero_adds_no_rule() {
    let listeners = [
        "0.0.0.0:0".parse().unwrap(),
        "192.0.2.10:0".parse().unwrap(),
    ];
    let text = Rules::print_default(&listeners, &[ip("192.0.2.10")]);
    assert!(!text.contains("own-address"), "{text}");
    assert_eq!(
        rules(&text).len(),
        Rules::default_for(&listeners, &[]).len()
    );
}

#[test]
fn the_printed_default_parses_to_the_same_decisions() {
    let (listeners, host) = own();
    let text = Rules::print_default(&listeners, &host);
    let printed = rules(&text);
    let default = Rules::default_for(&listeners, &host);
    assert_eq!(printed.len(), default.len());
    let lines: Vec<&str> = text.lines().collect();
    let check = |req: &Request<'_>| {
        let (a, b) = (judge(&default, req), judge(&printed, req));
        assert_eq!(a.is_allow(), b.is_allow(), "{req:?}");
        assert_eq!((a.rate(), a.log()), (b.rate(), b.log()));
        let (Origin::Default(reason), Origin::File { line }) = (a.origin(), b.origin()) else {
            panic!("{a:?} {b:?}");
        };
        let line = lines[line as usize - 1];
        assert!(
            line.ends_with(&format!("# {reason}")),
            "{line} for {reason}"
        );
    };
    for &(addr, port, _) in DEFAULT_CASES {
        check(&to(addr, port));
    }
    for a in 0..=255u8 {
        check(&to(&format!("{a}.{a}.0.1"), 1080));
        check(&to(&format!("{a:x}00::1"), 80));
    }
    // Every rule of the text is explained by a comment.
    assert!(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .all(|l| l.contains(" # "))
    );
}

#[test]
fn the_printed_default_reads_well() {
    let text = Rules::print_default(&["0.0.0.0:1080".parse().unwrap()], &[ip("192.0.2.10")]);
    let rules_only: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let squeezed: Vec<String> = rules_only
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        squeezed,
        [
            "deny to 127.0.0.0/8,::1 # loopback",
            "deny to 0.0.0.0/8,:: # unspecified",
            "deny to 169.254.0.0/16,fe80::/10 # link-local",
            "deny to 224.0.0.0/4,ff00::/8 # multicast",
            "deny to 255.255.255.255 # broadcast",
            "deny to 192.0.2.10 port 1080 # own-address",
            "allow # allow",
        ]
    );
}

// ------------------------------------------------------------------ the index

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }

    fn chance(&mut self, in_: u64) -> bool {
        self.next().is_multiple_of(in_)
    }
}

const BLOCKS: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.3",
    "0.0.0.0/0",
    "192.0.2.0/24",
    "198.51.100.0/31",
    "::/0",
    "2001:db8::/32",
    "2001:db8::1",
    "::1",
    "::ffff:10.0.0.0/104",
    "127.0.0.0/8",
    "128.0.0.0/1",
];
const ADDRS: &[&str] = &[
    "10.0.0.1",
    "10.1.2.3",
    "10.1.2.4",
    "10.1.3.3",
    "192.0.2.200",
    "198.51.100.1",
    "198.51.100.2",
    "2001:db8::1",
    "2001:db8::2",
    "2001:db9::1",
    "::1",
    "::ffff:10.1.2.3",
    "127.0.0.1",
    "200.0.0.1",
];
const NAMES: &[&str] = &[
    "example.com",
    ".example.com",
    "www.example.com",
    ".b.example.com",
    "example.org",
    ".org",
    "Example.NET.",
    "localhost",
];
const REQUEST_NAMES: &[&str] = &[
    "example.com",
    "EXAMPLE.COM.",
    "a.b.example.com",
    "b.example.com",
    "badexample.com",
    "example.org",
    "x.org",
    "example.net",
    "localhost",
    "",
    ".",
    "a..example.com",
];
const USERS: &[&str] = &["alice", "bob", "Alice", "@admins", "\"john doe\""];
const REQUEST_USERS: &[Option<&str>] = &[
    None,
    Some("alice"),
    Some("bob"),
    Some("Alice"),
    Some("john doe"),
];
const PORTS: &[&str] = &[
    "80",
    "443",
    "1-1024",
    "1000-2000",
    "1500-1600",
    "65535",
    "8080",
];
const REQUEST_PORTS: &[u16] = &[0, 1, 80, 443, 999, 1000, 1550, 2000, 2001, 8080, 65535];

/// A list of 1 to 3 values.
fn list(rng: &mut Rng, from: &[&str]) -> String {
    let n = 1 + rng.next() % 3;
    (0..n).map(|_| rng.pick(from)).collect::<Vec<_>>().join(",")
}

/// A random rules file of `n` lines.
fn random_rules(rng: &mut Rng, n: usize) -> String {
    let mut text = String::new();
    for _ in 0..n {
        let allow = rng.chance(2);
        text.push_str(if allow { "allow" } else { "deny" });
        if rng.chance(4) {
            text.push_str(&format!(" from {}", list(rng, BLOCKS)));
        }
        if rng.chance(4) {
            text.push_str(&format!(" user {}", list(rng, USERS)));
        }
        if rng.chance(5) {
            text.push_str(&format!(" cmd {}", list(rng, &["connect", "bind", "udp"])));
        }
        match rng.next() % 4 {
            0 => text.push_str(&format!(" to {}", list(rng, BLOCKS))),
            1 => text.push_str(&format!(" to {}", list(rng, NAMES))),
            2 => text.push_str(&format!(" to {},{}", list(rng, NAMES), list(rng, BLOCKS))),
            _ => {}
        }
        if rng.chance(3) {
            text.push_str(&format!(" port {}", list(rng, PORTS)));
        }
        if allow && rng.chance(4) {
            text.push_str(" rate 1M");
        }
        if rng.chance(4) {
            text.push_str(" log");
        }
        text.push('\n');
    }
    text
}

#[test]
fn the_index_agrees_with_the_walk_on_random_rules() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut decided_early = 0;
    let mut needed_address = 0;
    for round in 0..300 {
        let n = 1 + (rng.next() % 40) as usize;
        let r = rules(&random_rules(&mut rng, n));
        for _ in 0..200 {
            let user = rng.pick(REQUEST_USERS);
            let nr = NameRequest {
                client: ip(rng.pick(ADDRS)),
                user,
                admin: rng.chance(3),
                cmd: rng.pick(&[Cmd::Connect, Cmd::Bind, Cmd::Udp]),
                name: rng.pick(REQUEST_NAMES),
                port: rng.pick(REQUEST_PORTS),
            };
            let early = judge_name(&r, &nr);
            let addr = ip(rng.pick(ADDRS));
            let with_name = nr.resolved(addr);
            let late = judge(&r, &with_name);
            judge(
                &r,
                &Request {
                    name: None,
                    ..with_name
                },
            );
            match early {
                NameVerdict::Decided(v) => {
                    decided_early += 1;
                    assert_eq!(v, late, "round {round}: {nr:?} {addr}\n{r}");
                }
                NameVerdict::NeedsAddress => needed_address += 1,
            }
        }
    }
    // Both answers of judge_name were exercised.
    assert!(
        decided_early > 1000 && needed_address > 1000,
        "{decided_early} {needed_address}"
    );
}

#[test]
fn the_index_finds_rules_past_its_first_chunk() {
    // 10,000 rules: the matches sit in the first, third and last chunks of
    // 4,096 rules.
    let mut text = String::new();
    for i in 0..10_000u32 {
        let line = match i {
            5 => "deny to 192.0.2.0/24 port 5".to_owned(),
            9_000 => "allow to .example.com".to_owned(),
            9_999 => "allow port 7".to_owned(),
            // Odd rules share `port 9`: a value of many rules, kept as a bit
            // set across every chunk.
            _ if i % 2 == 1 => format!("deny user u{i} to 10.{}.{}.0/24 port 9", i >> 8, i & 255),
            _ => format!("deny user u{i} to 10.{}.{}.0/24", i >> 8, i & 255),
        };
        text.push_str(&line);
        text.push('\n');
    }
    let r = rules(&text);
    assert_eq!(origin(judge(&r, &to("192.0.2.1", 5))), "line 6");
    assert_eq!(origin(judge(&r, &to("192.0.2.1", 7))), "line 10000");
    let user = Request {
        user: Some("u7000"),
        ..to(&format!("10.{}.{}.1", 7000 >> 8, 7000 & 255), 7)
    };
    assert_eq!(origin(judge(&r, &user)), "line 7001");
    let addr = format!("10.{}.{}.1", 7001 >> 8, 7001 & 255);
    let odd = Request {
        user: Some("u7001"),
        ..to(&addr, 9)
    };
    assert_eq!(origin(judge(&r, &odd)), "line 7002");
    assert_eq!(origin(judge(&r, &Request { port: 8, ..odd })), "no-rule");
    assert_eq!(
        judge_name(&r, &to_name("www.example.com", 80)),
        NameVerdict::Decided(Verdict::Allow {
            rate: Rate::default(),
            log: false,
            origin: Origin::File { line: 9001 },
        })
    );
    let u = NameRequest {
        user: Some("u9500"),
        ..to_name("www.example.com", 80)
    };
    assert_eq!(
        judge_name(&r, &u),
        NameVerdict::Decided(judge(&r, &u.resolved(ip("198.51.100.1"))))
    );
    let u = NameRequest {
        user: Some("u4"),
        ..to_name("www.example.com", 80)
    };
    assert_eq!(judge_name(&r, &u), NameVerdict::NeedsAddress);
    assert_eq!(origin(judge(&r, &to("192.0.2.1", 8))), "no-rule");
}

// ------------------------------------------------------------------ docs/rules.md

/// The ```text blocks of docs/rules.md.
fn doc_blocks() -> Vec<String> {
    let doc = include_str!("../../docs/rules.md");
    let mut blocks = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find("```text\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("a closed block");
        blocks.push(body[..end].to_owned());
        rest = &body[end + 3..];
    }
    blocks
}

#[test]
fn the_documented_examples_parse_and_decide_as_described() {
    let blocks = doc_blocks();
    assert!(blocks.len() >= 8, "{} blocks", blocks.len());
    for b in &blocks {
        if b.starts_with("rules.conf:") {
            // The block of error messages.
            continue;
        }
        rules(b);
    }
    let find = |needle: &str| {
        let b = blocks.iter().find(|b| b.contains(needle)).expect(needle);
        rules(b)
    };
    let metadata = find("metadata.google.internal");
    let v = judge(&metadata, &to("169.254.169.254", 80));
    assert!(!v.is_allow() && v.log());
    let via_name = to_name("metadata.google.internal.", 80);
    assert!(matches!(
        judge_name(&metadata, &via_name),
        NameVerdict::NeedsAddress
    ));
    assert!(!judge(&metadata, &via_name.resolved(ip("198.51.100.1"))).is_allow());

    let lists = find("user alice,bob");
    let alice = NameRequest {
        user: Some("alice"),
        ..to_name("www.example.org", 443)
    };
    assert!(judge(&lists, &alice.resolved(ip("198.51.100.1"))).is_allow());
    assert!(!judge(&lists, &alice.resolved(ip("10.0.0.1"))).is_allow());
    let carol = NameRequest {
        user: Some("carol"),
        ..to_name("git.example.net", 22)
    };
    assert!(judge(&lists, &carol.resolved(ip("198.51.100.1"))).is_allow());
    let bind = NameRequest {
        cmd: Cmd::Bind,
        ..carol
    };
    assert_eq!(
        origin(judge(&lists, &bind.resolved(ip("198.51.100.1")))),
        "no-rule"
    );
    let bot = Request {
        user: Some("build bot"),
        ..to("198.51.100.9", 8443)
    };
    assert!(judge(&lists, &bot).is_allow());

    let rates = find("rate up 256K down 4M");
    let dave = Request {
        user: Some("dave"),
        ..to("198.51.100.1", 443)
    };
    assert_eq!(
        judge(&rates, &dave).rate(),
        Rate {
            total: None,
            up: Some(256 << 10),
            down: Some(4 << 20)
        }
    );
    let net = Request {
        client: ip("192.0.2.7"),
        ..to("198.51.100.1", 443)
    };
    assert_eq!(judge(&rates, &net).rate().total, Some(10 << 20));
    let backup = Request {
        client: ip("192.0.2.50"),
        ..to("203.0.113.10", 873)
    };
    assert!(judge(&rates, &backup).rate().is_unlimited());

    let tests = find("the test suite's own targets");
    let local = Request {
        client: ip("127.0.0.1"),
        ..to("127.0.0.1", 8080)
    };
    assert!(judge(&tests, &local).is_allow());
    assert!(!judge(&tests, &to("127.0.0.1", 8080)).is_allow());
    assert!(!judge(&tests, &to("169.254.169.254", 80)).is_allow());
}

#[test]
fn the_documented_default_is_the_printed_one() {
    let printed = Rules::print_default(
        &["0.0.0.0:1080".parse().unwrap()],
        &[ip("192.0.2.10"), ip("2001:db8::10")],
    );
    let rules_part = &printed[printed.find("\ndeny").expect("a deny") + 1..];
    assert!(
        doc_blocks().iter().any(|b| b == rules_part),
        "docs/rules.md does not show:\n{rules_part}"
    );
}
