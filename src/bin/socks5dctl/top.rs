//! `socks5dctl top`: a live view of a running socks5d, computed from
//! successive METRICS and USER_METRICS answers on one management session.
//!
//! Each interval the session asks METRICS and every USER_METRICS page; the
//! rates are the differences between two samples divided by the time really
//! elapsed between them. `--once` prints one frame (two samples an interval
//! apart) as plain text. Otherwise the terminal is put into raw mode and its
//! alternate screen, redrawn every interval and on SIGWINCH, and given back
//! as it was on `q`, Ctrl-C, SIGINT, SIGTERM, SIGHUP or an error ([`Screen`]
//! restores it when dropped).

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use socks5d::mgmt::wire::{Request, Response, UserMetrics, metric, user_metric};
use socks5d::sys::signal::SignalReader;
use socks5d::sys::term::{RawMode, window_size};

use super::{Client, Failure, pages};

/// The options of `top`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Time between two samples.
    pub interval: Duration,
    /// One frame on standard output, no terminal control.
    pub once: bool,
    /// How many users the table shows at most.
    pub users: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            interval: Duration::from_secs(1),
            once: false,
            users: 10,
        }
    }
}

/// The shortest interval `--interval` takes, in seconds.
const MIN_INTERVAL: f64 = 0.1;
/// The longest, in seconds: well inside the server's 5-minute idle close.
const MAX_INTERVAL: f64 = 60.0;
/// The most users `--users` asks for.
const MAX_USERS: usize = 100_000;

/// `--interval S`: seconds, a decimal number from 0.1 to 60.
pub fn parse_interval(v: &str) -> Result<Duration, String> {
    match v.parse::<f64>() {
        Ok(s) if (MIN_INTERVAL..=MAX_INTERVAL).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "'{}' is not a number of seconds from {MIN_INTERVAL} to {MAX_INTERVAL}",
            v.escape_default()
        )),
    }
}

/// `--users N`: 0 (no table) to 100000.
pub fn parse_users(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n <= MAX_USERS => Ok(n),
        _ => Err(format!(
            "'{}' is not a number of users from 0 to {MAX_USERS}",
            v.escape_default()
        )),
    }
}

/// Checks, before any password is asked, that the interactive view has a
/// terminal to draw on and read keys from.
pub fn check_terminal(opts: &Options) -> Result<(), Failure> {
    if opts.once || (io::stdin().is_terminal() && io::stdout().is_terminal()) {
        return Ok(());
    }
    Err(Failure::Usage(
        "top: standard input and output must be a terminal; --once prints one frame".into(),
    ))
}

/// Runs `top` on a session that has logged in.
pub fn run(client: &Client, opts: &Options) -> Result<(), Failure> {
    if opts.once {
        once(client, opts)
    } else {
        interactive(client, opts)
    }
}

/// Two samples an interval apart, one frame on standard output.
fn once(client: &Client, opts: &Options) -> Result<(), Failure> {
    let first = sample(client)?;
    thread::sleep((first.at + opts.interval).saturating_duration_since(Instant::now()));
    let second = sample(client)?;
    let mut text = frame(Some(&first), &second, opts, None).join("\n");
    text.push('\n');
    io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| Failure::Terminal(format!("write: {e}")))
}

// ------------------------------------------------------------------ samples

/// One reading of the server: its METRICS, every user's counters, and when
/// the METRICS answer came.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    metrics: BTreeMap<u8, u64>,
    users: Vec<UserMetrics>,
}

/// METRICS, then every page of USER_METRICS.
fn sample(client: &Client) -> Result<Sample, Failure> {
    let Response::Metrics(values) = client.request(&Request::Metrics)? else {
        return Err(Failure::Protocol("unexpected response".into()));
    };
    let at = Instant::now();
    let users = pages(
        |offset| match client.request(&Request::UserMetrics { offset })? {
            Response::UserMetrics { total, users } => Ok((total, users)),
            _ => Err(Failure::Protocol("unexpected response".into())),
        },
    )?;
    Ok(Sample {
        at,
        metrics: values.into_iter().collect(),
        users,
    })
}

/// A counter's total now and, given an earlier sample, its rate per second.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Counter {
    total: u64,
    rate: Option<f64>,
}

/// The rate per second from `prev` to `now` over `secs` seconds; a counter
/// that went down (a restarted server, a user deleted and added again)
/// counts as unchanged.
fn rate(prev: u64, now: u64, secs: f64) -> Option<f64> {
    (secs > 0.0).then(|| now.saturating_sub(prev) as f64 / secs)
}

/// Seconds from `prev` to `cur`; `None` without an earlier sample.
fn elapsed(prev: Option<&Sample>, cur: &Sample) -> Option<f64> {
    prev.map(|p| cur.at.saturating_duration_since(p.at).as_secs_f64())
}

/// METRICS ID `id` as a [`Counter`]; `None` when the server did not send it.
fn counter(prev: Option<&Sample>, cur: &Sample, id: u8) -> Option<Counter> {
    let total = *cur.metrics.get(&id)?;
    let secs = elapsed(prev, cur);
    let before = prev.and_then(|p| p.metrics.get(&id));
    Some(Counter {
        total,
        rate: before.zip(secs).and_then(|(b, s)| rate(*b, total, s)),
    })
}

/// One line of the users' table.
#[derive(Debug, Clone, PartialEq)]
struct UserRow {
    name: String,
    open: u64,
    sessions: Counter,
    up: Counter,
    down: Counter,
    auth_failed: u64,
    denied: u64,
}

impl UserRow {
    /// Bytes per second both ways; 0 without a rate.
    fn throughput(&self) -> f64 {
        self.up.rate.unwrap_or(0.0) + self.down.rate.unwrap_or(0.0)
    }

    /// Bytes relayed both ways since start.
    fn total_bytes(&self) -> u64 {
        self.up.total.saturating_add(self.down.total)
    }
}

/// Every user of `cur` as a row (an ID the server does not send is 0),
/// busiest first: by bytes per second, then by bytes in all, then by name.
fn user_rows(prev: Option<&Sample>, cur: &Sample) -> Vec<UserRow> {
    let secs = elapsed(prev, cur);
    let before: BTreeMap<&[u8], &UserMetrics> = prev
        .map(|p| p.users.iter().map(|u| (&u.name[..], u)).collect())
        .unwrap_or_default();
    let value = |u: &UserMetrics, id: u8| {
        u.values
            .iter()
            .find(|(i, _)| *i == id)
            .map_or(0, |(_, v)| *v)
    };
    let mut rows: Vec<UserRow> = cur
        .users
        .iter()
        .map(|u| {
            let earlier = before.get(&u.name[..]);
            let c = |id: u8| {
                let total = value(u, id);
                // A user new since the last sample started from zero.
                let was = earlier.map_or(0, |e| value(e, id));
                Counter {
                    total,
                    rate: secs.and_then(|s| rate(was, total, s)),
                }
            };
            UserRow {
                name: printable(&u.name),
                open: value(u, user_metric::OPEN),
                sessions: c(user_metric::SESSIONS),
                up: c(user_metric::BYTES_UP),
                down: c(user_metric::BYTES_DOWN),
                auth_failed: value(u, user_metric::AUTH_FAILED),
                denied: value(u, user_metric::DENIED),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.throughput()
            .total_cmp(&a.throughput())
            .then(b.total_bytes().cmp(&a.total_bytes()))
            .then(a.name.cmp(&b.name))
    });
    rows
}

/// A name from the server as text that cannot steer a terminal: invalid
/// UTF-8 replaced, control characters shown as '?'.
fn printable(name: &[u8]) -> String {
    String::from_utf8_lossy(name)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

// ------------------------------------------------------------------ frames

/// Lines above the users' table at most (the server line, five counter
/// lines, a blank line).
const HEADER_LINES: usize = 7;

/// The longest user name column; longer names are cut.
const MAX_NAME: usize = 16;

/// Bytes in binary units: "512 B", "1.5 KiB", "20.0 GiB".
fn bytes(n: f64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024.0 {
        return format!("{n:.0} B");
    }
    let mut v = n / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A byte rate: "1.2 MiB/s", or "-/s" without one.
fn bytes_rate(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{}/s", bytes(r)),
        None => "-/s".into(),
    }
}

/// An event rate with one decimal: "3.5/s", or "-/s" without one.
fn events_rate(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{r:.1}/s"),
        None => "-/s".into(),
    }
}

/// Seconds as "0:00:05", "27:46:39" under a day, "2d 03:04:05" beyond.
fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h}:{m:02}:{s:02}")
    }
}

/// The interval as "1 s", "0.5 s".
fn interval_text(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// One frame: the server's counters and the users' table, from `cur` and,
/// for the rates, `prev`. `size` (rows, columns) is the terminal's: the
/// frame is cut to its rows (the table first) and every line to its
/// columns; `None` (`--once`, or a terminal that does not know its size)
/// cuts nothing. The interactive view's first line names the quit key.
fn frame(
    prev: Option<&Sample>,
    cur: &Sample,
    opts: &Options,
    size: Option<(u16, u16)>,
) -> Vec<String> {
    let c = |id| counter(prev, cur, id);
    let mut lines = Vec::new();
    let mut first = match c(metric::UPTIME) {
        Some(up) => format!("socks5d up {}", uptime(up.total)),
        None => "socks5d".to_owned(),
    };
    first.push_str(&format!(", every {}", interval_text(opts.interval)));
    if !opts.once {
        first.push_str("; q to quit");
    }
    lines.push(first);

    let historic = c(metric::HISTORIC);
    let open = c(metric::CONCURRENT).map_or(0, |o| o.total);
    lines.push(format!(
        "connections  open {open}  new {}  (total {})",
        events_rate(historic.and_then(|h| h.rate)),
        historic.map_or(0, |h| h.total),
    ));
    let (up, down) = (c(metric::BYTES_UP), c(metric::BYTES_DOWN));
    lines.push(format!(
        "throughput   up {}  down {}  (total up {}, down {})",
        bytes_rate(up.and_then(|u| u.rate)),
        bytes_rate(down.and_then(|d| d.rate)),
        bytes(up.map_or(0, |u| u.total) as f64),
        bytes(down.map_or(0, |d| d.total) as f64),
    ));
    let (auth, connect) = (c(metric::AUTH_FAILED), c(metric::CONNECT_FAILED));
    lines.push(format!(
        "failures     auth {}  connect {}  (total auth {}, connect {})",
        events_rate(auth.and_then(|a| a.rate)),
        events_rate(connect.and_then(|a| a.rate)),
        auth.map_or(0, |a| a.total),
        connect.map_or(0, |a| a.total),
    ));
    if let Some(denied) = c(metric::DENIED) {
        lines.push(format!(
            "denied       {}  (total {})",
            events_rate(denied.rate),
            denied.total
        ));
    }
    if let (Some(dgrams), Some(dropped)) = (c(metric::UDP_DATAGRAMS), c(metric::UDP_DROPPED)) {
        lines.push(format!(
            "udp          datagrams {}  dropped {}  (total {}, dropped {})",
            events_rate(dgrams.rate),
            events_rate(dropped.rate),
            dgrams.total,
            dropped.total
        ));
    }
    while lines.len() < HEADER_LINES {
        lines.push(String::new());
    }

    let rows = user_rows(prev, cur);
    // The title and the column heads take two lines.
    let room = size.map_or(usize::MAX, |(r, _)| {
        usize::from(r).saturating_sub(HEADER_LINES + 2)
    });
    let shown = opts.users.min(rows.len()).min(room);
    if opts.users > 0 && room > 0 {
        lines.extend(table(&rows, shown));
    }
    if let Some((rows, cols)) = size {
        lines.truncate(usize::from(rows));
        for l in &mut lines {
            if let Some((cut, _)) = l.char_indices().nth(usize::from(cols)) {
                l.truncate(cut);
            }
        }
    }
    lines
}

/// The users' table: a title, the column heads, the first `shown` rows.
fn table(rows: &[UserRow], shown: usize) -> Vec<String> {
    let w = rows[..shown]
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, MAX_NAME);
    let mut out = vec![
        format!(
            "top {shown} of {} users by throughput (then bytes in all)",
            rows.len()
        ),
        format!(
            "{:<w$} {:>5} {:>7} {:>12} {:>12} {:>10} {:>9} {:>7}",
            "USER", "OPEN", "NEW", "UP", "DOWN", "TOTAL", "AUTH FAIL", "DENIED"
        ),
    ];
    for r in &rows[..shown] {
        let name: String = r.name.chars().take(w).collect();
        out.push(format!(
            "{name:<w$} {:>5} {:>7} {:>12} {:>12} {:>10} {:>9} {:>7}",
            r.open,
            events_rate(r.sessions.rate),
            bytes_rate(r.up.rate),
            bytes_rate(r.down.rate),
            bytes(r.total_bytes() as f64),
            r.auth_failed,
            r.denied,
        ));
    }
    out
}

// ------------------------------------------------------------------ screen

/// Switches to the alternate screen and hides the cursor.
const ENTER: &[u8] = b"\x1b[?1049h\x1b[?25l";
/// Shows the cursor and goes back to the normal screen, as it was.
pub const LEAVE: &[u8] = b"\x1b[?25h\x1b[?1049l";

/// The terminal while the view runs: raw mode and the alternate screen,
/// both undone when dropped, whatever path leaves the view (an error, a
/// panic that unwinds).
struct Screen {
    out: io::Stdout,
    /// Dropped after [`Screen::drop`] has left the alternate screen.
    _raw: RawMode,
}

impl Screen {
    fn enter() -> io::Result<Screen> {
        let raw = RawMode::enter(io::stdin().as_fd())?;
        let mut out = io::stdout();
        out.write_all(ENTER)?;
        out.flush()?;
        Ok(Screen { out, _raw: raw })
    }

    /// Draws `lines` from the top left, each over what was there, and
    /// clears what is left below; one write, so the screen does not flicker.
    fn draw(&mut self, lines: &[String]) -> io::Result<()> {
        let mut buf = String::from("\x1b[H");
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                buf.push_str("\r\n");
            }
            buf.push_str(l);
            buf.push_str("\x1b[K");
        }
        buf.push_str("\x1b[J");
        self.out.write_all(buf.as_bytes())?;
        self.out.flush()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // Nothing to do about a terminal that is gone.
        let _ = self.out.write_all(LEAVE);
        let _ = self.out.flush();
    }
}

/// What ended the view or woke it up.
enum Wake {
    /// `q`, Ctrl-C, Ctrl-D, the end of input, or a signal asking to stop.
    Quit,
    /// The window changed size.
    Resized,
    /// Nothing but time (or a key that means nothing).
    Nothing,
}

/// Whether the keys read mean "quit": `q`, `Q`, Ctrl-C or Ctrl-D.
fn quits(keys: &[u8]) -> bool {
    keys.iter().any(|k| matches!(k, b'q' | b'Q' | 0x03 | 0x04))
}

fn terminal(e: impl std::fmt::Display) -> Failure {
    Failure::Terminal(format!("terminal: {e}"))
}

/// The full-screen view until it is asked to stop.
fn interactive(client: &Client, opts: &Options) -> Result<(), Failure> {
    let signals = SignalReader::new(&[
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGWINCH,
    ])
    .map_err(terminal)?;
    let mut prev: Option<Sample> = None;
    let mut cur = sample(client)?;
    let mut screen = Screen::enter().map_err(terminal)?;
    // A terminal that does not know its size says 0 by 0.
    let size = || {
        window_size(io::stdout().as_fd())
            .ok()
            .filter(|(rows, cols)| *rows > 0 && *cols > 0)
    };
    screen
        .draw(&frame(None, &cur, opts, size()))
        .map_err(terminal)?;
    let mut next = cur.at + opts.interval;
    loop {
        let mut redraw = match wait(&signals, next)? {
            Wake::Quit => return Ok(()),
            Wake::Resized => true,
            Wake::Nothing => false,
        };
        let now = Instant::now();
        if now >= next {
            prev = Some(std::mem::replace(&mut cur, sample(client)?));
            next += opts.interval;
            if next <= now {
                // Fell behind (a slow answer): the next tick from now.
                next = now + opts.interval;
            }
            redraw = true;
        }
        if redraw {
            screen
                .draw(&frame(prev.as_ref(), &cur, opts, size()))
                .map_err(terminal)?;
        }
    }
}

/// Waits until `deadline`, a key or a signal, whichever comes first.
fn wait(signals: &SignalReader, deadline: Instant) -> Result<Wake, Failure> {
    let stdin = io::stdin();
    let left = deadline.saturating_duration_since(Instant::now());
    // Rounded up: woken early, the loop would only wait again.
    let ms = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
    let mut fds = [
        PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
        PollFd::new(signals.as_fd(), PollFlags::POLLIN),
    ];
    match poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => return Err(terminal(e)),
    }
    let ready = |f: &PollFd| f.any().unwrap_or(false);
    let (keys, sigs) = (ready(&fds[0]), ready(&fds[1]));
    let mut wake = Wake::Nothing;
    if sigs {
        while let Some(sig) = signals.next().map_err(terminal)? {
            match sig {
                Signal::SIGWINCH => wake = Wake::Resized,
                _ => return Ok(Wake::Quit),
            }
        }
    }
    if keys {
        let mut buf = [0u8; 64];
        match nix::unistd::read(stdin.as_fd(), &mut buf) {
            // The end of input, or a terminal that hung up.
            Ok(0) | Err(Errno::EIO) => return Ok(Wake::Quit),
            Ok(n) if quits(&buf[..n]) => return Ok(Wake::Quit),
            Ok(_) | Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => return Err(terminal(e)),
        }
    }
    Ok(wake)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, values: &[(u8, u64)]) -> UserMetrics {
        UserMetrics {
            name: name.as_bytes().to_vec(),
            values: values.to_vec(),
        }
    }

    /// Two samples two seconds apart: the connections, bytes and failures
    /// of the second minus the first, per second.
    fn samples() -> (Sample, Sample) {
        let t0 = Instant::now();
        let a = Sample {
            at: t0,
            metrics: [
                (metric::HISTORIC, 100),
                (metric::CONCURRENT, 4),
                (metric::BYTES_UP, 1000),
                (metric::BYTES_DOWN, 10_000),
                (metric::AUTH_FAILED, 1),
                (metric::CONNECT_FAILED, 2),
                (metric::UPTIME, 3661),
                (metric::DENIED, 0),
                (metric::UDP_DATAGRAMS, 10),
                (metric::UDP_DROPPED, 0),
            ]
            .into(),
            users: vec![
                user("alice", &[(user_metric::BYTES_UP, 500)]),
                user("bob", &[(user_metric::BYTES_DOWN, 9000)]),
                user("carol", &[]),
            ],
        };
        let b = Sample {
            at: t0 + Duration::from_secs(2),
            metrics: [
                (metric::HISTORIC, 107),
                (metric::CONCURRENT, 5),
                (metric::BYTES_UP, 1000 + 3 * 1024 * 1024),
                (metric::BYTES_DOWN, 10_000 + 2048),
                (metric::AUTH_FAILED, 4),
                (metric::CONNECT_FAILED, 2),
                (metric::UPTIME, 90_061),
                (metric::DENIED, 1),
                (metric::UDP_DATAGRAMS, 30),
                (metric::UDP_DROPPED, 1),
            ]
            .into(),
            users: vec![
                user(
                    "alice",
                    &[
                        (user_metric::SESSIONS, 3),
                        (user_metric::OPEN, 1),
                        (user_metric::BYTES_UP, 500 + 4096),
                        (user_metric::AUTH_FAILED, 2),
                        (0xEE, 7),
                    ],
                ),
                user("bob", &[(user_metric::BYTES_DOWN, 9000)]),
                user("carol", &[]),
                user("dave\x1b[2J", &[(user_metric::BYTES_DOWN, 100)]),
            ],
        };
        (a, b)
    }

    #[test]
    fn a_frame_of_two_samples() {
        let (a, b) = samples();
        let opts = Options {
            once: true,
            ..Options::default()
        };
        let got = frame(Some(&a), &b, &opts, None).join("\n");
        let want = "\
socks5d up 1d 01:01:01, every 1 s
connections  open 5  new 3.5/s  (total 107)
throughput   up 1.5 MiB/s  down 1.0 KiB/s  (total up 3.0 MiB, down 11.8 KiB)
failures     auth 1.5/s  connect 0.0/s  (total auth 4, connect 2)
denied       0.5/s  (total 1)
udp          datagrams 10.0/s  dropped 0.5/s  (total 30, dropped 1)

top 4 of 4 users by throughput (then bytes in all)
USER      OPEN     NEW           UP         DOWN      TOTAL AUTH FAIL  DENIED
alice        1   1.5/s    2.0 KiB/s        0 B/s    4.5 KiB         2       0
dave?[2J     0   0.0/s        0 B/s       50 B/s      100 B         0       0
bob          0   0.0/s        0 B/s        0 B/s    8.8 KiB         0       0
carol        0   0.0/s        0 B/s        0 B/s        0 B         0       0";
        assert_eq!(got, want);
    }

    /// Without an earlier sample there are totals and no rates; a server
    /// without the UDP and rules IDs has no lines for them.
    #[test]
    fn the_first_frame_has_no_rates() {
        let (mut a, _) = samples();
        for id in [metric::DENIED, metric::UDP_DATAGRAMS, metric::UDP_DROPPED] {
            a.metrics.remove(&id);
        }
        let opts = Options {
            users: 1,
            once: true,
            ..Options::default()
        };
        let got = frame(None, &a, &opts, None);
        assert_eq!(got[1], "connections  open 4  new -/s  (total 100)");
        assert_eq!(got[4], "");
        assert!(
            !got.iter()
                .any(|l| l.starts_with("udp") || l.starts_with("denied"))
        );
        assert_eq!(got[7], "top 1 of 3 users by throughput (then bytes in all)");
        assert!(got[9].starts_with("bob "), "{got:?}");
        assert_eq!(got.len(), 10);
    }

    /// On a terminal the table fits the rows left and each line the
    /// columns; the quit key is named.
    #[test]
    fn a_frame_fits_the_terminal() {
        let (a, b) = samples();
        let opts = Options::default();
        let got = frame(Some(&a), &b, &opts, Some((11, 40)));
        assert_eq!(got.len(), 11, "{got:?}");
        assert!(got.iter().all(|l| l.chars().count() <= 40), "{got:?}");
        assert_eq!(got[0], "socks5d up 1d 01:01:01, every 1 s; q to ");
        assert!(got[9].starts_with("alice "), "{got:?}");
        assert!(got[10].starts_with("dave?[2J "), "{got:?}");
        let small = frame(Some(&a), &b, &opts, Some((9, 80)));
        assert_eq!(small.len(), HEADER_LINES, "no room for a table: {small:?}");
        let tiny = frame(Some(&a), &b, &opts, Some((3, 80)));
        assert_eq!(tiny, small[..3], "the rows there are");
        let none = Options {
            users: 0,
            ..Options::default()
        };
        let got = frame(Some(&a), &b, &none, None);
        assert_eq!(got.len(), HEADER_LINES);
        assert!(got[0].ends_with(", every 1 s; q to quit"), "{got:?}");
    }

    /// Counters that went down (the server restarted between samples) give
    /// a rate of 0, not a huge one; an ID not sent is no counter.
    #[test]
    fn counters_that_go_down_rate_zero() {
        let (a, b) = samples();
        let restarted = Sample {
            at: b.at + Duration::from_secs(1),
            ..a.clone()
        };
        assert_eq!(
            counter(Some(&b), &restarted, metric::HISTORIC),
            Some(Counter {
                total: 100,
                rate: Some(0.0)
            })
        );
        assert_eq!(
            counter(None, &a, metric::HISTORIC),
            Some(Counter {
                total: 100,
                rate: None
            })
        );
        assert_eq!(counter(Some(&a), &b, 0x7F), None);
    }

    #[test]
    fn units() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(1023.0), "1023 B");
        assert_eq!(bytes(1024.0), "1.0 KiB");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(5.0 * 1024.0 * 1024.0 * 1024.0), "5.0 GiB");
        assert_eq!(bytes(u64::MAX as f64), "16.0 EiB");
        assert_eq!(uptime(5), "0:00:05");
        assert_eq!(uptime(86_399), "23:59:59");
        assert_eq!(uptime(2 * 86_400 + 3 * 3600 + 4 * 60 + 5), "2d 03:04:05");
        assert_eq!(interval_text(Duration::from_millis(500)), "0.5 s");
    }

    #[test]
    fn interval_and_users_options() {
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["0", "0.05", "61", "-1", "x", "NaN", "inf", ""] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_users("0"), Ok(0));
        assert_eq!(parse_users("25"), Ok(25));
        for bad in ["-1", "1.5", "100001", "x"] {
            assert!(parse_users(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quit_keys() {
        assert!(quits(b"q"));
        assert!(quits(b"xxQ"));
        assert!(quits(&[0x03]));
        assert!(quits(&[0x04]));
        assert!(!quits(b"x \r"));
    }
}
