//! The kernel registry: one entry per generated variant (op, ISA, dims, fn pointer),
//! read by dispatch (`select`), by the generated tests and by the benchmarks.
//!
//! Each `#[kernel]` op owns a typed `ENTRIES` slice (its fn pointer type is the op's own
//! signature); [`all_ops`] lists every op's [`OpInfo`] for tidy checks and benches.
//! (Each `ops` module keeps a list of its ops' `INFO`s; a proc-macro cannot collect
//! items across the crate without a linker-section crate, which is not worth a
//! dependency yet. The tidy test in `dispatch` checks what the lists contain.)

use crate::isa::Isa;

/// One generated variant of a kernel.
#[derive(Debug)]
pub struct Entry<F: 'static> {
    /// The op's name, e.g. `"rmsnorm"`.
    pub op: &'static str,
    /// The ISA the variant is compiled for.
    pub isa: Isa,
    /// The specialized dimensions, in the order of the op's const parameters; `None` for
    /// the generic (`dyn_`) variant.
    pub dims: Option<&'static [usize]>,
    /// The variant's path below the op's module, e.g. `"avx2::d2048"`.
    pub name: &'static str,
    /// The variant. `unsafe` because it runs `isa`'s instructions: call it only when
    /// `isa.is_available()`.
    pub ptr: F,
}

/// What the registry knows about an op apart from its fn pointers.
#[derive(Debug)]
pub struct OpInfo {
    /// The op's name.
    pub name: &'static str,
    /// `(isa, dims, variant name)` of every compiled variant.
    pub variants: &'static [(Isa, Option<&'static [usize]>, &'static str)],
}

/// Finds the variant for `isa` and `dims`: exact dims on `isa`, else `isa`'s generic
/// variant, else the same on each of [`Isa::fallbacks`] (`avx512` -> `avx2` -> `scalar`).
///
/// # Panics
/// When `isa` is not available on this CPU (the caller asked for something it cannot
/// run; use [`Isa::checked`] or [`Isa::from_env`] to get an ISA), or when the op has
/// no scalar generic variant (the `#[kernel]` macro always generates one).
pub fn find<F>(entries: &'static [Entry<F>], isa: Isa, dims: &[usize]) -> &'static Entry<F> {
    assert!(
        isa.is_available(),
        "kernel select: this CPU lacks {isa} (it needs {})",
        isa.features()
    );
    for &candidate in isa.fallbacks() {
        let exact = entries
            .iter()
            .find(|e| e.isa == candidate && e.dims == Some(dims));
        let generic = || {
            entries
                .iter()
                .find(|e| e.isa == candidate && e.dims.is_none())
        };
        if let Some(e) = exact.or_else(generic) {
            return e;
        }
    }
    panic!(
        "kernel {}: no scalar generic variant",
        entries.first().map_or("?", |e| e.op)
    )
}

/// Every `#[kernel]` op of this crate.
pub fn all_ops() -> impl Iterator<Item = &'static OpInfo> {
    crate::ops::FLOAT_OPS
        .iter()
        .chain(crate::ops::qdot::QDOT_OPS)
        .chain(crate::ops::qtile::QTILE_OPS)
        .chain(crate::ops::quantize::QUANTIZE_OPS)
        .copied()
}
