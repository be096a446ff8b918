//! The rules in force, shared by every worker and replaced whole on reload:
//! a worker keeps its own snapshot and looks at one atomic version number
//! per use, so judging takes no lock (the shape of `users::Directory`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Rules;

/// The current rules.
#[derive(Debug)]
pub struct Shared {
    version: AtomicU64,
    current: Mutex<Arc<Rules>>,
}

impl Shared {
    /// Shares `rules`.
    pub fn new(rules: Rules) -> Arc<Shared> {
        Arc::new(Shared {
            version: AtomicU64::new(0),
            current: Mutex::new(Arc::new(rules)),
        })
    }

    /// The rules now.
    pub fn snapshot(&self) -> Arc<Rules> {
        Arc::clone(&self.current.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts `rules` in force: every request judged from now on sees them.
    pub fn replace(&self, rules: Rules) {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *cur = Arc::new(rules);
        self.version.fetch_add(1, Ordering::Release);
    }

    /// A reader for one thread.
    pub fn reader(self: &Arc<Self>) -> Reader {
        Reader {
            seen: self.version.load(Ordering::Acquire),
            rules: self.snapshot(),
            shared: Arc::clone(self),
        }
    }
}

/// One thread's view of the rules.
#[derive(Debug)]
pub struct Reader {
    shared: Arc<Shared>,
    seen: u64,
    rules: Arc<Rules>,
}

impl Reader {
    /// The rules in force.
    #[inline]
    pub fn current(&mut self) -> &Arc<Rules> {
        let v = self.shared.version.load(Ordering::Acquire);
        if v != self.seen {
            self.seen = v;
            self.rules = self.shared.snapshot();
        }
        &self.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_a_replacement_at_its_next_use() {
        let shared = Shared::new(Rules::parse("a", "allow").unwrap());
        let mut r = shared.reader();
        assert_eq!(r.current().file(), "a");
        shared.replace(Rules::parse("b", "deny").unwrap());
        assert_eq!(r.current().file(), "b");
    }
}
