//! Attention of one query against a KV cache (token generation).

use half::f16;
use woolly_kernels_macros::kernel;

use crate::dim;
use crate::ops::blocks::{self, Elem};
use crate::simd::Simd;

/// Single-pass ("online") softmax attention, grouped-query: query head `h` reads KV head
/// `h / (n_head / n_kv_head)`; scores are scaled by `1 / sqrt(head_dim)`. The running
/// maximum rescales the accumulated output (Milakov & Gimelshein, "Online normalizer
/// calculation for softmax", 2018), so K and V are read once.
/// shapes: q, out: (n_head, HD); k, vals: (n_pos, n_kv_head, HD)
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "the attention's shapes")]
fn attend<V: Simd, E: Elem, const HD: usize>(
    v: V,
    q: &[f32],
    k: &[E],
    vals: &[E],
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    out: &mut [f32],
) {
    let hd = dim::<HD>(head_dim);
    assert!(
        n_kv_head > 0 && n_head.is_multiple_of(n_kv_head),
        "n_head must be a multiple of n_kv_head"
    );
    assert!(q.len() == n_head * hd && out.len() == n_head * hd);
    assert!(k.len().is_multiple_of(n_kv_head * hd) && vals.len() == k.len());
    let n_pos = k.len() / (n_kv_head * hd);
    assert!(n_pos > 0, "attention over an empty KV cache");
    let group = n_head / n_kv_head;
    let scale = 1.0 / (hd as f32).sqrt();
    for h in 0..n_head {
        let kvh = h / group;
        let q = &q[h * hd..][..hd];
        let acc = &mut out[h * hd..][..hd];
        acc.fill(0.0);
        let (mut max, mut sum) = (f32::NEG_INFINITY, 0.0f32);
        for p in 0..n_pos {
            let at = (p * n_kv_head + kvh) * hd;
            let s = blocks::dot(v, q, &k[at..][..hd]) * scale;
            let new_max = max.max(s);
            let correction = (max - new_max).exp();
            let weight = (s - new_max).exp();
            sum = sum * correction + weight;
            blocks::scale_add(v, acc, correction, weight, &vals[at..][..hd]);
            max = new_max;
        }
        let inv = 1.0 / sum;
        for a in acc {
            *a *= inv;
        }
    }
}

/// Attention of one query against an f32 KV cache: see `attend` above.
/// shapes: q, out: (n_head, HD); k, vals: (n_pos, n_kv_head, HD)
// Tolerance: f32 dots of HD terms and an f32 weighted sum over n_pos < 50 positions
// against the f64 reference; outputs are convex combinations of values in [-1, 1].
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(HD = spec("head_dim"), dyn),
    reference = crate::reference::attention,
    tolerance = rel(1e-5),
    cases = 32,
    test(
        n_kv_head = rng.range(1, 4),
        n_head = n_kv_head * rng.range(1, 5),
        head_dim = HD,
        q = rng.f32s(n_head * head_dim),
        k = { let n_pos = rng.range(1, 50); rng.f32s(n_pos * n_kv_head * head_dim) },
        vals = rng.f32s(k.len()),
        out = rng.f32s(n_head * head_dim),
    ),
)]
#[expect(clippy::too_many_arguments, reason = "the attention's shapes")]
pub fn attention_f32<V: Simd, const HD: usize>(
    v: V,
    q: &[f32],
    k: &[f32],
    vals: &[f32],
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    out: &mut [f32],
) {
    attend::<V, f32, HD>(v, q, k, vals, n_head, n_kv_head, head_dim, out);
}

/// Attention of one query against an f16 KV cache.
/// shapes: q, out: (n_head, HD); k, vals: (n_pos, n_kv_head, HD)
// Tolerance: as `attention_f32` (f16 -> f32 widening is exact).
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(HD = spec("head_dim"), dyn),
    reference = crate::reference::attention_f16,
    tolerance = rel(1e-5),
    cases = 32,
    test(
        n_kv_head = rng.range(1, 4),
        n_head = n_kv_head * rng.range(1, 5),
        head_dim = HD,
        q = rng.f32s(n_head * head_dim),
        k = { let n_pos = rng.range(1, 50); rng.f16s(n_pos * n_kv_head * head_dim) },
        vals = rng.f16s(k.len()),
        out = rng.f32s(n_head * head_dim),
    ),
)]
#[expect(clippy::too_many_arguments, reason = "the attention's shapes")]
pub fn attention_f16<V: Simd, const HD: usize>(
    v: V,
    q: &[f32],
    k: &[f16],
    vals: &[f16],
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    out: &mut [f32],
) {
    attend::<V, f16, HD>(v, q, k, vals, n_head, n_kv_head, head_dim, out);
}
