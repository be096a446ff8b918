//! The standard `process_*` metrics of the Prometheus client libraries, read
//! from /proc/self: CPU seconds, memory, descriptors, start time.

use std::fs;
use std::io;

use nix::sys::resource::{Resource, getrlimit};
use nix::unistd::{SysconfVar, sysconf};

/// The process's own figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory, in bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The descriptor limit (soft RLIMIT_NOFILE).
    pub max_fds: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// The fields of /proc/PID/stat this module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// Clock ticks in user mode (field 14).
    utime: u64,
    /// Clock ticks in kernel mode (field 15).
    stime: u64,
    /// Clock ticks from boot to the start (field 22).
    starttime: u64,
    /// Virtual memory size in bytes (field 23).
    vsize: u64,
    /// Resident pages (field 24).
    rss: u64,
}

/// Parses /proc/PID/stat. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from after its last ')'.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // Field 3 (the state) is index 0: field N is index N - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: n(14)?,
        stime: n(15)?,
        starttime: n(22)?,
        vsize: n(23)?,
        rss: n(24)?,
    })
}

/// The boot time, in seconds since the epoch: the `btime` line of /proc/stat.
fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse {what}"))
}

/// A sysconf value that must exist and be positive.
fn positive_sysconf(var: SysconfVar) -> io::Result<u64> {
    match sysconf(var) {
        Ok(Some(v)) if v > 0 => Ok(v as u64),
        Ok(_) => Err(bad("sysconf")),
        Err(e) => Err(e.into()),
    }
}

/// The figures now.
pub fn read() -> io::Result<Stats> {
    let stat = parse_stat(&fs::read_to_string("/proc/self/stat")?)
        .ok_or_else(|| bad("/proc/self/stat"))?;
    let btime = parse_btime(&fs::read_to_string("/proc/stat")?).ok_or_else(|| bad("/proc/stat"))?;
    let tck = positive_sysconf(SysconfVar::CLK_TCK)?;
    let page = positive_sysconf(SysconfVar::PAGE_SIZE)?;
    // The directory's own descriptor is counted too, as the client
    // libraries do.
    let open_fds = fs::read_dir("/proc/self/fd")?.count() as u64;
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let tck_f = tck as f64;
    Ok(Stats {
        cpu_seconds: (stat.utime + stat.stime) as f64 / tck_f,
        resident_bytes: stat.rss.saturating_mul(page),
        virtual_bytes: stat.vsize,
        open_fds,
        max_fds: soft,
        start_time_seconds: btime as f64 + stat.starttime as f64 / tck_f,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_an_awkward_name() {
        let text = "42 (a) (b c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 \
                    3 0 123456 9876543 1024 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                utime: 250,
                stime: 75,
                starttime: 123456,
                vsize: 9876543,
                rss: 1024,
            })
        );
        assert_eq!(parse_stat("42 (x) S 1 2"), None);
        assert_eq!(parse_stat("no name"), None);
    }

    #[test]
    fn btime_line() {
        assert_eq!(
            parse_btime("cpu  1 2 3\nintr 5\nbtime 1796085330\nprocesses 9\n"),
            Some(1_796_085_330)
        );
        assert_eq!(parse_btime("cpu 1\n"), None);
    }

    /// This test process's figures are those /proc and the clock show.
    #[test]
    fn figures_of_this_process() {
        let s = read().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            s.start_time_seconds <= now + 1.0 && s.start_time_seconds > now - 3600.0,
            "{s:?}"
        );
        assert!(s.resident_bytes > 1 << 20, "{s:?}");
        assert!(s.virtual_bytes >= s.resident_bytes, "{s:?}");
        assert!(s.open_fds >= 3 && s.open_fds <= s.max_fds, "{s:?}");
        // Burn some CPU: the count goes up.
        let before = s.cpu_seconds;
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(150) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(read().unwrap().cpu_seconds > before, "{x}");
    }
}
