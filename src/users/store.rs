//! The users' writer: the one thread that changes the user table at run
//! time, and keeps the users file in step with it.
//!
//! Hashing a password (Argon2id) and making the file durable (fsync) take
//! milliseconds, so they never run on a worker. A change is written to the
//! file before it is published to the workers and before the success
//! response; if the write fails, nothing changes and the answer is X'07'
//! (docs/management-protocol.md section 6).
//!
//! With the users in Redis (`--users-redis`) a change is one script there
//! (check, write, publish: [`super::redis_store::SCRIPT`]), and the table
//! changes only once Redis said yes; Redis unreachable, or any error, is
//! X'07' with nothing changed.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::Receiver;

pub use super::MAX_USERS;
pub use super::change::UserChange;
use super::file::{self, Record};
use super::redis_store::{self, Prepared, RedisUsers};
use super::redis_sync::Order;
use super::{Directory, Role, Secret, UserError, UserTable};
use crate::logfmt::{LogSafe, Quoted};

/// A change and where its answer goes (the asker's inbox, wake-up
/// included): the writer knows none of its callers.
pub struct ChangeRequest {
    /// What to change.
    pub change: UserChange,
    /// Called on the writer's thread with the outcome.
    pub answer: Box<dyn FnOnce(Result<(), UserError>) + Send>,
}

impl fmt::Debug for ChangeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.change.fmt(f)
    }
}

/// Something else a reload reads besides the users file (the access
/// rules): it puts what it read in force and says Ok, or changes nothing
/// and says Err, having logged why.
pub type ReloadHook = Box<dyn Fn() -> Result<(), ()> + Send>;

/// The writer's state.
pub struct Store {
    dir: Arc<Directory>,
    path: Option<PathBuf>,
    max_users: usize,
    /// Test hook: the cost of new hashes.
    cost: file::Cost,
    /// Test-only fault hook (debug builds): a pause before each rename.
    save_delay: SaveDelay,
    /// The users file as this writer last read or wrote it: when it is
    /// different at the next change, someone else (`socks5d user`) changed
    /// it, and it is read again first.
    seen: std::cell::Cell<Option<file::Stamp>>,
    /// Also read on every reload.
    also: Option<ReloadHook>,
    /// The users in Redis instead of a file.
    redis: Option<RedisWriter>,
}

/// The writer's side of the Redis store: where it is, the connection
/// (made on the first change, made again after an error), and the lock
/// that orders its changes with the subscriber's.
struct RedisWriter {
    at: RedisUsers,
    order: Order,
    con: std::cell::RefCell<Option<redis::Connection>>,
}

impl RedisWriter {
    /// Runs `f` on the connection, connecting first if need be; an error
    /// drops the connection, so that the next call connects again.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let mut slot = self.con.borrow_mut();
        let con = match &mut *slot {
            Some(c) => c,
            None => slot.insert(self.at.connect()?),
        };
        let out = f(con);
        if out.is_err() {
            *slot = None;
        }
        out
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("max_users", &self.max_users)
            .field("also", &self.also.is_some())
            .field("redis", &self.redis.as_ref().map(|r| &r.at))
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A writer for `dir`, persisting to `path` when given.
    pub fn new(dir: Arc<Directory>, path: Option<PathBuf>) -> Self {
        Store {
            dir,
            path,
            max_users: MAX_USERS,
            cost: file::Cost::DEFAULT,
            save_delay: SaveDelay::from_env(),
            seen: std::cell::Cell::new(None),
            also: None,
            redis: None,
        }
    }

    /// Keeps the users in Redis at `at` (and no file), ordering changes
    /// with the subscriber through `order`.
    pub fn with_redis(mut self, at: RedisUsers, order: Order) -> Self {
        self.redis = Some(RedisWriter {
            at,
            order,
            con: std::cell::RefCell::new(None),
        });
        self
    }

    /// Reads `hook` too on every reload (SIGHUP, RELOAD), after the users
    /// file has been read and before it is put in force: when the hook
    /// fails, the users stay as they were too.
    pub fn with_reload(mut self, hook: ReloadHook) -> Self {
        self.also = Some(hook);
        self
    }

    /// Uses `cost` for new password hashes (tests use a cheap one).
    pub fn with_cost(mut self, cost: file::Cost) -> Self {
        self.cost = cost;
        self
    }

    /// Limits the table to `n` users.
    pub fn with_max_users(mut self, n: usize) -> Self {
        self.max_users = n;
        self
    }

    /// Starts the writer thread; it ends when every sender is dropped.
    pub fn spawn(self, rx: Receiver<ChangeRequest>) -> io::Result<thread::JoinHandle<()>> {
        thread::Builder::new()
            .name("users-writer".into())
            .spawn(move || {
                while let Ok(ChangeRequest { change, answer }) = rx.recv() {
                    answer(self.apply(&change));
                }
            })
    }

    fn secret(&self, password: &[u8]) -> Secret {
        match self.path {
            Some(_) => Secret::with_hash(password, file::hash_password_with(password, self.cost)),
            None => Secret::new(password),
        }
    }

    /// Applies one change. On any failure the table and the file are as
    /// before.
    ///
    /// With a users file, the change is made under the file's lock, and if
    /// the file changed on disk since this writer last read or wrote it (a
    /// `socks5d user` command), it is read again first: neither side loses
    /// the other's changes.
    pub fn apply(&self, change: &UserChange) -> Result<(), UserError> {
        if let Some(r) = &self.redis {
            return self.apply_redis(r, change);
        }
        // Hash outside the lock and the table update: it is the slow part.
        let secret = match change {
            UserChange::Add { password, .. } | UserChange::SetPassword { password, .. } => {
                Some(self.secret(password))
            }
            UserChange::Delete { .. } | UserChange::Reload => None,
        };
        let _lock = match &self.path {
            Some(path) => Some(file::lock(path).map_err(|e| {
                log::error!(
                    "user change not made: {change} path={} reason=not-locked error={}",
                    LogSafe(path.display()),
                    Quoted(&e)
                );
                UserError::NotDurable
            })?),
            None => None,
        };
        if let UserChange::Reload = change {
            // Read by this thread too, so that a reload and a change made
            // over the management protocol never interleave.
            return self.reload();
        }
        if let Some(path) = &self.path {
            // A file that is not there (yet) has nothing to read; one this
            // writer has not read yet (its first change) is read quietly.
            let now = file::stamp(path).ok().flatten();
            let changed = match (now, self.seen.get()) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(now), Some(seen)) => {
                    if now != seen {
                        log::info!(
                            "users file changed on disk: path={}",
                            LogSafe(path.display())
                        );
                    }
                    now != seen
                }
            };
            // A file that cannot be read now cannot take the change either.
            if changed {
                self.reload().map_err(|_| UserError::NotDurable)?;
            }
        }
        let result = self
            .dir
            .update(|t: &mut UserTable| -> Result<(), UserError> {
                match change {
                    UserChange::Add { name, role, .. } => {
                        if t.find(name).is_some() {
                            return Err(UserError::Exists);
                        }
                        if t.len() >= self.max_users {
                            return Err(UserError::Full);
                        }
                        t.insert(name, *role, secret.clone().expect("a secret for ADD_USER"));
                    }
                    UserChange::Delete { name } => {
                        let user = t.find(name).ok_or(UserError::NoSuchUser)?;
                        // docs/management-protocol.md, status X'06': "the change would leave the server
                        // without an administrator".
                        if user.role == Role::Admin && t.count(Role::Admin) == 1 {
                            return Err(UserError::LastAdmin);
                        }
                        t.remove(name)?;
                    }
                    UserChange::SetPassword { name, .. } => {
                        t.set_secret(name, secret.clone().expect("a secret for SET_PASSWORD"))?;
                    }
                    UserChange::Reload => unreachable!("answered by reload above"),
                }
                self.persist(t)
            });
        match result {
            Ok(()) => log::debug!("user change made: {change}"),
            Err(e) => log::debug!("user change refused: {change} error={}", Quoted(e)),
        }
        result
    }

    /// Replaces the table with the users file as it is now. A user whose
    /// stored hash did not change keeps its secret, and so its verified
    /// password. A file that cannot be read or parsed, or no file at all,
    /// changes nothing.
    fn reload(&self) -> Result<(), UserError> {
        let Some(path) = &self.path else {
            return match &self.also {
                Some(hook) => hook().map_err(|()| UserError::Unreadable),
                None => {
                    log::warn!("users not reloaded: reason=no-users-file");
                    Err(UserError::Unreadable)
                }
            };
        };
        let before = file::stamp(path).ok().flatten();
        let records = file::load(path).map_err(|e| {
            log::error!(
                "users file not reloaded: path={} error={}",
                LogSafe(path.display()),
                Quoted(e)
            );
            UserError::Unreadable
        })?;
        if let Some(hook) = &self.also {
            hook().map_err(|()| {
                log::error!(
                    "users file not reloaded: path={} reason=rules-not-reloaded",
                    LogSafe(path.display())
                );
                UserError::Unreadable
            })?;
        }
        self.seen.set(before);
        let n = records.len();
        let admins = self.dir.update(|t| -> Result<usize, UserError> {
            *t = t.rebuilt(records);
            Ok(t.count(Role::Admin))
        })?;
        log::info!(
            "users file reloaded: path={} users={n}",
            LogSafe(path.display())
        );
        if admins == 0 {
            log::warn!(
                "users file without administrator: path={} hint=\"nobody can log in to the \
                 management endpoint until one is added to the file and it is reloaded \
                 (SIGHUP)\"",
                LogSafe(path.display())
            );
        }
        Ok(())
    }

    /// [`Store::apply`] with the users in Redis: hash, then the script,
    /// then (only on its yes) the table.
    fn apply_redis(&self, r: &RedisWriter, change: &UserChange) -> Result<(), UserError> {
        let Some(prepared) = Prepared::new(change, self.cost)? else {
            return self.reload_redis(r);
        };
        let _order = r.order.lock().unwrap_or_else(|e| e.into_inner());
        let result = match r.with(|con| prepared.run(con, &r.at, self.max_users)) {
            Ok(Ok(value)) => {
                let _ = self.dir.update(|t| -> Result<(), UserError> {
                    prepared.apply(t, value.as_deref());
                    Ok(())
                });
                Ok(())
            }
            Ok(Err(UserError::NotDurable)) => {
                log::error!(
                    "user change not made: {change} store={} reason=unexpected-script-answer",
                    r.at
                );
                Err(UserError::NotDurable)
            }
            Ok(Err(e)) => Err(e),
            Err(e) => {
                log::error!(
                    "user change not made: {change} store={} error={}",
                    r.at,
                    Quoted(e)
                );
                Err(UserError::NotDurable)
            }
        };
        match result {
            Ok(()) => log::debug!("user change made: {change} store={}", r.at),
            Err(e) => log::debug!("user change refused: {change} error={}", Quoted(e)),
        }
        result
    }

    /// RELOAD with the users in Redis: the whole table read again, and the
    /// rules; if either cannot be read, nothing changes.
    fn reload_redis(&self, r: &RedisWriter) -> Result<(), UserError> {
        let _order = r.order.lock().unwrap_or_else(|e| e.into_inner());
        let loaded = r.with(|con| redis_store::load(con, &r.at)).map_err(|e| {
            log::error!("users not reloaded: store={} error={}", r.at, Quoted(e));
            UserError::Unreadable
        })?;
        if let Some(hook) = &self.also {
            hook().map_err(|()| {
                log::error!(
                    "users not reloaded: store={} reason=rules-not-reloaded",
                    r.at
                );
                UserError::Unreadable
            })?;
        }
        for (name, why) in loaded.skipped.iter().take(10) {
            log::warn!(
                "users entry skipped: store={} user={} reason={}",
                r.at,
                LogSafe(name),
                Quoted(why)
            );
        }
        let (n, skipped) = (loaded.records.len(), loaded.skipped.len());
        let _ = self.dir.update(|t| -> Result<(), UserError> {
            *t = t.rebuilt(loaded.records);
            Ok(())
        });
        log::info!(
            "users reloaded from redis: store={} users={n} skipped={skipped}",
            r.at
        );
        Ok(())
    }

    fn persist(&self, t: &UserTable) -> Result<(), UserError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let records: Vec<Record> = t.records();
        file::save_with(path, &records, |tmp| self.save_delay.before_rename(tmp)).map_err(|e| {
            log::error!(
                "users file not saved: path={} error={}",
                LogSafe(path.display()),
                Quoted(e)
            );
            UserError::NotDurable
        })?;
        self.seen.set(file::stamp(path).ok().flatten());
        Ok(())
    }
}

// ------------------------------------------------------- offline changes

/// Makes `change` in the users file `path` directly (`socks5d user`), under
/// the file's lock, so that a server running on the same file loses none of
/// it and it loses none of the server's; the server picks the change up on
/// its next change, on SIGHUP or on RELOAD. New hashes are made at `cost`.
/// Returns the table as it is afterwards.
pub fn edit_file(path: &Path, change: &UserChange, cost: file::Cost) -> Result<UserTable, String> {
    let _lock = file::lock(path).map_err(|e| format!("{}: cannot lock it: {e}", path.display()))?;
    let records = match file::load(path) {
        Ok(r) => r,
        Err(file::FileError::Missing) => Vec::new(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut table = UserTable::new();
    for r in records {
        table.insert(&r.name, r.role, Secret::from_stored(r.hash));
    }
    let hash = |p: &[u8]| Secret::with_hash(p, file::hash_password_with(p, cost));
    let result = match change {
        UserChange::Add {
            name,
            password,
            role,
        } => {
            if !super::valid_name(name) {
                Err(UserError::InvalidName)
            } else if !super::valid_password(password) {
                Err(UserError::InvalidPassword)
            } else if table.find(name).is_some() {
                Err(UserError::Exists)
            } else {
                table.insert(name, *role, hash(password));
                Ok(())
            }
        }
        UserChange::Delete { name } => match table.find(name) {
            None => Err(UserError::NoSuchUser),
            Some(u) if u.role == Role::Admin && table.count(Role::Admin) == 1 => {
                Err(UserError::LastAdmin)
            }
            Some(_) => table.remove(name).map(drop),
        },
        UserChange::SetPassword { name, password } => {
            if super::valid_password(password) {
                table.set_secret(name, hash(password))
            } else {
                Err(UserError::InvalidPassword)
            }
        }
        UserChange::Reload => Ok(()),
    };
    result.map_err(|e| e.to_string())?;
    if !matches!(change, UserChange::Reload) {
        file::save(path, &table.records()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(table)
}

// ----------------------------------------------------- test-only fault hook

/// A pause in every save of the users' writer, after the temporary file is
/// written and fsynced and before it is renamed over the users file, so that
/// a test can SIGKILL socks5d exactly there (tests/mgmt/faults.rs):
/// `SOCKS5D_TEST_SAVE_DELAY_MS=N`, read once when the writer is made. Each
/// pause is announced on standard error with the temporary file's path.
///
/// Compiled in with `debug_assertions` rather than behind a cargo feature:
/// the tests run the debug binary cargo builds for them, and a feature would
/// have to be named on every `cargo test` (a test cannot turn on a feature of
/// its own package). The release profile has no debug assertions, so a
/// release socks5d never reads the variable and never pauses.
#[derive(Debug, Clone, Copy, Default)]
struct SaveDelay(Option<Duration>);

impl SaveDelay {
    #[cfg(debug_assertions)]
    fn from_env() -> SaveDelay {
        const VAR: &str = "SOCKS5D_TEST_SAVE_DELAY_MS";
        let ms = std::env::var(VAR).ok().and_then(|v| v.parse::<u64>().ok());
        if let Some(ms) = ms {
            log::warn!("users save test hook on: var={VAR} pause_ms={ms}");
        }
        SaveDelay(ms.map(Duration::from_millis))
    }

    #[cfg(not(debug_assertions))]
    fn from_env() -> SaveDelay {
        SaveDelay(None)
    }

    fn before_rename(self, tmp: &Path) {
        if let Some(pause) = self.0 {
            // The temporary file is written and synced, not yet renamed.
            log::info!(
                "users save paused before rename: tmp={} pause_ms={}",
                LogSafe(tmp.display()),
                pause.as_millis()
            );
            thread::sleep(pause);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(name: &[u8], pw: &[u8], role: Role) -> UserChange {
        UserChange::Add {
            name: name.to_vec(),
            password: pw.to_vec(),
            role,
        }
    }

    fn store(path: Option<PathBuf>) -> (Arc<Directory>, Store) {
        let mut t = UserTable::new();
        t.add(b"root", b"rootpw", Role::Admin).unwrap();
        let dir = Directory::new(t);
        let s = Store::new(Arc::clone(&dir), path)
            .with_cost(file::Cost::CHEAP)
            .with_max_users(3);
        (dir, s)
    }

    #[test]
    fn statuses() {
        let (dir, s) = store(None);
        assert_eq!(s.apply(&add(b"alice", b"pw", Role::Proxy)), Ok(()));
        assert_eq!(
            s.apply(&add(b"alice", b"pw", Role::Proxy)),
            Err(UserError::Exists)
        );
        assert_eq!(s.apply(&add(b"bob", b"pw", Role::Proxy)), Ok(()));
        assert_eq!(
            s.apply(&add(b"carl", b"pw", Role::Proxy)),
            Err(UserError::Full)
        );
        let set = UserChange::SetPassword {
            name: b"alice".to_vec(),
            password: b"new".to_vec(),
        };
        assert_eq!(s.apply(&set), Ok(()));
        assert!(dir.snapshot().check_admin(b"root", b"rootpw").is_some());
        assert!(dir.snapshot().find(b"alice").unwrap().secret.verify(b"new"));
        let set = UserChange::SetPassword {
            name: b"zed".to_vec(),
            password: b"new".to_vec(),
        };
        assert_eq!(s.apply(&set), Err(UserError::NoSuchUser));
        let del = |n: &[u8]| UserChange::Delete { name: n.to_vec() };
        assert_eq!(s.apply(&del(b"zed")), Err(UserError::NoSuchUser));
        // The last administrator stays.
        assert_eq!(s.apply(&del(b"root")), Err(UserError::LastAdmin));
        assert_eq!(s.apply(&del(b"alice")), Ok(()));
        assert_eq!(s.apply(&add(b"admin2", b"pw", Role::Admin)), Ok(()));
        assert_eq!(s.apply(&del(b"root")), Ok(()));
        assert_eq!(s.apply(&del(b"admin2")), Err(UserError::LastAdmin));
    }

    /// RELOAD reads the file again; a bad file, a missing one, or none at
    /// all changes nothing.
    #[test]
    fn reload_reads_the_file_and_a_bad_one_changes_nothing() {
        let dir_path =
            std::env::temp_dir().join(format!("socks5d-store-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir_path).unwrap();
        let path = dir_path.join("users");
        let (dir, s) = store(Some(path.clone()));
        assert_eq!(s.apply(&add(b"alice", b"pw", Role::Proxy)), Ok(()));
        assert_eq!(s.apply(&add(b"carol", b"cpw", Role::Admin)), Ok(()));
        // Edited by hand: alice goes, root (only in memory) is not in it.
        let kept: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("alice:"))
            .map(str::to_owned)
            .collect();
        std::fs::write(&path, kept.join("\n") + "\n").unwrap();
        assert_eq!(s.apply(&UserChange::Reload), Ok(()));
        let t = dir.snapshot();
        let names: Vec<&[u8]> = t.entries().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"carol"[..]]);
        assert!(t.find(b"carol").unwrap().secret.verify(b"cpw"));
        // A file that does not parse, then none: nothing changes.
        std::fs::write(&path, "carol:no-such-role:x\n").unwrap();
        assert_eq!(s.apply(&UserChange::Reload), Err(UserError::Unreadable));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(s.apply(&UserChange::Reload), Err(UserError::Unreadable));
        assert!(Arc::ptr_eq(&t, &dir.snapshot()), "the table was replaced");
        let (_, without) = store(None);
        assert_eq!(
            without.apply(&UserChange::Reload),
            Err(UserError::Unreadable)
        );
        std::fs::remove_dir_all(&dir_path).unwrap();
    }

    #[test]
    fn changes_are_written_and_a_failed_write_changes_nothing() {
        let dir_path = std::env::temp_dir().join(format!("socks5d-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir_path).unwrap();
        let path = dir_path.join("users");
        let (dir, s) = store(Some(path.clone()));
        // root has no stored hash (given in plain text): it is not written.
        assert_eq!(s.apply(&add(b"alice", b"pw", Role::Proxy)), Ok(()));
        let records = file::load(&path).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].name, b"alice");
        assert!(file::verify_password(&records[0].hash, b"pw"));
        assert!(!std::fs::read_to_string(&path).unwrap().contains(":pw"));
        // Make the rename fail: the target becomes a directory.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert_eq!(
            s.apply(&add(b"bob", b"pw", Role::Proxy)),
            Err(UserError::NotDurable)
        );
        assert!(dir.snapshot().find(b"bob").is_none());
        std::fs::remove_dir_all(&dir_path).unwrap();
    }
}
