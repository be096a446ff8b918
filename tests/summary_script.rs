//! scripts/test-summary.sh, the closing account of `make test`, fed crafted
//! logs: it must add up every part, count the tools apart, and fail, naming
//! what is missing, whenever a part has no closing line or anything failed.
//!
//! The logs are built from lines in the shapes cargo, libtest, c-tests/run.sh,
//! `loadgen compare` and `loadgen scale` print. A failure message quotes the script's output
//! indented, so that it cannot be read as a result line of this run's own log.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test-summary.sh");

/// The lines cargo and libtest print for one target that ran to the end.
fn target(path: &str, passed: usize, failed: usize) -> String {
    let unit = if path.starts_with("src/")
        || path.starts_with("benches/")
        || path.starts_with("examples/")
    {
        "unittests "
    } else {
        ""
    };
    let stem = Path::new(path)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut s =
        format!("     Running {unit}{path} (target/debug/deps/{stem}-0123456789abcdef)\n\n");
    s += &format!("running {} tests\n", passed + failed);
    for i in 0..passed {
        s += &format!("test case_{i} ... ok\n");
    }
    for i in 0..failed {
        s += &format!("test broken_{i} ... FAILED\n");
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    s += &format!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\n"
    );
    if failed > 0 {
        s += &format!("error: test failed, to rerun pass `--test {stem}`\n");
    }
    s
}

/// A target whose binary died by SIGKILL in the middle of its tests.
fn killed_target(path: &str) -> String {
    let stem = Path::new(path)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    format!(
        "     Running {path} (target/debug/deps/{stem}-0123456789abcdef)\n\n\
         running 9 tests\ntest first ... ok\n\
         error: test failed, to rerun pass `--test {stem}`\n\n\
         Caused by:\n  process didn't exit successfully: \
         `/w/target/debug/deps/{stem}-0123456789abcdef` (signal: 9, SIGKILL: kill)\n"
    )
}

fn cargo_part(with: &[String]) -> String {
    let mut s = String::from(
        "   Compiling socks5d v0.1.0 (/w)\n    Finished `test` profile [unoptimized + debuginfo] target(s) in 9.00s\n",
    );
    for t in with {
        s += t;
    }
    s
}

/// socks5d's own targets (12 passed), the SCTP suite (3), the tools (5 + 2).
fn good_targets() -> Vec<String> {
    vec![
        target("src/lib.rs", 10, 0),
        target("src/main.rs", 0, 0),
        target("tests/relay.rs", 2, 0),
        target("tests/sctp/main.rs", 3, 0),
        target("benches/loadgen/loadgen.rs", 5, 0),
        target("examples/soak/main.rs", 2, 0),
    ]
}

const C_TESTS: &str = "PASS: log in as root: reply is X'01' X'00'\n== ncat.sh: 4 passed, 0 failed\n\
                       c-tests: ran in 10.837 s\nc-tests: 7 passed, 0 failed\n";

const SCALE: &str = "scale: step, 2000 tunnels: opened in 4.50 s (444/s); errors 0\n\
                     PASS scale: baseline: socks5d's memory read\n\
                     PASS scale: every tunnel closed in 1.27 s\n\
                     scale: report: bench-results/scale-smoke/report.md\n\
                     scale: 5 passed, 0 failed\n";

const DEB: &str = "PASS deb: dpkg -i socks5d_0.1.0-1_amd64.deb\nPASS deb: files in place\n\
                   deb: 8 passed, 0 failed\n";

fn bench(runs: usize, failed: usize) -> String {
    let mut s = String::from("bench: quick mode, 1 round(s), peers: socks5d\n");
    for i in 1..=runs {
        s += &format!(
            "[{i:>3}/{runs}]  0.3s r1 t1-up           socks5d       gib_s=1.099 errors=0\n"
        );
    }
    s += &format!(
        "bench: {runs} runs in 7 s, {failed} failed; report: bench-results/smoke/report.md\n"
    );
    for i in 0..failed {
        s += &format!("bench: failed: run {i}: no figure\n");
    }
    s
}

struct Outcome {
    ok: bool,
    out: String,
}

impl Outcome {
    fn last_line(&self) -> &str {
        self.out.lines().last().unwrap_or("")
    }

    fn says(&self, what: &str) -> bool {
        self.out.contains(what)
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("socks5d-summary-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn summarise(name: &str, log: &str) -> Outcome {
    let path = scratch(name);
    fs::write(&path, log).unwrap();
    let out = Command::new("bash")
        .arg(SCRIPT)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash {SCRIPT}: {e}"));
    fs::remove_file(&path).unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text += &String::from_utf8_lossy(&out.stderr);
    Outcome {
        ok: out.status.success(),
        out: text,
    }
}

/// The script's output, indented, for a failure message.
fn shown(o: &Outcome) -> String {
    o.out.lines().map(|l| format!("    | {l}\n")).collect()
}

fn expect_failure(o: &Outcome, names: &[&str], summary: &str) {
    assert!(!o.ok, "the script passed:\n{}", shown(o));
    for n in names {
        assert!(o.says(n), "the output does not say {n:?}:\n{}", shown(o));
    }
    assert_eq!(o.last_line(), summary, "the last line:\n{}", shown(o));
}

#[test]
fn a_good_log_adds_up_and_counts_the_tools_apart() {
    let log = cargo_part(&good_targets()) + C_TESTS + &bench(9, 0) + SCALE + DEB;
    let o = summarise("good", &log);
    assert!(o.ok, "a good log failed:\n{}", shown(&o));
    for line in [
        "socks5d, cargo targets:  12 passed, 0 failed (3 targets)",
        "socks5d, SCTP suite:     3 passed, 0 failed",
        "socks5d, C tests:        7 passed, 0 failed",
        "tools (loadgen, soak):   7 passed, 0 failed (2 targets)",
        "benchmark smoke runs:    9 passed, 0 failed",
        "scale smoke (in UML):    5 passed, 0 failed",
        "Debian package:          8 passed, 0 failed",
    ] {
        assert!(
            o.out.lines().any(|l| l == line),
            "no line {line:?}:\n{}",
            shown(&o)
        );
    }
    assert!(!o.says("MISSING") && !o.says("FAILED"), "{}", shown(&o));
    assert_eq!(
        o.last_line(),
        "summary: 51 passed, 0 failed",
        "{}",
        shown(&o)
    );
}

#[test]
fn a_target_killed_by_a_signal_is_named_and_counted() {
    let mut targets = good_targets();
    targets.insert(2, killed_target("tests/faults.rs"));
    targets.push("error: 1 target failed:\n    `--test faults`\n".into());
    let o = summarise(
        "killed",
        &(cargo_part(&targets) + C_TESTS + &bench(9, 0) + SCALE + DEB),
    );
    expect_failure(
        &o,
        &[
            "MISSING: cargo target tests/faults.rs (socks5d): no \"test result\" line (signal: 9, SIGKILL: kill)",
        ],
        "summary: 51 passed, 1 failed",
    );
}

#[test]
fn a_tool_target_killed_last_is_named() {
    // The last target dies, cargo itself is killed: no closing "error:" line,
    // the C tests' output follows at once.
    let mut targets = good_targets();
    targets.pop();
    targets.push(killed_target("examples/soak/main.rs"));
    let o = summarise(
        "tool-killed",
        &(cargo_part(&targets) + C_TESTS + &bench(9, 0) + SCALE + DEB),
    );
    expect_failure(
        &o,
        &[
            "MISSING: cargo target examples/soak/main.rs (a tool): no \"test result\" line (signal: 9",
        ],
        "summary: 49 passed, 1 failed",
    );
    assert!(
        o.says("tools (loadgen, soak):   5 passed, 1 failed (2 targets)"),
        "{}",
        shown(&o)
    );
}

#[test]
fn failed_tests_are_counted_and_their_target_named() {
    let mut targets = good_targets();
    targets[2] = target("tests/relay.rs", 1, 1);
    let o = summarise(
        "failed-test",
        &(cargo_part(&targets) + C_TESTS + &bench(9, 0) + SCALE + DEB),
    );
    expect_failure(
        &o,
        &["FAILED: cargo target tests/relay.rs (socks5d): 1 failed"],
        "summary: 50 passed, 1 failed",
    );
}

#[test]
fn an_ok_result_with_a_failed_exit_is_a_failure() {
    let mut targets = good_targets();
    targets[3] += "error: test failed, to rerun pass `--test sctp`\n\nCaused by:\n  \
                   process didn't exit successfully: `/w/target/debug/deps/sctp-0123` (exit status: 1)\n";
    let o = summarise(
        "liar",
        &(cargo_part(&targets) + C_TESTS + &bench(9, 0) + SCALE + DEB),
    );
    expect_failure(
        &o,
        &[
            "FAILED: cargo target tests/sctp/main.rs (socks5d): its result line shows no failure, but cargo reports it failed (exit status: 1)",
        ],
        "summary: 51 passed, 1 failed",
    );
}

#[test]
fn c_tests_without_their_line_fail_and_say_why() {
    let c_part = "cargo build --bins\numl-run: the UML kernel ended without a status (exit 1)\n\
                  make[1]: *** [Makefile:41: c-tests] Error 1\n";
    let o = summarise(
        "no-c-tests",
        &(cargo_part(&good_targets()) + c_part + &bench(9, 0) + SCALE + DEB),
    );
    expect_failure(
        &o,
        &[
            "MISSING: the C tests: no \"c-tests: N passed, N failed\" line",
            "uml-run: the UML kernel ended without a status",
            "Makefile:41: c-tests",
        ],
        "summary: 44 passed, 1 failed",
    );
}

#[test]
fn a_failed_or_missing_bench_smoke_fails() {
    let o = summarise(
        "bench-failed",
        &(cargo_part(&good_targets()) + C_TESTS + &bench(9, 1) + SCALE + DEB),
    );
    expect_failure(
        &o,
        &["FAILED: the benchmark smoke: 1 of 9 runs failed (run 0: no figure)"],
        "summary: 50 passed, 1 failed",
    );

    let o = summarise(
        "bench-missing",
        &(cargo_part(&good_targets()) + C_TESTS + SCALE + DEB),
    );
    expect_failure(
        &o,
        &["MISSING: the benchmark smoke: no \"bench: N runs in S s, M failed\" line"],
        "summary: 42 passed, 1 failed",
    );

    // Interrupted after 4 of 9 runs: its last line says 4 runs, 0 failed.
    let cut = bench(9, 0)
        .lines()
        .filter(|l| !l.starts_with('[') || l[1..4].trim().parse::<usize>().unwrap() <= 4)
        .map(|l| l.replace("9 runs in", "4 runs in") + "\n")
        .collect::<String>();
    let o = summarise(
        "bench-cut",
        &(cargo_part(&good_targets()) + C_TESTS + &cut + SCALE + DEB),
    );
    expect_failure(
        &o,
        &["MISSING: the benchmark smoke: 4 of 9 runs done"],
        "summary: 46 passed, 5 failed",
    );
}

#[test]
fn a_missing_sctp_suite_or_a_build_failure_fails() {
    let mut targets = good_targets();
    targets.remove(3);
    let o = summarise(
        "no-sctp",
        &(cargo_part(&targets) + C_TESTS + &bench(9, 0) + SCALE + DEB),
    );
    expect_failure(
        &o,
        &["MISSING: the SCTP suite (tests/sctp/main.rs) did not run"],
        "summary: 48 passed, 1 failed",
    );

    let broken = "   Compiling socks5d v0.1.0 (/w)\nerror[E0425]: cannot find value `x`\n\
                  error: could not compile `socks5d` (test \"relay\") due to 1 previous error\n";
    let o = summarise(
        "no-build",
        &(broken.to_owned() + C_TESTS + &bench(9, 0) + SCALE + DEB),
    );
    expect_failure(
        &o,
        &["MISSING: cargo test ran no target (error: could not compile `socks5d` (test \"relay\")"],
        "summary: 29 passed, 1 failed",
    );
}

#[test]
fn a_log_cut_short_names_the_open_target() {
    let mut log = cargo_part(&good_targets()[..2]);
    log += "     Running tests/relay.rs (target/debug/deps/relay-0123456789abcdef)\n\nrunning 2 tests\ntest a ... ok\n";
    let o = summarise("cut", &log);
    expect_failure(
        &o,
        &[
            "MISSING: cargo target tests/relay.rs (socks5d): no \"test result\" line (the log ends without one)",
            "MISSING: the SCTP suite",
            "MISSING: the C tests",
            "MISSING: the benchmark smoke",
            "MISSING: the scale smoke",
            "MISSING: the Debian package test",
        ],
        "summary: 10 passed, 6 failed",
    );
}

#[test]
fn a_failed_or_missing_package_test_fails() {
    let failed = "PASS deb: dpkg -i socks5d.deb\nFAIL deb: curl through the packaged socks5d\n\
                  deb: 7 passed, 1 failed\n";
    let o = summarise(
        "deb-failed",
        &(cargo_part(&good_targets()) + C_TESTS + &bench(9, 0) + SCALE + failed),
    );
    expect_failure(
        &o,
        &["FAILED: the Debian package test: 1 failed"],
        "summary: 50 passed, 1 failed",
    );
    let o = summarise(
        "deb-missing",
        &(cargo_part(&good_targets()) + C_TESTS + &bench(9, 0) + SCALE),
    );
    expect_failure(
        &o,
        &["MISSING: the Debian package test: no \"deb: N passed, N failed\" line"],
        "summary: 43 passed, 1 failed",
    );
}

#[test]
fn a_failed_or_missing_scale_smoke_fails() {
    let failed = "PASS scale: baseline: socks5d's memory read\n\
                  FAIL scale: 2,000 tunnels: errors or figures missing: loadgen ok=0\n\
                  scale: 4 passed, 1 failed\n";
    let o = summarise(
        "scale-failed",
        &(cargo_part(&good_targets()) + C_TESTS + &bench(9, 0) + failed + DEB),
    );
    expect_failure(
        &o,
        &[
            "FAILED: the scale smoke: 1 failed",
            "scale smoke (in UML):    4 passed, 1 failed",
        ],
        "summary: 50 passed, 1 failed",
    );
    // The guest never came back: only the lines before the report.
    let cut = "scale: booting a 1G User-Mode Linux guest for 2000 tunnels\n\
               uml-run: the UML kernel ended without a status (exit 1)\n";
    let o = summarise(
        "scale-missing",
        &(cargo_part(&good_targets()) + C_TESTS + &bench(9, 0) + cut + DEB),
    );
    expect_failure(
        &o,
        &["MISSING: the scale smoke: no \"scale: N passed, N failed\" line"],
        "summary: 46 passed, 1 failed",
    );
}
