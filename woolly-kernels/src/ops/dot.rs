//! Float dot products.

use half::f16;
use woolly_kernels_macros::kernel;

use crate::dim;
use crate::ops::blocks;
use crate::simd::Simd;

/// `sum_i a[i] * b[i]`.                                  shapes: a, b: (D,)
// Tolerance: f32 accumulation (in 4 * LANES partial sums) against the reference's f64:
// the error grows like sqrt(D) * eps * sum|a_i b_i|; for D <= 4096 inputs in [-1, 1]
// that stays below 1e-4 * max(|dot|, 1).
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(D = spec("head_dim"), dyn),
    reference = crate::reference::dot_f32,
    tolerance = rel(1e-4),
    test(a = rng.f32s(D), b = rng.f32s(D)),
)]
pub fn dot_f32<V: Simd, const D: usize>(v: V, a: &[f32], b: &[f32]) -> f32 {
    let n = dim::<D>(a.len());
    blocks::dot(v, &a[..n], &b[..n])
}

/// `sum_i a[i] * b[i]` over f16 inputs, accumulated in f32.  shapes: a, b: (D,)
// Tolerance: as `dot_f32` (the f16 -> f32 widening is exact).
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(D = spec("head_dim"), dyn),
    reference = crate::reference::dot_f16,
    tolerance = rel(1e-4),
    test(a = rng.f16s(D), b = rng.f16s(D)),
)]
pub fn dot_f16<V: Simd, const D: usize>(v: V, a: &[f16], b: &[f16]) -> f32 {
    let n = dim::<D>(a.len());
    blocks::dot(v, &a[..n], &b[..n])
}

/// `sum_i a[i] * b[i]` with f16 `a` (weights) and f32 `b` (activations).
/// shapes: a, b: (D,)
// Tolerance: as `dot_f32`.
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(D = spec("hidden"), dyn),
    reference = crate::reference::dot_f16_f32,
    tolerance = rel(1e-4),
    test(a = rng.f16s(D), b = rng.f32s(D)),
)]
pub fn dot_f16_f32<V: Simd, const D: usize>(v: V, a: &[f16], b: &[f32]) -> f32 {
    let n = dim::<D>(a.len());
    blocks::dot(v, &a[..n], &b[..n])
}
