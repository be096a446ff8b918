//! Fuzz target `socks5_request`: the check is `checks::socks5_request` (fuzz/checks.rs), which
//! tests/fuzz_corpus.rs also runs over fuzz/corpus/socks5_request/.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::socks5_request(data));
