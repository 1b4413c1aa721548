//! Fuzz target `gguf_load`: GGUF parsing and model-load validation on arbitrary bytes.
//! The body is [`woolly_fuzz::gguf_load`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| woolly_fuzz::gguf_load(data));
