//! Rotary position embeddings.

use woolly_kernels_macros::kernel;

use crate::dim;
use crate::reference;
use crate::simd::Simd;

/// The largest `n_rot / 2` the kernel's on-stack angle table holds.
pub const MAX_ROT_PAIRS: usize = 256;

/// RoPE of every head of `x`, in place: see [`reference::rope`] for the layouts
/// (`neox = false`: GGUF "normal", adjacent pairs; `true`: halves).
///
/// The angles come from [`reference::rope_angles`], shared with the reference, so
/// variants differ from it only in how products are rounded. The "neox" layout is
/// vectorized; the "normal" one interleaves pairs, which the vocabulary cannot
/// deinterleave, and runs as a scalar loop (RoPE is `n_head * head_dim` work per token,
/// nothing next to the matmuls).
/// shapes: x: (n_head, HD); freq_factors: (n_rot / 2,) or empty
// Tolerance: products of values of order 1 rounded once or fused (FMA): a few ulp.
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(HD = spec("head_dim"), dyn),
    reference = crate::reference::rope,
    tolerance = rel(1e-6),
    test(
        head_dim = HD + HD % 2,
        x = { let n_head = rng.range(1, 5); rng.f32s(n_head * head_dim) },
        pos = rng.range(0, 5000),
        n_rot = if rng.range(0, 3) == 0 { (head_dim / 2) & !1 } else { head_dim },
        freq_base = [10_000.0, 500_000.0][rng.range(0, 2)],
        freq_factors = if rng.range(0, 2) == 0 { vec![] } else { rng.f32s_in(n_rot / 2, 1.0, 8.0) },
        neox = rng.range(0, 2) == 1,
    ),
)]
#[expect(
    clippy::too_many_arguments,
    reason = "RoPE's parameters are GGUF metadata"
)]
pub fn rope<V: Simd, const HD: usize>(
    v: V,
    x: &mut [f32],
    head_dim: usize,
    pos: usize,
    n_rot: usize,
    freq_base: f32,
    freq_factors: &[f32],
    neox: bool,
) {
    let hd = dim::<HD>(head_dim);
    let half = n_rot / 2;
    assert!(n_rot.is_multiple_of(2) && n_rot <= hd && half <= MAX_ROT_PAIRS);
    assert!(
        x.len().is_multiple_of(hd),
        "x is not a whole number of heads"
    );
    let mut cos = [0.0; MAX_ROT_PAIRS];
    let mut sin = [0.0; MAX_ROT_PAIRS];
    let (cos, sin) = (&mut cos[..half], &mut sin[..half]);
    reference::rope_angles(pos, n_rot, freq_base, freq_factors, cos, sin);
    let l = V::LANES;
    for head in x.chunks_exact_mut(hd) {
        if neox {
            let (a, b) = head[..n_rot].split_at_mut(half);
            let mut i = 0;
            while i < half {
                let full = i + l <= half;
                let ld = |s: &[f32]| {
                    if full {
                        v.load(s)
                    } else {
                        v.load_partial(s, 0.0)
                    }
                };
                let end = half.min(i + l);
                let (x0, x1) = (ld(&a[i..end]), ld(&b[i..end]));
                let (c, s) = (ld(&cos[i..end]), ld(&sin[i..end]));
                let r0 = v.sub(v.mul(x0, c), v.mul(x1, s));
                let r1 = v.mul_add(x0, s, v.mul(x1, c));
                if full {
                    v.store(&mut a[i..end], r0);
                    v.store(&mut b[i..end], r1);
                } else {
                    v.store_partial(&mut a[i..end], r0);
                    v.store_partial(&mut b[i..end], r1);
                }
                i += l;
            }
        } else {
            for i in 0..half {
                let (x0, x1) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = x0 * cos[i] - x1 * sin[i];
                head[2 * i + 1] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}
