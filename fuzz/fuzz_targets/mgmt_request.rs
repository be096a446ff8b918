//! Fuzz target `mgmt_request`: the check is `checks::mgmt_request` (fuzz/checks.rs), which
//! tests/fuzz_corpus.rs also runs over fuzz/corpus/mgmt_request/.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::mgmt_request(data));
