//! The kernels, grouped by op. Each `#[kernel]` function here is the generic body; the
//! macro generates its per-ISA, per-dimension variants in a module of the same name
//! (`ops::norm::rmsnorm::avx2::d2048`), its registry entries and its tests.
//!
//! Fused kernels are plain composition of the `#[inline(always)]` building blocks in
//! [`blocks`].

pub mod attention;
pub mod blocks;
pub mod dot;
pub mod ffn;
pub mod matvec;
pub mod norm;
pub mod packed;
pub mod qdot;
pub mod qtile;
pub mod quantize;
pub mod rope;

/// Every float op's registry view, for tidy checks and benchmarks.
pub static FLOAT_OPS: &[&crate::registry::OpInfo] = &[
    &norm::rmsnorm::INFO,
    &norm::softmax::INFO,
    &ffn::swiglu::INFO,
    &dot::dot_f32::INFO,
    &dot::dot_f16::INFO,
    &dot::dot_f16_f32::INFO,
    &rope::rope::INFO,
    &attention::attention_f32::INFO,
    &attention::attention_f16::INFO,
    &attention::attention_f16_single::INFO,
];
