//! The config file (`--config PATH`): every long option of the command
//! line, one per line, without its dashes.
//!
//! ```text
//! # socks5d.conf
//! listen 127.0.0.1
//! port 1080
//! users-file /var/lib/socks5d/users
//! auth-penalty-exempt 192.0.2.0/24
//! no-pin
//! ```
//!
//! A line is an option name and, for options that take one, its value: the
//! rest of the line, spaces included (`name = value` is read the same way).
//! `#` starts a comment line; blank lines are ignored. The command line wins:
//! an option given there replaces every line of the file for that option,
//! so `-l 127.0.0.1` replaces all `listen` lines. Reading the file is the
//! only I/O here; turning lines into arguments is pure and tested.

use std::fmt;
use std::path::{Path, PathBuf};

/// One option line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The option's long name, without dashes.
    pub name: String,
    /// Its value, when the line has one.
    pub value: Option<String>,
    /// The line number (from 1).
    pub line: usize,
}

/// Where an argument came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The command line.
    CommandLine,
    /// A line of the config file.
    File(PathBuf, usize),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::CommandLine => f.write_str("command line"),
            Origin::File(p, n) => write!(f, "{}:{n}", p.display()),
        }
    }
}

/// The option lines of `text`; an error names the line.
pub fn parse(text: &str) -> Result<Vec<Entry>, (usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(line.len());
        let (name, rest) = line.split_at(end);
        if name.starts_with('-') {
            return Err((i + 1, format!("'{name}': write the option without dashes")));
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
            return Err((
                i + 1,
                format!("'{}' is not an option name", name.escape_default()),
            ));
        }
        let rest = rest.trim_start();
        let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
        out.push(Entry {
            name: name.to_owned(),
            value: (!rest.is_empty()).then(|| rest.to_owned()),
            line: i + 1,
        });
    }
    Ok(out)
}

/// The long name of a command-line option (`-l` is `listen`), or `None`
/// for what is not an option.
pub fn long_name(arg: &str) -> Option<&str> {
    let name = match arg {
        "-h" => "help",
        "-v" => "version",
        "-l" => "listen",
        "-p" => "port",
        "-L" => "mgmt-listen",
        "-P" => "mgmt-port",
        "-u" => "user",
        a => {
            let a = a.strip_prefix("--")?;
            a.split_once('=').map_or(a, |(n, _)| n)
        }
    };
    Some(name)
}

/// The arguments to parse: the file's entries, less those of options the
/// command line gives, then the command line's own. `takes_value` says
/// which command-line options consume the next argument.
pub fn merge(
    path: &Path,
    entries: Vec<Entry>,
    cli: Vec<String>,
    takes_value: impl Fn(&str) -> bool,
) -> Vec<(String, Origin)> {
    let mut given = Vec::new();
    let mut skip_value = false;
    for a in &cli {
        if skip_value {
            skip_value = false;
            continue;
        }
        if let Some(n) = long_name(a) {
            given.push(n.to_owned());
            skip_value = !a.contains('=') && takes_value(a);
        }
    }
    let mut out = Vec::new();
    for e in entries {
        if given.contains(&e.name) {
            continue;
        }
        let origin = Origin::File(path.to_owned(), e.line);
        out.push((format!("--{}", e.name), origin.clone()));
        if let Some(v) = e.value {
            out.push((v, origin));
        }
    }
    out.extend(cli.into_iter().map(|a| (a, Origin::CommandLine)));
    out
}

/// The options whose lines differ between `old` and `new` (added, removed
/// or changed), in name order.
pub fn changed(old: &[Entry], new: &[Entry]) -> Vec<String> {
    let values = |es: &[Entry], name: &str| -> Vec<Option<String>> {
        es.iter()
            .filter(|e| e.name == name)
            .map(|e| e.value.clone())
            .collect()
    };
    let mut names: Vec<&str> = old.iter().chain(new).map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter(|n| values(old, n) != values(new, n))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let text = "# comment\n\nlisten 127.0.0.1\nport=1081\n  no-pin  \nmap-host a.test = 192.0.2.1\nusers-file /srv/my users\n";
        let got = parse(text).unwrap();
        let short: Vec<(&str, Option<&str>, usize)> = got
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_deref(), e.line))
            .collect();
        assert_eq!(
            short,
            [
                ("listen", Some("127.0.0.1"), 3),
                ("port", Some("1081"), 4),
                ("no-pin", None, 5),
                ("map-host", Some("a.test = 192.0.2.1"), 6),
                ("users-file", Some("/srv/my users"), 7),
            ]
        );
        assert_eq!(parse("port 1\n--listen x\n").unwrap_err().0, 2);
        assert_eq!(parse("Port 1\n").unwrap_err().0, 1);
    }

    #[test]
    fn the_command_line_replaces_an_option_of_the_file() {
        let entries = parse("listen 127.0.0.1\nlisten ::1\nport 1081\nno-pin\n").unwrap();
        let cli = vec![
            "-l".to_owned(),
            "127.0.0.2".to_owned(),
            "--port=9".to_owned(),
        ];
        let args = merge(Path::new("f.conf"), entries, cli, |a| {
            matches!(a, "-l" | "--port")
        });
        let texts: Vec<&str> = args.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(texts, ["--no-pin", "-l", "127.0.0.2", "--port=9"]);
        assert_eq!(args[0].1, Origin::File("f.conf".into(), 4));
        assert_eq!(args[0].1.to_string(), "f.conf:4");
        assert_eq!(args[1].1, Origin::CommandLine);
    }

    #[test]
    fn changes_between_two_readings() {
        let old = parse("port 1\nlisten a\nlisten b\nno-pin\n").unwrap();
        let new = parse("listen a\nport 1\nlisten c\nworkers 2\n").unwrap();
        assert_eq!(changed(&old, &new), ["listen", "no-pin", "workers"]);
        assert!(changed(&old, &old).is_empty());
    }

    #[test]
    fn long_names() {
        assert_eq!(long_name("-l"), Some("listen"));
        assert_eq!(long_name("--port=1"), Some("port"));
        assert_eq!(long_name("--no-pin"), Some("no-pin"));
        assert_eq!(long_name("127.0.0.1"), None);
    }
}
