//! UDP: datagrams echoed through UDP associations (RFC 1928 section 7).
//!
//! Each association is a TCP control connection (greeting, log-in, UDP
//! ASSOCIATE naming the client's UDP socket) and that UDP socket, connected
//! to the relay the proxy names; its datagrams carry the UDP request header
//! to an echo socket of its own ([`UdpEcho`]), which sends them back
//! through the relay. Direct, the same socket is connected to the echo
//! socket and sends the bare data.
//!
//! UDP drops datagrams under overload, so each association keeps a bounded
//! window of datagrams in flight (a sequence number in each) and counts a
//! datagram lost when its echo has not come back within the loss timeout;
//! the rate counts echoes received. After a warm-up the clock runs for a
//! fixed time: `dgrams_s` and `mib_s` (payload) are the echoes received in
//! that time over it, `sent` and `lost` the datagrams sent in it and those
//! of them never echoed (which a drain of one loss timeout settles). With
//! a window of one, every round trip is timed: `p50_us`, `p99_us`.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use super::{Common, Errors, Meter, failed};
use crate::client::{DialError, Route, associate, parse_udp_header, udp_header};
use crate::line::Line;
use crate::mmsg::{BATCH, Batch, ROOM};
use crate::stats::percentile;
use crate::targets::UdpEcho;

/// Bytes of the sequence number at the start of every payload.
const SEQ: usize = 8;
/// How long a receive waits before the loop looks at the clock again.
const TICK: Duration = Duration::from_millis(10);

/// The knobs of a UDP run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Associations in parallel.
    pub assocs: usize,
    /// Payload bytes per datagram (the UDP header not counted).
    pub size: usize,
    /// Datagrams in flight per association, at most.
    pub window: usize,
    /// Seconds measured.
    pub secs: f64,
    /// Seconds of warm-up before.
    pub warmup: f64,
    /// A datagram not echoed within this many milliseconds is lost.
    pub loss_ms: u64,
}

impl Params {
    /// Checks the sizes: a payload holds the sequence number and, with the
    /// largest header, fits a receive buffer.
    pub fn check(&self) -> Result<(), String> {
        if self.size < SEQ || self.size + 22 > ROOM {
            return Err(format!(
                "--size: {} is outside {SEQ}..={}",
                self.size,
                ROOM - 22
            ));
        }
        if self.window == 0 || self.assocs == 0 {
            return Err("--window and --assocs: at least 1".into());
        }
        if !(self.secs > 0.0 && self.warmup >= 0.0) {
            return Err("--secs: above 0; --warmup: 0 or more".into());
        }
        Ok(())
    }
}

/// One association, or its direct stand-in.
#[derive(Debug)]
struct Flow {
    /// Connected to the relay (or, direct, to the echo socket).
    sock: UdpSocket,
    /// The UDP request header before each payload (empty direct).
    header: Vec<u8>,
    /// The echo socket, which every reply's header must name.
    target: SocketAddr,
    /// Held open for as long as the association is used.
    _control: Option<TcpStream>,
}

/// Binds a UDP socket on 127.0.0.1 and, through a proxy, associates it.
fn open_flow(route: &Route, target: SocketAddr, timeout: Duration) -> Result<Flow, DialError> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(DialError::Connect)?;
    sock.set_read_timeout(Some(TICK)).map_err(DialError::Io)?;
    sock.set_write_timeout(Some(timeout))
        .map_err(DialError::Io)?;
    let (peer, header, control) = match route {
        Route::Direct => (target, Vec::new(), None),
        // Not run behind a balancer (socks5d-proxyproto has the handshake
        // case only); a route that is one would open the same association.
        Route::Socks { proxy, auth } | Route::Balanced { proxy, auth } => {
            let me = sock.local_addr().map_err(DialError::Io)?;
            let a = associate(*proxy, auth, me, timeout)?;
            (a.relay, udp_header(target), Some(a.control))
        }
    };
    sock.connect(peer).map_err(DialError::Connect)?;
    Ok(Flow {
        sock,
        header,
        target,
        _control: control,
    })
}

/// One association's counts.
#[derive(Debug, Default)]
struct Tally {
    /// Datagrams sent within the measured time.
    sent: u64,
    /// Echoes received within the measured time.
    received: u64,
    /// Datagrams sent within the measured time and never echoed.
    lost: u64,
    /// Echoes of datagrams already counted lost (or echoed twice).
    late: u64,
    /// Round-trip times in nanoseconds, within the measured time.
    samples: Vec<u64>,
    errors: Errors,
}

/// A datagram in flight.
#[derive(Clone, Copy, Debug)]
struct Slot {
    sent: Instant,
    echoed: bool,
}

/// The measured time, and what falls in it.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: Instant,
    end: Instant,
}

impl Span {
    fn holds(&self, t: Instant) -> bool {
        self.start <= t && t < self.end
    }
}

fn io_kind(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timeout",
        _ => "udp_io",
    }
}

/// The window of datagrams in flight on one flow: slots by sequence
/// number, from the oldest not yet settled.
#[derive(Debug, Default)]
struct Window {
    slots: VecDeque<Slot>,
    /// Sequence number of `slots[0]`.
    front: u64,
    /// Slots not yet echoed.
    outstanding: usize,
}

impl Window {
    /// The next sequence number to send.
    fn next(&self) -> u64 {
        self.front + self.slots.len() as u64
    }

    /// Drops settled slots off the front, counting as lost those older
    /// than `loss` (and sent within `span`) at `now`.
    fn expire(&mut self, now: Instant, loss: Duration, span: Span, t: &mut Tally) {
        while let Some(s) = self.slots.front() {
            if !s.echoed {
                if now.duration_since(s.sent) < loss {
                    break;
                }
                if span.holds(s.sent) {
                    t.lost += 1;
                }
                self.outstanding -= 1;
            }
            self.slots.pop_front();
            self.front += 1;
        }
    }

    /// Records the echo of `seq` received at `at`; false for a sequence
    /// number never sent.
    fn echo(&mut self, seq: u64, at: Instant, span: Span, keep: bool, t: &mut Tally) -> bool {
        if seq >= self.next() {
            return false;
        }
        let Some(s) = seq
            .checked_sub(self.front)
            .and_then(|i| self.slots.get_mut(i as usize))
            .filter(|s| !s.echoed)
        else {
            t.late += 1;
            return true;
        };
        s.echoed = true;
        self.outstanding -= 1;
        if span.holds(at) {
            t.received += 1;
            if keep {
                t.samples.push(at.duration_since(s.sent).as_nanos() as u64);
            }
        }
        true
    }
}

/// Checks one echo (its header, its length) and returns its sequence
/// number, or the error's kind.
fn read_echo(flow: &Flow, d: &[u8], size: usize) -> Result<u64, &'static str> {
    let data = if flow.header.is_empty() {
        d
    } else {
        match parse_udp_header(d) {
            Ok((from, at)) if from == flow.target => &d[at..],
            Ok(_) => return Err("udp_source"),
            Err(_) => return Err("udp_header"),
        }
    };
    if data.len() != size {
        return Err("udp_size");
    }
    Ok(u64::from_be_bytes(
        data[..SEQ].try_into().expect("an 8-byte slice"),
    ))
}

/// Runs one flow: warm-up, measured time, then a drain of one loss timeout
/// for the datagrams still in flight.
fn drive(flow: &Flow, p: &Params, span: Span) -> Tally {
    let mut t = Tally::default();
    let keep = p.window == 1;
    let loss = Duration::from_millis(p.loss_ms);
    let hl = flow.header.len();
    let mut out = Batch::new();
    let mut inbox = Batch::new();
    for i in 0..BATCH {
        let b = out.buf_mut(i);
        b[..hl].copy_from_slice(&flow.header);
        b[hl..hl + p.size].fill(0x5A);
        out.set_len(i, hl + p.size);
    }
    let mut w = Window::default();
    loop {
        let now = Instant::now();
        w.expire(now, loss, span, &mut t);
        let sending = now < span.end;
        if !sending && w.outstanding == 0 {
            break;
        }
        if sending && w.outstanding < p.window {
            let k = (p.window - w.outstanding).min(BATCH);
            let first = w.next();
            for i in 0..k {
                let seq = first + i as u64;
                out.buf_mut(i)[hl..hl + SEQ].copy_from_slice(&seq.to_be_bytes());
            }
            if let Err(e) = out.send(&flow.sock, k, false) {
                eprintln!("loadgen: UDP send: {e}");
                t.errors.add(io_kind(&e));
                return t;
            }
            let at = Instant::now();
            w.slots.extend((0..k).map(|_| Slot {
                sent: at,
                echoed: false,
            }));
            w.outstanding += k;
            if span.holds(at) {
                t.sent += k as u64;
            }
        }
        let n = match inbox.recv(&flow.sock, BATCH) {
            Ok(n) => n,
            Err(e) if matches!(io_kind(&e), "timeout") => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("loadgen: UDP receive: {e}");
                t.errors.add(io_kind(&e));
                return t;
            }
        };
        let at = Instant::now();
        for i in 0..n {
            let seq = if inbox.truncated(i) {
                Err("udp_size")
            } else {
                read_echo(flow, inbox.datagram(i), p.size)
            };
            match seq {
                Ok(seq) if w.echo(seq, at, span, keep, &mut t) => {}
                Ok(_) => t.errors.add("udp_seq"),
                Err(kind) => t.errors.add(kind),
            }
        }
    }
    t
}

/// Runs the scenario; the line has `dgrams_s` and `mib_s` (and, with a
/// window of one, `p50_us` and `p99_us`) when every association worked.
pub fn run(c: &Common, p: &Params) -> Line {
    let mut line = c.line("udp");
    line.put("assocs", p.assocs)
        .put("size", p.size)
        .put("window", p.window)
        .put("loss_ms", p.loss_ms);
    let echo = match UdpEcho::start(p.assocs) {
        Ok(e) => e,
        Err(e) => return failed(line, "target", e),
    };
    let mut errors = Errors::default();
    let mut flows = Vec::new();
    for &target in echo.addrs() {
        match open_flow(&c.route, target, c.timeout) {
            Ok(f) => flows.push(f),
            Err(e) => {
                eprintln!("loadgen: opening a UDP association: {e}");
                errors.add(e.kind());
            }
        }
    }
    if errors.total() > 0 {
        errors.put(&mut line);
        return line;
    }
    let start = Instant::now() + Duration::from_secs_f64(p.warmup);
    let span = Span {
        start,
        end: start + Duration::from_secs_f64(p.secs),
    };
    let tallies: Vec<Tally> = thread::scope(|s| {
        let workers: Vec<_> = flows
            .iter()
            .map(|f| s.spawn(move || drive(f, p, span)))
            .collect();
        thread::sleep(span.start.saturating_duration_since(Instant::now()));
        let meter = Meter::start(c.proxy_pid);
        thread::sleep(span.end.saturating_duration_since(Instant::now()));
        meter.finish(&mut line);
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    let mut t = Tally::default();
                    t.errors.add("panic");
                    t
                })
            })
            .collect()
    });
    let mut all = Tally::default();
    for t in tallies {
        all.sent += t.sent;
        all.received += t.received;
        all.lost += t.lost;
        all.late += t.late;
        all.samples.extend(t.samples);
        errors.merge(t.errors);
    }
    put_figures(&mut line, p, &mut all);
    if all.received == 0 {
        errors.add("no_echo");
    }
    errors.put(&mut line);
    line
}

/// The counts, the rates over the measured time and, with samples, the
/// round-trip percentiles.
fn put_figures(line: &mut Line, p: &Params, all: &mut Tally) {
    let loss_pct = if all.sent == 0 {
        0.0
    } else {
        all.lost as f64 * 100.0 / all.sent as f64
    };
    let rate = all.received as f64 / p.secs;
    line.put("sent", all.sent)
        .put("received", all.received)
        .put("lost", all.lost)
        .put("late", all.late)
        .num("loss_pct", loss_pct, 3)
        .num("dgrams_s", rate, 0)
        .num("mib_s", rate * p.size as f64 / (1 << 20) as f64, 2);
    if !all.samples.is_empty() {
        all.samples.sort_unstable();
        let us = |q: f64| percentile(&all.samples, q).map_or(f64::NAN, |ns| ns as f64 / 1000.0);
        line.num("p50_us", us(50.0), 1)
            .num("p99_us", us(99.0), 1)
            .num("p999_us", us(99.9), 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Auth;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn direct() -> Common {
        Common {
            route: Route::Direct,
            peer: "direct".into(),
            case: "udp".into(),
            round: 1,
            proxy_pid: None,
            timeout: Duration::from_secs(5),
        }
    }

    fn params(assocs: usize, size: usize, window: usize) -> Params {
        Params {
            assocs,
            size,
            window,
            secs: 0.3,
            warmup: 0.05,
            loss_ms: 200,
        }
    }

    #[test]
    fn direct_rates_and_no_loss_on_loopback() {
        for (assocs, size) in [(1, 64), (3, 1400)] {
            let l = run(&direct(), &params(assocs, size, 32));
            assert_eq!(l.get("ok"), Some("1"), "{l}");
            assert!(l.number("dgrams_s").unwrap() > 100.0, "{l}");
            let mib = l.number("dgrams_s").unwrap() * size as f64 / (1 << 20) as f64;
            assert!((l.number("mib_s").unwrap() - mib).abs() < 0.01, "{l}");
            assert!(l.number("sent").unwrap() >= l.number("received").unwrap() - 64.0 * 3.0);
            assert_eq!(l.get("assocs"), Some(assocs.to_string().as_str()));
            // Percentiles only with one datagram in flight.
            assert_eq!(l.get("p50_us"), None, "{l}");
        }
    }

    #[test]
    fn a_window_of_one_times_every_round_trip() {
        let l = run(&direct(), &params(1, 64, 1));
        assert_eq!(l.get("ok"), Some("1"), "{l}");
        let (p50, p99) = (l.number("p50_us").unwrap(), l.number("p99_us").unwrap());
        assert!(0.0 < p50 && p50 <= p99, "{l}");
    }

    #[test]
    fn sizes_are_checked() {
        assert!(params(1, 7, 1).check().is_err());
        assert!(params(1, ROOM - 21, 1).check().is_err());
        assert!(params(1, 1400, 0).check().is_err());
        assert!(params(1, 1400, 64).check().is_ok());
    }

    #[test]
    fn the_window_counts_losses_late_echoes_and_strays() {
        let t0 = Instant::now();
        let span = Span {
            start: t0,
            end: t0 + Duration::from_secs(10),
        };
        let loss = Duration::from_millis(100);
        let mut w = Window::default();
        let mut t = Tally::default();
        w.slots.extend((0..3).map(|_| Slot {
            sent: t0,
            echoed: false,
        }));
        w.outstanding = 3;
        // Seq 1 comes back; 0 and 2 are overdue a while later.
        assert!(w.echo(1, t0 + Duration::from_millis(1), span, true, &mut t));
        w.expire(t0 + Duration::from_millis(150), loss, span, &mut t);
        assert_eq!((t.received, t.lost, w.outstanding), (1, 2, 0));
        assert_eq!(t.samples, [1_000_000]);
        assert!(w.slots.is_empty() && w.front == 3);
        // 0 comes back after all: late, not received; 9 was never sent.
        assert!(w.echo(0, t0 + Duration::from_millis(160), span, true, &mut t));
        assert_eq!(t.late, 1);
        assert!(!w.echo(9, t0, span, true, &mut t));
    }

    /// A proxy that accepts the association but whose relay never answers:
    /// every datagram is lost, the run fails with no_echo, and nothing
    /// hangs.
    #[test]
    fn a_silent_relay_is_all_loss_and_an_error() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = l.local_addr().unwrap();
        let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
        let relay_port = relay.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut b = [0u8; 13];
            c.read_exact(&mut b[..3]).unwrap();
            c.write_all(&[5, 0]).unwrap();
            c.read_exact(&mut b[..10]).unwrap();
            let mut reply = vec![5, 0, 0, 1, 127, 0, 0, 1];
            reply.extend_from_slice(&relay_port.to_be_bytes());
            c.write_all(&reply).unwrap();
            let mut rest = Vec::new();
            let _ = c.read_to_end(&mut rest);
        });
        let mut c = direct();
        c.route = Route::Socks {
            proxy,
            auth: Auth::None,
        };
        let mut p = params(1, 64, 8);
        p.loss_ms = 50;
        let line = run(&c, &p);
        assert_eq!(line.get("ok"), Some("0"), "{line}");
        assert_eq!(line.get("err_no_echo"), Some("1"), "{line}");
        assert_eq!(line.number("received"), Some(0.0));
        assert!(line.number("lost").unwrap() > 0.0, "{line}");
        server.join().unwrap();
        drop(relay);
    }
}
