//! One worker's per-user counts since its last report: a slot per user
//! with a session open here (or a count waiting to be sent), found by name
//! once when the session opens; afterwards a tunnel adds its bytes to its
//! slot by index, with no hashing and no shared atomic per byte. Slots of
//! users with nothing open and nothing to send are freed at each report,
//! so memory follows the users active on this worker.

use std::collections::HashMap;
use std::mem;
use std::sync::Arc;

use crate::metrics::UserDelta;

/// No user's slot (a session without a user, or not counted).
pub(super) const NO_USER: u32 = u32::MAX;

#[derive(Debug)]
struct Slot {
    name: Arc<str>,
    /// Sessions of this worker holding the slot.
    refs: u32,
    delta: UserDelta,
    /// In `Accounts::dirty`.
    dirty: bool,
}

/// Per-user deltas of one worker.
#[derive(Debug, Default)]
pub(super) struct Accounts {
    index: HashMap<Arc<str>, u32>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    dirty: Vec<u32>,
}

impl Accounts {
    fn slot_of(&mut self, name: &Arc<str>) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let slot = Slot {
            name: Arc::clone(name),
            refs: 0,
            delta: UserDelta::default(),
            dirty: false,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(Arc::clone(name), i);
        i
    }

    #[inline]
    fn touch(&mut self, i: u32) -> &mut UserDelta {
        let slot = self.slots[i as usize].as_mut().expect("a slot in use");
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(i);
        }
        &mut slot.delta
    }

    /// A session of `name` opened: its slot, to pass to `bytes` and `close`.
    pub(super) fn open(&mut self, name: &Arc<str>) -> u32 {
        let i = self.slot_of(name);
        if let Some(s) = self.slots[i as usize].as_mut() {
            s.refs += 1;
        }
        let d = self.touch(i);
        d.sessions += 1;
        d.open += 1;
        i
    }

    /// The session holding `slot` closed.
    pub(super) fn close(&mut self, slot: u32) {
        if let Some(s) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) {
            s.refs = s.refs.saturating_sub(1);
            self.touch(slot).open -= 1;
        }
    }

    /// Bytes a session holding `slot` relayed.
    #[inline]
    pub(super) fn bytes(&mut self, slot: u32, up: u64, down: u64) {
        if slot != NO_USER && (up | down) != 0 {
            let d = self.touch(slot);
            d.bytes_up += up;
            d.bytes_down += down;
        }
    }

    /// Counts something for `name` outside a session (a failed log in, a
    /// denied request).
    pub(super) fn count(&mut self, name: &Arc<str>, f: impl FnOnce(&mut UserDelta)) {
        let i = self.slot_of(name);
        f(self.touch(i));
    }

    /// What changed since the last call; slots nothing holds are freed.
    pub(super) fn drain(&mut self) -> Vec<(Arc<str>, UserDelta)> {
        let dirty = mem::take(&mut self.dirty);
        let mut out = Vec::with_capacity(dirty.len());
        for i in dirty {
            let Some(s) = self.slots[i as usize].as_mut() else {
                continue;
            };
            s.dirty = false;
            let d = mem::take(&mut s.delta);
            if !d.is_zero() {
                out.push((Arc::clone(&s.name), d));
            }
            if s.refs == 0 {
                self.index.remove(&s.name);
                self.slots[i as usize] = None;
                self.free.push(i);
            }
        }
        out
    }

    /// Users with a slot (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_bytes_and_counts_are_drained_and_idle_slots_freed() {
        let mut a = Accounts::default();
        let alice: Arc<str> = "alice".into();
        let bob: Arc<str> = "bob".into();
        let s1 = a.open(&alice);
        let s2 = a.open(&alice);
        assert_eq!(s1, s2, "one slot per user");
        a.bytes(s1, 100, 7);
        a.bytes(s2, 1, 0);
        a.count(&bob, |d| d.auth_failed += 1);
        let mut got = a.drain();
        got.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].1,
            UserDelta {
                sessions: 2,
                open: 2,
                bytes_up: 101,
                bytes_down: 7,
                ..UserDelta::default()
            }
        );
        assert_eq!(got[1].1.auth_failed, 1);
        assert_eq!(a.len(), 1, "bob's slot freed: nothing holds it");
        assert!(a.drain().is_empty(), "nothing new");
        a.close(s1);
        a.close(s2);
        let got = a.drain();
        assert_eq!(got[0].1.open, -2);
        assert_eq!(a.len(), 0, "alice's freed too");
        // A freed slot is reused.
        assert_eq!(a.open(&bob), s1);
    }
}
