//! The feed-forward network's elementwise part.

use woolly_kernels_macros::kernel;

use crate::dim;
use crate::simd::Simd;

/// SwiGLU in place: `gate = silu(gate) * up`.           shapes: gate, up: (D,)
///
/// Specialized for the FFN sizes in `specialize.toml`.
// Tolerance: the vector exp is within a few ulp, then one division and two products. Its
// operations are the same on every ISA, so every variant gives the same bits (tested below).
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(D = spec("ffn"), dyn),
    reference = crate::reference::swiglu,
    tolerance = rel(2e-6),
    test(gate = rng.f32s_in(D, -12.0, 12.0), up = rng.f32s(D)),
)]
pub fn swiglu<V: Simd, const D: usize>(v: V, gate: &mut [f32], up: &[f32]) {
    let n = dim::<D>(gate.len());
    let (gate, up) = (&mut gate[..n], &up[..n]);
    let l = V::LANES;
    let mut i = 0;
    while i + l <= n {
        let r = v.mul(v.silu(v.load(&gate[i..])), v.load(&up[i..]));
        v.store(&mut gate[i..], r);
        i += l;
    }
    if i < n {
        let g = v.load_partial(&gate[i..], 0.0);
        let r = v.mul(v.silu(g), v.load_partial(&up[i..], 0.0));
        v.store_partial(&mut gate[i..], r);
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::TestRng;

    /// Each variant, specialized or not, gives the scalar variant's bits: the forward pass
    /// does not depend on the ISA it runs on.
    #[test]
    fn every_isa_gives_the_scalar_bits() {
        let mut rng = TestRng::new(0x5eed);
        let entries = super::swiglu::ENTRIES;
        let scalar = entries
            .iter()
            .find(|e| e.isa == crate::Isa::Scalar && e.dims.is_none())
            .unwrap();
        for e in entries.iter().filter(|e| e.isa.is_available()) {
            let n = e.dims.map_or(1000, |d| d[0]);
            let gate = rng.f32s_in(n, -90.0, 90.0);
            let up = rng.f32s(n);
            let (mut want, mut got) = (gate.clone(), gate);
            // SAFETY: the scalar variant runs everywhere; `e`'s ISA is available.
            unsafe {
                (scalar.ptr)(&mut want, &up);
                (e.ptr)(&mut got, &up);
            }
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{}", e.name);
        }
    }
}
