//! Deadlines of one worker's sessions.
//!
//! A session has at most one pending deadline that matters: the earliest of
//! its handshake, connect-attempt and idle deadlines. Entries are never
//! removed early; an entry whose session is gone, or whose session now has
//! another deadline, is dropped when it comes due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A min-heap of (deadline, slab key, session id).
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl Timers {
    /// Schedules a check of session `key`/`id` at `at`.
    pub fn arm(&mut self, at: Instant, key: usize, id: u64) {
        self.heap.push(Reverse((at, key, id)));
    }

    /// How long poll may sleep before the next deadline.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((at, _, _))| at.saturating_duration_since(now))
    }

    /// The next entry due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize, u64)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Drops the entries `keep` rejects. Closed sessions leave their
    /// entries behind until they come due (10 s for a handshake); under a
    /// high rate of short connections that is most of the heap, so the
    /// worker compacts it now and then.
    pub fn retain(&mut self, mut keep: impl FnMut(usize, u64, Instant) -> bool) {
        let mut v = std::mem::take(&mut self.heap).into_vec();
        v.retain(|Reverse((at, key, id))| keep(*key, *id, *at));
        v.shrink_to(v.len() * 2);
        self.heap = BinaryHeap::from(v);
    }

    /// Entries pending, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no entry is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.arm(t0 + Duration::from_secs(3), 3, 30);
        t.arm(t0 + Duration::from_secs(1), 1, 10);
        t.arm(t0 + Duration::from_secs(2), 2, 20);
        assert_eq!(t.timeout(t0), Some(Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(1));
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(2));
        assert_eq!(t.pop_due(now), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn retain_keeps_order_and_drops_the_rest() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        for k in 0..100 {
            t.arm(t0 + Duration::from_secs(100 - k as u64), k, k as u64);
        }
        t.retain(|key, _, _| key % 10 == 0);
        assert_eq!(t.len(), 10);
        let far = t0 + Duration::from_secs(1000);
        let keys: Vec<usize> = std::iter::from_fn(|| t.pop_due(far).map(|e| e.1)).collect();
        assert_eq!(keys, [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]);
    }
}
