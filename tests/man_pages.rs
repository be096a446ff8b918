//! The man pages in man/: clean under `mandoc -T lint`, and listing exactly
//! the options `--help` prints, no more, no fewer.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every page in man/.
const PAGES: &[&str] = &["socks5d.8", "socks5dctl.8"];

fn man(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(name)
}

/// Every `--long-option` in `text`, as written in the usage text.
fn long_options(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("--") {
        let start = i + at;
        let before = start.checked_sub(1).map(|j| bytes[j]);
        let mut end = start + 2;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'-') {
            end += 1;
        }
        // "--x" after a letter or another '-' is no option (e.g. "a--b").
        if end > start + 2 && !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-') {
            out.insert(text[start..end].trim_end_matches('-').to_owned());
        }
        i = end;
    }
    out
}

/// The long options the page documents: the first line of each `.TP`
/// entry (OPTIONS, and COMMANDS for a command's own options), with roff's
/// `\-` read as '-'.
fn documented(page: &str) -> BTreeSet<String> {
    let mut text = page.replace("\\-", "-");
    for font in ["\\fB", "\\fI", "\\fR", "\\fP"] {
        text = text.replace(font, " ");
    }
    let mut out = BTreeSet::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim() == ".TP"
            && let Some(entry) = lines.next()
        {
            out.extend(long_options(entry));
        }
    }
    out
}

fn help(bin: &str) -> String {
    let out = Command::new(bin)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    assert!(out.status.success(), "{bin} --help: {:?}", out.status);
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

fn check_page(page: &str, bin: &str) {
    let text = std::fs::read_to_string(man(page)).expect("read the man page");
    let in_help = long_options(&help(bin));
    let in_page = documented(&text);
    let missing: Vec<_> = in_help.difference(&in_page).collect();
    let extra: Vec<_> = in_page.difference(&in_help).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{page}: options in --help but not in the page: {missing:?}; \
         in the page but not in --help: {extra:?}"
    );
    assert!(
        in_help.len() >= 3,
        "the usage text was not read: {in_help:?}"
    );
}

#[test]
fn socks5d_page_lists_exactly_the_options_of_help() {
    check_page("socks5d.8", env!("CARGO_BIN_EXE_socks5d"));
}

#[test]
fn socks5dctl_page_lists_exactly_the_options_of_help() {
    check_page("socks5dctl.8", env!("CARGO_BIN_EXE_socks5dctl"));
}

#[test]
fn pages_are_clean_under_mandoc_lint() {
    for page in PAGES {
        let out = Command::new("mandoc")
            .args(["-T", "lint", "-W", "warning"])
            .arg(man(page))
            .output()
            .expect("run mandoc (apt-get install mandoc; make test installs it)");
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{page}:\n{said}"
        );
    }
}

#[test]
fn the_reader_finds_options() {
    let got = long_options("  -l, --listen ADDR  x --json, a--b --\n--password-stdin");
    let want: BTreeSet<String> = ["--listen", "--json", "--password-stdin"]
        .map(String::from)
        .into();
    assert_eq!(got, want);
    let page = ".SH OPTIONS\n.TP\n.BR \\-l \", \" \\-\\-listen \" ADDR\"\nText --not\n.SH FILES\n";
    assert_eq!(documented(page), ["--listen".to_owned()].into());
}

/// contrib/socks5d.conf shows every option of `socks5d --help` (but the
/// ones that make no sense in a file), and sets only loopback and the users
/// file.
#[test]
fn the_example_config_shows_every_option() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/socks5d.conf"))
            .expect("read contrib/socks5d.conf");
    let shown: BTreeSet<String> = text
        .lines()
        .map(|l| l.strip_prefix('#').unwrap_or(l))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') && w.len() > 1)
        .map(|w| format!("--{w}"))
        .collect();
    let mut want = long_options(&help(env!("CARGO_BIN_EXE_socks5d")));
    for not_in_a_file in ["--help", "--version", "--config", "--print-default-rules"] {
        want.remove(not_in_a_file);
    }
    let missing: Vec<_> = want.difference(&shown).collect();
    assert!(
        missing.is_empty(),
        "not in contrib/socks5d.conf: {missing:?}"
    );
    // What the packaged service starts with: loopback, the management Unix
    // socket in the service's runtime folder, and a users file.
    let active: Vec<(String, Option<String>)> = socks5d::config_file::parse(&text)
        .expect("parses")
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    let want = [
        ("listen", Some("127.0.0.1")),
        ("listen", Some("::1")),
        ("mgmt-unix", Some("/run/socks5d/mgmt.sock")),
        ("users-file", Some("/var/lib/socks5d/users")),
    ]
    .map(|(n, v)| (n.to_owned(), v.map(str::to_owned)));
    assert_eq!(active, want);
}
