//! Keeps a flood of failed handshakes from filling the disk with access-log
//! lines.
//!
//! A line for a connection that ended before its request was answered (a
//! failed authentication, a bad version, no acceptable method, a client that
//! left or timed out) is something anyone can cause. Each source (an IPv4
//! address or an IPv6 /64) may have [`LINES_PER_SOURCE`] such lines written
//! per [`WINDOW`]; the rest are counted, and when the window ends one summary
//! line says how many were left out. Lines of answered requests are always
//! written. At most [`MAX_SOURCES`] windows are kept; past that, further
//! sources share one window, summarised as `client=*`.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use super::access::{AccessRecord, Result as AccessResult, write_rfc3339};
use crate::users::penalty::Source;

/// Failed-handshake lines one source may have written per window.
pub const LINES_PER_SOURCE: u32 = 10;
/// The window over which they are counted.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The most sources with a window open at once.
pub const MAX_SOURCES: usize = 4096;

#[derive(Debug)]
struct Window {
    start: Instant,
    written: u32,
    left_out: u64,
}

/// Lines of one kind per source and per [`WINDOW`]: the first `per_window`
/// are written, the rest counted. At most [`MAX_SOURCES`] windows are kept;
/// past that, further sources share one (`None`). Used for the access log's
/// failed handshakes here and for the audit trail's refused log ins.
#[derive(Debug)]
pub struct Windows {
    per_window: u32,
    windows: HashMap<Option<Source>, Window>,
}

/// What [`Windows::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admit {
    /// Whether to write the line.
    pub write: bool,
    /// The source's window that had ended, with the lines it left out: its
    /// summary goes first.
    pub ended: Option<(Option<Source>, u64)>,
}

impl Windows {
    /// Windows that let `per_window` lines through per source.
    pub fn new(per_window: u32) -> Self {
        Windows {
            per_window,
            windows: HashMap::new(),
        }
    }

    /// Whether a line from `source` is written at `now`; counts it if not.
    pub fn admit(&mut self, source: Source, now: Instant) -> Admit {
        let key = if self.windows.contains_key(&Some(source)) || self.windows.len() < MAX_SOURCES {
            Some(source)
        } else {
            None
        };
        let fresh = Window {
            start: now,
            written: 0,
            left_out: 0,
        };
        let w = self.windows.entry(key).or_insert(fresh);
        let mut ended = None;
        if now >= w.start + WINDOW {
            if w.left_out > 0 {
                ended = Some((key, w.left_out));
            }
            *w = Window {
                start: now,
                written: 0,
                left_out: 0,
            };
        }
        let write = w.written < self.per_window;
        if write {
            w.written += 1;
        } else {
            w.left_out += 1;
        }
        Admit { write, ended }
    }

    /// Ends the windows that are over at `now`: the sources that left lines
    /// out, and how many.
    pub fn expire(&mut self, now: Instant) -> Vec<(Option<Source>, u64)> {
        let mut out = Vec::new();
        self.windows.retain(|source, w| {
            if now < w.start + WINDOW {
                return true;
            }
            if w.left_out > 0 {
                out.push((*source, w.left_out));
            }
            false
        });
        out
    }

    /// Ends every window: the sources that left lines out, and how many.
    pub fn flush(&mut self) -> Vec<(Option<Source>, u64)> {
        let out = self
            .windows
            .iter()
            .filter(|(_, w)| w.left_out > 0)
            .map(|(source, w)| (*source, w.left_out))
            .collect();
        self.windows.clear();
        out
    }

    /// When the next window ends.
    pub fn next_end(&self) -> Option<Instant> {
        self.windows.values().map(|w| w.start + WINDOW).min()
    }

    /// How many windows are kept.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no window is kept.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

/// The windows of every source with recent failed handshakes.
#[derive(Debug)]
pub struct Quiet {
    windows: Windows,
}

impl Default for Quiet {
    fn default() -> Self {
        Quiet {
            windows: Windows::new(LINES_PER_SOURCE),
        }
    }
}

/// One summary line: how many lines a source had left out in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// When the summary is written.
    pub at: SystemTime,
    /// The source (`None`: sources beyond the table's size).
    pub source: Option<Source>,
    /// Lines left out.
    pub left_out: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_rfc3339(f, self.at)?;
        match &self.source {
            Some(s) => write!(f, " client={s}")?,
            None => f.write_str(" client=*")?,
        }
        write!(
            f,
            " left_out={} window_s={} reason=failed-handshakes",
            self.left_out,
            WINDOW.as_secs()
        )
    }
}

impl Quiet {
    /// Whether `rec` is to be written (it is counted when not), and the
    /// summary of its source's ended window, which goes first.
    pub fn admit(
        &mut self,
        rec: &AccessRecord,
        now: Instant,
        wall: SystemTime,
    ) -> (bool, Option<Summary>) {
        if matches!(rec.result, AccessResult::Reply(_)) {
            return (true, None);
        }
        let a = self.windows.admit(Source::of(rec.client.ip()), now);
        let summary = a.ended.map(|(source, left_out)| Summary {
            at: wall,
            source,
            left_out,
        });
        (a.write, summary)
    }

    /// Ends the windows that are over at `now`, returning the summaries of
    /// those that left lines out.
    pub fn expire(&mut self, now: Instant, wall: SystemTime) -> Vec<Summary> {
        summaries(self.windows.expire(now), wall)
    }

    /// Every window's summary now, for a last write before stopping.
    pub fn flush(&mut self, wall: SystemTime) -> Vec<Summary> {
        summaries(self.windows.flush(), wall)
    }

    /// When the next window ends.
    pub fn next_end(&self) -> Option<Instant> {
        self.windows.next_end()
    }
}

fn summaries(ended: Vec<(Option<Source>, u64)>, at: SystemTime) -> Vec<Summary> {
    ended
        .into_iter()
        .map(|(source, left_out)| Summary {
            at,
            source,
            left_out,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socks5::wire::Reply;

    fn rec(client: &str, result: AccessResult) -> AccessRecord {
        AccessRecord {
            start: SystemTime::UNIX_EPOCH,
            client: client.parse().unwrap(),
            via: None,
            user: None,
            command: None,
            target: None,
            connected: None,
            result,
            bytes_up: 0,
            bytes_down: 0,
            datagrams: None,
            rule: None,
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn a_flood_from_one_source_is_summarised() {
        let mut q = Quiet::default();
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let flood = rec("192.0.2.1:1000", AccessResult::AuthFailed);
        let written = (0..1000).filter(|_| q.admit(&flood, t0, wall).0).count();
        assert_eq!(written, LINES_PER_SOURCE as usize);
        // Other sources and answered requests are not held back by it.
        assert!(
            q.admit(&rec("192.0.2.2:1000", AccessResult::BadVersion), t0, wall)
                .0
        );
        for _ in 0..100 {
            let ok = rec("192.0.2.1:1000", AccessResult::Reply(Reply::Succeeded));
            assert!(q.admit(&ok, t0, wall).0);
        }
        assert_eq!(q.next_end(), Some(t0 + WINDOW));
        assert!(
            q.expire(t0 + WINDOW - Duration::from_millis(1), wall)
                .is_empty()
        );
        let sums = q.expire(t0 + WINDOW, wall);
        assert_eq!(sums.len(), 1, "{sums:?}");
        assert_eq!(sums[0].left_out, 1000 - u64::from(LINES_PER_SOURCE));
        assert_eq!(
            sums[0].to_string(),
            "2026-11-18T11:06:40.000Z client=192.0.2.1 left_out=990 window_s=60 \
             reason=failed-handshakes"
        );
        // A new window writes again, and a window that ended unexpired
        // hands its summary to the next line.
        assert_eq!(q.admit(&flood, t0 + WINDOW, wall), (true, None));
        for _ in 0..15 {
            q.admit(&flood, t0 + WINDOW, wall);
        }
        let (write, summary) = q.admit(&flood, t0 + 2 * WINDOW, wall);
        assert!(write);
        assert_eq!(summary.map(|s| s.left_out), Some(6));
        assert_eq!(q.flush(wall), []);
        assert_eq!(q.next_end(), None);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut q = Quiet::default();
        let t0 = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 100) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            for _ in 0..=LINES_PER_SOURCE {
                q.admit(
                    &rec(&format!("{ip}:1"), AccessResult::Incomplete),
                    t0,
                    SystemTime::UNIX_EPOCH,
                );
            }
        }
        assert_eq!(q.windows.len(), MAX_SOURCES + 1);
        let sums = q.flush(SystemTime::UNIX_EPOCH);
        let shared = sums.iter().find(|s| s.source.is_none()).unwrap();
        assert!(shared.left_out > 0);
        assert!(shared.to_string().contains(" client=* "));
    }
}
