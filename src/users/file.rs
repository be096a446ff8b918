//! The users file: one user per line, `NAME:ROLE:PHC`, with Argon2id hashes.
//!
//! ```text
//! # socks5d users: NAME:ROLE:ARGON2ID-HASH
//! alice:admin:$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//! bob:user:$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//! ```
//!
//! A name never holds ':' (see [`valid_name`]), so the first two ':' split a
//! line; a PHC string never holds ':' either. Empty lines and lines starting
//! with '#' are comments.
//!
//! Writes follow docs/management-protocol.md section 6: "written to a temporary file,
//! fsync, rename, fsync of the folder". A reader therefore sees the old file or
//! the new one, never a mix, and after [`save`] returns the new one survives a
//! crash.
//!
//! Nothing here prints a hash or a password: errors name a line number and a
//! fixed reason, never the line.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::phc;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher, Version};
use subtle::ConstantTimeEq;

use super::{Role, valid_name};

/// The first line of every file we write.
pub const HEADER: &str = "# socks5d users: NAME:ROLE:ARGON2ID-HASH\n";

/// Mode of the users file and of its temporary files: the hashes are for the
/// owner's eyes only.
const FILE_MODE: u32 = 0o600;

/// The PHC version field we write and accept: Argon2 v1.3 (`v=19`).
const ARGON2_V13: u32 = 0x13;

// ------------------------------------------------------------------ hashes

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Memory, in KiB.
    pub m_kib: u32,
    /// Passes over the memory.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Cost {
    /// The OWASP Password Storage Cheat Sheet's minimum for Argon2id:
    /// 19 MiB, two passes, one lane.
    pub const DEFAULT: Cost = Cost {
        m_kib: 19_456,
        t: 2,
        p: 1,
    };

    /// The cheapest cost argon2 takes (64 KiB, one pass, one lane): for
    /// tests, which hash dozens of times each.
    #[cfg(test)]
    pub const CHEAP: Cost = Cost {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    /// The most a hash in the users file may ask for. Every authentication
    /// pays the cost stored in the user's hash, so a mistyped `m=` in a
    /// hand-edited file must not make each log-in allocate gigabytes or spin
    /// for minutes.
    pub const MAX: Cost = Cost {
        m_kib: 1 << 20, // 1 GiB
        t: 64,
        p: 16,
    };

    /// Whether argon2 accepts this cost and it is within [`Cost::MAX`].
    pub fn is_valid(&self) -> bool {
        self.m_kib <= Cost::MAX.m_kib
            && (1..=Cost::MAX.t).contains(&self.t)
            && (1..=Cost::MAX.p).contains(&self.p)
            && Params::new(self.m_kib, self.t, self.p, None).is_ok()
    }
}

impl Default for Cost {
    fn default() -> Self {
        Cost::DEFAULT
    }
}

/// A password hash: a well-formed Argon2id PHC string,
/// `$argon2id$v=19$m=M,t=T,p=P$SALT$HASH`.
///
/// The only ways to get one are [`hash_password`], [`hash_password_with`] and
/// [`PasswordHash::parse`], so every value verifies without a parse error.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is as good as the password to an offline guesser.
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// Why a string is not an acceptable password hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashError {
    /// Not a PHC string, or one with no salt or no hash.
    Malformed,
    /// A PHC string for some algorithm other than Argon2id.
    NotArgon2id,
    /// An Argon2id version other than `v=19`.
    Version,
    /// Parameters other than exactly `m`, `t`, `p`, or values argon2 rejects.
    Params,
    /// Parameters beyond [`Cost::MAX`].
    TooCostly,
}

impl HashError {
    /// A fixed description that never quotes the input.
    pub fn reason(self) -> &'static str {
        match self {
            HashError::Malformed => "malformed password hash",
            HashError::NotArgon2id => "password hash is not argon2id",
            HashError::Version => "password hash is not argon2 version 19",
            HashError::Params => "bad argon2 parameters (need exactly m, t, p)",
            HashError::TooCostly => "argon2 parameters too costly (m, t or p too large)",
        }
    }
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for HashError {}

impl PasswordHash {
    /// Accepts `s` if it is an Argon2id v19 PHC string with exactly the
    /// parameters `m`, `t`, `p` (in that order), a salt and a hash, within
    /// [`Cost::MAX`], and in canonical form.
    pub fn parse(s: &str) -> Result<PasswordHash, HashError> {
        let phc = phc::PasswordHash::new(s).map_err(|_| HashError::Malformed)?;
        if phc.algorithm != argon2::ARGON2ID_IDENT {
            return Err(HashError::NotArgon2id);
        }
        if phc.version != Some(ARGON2_V13) {
            return Err(HashError::Version);
        }
        if phc.salt.is_none() || phc.hash.is_none() {
            return Err(HashError::Malformed);
        }
        // keyid and data would change what is hashed; we never write them.
        let order = ["m", "t", "p"];
        if phc.params.iter().count() != order.len()
            || !phc
                .params
                .iter()
                .zip(order)
                .all(|((name, _), want)| name.as_str() == want)
        {
            return Err(HashError::Params);
        }
        let params = Params::try_from(&phc).map_err(|_| HashError::Params)?;
        let cost = Cost {
            m_kib: params.m_cost(),
            t: params.t_cost(),
            p: params.p_cost(),
        };
        if !cost.is_valid() {
            return Err(HashError::TooCostly);
        }
        // Canonical form keeps stray bytes (spaces, a trailing '$') out of the
        // file, and makes equal hashes equal strings.
        if phc.to_string() != s {
            return Err(HashError::Malformed);
        }
        Ok(PasswordHash(s.to_owned()))
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Hashes `password` with Argon2id at [`Cost::DEFAULT`] and a fresh random
/// salt.
///
/// # Panics
///
/// If the operating system's random number generator fails.
pub fn hash_password(password: &[u8]) -> PasswordHash {
    hash_password_with(password, Cost::DEFAULT)
}

/// Hashes `password` with Argon2id at `cost` and a fresh 16-byte random salt
/// from the operating system.
///
/// # Panics
///
/// If `cost` is not [`Cost::is_valid`] (a programming error: costs come from
/// code, not from input), or if the operating system's random number
/// generator fails.
pub fn hash_password_with(password: &[u8], cost: Cost) -> PasswordHash {
    assert!(cost.is_valid(), "invalid argon2 cost {cost:?}");
    // Invariant: the cost was just checked against argon2's own limits.
    let params = Params::new(cost.m_kib, cost.t, cost.p, None).expect("valid argon2 cost");
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    // Invariant: with valid parameters and a 16-byte salt, argon2 fails only
    // for passwords over 4 GiB or when getrandom fails; neither has a useful
    // recovery, and a salt of zeros must never be used instead.
    let phc = argon2
        .hash_password(password)
        .expect("argon2 hashing with OS randomness");
    PasswordHash(phc.to_string())
}

/// The working memory of Argon2id checks, allocated once and reused.
///
/// argon2's own `verify_password` allocates the hash's whole memory cost (19
/// MiB at [`Cost::DEFAULT`]) for every check and frees it; glibc keeps such
/// freed blocks, so a flood of wrong passwords grew socks5d by 19 MiB per
/// concurrent check until it was killed. A checker owns one of these instead:
/// it grows to the largest cost it has met and is never freed while the
/// checker lives.
#[derive(Default)]
pub struct CheckMemory {
    blocks: Vec<Block>,
    checks: u64,
}

impl fmt::Debug for CheckMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CheckMemory({} KiB, {} checks)",
            self.blocks.len(),
            self.checks
        )
    }
}

impl CheckMemory {
    /// Memory that grows on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.blocks.len() * Block::SIZE
    }

    /// How many Argon2id computations ran in this memory.
    pub fn checks(&self) -> u64 {
        self.checks
    }

    fn blocks(&mut self, n: usize) -> &mut [Block] {
        self.checks += 1;
        if self.blocks.len() < n {
            self.blocks.reserve_exact(n - self.blocks.len());
            self.blocks.resize(n, Block::new());
        }
        &mut self.blocks[..n]
    }
}

/// Whether `password` matches `hash`, computed in `memory`. Hashing uses the
/// algorithm, version and cost stored in `hash`; the comparison is
/// constant-time.
pub fn verify_password_in(hash: &PasswordHash, password: &[u8], memory: &mut CheckMemory) -> bool {
    // Every PasswordHash was parsed or produced by argon2, so these only fail
    // if that invariant is broken; a failure then denies access.
    let Ok(phc) = phc::PasswordHash::new(hash.as_str()) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&phc) else {
        return false;
    };
    let blocks = params.block_count();
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    argon2
        .hash_password_into_with_memory(password, salt.as_ref(), out, memory.blocks(blocks))
        .is_ok()
        && bool::from(out.ct_eq(expected.as_bytes()))
}

/// Whether `password` matches `hash`, with memory of its own for this one
/// check: for tools and tests. The server checks in a [`CheckMemory`].
pub fn verify_password(hash: &PasswordHash, password: &[u8]) -> bool {
    verify_password_in(hash, password, &mut CheckMemory::new())
}

// ------------------------------------------------------------------- file

/// One line of the users file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The user name: passes [`valid_name`].
    pub name: Vec<u8>,
    /// What the user may do.
    pub role: Role,
    /// The password hash.
    pub hash: PasswordHash,
}

/// Why the users file could not be loaded.
#[derive(Debug)]
pub enum FileError {
    /// The file does not exist.
    Missing,
    /// Reading failed.
    Io(io::Error),
    /// A line is not a valid record. The line itself is never quoted: it
    /// holds a password hash.
    Line {
        /// The line number, from 1, counting comments and blank lines.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Missing => f.write_str("users file does not exist"),
            FileError::Io(e) => write!(f, "users file: {e}"),
            FileError::Line { line, reason } => write!(f, "users file line {line}: {reason}"),
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// The word for `role` in the users file (and in Redis, `--users-redis`).
pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Proxy => "user",
    }
}

/// The role a word of the users file names.
pub(crate) fn parse_role(s: &[u8]) -> Option<Role> {
    match s {
        b"admin" => Some(Role::Admin),
        b"user" => Some(Role::Proxy),
        _ => None,
    }
}

/// Whether a line is a comment or blank. Checked before the line is taken for
/// a record, so a name must not start with '#' (see [`save`]).
fn is_comment(line: &[u8]) -> bool {
    line.first() == Some(&b'#') || line.iter().all(|&b| b == b' ' || b == b'\t')
}

/// Parses one record line (without its line ending).
fn parse_line(line: &[u8]) -> Result<Record, &'static str> {
    let mut fields = line.splitn(3, |&b| b == b':');
    let (Some(name), Some(role), Some(hash)) = (fields.next(), fields.next(), fields.next()) else {
        return Err("expected NAME:ROLE:HASH");
    };
    if !valid_name(name) {
        return Err("invalid user name");
    }
    let role = parse_role(role).ok_or("unknown role (expected admin or user)")?;
    let hash = std::str::from_utf8(hash).map_err(|_| HashError::Malformed.reason())?;
    let hash = PasswordHash::parse(hash).map_err(HashError::reason)?;
    Ok(Record {
        name: name.to_vec(),
        role,
        hash,
    })
}

/// Parses the contents of a users file.
pub fn parse(contents: &[u8]) -> Result<Vec<Record>, FileError> {
    let mut records = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in contents.split(|&b| b == b'\n').enumerate() {
        let at = |reason| FileError::Line {
            line: i + 1,
            reason,
        };
        // A file edited on another system may end lines with CR LF; neither
        // a name nor a PHC string can hold a CR, so dropping it is safe.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if is_comment(line) {
            continue;
        }
        let record = parse_line(line).map_err(at)?;
        if !seen.insert(record.name.clone()) {
            return Err(at("duplicate user name"));
        }
        records.push(record);
    }
    Ok(records)
}

/// Reads the users file at `path`. A missing file is [`FileError::Missing`]:
/// whether that is fine is the caller's decision.
pub fn load(path: &Path) -> Result<Vec<Record>, FileError> {
    let contents = fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => FileError::Missing,
        _ => FileError::Io(e),
    })?;
    parse(&contents)
}

/// The file contents for `records`, or why they cannot be written so that
/// [`load`] reads them back.
fn render(records: &[Record]) -> io::Result<Vec<u8>> {
    let invalid = |msg: &str| io::Error::new(io::ErrorKind::InvalidInput, msg);
    let mut out = HEADER.as_bytes().to_vec();
    let mut seen = HashSet::new();
    for r in records {
        if !valid_name(&r.name) {
            return Err(invalid("invalid user name"));
        }
        // The line would read back as a comment and the user would vanish.
        if r.name.first() == Some(&b'#') {
            return Err(invalid("user name starts with '#'"));
        }
        if !seen.insert(&r.name[..]) {
            return Err(invalid("duplicate user name"));
        }
        out.extend_from_slice(&r.name);
        out.push(b':');
        out.extend_from_slice(role_name(r.role).as_bytes());
        out.push(b':');
        out.extend_from_slice(r.hash.as_str().as_bytes());
        out.push(b'\n');
    }
    Ok(out)
}

/// The folder holding `path` and the file name within it.
fn split_path(path: &Path) -> io::Result<(&Path, &std::ffi::OsStr)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "users file path has no file name",
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

/// Flushes the folder entry so a rename or a new file survives a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `path` with O_EXCL and mode 0600, whatever the umask.
fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    // The umask may have taken bits away; fchmod states the mode exactly.
    if let Err(e) = file
        .set_permissions(Permissions::from_mode(FILE_MODE))
        .and_then(|()| owned_like_its_folder(&file, path))
    {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(file)
}

/// Run as root, gives a new file to the owner of its folder: `socks5d
/// user add` run by root on a service's users file (`/var/lib/socks5d`,
/// the service user's) must leave a file the service can still read.
/// Anyone else creates files as themselves, which is their folder's owner
/// or a user it lets write.
fn owned_like_its_folder(file: &File, path: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let folder = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => fs::metadata(d)?,
        _ => fs::metadata(".")?,
    };
    if folder.uid() == 0 {
        return Ok(());
    }
    nix::unistd::fchown(
        file,
        Some(nix::unistd::Uid::from_raw(folder.uid())),
        Some(nix::unistd::Gid::from_raw(folder.gid())),
    )
    .map_err(io::Error::from)
}

/// Creates `.NAME.tmp.PID.N` beside the target, trying further N if a stale
/// one (left by a crashed process with the same PID) is in the way.
fn create_temp(dir: &Path, name: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let mut last = None;
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp.{pid}.{n}"));
        let tmp = dir.join(tmp_name);
        match create_private(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    // Invariant: the loop ran at least once and only continues after
    // setting `last`.
    Err(last.expect("at least one attempt"))
}

/// Replaces the users file at `path` with `records`, durably and atomically
/// (docs/management-protocol.md section 6): write a 0600 temporary file beside it,
/// fsync it, rename it over `path`, fsync the folder.
///
/// Records that [`load`] could not read back (an invalid name, a name
/// starting with '#', a duplicate) are refused with
/// [`io::ErrorKind::InvalidInput`] before anything is written.
///
/// If writing, syncing or renaming fails, the temporary file is removed and
/// the old file is untouched. If only the final folder fsync fails, the new
/// file is already in place but may not survive a crash; the error is still
/// returned, so the caller treats the change as failed and may save the old
/// records again.
pub fn save(path: &Path, records: &[Record]) -> io::Result<()> {
    save_with(path, records, |_| {})
}

/// [`save`], calling `before_rename` with the temporary file's path once it
/// is written and fsynced, just before the rename (the users' writer hangs a
/// test-only pause there).
pub fn save_with(
    path: &Path,
    records: &[Record],
    before_rename: impl FnOnce(&Path),
) -> io::Result<()> {
    let contents = render(records)?;
    let (dir, name) = split_path(path)?;
    let (tmp, file) = create_temp(dir, name)?;
    if let Err(e) = write_and_rename(file, &contents, &tmp, path, before_rename) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// The steps of [`save`] after which a failure leaves the temporary file to
/// remove and the target untouched.
fn write_and_rename(
    mut file: File,
    contents: &[u8],
    tmp: &Path,
    path: &Path,
    before_rename: impl FnOnce(&Path),
) -> io::Result<()> {
    file.write_all(contents)?;
    // The data must be on disk before the rename makes it the users file.
    file.sync_all()?;
    drop(file);
    before_rename(tmp);
    fs::rename(tmp, path)
}

/// Creates an empty users file (the header only) at `path`, with mode 0600.
/// Fails with [`io::ErrorKind::AlreadyExists`] if anything is there; on any
/// other failure after creating it, removes it again. The file and its folder
/// are fsynced.
pub fn create_new(path: &Path) -> io::Result<()> {
    let (dir, _) = split_path(path)?;
    let mut file = create_private(path)?;
    let written = file
        .write_all(HEADER.as_bytes())
        .and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    sync_dir(dir)
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;

// ------------------------------------------------------------------- lock

/// An exclusive lock on a users file, held while its writer reads, changes
/// and saves it, so that socks5d's writer and `socks5d user` never lose
/// each other's changes. The lock is on a file beside it (`PATH.lock`,
/// 0600): saves rename a new file over the users file, and a lock on the
/// old one would lock nothing. Released when dropped.
#[derive(Debug)]
pub struct FileLock(#[allow(dead_code)] nix::fcntl::Flock<File>);

/// Takes the lock of the users file `path`, waiting for its holder.
pub fn lock(path: &Path) -> io::Result<FileLock> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(PathBuf::from(&name))?;
    owned_like_its_folder(&f, Path::new(&name))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map(FileLock)
        .map_err(|(_, e)| io::Error::from(e))
}

/// What tells whether a users file changed on disk: its inode (a save
/// renames a new one in), size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

/// The stamp of `path` now; `None` if it does not exist.
pub fn stamp(path: &Path) -> io::Result<Option<Stamp>> {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata(path) {
        Ok(m) => Ok(Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
