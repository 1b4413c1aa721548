//! Fuzz target `chat_template`: Rendering hostile chat templates and messages (fuel and recursion limits).
//! The body is [`woolly_fuzz::chat_template`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| woolly_fuzz::chat_template(data));
