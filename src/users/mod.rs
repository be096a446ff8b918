//! The user table: names, roles and password digests, shared by every worker.
//!
//! One writer (start-up, later the management protocol) replaces the whole
//! table; workers keep an `Arc` to the version they last saw and pick up a new
//! one with a single atomic load per authentication. Nothing blocks a worker for
//! longer than one `Arc` clone under a read lock, and only when the table changed.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::socks5::session::Authenticator;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// May use the SOCKS proxy.
    Proxy,
    /// May use the proxy and manage the server.
    Admin,
}

/// A salted SHA-256 digest of a password. The password itself is never kept.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

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

impl Secret {
    /// The digest of `password`.
    pub fn new(password: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(process_salt());
        h.update(password);
        Secret(h.finalize().into())
    }

    /// Whether `password` is this secret's password, in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        let candidate = Secret::new(password);
        self.0.ct_eq(&candidate.0).into()
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

/// Why a user could not be added.
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
#[derive(Debug, Clone, Default)]
pub struct UserTable {
    users: BTreeMap<Box<[u8]>, User>,
}

impl UserTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
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
        self.users.get(name)
    }

    /// Users in name order.
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.users.values()
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
        let user = User {
            name: String::from_utf8_lossy(name).into(),
            role,
            secret: Secret::new(password),
        };
        self.users.insert(name.into(), user);
        Ok(())
    }

    /// Removes a user.
    pub fn remove(&mut self, name: &[u8]) -> Result<User, UserError> {
        self.users.remove(name).ok_or(UserError::NoSuchUser)
    }

    /// Changes a user's password.
    pub fn set_password(&mut self, name: &[u8], password: &[u8]) -> Result<(), UserError> {
        if !valid_password(password) {
            return Err(UserError::InvalidPassword);
        }
        let user = self.users.get_mut(name).ok_or(UserError::NoSuchUser)?;
        user.secret = Secret::new(password);
        Ok(())
    }

    /// How many users have `role`.
    pub fn count(&self, role: Role) -> usize {
        self.users.values().filter(|u| u.role == role).count()
    }
}

impl Authenticator for UserTable {
    fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    fn verify(&self, username: &[u8], password: &[u8]) -> Option<Arc<str>> {
        static DUMMY: OnceLock<Secret> = OnceLock::new();
        match self.users.get(username) {
            Some(user) if user.secret.verify(password) => Some(Arc::clone(&user.name)),
            Some(_) => None,
            None => {
                // Spend the same work on an unknown name as on a wrong password.
                let _ = DUMMY.get_or_init(|| Secret::new(b"")).verify(password);
                None
            }
        }
    }
}

/// The shared, replaceable user table.
#[derive(Debug, Default)]
pub struct Directory {
    version: AtomicU64,
    current: RwLock<Arc<UserTable>>,
}

impl Directory {
    /// A directory holding `table`.
    pub fn new(table: UserTable) -> Arc<Self> {
        Arc::new(Directory {
            version: AtomicU64::new(0),
            current: RwLock::new(Arc::new(table)),
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
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut next = UserTable::clone(&guard);
        let out = change(&mut next)?;
        *guard = Arc::new(next);
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
        dir.update(|t| t.set_password(b"alice", b"new")).unwrap();
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

    #[test]
    fn secrets_never_printed() {
        let s = Secret::new(b"hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }
}
