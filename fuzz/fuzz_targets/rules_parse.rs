//! Fuzz target `rules_parse`: the check is `checks::rules_parse` (fuzz/checks.rs), which
//! tests/fuzz_corpus.rs also runs over fuzz/corpus/rules_parse/.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::rules_parse(data));
