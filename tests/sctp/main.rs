//! The management suite over SCTP: the real socks5d and socks5dctl, the
//! real kernel SCTP, third-party clients (curl, ncat, socat). Its cases
//! (tests/mgmt/) are those of the suite's list marked to run over both
//! transports or over SCTP only; tests/mgmt_unix.rs runs the others, and
//! the shared ones again, over the Unix socket.
//!
//! One test target with its own harness (`harness = false`), so that on a
//! kernel without SCTP the whole suite re-runs itself once inside User-Mode
//! Linux (scripts/uml-run.sh, docs/sctp.md) instead of booting it per test.
//! It never passes by skipping: where neither this kernel nor UML has SCTP it
//! fails and says what to install.
//!
//! Output and exit status follow libtest, so `cargo test` and
//! scripts/test-summary.sh read it like any other target: an optional filter
//! (a substring of case names), `--exact`, `--skip`, `--list`; other libtest
//! flags are accepted and ignored.

#[path = "../common/mod.rs"]
mod common;
#[path = "../mgmt/mod.rs"]
mod mgmt;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mgmt::support::Transport;
use socks5d::sys::sctp::{SctpSocket, unsupported_hint};

/// Set in the environment of the copy that runs inside UML.
const IN_UML: &str = "SOCKS5D_IN_UML";

const PACKAGES: &str =
    "install them with: apt-get install -y user-mode-linux kmod iproute2 (and ncat socat curl)";

struct Args {
    filters: Vec<String>,
    skips: Vec<String>,
    exact: bool,
    list: bool,
    ignored_only: bool,
}

fn parse_args(raw: &[String]) -> Args {
    let mut a = Args {
        filters: Vec::new(),
        skips: Vec::new(),
        exact: false,
        list: false,
        ignored_only: false,
    };
    let mut it = raw.iter();
    while let Some(s) = it.next() {
        match s.as_str() {
            "--exact" => a.exact = true,
            "--list" => a.list = true,
            "--ignored" => a.ignored_only = true,
            "--skip" => a.skips.extend(it.next().cloned()),
            // libtest flags that take a value: the value is not a filter.
            "--test-threads" | "--format" | "--logfile" | "--color" | "-Z" | "--report-time"
            | "--shuffle-seed" => {
                it.next();
            }
            s if s.starts_with("--skip=") => a.skips.push(s["--skip=".len()..].to_owned()),
            s if s.starts_with('-') => {} // --nocapture, -q, --test-threads=N, ...
            s => a.filters.push(s.to_owned()),
        }
    }
    a
}

impl Args {
    fn selects(&self, name: &str) -> bool {
        let hit = |f: &String| {
            if self.exact {
                name == f
            } else {
                name.contains(f.as_str())
            }
        };
        !self.ignored_only
            && (self.filters.is_empty() || self.filters.iter().any(hit))
            && !self.skips.iter().any(hit)
    }
}

/// Whether this kernel can make an SCTP socket: a one-to-one connect to a
/// port where nothing listens fails with "refused" (or similar) when it can,
/// and with ESOCKTNOSUPPORT/EPROTONOSUPPORT when it cannot.
fn kernel_has_sctp() -> Result<bool, String> {
    let addr: SocketAddr = "127.0.0.1:9".parse().expect("a valid literal");
    match SctpSocket::connect(addr, Some(Duration::from_secs(5))) {
        Ok(_) => Ok(true),
        Err(e) if unsupported_hint(&e).is_some() => Ok(false),
        Err(e) => match e.raw_os_error() {
            Some(
                libc::ECONNREFUSED
                | libc::ETIMEDOUT
                | libc::EAGAIN
                | libc::ECONNRESET
                | libc::EHOSTUNREACH,
            ) => Ok(true),
            _ => Err(format!("SCTP probe: connect to {addr}: {e}")),
        },
    }
}

fn summary(ok: bool, passed: usize, failed: usize, filtered: usize, took: Duration) -> String {
    format!(
        "test result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {filtered} filtered out; finished in {:.2}s",
        if ok { "ok" } else { "FAILED" },
        took.as_secs_f64()
    )
}

/// Runs this same binary, with the same arguments, inside UML; copies its
/// output through and returns its exit status.
fn rerun_in_uml(raw: &[String]) -> ExitCode {
    let started = Instant::now();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/uml-run.sh");
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail_outside(started, &format!("cannot find this test binary: {e}")),
    };
    println!(
        "this kernel has no SCTP: running the suite inside User-Mode Linux ({})",
        script.display()
    );
    let _ = std::io::stdout().flush();
    let child = Command::new(&script)
        .args(["-t", "900"])
        .arg(&exe)
        .args(raw)
        .env(IN_UML, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return fail_outside(started, &format!("cannot run {}: {e}", script.display())),
    };
    let mut saw_summary = false;
    if let Some(out) = child.stdout.take() {
        let mut r = BufReader::new(out);
        let mut line = Vec::new();
        let stdout = std::io::stdout();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    saw_summary |= line.starts_with(b"test result: ");
                    let mut o = stdout.lock();
                    let _ = o.write_all(&line);
                    let _ = o.flush();
                }
            }
        }
    }
    let status = match child.wait() {
        Ok(s) => s,
        Err(e) => return fail_outside(started, &format!("waiting for {}: {e}", script.display())),
    };
    if status.success() && saw_summary {
        return ExitCode::SUCCESS;
    }
    if !saw_summary {
        return fail_outside(
            started,
            &format!(
                "User-Mode Linux did not run the suite ({} ended with {status}, no summary line): \
                 the SCTP tests need it on a kernel without SCTP; {PACKAGES}",
                script.display()
            ),
        );
    }
    ExitCode::FAILURE
}

/// The suite could not run at all: one loud failure, in libtest's form.
fn fail_outside(started: Instant, why: &str) -> ExitCode {
    println!("test sctp::environment ... FAILED\n\nerror: {why}\n");
    println!("{}", summary(false, 0, 1, 0, started.elapsed()));
    ExitCode::FAILURE
}

/// The last panic's message and place, recorded by the hook.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args = parse_args(&raw);
    let cases: Vec<&mgmt::Case> = mgmt::cases_over(Transport::Sctp).collect();
    if args.list {
        for case in cases.iter().filter(|c| args.selects(c.name)) {
            println!("{}: test", case.name);
        }
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    match kernel_has_sctp() {
        Ok(true) => {}
        Ok(false) if std::env::var_os(IN_UML).is_none() => return rerun_in_uml(&raw),
        Ok(false) => {
            return fail_outside(
                started,
                &format!(
                    "no SCTP even inside User-Mode Linux: the UML kernel modules are missing; {PACKAGES}"
                ),
            );
        }
        Err(e) => return fail_outside(started, &e),
    }

    // Record panics instead of letting the default hook interleave them;
    // panics in helper threads are printed, since they may never be joined.
    panic::set_hook(Box::new(|info| {
        let msg = match info.payload().downcast_ref::<&str>() {
            Some(s) => (*s).to_owned(),
            None => info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "Box<dyn Any>".into()),
        };
        let place = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let text = format!("thread '{name}' panicked at {place}:\n{msg}");
        if name == "main" {
            *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
        } else {
            eprintln!("{text}");
        }
    }));

    let selected: Vec<&mgmt::Case> = cases
        .iter()
        .copied()
        .filter(|c| args.selects(c.name))
        .collect();
    let filtered = cases.len() - selected.len();
    let shared = cases.iter().filter(|c| c.over == mgmt::Over::Both).count();
    let unix_only = mgmt::cases_over(Transport::Unix).count() - shared;
    println!(
        "\n{} cases over SCTP: {shared} shared with the Unix socket, {} about SCTP itself \
         ({unix_only} more run over the Unix socket only, in tests/mgmt_unix.rs)",
        cases.len(),
        cases.len() - shared
    );
    println!("\nrunning {} tests", selected.len());
    let mut failures: Vec<(&str, String)> = Vec::new();
    for case in &selected {
        let name = case.name;
        print!("test {name} ... ");
        let _ = std::io::stdout().flush();
        let t = Instant::now();
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = None;
        match panic::catch_unwind(AssertUnwindSafe(|| (case.run)(&Transport::Sctp))) {
            Ok(()) => println!("ok ({:.2}s)", t.elapsed().as_secs_f64()),
            Err(_) => {
                println!("FAILED ({:.2}s)", t.elapsed().as_secs_f64());
                let msg = LAST_PANIC
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .unwrap_or_else(|| "panicked".into());
                println!("---- {name} ----\n{msg}\n");
                failures.push((name, msg));
            }
        }
        let _ = std::io::stdout().flush();
    }
    let passed = selected.len() - failures.len();
    if !failures.is_empty() {
        println!("\nfailures:\n");
        for (name, msg) in &failures {
            println!("---- {name} stdout ----\n{msg}\n");
        }
        println!("failures:");
        for (name, _) in &failures {
            println!("    {name}");
        }
    }
    println!(
        "\n{}\n",
        summary(
            failures.is_empty(),
            passed,
            failures.len(),
            filtered,
            started.elapsed()
        )
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
