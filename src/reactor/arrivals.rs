//! The order in which one worker's sessions arrived, to find its oldest
//! sessions of one kind without a scan.
//!
//! The worker uses it at the descriptor limit: when accept(2) fails with
//! EMFILE or ENFILE, the oldest handshakes that nobody has logged in on are
//! closed to make room for new clients. Entries are never removed when a
//! session leaves that kind: the caller's test, `eligible`, says whether an
//! entry still counts, and one that does not is dropped when it is met at
//! the front or when the queue is compacted. A session must never become
//! eligible again once it was not: that is what makes dropping it safe.

use std::collections::VecDeque;

/// (slab key, session id) in order of arrival, oldest first.
#[derive(Debug, Default)]
pub struct Arrivals {
    queue: VecDeque<(usize, u64)>,
}

impl Arrivals {
    /// Notes that session `key`/`id` arrived, the newest. Entries of sessions
    /// no longer eligible are dropped from the front, and all of them when
    /// they outnumber the `live` sessions by far: each entry is looked at a
    /// bounded number of times, so this is amortised O(1).
    pub fn push(
        &mut self,
        key: usize,
        id: u64,
        live: usize,
        mut eligible: impl FnMut(usize, u64) -> bool,
    ) {
        while let Some(&(k, i)) = self.queue.front() {
            if eligible(k, i) {
                break;
            }
            self.queue.pop_front();
        }
        // Behind an old eligible session the others pile up (10 s of
        // arrivals at most, the handshake timeout, but that may be many).
        if self.queue.len() > 4 * (live + 256) {
            self.queue.retain(|&(k, i)| eligible(k, i));
            self.queue.shrink_to(self.queue.len() * 2);
        }
        self.queue.push_back((key, id));
    }

    /// Removes and returns the oldest eligible session, dropping the
    /// entries before it.
    pub fn pop_oldest(
        &mut self,
        mut eligible: impl FnMut(usize, u64) -> bool,
    ) -> Option<(usize, u64)> {
        while let Some((k, i)) = self.queue.pop_front() {
            if eligible(k, i) {
                return Some((k, i));
            }
        }
        None
    }

    /// Entries held, ineligible ones included.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn oldest_eligible_first_and_the_others_dropped() {
        let mut a = Arrivals::default();
        let eligible: HashSet<u64> = [1, 3, 4].into();
        let ok = |_: usize, id: u64| eligible.contains(&id);
        for id in 0..6 {
            a.push(id as usize, id, 6, |_, _| true);
        }
        assert_eq!(a.pop_oldest(ok), Some((1, 1)));
        assert_eq!(a.pop_oldest(ok), Some((3, 3)));
        assert_eq!(a.pop_oldest(ok), Some((4, 4)));
        assert_eq!(a.pop_oldest(ok), None);
        assert!(a.is_empty());
    }

    #[test]
    fn a_reused_key_is_told_apart_by_its_id() {
        let mut a = Arrivals::default();
        a.push(7, 1, 1, |_, _| true);
        a.push(7, 2, 1, |_, _| true);
        // Key 7 now holds session 2: the entry of session 1 is stale.
        assert_eq!(a.pop_oldest(|k, id| k == 7 && id == 2), Some((7, 2)));
    }

    #[test]
    fn the_front_is_trimmed_as_sessions_arrive() {
        let mut a = Arrivals::default();
        // Each session has left its handshake by the time the next arrives.
        for id in 0..10_000u64 {
            a.push(0, id, 1, |_, i| i == id);
        }
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn stale_entries_behind_an_old_session_are_compacted() {
        let mut a = Arrivals::default();
        // Session 0 stays eligible; the 100,000 behind it leave at once.
        let mut most = 0;
        for id in 0..100_000u64 {
            a.push(id as usize, id, 2, |_, i| i == 0 || i == id);
            most = most.max(a.len());
        }
        assert!(most <= 4 * (2 + 256) + 1, "{most} entries held");
        assert_eq!(a.pop_oldest(|_, i| i == 0), Some((0, 0)));
    }
}
