//! Fuzz target `sampling_params`: sampling options (NaN, infinities, negatives, huge
//! counts) and logits through `SamplingParams::validate` and `Sampler::sample`.
//! The body is [`woolly_fuzz::sampling_params`]. The lead will point this target at the
//! server's request-body parser once there is one.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: woolly_fuzz::SamplingInput| woolly_fuzz::sampling_params(input));
