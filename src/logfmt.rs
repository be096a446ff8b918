//! How log lines write their values, one escaping for all of them: the
//! access log, the audit trail and the diagnostics on standard error.
//!
//! A diagnostic line is a fixed message, then a colon and its variable
//! parts as `key=value` fields (README.md, "Log lines"):
//!
//! ```text
//! socks5 listening: addr=127.0.0.1:1080
//! users file reloaded: path=/var/lib/socks5d/users users=3
//! rules not reloaded: error="rules.conf:7: 'port 70000' is not a port"
//! ```
//!
//! A value is one token ([`LogSafe`], [`write_log_safe`]) or, when it is
//! free text such as an error message, quoted ([`Quoted`]). Both are
//! printable ASCII with anything else written as `\u{..}`: a quoted value
//! starts with a double quote and ends at the next one (none is inside), any
//! other value ends at the next space, so neither can end its field early
//! nor fake a line.

use std::fmt::{self, Write as _};

/// Writes `s` so that it stays one token of a log line and cannot fake one:
/// anything but printable ASCII (whitespace, control and invisible format
/// characters such as bidi overrides included) is written as `\u{..}`, and
/// so is a double quote, which would start a quoted value; a backslash is
/// written as `\\`.
pub fn write_log_safe(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    escape(f, s, false)
}

/// [`write_log_safe`]'s escaping; in a quoted value a space stays a space.
fn escape(f: &mut fmt::Formatter<'_>, s: &str, quoted: bool) -> fmt::Result {
    for c in s.chars() {
        if c == '\\' {
            f.write_str("\\\\")?;
        } else if quoted && c == ' ' {
            f.write_char(' ')?;
        } else if c.is_ascii_graphic() && c != '"' {
            f.write_char(c)?;
        } else {
            write!(f, "{}", c.escape_unicode())?;
        }
    }
    Ok(())
}

/// Anything displayable, shown as one token with [`write_log_safe`]: names,
/// paths, addresses.
#[derive(Debug, Clone, Copy)]
pub struct LogSafe<T>(pub T);

impl<T: fmt::Display> fmt::Display for LogSafe<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Escaper { f, quoted: false }, "{}", self.0)
    }
}

/// Anything displayable, shown as a quoted value: free text such as an
/// error message, in double quotes, spaces kept, escaped otherwise as
/// [`write_log_safe`] does (so a double quote inside is `\u{22}`).
#[derive(Debug, Clone, Copy)]
pub struct Quoted<T>(pub T);

impl<T: fmt::Display> fmt::Display for Quoted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        write!(Escaper { f, quoted: true }, "{}", self.0)?;
        f.write_char('"')
    }
}

/// Escapes what is written through it on its way to `f`.
struct Escaper<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
    quoted: bool,
}

impl fmt::Write for Escaper<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape(self.f, s, self.quoted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_safe_values_are_what_write_log_safe_writes() {
        assert_eq!(
            LogSafe("/var/lib/socks5d/users").to_string(),
            "/var/lib/socks5d/users"
        );
        assert_eq!(LogSafe("a b\"c\\").to_string(), "a\\u{20}b\\u{22}c\\\\");
        let path = std::path::Path::new("/tmp/a b");
        assert_eq!(LogSafe(path.display()).to_string(), "/tmp/a\\u{20}b");
    }

    #[test]
    fn quoted_values_keep_spaces_and_escape_quotes_and_lines() {
        assert_eq!(
            Quoted("rules.conf:7: 'port 70000' is not a port").to_string(),
            "\"rules.conf:7: 'port 70000' is not a port\""
        );
        assert_eq!(
            Quoted("say \"hi\"\nevil=1 \\").to_string(),
            "\"say \\u{22}hi\\u{22}\\u{a}evil=1 \\\\\""
        );
        assert_eq!(Quoted("\t\u{202e}").to_string(), "\"\\u{9}\\u{202e}\"");
        assert_eq!(Quoted("").to_string(), "\"\"");
    }

    #[test]
    fn a_quoted_value_is_printable_ascii_with_no_quote_inside() {
        let all: String = (0..=0x3100u32).filter_map(char::from_u32).collect();
        let shown = Quoted(&all).to_string();
        let inner = &shown[1..shown.len() - 1];
        assert!(inner.chars().all(|c| c == ' ' || c.is_ascii_graphic()));
        assert!(!inner.contains('"'), "{inner}");
    }
}
