//! The Prometheus text exposition format, version 0.0.4: `# HELP` and
//! `# TYPE` lines, then one line per sample, `name{label="value",...} value`.
//!
//! Label values are escaped as the format says (a backslash, a double quote
//! and a line feed become `\\`, `\"` and `\n`); help texts escape the
//! backslash and the line feed. Floats are written as Go's `strconv` reads
//! them: `+Inf`, `-Inf`, `NaN`, or Rust's shortest decimal that reads back
//! to the same value.

use std::fmt::Write as _;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a metric family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (a reset is a restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// `_bucket`, `_sum` and `_count` series.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes an exposition into a byte buffer.
#[derive(Debug, Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// An empty exposition.
    pub fn new() -> Self {
        Text::default()
    }

    /// The text written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.out.into_bytes()
    }

    /// The text written so far, as text.
    pub fn as_str(&self) -> &str {
        &self.out
    }

    /// Starts a metric family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(valid_name(name), "metric name {name:?}");
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.name());
        self.out.push('\n');
    }

    /// One sample of an integer value.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.series(name, labels);
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "{value}");
    }

    /// One sample of a float value.
    pub fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.series(name, labels);
        push_f64(&mut self.out, value);
        self.out.push('\n');
    }

    /// A family of one unlabelled integer sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The name and labels of a sample, and the space before its value.
    fn series(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                debug_assert!(valid_label_name(k), "label name {k:?}");
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label_value(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
    }
}

/// Appends `v` escaped as a label value.
pub fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `v` as the format writes a float.
pub fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{v}");
    }
}

/// Whether `name` is a metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(name: &str) -> bool {
    let mut b = name.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// Whether `name` is a label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn valid_label_name(name: &str) -> bool {
    let mut b = name.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples() {
        let mut t = Text::new();
        t.family(
            "x_total",
            Kind::Counter,
            "Things, counted.\nTwo lines \\ one.",
        );
        t.sample("x_total", &[], 7);
        t.sample("x_total", &[("a", "b"), ("c", "d")], u64::MAX);
        t.single("y", Kind::Gauge, "Y.", 0);
        assert_eq!(
            t.as_str(),
            "# HELP x_total Things, counted.\\nTwo lines \\\\ one.\n\
             # TYPE x_total counter\n\
             x_total 7\n\
             x_total{a=\"b\",c=\"d\"} 18446744073709551615\n\
             # HELP y Y.\n# TYPE y gauge\ny 0\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut t = Text::new();
        t.sample("m", &[("user", "a\\b\"c\nd é")], 1);
        assert_eq!(t.as_str(), "m{user=\"a\\\\b\\\"c\\nd é\"} 1\n");
    }

    #[test]
    fn floats_as_go_reads_them() {
        let f = |v: f64| {
            let mut s = String::new();
            push_f64(&mut s, v);
            s
        };
        assert_eq!(f(0.005), "0.005");
        assert_eq!(f(1.0), "1");
        assert_eq!(f(2.5), "2.5");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(1e-7), "0.0000001");
        assert_eq!(f(1e-7).parse::<f64>().unwrap(), 1e-7);
    }

    #[test]
    fn names() {
        for good in ["a", "socks5d_bytes_total", "_x:y", "A9"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "9a", "a-b", "a b", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_label_name("le"));
        assert!(!valid_label_name("a:b"));
    }
}
