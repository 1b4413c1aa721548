//! Normalizations: RMSNorm and softmax.

use woolly_kernels_macros::kernel;

use crate::dim;
use crate::ops::blocks;
use crate::simd::Simd;

/// `y = x * w / sqrt(mean(x^2) + eps)`.                 shapes: x, w, y: (D,)
///
/// Specialized for the hidden sizes in `specialize.toml`.
// Tolerance: the sum of squares is accumulated in f32 lanes against the reference's
// f64; for D <= 4096 values of order 1 that is a relative error of a few 1e-7 in the
// scale, plus one rounding per product.
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(D = spec("hidden"), dyn),
    reference = crate::reference::rmsnorm,
    tolerance = rel(2e-6),
    test(x = rng.f32s(D), w = rng.f32s(D), eps = 1e-5, y = rng.f32s(D)),
)]
pub fn rmsnorm<V: Simd, const D: usize>(v: V, x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let n = dim::<D>(x.len());
    let (x, w, y) = (&x[..n], &w[..n], &mut y[..n]);
    let ss = blocks::dot(v, x, x);
    let scale = 1.0 / (ss / n as f32 + eps).sqrt();
    blocks::scale_mul(v, x, scale, w, y);
}

/// In-place softmax: `x[i] = exp(x[i] - max) / sum_j exp(x[j] - max)`. shapes: x: (n,)
// Tolerance: the vector `exp` is within a few ulp of libm's; sums differ in order only.
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = crate::reference::softmax,
    tolerance = rel(1e-6),
    test(x = { let n = rng.range(1, 300); rng.f32s_in(n, -20.0, 20.0) }),
)]
pub fn softmax<V: Simd>(v: V, x: &mut [f32]) {
    let n = x.len();
    let l = V::LANES;
    // Pass 1: the maximum.
    let max = v.splat(v.max_of(x));
    // Pass 2: exponentials and their sum.
    let mut sum = v.zero();
    let mut i = 0;
    while i + l <= n {
        let e = v.exp(v.sub(v.load(&x[i..]), max));
        v.store(&mut x[i..], e);
        sum = v.add(sum, e);
        i += l;
    }
    if i < n {
        // The tail's missing lanes give exp(-87.3) ~ 1e-38 each: nothing against sum >= 1.
        let e = v.exp(v.sub(v.load_partial(&x[i..], f32::NEG_INFINITY), max));
        v.store_partial(&mut x[i..], e);
        sum = v.add(sum, e);
    }
    let sum = v.hsum(sum);
    // Pass 3: normalize.
    let inv = 1.0 / sum;
    let inv = v.splat(inv);
    let mut i = 0;
    while i + l <= n {
        let r = v.mul(v.load(&x[i..]), inv);
        v.store(&mut x[i..], r);
        i += l;
    }
    if i < n {
        let r = v.mul(v.load_partial(&x[i..], 0.0), inv);
        v.store_partial(&mut x[i..], r);
    }
}
