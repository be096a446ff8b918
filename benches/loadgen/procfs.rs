//! What /proc says about a proxy: its process tree, the memory of that tree
//! (RSS and PSS from `smaps_rollup`) and its CPU time.
//!
//! A proxy may be one process (socks5d, microsocks) or a mother and forked
//! children (Dante): every figure is summed over the whole tree. PSS shares
//! each page among the processes that map it, so a forking server is not
//! charged many times for one page; RSS is shown beside it.

use std::fs;

/// Clock ticks per second of `/proc/PID/stat` times: USER_HZ, which Linux
/// fixes at 100 for every program whatever the kernel's own HZ.
pub const TICKS_PER_SEC: f64 = 100.0;

/// The fields of `/proc/PID/stat` that are used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Process id.
    pub pid: u32,
    /// Parent's process id.
    pub ppid: u32,
    /// State letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// User plus system time, in ticks, of the process and of its children
    /// that it has waited for.
    pub cpu_ticks: u64,
    /// The user-space part of `cpu_ticks`.
    pub user_ticks: u64,
    /// Start time, in ticks after boot: with the pid, it names one process
    /// even after its pid is reused.
    pub start: u64,
}

/// Parses a `/proc/PID/stat` line. The command name sits in parentheses and
/// may itself hold spaces and parentheses: fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    // After the name: state (field 3), ppid (4), ... utime (14), stime (15),
    // cutime (16), cstime (17), ... starttime (22).
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { rest.get(n - 3)?.parse().ok() };
    Some(Stat {
        pid,
        ppid: u32::try_from(field(4)?).ok()?,
        state: rest.first()?.chars().next()?,
        cpu_ticks: field(14)? + field(15)? + field(16)? + field(17)?,
        user_ticks: field(14)? + field(16)?,
        start: field(22)?,
    })
}

/// The stat of one process, `None` once it is gone.
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn all_stats() -> Vec<Stat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .collect()
}

/// `root` and all its living descendants (zombies left out), root first.
pub fn tree(root: u32) -> Vec<Stat> {
    let all = all_stats();
    let mut out: Vec<Stat> = all
        .iter()
        .filter(|s| s.pid == root && s.state != 'Z')
        .copied()
        .collect();
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].pid;
        out.extend(
            all.iter()
                .filter(|s| s.ppid == parent && s.state != 'Z' && s.pid != root),
        );
        i += 1;
    }
    out
}

/// Resident memory of a process tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Sum of RSS, KiB.
    pub rss_kib: u64,
    /// Sum of PSS, KiB.
    pub pss_kib: u64,
    /// Sum of anonymous memory (heap, stacks), KiB: RSS without the pages
    /// of mapped files, which the kernel may drop and read back at will.
    pub anon_kib: u64,
    /// How many processes were read.
    pub processes: usize,
}

/// `(Rss, Pss, Anonymous)` in KiB from the text of `/proc/PID/smaps_rollup`.
pub fn parse_rollup(text: &str) -> Option<(u64, u64, u64)> {
    let kib = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    Some((kib("Rss:")?, kib("Pss:")?, kib("Anonymous:")?))
}

/// The memory of `root` and its descendants; processes that vanish while
/// being read are skipped.
pub fn tree_memory(root: u32) -> Memory {
    let mut m = Memory::default();
    for s in tree(root) {
        let Ok(text) = fs::read_to_string(format!("/proc/{}/smaps_rollup", s.pid)) else {
            continue;
        };
        if let Some((rss, pss, anon)) = parse_rollup(&text) {
            m.rss_kib += rss;
            m.pss_kib += pss;
            m.anon_kib += anon;
            m.processes += 1;
        }
    }
    m
}

/// CPU ticks used so far by `root` and its descendants.
pub fn tree_cpu_ticks(root: u32) -> Ticks {
    tree(root).iter().fold(Ticks::default(), |t, s| Ticks {
        all: t.all + s.cpu_ticks,
        user: t.user + s.user_ticks,
    })
}

/// CPU time in ticks: all of it, and the part spent in user space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ticks {
    /// User plus system time.
    pub all: u64,
    /// User time.
    pub user: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn stat_with_a_strange_command_name() {
        let line = "4242 (a) b (c)) S 17 4242 17 0 -1 4194560 100 0 0 0 \
                    7 3 2 1 20 0 1 0 123456 1000 10 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.ppid, 17);
        assert_eq!(s.state, 'S');
        assert_eq!(s.cpu_ticks, 7 + 3 + 2 + 1);
        assert_eq!(s.user_ticks, 7 + 2);
        assert_eq!(s.start, 123456);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn rollup_fields() {
        let text = "5585-7fff ---p 00000000 00:00 0   [rollup]\n\
                    Rss:                1724 kB\n\
                    Pss:                 275 kB\n\
                    Pss_Dirty:           112 kB\n\
                    Pss_Anon:            100 kB\n\
                    Anonymous:           116 kB\n";
        assert_eq!(parse_rollup(text), Some((1724, 275, 116)));
        assert_eq!(parse_rollup("Rss: 1 kB\n"), None);
    }

    #[test]
    fn our_own_tree_and_memory() {
        let me = std::process::id();
        let mut child = Command::new("sleep")
            .arg("10")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let t = tree(me);
        assert_eq!(t[0].pid, me);
        assert!(t.iter().any(|s| s.pid == child.id()), "{t:?}");
        let m = tree_memory(me);
        assert!(m.processes >= 2, "{m:?}");
        assert!(
            m.rss_kib > 0 && m.pss_kib > 0 && m.pss_kib <= m.rss_kib,
            "{m:?}"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!tree(me).iter().any(|s| s.pid == child.id()));
        assert!(stat(me).is_some());
    }
}
