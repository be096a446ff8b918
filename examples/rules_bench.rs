//! The cost of judging a request against 1,000 access rules (src/rules/):
//! ns per request, and the allocations judging made (there must be none).
//!
//! ```text
//! cargo run --release --example rules_bench [-- ROUNDS]
//! ```
//!
//! The rules are a mix an operator might write: denied blocks (the
//! metadata service, private ranges), per-user allow lists of domains with
//! rates, a block list of names and domains, allowed client networks, and
//! port ranges with `log`, ending in `deny`. Requests mix names and
//! addresses, users and anonymous clients; a request to a name goes through
//! `judge_name`, and `judge` on its address when that asks for one. The
//! same requests are judged by walking the rules one by one
//! (`judge_linear`) for comparison, and once more against the same rules
//! without their last `deny`, where most requests match no rule at all.
//! Exits 1 if judging allocated.

// One `unsafe` item: the counting allocator.
#![deny(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::time::{ClockId, clock_gettime};

use socks5d::rules::{Cmd, NameRequest, NameVerdict, Request, Rules, Verdict};

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantees for `layout` hold for System too.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for dealloc, and `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The 1,000 rules, the last a `deny`.
fn rules_text() -> String {
    let mut lines = vec![
        "deny to 169.254.169.254,fd00:ec2::254 log".to_owned(),
        "deny to 127.0.0.0/8,::1".to_owned(),
        "allow user @admins log".to_owned(),
    ];
    for i in 0..17 {
        lines.push(format!("deny to 10.{i}.0.0/16"));
    }
    for i in 0..300 {
        lines.push(format!(
            "allow user u{i} to .site{i}.example,.cdn{}.example port 80,443 rate 10M",
            i % 50
        ));
    }
    for i in 0..300 {
        if i % 2 == 0 {
            lines.push(format!("deny to bad{i}.example"));
        } else {
            lines.push(format!("deny to .ads{i}.example log"));
        }
    }
    for i in 0..200 {
        lines.push(format!(
            "allow from 198.18.{}.0/24 cmd connect to 203.0.{}.0/24 port 443",
            i,
            i % 256
        ));
    }
    for i in 0..100 {
        lines.push(format!("deny from 2001:db8:{i:x}::/48"));
    }
    for i in 0..79 {
        lines.push(format!(
            "allow user u{} port {}-{} log",
            300 + i,
            10_000 + i * 10,
            10_100 + i * 10
        ));
    }
    lines.push("deny".to_owned());
    assert_eq!(lines.len(), 1_000);
    lines.join("\n") + "\n"
}

/// One request of the mix: to a name (with the address it resolves to) or
/// to an address.
struct Sample {
    client: IpAddr,
    user: Option<String>,
    admin: bool,
    name: Option<String>,
    addr: IpAddr,
    port: u16,
}

/// `n` requests of the mix.
fn samples(n: usize) -> Vec<Sample> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|_| {
            let client: IpAddr = match rng.below(4) {
                0 => format!("2001:db8:{:x}::9", rng.below(200)).parse().unwrap(),
                _ => format!("198.18.{}.{}", rng.below(256), rng.below(256))
                    .parse()
                    .unwrap(),
            };
            let user = match rng.below(5) {
                0 => None,
                _ => Some(format!("u{}", rng.below(450))),
            };
            let name = match rng.below(6) {
                0 => Some(format!("www.site{}.example", rng.below(400))),
                1 => Some(format!("img.cdn{}.example", rng.below(60))),
                2 => Some(format!("bad{}.example", rng.below(400))),
                3 => Some(format!("x.ads{}.example", rng.below(400))),
                _ => None,
            };
            let addr: IpAddr = match rng.below(5) {
                0 => format!("10.{}.1.1", rng.below(40)).parse().unwrap(),
                1 => "169.254.169.254".parse().unwrap(),
                2 => format!("2001:db8:ffff::{:x}", rng.below(999))
                    .parse()
                    .unwrap(),
                _ => format!("203.0.{}.{}", rng.below(256), rng.below(256))
                    .parse()
                    .unwrap(),
            };
            let port = [80, 443, 443, 22, 10_500][rng.below(5) as usize];
            Sample {
                client,
                user,
                admin: rng.below(50) == 0,
                name,
                addr,
                port,
            }
        })
        .collect()
}

/// Judges `s` as socks5d would: names first, then the address if asked.
fn judge(rules: &Rules, s: &Sample, linear: bool) -> Verdict {
    let user = s.user.as_deref();
    match &s.name {
        Some(name) => {
            let nr = NameRequest {
                client: s.client,
                user,
                admin: s.admin,
                cmd: Cmd::Connect,
                name,
                port: s.port,
            };
            let early = match linear {
                false => rules.judge_name(&nr),
                true => rules.judge_name_linear(&nr),
            };
            match early {
                NameVerdict::Decided(v) => v,
                NameVerdict::NeedsAddress if linear => rules.judge_linear(&nr.resolved(s.addr)),
                NameVerdict::NeedsAddress => rules.judge(&nr.resolved(s.addr)),
            }
        }
        None => {
            let r = Request {
                client: s.client,
                user,
                admin: s.admin,
                cmd: Cmd::Connect,
                name: None,
                addr: s.addr,
                port: s.port,
            };
            match linear {
                false => rules.judge(&r),
                true => rules.judge_linear(&r),
            }
        }
    }
}

/// The CPU time this thread has used: on a shared machine, what judging
/// cost, without the time other processes had the CPU.
fn cpu_time() -> Duration {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("the thread's CPU clock");
    Duration::from(t)
}

/// Judges every sample `rounds` times, timed in the thread's CPU time; ns per request, allocations made and
/// how many were allowed.
fn run(rules: &Rules, samples: &[Sample], rounds: usize, linear: bool) -> (f64, u64, usize) {
    let mut allowed = 0;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let start = cpu_time();
    for _ in 0..rounds {
        for s in samples {
            allowed += usize::from(black_box(judge(black_box(rules), s, linear)).is_allow());
        }
    }
    let elapsed = cpu_time() - start;
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let n = (rounds * samples.len()) as f64;
    (elapsed.as_nanos() as f64 / n, allocations, allowed / rounds)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS: a number"))
        .unwrap_or(200);
    let text = rules_text();
    let start = Instant::now();
    let rules = Rules::parse("bench.rules", &text).expect("the bench's rules parse");
    let load = start.elapsed();
    let open_text = text.trim_end().trim_end_matches("deny").to_owned();
    let open = Rules::parse("bench.rules", &open_text).expect("the rules parse");
    let samples = samples(4_096);
    for s in &samples {
        assert_eq!(judge(&rules, s, false), judge(&rules, s, true));
        assert_eq!(judge(&open, s, false), judge(&open, s, true));
    }
    println!(
        "{} rules, parsed and compiled in {:.2} ms; {} requests a round, {rounds} rounds",
        rules.len(),
        load.as_secs_f64() * 1e3,
        samples.len()
    );
    let mut allocated = 0;
    for (what, r, linear, rounds) in [
        ("index", &rules, false, rounds),
        ("walk ", &rules, true, rounds.div_ceil(20)),
        ("index, no final deny", &open, false, rounds),
        ("walk,  no final deny", &open, true, rounds.div_ceil(20)),
    ] {
        let (ns, allocations, allowed) = run(r, &samples, rounds, linear);
        allocated += allocations;
        println!(
            "{what:<21} {ns:8.1} ns/request  {allowed:5} of {} allowed  {allocations} allocations",
            samples.len()
        );
    }
    if allocated != 0 {
        eprintln!("judging allocated {allocated} times");
        std::process::exit(1);
    }
}
