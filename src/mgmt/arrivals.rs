//! Management associations that have not logged in: the order they arrived
//! in, the end of their log-in grace time, which one gives way when too
//! many wait, and a bounded log of those aborts. No I/O and no clock: the
//! endpoint passes `now` and says what each association is doing. An
//! association is known by a key of the endpoint's choosing (an SCTP
//! association id, or which Unix connection), so both transports share one
//! queue and one cap.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// At most one log line about aborts before log in per this interval,
/// however many associations a flood brings.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Stale entries the queue may hold beyond twice the live ones before it is
/// compacted.
const SLACK: usize = 64;

/// What the association of a queue entry is doing, as the endpoint sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Gone, logged in, or a later association under the same id: the entry
    /// is stale.
    Gone,
    /// Its log in has arrived and is being checked.
    Checking,
    /// Not logged in and no log in under check: it has sent nothing, or part
    /// of a message, or its log in was refused and it is closing.
    Waiting,
}

#[derive(Debug, Clone, Copy)]
struct Entry<K> {
    assoc: K,
    serial: u64,
    since: Instant,
}

/// The associations that have not logged in, oldest first.
///
/// Entries leave lazily: one whose association has since logged in or gone
/// stays until it reaches the front or the queue is compacted, so logging
/// in and leaving cost nothing here, and the common eviction (the oldest
/// entry, which has sent nothing) is O(1). Compaction keeps the queue
/// within twice the live entries plus a constant.
#[derive(Debug)]
pub struct Arrivals<K> {
    queue: VecDeque<Entry<K>>,
    serial: u64,
}

impl<K> Default for Arrivals<K> {
    fn default() -> Self {
        Arrivals {
            queue: VecDeque::new(),
            serial: 0,
        }
    }
}

impl<K: Copy> Arrivals<K> {
    /// Records an association admitted at `now`. Returns its serial
    /// number, which tells its entry from that of an earlier association
    /// under the same id (after an SCTP restart).
    pub fn push(&mut self, assoc: K, now: Instant) -> u64 {
        self.serial += 1;
        self.queue.push_back(Entry {
            assoc,
            serial: self.serial,
            since: now,
        });
        self.serial
    }

    /// Entries held, stale ones included.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// When the grace time of the oldest entry ends. Admission order is
    /// expiry order, so the front alone decides. The entry may be stale:
    /// then `expired` only drops it.
    pub fn next_expiry(&self, grace: Duration) -> Option<Instant> {
        self.queue.front().map(|e| e.since + grace)
    }

    /// Takes out the oldest association whose grace time is over at `now`;
    /// call until `None`.
    pub fn expired(
        &mut self,
        now: Instant,
        grace: Duration,
        standing: impl Fn(K, u64) -> Standing,
    ) -> Option<K> {
        self.drop_stale_front(&standing);
        let e = self.queue.front()?;
        if now < e.since + grace {
            return None;
        }
        self.queue.pop_front().map(|e| e.assoc)
    }

    /// Takes out the association to abort so that a newer one fits: the
    /// oldest whose log in is not being checked; when every one's is, the
    /// newest.
    ///
    /// Sparing those under check: a log in has arrived there and answers
    /// within one check (success moves it to the sessions, failure closes
    /// it), while one that has sent nothing may never send anything. When
    /// all are under check, the newest gives way: the blocking pool answers
    /// checks in order, so the oldest are the nearest to freeing their
    /// place by themselves. An administrator whose password is already
    /// verified is never under check (it logs in at once), so this case is
    /// refused guesses and first log ins after a restart.
    ///
    /// Only entries under check (and stale ones among them) are passed
    /// over, and those number at most the cap, so the scan is bounded by
    /// the cap, not by the associations a flood brings.
    pub fn victim(&mut self, standing: impl Fn(K, u64) -> Standing) -> Option<K> {
        self.drop_stale_front(&standing);
        let i = self
            .queue
            .iter()
            .position(|e| standing(e.assoc, e.serial) == Standing::Waiting)
            .or_else(|| {
                self.queue
                    .iter()
                    .rposition(|e| standing(e.assoc, e.serial) == Standing::Checking)
            })?;
        self.queue.remove(i).map(|e| e.assoc)
    }

    /// Drops every stale entry once they outnumber the `live` ones, so the
    /// queue stays within twice the live entries plus a constant, at an
    /// amortized O(1) per entry.
    pub fn compact(&mut self, live: usize, standing: impl Fn(K, u64) -> Standing) {
        if self.queue.len() > 2 * live + SLACK {
            self.queue
                .retain(|e| standing(e.assoc, e.serial) != Standing::Gone);
        }
    }

    fn drop_stale_front(&mut self, standing: &impl Fn(K, u64) -> Standing) {
        while let Some(e) = self.queue.front() {
            if standing(e.assoc, e.serial) != Standing::Gone {
                return;
            }
            self.queue.pop_front();
        }
    }
}

/// Why an association was aborted before it logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Its log-in grace time ran out.
    Grace,
    /// Too many associations had not logged in; it made room.
    Room,
}

/// Counts aborts before log in and says when to log them: the first at
/// once, then at most one line per [`LOG_INTERVAL`] with the count, so
/// that unauthenticated peers cannot flood the log.
#[derive(Debug, Default)]
pub struct AbortLog {
    grace: u64,
    room: u64,
    last_line: Option<Instant>,
}

/// One log line's worth of aborts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Aborted when their grace time ran out.
    pub grace: u64,
    /// Aborted to make room.
    pub room: u64,
    /// Since the previous line, if there was one.
    pub over: Option<Duration>,
}

impl AbortLog {
    /// Counts one abort; returns the line to log now, if one is due.
    pub fn record(&mut self, cause: Cause, now: Instant) -> Option<Summary> {
        match cause {
            Cause::Grace => self.grace += 1,
            Cause::Room => self.room += 1,
        }
        self.flush(now)
    }

    /// When the counted aborts are to be logged, if any wait.
    pub fn due(&self) -> Option<Instant> {
        if self.grace + self.room == 0 {
            return None;
        }
        // None only before the first line, and `record` writes that at once.
        self.last_line.map(|t| t + LOG_INTERVAL)
    }

    /// The line to log at `now`, if one is due.
    pub fn flush(&mut self, now: Instant) -> Option<Summary> {
        if self.grace + self.room == 0 || self.last_line.is_some_and(|t| now < t + LOG_INTERVAL) {
            return None;
        }
        let s = Summary {
            grace: self.grace,
            room: self.room,
            over: self.last_line.map(|t| now.saturating_duration_since(t)),
        };
        self.grace = 0;
        self.room = 0;
        self.last_line = Some(now);
        Some(s)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // to_make_room: for newer ones (--max-mgmt-unauthenticated);
        // grace_over: at the end of their log-in grace time (--mgmt-login-grace).
        write!(
            f,
            "management sessions aborted before log in: count={} to_make_room={} grace_over={}",
            self.grace + self.room,
            self.room,
            self.grace
        )?;
        if let Some(d) = self.over {
            write!(f, " window_s={}", d.as_secs())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    type AssocId = i32;

    const GRACE: Duration = Duration::from_secs(10);

    /// What the fake endpoint knows of each association: its serial number
    /// and standing.
    type World = HashMap<AssocId, (u64, Standing)>;

    fn look(w: &World) -> impl Fn(AssocId, u64) -> Standing + '_ {
        |id, serial| match w.get(&id) {
            Some((s, st)) if *s == serial => *st,
            _ => Standing::Gone,
        }
    }

    fn admit(q: &mut Arrivals<AssocId>, w: &mut World, id: AssocId, now: Instant) {
        let serial = q.push(id, now);
        w.insert(id, (serial, Standing::Waiting));
    }

    #[test]
    fn the_oldest_waiting_one_makes_room() {
        let t = Instant::now();
        let (mut q, mut w) = (Arrivals::default(), World::new());
        for id in 1..=4 {
            admit(&mut q, &mut w, id, t);
        }
        assert_eq!(q.victim(look(&w)), Some(1));
        w.remove(&1);
        // 2 logged in meanwhile: its entry is stale and skipped.
        w.get_mut(&2).unwrap().1 = Standing::Gone;
        assert_eq!(q.victim(look(&w)), Some(3));
        w.remove(&3);
        assert_eq!(q.victim(look(&w)), Some(4));
    }

    #[test]
    fn those_under_check_are_spared_unless_all_are() {
        let t = Instant::now();
        let (mut q, mut w) = (Arrivals::default(), World::new());
        for id in 1..=4 {
            admit(&mut q, &mut w, id, t);
        }
        for id in [1, 2, 4] {
            w.get_mut(&id).unwrap().1 = Standing::Checking;
        }
        assert_eq!(q.victim(look(&w)), Some(3));
        w.remove(&3);
        // All under check: the newest gives way.
        assert_eq!(q.victim(look(&w)), Some(4));
        w.remove(&4);
        assert_eq!(q.victim(look(&w)), Some(2));
        w.remove(&2);
        assert_eq!(q.victim(look(&w)), Some(1));
        w.remove(&1);
        assert_eq!(q.victim(look(&w)), None);
        assert!(q.is_empty());
    }

    #[test]
    fn a_restarted_association_is_a_new_entry() {
        let t = Instant::now();
        let (mut q, mut w) = (Arrivals::default(), World::new());
        admit(&mut q, &mut w, 7, t);
        admit(&mut q, &mut w, 8, t);
        // 7 restarts: same id, new serial, at the back of the queue.
        admit(&mut q, &mut w, 7, t + Duration::from_secs(1));
        assert_eq!(q.victim(look(&w)), Some(8));
        w.remove(&8);
        assert_eq!(q.victim(look(&w)), Some(7));
        assert!(q.is_empty(), "the first entry of 7 was stale");
    }

    #[test]
    fn grace_expires_in_admission_order() {
        let t = Instant::now();
        let (mut q, mut w) = (Arrivals::default(), World::new());
        admit(&mut q, &mut w, 1, t);
        admit(&mut q, &mut w, 2, t + Duration::from_secs(1));
        admit(&mut q, &mut w, 3, t + Duration::from_secs(2));
        w.get_mut(&2).unwrap().1 = Standing::Checking;
        w.get_mut(&3).unwrap().1 = Standing::Gone; // logged in
        assert_eq!(q.next_expiry(GRACE), Some(t + GRACE));
        assert_eq!(
            q.expired(t + GRACE - Duration::from_millis(1), GRACE, look(&w)),
            None
        );
        let later = t + GRACE + Duration::from_secs(5);
        // A log in under check does not stop the grace time.
        let mut out = Vec::new();
        while let Some(id) = q.expired(later, GRACE, look(&w)) {
            w.remove(&id);
            out.push(id);
        }
        assert_eq!(out, [1, 2]);
        assert!(q.is_empty(), "the logged-in one's entry is dropped too");
        assert_eq!(q.next_expiry(GRACE), None);
    }

    #[test]
    fn a_stale_front_only_brings_the_deadline_forward() {
        let t = Instant::now();
        let (mut q, mut w) = (Arrivals::default(), World::new());
        admit(&mut q, &mut w, 1, t);
        admit(&mut q, &mut w, 2, t + Duration::from_secs(4));
        w.remove(&1);
        assert_eq!(q.next_expiry(GRACE), Some(t + GRACE));
        assert_eq!(q.expired(t + GRACE, GRACE, look(&w)), None);
        assert_eq!(
            q.next_expiry(GRACE),
            Some(t + Duration::from_secs(4) + GRACE)
        );
    }

    #[test]
    fn compaction_bounds_the_queue() {
        let t = Instant::now();
        let (mut q, mut w) = (Arrivals::default(), World::new());
        // One old association waits at the front while 10 000 others come
        // and log in behind it.
        admit(&mut q, &mut w, 0, t);
        for id in 1..10_000 {
            admit(&mut q, &mut w, id, t);
            w.remove(&id);
            q.compact(1, look(&w));
            assert!(q.len() <= 2 + SLACK + 1, "{} entries", q.len());
        }
        assert_eq!(q.victim(look(&w)), Some(0));
    }

    #[test]
    fn aborts_are_logged_at_most_once_per_interval() {
        let t = Instant::now();
        let mut log = AbortLog::default();
        let first = log.record(Cause::Room, t).expect("the first at once");
        assert_eq!((first.room, first.grace, first.over), (1, 0, None));
        assert_eq!(log.due(), None);
        for i in 0..1000 {
            assert_eq!(log.record(Cause::Room, t + Duration::from_millis(i)), None);
        }
        assert_eq!(log.record(Cause::Grace, t + Duration::from_secs(9)), None);
        assert_eq!(log.due(), Some(t + LOG_INTERVAL));
        assert_eq!(log.flush(t + Duration::from_secs(9)), None);
        let s = log.flush(t + LOG_INTERVAL).expect("due");
        assert_eq!((s.room, s.grace, s.over), (1000, 1, Some(LOG_INTERVAL)));
        let line = s.to_string();
        assert_eq!(
            line,
            "management sessions aborted before log in: count=1001 to_make_room=1000 \
             grace_over=1 window_s=10"
        );
        // Nothing left: no wake-up is asked for.
        assert_eq!(log.due(), None);
        assert_eq!(log.flush(t + Duration::from_secs(30)), None);
        // After a quiet spell, the next one is logged at once again.
        let again = log.record(Cause::Grace, t + Duration::from_secs(30));
        assert_eq!(again.map(|s| s.grace), Some(1));
    }
}
