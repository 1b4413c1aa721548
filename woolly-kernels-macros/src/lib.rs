//! Proc-macros that generate Woolly's kernels (see the kernel-generator issue).
//!
//! The `#[kernel]` attribute lands with the kernel generator; this crate exists now so
//! the workspace has its final shape.
