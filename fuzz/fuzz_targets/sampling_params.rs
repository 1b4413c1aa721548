//! Fuzz target `sampling_params`: a server request body to sampling parameters.
//! The bytes go through the server's request parsers ([`woolly_fuzz::request_body`]),
//! and, read as structured input, through `SamplingParams::validate` and
//! `Sampler::sample` with hostile options and logits ([`woolly_fuzz::sampling_params`]).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    woolly_fuzz::request_body(data);
    if let Ok(input) = woolly_fuzz::SamplingInput::arbitrary(&mut Unstructured::new(data)) {
        woolly_fuzz::sampling_params(input);
    }
});
