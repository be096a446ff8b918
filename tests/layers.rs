//! The layers of src/, read from the source: no module imports one that
//! imports it back, and each layer uses only the layers below it.
//!
//! ```text
//!   cli, main            command line (and config_file, the file's lines)
//!   server               putting it together
//!   reactor    mgmt      the SOCKS workers; the management endpoint (neither
//!                        knows the other)
//!   blocking             name resolution and password checks, for anyone
//!   metrics              counters, access log
//!   socks5               RFC 1928/1929 wire format and handshake, no I/O
//!   users      rules     user table, credentials, users file, penalties;
//!                        the access rules (parser and matcher, no I/O)
//!   sys                  the kernel below std and mio
//!   logfmt               how log lines write their values, for all of the above
//! ```
//!
//! Each file under src/ is a module; a reference is any `crate::a::b` or
//! `super::x` path in it (comments excluded), taken as the longest module
//! path it names. References between a module and its own parent or
//! children are structure, not imports, and are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Each top-level module and the top-level modules it may use.
const MAY_USE: &[(&str, &[&str])] = &[
    ("logfmt", &[]),
    ("sys", &["logfmt"]),
    ("config_file", &[]),
    ("rules", &["logfmt"]),
    ("users", &["sys", "logfmt"]),
    ("socks5", &["rules", "users", "sys", "logfmt"]),
    ("metrics", &["socks5", "users", "sys", "logfmt"]),
    ("blocking", &["users", "sys", "logfmt"]),
    (
        "reactor",
        &[
            "blocking", "metrics", "socks5", "rules", "users", "sys", "logfmt",
        ],
    ),
    ("mgmt", &["blocking", "metrics", "users", "sys", "logfmt"]),
    (
        "server",
        &[
            "reactor", "mgmt", "blocking", "metrics", "socks5", "rules", "users", "sys", "logfmt",
        ],
    ),
    (
        "cli",
        &[
            "config_file",
            "server",
            "reactor",
            "mgmt",
            "blocking",
            "metrics",
            "socks5",
            "rules",
            "users",
            "sys",
            "logfmt",
        ],
    ),
];

/// Module path of a source file: src/a/mod.rs is `a`, src/a/b.rs is `a::b`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).expect("read src/") {
        let p = e.expect("a directory entry").path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its comments (so that prose naming a module
/// is no reference).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `::`-separated words after each occurrence of `prefix`.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        out.push(rest[..end].split("::").filter(|w| !w.is_empty()).collect());
    }
    out
}

struct Graph {
    modules: BTreeSet<Vec<String>>,
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn longest_module(modules: &BTreeSet<Vec<String>>, path: &[String]) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let files: Vec<_> = files
        .into_iter()
        .filter(|f| {
            let rel = f.strip_prefix(&src).expect("under src/");
            // Binaries are crates of their own; tests beside a module are
            // part of it.
            !rel.starts_with("bin") && rel != Path::new("main.rs")
        })
        .collect();
    let modules: BTreeSet<Vec<String>> = files
        .iter()
        .map(|f| module_of(f.strip_prefix(&src).expect("under src/")))
        .filter(|m| !m.is_empty())
        .collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for f in &files {
        let mut from = module_of(f.strip_prefix(&src).expect("under src/"));
        if from.is_empty() {
            continue;
        }
        let text = code(&fs::read_to_string(f).expect("read a source file"));
        // A file of tests beside its module (`#[path]` or `mod x_tests`)
        // speaks for the module.
        if let Some(last) = from.last_mut()
            && let Some(base) = last.strip_suffix("_tests")
        {
            *last = base.to_owned();
        }
        let file_is_mod = f.file_name().is_some_and(|n| n == "mod.rs");
        let mut targets = Vec::new();
        for p in paths_after(&text, "crate::") {
            targets.push(p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        for p in paths_after(&text, "super::") {
            // `super` of a.rs inside folder x is x; of x/mod.rs, x's parent.
            let mut base = from.clone();
            base.pop();
            if file_is_mod {
                base.pop();
            }
            base.extend(p.iter().map(|s| s.to_string()));
            targets.push(base);
        }
        for t in targets {
            let Some(to) = longest_module(&modules, &t) else {
                continue;
            };
            let related = to.starts_with(&from) || from.starts_with(&to);
            if !related {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    Graph { modules, edges }
}

fn name(m: &[String]) -> String {
    m.join("::")
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let g = graph();
    assert!(g.modules.len() > 20, "read {} modules", g.modules.len());
    // Depth-first search for a cycle, reporting the first one found.
    fn visit(
        m: &Vec<String>,
        g: &Graph,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        match state.get(m) {
            Some(2) => return None,
            Some(1) => {
                let i = stack.iter().position(|s| s == m).expect("on the stack");
                let mut cycle = stack[i..].to_vec();
                cycle.push(m.clone());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(m.clone(), 1);
        stack.push(m.clone());
        for to in g.edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(to, g, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(m.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in &g.modules {
        if let Some(cycle) = visit(m, &g, &mut state, &mut Vec::new()) {
            let shown: Vec<String> = cycle.iter().map(|m| name(m)).collect();
            panic!("import loop: {}", shown.join(" -> "));
        }
    }
}

#[test]
fn each_layer_uses_only_the_layers_below() {
    let g = graph();
    let allowed: BTreeMap<&str, &[&str]> = MAY_USE.iter().copied().collect();
    let mut wrong = Vec::new();
    for (from, tos) in &g.edges {
        let top = from[0].as_str();
        let Some(may) = allowed.get(top) else {
            wrong.push(format!(
                "{}: a top-level module the layers do not name",
                name(from)
            ));
            continue;
        };
        for to in tos {
            let t = to[0].as_str();
            if t != top && !may.contains(&t) {
                wrong.push(format!("{} uses {}", name(from), name(to)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "layer rules broken:\n{}",
        wrong.join("\n")
    );
}

/// The reader itself: a loop written into the sources would be seen.
#[test]
fn the_reader_sees_references() {
    let code = code("use crate::users::file::{self, Record}; // crate::mgmt\nsuper::x::Y");
    assert_eq!(paths_after(&code, "crate::"), [vec!["users", "file"]]);
    assert_eq!(paths_after(&code, "super::"), [vec!["x", "Y"]]);
    let g = graph();
    let reactor_worker = vec!["reactor".to_owned(), "worker".to_owned()];
    assert!(
        g.edges[&reactor_worker].contains(&vec!["blocking".to_owned()]),
        "{:?}",
        g.edges[&reactor_worker]
    );
}
