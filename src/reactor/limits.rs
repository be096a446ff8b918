//! Sessions per user and per client address, counted across every worker
//! (`--max-sessions-per-user`, `--max-sessions-per-client`).
//!
//! A count is taken when a session starts and given back when it ends;
//! past the limit the taking fails and nothing is counted. The tables are
//! sharded by hash, each shard behind its own mutex, and are touched only
//! when a limit is set: without limits a session costs nothing here.
//! Entries whose count falls to zero are removed, so the memory follows
//! the sessions open, not every user or address ever seen.

use std::collections::HashMap;
use std::collections::hash_map::{DefaultHasher, Entry};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

/// Open sessions per key, bounded by `max`.
#[derive(Debug)]
pub struct Counts<K> {
    max: u32,
    shards: Vec<Mutex<HashMap<K, u32>>>,
}

impl<K: Hash + Eq + Clone> Counts<K> {
    /// At most `max` sessions per key.
    pub fn new(max: u32) -> Self {
        Counts {
            max,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &K) -> &Mutex<HashMap<K, u32>> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[h.finish() as usize % SHARDS]
    }

    /// Takes one session for `key`; false (and nothing taken) past the limit.
    pub fn take(&self, key: &K) -> bool {
        let mut map = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        match map.entry(key.clone()) {
            Entry::Occupied(mut e) if *e.get() < self.max => *e.get_mut() += 1,
            Entry::Occupied(_) => return false,
            Entry::Vacant(e) if self.max > 0 => {
                e.insert(1);
            }
            Entry::Vacant(_) => return false,
        }
        true
    }

    /// Gives back a session `take` gave.
    pub fn give_back(&self, key: &K) {
        let mut map = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        if let Entry::Occupied(mut e) = map.entry(key.clone()) {
            if *e.get() <= 1 {
                e.remove();
            } else {
                *e.get_mut() -= 1;
            }
        }
    }

    /// Sessions open for `key`.
    pub fn open(&self, key: &K) -> u32 {
        let map = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).copied().unwrap_or(0)
    }

    /// Keys with a session open.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether no key has a session open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The limits every worker shares.
#[derive(Debug, Default)]
pub struct SessionLimits {
    /// Sessions per user, when limited.
    pub per_user: Option<Counts<Arc<str>>>,
    /// Client connections per client address, when limited.
    pub per_client: Option<Counts<IpAddr>>,
}

impl SessionLimits {
    /// Limits of `per_user` sessions per user and `per_client` connections
    /// per client address (`None`: no limit).
    pub fn new(per_user: Option<u32>, per_client: Option<u32>) -> Self {
        SessionLimits {
            per_user: per_user.map(Counts::new),
            per_client: per_client.map(Counts::new),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_up_to_the_limit_and_gives_back() {
        let c: Counts<Arc<str>> = Counts::new(2);
        let alice: Arc<str> = "alice".into();
        let bob: Arc<str> = "bob".into();
        assert!(c.take(&alice));
        assert!(c.take(&alice));
        assert!(!c.take(&alice), "a third past the limit of 2");
        assert!(c.take(&bob), "others have their own count");
        assert_eq!(c.open(&alice), 2);
        c.give_back(&alice);
        assert!(c.take(&alice));
        c.give_back(&alice);
        c.give_back(&alice);
        c.give_back(&bob);
        assert!(c.is_empty(), "entries at zero are removed");
        // Giving back what was never taken changes nothing.
        c.give_back(&bob);
        assert!(c.is_empty());
    }

    #[test]
    fn many_threads_never_pass_the_limit() {
        let c = Arc::new(Counts::new(5));
        let ip: IpAddr = [192, 0, 2, 1].into();
        let taken: u32 = (0..8)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || (0..100).filter(|_| c.take(&ip)).count() as u32)
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(taken, 5);
        assert_eq!(c.open(&ip), 5);
    }
}
