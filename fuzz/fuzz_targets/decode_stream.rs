//! Fuzz target `decode_stream`: Streaming decode of arbitrary token ids, out-of-range ids included.
//! The body is [`woolly_fuzz::decode_stream`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| woolly_fuzz::decode_stream(data));
