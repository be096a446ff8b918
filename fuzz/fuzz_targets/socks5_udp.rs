//! Fuzz target `socks5_udp`: the check is `checks::socks5_udp` (fuzz/checks.rs), which
//! tests/fuzz_corpus.rs also runs over fuzz/corpus/socks5_udp/.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::socks5_udp(data));
