//! The feed-forward network's elementwise part.

use woolly_kernels_macros::kernel;

use crate::dim;
use crate::simd::Simd;

/// SwiGLU: `out = silu(gate) * up`.                     shapes: gate, up, out: (D,)
///
/// Specialized for the FFN sizes in `specialize.toml`.
// Tolerance: the vector exp is within a few ulp, then one division and two products.
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(D = spec("ffn"), dyn),
    reference = crate::reference::swiglu,
    tolerance = rel(2e-6),
    test(gate = rng.f32s_in(D, -12.0, 12.0), up = rng.f32s(D), out = rng.f32s(D)),
)]
pub fn swiglu<V: Simd, const D: usize>(v: V, gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n = dim::<D>(out.len());
    let (gate, up, out) = (&gate[..n], &up[..n], &mut out[..n]);
    let l = V::LANES;
    let mut i = 0;
    while i + l <= n {
        let r = v.mul(v.silu(v.load(&gate[i..])), v.load(&up[i..]));
        v.store(&mut out[i..], r);
        i += l;
    }
    if i < n {
        let g = v.load_partial(&gate[i..], 0.0);
        let r = v.mul(v.silu(g), v.load_partial(&up[i..], 0.0));
        v.store_partial(&mut out[i..], r);
    }
}
