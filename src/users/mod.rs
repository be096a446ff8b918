//! The user table: names, roles and password digests, shared by every worker.
//!
//! One writer (start-up, later the management protocol) replaces the whole
//! table; workers keep an `Arc` to the version they last saw and pick up a new
//! one with a single atomic load per authentication. Nothing blocks a worker for
//! longer than one `Arc` clone under a read lock, and only when the table changed.

mod change;
mod credentials;
pub mod file;
pub mod penalty;
pub mod redis_store;
pub mod redis_sync;
pub mod store;

/// The most users the table holds by default (`--max-users`); ADD_USER
/// beyond it answers X'08'.
pub const MAX_USERS: usize = 100_000;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use credentials::{Authenticator, Credentials, Verdict, wipe};

pub use crate::logfmt::{LogSafe, write_log_safe};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// May use the SOCKS proxy.
    Proxy,
    /// May use the proxy and manage the server.
    Admin,
}

/// What socks5d knows of a password. The password itself is never kept.
///
/// `fast` is a salted SHA-256 digest, known once the password has been seen
/// (given at start-up or in a management request, or checked once against
/// the stored hash); checking it costs a microsecond. `stored` is the
/// Argon2id hash of the users file, checked only until `fast` is known.
#[derive(Clone, Default)]
pub struct Secret {
    fast: Arc<OnceLock<[u8; 32]>>,
    stored: Option<file::PasswordHash>,
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.fast.get() == other.fast.get() && self.stored == other.stored
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A salt drawn once per process, so digests in memory are of no use elsewhere.
fn process_salt() -> &'static [u8; 16] {
    static SALT: OnceLock<[u8; 16]> = OnceLock::new();
    SALT.get_or_init(|| {
        let mut salt = [0u8; 16];
        // If the kernel cannot give randomness the digests are still correct,
        // only unsalted; that is no reason to refuse to start.
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            let _ = f.read_exact(&mut salt);
        }
        salt
    })
}

fn digest(password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(process_salt());
    h.update(password);
    h.finalize().into()
}

impl Secret {
    /// A secret for a password given in plain text (no stored hash).
    pub fn new(password: &[u8]) -> Self {
        Secret {
            fast: Arc::new(OnceLock::from(digest(password))),
            stored: None,
        }
    }

    /// A secret for a password given in plain text, with its stored hash.
    pub fn with_hash(password: &[u8], hash: file::PasswordHash) -> Self {
        Secret {
            fast: Arc::new(OnceLock::from(digest(password))),
            stored: Some(hash),
        }
    }

    /// A secret known only by its stored hash (loaded from the users file).
    pub fn from_stored(hash: file::PasswordHash) -> Self {
        Secret {
            fast: Arc::new(OnceLock::new()),
            stored: Some(hash),
        }
    }

    /// The stored hash, if any.
    pub fn stored(&self) -> Option<&file::PasswordHash> {
        self.stored.as_ref()
    }

    /// Whether `password` is this secret's password, if that can be told
    /// quickly (in constant time); `None` when only the stored hash can tell.
    pub fn quick(&self, password: &[u8]) -> Option<bool> {
        match (self.fast.get(), &self.stored) {
            (Some(known), _) => Some(known.ct_eq(&digest(password)).into()),
            (None, Some(_)) => None,
            (None, None) => Some(false),
        }
    }

    /// Whether `password` is this secret's password, in constant time,
    /// computing in `memory` when the stored hash must be checked.
    ///
    /// Until the password has been seen this checks the Argon2id hash, which
    /// takes tens of milliseconds; a success makes later checks fast.
    pub fn verify_in(&self, password: &[u8], memory: &mut file::CheckMemory) -> bool {
        let candidate = digest(password);
        if let Some(known) = self.fast.get() {
            return known.ct_eq(&candidate).into();
        }
        match &self.stored {
            Some(hash) if file::verify_password_in(hash, password, memory) => {
                let _ = self.fast.set(candidate);
                true
            }
            _ => false,
        }
    }

    /// [`Secret::verify_in`] with memory of its own: for tools and tests.
    pub fn verify(&self, password: &[u8]) -> bool {
        self.verify_in(password, &mut file::CheckMemory::new())
    }

    /// Whether only the stored hash can tell a password (so that checking
    /// one runs Argon2id).
    fn slow_only(&self) -> bool {
        self.fast.get().is_none() && self.stored.is_some()
    }
}

/// One user.
#[derive(Debug, Clone)]
pub struct User {
    /// The name, shared with access-log records without copying.
    pub name: Arc<str>,
    /// What the user may do.
    pub role: Role,
    /// The password digest.
    pub secret: Secret,
}

/// Why a change to the user table was not made (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserError {
    /// The name is empty, longer than 255 bytes, or holds a forbidden byte.
    InvalidName,
    /// The password is empty, longer than 255 bytes, or holds NUL, CR or LF.
    InvalidPassword,
    /// A user of that name exists.
    Exists,
    /// No user of that name exists.
    NoSuchUser,
    /// The change would leave the server without an administrator.
    LastAdmin,
    /// The table holds as many users as it may.
    Full,
    /// The users file could not be written (the change was undone), or
    /// the Redis store could not be reached or refused it.
    NotDurable,
    /// The users file could not be read again (there is none, or it is
    /// missing, unreadable or invalid), or the Redis store could not be
    /// reached: nothing changed.
    Unreadable,
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UserError::InvalidName => {
                "invalid user name (1 to 255 bytes; no ':', no control characters)"
            }
            UserError::InvalidPassword => "invalid password (1 to 255 bytes; no NUL, CR or LF)",
            UserError::Exists => "user already exists",
            UserError::NoSuchUser => "no such user",
            UserError::LastAdmin => "the change would leave no administrator",
            UserError::Full => "the user table is full",
            UserError::NotDurable => {
                "the users file or Redis store could not take the change; nothing changed"
            }
            UserError::Unreadable => {
                "the users file or Redis store could not be read; nothing changed"
            }
        })
    }
}

impl std::error::Error for UserError {}

/// Whether `name` is a valid user name: 1 to 255 bytes, no NUL, ':' or
/// control byte (below X'20' or X'7F').
pub fn valid_name(name: &[u8]) -> bool {
    (1..=255).contains(&name.len()) && name.iter().all(|&b| b >= 0x20 && b != 0x7F && b != b':')
}

/// Whether `password` is a valid password: 1 to 255 bytes, no NUL, CR or LF.
pub fn valid_password(password: &[u8]) -> bool {
    (1..=255).contains(&password.len()) && !password.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n'))
}

/// An immutable set of users, sorted by name bytes.
///
/// Every change is made to a copy (see [`Directory::update`]), so a copy
/// must be cheap at [`MAX_USERS`]: names and users are shared between
/// copies, and copying the table copies the map's nodes and counts
/// references, without allocating per user.
#[derive(Debug, Clone, Default)]
pub struct UserTable {
    users: BTreeMap<Arc<[u8]>, Arc<User>>,
    /// The Argon2id cost of the dummy check a refusal runs when no hash of
    /// the user's was checked: the cost new hashes are made with.
    refusal_cost: file::Cost,
    /// Whether clients must authenticate even with no user: the table is
    /// kept elsewhere (`--users-redis`), and emptied there it must refuse
    /// everyone, not open the proxy.
    auth_always: bool,
}

impl UserTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the Argon2id cost of the dummy check that refusals run (the cost
    /// new hashes are made with, so that a refusal takes what a real check
    /// takes).
    pub fn set_refusal_cost(&mut self, cost: file::Cost) {
        self.refusal_cost = cost;
    }

    /// The cost [`UserTable::set_refusal_cost`] set.
    pub fn refusal_cost(&self) -> file::Cost {
        self.refusal_cost
    }

    /// Makes clients authenticate even when the table has no user (all of
    /// them are then refused).
    pub fn set_auth_always(&mut self, on: bool) {
        self.auth_always = on;
    }

    /// A table of `records` with this one's settings. A user whose stored
    /// hash did not change keeps its secret, and so its verified password.
    pub fn rebuilt(&self, records: impl IntoIterator<Item = file::Record>) -> UserTable {
        let mut next = UserTable {
            users: BTreeMap::new(),
            refusal_cost: self.refusal_cost,
            auth_always: self.auth_always,
        };
        for r in records {
            let secret = match self.find(&r.name) {
                Some(u) if u.secret.stored() == Some(&r.hash) => u.secret.clone(),
                _ => Secret::from_stored(r.hash),
            };
            next.insert(&r.name, r.role, secret);
        }
        next
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user called `name`.
    pub fn find(&self, name: &[u8]) -> Option<&User> {
        self.users.get(name).map(|u| &**u)
    }

    /// Users in name order.
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.users.values().map(|u| &**u)
    }

    /// Users in name order with their names as stored (bytes, exactly as given).
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &User)> {
        self.users.iter().map(|(k, u)| (&**k, &**u))
    }

    /// Adds a user.
    pub fn add(&mut self, name: &[u8], password: &[u8], role: Role) -> Result<(), UserError> {
        if !valid_name(name) {
            return Err(UserError::InvalidName);
        }
        if !valid_password(password) {
            return Err(UserError::InvalidPassword);
        }
        if self.users.contains_key(name) {
            return Err(UserError::Exists);
        }
        self.insert(name, role, Secret::new(password));
        Ok(())
    }

    /// Adds or replaces a user with a prepared secret. The name must be valid.
    pub fn insert(&mut self, name: &[u8], role: Role, secret: Secret) {
        debug_assert!(valid_name(name));
        let user = User {
            name: String::from_utf8_lossy(name).into(),
            role,
            secret,
        };
        self.users.insert(name.into(), Arc::new(user));
    }

    /// Changes a user's secret. Fails if there is no such user.
    pub fn set_secret(&mut self, name: &[u8], secret: Secret) -> Result<(), UserError> {
        let user = self.users.get_mut(name).ok_or(UserError::NoSuchUser)?;
        Arc::make_mut(user).secret = secret;
        Ok(())
    }

    /// The user called `name` if `password` is theirs, checked in `memory`.
    ///
    /// Every refusal costs one Argon2id check, whether the name is unknown,
    /// the password wrong, or the right one already known by its fast digest:
    /// a refusal's timing then tells nothing about which names exist, and
    /// each wrong guess costs a guesser as much as the hash was meant to.
    pub fn verify_in(
        &self,
        name: &[u8],
        password: &[u8],
        memory: &mut file::CheckMemory,
    ) -> Option<Arc<str>> {
        self.verify_where(name, password, memory, |_| true)
    }

    /// The administrator called `name` if `password` is theirs; `None` for a
    /// wrong password, an unknown user and a non-administrator alike, after
    /// the same work as [`UserTable::verify_in`].
    pub fn check_admin_in(
        &self,
        name: &[u8],
        password: &[u8],
        memory: &mut file::CheckMemory,
    ) -> Option<Arc<str>> {
        self.verify_where(name, password, memory, |u| u.role == Role::Admin)
    }

    /// [`UserTable::check_admin_in`] with memory of its own: for tools and tests.
    pub fn check_admin(&self, name: &[u8], password: &[u8]) -> Option<Arc<str>> {
        self.check_admin_in(name, password, &mut file::CheckMemory::new())
    }

    fn verify_where(
        &self,
        name: &[u8],
        password: &[u8],
        memory: &mut file::CheckMemory,
        allowed: impl Fn(&User) -> bool,
    ) -> Option<Arc<str>> {
        let user = self.users.get(name).filter(|u| allowed(u));
        // Read before the check, which may make the secret fast.
        let slow = user.is_some_and(|u| u.secret.slow_only());
        if let Some(u) = user
            && u.secret.verify_in(password, memory)
        {
            return Some(Arc::clone(&u.name));
        }
        // A refusal that did not already run Argon2id runs it now.
        if !slow {
            file::verify_password_in(&dummy_hash(self.refusal_cost), password, memory);
        }
        None
    }

    /// The users as records of the users file. Users with no stored hash
    /// (given in plain text without a users file) are left out.
    pub fn records(&self) -> Vec<file::Record> {
        self.entries()
            .filter_map(|(name, u)| {
                Some(file::Record {
                    name: name.to_vec(),
                    role: u.role,
                    hash: u.secret.stored()?.clone(),
                })
            })
            .collect()
    }

    /// Removes a user.
    pub fn remove(&mut self, name: &[u8]) -> Result<Arc<User>, UserError> {
        self.users.remove(name).ok_or(UserError::NoSuchUser)
    }

    /// How many users have `role`.
    pub fn count(&self, role: Role) -> usize {
        self.users.values().filter(|u| u.role == role).count()
    }
}

impl Authenticator for UserTable {
    fn requires_auth(&self) -> bool {
        self.auth_always || !self.users.is_empty()
    }

    /// Only a right password known by its fast digest is answered here;
    /// every other answer, refusals included, comes from the slow check off
    /// the worker (see [`UserTable::verify_in`]).
    fn check(&self, username: &[u8], password: &[u8]) -> Verdict {
        match self.users.get(username) {
            Some(user) if user.secret.quick(password) == Some(true) => {
                Verdict::Accept(Arc::clone(&user.name))
            }
            _ => Verdict::Defer,
        }
    }

    fn verify(&self, username: &[u8], password: &[u8]) -> Option<Arc<str>> {
        self.verify_in(username, password, &mut file::CheckMemory::new())
    }
}

/// An Argon2id hash of nothing in particular at `cost`, to spend on
/// refusals the work a real check costs. Made once per cost.
fn dummy_hash(cost: file::Cost) -> Arc<file::PasswordHash> {
    static DUMMY: Mutex<Option<(file::Cost, Arc<file::PasswordHash>)>> = Mutex::new(None);
    let mut d = DUMMY.lock().unwrap_or_else(|e| e.into_inner());
    match &*d {
        Some((c, h)) if *c == cost => Arc::clone(h),
        _ => {
            let h = Arc::new(file::hash_password_with(b"socks5d dummy password", cost));
            *d = Some((cost, Arc::clone(&h)));
            h
        }
    }
}

/// The shared, replaceable user table.
#[derive(Debug, Default)]
pub struct Directory {
    version: AtomicU64,
    current: RwLock<Arc<UserTable>>,
    /// Serialises writers, who may take long (hashing, fsync) without ever
    /// holding `current` for more than the swap of an `Arc`.
    writer: Mutex<()>,
}

impl Directory {
    /// A directory holding `table`.
    pub fn new(table: UserTable) -> Arc<Self> {
        Arc::new(Directory {
            version: AtomicU64::new(0),
            current: RwLock::new(Arc::new(table)),
            writer: Mutex::new(()),
        })
    }

    /// The current table.
    pub fn snapshot(&self) -> Arc<UserTable> {
        // A poisoned lock only means a writer panicked before replacing the Arc:
        // the table it guards is still a whole, valid table.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Applies `change` to a copy of the table and publishes the copy if the
    /// change succeeds. Writers are serialised; readers never wait for `change`.
    pub fn update<T, E>(
        &self,
        change: impl FnOnce(&mut UserTable) -> Result<T, E>,
    ) -> Result<T, E> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = UserTable::clone(&self.snapshot());
        let out = change(&mut next)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        self.version.fetch_add(1, Ordering::Release);
        Ok(out)
    }

    /// A per-worker reader.
    pub fn reader(self: &Arc<Self>) -> Reader {
        Reader {
            seen: self.version.load(Ordering::Acquire),
            table: self.snapshot(),
            dir: Arc::clone(self),
        }
    }
}

/// A worker's view of the directory: the table it last saw, refreshed when
/// the directory's version moves.
#[derive(Debug)]
pub struct Reader {
    dir: Arc<Directory>,
    seen: u64,
    table: Arc<UserTable>,
}

impl Reader {
    /// The current table.
    pub fn table(&mut self) -> &UserTable {
        let v = self.dir.version.load(Ordering::Acquire);
        if v != self.seen {
            self.seen = v;
            self.table = self.dir.snapshot();
        }
        &self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_and_change() {
        let dir = Directory::new(UserTable::new());
        let mut r = dir.reader();
        assert!(!r.table().requires_auth());
        dir.update(|t| t.add(b"alice", b"secret", Role::Proxy))
            .unwrap();
        assert!(r.table().requires_auth());
        assert_eq!(
            r.table().verify(b"alice", b"secret").as_deref(),
            Some("alice")
        );
        assert_eq!(r.table().verify(b"alice", b"wrong"), None);
        assert_eq!(r.table().verify(b"bob", b"secret"), None);
        dir.update(|t| t.set_secret(b"alice", Secret::new(b"new")))
            .unwrap();
        assert_eq!(r.table().verify(b"alice", b"secret"), None);
        assert!(r.table().verify(b"alice", b"new").is_some());
        assert_eq!(
            dir.update(|t| t.add(b"alice", b"x", Role::Admin)),
            Err(UserError::Exists)
        );
        dir.update(|t| t.remove(b"alice").map(drop)).unwrap();
        assert_eq!(r.table().verify(b"alice", b"new"), None);
        assert_eq!(
            dir.update(|t| t.remove(b"alice").map(drop)),
            Err(UserError::NoSuchUser)
        );
    }

    #[test]
    fn failed_update_changes_nothing() {
        let dir = Directory::new(UserTable::new());
        dir.update(|t| t.add(b"a", b"p", Role::Admin)).unwrap();
        let r: Result<(), UserError> = dir.update(|t| {
            t.add(b"b", b"p", Role::Proxy)?;
            Err(UserError::Exists)
        });
        assert!(r.is_err());
        assert!(dir.snapshot().find(b"b").is_none());
    }

    #[test]
    fn names_and_passwords_validated() {
        assert!(valid_name(b"alice"));
        assert!(valid_name("ñandú".as_bytes()));
        for bad in [&b""[..], b"a:b", b"a\0", b"a\x1f", b"a\x7f", &[b'a'; 256]] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_password(b"p:a s"));
        for bad in [&b""[..], b"a\0", b"a\r", b"a\n", &[b'a'; 256]] {
            assert!(!valid_password(bad), "{bad:?}");
        }
        let mut t = UserTable::new();
        assert_eq!(t.add(b"", b"p", Role::Proxy), Err(UserError::InvalidName));
        assert_eq!(
            t.add(b"u", b"", Role::Proxy),
            Err(UserError::InvalidPassword)
        );
    }

    #[test]
    fn sorted_by_name_bytes() {
        let mut t = UserTable::new();
        for n in ["zed", "Alice", "bob", "alice"] {
            t.add(n.as_bytes(), b"p", Role::Proxy).unwrap();
        }
        let names: Vec<_> = t.iter().map(|u| u.name.to_string()).collect();
        assert_eq!(names, ["Alice", "alice", "bob", "zed"]);
    }

    /// Every refusal costs exactly one Argon2id computation, whatever was
    /// wrong; only a right password known by its fast digest costs none.
    #[test]
    fn every_refusal_costs_one_argon2id_check() {
        let cost = file::Cost::CHEAP;
        let mut t = UserTable::new();
        t.add(b"plain", b"pw", Role::Proxy).unwrap();
        let hash = file::hash_password_with(b"stored-pw", cost);
        t.insert(b"stored", Role::Admin, Secret::from_stored(hash));
        let runs = |f: &dyn Fn(&mut file::CheckMemory) -> Option<Arc<str>>| {
            let mut m = file::CheckMemory::new();
            let out = f(&mut m);
            (out.is_some(), m.checks())
        };
        // Refusals: unknown name, wrong password of a plain-text user, of a
        // hash-only user, and of a user whose digest is known.
        assert_eq!(runs(&|m| t.verify_in(b"nobody", b"pw", m)), (false, 1));
        assert_eq!(runs(&|m| t.verify_in(b"plain", b"bad", m)), (false, 1));
        assert_eq!(runs(&|m| t.verify_in(b"stored", b"bad", m)), (false, 1));
        // The first right log in checks the stored hash, later ones are fast.
        assert_eq!(
            runs(&|m| t.verify_in(b"stored", b"stored-pw", m)),
            (true, 1)
        );
        assert_eq!(
            runs(&|m| t.verify_in(b"stored", b"stored-pw", m)),
            (true, 0)
        );
        assert_eq!(runs(&|m| t.verify_in(b"stored", b"bad", m)), (false, 1));
        assert_eq!(runs(&|m| t.verify_in(b"plain", b"pw", m)), (true, 0));
        // Administrators: a right password of a non-administrator is refused
        // after the same work.
        assert_eq!(runs(&|m| t.check_admin_in(b"plain", b"pw", m)), (false, 1));
        assert_eq!(runs(&|m| t.check_admin_in(b"nobody", b"pw", m)), (false, 1));
        assert_eq!(
            runs(&|m| t.check_admin_in(b"stored", b"stored-pw", m)),
            (true, 0)
        );
        // The worker answers only the fast right password itself.
        assert!(matches!(t.check(b"plain", b"pw"), Verdict::Accept(_)));
        for (u, p) in [(&b"plain"[..], &b"bad"[..]), (b"nobody", b"pw")] {
            assert_eq!(t.check(u, p), Verdict::Defer);
        }
    }

    #[test]
    fn secrets_never_printed() {
        let s = Secret::new(b"hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }
}
