//! Fuzz target `proxy_header`: the check is `checks::proxy_header` (fuzz/checks.rs), which
//! tests/fuzz_corpus.rs also runs over fuzz/corpus/proxy_header/.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::proxy_header(data));
