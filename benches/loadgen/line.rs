//! The machine-readable result line: `loadgen key=value key=value ...`.
//!
//! One line per run, on standard output, fields in the order they were put.
//! Values never hold spaces or `=`; numbers are plain decimals, so `grep`,
//! `awk` and [`Line::parse`] read them alike.

use std::fmt;

/// The first word of every result line.
pub const TAG: &str = "loadgen";

/// One run's result, as ordered `key=value` fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Line {
    fields: Vec<(String, String)>,
}

fn clean(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_whitespace() || c == '=' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

impl Line {
    /// An empty line.
    pub fn new() -> Line {
        Line::default()
    }

    /// Sets `key` (replacing an earlier value) to `value`, spaces and `=`
    /// turned into `_`.
    pub fn put(&mut self, key: &str, value: impl fmt::Display) -> &mut Line {
        let v = clean(&value.to_string());
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(f) => f.1 = v,
            None => self.fields.push((key.to_owned(), v)),
        }
        self
    }

    /// Sets `key` to `value` with `decimals` digits after the point.
    pub fn num(&mut self, key: &str, value: f64, decimals: usize) -> &mut Line {
        self.put(key, format!("{value:.decimals$}"))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` as a finite number.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.get(key)?.parse::<f64>().ok().filter(|v| v.is_finite())
    }

    /// Every field, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Parses a line written by `Display`; `None` for any other line.
    pub fn parse(text: &str) -> Option<Line> {
        let mut words = text.split_whitespace();
        if words.next()? != TAG {
            return None;
        }
        let mut line = Line::new();
        for w in words {
            let (k, v) = w.split_once('=')?;
            line.fields.push((k.to_owned(), v.to_owned()));
        }
        Some(line)
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(TAG)?;
        for (k, v) in &self.fields {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut l = Line::new();
        l.put("scenario", "throughput")
            .put("peer", "dante no auth")
            .num("gib_s", 2.345678, 3)
            .put("tunnels", 8);
        let text = l.to_string();
        assert_eq!(
            text,
            "loadgen scenario=throughput peer=dante_no_auth gib_s=2.346 tunnels=8"
        );
        let back = Line::parse(&text).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.number("gib_s"), Some(2.346));
        assert_eq!(back.get("peer"), Some("dante_no_auth"));
        assert_eq!(back.get("missing"), None);
    }

    #[test]
    fn put_replaces_and_numbers_must_be_finite() {
        let mut l = Line::new();
        l.put("ok", 0).put("ok", 1).put("x", "NaN").put("y", "a=b");
        assert_eq!(l.to_string(), "loadgen ok=1 x=NaN y=a_b");
        assert_eq!(l.number("x"), None);
    }

    #[test]
    fn other_lines_are_not_results() {
        assert_eq!(Line::parse("warning: something"), None);
        assert_eq!(Line::parse("loadgen novalue"), None);
        assert_eq!(Line::parse(""), None);
        assert_eq!(Line::parse("loadgen").unwrap(), Line::new());
    }
}
