//! Hashes, the line format and every error, and the durable-write paths
//! (including the failures) against a real folder.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// A fresh, empty folder under the system temporary folder, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("socks5d-users-{}-{tag}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The names in the folder, sorted.
    fn entries(&self) -> Vec<String> {
        entries(&self.0)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn record(name: &[u8], role: Role, password: &[u8]) -> Record {
    Record {
        name: name.to_vec(),
        role,
        hash: hash_password_with(password, Cost::CHEAP),
    }
}

fn line_error(contents: &[u8]) -> (usize, &'static str) {
    match parse(contents) {
        Err(FileError::Line { line, reason }) => (line, reason),
        other => panic!("expected a line error, got {other:?}"),
    }
}

// ------------------------------------------------------------------ hashes

#[test]
fn hash_verify_round_trip() {
    let h = hash_password_with(b"hunter2", Cost::CHEAP);
    assert!(h.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
    // Argon2::default() is configured with m=19456: this only verifies if
    // the cost stored in the string is the one used.
    assert!(verify_password(&h, b"hunter2"));
    assert_eq!(PasswordHash::parse(h.as_str()), Ok(h.clone()));
}

#[test]
fn wrong_password_fails() {
    let h = hash_password_with(b"hunter2", Cost::CHEAP);
    for wrong in [&b"hunter3"[..], b"hunter", b"hunter2\0", b"", b"HUNTER2"] {
        assert!(!verify_password(&h, wrong), "{wrong:?}");
    }
}

#[test]
fn salts_differ() {
    let a = hash_password_with(b"same", Cost::CHEAP);
    let b = hash_password_with(b"same", Cost::CHEAP);
    assert_ne!(a, b);
    // Same cost prefix, different salt and output.
    let salt = |h: &PasswordHash| h.as_str().split('$').nth(4).unwrap().to_owned();
    assert_ne!(salt(&a), salt(&b));
    assert!(verify_password(&a, b"same") && verify_password(&b, b"same"));
}

#[test]
fn default_cost_is_owasp_minimum() {
    let h = hash_password(b"pw");
    assert!(
        h.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        h.as_str()
    );
    assert!(verify_password(&h, b"pw"));
    assert!(!verify_password(&h, b"pW"));
}

#[test]
fn hash_debug_redacted() {
    let h = hash_password_with(b"hunter2", Cost::CHEAP);
    assert_eq!(format!("{h:?}"), "PasswordHash(<redacted>)");
    let r = Record {
        name: b"alice".to_vec(),
        role: Role::Admin,
        hash: h.clone(),
    };
    let shown = format!("{r:?}");
    assert!(!shown.contains("argon2"), "{shown}");
}

#[test]
fn parse_rejects_garbage_and_other_algorithms() {
    let good = hash_password_with(b"pw", Cost::CHEAP);
    let g = good.as_str();
    let (salt, out) = {
        let f: Vec<&str> = g.split('$').collect();
        (f[4].to_owned(), f[5].to_owned())
    };
    let cases: Vec<(String, HashError)> = vec![
        (String::new(), HashError::Malformed),
        ("hunter2".into(), HashError::Malformed),
        ("$".into(), HashError::Malformed),
        ("$argon2id".into(), HashError::Version),
        (
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".into(),
            HashError::Malformed,
        ),
        (g.replacen("argon2id", "argon2i", 1), HashError::NotArgon2id),
        (g.replacen("argon2id", "argon2d", 1), HashError::NotArgon2id),
        (
            format!("$scrypt$ln=4,r=8,p=1${salt}${out}"),
            HashError::NotArgon2id,
        ),
        (g.replacen("v=19", "v=16", 1), HashError::Version),
        (
            format!("$argon2id$m=64,t=1,p=1${salt}${out}"),
            HashError::Version,
        ),
        (
            format!("$argon2id$v=19$m=64,t=1,p=1${salt}"),
            HashError::Malformed,
        ),
        ("$argon2id$v=19$m=64,t=1,p=1".into(), HashError::Malformed),
        (
            g.replacen("m=64,t=1,p=1", "t=1,m=64,p=1", 1),
            HashError::Params,
        ),
        (g.replacen("m=64,t=1,p=1", "m=64,t=1", 1), HashError::Params),
        (
            g.replacen("m=64,t=1,p=1", "m=64,t=1,p=1,keyid=AAAA", 1),
            HashError::Params,
        ),
        (g.replacen("m=64,", "m=4,", 1), HashError::Params),
        (g.replacen("t=1,", "t=0,", 1), HashError::Params),
        (
            g.replacen("m=64,", "m=4294967295,", 1),
            HashError::TooCostly,
        ),
        (g.replacen("t=1,", "t=1000,", 1), HashError::TooCostly),
        (format!("{g} "), HashError::Malformed),
        (format!(" {g}"), HashError::Malformed),
        (format!("{g}$"), HashError::Malformed),
        (format!("{g}\n"), HashError::Malformed),
        (g.replacen(&out, &out[..10], 1), HashError::Malformed),
    ];
    for (s, want) in cases {
        assert_eq!(PasswordHash::parse(&s), Err(want), "{s:?}");
    }
}

#[test]
fn costs_checked() {
    assert!(Cost::DEFAULT.is_valid());
    assert!(Cost::CHEAP.is_valid());
    assert!(Cost::MAX.is_valid());
    for bad in [
        Cost {
            m_kib: 7,
            ..Cost::CHEAP
        },
        Cost {
            t: 0,
            ..Cost::CHEAP
        },
        Cost {
            p: 0,
            ..Cost::CHEAP
        },
        Cost {
            m_kib: 64,
            t: 1,
            p: 9,
        }, // argon2 needs m >= 8 * p
        Cost {
            m_kib: Cost::MAX.m_kib + 1,
            ..Cost::CHEAP
        },
    ] {
        assert!(!bad.is_valid(), "{bad:?}");
    }
}

// ------------------------------------------------------------- file format

#[test]
fn save_load_round_trip() {
    let dir = Scratch::new("round-trip");
    let path = dir.path("users");
    let records = vec![
        record(b"alice", Role::Admin, b"a-pass"),
        record(b"bob", Role::Proxy, b"b-pass"),
        record("ñandú".as_bytes(), Role::Proxy, b"c-pass"),
        record(b"\xff raw bytes", Role::Admin, b"d-pass"),
        record(b"carol # not a comment", Role::Proxy, b"e-pass"),
    ];
    save(&path, &records).unwrap();
    let loaded = load(&path).unwrap();
    assert_eq!(loaded, records);
    assert!(verify_password(&loaded[1].hash, b"b-pass"));

    let text = fs::read(&path).unwrap();
    assert!(text.starts_with(HEADER.as_bytes()));
    assert!(text.ends_with(b"\n"));
    let alice_line = text.split(|&b| b == b'\n').nth(1).unwrap();
    assert!(alice_line.starts_with(b"alice:admin:$argon2id$v=19$"));
    let bob_line = text.split(|&b| b == b'\n').nth(2).unwrap();
    assert!(bob_line.starts_with(b"bob:user:$argon2id$"));

    save(&path, &[]).unwrap();
    assert_eq!(load(&path).unwrap(), []);
}

#[test]
fn comments_and_blank_lines_ignored() {
    let h = hash_password_with(b"pw", Cost::CHEAP);
    let text = format!(
        "{HEADER}\n# a comment\n   \n\t\nalice:admin:{h}\r\n#bob:user:junk\n\nbob:user:{h}",
        h = h.as_str()
    );
    let records = parse(text.as_bytes()).unwrap();
    let names: Vec<&[u8]> = records.iter().map(|r| &r.name[..]).collect();
    assert_eq!(names, [&b"alice"[..], b"bob"]);
    assert_eq!(records[0].role, Role::Admin);
    assert_eq!(records[1].role, Role::Proxy);
    assert_eq!(parse(b"").unwrap(), []);
}

#[test]
fn load_errors_name_the_line() {
    let h = hash_password_with(b"pw", Cost::CHEAP);
    let h = h.as_str();
    let ok = format!("# header\n\nalice:admin:{h}\n");
    let with = |bad: &str| format!("{ok}{bad}\nzed:user:{h}\n");
    // The bad line is line 4 in every case.
    let cases = [
        (with("bob"), "expected NAME:ROLE:HASH"),
        (with("bob:user"), "expected NAME:ROLE:HASH"),
        (
            with(&format!("bob:root:{h}")),
            "unknown role (expected admin or user)",
        ),
        (
            with(&format!("bob:Admin:{h}")),
            "unknown role (expected admin or user)",
        ),
        (
            with(&format!("bob::{h}")),
            "unknown role (expected admin or user)",
        ),
        (with(&format!(":user:{h}")), "invalid user name"),
        (with(&format!("b\x01ob:user:{h}")), "invalid user name"),
        (with("bob:user:"), HashError::Malformed.reason()),
        (with("bob:user:hunter2"), HashError::Malformed.reason()),
        (
            with(&format!(
                "bob:user:{}",
                h.replacen("argon2id", "argon2i", 1)
            )),
            HashError::NotArgon2id.reason(),
        ),
        (with(&format!("alice:user:{h}")), "duplicate user name"),
    ];
    for (text, reason) in cases {
        assert_eq!(line_error(text.as_bytes()), (4, reason), "{text:?}");
    }
    // A name that is not UTF-8 is fine; a hash that is not UTF-8 is not.
    let mut bad = ok.clone().into_bytes();
    bad.extend_from_slice(b"bob:user:\xff\n");
    assert_eq!(line_error(&bad), (4, HashError::Malformed.reason()));
}

#[test]
fn errors_never_quote_the_line() {
    let dir = Scratch::new("quote");
    let path = dir.path("users");
    let h = hash_password_with(b"pw", Cost::CHEAP);
    fs::write(&path, format!("alice:boss:{}\n", h.as_str())).unwrap();
    let e = load(&path).unwrap_err();
    let shown = format!("{e} {e:?}");
    assert_eq!(
        e.to_string(),
        "users file line 1: unknown role (expected admin or user)"
    );
    assert!(
        !shown.contains("argon2") && !shown.contains("alice"),
        "{shown}"
    );
}

#[test]
fn missing_file_is_missing() {
    let dir = Scratch::new("missing");
    assert!(matches!(load(&dir.path("nope")), Err(FileError::Missing)));
    // A folder where the file should be is an I/O error, not "missing".
    assert!(matches!(load(&dir.0), Err(FileError::Io(_))));
}

// ------------------------------------------------------------ durable writes

#[test]
fn file_mode_is_0600() {
    let dir = Scratch::new("mode");
    let saved = dir.path("saved");
    save(&saved, &[record(b"alice", Role::Admin, b"pw")]).unwrap();
    assert_eq!(mode(&saved), 0o600);

    // Replacing a file that was world-readable leaves a 0600 file.
    fs::set_permissions(&saved, fs::Permissions::from_mode(0o644)).unwrap();
    save(&saved, &[]).unwrap();
    assert_eq!(mode(&saved), 0o600);

    let created = dir.path("created");
    create_new(&created).unwrap();
    assert_eq!(mode(&created), 0o600);
    assert_eq!(fs::read(&created).unwrap(), HEADER.as_bytes());
    assert_eq!(load(&created).unwrap(), []);
}

#[test]
fn create_new_refuses_an_existing_file() {
    let dir = Scratch::new("create");
    let path = dir.path("users");
    save(&path, &[record(b"alice", Role::Admin, b"pw")]).unwrap();
    let before = fs::read(&path).unwrap();
    let e = create_new(&path).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read(&path).unwrap(), before);

    let e = create_new(&dir.path("no-such-dir/users")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert_eq!(dir.entries(), ["users"]);
}

#[test]
fn save_replaces_and_leaves_no_temporary_file() {
    let dir = Scratch::new("replace");
    let path = dir.path("users");
    save(&path, &[record(b"alice", Role::Admin, b"one")]).unwrap();
    let second = [
        record(b"bob", Role::Proxy, b"two"),
        record(b"carol", Role::Admin, b"three"),
    ];
    save(&path, &second).unwrap();
    assert_eq!(load(&path).unwrap(), second);
    assert_eq!(dir.entries(), ["users"]);
}

/// The hook of `save_with` runs once, between the fsync of a whole
/// temporary file and the rename: the users file is still the old one then.
#[test]
fn save_with_calls_its_hook_before_the_rename() {
    let dir = Scratch::new("hook");
    let path = dir.path("users");
    let old = [record(b"alice", Role::Admin, b"one")];
    save(&path, &old).unwrap();
    let new = [record(b"bob", Role::Admin, b"two")];
    let mut seen = Vec::new();
    save_with(&path, &new, |tmp| {
        seen.push(tmp.to_path_buf());
        assert_eq!(load(tmp).unwrap(), new, "the temporary file is whole");
        assert_eq!(
            load(&path).unwrap(),
            old,
            "the users file is not replaced yet"
        );
    })
    .unwrap();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].exists(), "renamed away");
    assert_eq!(load(&path).unwrap(), new);
    assert_eq!(dir.entries(), ["users"]);
}

#[test]
fn save_into_missing_folder_fails_and_leaves_nothing() {
    let dir = Scratch::new("no-folder");
    let e = save(
        &dir.path("absent/users"),
        &[record(b"alice", Role::Admin, b"pw")],
    )
    .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(dir.entries().is_empty());
}

#[test]
fn failed_rename_removes_the_temporary_file() {
    let dir = Scratch::new("rename-fails");
    // rename(2) of a file over a folder fails (EISDIR), after the temporary
    // file has been written and fsynced.
    let path = dir.path("users");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("keep"), b"x").unwrap();
    let e = save(&path, &[record(b"alice", Role::Admin, b"pw")]).unwrap_err();
    assert_ne!(e.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(dir.entries(), ["users"]);
    assert!(path.is_dir());
    assert_eq!(entries(&path), ["keep"]);
}

#[test]
fn save_refuses_records_load_would_reject() {
    let dir = Scratch::new("refuse");
    let path = dir.path("users");
    save(&path, &[record(b"alice", Role::Admin, b"pw")]).unwrap();
    let before = fs::read(&path).unwrap();
    let cases = [
        vec![record(b"#alice", Role::Admin, b"pw")],
        vec![record(b"", Role::Admin, b"pw")],
        vec![record(b"a:b", Role::Admin, b"pw")],
        vec![record(b"a\nb", Role::Admin, b"pw")],
        vec![
            record(b"bob", Role::Admin, b"pw"),
            record(b"bob", Role::Proxy, b"pw"),
        ],
    ];
    for records in cases {
        let e = save(&path, &records).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{records:?}");
        assert_eq!(fs::read(&path).unwrap(), before);
        assert_eq!(dir.entries(), ["users"]);
    }
}

#[test]
fn relative_path_saves_beside_it() {
    // A bare file name has no parent folder: the folder fsync must use ".".
    assert_eq!(
        split_path(Path::new("users")).unwrap(),
        (Path::new("."), std::ffi::OsStr::new("users"))
    );
    assert_eq!(
        split_path(Path::new("/etc/socks5d/users")).unwrap(),
        (Path::new("/etc/socks5d"), std::ffi::OsStr::new("users"))
    );
    assert_eq!(
        split_path(Path::new("/")).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

/// The working memory of checks is allocated once, at the hash's cost, and
/// reused: a second check neither grows nor replaces it.
#[test]
fn check_memory_is_reused() {
    let cost = Cost {
        m_kib: 256,
        t: 1,
        p: 1,
    };
    let h = hash_password_with(b"pw", cost);
    let mut m = CheckMemory::new();
    assert_eq!(m.bytes(), 0);
    assert!(verify_password_in(&h, b"pw", &mut m));
    assert_eq!(m.bytes(), 256 * 1024);
    let first = m.blocks.as_ptr();
    assert!(!verify_password_in(&h, b"wrong", &mut m));
    assert_eq!(m.bytes(), 256 * 1024);
    assert_eq!(m.blocks.as_ptr(), first, "the same memory");
    assert_eq!(m.checks(), 2);
    // A cheaper hash uses part of it; a costlier one grows it once.
    let small = hash_password_with(b"pw", Cost { m_kib: 64, ..cost });
    assert!(verify_password_in(&small, b"pw", &mut m));
    assert_eq!(m.bytes(), 256 * 1024);
    let big = hash_password_with(b"pw", Cost { m_kib: 512, ..cost });
    assert!(verify_password_in(&big, b"pw", &mut m));
    assert_eq!(m.bytes(), 512 * 1024);
}

/// Run as root (the tests are), a users file saved in a folder of another
/// user's is that user's, as are its lock file: a service reading it as
/// that user still can after `socks5d user` ran as root.
#[test]
fn files_made_by_root_belong_to_their_folders_owner() {
    use std::os::unix::fs::MetadataExt;
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test checks what root does"
    );
    let dir = std::env::temp_dir().join(format!("socks5d-owned-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    nix::unistd::chown(
        &dir,
        Some(nix::unistd::Uid::from_raw(64_500)),
        Some(nix::unistd::Gid::from_raw(64_501)),
    )
    .unwrap();
    let path = dir.join("users");
    save(&path, &[]).unwrap();
    let _lock = lock(&path).unwrap();
    for f in [path.clone(), dir.join("users.lock")] {
        let m = fs::metadata(&f).unwrap();
        assert_eq!((m.uid(), m.gid()), (64_500, 64_501), "{}", f.display());
        assert_eq!(m.mode() & 0o777, 0o600, "{}", f.display());
    }
    fs::remove_dir_all(&dir).unwrap();
}
