//! Fuzz target `tokenize`: Encoding arbitrary text with both conformance tokenizers, with and without special-token parsing.
//! The body is [`woolly_fuzz::tokenize`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| woolly_fuzz::tokenize(data));
