//! References for the quantized dot products: weights in a ggml block format against
//! 8-bit activations (Q8_K for the k-quants, Q8_0 or Q8_1 for the legacy formats).
//!
//! Each block's dot product is split into **exact integer sums** and f32 operations in a
//! fixed order. Every ISA variant computes the same integers (they are exact whatever the
//! summation order) and then the same f32 operations in the same order, so variants agree
//! with these references **bit for bit**: the tests use `exact()`. (ggml's own variants
//! differ from each other by f32 rounding because each keeps its float accumulators in a
//! different shape; Woolly fixes the shape here so results do not depend on the ISA, the
//! thread count or the batch, see DECISIONS.md.)
//!
//! The shapes:
//! - **Q4_1 and Q8_0 follow ggml's x86 (AVX2) order**: eight f32 accumulators, lane `k`
//!   taking, per block in order, one fused multiply-add of `dw * dx` by the exact sum of
//!   the four products of weights `4k..4k + 4`; then `hsum_float_8`, and for Q4_1 plus a
//!   separately fused sum of the blocks' `m * s`. That is what llama.cpp computes on x86
//!   (`ggml_vec_dot_q4_1_q8_1`, `ggml_vec_dot_q8_0_q8_0`), so Woolly's default forward
//!   pass reproduces llama.cpp's logits bit for bit on models with these weights
//!   (SmolLM2: Q4_1 and Q8_0), not only in the scalar ggml-exact mode. The order is
//!   [`fma_blocks`] and [`hsum8`].
//! - **Q4_K and Q6_K follow ggml's x86 orders too**, so that llama.cpp's logits are
//!   reproduced bit for bit on k-quant models (Q4_K_M: Q4_K and Q6_K) as well. Q4_K takes
//!   the order of ggml's repacked `q4_K_8x8` kernels ([`fma_q4k`]): two accumulators, per
//!   block and per pair of 32-weight groups in order, one fused multiply-add of the
//!   pair's exact scaled sum by `d * d8` and one of its exact min sum by `dmin * d8`;
//!   the result is their difference. ggml takes it for whole groups of four tokens (its
//!   gemm), and for the tokens left over (a single decoded token among them) its gemv
//!   order, one fused multiply-add of each block's whole integer sums
//!   ([`vec_dot_q4k_q8k_gemv`]). Woolly has both, and the model chooses per token as
//!   ggml does, by the token's place among its own sequence's tokens in the batch. Q6_K takes the order of ggml's tiled
//!   mul_mat ([`fma_q6k`]): per block, the exact integer sum times `d` rounded, then
//!   fused into the running sum by `d8`.
//! - The other formats combine each block's integers once (`combine_*`, one rounded f32
//!   value per block) and add those to a running sum in block order.
//!
//! Ported from ggml's `ggml_vec_dot_*_generic` (ggml-cpu/arch-fallback + quants.c,
//! llama.cpp commit b5b8a0a) and, for the x86 order, its AVX2 paths
//! (ggml-cpu/arch/x86/quants.c), reorganized around the exact integer sums.

use crate::quant::{
    BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, BlockQ8_1, BlockQ8K,
    QK, QK_K, get_scale_min_k4,
};

/// ggml's float accumulation of one Q4_K x Q8_K block (see the module docs): for each
/// pair `p` of 32-weight groups `(2p, 2p + 1)` in order, `acc = fma(isum[p], d * d8,
/// acc)` and `accmin = fma(imin[p], dmin * d8, accmin)`, each scale product rounded once
/// and each multiply-add fused. `isum[p]` and `imin[p]` are the pair's exact sums
/// (`sc * dot` and `m * bsum32` of [`q4k_group_sums`], added over the two groups); the
/// dot product is `acc - accmin` after the last block.
#[inline(always)]
pub fn fma_q4k(
    w: &BlockQ4K,
    x: &BlockQ8K,
    isum: [i32; 4],
    imin: [i32; 4],
    acc: &mut f32,
    accmin: &mut f32,
) {
    let d = w.d.to_f32() * x.d;
    let dmin = w.dmin.to_f32() * x.d;
    for (is, im) in isum.into_iter().zip(imin) {
        *acc = (is as f32).mul_add(d, *acc);
        *accmin = (im as f32).mul_add(dmin, *accmin);
    }
}

/// The exact integer sums of group `g` (32 weights) of a Q4_K x Q8_K block:
/// `(sc[g] * sum_i q[i] q8[i], m[g] * sum_i q8[i])`.
#[inline(always)]
pub fn q4k_group_sums(w: &BlockQ4K, x: &BlockQ8K, g: usize) -> (i32, i32) {
    let (sc, m) = get_scale_min_k4(g, &w.scales);
    // Group g: chunk g / 2 of 32 bytes, low nibbles for even g, high for odd.
    let bytes = &w.qs[32 * (g / 2)..][..32];
    let mut dot = 0i32;
    for (l, &b) in bytes.iter().enumerate() {
        let q = if g.is_multiple_of(2) { b & 0xF } else { b >> 4 };
        dot += i32::from(q) * i32::from(x.qs[32 * g + l]);
    }
    (
        i32::from(sc) * dot,
        i32::from(m) * i32::from(x.bsums[2 * g] + x.bsums[2 * g + 1]),
    )
}

/// Q4_K weights . Q8_K activations.            shapes: w, x: (n_blocks,) of 256 weights
///
/// Weight `i` of group `g` (32 weights) is `d * sc[g] * q[i] - dmin * m[g]`, so
/// `sum w x = d8 * (d * sum_g sc[g] * sum_i q[i] q8[i] - dmin * sum_g m[g] * sum_i q8[i])`,
/// accumulated in ggml's order ([`fma_q4k`]).
pub fn vec_dot_q4k_q8k(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    q4k_dot(w, x, fma_q4k)
}

/// The Q4_K dot product with each block's pair sums (of [`q4k_group_sums`]) combined by
/// `combine` ([`fma_q4k`] or [`fma_q4k_gemv`]); the result is `acc - accmin`.
#[inline(always)]
fn q4k_dot(
    w: &[BlockQ4K],
    x: &[BlockQ8K],
    combine: fn(&BlockQ4K, &BlockQ8K, [i32; 4], [i32; 4], &mut f32, &mut f32),
) -> f32 {
    assert_eq!(w.len(), x.len());
    let (mut acc, mut accmin) = (0.0f32, 0.0f32);
    for (w, x) in w.iter().zip(x) {
        let (mut isum, mut imin) = ([0i32; 4], [0i32; 4]);
        for g in 0..QK_K / 32 {
            let (gsum, gmin) = q4k_group_sums(w, x, g);
            isum[g / 2] += gsum;
            imin[g / 2] += gmin;
        }
        combine(w, x, isum, imin, &mut acc, &mut accmin);
    }
    acc - accmin
}

/// Q4_K weights . Q8_K activations in ggml's **gemv** order, the order of its repacked
/// `q4_K_8x8` kernels for the tokens left over from whole groups of four (a single
/// decoded token among them): per block, the exact integer sums of all eight groups
/// (`sc * dot` and `m * bsum32` of [`q4k_group_sums`]), then `acc = fma(isum, d * d8,
/// acc)` and `accmin = fma(imin, dmin * d8, accmin)`, each scale product rounded once;
/// the result is `acc - accmin`. [`vec_dot_q4k_q8k`] is the gemm order.
/// shapes: w, x: (n_blocks,) of 256 weights
pub fn vec_dot_q4k_q8k_gemv(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    q4k_dot(w, x, fma_q4k_gemv)
}

/// ggml's gemv float accumulation of one Q4_K x Q8_K block: the pair sums of
/// [`fma_q4k`] added (exactly, in i32), then `acc = fma(isum, d * d8, acc)` and
/// `accmin = fma(imin, dmin * d8, accmin)`.
#[inline(always)]
pub fn fma_q4k_gemv(
    w: &BlockQ4K,
    x: &BlockQ8K,
    isum: [i32; 4],
    imin: [i32; 4],
    acc: &mut f32,
    accmin: &mut f32,
) {
    let (is, im): (i32, i32) = (isum.iter().sum(), imin.iter().sum());
    *acc = (is as f32).mul_add(w.d.to_f32() * x.d, *acc);
    *accmin = (im as f32).mul_add(w.dmin.to_f32() * x.d, *accmin);
}

/// ggml's float accumulation of one Q6_K x Q8_K block (see the module docs):
/// `fma(isum * d, d8, acc)`, the product `isum * d` rounded once, then fused.
#[inline(always)]
pub fn fma_q6k(w: &BlockQ6K, x: &BlockQ8K, isum: i32, acc: f32) -> f32 {
    (isum as f32 * w.d.to_f32()).mul_add(x.d, acc)
}

/// The 6-bit quant (0..64) of weight `i` of a Q6_K block.
#[inline(always)]
pub fn q6k_quant(w: &BlockQ6K, i: usize) -> u8 {
    let (half, j) = (i / 128, i % 128);
    let (quarter, l) = (j / 32, j % 32);
    let ql = w.ql[64 * half + 32 * (quarter % 2) + l];
    let low = if quarter < 2 { ql & 0xF } else { ql >> 4 };
    let high = (w.qh[32 * half + l] >> (2 * quarter)) & 3;
    low | (high << 4)
}

/// Q6_K weights . Q8_K activations.            shapes: w, x: (n_blocks,) of 256 weights
///
/// Weight `i` of group `g` (16 weights) is `d * sc[g] * (q[i] - 32)`; blocks accumulated
/// in ggml's order ([`fma_q6k`]).
pub fn vec_dot_q6k_q8k(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (w, x) in w.iter().zip(x) {
        let mut isum = 0i32;
        for g in 0..QK_K / 16 {
            let mut dot = 0i32;
            for i in 16 * g..16 * g + 16 {
                dot += (i32::from(q6k_quant(w, i)) - 32) * i32::from(x.qs[i]);
            }
            isum += i32::from(w.scales[g]) * dot;
        }
        sum = fma_q6k(w, x, isum, sum);
    }
    sum
}

/// Combines a block of a format without offset against Q8_0: `(dw * dx) * isum`.
#[inline(always)]
pub fn combine_q8_0(dw: half::f16, x: &BlockQ8_0, isum: i32) -> f32 {
    (dw.to_f32() * x.d.to_f32()) * isum as f32
}

/// Combines a block of a format with offset `m` against Q8_1:
/// `(dw * dx) * isum + m * s` where `s = dx * sum(q8)` is stored in the Q8_1 block.
#[inline(always)]
pub fn combine_q8_1(dw: half::f16, m: half::f16, x: &BlockQ8_1, isum: i32) -> f32 {
    (dw.to_f32() * x.d.to_f32()) * isum as f32 + m.to_f32() * x.s.to_f32()
}

/// `sum_i (q[i] - offset) * q8[i]` over the 32 weights of a legacy 4/5-bit block: byte
/// `j` of `qs` holds weight `j` (low nibble) and `j + 16` (high); `qh` bit `j` is weight
/// `j`'s fifth bit. Written as a plain loop over the bytes (no per-weight closure) so the
/// reference runs at a usable speed; the sum is an exact integer whatever the order.
#[inline(always)]
fn idot_legacy(qs: &[u8; QK / 2], qh: u32, offset: i32, q8: &[i8; QK]) -> i32 {
    let mut sum = 0i32;
    for j in 0..QK / 2 {
        let b = qs[j];
        let lo = i32::from(b & 0xF) | (((qh >> j) & 1) << 4) as i32;
        let hi = i32::from(b >> 4) | (((qh >> (j + 16)) & 1) << 4) as i32;
        sum += (lo - offset) * i32::from(q8[j]) + (hi - offset) * i32::from(q8[j + 16]);
    }
    sum
}

/// ggml's `hsum_float_8`: `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`.
#[inline(always)]
pub fn hsum8(a: [f32; 8]) -> f32 {
    let r = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// ggml's x86 accumulation of a legacy dot product: for each block in order, with
/// `(d, p) = block(i)`, `acc[k] = fma(d, p[k], acc[k])` (one rounding), `p[k]` being the
/// block's exact sum of the four products of weights `4k..4k + 4`; returns the eight
/// accumulators, which the caller reduces with [`hsum8`]. `d` is the product `dw * dx`
/// rounded once, as ggml multiplies the two scales before the FMA.
#[inline(always)]
pub fn fma_blocks(n: usize, mut block: impl FnMut(usize) -> (f32, [i32; 8])) -> [f32; 8] {
    let mut acc = [0.0f32; 8];
    for i in 0..n {
        let (d, p) = block(i);
        for (a, p) in acc.iter_mut().zip(p) {
            // Exact: |p| <= 4 * 128 * 128 = 2^16 < 2^24.
            *a = d.mul_add(p as f32, *a);
        }
    }
    acc
}

/// Q8_0 weights . Q8_0 activations.            shapes: w, x: (n_blocks,) of 32 weights
///
/// In ggml's x86 order (see the module docs): `hsum8` of the eight fused accumulators.
pub fn vec_dot_q8_0_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), x.len());
    hsum8(fma_blocks(w.len(), |i| {
        let (w, x) = (&w[i], &x[i]);
        let p = std::array::from_fn(|k| {
            (4 * k..4 * k + 4)
                .map(|j| i32::from(w.qs[j]) * i32::from(x.qs[j]))
                .sum()
        });
        (w.d.to_f32() * x.d.to_f32(), p)
    }))
}

/// Q4_0 weights (`d * (q - 8)`) . Q8_0 activations.   shapes: w, x: (n_blocks,)
pub fn vec_dot_q4_0_q8_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (w, x) in w.iter().zip(x) {
        sum += combine_q8_0(w.d, x, idot_legacy(&w.qs, 0, 8, &x.qs));
    }
    sum
}

/// Q5_0 weights (`d * (q - 16)`) . Q8_0 activations.  shapes: w, x: (n_blocks,)
pub fn vec_dot_q5_0_q8_0(w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (w, x) in w.iter().zip(x) {
        let isum = idot_legacy(&w.qs, u32::from_le_bytes(w.qh), 16, &x.qs);
        sum += combine_q8_0(w.d, x, isum);
    }
    sum
}

/// Q4_1 weights (`d * q + m`) . Q8_1 activations.     shapes: w, x: (n_blocks,)
///
/// In ggml's x86 order (see the module docs): `hsum8` of the eight fused accumulators
/// (weight `j < 16` is the low nibble of `qs[j]`, weight `j >= 16` the high nibble of
/// `qs[j - 16]`), plus `summs`, the blocks' `m * s` fused into one running sum in block
/// order (GCC contracts ggml's `summs += m * s` to an FMA).
pub fn vec_dot_q4_1_q8_1(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut summs = 0.0f32;
    let acc = fma_blocks(w.len(), |i| {
        let (w, x) = (&w[i], &x[i]);
        summs = w.m.to_f32().mul_add(x.s.to_f32(), summs);
        let p = std::array::from_fn(|k| {
            (4 * k..4 * k + 4)
                .map(|j| {
                    let q = if j < 16 {
                        w.qs[j] & 0xF
                    } else {
                        w.qs[j - 16] >> 4
                    };
                    i32::from(q) * i32::from(x.qs[j])
                })
                .sum()
        });
        (w.d.to_f32() * x.d.to_f32(), p)
    });
    hsum8(acc) + summs
}

/// Q5_1 weights (`d * q + m`) . Q8_1 activations.     shapes: w, x: (n_blocks,)
pub fn vec_dot_q5_1_q8_1(w: &[BlockQ5_1], x: &[BlockQ8_1]) -> f32 {
    assert_eq!(w.len(), x.len());
    let mut sum = 0.0f32;
    for (w, x) in w.iter().zip(x) {
        let isum = idot_legacy(&w.qs, u32::from_le_bytes(w.qh), 0, &x.qs);
        sum += combine_q8_1(w.d, w.m, x, isum);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{self, Block};
    use crate::testing::TestRng;

    /// The integer decomposition agrees with dequantize-then-dot in f64 (up to the f32
    /// rounding of the block combination and the activations' own quantization, which
    /// both sides share: x is dequantized from the same Q8 blocks).
    fn check<W: Block, X: Block>(w: &[W], x: &[X], got: f32) {
        let n = w.len() * W::BLOCK_LEN;
        let mut wf = vec![0.0; n];
        let mut xf = vec![0.0; n];
        for (b, out) in w.iter().zip(wf.chunks_exact_mut(W::BLOCK_LEN)) {
            b.dequantize(out);
        }
        for (b, out) in x.iter().zip(xf.chunks_exact_mut(X::BLOCK_LEN)) {
            b.dequantize(out);
        }
        let want: f64 = wf.iter().zip(&xf).map(|(&a, &b)| a as f64 * b as f64).sum();
        let scale: f64 = wf
            .iter()
            .zip(&xf)
            .map(|(&a, &b)| (a as f64 * b as f64).abs())
            .sum();
        assert!(
            (got as f64 - want).abs() <= 1e-5 * scale.max(1e-3),
            "{}: got {got}, want {want}",
            std::any::type_name::<W>()
        );
    }

    #[test]
    fn decompositions_match_dequantized_dots() {
        let mut rng = TestRng::new(1);
        for _ in 0..20 {
            let xs = rng.f32s(2 * QK_K);
            let wf = rng.f32s(2 * QK_K);
            let mut x8k = [BlockQ8K::ZERO; 2];
            quant::quantize_row_q8k(&xs, &mut x8k);
            let mut x80 = [BlockQ8_0::ZERO; 16];
            quant::quantize_row_q8_0(&xs, &mut x80);
            let mut x81 = [BlockQ8_1::ZERO; 16];
            quant::quantize_row_q8_1(&xs, &mut x81);

            let mut w = [BlockQ4K::ZERO; 2];
            quant::quantize_row_q4k(&wf, &mut w);
            check(&w, &x8k, vec_dot_q4k_q8k(&w, &x8k));
            let mut w = [BlockQ6K::ZERO; 2];
            quant::quantize_row_q6k(&wf, &mut w);
            check(&w, &x8k, vec_dot_q6k_q8k(&w, &x8k));
            let mut w = [BlockQ8_0::ZERO; 16];
            quant::quantize_row_q8_0(&wf, &mut w);
            check(&w, &x80, vec_dot_q8_0_q8_0(&w, &x80));
            let mut w = [BlockQ4_0::ZERO; 16];
            quant::quantize_row_q4_0(&wf, &mut w);
            check(&w, &x80, vec_dot_q4_0_q8_0(&w, &x80));
            let mut w = [BlockQ5_0::ZERO; 16];
            quant::quantize_row_q5_0(&wf, &mut w);
            check(&w, &x80, vec_dot_q5_0_q8_0(&w, &x80));
        }
    }

    #[test]
    fn offset_formats_match_dequantized_dots() {
        // Q8_1's `s` is rounded to f16, so these hold to that rounding (ggml's bound).
        let mut rng = TestRng::new(2);
        for _ in 0..20 {
            let xs = rng.f32s(QK_K);
            let wf = rng.f32s(QK_K);
            let mut x81 = [BlockQ8_1::ZERO; 8];
            quant::quantize_row_q8_1(&xs, &mut x81);
            let mut xf = vec![0.0; QK_K];
            quant::dequantize_row_q8_1(&x81, &mut xf);
            let mut w = [BlockQ4_1::ZERO; 8];
            quant::quantize_row_q4_1(&wf, &mut w);
            let mut wd = vec![0.0; QK_K];
            quant::dequantize_row_q4_1(&w, &mut wd);
            let want: f32 = wd.iter().zip(&xf).map(|(a, b)| a * b).sum();
            let got = vec_dot_q4_1_q8_1(&w, &x81);
            assert!((got - want).abs() < 0.05, "q4_1: {got} vs {want}");
            let mut w = [BlockQ5_1::ZERO; 8];
            quant::quantize_row_q5_1(&wf, &mut w);
            quant::dequantize_row_q5_1(&w, &mut wd);
            let want: f32 = wd.iter().zip(&xf).map(|(a, b)| a * b).sum();
            let got = vec_dot_q5_1_q8_1(&w, &x81);
            assert!((got - want).abs() < 0.05, "q5_1: {got} vs {want}");
        }
    }
}
