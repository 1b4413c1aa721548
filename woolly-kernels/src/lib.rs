//! Woolly's kernel library: quant formats with their scalar references, and
//! ISA-specialized kernels chosen at run time.
//!
//! This crate holds no model logic; other engines can use it on its own.
//!
//! - [`quant`]: GGUF/ggml tensor types, `#[repr(C)]` block layouts, reference
//!   dequantizers and quantizers. The scalar references here are the oracle every fast
//!   kernel is tested against.
//! - [`isa`]: the [`Isa`] enum, CPU detection, `WOOLLY_ISA`, and the tokens proving
//!   features.
//! - [`simd`]: the vocabulary generic kernels are written in, one impl per ISA.
//! - [`registry`]: the entries every `#[kernel]` generates, read by dispatch, tests
//!   and benches.
//! - [`ops`]: the kernels (`#[kernel]` bodies, hand-written ISA leaves, matvec).
//! - [`dispatch`]: [`Kernels`], every op selected once for an ISA and model dims.
//! - [`reference`](mod@reference): the scalar oracles, written for clarity.
//! - [`huge_pages`]: 2 MiB-aligned storage for the packed weights.
//! - [`team`]: the spinning threads that run the parallel steps of a forward pass.
//! - [`testing`]: the shared test runner (skips, `WOOLLY_REQUIRE_ISA`, tolerances).

// Generated code names this crate `::woolly_kernels`, also from inside it.
extern crate self as woolly_kernels;

pub mod dispatch;
pub mod huge_pages;
pub mod isa;
pub mod ops;
pub mod quant;
pub mod reference;
pub mod registry;
pub mod simd;
pub mod team;
pub mod testing;

pub use dispatch::{Dims, Kernels};
pub use isa::Isa;
pub use ops::matvec::{MatvecError, Q4kOrder, matmul, matvec};
pub use quant::GgmlType;

/// The length of a kernel dimension: the const `D` of a specialized variant (checked
/// against the run-time length `n`), or `n` itself in the generic variant (`D == 0`).
///
/// # Panics
/// When a specialized variant is called with another length.
#[inline(always)]
pub fn dim<const D: usize>(n: usize) -> usize {
    if D == 0 {
        n
    } else {
        assert_eq!(n, D, "kernel specialized for {D} called with {n}");
        D
    }
}
