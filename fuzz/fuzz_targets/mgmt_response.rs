//! Fuzz target `mgmt_response`: the check is `checks::mgmt_response` (fuzz/checks.rs), which
//! tests/fuzz_corpus.rs also runs over fuzz/corpus/mgmt_response/.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::mgmt_response(data));
