//! A small command-line reader: `--name value` and `--name=value`, flags,
//! and an error for anything left unread.

use std::fmt::Display;
use std::str::FromStr;

/// The arguments after the subcommand, consumed as they are read.
#[derive(Debug)]
pub struct Args {
    rest: Vec<String>,
}

impl Args {
    /// Wraps the arguments.
    pub fn new(args: impl IntoIterator<Item = String>) -> Args {
        let mut rest = Vec::new();
        for a in args {
            // "--name=value" becomes "--name" "value".
            match a.split_once('=') {
                Some((n, v)) if n.starts_with("--") => {
                    rest.push(n.to_owned());
                    rest.push(v.to_owned());
                }
                _ => rest.push(a),
            }
        }
        Args { rest }
    }

    /// Whether `--name` was given (removing it).
    pub fn flag(&mut self, name: &str) -> bool {
        match self.rest.iter().position(|a| a == name) {
            Some(i) => {
                self.rest.remove(i);
                true
            }
            None => false,
        }
    }

    /// The value after `--name`, if given (removing both).
    pub fn value(&mut self, name: &str) -> Result<Option<String>, String> {
        let Some(i) = self.rest.iter().position(|a| a == name) else {
            return Ok(None);
        };
        if i + 1 >= self.rest.len() {
            return Err(format!("{name}: missing value"));
        }
        let v = self.rest.remove(i + 1);
        self.rest.remove(i);
        Ok(Some(v))
    }

    /// The value after `--name` parsed, or `default`.
    pub fn get<T>(&mut self, name: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.value(name)? {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("{name}: '{v}': {e}")),
        }
    }

    /// A size such as `2G`, `256MiB`, `4096` (bytes; K, M, G are powers of 1024).
    pub fn size(&mut self, name: &str, default: u64) -> Result<u64, String> {
        match self.value(name)? {
            None => Ok(default),
            Some(v) => parse_size(&v).ok_or_else(|| format!("{name}: '{v}' is not a size")),
        }
    }

    /// Fails on any argument nobody asked for.
    pub fn finish(self) -> Result<(), String> {
        match self.rest.first() {
            None => Ok(()),
            Some(a) => Err(format!("unexpected argument '{a}'")),
        }
    }
}

/// Parses `2G`, `2GiB`, `256M`, `64k`, `1000` into bytes.
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..digits].parse().ok()?;
    let shift = match v[digits..].to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        Args::new(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn values_flags_and_leftovers() {
        let mut a = args(&["--tunnels", "8", "--quick", "--bytes=2G", "--peer", "x"]);
        assert_eq!(a.get("--tunnels", 1u32).unwrap(), 8);
        assert_eq!(a.get("--rounds", 3u32).unwrap(), 3);
        assert!(a.flag("--quick"));
        assert!(!a.flag("--quick"));
        assert_eq!(a.size("--bytes", 0).unwrap(), 2 << 30);
        assert!(a.get::<u32>("--peer", 0).is_err());
        assert!(a.finish().is_ok());
        assert!(args(&["--x"]).value("--x").is_err());
        assert!(args(&["stray"]).finish().is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Some(256 << 20));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("1.5G"), None);
        assert_eq!(parse_size("G"), None);
    }
}
