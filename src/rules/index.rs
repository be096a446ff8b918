//! The compiled form of a rules file: for each condition, which rules a
//! given value satisfies, so that the first matching rule is found without
//! walking the rules one by one, and without allocating.
//!
//! Rules are numbered 0.. in file order. For each of the five conditions
//! (`from`, `user`, `cmd`, `to`, `port`) the index keeps
//!
//! - a bit set of the rules that have no such condition (they match any
//!   value), and
//! - a table from each value the rules name to the rules naming it: address
//!   blocks grouped by prefix length (one binary search per length
//!   present), users and names in hash tables ([`Keys`]: names hashed and
//!   compared case-insensitively against the lowercase stored ones, a
//!   domain looked up once per label of the request's name), single ports
//!   sorted and port ranges in a list. A value's rules are kept as their
//!   sorted numbers, or as a bit set when there are more of them than the
//!   bit set has words (so a bit set never takes more than twice the list's
//!   memory, and a value common to many rules costs a few word ORs, not a
//!   bit per rule).
//!
//! A request is judged a chunk of [`CHUNK`] words (4,096 rules) at a time:
//! for each condition, the chunk's "no condition" bits with the bits of
//! every rule the request's value satisfies set in, ANDed together; the
//! lowest bit left is the first rule that matches. A file of up to 4,096
//! rules is one chunk; a later chunk is looked at only when no rule of the
//! earlier ones matched.

use super::Cmd;
use super::parse::{Addr, Net, Rule, Target, UserSel, mask4, mask6};
use std::collections::BTreeMap;

/// Words of rule bits judged together: 4,096 rules, 512 bytes of stack for
/// each of the two sets in use.
const CHUNK: usize = 64;

/// The rules of one value.
#[derive(Debug, Clone, Copy)]
enum Span {
    /// Rule numbers `post[start..end]`.
    List { start: u32, end: u32 },
    /// A bit set of all rules, at `dense[start..start + words]`.
    Bits { start: u32 },
}

impl Default for Span {
    fn default() -> Span {
        Span::List { start: 0, end: 0 }
    }
}

/// Address blocks, grouped by prefix length.
#[derive(Debug, Default)]
struct Blocks {
    /// Per IPv4 prefix length present: (network, its rules), sorted.
    v4: Vec<(u8, Vec<(u32, Span)>)>,
    /// Per IPv6 prefix length present: (network, its rules), sorted.
    v6: Vec<(u8, Vec<(u128, Span)>)>,
}

impl Blocks {
    /// Calls `f` with the rules of every block that holds `a`.
    fn visit(&self, a: Addr, mut f: impl FnMut(Span)) {
        match a {
            Addr::V4(a) => {
                for (p, table) in &self.v4 {
                    let key = a & mask4(*p);
                    if let Ok(i) = table.binary_search_by_key(&key, |e| e.0) {
                        f(table[i].1);
                    }
                }
            }
            Addr::V6(a) => {
                for (p, table) in &self.v6 {
                    let key = a & mask6(*p);
                    if let Ok(i) = table.binary_search_by_key(&key, |e| e.0) {
                        f(table[i].1);
                    }
                }
            }
        }
    }
}

/// What a request is judged on, as the index reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Query<'a> {
    /// The client's address.
    pub client: Addr,
    /// The authenticated user, if any.
    pub user: Option<&'a str>,
    /// Whether that user is an administrator.
    pub admin: bool,
    /// The command.
    pub cmd: Cmd,
    /// The target's port.
    pub port: u16,
    /// The name the client sent, without its trailing dot.
    pub name: Option<&'a [u8]>,
    /// The target's address; `None` before the name is resolved.
    pub addr: Option<Addr>,
}

/// The first rule a query meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hit {
    /// Rule number `n` matches.
    Rule(usize),
    /// The first rule that may match needs the target's address.
    NeedsAddress,
}

/// Sets, in `bits` (the chunk starting at rule `lo`), the bits of the rules
/// of `list` inside the chunk.
fn set_list(bits: &mut [u64], list: &[u32], lo: usize) {
    let hi = lo + bits.len() * 64;
    let from = list.partition_point(|&r| (r as usize) < lo);
    for &r in &list[from..] {
        let r = r as usize;
        if r >= hi {
            break;
        }
        bits[(r - lo) / 64] |= 1 << (r % 64);
    }
}

/// `acc &= bits`; whether any bit is left.
fn and_into(acc: &mut [u64], bits: &[u64]) -> bool {
    let mut any = 0;
    for (a, b) in acc.iter_mut().zip(bits) {
        *a &= b;
        any |= *a;
    }
    any != 0
}

/// The lowest set bit of a chunk, as a rule number.
fn lowest(bits: &[u64], lo: usize) -> Option<usize> {
    let w = bits.iter().position(|&w| w != 0)?;
    Some(lo + w * 64 + bits[w].trailing_zeros() as usize)
}

/// FNV-1a's offset basis.
const HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// One byte into an FNV-1a hash (lowercased, when `caseless`).
fn hash_step(h: u64, b: u8, caseless: bool) -> u64 {
    let b = if caseless { b.to_ascii_lowercase() } else { b };
    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
}

/// Byte strings (user names exactly; host names lowercase, looked up in any
/// case) to their rules: an open-addressing hash table, so that a lookup
/// neither allocates nor copies the key. Its keys come from the rules file
/// and never change, so a request can pick which chain it probes, not make
/// one longer.
#[derive(Debug, Default)]
struct Keys {
    /// Whether keys are host names, compared in any case.
    caseless: bool,
    /// The keys, lowercase when caseless, and their rules.
    entries: Vec<(Box<[u8]>, Span)>,
    /// (hash, 1 + index into `entries`), 0 for an empty slot; a power of two
    /// at least twice as many as the keys.
    slots: Vec<(u64, u32)>,
}

impl Keys {
    /// A table of `entries` (distinct keys).
    fn new(caseless: bool, entries: Vec<(Box<[u8]>, Span)>) -> Keys {
        let size = (entries.len() * 2).next_power_of_two().max(2);
        let mut keys = Keys {
            caseless,
            slots: vec![(0, 0); size],
            entries: Vec::new(),
        };
        for (i, (key, _)) in entries.iter().enumerate() {
            let h = keys.hash(key);
            let mut at = h as usize & (size - 1);
            while keys.slots[at].1 != 0 {
                at = (at + 1) & (size - 1);
            }
            keys.slots[at] = (h, i as u32 + 1);
        }
        keys.entries = entries;
        keys
    }

    /// The hash of `key`: FNV-1a over its bytes from the last to the
    /// first (lowercased, when caseless), so that the hashes of a name's
    /// every tail come from one pass over it ([`Index::visit_name`]).
    fn hash(&self, key: &[u8]) -> u64 {
        key.iter()
            .rev()
            .fold(HASH_SEED, |h, &b| hash_step(h, b, self.caseless))
    }

    /// The rules of `key`.
    fn get(&self, key: &[u8]) -> Option<Span> {
        if self.entries.is_empty() {
            return None;
        }
        self.get_hashed(key, self.hash(key))
    }

    /// The rules of `key`, whose hash is `h`.
    fn get_hashed(&self, key: &[u8], h: u64) -> Option<Span> {
        if self.entries.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut at = h as usize & mask;
        loop {
            let (sh, i) = self.slots[at];
            if i == 0 {
                return None;
            }
            if sh == h {
                let (stored, span) = &self.entries[i as usize - 1];
                let same = match self.caseless {
                    true => key.eq_ignore_ascii_case(stored),
                    false => key == &stored[..],
                };
                if same {
                    return Some(*span);
                }
            }
            at = (at + 1) & mask;
        }
    }

    /// Whether the table is empty.
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Rule numbers collected per value while building.
type Lists<K> = BTreeMap<K, Vec<u32>>;

/// The compiled rules.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Words in each bit set.
    words: usize,
    /// The rule numbers of every `Span::List`.
    post: Vec<u32>,
    /// The bit sets of every `Span::Bits`.
    dense: Vec<u64>,
    from_any: Vec<u64>,
    from: Blocks,
    user_any: Vec<u64>,
    /// Users by name.
    users: Keys,
    admins: Span,
    cmd_any: Vec<u64>,
    cmds: [Span; 3],
    port_any: Vec<u64>,
    /// Single ports, sorted.
    ports: Vec<(u16, Span)>,
    /// Port ranges of more than one port, sorted by their first.
    ranges: Vec<(u16, u16, Span)>,
    to_any: Vec<u64>,
    /// Rules with an address block among their `to` values.
    to_has_block: Vec<u64>,
    to_blocks: Blocks,
    /// Exact names, lowercase.
    names: Keys,
    /// Domains (for themselves and their subdomains), lowercase.
    domains: Keys,
}

impl Index {
    /// The index of `rules`, numbered in order.
    pub(crate) fn new(rules: &[Rule]) -> Index {
        let words = rules.len().div_ceil(64);
        let mut ix = Index {
            words,
            ..Index::default()
        };
        let mut any = [
            vec![0u64; words],
            vec![0; words],
            vec![0; words],
            vec![0; words],
        ];
        let mut to_any = vec![0u64; words];
        let mut to_has_block = vec![0u64; words];
        let mut from: Lists<Net> = BTreeMap::new();
        let mut users: Lists<UserSel> = BTreeMap::new();
        let mut cmds: Lists<Cmd> = BTreeMap::new();
        let mut ports: Lists<(u16, u16)> = BTreeMap::new();
        let mut to_blocks: Lists<Net> = BTreeMap::new();
        let mut names: Lists<Box<[u8]>> = BTreeMap::new();
        let mut domains: Lists<Box<[u8]>> = BTreeMap::new();
        for (n, rule) in rules.iter().enumerate() {
            let (w, bit) = (n / 64, 1u64 << (n % 64));
            let r = n as u32;
            let empties = [
                rule.from.is_empty(),
                rule.users.is_empty(),
                rule.cmds.is_empty(),
                rule.ports.is_empty(),
            ];
            for (set, empty) in any.iter_mut().zip(empties) {
                if empty {
                    set[w] |= bit;
                }
            }
            rule.from.iter().for_each(|&net| add(&mut from, net, r));
            rule.users
                .iter()
                .for_each(|u| add(&mut users, u.clone(), r));
            rule.cmds.iter().for_each(|&c| add(&mut cmds, c, r));
            rule.ports.iter().for_each(|&p| add(&mut ports, p, r));
            if rule.to.is_empty() {
                to_any[w] |= bit;
            }
            for t in &rule.to {
                match t {
                    Target::Net(net) => {
                        to_has_block[w] |= bit;
                        add(&mut to_blocks, *net, r);
                    }
                    Target::Name(s) => {
                        add(&mut names, s.as_bytes().into(), r);
                    }
                    Target::Domain(s) => {
                        add(&mut domains, s.as_bytes().into(), r);
                    }
                }
            }
        }
        let [from_any, user_any, cmd_any, port_any] = any;
        ix.from_any = from_any;
        ix.user_any = user_any;
        ix.cmd_any = cmd_any;
        ix.port_any = port_any;
        ix.to_any = to_any;
        ix.to_has_block = to_has_block;
        ix.from = ix.blocks(from);
        ix.to_blocks = ix.blocks(to_blocks);
        let mut by_name = Vec::new();
        for (u, list) in users {
            let span = ix.span(list);
            match u {
                UserSel::Admins => ix.admins = span,
                UserSel::Name(name) => by_name.push((name.as_bytes().into(), span)),
            }
        }
        ix.users = Keys::new(false, by_name);
        for (c, list) in cmds {
            ix.cmds[c as usize] = ix.span(list);
        }
        for ((a, b), list) in ports {
            let span = ix.span(list);
            if a == b {
                ix.ports.push((a, span));
            } else {
                ix.ranges.push((a, b, span));
            }
        }
        let names = names.into_iter().map(|(k, l)| (k, ix.span(l))).collect();
        ix.names = Keys::new(true, names);
        let domains = domains.into_iter().map(|(k, l)| (k, ix.span(l))).collect();
        ix.domains = Keys::new(true, domains);
        ix
    }

    /// Stores `list` (sorted rule numbers) and returns its span: a bit set
    /// when the list is longer than one.
    fn span(&mut self, list: Vec<u32>) -> Span {
        if list.len() > self.words {
            let start = self.dense.len();
            self.dense.resize(start + self.words, 0);
            for r in list {
                self.dense[start + r as usize / 64] |= 1 << (r % 64);
            }
            return Span::Bits {
                start: start as u32,
            };
        }
        let start = self.post.len() as u32;
        self.post.extend(list);
        Span::List {
            start,
            end: self.post.len() as u32,
        }
    }

    /// The table of `lists`' blocks.
    fn blocks(&mut self, lists: Lists<Net>) -> Blocks {
        let mut v4: BTreeMap<u8, Vec<(u32, Span)>> = BTreeMap::new();
        let mut v6: BTreeMap<u8, Vec<(u128, Span)>> = BTreeMap::new();
        // Ordered by net within each family, so each length's table is sorted.
        for (net, list) in lists {
            let span = self.span(list);
            match net {
                Net::V4(n, p) => v4.entry(p).or_default().push((n, span)),
                Net::V6(n, p) => v6.entry(p).or_default().push((n, span)),
            }
        }
        Blocks {
            v4: v4.into_iter().collect(),
            v6: v6.into_iter().collect(),
        }
    }

    /// Sets, in `bits` (the chunk of words from `c0`), the bits of the
    /// rules of `s`.
    fn set(&self, bits: &mut [u64], c0: usize, s: Span) {
        match s {
            Span::List { start, end } => {
                set_list(bits, &self.post[start as usize..end as usize], c0 * 64);
            }
            Span::Bits { start } => {
                let from = start as usize + c0;
                let len = bits.len();
                for (b, d) in bits.iter_mut().zip(&self.dense[from..from + len]) {
                    *b |= d;
                }
            }
        }
    }

    /// The first rule that `q` meets, if any. Without `q.addr`, a rule whose
    /// `to` is not satisfied by the name but names an address block may
    /// still match: if it comes first, the answer is `NeedsAddress`.
    pub(crate) fn first(&self, q: &Query<'_>) -> Option<Hit> {
        let mut acc = [0u64; CHUNK];
        let mut bits = [0u64; CHUNK];
        for c0 in (0..self.words).step_by(CHUNK) {
            let len = CHUNK.min(self.words - c0);
            let words = c0..c0 + len;
            let lo = c0 * 64;
            let (acc, bits) = (&mut acc[..len], &mut bits[..len]);
            acc.copy_from_slice(&self.from_any[words.clone()]);
            self.from.visit(q.client, |s| self.set(acc, c0, s));
            bits.copy_from_slice(&self.user_any[words.clone()]);
            self.visit_user(q, |s| self.set(bits, c0, s));
            if !and_into(acc, bits) {
                continue;
            }
            bits.copy_from_slice(&self.cmd_any[words.clone()]);
            self.set(bits, c0, self.cmds[q.cmd as usize]);
            if !and_into(acc, bits) {
                continue;
            }
            bits.copy_from_slice(&self.port_any[words.clone()]);
            self.visit_port(q.port, |s| self.set(bits, c0, s));
            if !and_into(acc, bits) {
                continue;
            }
            // `to`: satisfied by no condition, by the name, or by the address.
            bits.copy_from_slice(&self.to_any[words.clone()]);
            if let Some(name) = q.name {
                self.visit_name(name, |s| self.set(bits, c0, s));
            }
            match q.addr {
                Some(a) => {
                    self.to_blocks.visit(a, |s| self.set(bits, c0, s));
                    if and_into(acc, bits) {
                        return lowest(acc, lo).map(Hit::Rule);
                    }
                }
                None => {
                    let maybe = &self.to_has_block[words];
                    let mut first = None;
                    for (w, ((a, b), m)) in acc.iter().zip(bits.iter()).zip(maybe).enumerate() {
                        let (known, open) = (a & b, a & m & !b);
                        if known | open != 0 {
                            let bit = (known | open).trailing_zeros();
                            let n = lo + w * 64 + bit as usize;
                            first = Some(if known >> bit & 1 == 1 {
                                Hit::Rule(n)
                            } else {
                                Hit::NeedsAddress
                            });
                            break;
                        }
                    }
                    if first.is_some() {
                        return first;
                    }
                }
            }
        }
        None
    }

    /// Calls `f` with the rules of the request's user and, for an
    /// administrator, of `@admins`.
    fn visit_user(&self, q: &Query<'_>, mut f: impl FnMut(Span)) {
        if let Some(span) = q.user.and_then(|u| self.users.get(u.as_bytes())) {
            f(span);
        }
        if q.admin {
            f(self.admins);
        }
    }

    /// Calls `f` with the rules of every port value that holds `port`.
    fn visit_port(&self, port: u16, mut f: impl FnMut(Span)) {
        if let Ok(i) = self.ports.binary_search_by_key(&port, |e| e.0) {
            f(self.ports[i].1);
        }
        for &(a, b, span) in &self.ranges {
            if a > port {
                break;
            }
            if port <= b {
                f(span);
            }
        }
    }

    /// Calls `f` with the rules of the exact name and of every domain that
    /// holds `name` (any case, without its trailing dot): the domain of each
    /// tail of the name that starts a label, the whole name included.
    fn visit_name(&self, name: &[u8], mut f: impl FnMut(Span)) {
        if self.names.is_empty() && self.domains.is_empty() {
            return;
        }
        // From the end: `h` is the hash of `name[i..]`.
        let mut h = HASH_SEED;
        for i in (0..=name.len()).rev() {
            if (i == 0 || name[i - 1] == b'.')
                && let Some(span) = self.domains.get_hashed(&name[i..], h)
            {
                f(span);
            }
            if i > 0 {
                h = hash_step(h, name[i - 1], true);
            }
        }
        if let Some(span) = self.names.get_hashed(name, h) {
            f(span);
        }
    }
}

/// Adds rule `r` to the list of `key`, once (a rule may name one value
/// twice).
fn add<K: Ord>(lists: &mut Lists<K>, key: K, r: u32) {
    let list = lists.entry(key).or_default();
    if list.last() != Some(&r) {
        list.push(r);
    }
}
