//! Bandwidth limits of `allow ... rate` rules: token buckets shared by all
//! the tunnels a rule lets one user (or, without a user, one client
//! address) open, on every worker.
//!
//! A tunnel with a limit asks its buckets for a grant before it reads, reads
//! at most that much, and gives back what it did not use; with nothing
//! granted it stops reading (backpressure: the sender's TCP window fills,
//! nothing is buffered here) until the buckets have refilled. A bucket
//! holds at most a quarter of a second of its rate (and at least 512
//! bytes), so over any 5 seconds a user moves at most the rate plus 5%.
//! Tunnels without a limit never touch any of this.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::rules::{Origin, Rate};
use crate::socks5::connection::Direction;

/// Bytes a tunnel waits for at least before it reads again, so that a
/// limited tunnel is not woken for a few bytes at a time.
const CHUNK: f64 = 4096.0;

/// One rate: tokens are bytes, refilled continuously.
#[derive(Debug)]
pub struct Bucket {
    /// Bytes per second.
    rate: f64,
    /// The most tokens it holds.
    cap: f64,
    /// The most one grant takes (4 ms worth, at least a chunk): tunnels
    /// sharing the bucket take turns instead of the first to wake taking
    /// all of it.
    max_grant: usize,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// A full bucket of `rate` bytes per second.
    pub fn new(rate: u64, now: Instant) -> Bucket {
        let rate = rate.max(1) as f64;
        let cap = (rate / 4.0).max(512.0);
        Bucket {
            rate,
            cap,
            max_grant: (rate / 250.0).max(CHUNK) as usize,
            state: Mutex::new((cap, now)),
        }
    }

    fn refill(&self, state: &mut (f64, Instant), now: Instant) {
        let elapsed = now.saturating_duration_since(state.1).as_secs_f64();
        state.0 = (state.0 + elapsed * self.rate).min(self.cap);
        state.1 = state.1.max(now);
    }

    /// Takes up to `want` whole tokens (and at most one grant's worth);
    /// returns how many.
    pub fn take(&self, now: Instant, want: usize) -> usize {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refill(&mut st, now);
        let n = (st.0.floor().max(0.0) as usize)
            .min(want)
            .min(self.max_grant);
        st.0 -= n as f64;
        n
    }

    /// Gives back tokens taken and not used.
    pub fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 = (st.0 + n as f64).min(self.cap);
    }

    /// Whether a chunk of tokens is there now.
    pub fn ready(&self, now: Instant) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refill(&mut st, now);
        st.0 >= CHUNK.min(self.cap)
    }

    /// How long until a chunk of tokens is there.
    pub fn wait(&self, now: Instant) -> Duration {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refill(&mut st, now);
        let want = CHUNK.min(self.cap);
        let missing = (want - st.0).max(0.0);
        Duration::from_secs_f64(missing / self.rate).max(Duration::from_millis(1))
    }
}

/// The buckets one tunnel draws from: both directions together, and each
/// direction apart, as its rule says.
#[derive(Debug, Default)]
pub struct Limiter {
    total: Option<Arc<Bucket>>,
    up: Option<Arc<Bucket>>,
    down: Option<Arc<Bucket>>,
}

impl Limiter {
    fn own(&self, dir: Direction) -> Option<&Arc<Bucket>> {
        match dir {
            Direction::Up => self.up.as_ref(),
            Direction::Down => self.down.as_ref(),
        }
    }

    /// Bytes `dir` may read now, at most `want`.
    pub fn grant(&self, dir: Direction, now: Instant, want: usize) -> usize {
        let mut n = want;
        if let Some(b) = &self.total {
            n = b.take(now, n);
        }
        if let Some(b) = self.own(dir) {
            let m = b.take(now, n);
            if let Some(t) = &self.total {
                t.give_back(n - m);
            }
            n = m;
        }
        n
    }

    /// Gives back `n` bytes of a grant that were not read.
    pub fn give_back(&self, dir: Direction, n: usize) {
        if let Some(b) = &self.total {
            b.give_back(n);
        }
        if let Some(b) = self.own(dir) {
            b.give_back(n);
        }
    }

    /// Whether `dir` could be granted a chunk now (its grant was only
    /// capped: take a turn, do not sleep).
    pub fn ready(&self, dir: Direction, now: Instant) -> bool {
        [self.total.as_ref(), self.own(dir)]
            .into_iter()
            .flatten()
            .all(|b| b.ready(now))
    }

    /// How long `dir` should wait before it asks again: until its buckets
    /// hold a chunk, stretched by `jitter` (0 to 1, random) times as much
    /// again, so that tunnels sharing a bucket wake in a different order
    /// each time and share it evenly on average.
    pub fn wait(&self, dir: Direction, now: Instant, jitter: f64) -> Duration {
        let base = [self.total.as_ref(), self.own(dir)]
            .into_iter()
            .flatten()
            .map(|b| b.wait(now))
            .max()
            .unwrap_or(Duration::from_millis(1));
        base.mul_f64(1.0 + jitter.clamp(0.0, 1.0))
    }
}

/// Which of a rule's limits a bucket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Total,
    Up,
    Down,
}

type Key = (Box<str>, Origin, Kind, u64);

/// Every bucket in use, found by who, which rule, which limit and its rate
/// (a reload that changes a rate makes new buckets). Buckets are held by
/// the tunnels using them; an entry whose bucket is gone is swept out.
#[derive(Debug, Default)]
pub struct Rates {
    buckets: Mutex<HashMap<Key, Weak<Bucket>>>,
}

impl Rates {
    /// The limiter for a tunnel of `who` (a user name, or a client address)
    /// allowed by the rule at `origin` with `rate`.
    pub fn limiter(&self, who: &str, origin: Origin, rate: Rate, now: Instant) -> Limiter {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= 1024 {
            map.retain(|_, b| b.strong_count() > 0);
        }
        let mut get = |kind: Kind, limit: Option<u64>| {
            let limit = limit?;
            let key: Key = (who.into(), origin, kind, limit);
            if let Some(b) = map.get(&key).and_then(Weak::upgrade) {
                return Some(b);
            }
            let b = Arc::new(Bucket::new(limit, now));
            map.insert(key, Arc::downgrade(&b));
            Some(b)
        };
        Limiter {
            total: get(Kind::Total, rate.total),
            up: get(Kind::Up, rate.up),
            down: get(Kind::Down, rate.down),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_rate_over_time_and_no_more() {
        let t0 = Instant::now();
        let b = Bucket::new(100_000, t0);
        // A quarter of a second's worth to start with, a grant (4096, a
        // chunk: more than a 64th of the rate) at a time.
        let mut start = 0;
        while let n @ 1.. = b.take(t0, usize::MAX) {
            assert!(n <= 4096);
            start += n;
        }
        assert_eq!(start, 25_000);
        // Over 5 seconds of asking every 10 ms: the rate, plus the start.
        let mut got = 0;
        for i in 1..=500 {
            let t = t0 + Duration::from_millis(10 * i);
            while let n @ 1.. = b.take(t, usize::MAX) {
                got += n;
            }
        }
        assert!((499_000..=500_001).contains(&got), "{got}");
        b.give_back(1000);
        assert_eq!(b.take(t0 + Duration::from_secs(5), usize::MAX), 1000);
    }

    #[test]
    fn the_wait_is_until_a_chunk() {
        let t0 = Instant::now();
        let b = Bucket::new(65_536, t0);
        while b.take(t0, usize::MAX) > 0 {}
        // 4096 bytes at 64 KiB/s: 62.5 ms.
        let w = b.wait(t0);
        assert!((62..=63).contains(&w.as_millis()), "{w:?}");
        // A bucket smaller than a chunk waits until it is full: 2 KiB at
        // 8 KiB/s.
        let small = Bucket::new(8192, t0);
        while small.take(t0, usize::MAX) > 0 {}
        assert_eq!(small.wait(t0).as_millis(), 250);
    }

    #[test]
    fn tunnels_of_one_user_and_rule_share_their_buckets() {
        let rates = Rates::default();
        let t0 = Instant::now();
        let rule = Origin::File { line: 3 };
        let rate = Rate {
            total: Some(640_000),
            up: None,
            down: Some(64_000),
        };
        let a = rates.limiter("alice", rule, rate, t0);
        let b = rates.limiter("alice", rule, rate, t0);
        let c = rates.limiter("bob", rule, rate, t0);
        // A grant is 4 ms worth at most (a chunk here): a takes turns.
        assert_eq!(a.grant(Direction::Up, t0, usize::MAX), 4096);
        assert!(a.ready(Direction::Up, t0), "more is there");
        let mut taken = 4096;
        while let n @ 1.. = a.grant(Direction::Up, t0, usize::MAX) {
            taken += n;
        }
        assert_eq!(taken, 160_000, "a quarter second's worth");
        assert!(!a.ready(Direction::Up, t0));
        assert_eq!(b.grant(Direction::Up, t0, usize::MAX), 0, "shared with a");
        assert_eq!(c.grant(Direction::Up, t0, usize::MAX), 4096, "bob's own");
        // Down is limited by its own bucket too (a chunk at a time).
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(a.grant(Direction::Down, t1, usize::MAX), 4096);
        a.give_back(Direction::Down, 4096);
        let mut down = 0;
        while let n @ 1.. = b.grant(Direction::Down, t1, usize::MAX) {
            down += n;
        }
        assert_eq!(down, 16_000, "what a gave back is b's");
        drop((a, b, c));
        // Gone with their tunnels.
        let d = rates.limiter("alice", rule, rate, t1);
        assert_eq!(d.grant(Direction::Up, t1, usize::MAX), 4096, "a new bucket");
        assert_eq!(
            d.wait(Direction::Up, t1, 1.0),
            Duration::from_millis(2),
            "the least wait, doubled by the most jitter"
        );
    }
}
