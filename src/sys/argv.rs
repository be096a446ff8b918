//! The command line as other users see it: `/proc/PID/cmdline` and `ps` show
//! the bytes of this process's own argument strings, which lie between the
//! `arg_start` and `arg_end` fields of `/proc/self/stat`. Overwriting them
//! there hides a password given with `-u` or `--admin` from everyone else
//! from then on.

use std::fs;
use std::io;
use std::ops::Range;

/// The argument area's address range, from `/proc/self/stat`.
fn arg_area() -> io::Result<(usize, usize)> {
    parse_arg_area(&fs::read_to_string("/proc/self/stat")?)
}

fn parse_arg_area(stat: &str) -> io::Result<(usize, usize)> {
    // The command name (field 2) is in parentheses and may hold anything,
    // spaces and parentheses included: count fields after the last ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no ')' in /proc/self/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // proc(5): arg_start is field 48 and arg_end field 49; `after` starts
    // at field 3.
    let field = |n: usize| -> io::Result<usize> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short /proc/self/stat"))
    };
    let (start, end) = (field(48)?, field(49)?);
    if start == 0 || end <= start {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no argument area",
        ));
    }
    Ok((start, end))
}

/// Overwrites with `x` the byte ranges `spans` names: `(i, range)` is
/// `range` within argument `i` (0 is the program). Call it before any
/// other thread starts, once the arguments are parsed: it changes what
/// `std::env::args` returns from then on.
pub fn overwrite(spans: &[(usize, Range<usize>)]) -> io::Result<()> {
    if spans.is_empty() {
        return Ok(());
    }
    let (start, end) = arg_area()?;
    // SAFETY: [start, end) is this process's argument area as the kernel
    // reports it: the argv strings the kernel copied onto the initial
    // stack, mapped, writable and alive for the whole process. No Rust
    // reference to it exists (std keeps raw pointers and copies the strings
    // on each `env::args` call), and no other thread runs yet to read it
    // while it changes.
    let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    // The area holds argv[0] NUL argv[1] NUL ... argv[argc-1] NUL.
    let mut args: Vec<Range<usize>> = Vec::new();
    let mut from = 0;
    for (i, b) in area.iter().enumerate() {
        if *b == 0 {
            args.push(from..i);
            from = i + 1;
        }
    }
    for (i, r) in spans {
        let a = args
            .get(*i)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such argument"))?;
        if r.end > a.len() || r.start > r.end {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a range past its argument",
            ));
        }
        area[a.start + r.start..a.start + r.end].fill(b'x');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arg_area_fields_after_a_strange_command_name() {
        // Fields 3..=52 after a name with spaces and parentheses.
        let mut stat = String::from("42 (a) b (c)) S");
        for n in 4..=52 {
            stat.push_str(&format!(
                " {}",
                if n == 48 {
                    1000
                } else if n == 49 {
                    1040
                } else {
                    n
                }
            ));
        }
        assert_eq!(parse_arg_area(&stat).unwrap(), (1000, 1040));
        assert!(parse_arg_area("42 (x) S 1 2").is_err());
    }

    #[test]
    fn this_process_has_an_argument_area() {
        let (start, end) = arg_area().unwrap();
        assert!(end > start);
    }
}
