//! Woolly's kernel library: quant formats with their scalar references, and (from the
//! kernel-generator issue on) ISA-specialized kernels chosen at run time.
//!
//! This crate holds no model logic; other engines can use it on its own.
//!
//! - [`quant`]: GGUF/ggml tensor types, `#[repr(C)]` block layouts, reference
//!   dequantizers and quantizers. The scalar references here are the oracle every fast
//!   kernel is tested against.

pub mod quant;

pub use quant::GgmlType;
