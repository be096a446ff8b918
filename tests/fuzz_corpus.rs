//! The fuzz corpus as a regression test: every file of fuzz/corpus/<target>/
//! goes through the same check as the fuzz target of that name
//! (fuzz/checks.rs), under plain `cargo test` on stable, without cargo-fuzz.
//! Crashes the fuzzer found are kept in the corpus, so they stay fixed.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../fuzz/checks.rs"]
mod checks;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

/// Runs every file of `fuzz/corpus/<target>/` through its check; fails if the
/// directory is missing or empty, and names every file whose check panicked.
fn run(target: &str) {
    let (_, check) = checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no check for {target}"));
    let dir = corpus_root().join(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    let mut failed = Vec::new();
    for path in &files {
        let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs failed:\n  {}",
        failed.len(),
        files.len(),
        failed.join("\n  ")
    );
}

macro_rules! corpus_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                run(stringify!($target));
            }
        )*

        /// Every corpus directory belongs to a target with a test here, and
        /// every target has one.
        #[test]
        fn corpus_directories_match_targets() {
            let mut tested = vec![$(stringify!($target)),*];
            tested.sort_unstable();
            let mut targets: Vec<&str> = checks::TARGETS.iter().map(|(name, _)| *name).collect();
            targets.sort_unstable();
            assert_eq!(tested, targets, "a target without a corpus test");
            let mut dirs: Vec<String> = fs::read_dir(corpus_root())
                .expect("fuzz/corpus")
                .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
                .collect();
            dirs.sort_unstable();
            assert_eq!(dirs, targets, "fuzz/corpus/ and the fuzz targets differ");
        }
    };
}

corpus_tests!(
    socks5_greeting,
    socks5_auth,
    socks5_request,
    socks5_handshake,
    socks5_udp,
    proxy_header,
    mgmt_login,
    mgmt_request,
    mgmt_response,
    mgmt_session,
    rules_parse,
);
