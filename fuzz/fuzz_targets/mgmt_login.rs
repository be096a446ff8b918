//! Fuzz target `mgmt_login`: the check is `checks::mgmt_login` (fuzz/checks.rs), which
//! tests/fuzz_corpus.rs also runs over fuzz/corpus/mgmt_login/.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::mgmt_login(data));
