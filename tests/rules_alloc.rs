//! Judging a request against compiled access rules allocates nothing: a
//! counting allocator sees every allocation this thread makes while 1,000
//! rules judge requests to names and addresses, through both steps.

// One `unsafe` item: the counting allocator.
#![deny(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;

use socks5d::rules::{Cmd, NameRequest, NameVerdict, Request, Rules};

thread_local! {
    /// Allocations made by this thread.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting each thread's allocations.
struct Counting;

fn count() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is passed to the system allocator unchanged.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's guarantees for `layout` hold for System too.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as for dealloc, and `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// 1,000 rules of every kind of condition; rules on address blocks among
/// them, so that some names go through both steps.
fn rules() -> Rules {
    let mut text = String::from("deny to .blocked.example log\n");
    for i in 0..999 {
        let line = match i % 5 {
            0 => format!("deny to 10.{}.0.0/16 port 1-1024\n", i % 256),
            1 => format!("allow user u{i},@admins to .site{i}.example rate 1M log\n"),
            2 => format!("deny from 2001:db8:{i:x}::/48 cmd bind,udp\n"),
            3 => format!("deny to Bad{i}.Example.\n"),
            _ => format!(
                "allow from 198.18.{}.0/24 to 203.0.113.0/24 port {}\n",
                i % 256,
                i + 1
            ),
        };
        text.push_str(&line);
    }
    Rules::parse("alloc.rules", &text).expect("the rules parse")
}

#[test]
fn judging_allocates_nothing() {
    let rules = rules();
    // Per user j: a site of theirs, a name on the block list, another name.
    let names: Vec<(String, usize)> = (0..1_000)
        .flat_map(|j| {
            [
                (format!("WWW.Site{j}.example."), j),
                (format!("bad{j}.example"), j),
                (format!("x{j}.test"), j),
            ]
        })
        .collect();
    let users: Vec<String> = (0..1_000).map(|i| format!("u{i}")).collect();
    let clients: Vec<IpAddr> = (0..256)
        .flat_map(|i| {
            [
                format!("198.18.{i}.7"),
                format!("2001:db8:{i:x}::1"),
                format!("::ffff:198.18.{i}.8"),
            ]
        })
        .map(|s| s.parse().unwrap())
        .collect();
    let addrs: Vec<IpAddr> = [
        "10.5.0.1",
        "127.0.0.1",
        "203.0.113.9",
        "2001:db8::1",
        "::ffff:10.7.1.1",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let before = ALLOCATIONS.with(Cell::get);
    let (mut allowed, mut resolved, mut decided) = (0, 0, 0);
    for (i, (name, user)) in names.iter().enumerate() {
        let nr = NameRequest {
            client: clients[i % clients.len()],
            user: (i % 7 != 0).then(|| users[*user].as_str()),
            admin: i % 97 == 0,
            cmd: [Cmd::Connect, Cmd::Bind, Cmd::Udp][i % 3],
            name,
            port: [80, 443, 2000, 8080][i % 4],
        };
        let v = match rules.judge_name(&nr) {
            NameVerdict::Decided(v) => {
                decided += 1;
                v
            }
            NameVerdict::NeedsAddress => {
                resolved += 1;
                rules.judge(&nr.resolved(addrs[i % addrs.len()]))
            }
        };
        let by_address = Request {
            name: None,
            ..nr.resolved(addrs[(i + 1) % addrs.len()])
        };
        allowed += usize::from(v.is_allow()) + usize::from(rules.judge(&by_address).is_allow());
    }
    let allocations = ALLOCATIONS.with(Cell::get) - before;
    assert_eq!(
        allocations,
        0,
        "judging {} requests allocated",
        names.len() * 2
    );
    // The requests went every way: allowed, denied, decided early or not.
    assert!(
        allowed > 100 && allowed < names.len() * 2 - 100,
        "{allowed} allowed"
    );
    assert!(
        decided > 100 && resolved > 100,
        "{decided} decided, {resolved} resolved"
    );
}
