//! A process seen through /proc/PID: its files, status fields, resident
//! memory, descriptors, CPU time, and its descriptor limit set from outside.

use std::fs;
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

/// /proc/PID/NAME, read whole.
pub fn proc_file(pid: Pid, name: &str) -> String {
    let path = format!("/proc/{pid}/{name}");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The fields of a /proc/PID/status line, e.g. "Uid".
pub fn status_field(pid: Pid, key: &str) -> Vec<String> {
    let status = proc_file(pid, "status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key}: in /proc/{pid}/status:\n{status}"));
    line.split_whitespace().map(str::to_owned).collect()
}

/// Resident memory, KiB.
pub fn rss_kib(pid: Pid) -> u64 {
    let f = status_field(pid, "VmRSS");
    f[0].parse().expect("VmRSS in kB")
}

/// Anonymous memory, KiB (file pages the kernel may drop at will are left
/// out), from /proc/PID/smaps_rollup.
pub fn anon_kib(pid: Pid) -> u64 {
    proc_file(pid, "smaps_rollup")
        .lines()
        .find_map(|l| l.strip_prefix("Anonymous:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("an Anonymous: line in smaps_rollup")
}

/// A flood of wrong passwords against `checkers` check threads, each
/// allowed one Argon2id memory of `check_kib`, measured at start, after a
/// warm-up and at the end: memory stays at start-up plus those buffers, and
/// does not grow with the number of attempts after the warm-up.
pub fn assert_check_memory_held(
    at_start: u64,
    warmed: u64,
    after: u64,
    checkers: u64,
    check_kib: u64,
) {
    eprintln!(
        "anonymous memory: {at_start} KiB at start, {warmed} KiB after the warm-up, \
         {after} KiB at the end"
    );
    assert!(
        after <= at_start + checkers * check_kib + 8 * 1024,
        "memory grew past start-up plus the check buffers: {at_start} -> {after} KiB"
    );
    assert!(
        after <= warmed + 4 * 1024,
        "memory grows with the number of attempts: {warmed} -> {after} KiB"
    );
}

/// The descriptors socks5d has open.
pub fn open_fds(pid: Pid) -> Vec<i32> {
    let dir = format!("/proc/{pid}/fd");
    fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// How many descriptors socks5d has once the last closed session is gone:
/// the count unchanged over 50 ms.
pub fn settled_fds(pid: Pid) -> usize {
    let end = Instant::now() + Duration::from_secs(5);
    let mut last = open_fds(pid).len();
    loop {
        thread::sleep(Duration::from_millis(50));
        let now = open_fds(pid).len();
        if now == last || Instant::now() > end {
            return now;
        }
        last = now;
    }
}

/// Clock ticks per second of /proc/PID/stat, from `getconf CLK_TCK`.
pub fn clk_tck() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        let out = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("run getconf CLK_TCK");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("getconf CLK_TCK prints a number")
    })
}

/// User plus system CPU time socks5d has used so far.
pub fn cpu_time(pid: Pid) -> Duration {
    let stat = proc_file(pid, "stat");
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. Field 3 (state) is index 0; utime is field 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("comm in parentheses") + 1..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f[10] + f[11];
    Duration::from_secs_f64(ticks as f64 / clk_tck() as f64)
}

/// Sets socks5d's descriptor limit (soft and hard) with util-linux `prlimit`.
pub fn prlimit_nofile(pid: Pid, limit: u64) {
    let out = Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--nofile={limit}:{limit}"))
        .output()
        .expect("run prlimit (util-linux)");
    assert!(
        out.status.success(),
        "prlimit --pid {pid} --nofile={limit}:{limit}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let limits = proc_file(pid, "limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a 'Max open files' line");
    assert!(
        line.split_whitespace().nth(3) == Some(&limit.to_string()),
        "limit not applied: {line}"
    );
}
