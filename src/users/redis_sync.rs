//! The users' subscriber (`--users-redis`): one thread that follows the
//! Redis store, so that a change made through any instance, or in Redis
//! directly, reaches this one's table within milliseconds.
//!
//! It subscribes to the channel first, then reads the whole table: a
//! change published in between waits in the socket and is applied after.
//! For each message it reads the user the message names (HGET), or the
//! whole table (HGETALL) when the message names no user, and applies it.
//!
//! When the connection is lost the table is kept as it is (stale, METRICS
//! X'89' = 1): clients log in as before, while changes are refused with
//! X'07' by the users' writer. One line says so; the thread then tries
//! again after 100 ms, doubling up to 2 s, silently; once it is back it
//! subscribes again, reads the whole table (what changed meanwhile,
//! deletions included) and says how long it was lost.
//!
//! Each read and its application to the table happen under the lock the
//! writer holds from its script to its own application, so the table
//! never goes back to an older value than Redis has.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::RedisError;

use super::redis_store::{self, Loaded, RedisUsers};
use super::{Directory, valid_name};
use crate::logfmt::{LogSafe, Quoted};

/// The first wait before connecting again; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often the thread looks up from the socket (for a stop).
const POLL: Duration = Duration::from_millis(250);
/// After this long with nothing on the channel, a PING checks the
/// connection (a server that vanished without closing it).
const IDLE_PING: Duration = Duration::from_secs(10);
/// The most changes applied together; a burst past it reads everything.
const BATCH: usize = 1024;
/// How long the thread waits for the next change of a burst before it
/// applies what came (the kernel rounds it up to its clock tick).
const BURST: Duration = Duration::from_millis(1);
/// Changes are gathered only when applying one took this long: with a
/// small table each is applied at once, with no wait.
const GATHER_ABOVE: Duration = Duration::from_millis(2);
/// The longest a burst is gathered: the most a change in it waits.
const GATHER: Duration = Duration::from_millis(20);
/// The most lines about malformed entries in a minute.
const SKIPS_PER_MINUTE: u32 = 10;

/// The order of the table's changes: held from a read in Redis (or the
/// writer's script) to its application to the table.
pub type Order = Arc<Mutex<()>>;

/// What the thread needs once the server runs: the table to keep and the
/// counters to set.
#[derive(Debug)]
pub struct Live {
    /// The table.
    pub dir: Arc<Directory>,
    /// METRICS X'89' and X'8A'.
    pub health: Arc<StoreHealth>,
}

/// How the Redis user store fares, written by the subscriber only and read
/// by the metrics: METRICS X'89' (stale) and X'8A' (lost).
#[derive(Debug, Default)]
pub struct StoreHealth {
    stale: AtomicBool,
    lost: AtomicU64,
}

impl StoreHealth {
    /// Marks the user table stale (its Redis store lost) or fresh.
    pub fn set_stale(&self, stale: bool) {
        self.stale.store(stale, Ordering::Relaxed);
    }

    /// Counts one loss of the connection to the store.
    pub fn add_lost(&self) {
        self.lost.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the table is stale now.
    pub fn stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// Losses so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// The subscriber after its first load, waiting for the table it keeps.
#[derive(Debug)]
pub struct Pending {
    go: Sender<Live>,
    handle: Subscriber,
}

/// The running subscriber.
#[derive(Debug)]
pub struct Subscriber {
    stop: Arc<AtomicBool>,
    wake: Option<Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Pending {
    /// Starts the thread: it connects, subscribes and reads the whole
    /// table, which is returned. An error (Redis not reached) says why.
    pub fn open(at: RedisUsers, order: Order) -> Result<(Pending, Loaded), String> {
        let (ready_tx, ready) = crossbeam_channel::bounded(1);
        let (go, go_rx) = crossbeam_channel::bounded(1);
        let (wake, wake_rx) = crossbeam_channel::bounded(0);
        let stop = Arc::new(AtomicBool::new(false));
        let mut f = Follower {
            at,
            order,
            stop: Arc::clone(&stop),
            wake: wake_rx,
            live: None,
            skips: SkipLog::new(),
        };
        let thread = thread::Builder::new()
            .name("users-redis".into())
            .spawn(move || f.run(ready_tx, go_rx))
            .map_err(|e| e.to_string())?;
        let handle = Subscriber {
            stop,
            wake: Some(wake),
            thread: Some(thread),
        };
        match ready.recv() {
            Ok(Ok(loaded)) => Ok((Pending { go, handle }, loaded)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the users' subscriber ended".into()),
        }
    }

    /// Hands the thread the table to keep from now on.
    pub fn run(self, live: Live) -> Subscriber {
        let _ = self.go.send(live);
        self.handle
    }
}

impl Subscriber {
    /// Stops the thread and waits for it (a quarter of a second at most,
    /// unless a Redis command is under way).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        drop(self.wake.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // Dropped unused (a start that failed): the thread ends by itself.
        self.stop.store(true, Ordering::Release);
    }
}

/// How a session with Redis ended.
enum Ended {
    /// Asked to stop (or the server never started).
    Stopped,
    /// The connection failed; `loaded` says whether it had loaded the
    /// table (and so had been in use) first.
    Failed { loaded: bool, error: RedisError },
}

/// What to do with the table a session loaded.
enum Start {
    /// The first: hand it to the server starting, then wait for the
    /// directory.
    First {
        ready: Sender<Result<Loaded, String>>,
        go: Receiver<Live>,
    },
    /// After a loss: replace the table, say how long it was lost.
    Again { since: Instant },
}

/// The thread's state.
struct Follower {
    at: RedisUsers,
    order: Order,
    stop: Arc<AtomicBool>,
    /// Never sent to: disconnected when the thread is to stop, which ends
    /// a wait at once.
    wake: Receiver<()>,
    live: Option<Live>,
    skips: SkipLog,
}

impl Follower {
    fn run(&mut self, ready: Sender<Result<Loaded, String>>, go: Receiver<Live>) {
        let first = Start::First {
            ready: ready.clone(),
            go,
        };
        let mut error = match self.session(first) {
            Ended::Stopped => return,
            Ended::Failed {
                loaded: false,
                error,
            } => {
                let _ = ready.send(Err(format!("{}: {error}", self.at)));
                return;
            }
            Ended::Failed { error, .. } => error,
        };
        drop(ready);
        loop {
            // Lost: one line, then silent attempts until it is back.
            let since = Instant::now();
            if let Some(live) = &self.live {
                live.health.set_stale(true);
                live.health.add_lost();
            }
            log::warn!(
                "user table stale: store={} error={} hint=\"clients log in with the last \
                 table held; user changes are refused (X'07') until the store is back\"",
                self.at,
                Quoted(&error)
            );
            let mut backoff = MIN_BACKOFF;
            error = loop {
                match self.wake.recv_timeout(backoff) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                match self.session(Start::Again { since }) {
                    Ended::Stopped => return,
                    Ended::Failed {
                        loaded: false,
                        error,
                    } => {
                        log::debug!("users store still lost: error={}", Quoted(error));
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    Ended::Failed { error, .. } => break error,
                }
            };
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Connects, subscribes, loads the whole table, then applies messages
    /// until the connection fails or the thread is to stop.
    fn session(&mut self, start: Start) -> Ended {
        let failed = |error| Ended::Failed {
            loaded: false,
            error,
        };
        let mut sub = match self.at.connect() {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        let mut ps = sub.as_pubsub();
        if let Err(e) = ps.subscribe(self.at.channel()) {
            return failed(e);
        }
        let mut con = match self.at.connect() {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        match start {
            Start::First { ready, go } => {
                let loaded = match redis_store::load(&mut con, &self.at) {
                    Ok(l) => l,
                    Err(e) => return failed(e),
                };
                self.note_skipped(&loaded);
                let _ = ready.send(Ok(loaded));
                match go.recv() {
                    Ok(live) => self.live = Some(live),
                    Err(_) => return Ended::Stopped,
                }
            }
            Start::Again { since } => {
                let users = match self.reload(&mut con) {
                    Ok(n) => n,
                    Err(e) => return failed(e),
                };
                if let Some(live) = &self.live {
                    live.health.set_stale(false);
                }
                log::info!(
                    "user table fresh: store={} lost_ms={} users={users}",
                    self.at,
                    since.elapsed().as_millis()
                );
            }
        }
        if let Err(e) = ps.set_read_timeout(Some(POLL)) {
            return Ended::Failed {
                loaded: true,
                error: e,
            };
        }
        let mut heard = Instant::now();
        loop {
            if self.stopping() {
                return Ended::Stopped;
            }
            let step = match ps.get_message() {
                Ok(msg) => {
                    heard = Instant::now();
                    // The change at once. When applying it took long (a
                    // copy of a large table), those right behind it (a
                    // burst) are gathered and applied together: one copy
                    // for them all costs less than the short wait.
                    let first = vec![msg.get_payload_bytes().to_vec()];
                    let t0 = Instant::now();
                    self.on_messages(&mut con, first)
                        .and_then(|()| match t0.elapsed() < GATHER_ABOVE {
                            true => Ok(Vec::new()),
                            false => gather(&mut ps),
                        })
                        .and_then(|more| match more.is_empty() {
                            true => Ok(()),
                            false => self.on_messages(&mut con, more),
                        })
                }
                Err(e) if e.is_timeout() && heard.elapsed() < IDLE_PING => Ok(()),
                Err(e) if e.is_timeout() => {
                    heard = Instant::now();
                    ps.set_read_timeout(Some(redis_store::IO_TIMEOUT))
                        .and_then(|()| ps.ping::<redis::Value>())
                        .and_then(|_| ps.set_read_timeout(Some(POLL)))
                }
                Err(e) => Err(e),
            };
            if let Err(error) = step {
                return Ended::Failed {
                    loaded: true,
                    error,
                };
            }
        }
    }

    /// Applies what messages name: users, or everything. The users named
    /// are read with one HMGET and applied with one copy of the table, so
    /// that a burst of changes (a script changing thousands of users) costs
    /// one copy, not one per change; a burst past [`BATCH`] names, or a
    /// message that names no user, reads everything instead.
    fn on_messages(
        &mut self,
        con: &mut redis::Connection,
        mut names: Vec<Vec<u8>>,
    ) -> redis::RedisResult<()> {
        if names.len() >= BATCH || !names.iter().all(|n| valid_name(n)) {
            self.reload(con)?;
            return Ok(());
        }
        let Some(live) = &self.live else {
            return Ok(());
        };
        names.sort_unstable();
        names.dedup();
        let _order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let values = redis_store::load_some(con, &self.at, &names)?;
        let mut records = Vec::with_capacity(names.len());
        for (name, value) in names.iter().zip(values) {
            let record = match value.as_deref().map(|v| redis_store::parse_entry(name, v)) {
                None => None,
                Some(Ok(r)) => Some(r),
                Some(Err(why)) => {
                    self.skips
                        .note(&self.at, &String::from_utf8_lossy(name), why);
                    None
                }
            };
            records.push((name, record));
        }
        let _ = live.dir.update(|t| {
            let mut changed = false;
            for (name, record) in records {
                match record {
                    // This instance's own change, or one it has already.
                    Some(r)
                        if t.find(name).is_some_and(|u| {
                            u.role == r.role && u.secret.stored() == Some(&r.hash)
                        }) => {}
                    Some(r) => {
                        t.insert(name, r.role, super::Secret::from_stored(r.hash));
                        changed = true;
                    }
                    None => changed |= t.remove(name).is_ok(),
                }
            }
            if changed { Ok(()) } else { Err(()) }
        });
        log::debug!(
            "user changes applied: store={} users={}",
            self.at,
            names.len()
        );
        Ok(())
    }

    /// Reads and applies the whole table, under the order lock; the
    /// number of users.
    fn reload(&mut self, con: &mut redis::Connection) -> redis::RedisResult<usize> {
        let Some(live) = &self.live else {
            return Ok(0);
        };
        let order = Arc::clone(&self.order);
        let _order = order.lock().unwrap_or_else(|e| e.into_inner());
        let loaded = redis_store::load(con, &self.at)?;
        let n = loaded.records.len();
        let skipped = loaded.skipped.len();
        let _ = live.dir.update(|t| -> Result<(), ()> {
            *t = t.rebuilt(loaded.records);
            Ok(())
        });
        for (name, why) in &loaded.skipped {
            self.skips.note(&self.at, name, why);
        }
        log::info!(
            "users loaded from redis: store={} key={} users={n} skipped={skipped}",
            self.at,
            LogSafe(self.at.key())
        );
        Ok(n)
    }

    fn note_skipped(&mut self, loaded: &Loaded) {
        for (name, why) in &loaded.skipped {
            self.skips.note(&self.at, name, why);
        }
        log::info!(
            "users loaded from redis: store={} key={} users={} skipped={}",
            self.at,
            LogSafe(self.at.key()),
            loaded.records.len(),
            loaded.skipped.len()
        );
    }
}

/// The messages that come right behind one: each within [`BURST`] of the
/// last, for at most [`GATHER`] and [`BATCH`] names. The channel's time
/// limit is [`POLL`] again afterwards.
fn gather(ps: &mut redis::PubSub<'_>) -> redis::RedisResult<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    let start = Instant::now();
    ps.set_read_timeout(Some(BURST))?;
    while names.len() < BATCH && start.elapsed() < GATHER {
        match ps.get_message() {
            Ok(msg) => names.push(msg.get_payload_bytes().to_vec()),
            Err(e) if e.is_timeout() => break,
            Err(e) => return Err(e),
        }
    }
    ps.set_read_timeout(Some(POLL))?;
    Ok(names)
}

/// Lines about malformed entries: at most [`SKIPS_PER_MINUTE`] a minute,
/// the rest counted in one line when the minute is over.
#[derive(Debug)]
struct SkipLog {
    since: Instant,
    logged: u32,
    hidden: u64,
}

impl SkipLog {
    fn new() -> SkipLog {
        SkipLog {
            since: Instant::now(),
            logged: 0,
            hidden: 0,
        }
    }

    /// Whether to log a skip now (and the count of those not logged in
    /// the minute that just ended, if any).
    fn admit(&mut self, now: Instant) -> (bool, u64) {
        let mut ended = 0;
        if now.duration_since(self.since) >= Duration::from_secs(60) {
            ended = std::mem::take(&mut self.hidden);
            self.since = now;
            self.logged = 0;
        }
        if self.logged < SKIPS_PER_MINUTE {
            self.logged += 1;
            (true, ended)
        } else {
            self.hidden += 1;
            (false, ended)
        }
    }

    fn note(&mut self, at: &RedisUsers, name: &str, why: &str) {
        let (log_it, hidden) = self.admit(Instant::now());
        if hidden > 0 {
            log::warn!("users entries skipped without a line: store={at} count={hidden}");
        }
        if log_it {
            log::warn!(
                "users entry skipped: store={at} user={} reason={}",
                LogSafe(name),
                Quoted(why)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_lines_are_bounded_per_minute() {
        let mut s = SkipLog::new();
        let t0 = s.since;
        let logged = (0..25).filter(|_| s.admit(t0).0).count();
        assert_eq!(logged, SKIPS_PER_MINUTE as usize);
        assert_eq!(s.hidden, 15);
        // The next minute logs again, and tells how many were not.
        assert_eq!(s.admit(t0 + Duration::from_secs(61)), (true, 15));
        assert_eq!(s.hidden, 0);
    }
}
