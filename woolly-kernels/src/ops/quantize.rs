//! Activation quantization (f32 -> Q8_K, Q8_0, Q8_1) and RMSNorm fused with it.
//!
//! The quantizers are written once over the vocabulary and agree with the reference
//! quantizers in [`crate::quant`] **bit for bit**: the scale is the same f32 expression,
//! each `x * iscale` is one IEEE product, and the rounding is the reference's, ties to
//! even (the vocabulary's `round`). Q8_0 and Q8_1 are ggml's x86 activation quantizers
//! ([`crate::quant::quantize_activations_q8_0`]), so the integer dots see the quants
//! llama.cpp's do. Only NaN or infinite inputs may give different quants.

use woolly_kernels_macros::kernel;

use crate::dim;
use crate::ops::blocks;
use crate::quant::{Block, BlockQ8_0, BlockQ8_1, BlockQ8K, QK, QK_K};
use crate::simd::{MAX_LANES, Simd};

/// `max |x[i]|` over `x` (0 for empty input).
#[inline(always)]
fn amax<V: Simd>(v: V, x: &[f32]) -> f32 {
    let l = V::LANES;
    let mut m = v.zero();
    let mut i = 0;
    while i + l <= x.len() {
        let a = v.load(&x[i..]);
        m = v.max(m, v.max(a, v.sub(v.zero(), a)));
        i += l;
    }
    let mut m = v.hmax(m);
    for &a in &x[i..] {
        m = m.max(a.abs());
    }
    m
}

/// Writes `round_ties_even(x[i] * iscale)` clamped to i8 into `q`.
#[inline(always)]
fn scale_round<V: Simd>(v: V, x: &[f32], iscale: f32, q: &mut [i8]) {
    let l = V::LANES;
    let s = v.splat(iscale);
    let mut buf = [0.0f32; MAX_LANES];
    for (xc, qc) in x.chunks(l).zip(q.chunks_mut(l)) {
        let y = if xc.len() == l {
            v.load(xc)
        } else {
            v.load_partial(xc, 0.0)
        };
        v.store(&mut buf, v.round(v.mul(y, s)));
        for (q, &r) in qc.iter_mut().zip(&buf) {
            *q = r.clamp(-128.0, 127.0) as i8;
        }
    }
}

/// Quantizes one Q8_K block from `x` (256 values), as `quant::quantize_row_q8k`.
#[inline(always)]
fn quantize_block_q8k<V: Simd>(v: V, x: &[f32], out: &mut BlockQ8K) {
    let amax = amax(v, x);
    if amax == 0.0 {
        *out = BlockQ8K::ZERO;
        return;
    }
    // The signed value of the first element of largest magnitude, as the reference.
    let max = *x.iter().find(|a| a.abs() == amax).unwrap_or(&amax);
    let iscale = -127.0 / max;
    scale_round(v, x, iscale, &mut out.qs);
    for (sum, group) in out.bsums.iter_mut().zip(out.qs.chunks_exact(16)) {
        *sum = group.iter().map(|&q| i16::from(q)).sum();
    }
    out.d = 1.0 / iscale;
}

/// f32 -> Q8_K activations, bit-identical to `quant::quantize_row_q8k`.
/// shapes: x: (n_blocks * 256,); out: (n_blocks,)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = crate::quant::quantize_row_q8k,
    tolerance = exact(),
    override(avx2 = avx2_q8::quantize_q8k, avx512 = avx2_q8::quantize_q8k_avx512),
    test(
        x = { let n = rng.range(1, 9); let mut x = rng.f32s(n * 256); if rng.range(0, 4) == 0 { x[..256].fill(0.0) } x },
        out = vec![BlockQ8K::ZERO; x.len() / 256],
    ),
)]
pub fn quantize_q8k<V: Simd>(v: V, x: &[f32], out: &mut [BlockQ8K]) {
    assert_eq!(
        x.len(),
        out.len() * QK_K,
        "Q8_K: {} blocks need {} inputs",
        out.len(),
        out.len() * QK_K
    );
    for (xb, ob) in x.chunks_exact(QK_K).zip(out) {
        quantize_block_q8k(v, xb, ob);
    }
}

/// f32 -> Q8_0 activations, bit-identical to `quant::quantize_activations_q8_0`.
/// shapes: x: (n_blocks * 32,); out: (n_blocks,)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = crate::quant::quantize_activations_q8_0,
    tolerance = exact(),
    override(avx2 = avx2_q8::quantize_q8_0, avx512 = avx2_q8::quantize_q8_0_avx512),
    test(
        x = { let n = rng.range(1, 40); let mut x = rng.f32s(n * 32); if rng.range(0, 4) == 0 { x[..32].fill(0.0) } x },
        out = vec![BlockQ8_0::ZERO; x.len() / 32],
    ),
)]
pub fn quantize_q8_0<V: Simd>(v: V, x: &[f32], out: &mut [BlockQ8_0]) {
    assert_eq!(
        x.len(),
        out.len() * QK,
        "Q8_0: {} blocks need {} inputs",
        out.len(),
        out.len() * QK
    );
    let l = V::LANES;
    for (xb, ob) in x.chunks_exact(QK).zip(out) {
        let m = amax(v, xb);
        let d = m / 127.0;
        let id = if m != 0.0 { 127.0 / m } else { 0.0 };
        let s = v.splat(id);
        let mut y = [0.0f32; QK];
        let mut i = 0;
        while i + l <= QK {
            v.store(&mut y[i..], v.round(v.mul(v.load(&xb[i..]), s)));
            i += l;
        }
        for (q, &y) in ob.qs.iter_mut().zip(&y) {
            // Whole already; `as` saturates.
            *q = y as i8;
        }
        ob.d = half::f16::from_f32(d);
    }
}

/// f32 -> Q8_1 activations (the partner of Q4_1 and Q5_1 weights), bit-identical to
/// `quant::quantize_activations_q8_1`: Q8_0's quants plus `s = d * sum(q)`.
/// shapes: x: (n_blocks * 32,); out: (n_blocks,)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = crate::quant::quantize_activations_q8_1,
    tolerance = exact(),
    override(avx2 = avx2_q8::quantize_q8_1, avx512 = avx2_q8::quantize_q8_1_avx512),
    test(
        x = { let n = rng.range(1, 40); let mut x = rng.f32s(n * 32); if rng.range(0, 4) == 0 { x[..32].fill(0.0) } x },
        out = vec![BlockQ8_1::ZERO; x.len() / 32],
    ),
)]
pub fn quantize_q8_1<V: Simd>(v: V, x: &[f32], out: &mut [BlockQ8_1]) {
    assert_eq!(
        x.len(),
        out.len() * QK,
        "Q8_1: {} blocks need {} inputs",
        out.len(),
        out.len() * QK
    );
    let l = V::LANES;
    for (xb, ob) in x.chunks_exact(QK).zip(out) {
        let m = amax(v, xb);
        let d = m / 127.0;
        let id = if m != 0.0 { 127.0 / m } else { 0.0 };
        let s = v.splat(id);
        let mut y = [0.0f32; QK];
        let mut i = 0;
        while i + l <= QK {
            v.store(&mut y[i..], v.round(v.mul(v.load(&xb[i..]), s)));
            i += l;
        }
        let mut sum = 0i32;
        for (q, &y) in ob.qs.iter_mut().zip(&y) {
            // Whole already; `as` saturates.
            *q = y as i8;
            sum += i32::from(*q);
        }
        ob.d = half::f16::from_f32(d);
        ob.s = half::f16::from_f32(sum as f32 * d);
    }
}

/// The hand-written x86 bodies of [`quantize_q8_0`](fn@quantize_q8_0),
/// [`quantize_q8_1`](fn@quantize_q8_1) (the body of ggml's x86 `quantize_row_q8_0` and
/// `quantize_row_q8_1`) and [`quantize_q8k`](fn@quantize_q8k), all in vector registers.
/// The generic bodies round in vectors but clamp, convert and sum the quants one at a
/// time (Q8_K: about 300 ns a block on a Zen 2 core), and the calling thread quantizes
/// each product's input while the others wait (about 1000 Q8_K blocks per TinyLlama
/// token).
#[cfg(target_arch = "x86_64")]
pub mod avx2_q8 {
    use std::arch::x86_64::*;

    use crate::isa::{Avx2Token, Avx512Token};
    use crate::quant::{Block, BlockQ8_0, BlockQ8_1, BlockQ8K, QK, QK_K};

    /// The largest of the eight lanes of `m`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn hmax(m: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps::<0b01>(m, m)))
    }

    /// 32 i32 quants as saturated bytes (clamped to [-128, 127]), in order.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn ordered_bytes(q: &[__m256i; 4]) -> __m256i {
        // packs work per 128-bit lane: one permute puts the bytes back in order.
        let b = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }

    /// One block's scale `max|x| / 127` and quants `round(x * (127 / max|x|))` (0 for
    /// a block of zeros), as i32 lanes in order.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn block_quants(xb: &[f32]) -> (f32, [__m256i; 4]) {
        assert_eq!(xb.len(), QK, "a block is 32 values");
        let sign = _mm256_set1_ps(-0.0);
        // SAFETY: `xb` holds 32 f32s: four unaligned 8-lane loads in bounds.
        let v: [__m256; 4] =
            std::array::from_fn(|k| unsafe { _mm256_loadu_ps(xb.as_ptr().add(8 * k)) });
        let m = hmax(v.iter().fold(_mm256_setzero_ps(), |m, &a| {
            _mm256_max_ps(m, _mm256_andnot_ps(sign, a))
        }));
        let id = _mm256_set1_ps(if m != 0.0 { 127.0 / m } else { 0.0 });
        let q = std::array::from_fn(|k| {
            let y = _mm256_mul_ps(v[k], id);
            let y = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(y);
            _mm256_cvttps_epi32(y)
        });
        (m / 127.0, q)
    }

    /// Stores the 32 quants of [`block_quants`] as bytes, in order.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn store_bytes(q: &[__m256i; 4], out: &mut [i8; QK]) {
        // SAFETY: `out` is 32 bytes; storeu needs no alignment.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), ordered_bytes(q)) };
    }

    /// f32 -> Q8_0, bit-identical to `quant::quantize_activations_q8_0` for finite
    /// inputs.
    ///
    /// # Safety
    /// Safe to call from code compiled with the same features; elsewhere the caller
    /// must know the CPU has AVX2, FMA and F16C (the token argument proves it).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn quantize_q8_0(_: Avx2Token, x: &[f32], out: &mut [BlockQ8_0]) {
        assert_eq!(x.len(), out.len() * QK, "Q8_0: shapes");
        for (xb, ob) in x.chunks_exact(QK).zip(out) {
            let (d, q) = block_quants(xb);
            store_bytes(&q, &mut ob.qs);
            // `vcvtps2ph` rounds to nearest even, as `f16::from_f32` (an out-of-line
            // call testing CPU features).
            let d = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(d));
            ob.d = half::f16::from_bits(_mm_cvtsi128_si32(d) as u16);
        }
    }

    /// [`quantize_q8_0`] compiled with AVX-512 enabled.
    ///
    /// # Safety
    /// Safe to call from code compiled with the same features; elsewhere the caller
    /// must know the CPU has AVX-512 F/BW/VL/VNNI (the token argument proves it).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub fn quantize_q8_0_avx512(t: Avx512Token, x: &[f32], out: &mut [BlockQ8_0]) {
        quantize_q8_0(t.avx2(), x, out)
    }

    /// f32 -> Q8_1, bit-identical to `quant::quantize_activations_q8_1` for finite
    /// inputs.
    ///
    /// # Safety
    /// Safe to call from code compiled with the same features; elsewhere the caller
    /// must know the CPU has AVX2, FMA and F16C (the token argument proves it).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn quantize_q8_1(_: Avx2Token, x: &[f32], out: &mut [BlockQ8_1]) {
        assert_eq!(x.len(), out.len() * QK, "Q8_1: shapes");
        for (xb, ob) in x.chunks_exact(QK).zip(out) {
            let (d, q) = block_quants(xb);
            let total =
                _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
            let s = _mm_add_epi32(
                _mm256_castsi256_si128(total),
                _mm256_extracti128_si256::<1>(total),
            );
            let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
            let sum = _mm_cvtsi128_si32(s);
            store_bytes(&q, &mut ob.qs);
            // Both scales to f16 in one `vcvtps2ph` (see `quantize_q8_0`).
            let ds =
                _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_setr_ps(d, sum as f32 * d, 0.0, 0.0));
            let ds = _mm_cvtsi128_si32(ds) as u32;
            ob.d = half::f16::from_bits(ds as u16);
            ob.s = half::f16::from_bits((ds >> 16) as u16);
        }
    }

    /// [`quantize_q8_1`] compiled with AVX-512 enabled.
    ///
    /// # Safety
    /// Safe to call from code compiled with the same features; elsewhere the caller
    /// must know the CPU has AVX-512 F/BW/VL/VNNI (the token argument proves it).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub fn quantize_q8_1_avx512(t: Avx512Token, x: &[f32], out: &mut [BlockQ8_1]) {
        quantize_q8_1(t.avx2(), x, out)
    }

    /// f32 -> Q8_K, bit-identical to `quant::quantize_row_q8k` for finite inputs.
    ///
    /// # Safety
    /// Safe to call from code compiled with the same features; elsewhere the caller
    /// must know the CPU has AVX2 (the token argument proves it).
    #[target_feature(enable = "avx2")]
    pub fn quantize_q8k(_: Avx2Token, x: &[f32], out: &mut [BlockQ8K]) {
        assert_eq!(x.len(), out.len() * QK_K, "Q8_K: shapes");
        for (xb, ob) in x.chunks_exact(QK_K).zip(out) {
            quantize_block_q8k(xb.try_into().expect("chunks of 256"), ob);
        }
    }

    /// [`quantize_q8k`] compiled with AVX-512 enabled.
    ///
    /// # Safety
    /// Safe to call from code compiled with the same features; elsewhere the caller
    /// must know the CPU has AVX-512 F/BW/VL/VNNI (the token argument proves it).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2")]
    pub fn quantize_q8k_avx512(t: Avx512Token, x: &[f32], out: &mut [BlockQ8K]) {
        quantize_q8k(t.avx2(), x, out)
    }

    /// One Q8_K block (see [`quantize_q8k`]).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn quantize_block_q8k(x: &[f32; QK_K], out: &mut BlockQ8K) {
        let load = |i: usize| {
            // SAFETY: i + 8 <= 256: an unaligned 8-lane load in bounds.
            unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) }
        };
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_setzero_ps();
        for i in (0..QK_K).step_by(8) {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, load(i)));
        }
        let amax = hmax(m);
        if amax == 0.0 {
            *out = BlockQ8K::ZERO;
            return;
        }
        // The signed value of the first element of largest magnitude, as the reference.
        let target = _mm256_set1_ps(amax);
        let first = (0..QK_K).step_by(8).find_map(|i| {
            let hit = _mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_andnot_ps(sign, load(i)), target);
            let mask = _mm256_movemask_ps(hit);
            (mask != 0).then(|| i + mask.trailing_zeros() as usize)
        });
        let max = first.map_or(amax, |i| x[i]);
        let iscale = -127.0 / max;
        let s = _mm256_set1_ps(iscale);
        let quant = |i: usize| {
            let y = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm256_mul_ps(load(i), s),
            );
            _mm256_cvtps_epi32(y)
        };
        let bias = _mm256_set1_epi8(-128);
        for c in 0..QK_K / 32 {
            let q: [__m256i; 4] = std::array::from_fn(|k| quant(32 * c + 8 * k));
            // Saturating packs clamp to [-128, 127] as the reference.
            let b = ordered_bytes(&q);
            // SAFETY: bytes 32c..32c + 32 of the 256-byte `qs`; storeu needs no alignment.
            unsafe { _mm256_storeu_si256(out.qs.as_mut_ptr().add(32 * c).cast(), b) };
            // The sums of groups 2c and 2c + 1 (16 quants each, one per 128-bit lane):
            // the quants biased to u8 summed by `sad` in eights, less 16 * 128.
            let t = _mm256_sad_epu8(_mm256_xor_si256(b, bias), _mm256_setzero_si256());
            let t = _mm256_add_epi64(t, _mm256_shuffle_epi32::<0b0100_1110>(t));
            out.bsums[2 * c] = (_mm256_extract_epi64::<0>(t) - 16 * 128) as i16;
            out.bsums[2 * c + 1] = (_mm256_extract_epi64::<2>(t) - 16 * 128) as i16;
        }
        out.d = 1.0 / iscale;
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Ties (127 / max = 1, values k + 1/2), a zero block and extreme magnitudes,
        /// which random inputs almost never reach.
        #[test]
        fn ties_zeros_and_extremes_match_the_references() {
            let Some(t) = Avx2Token::try_new() else {
                eprintln!("skipped: this CPU lacks AVX2");
                return;
            };
            let mut x: Vec<f32> = (0..32).map(|i| i as f32 * 8.0 - 127.5).collect();
            x[31] = 127.0;
            x.extend([0.0; 32]);
            x.extend((0..32).map(|i| if i == 5 { -3e38 } else { 1e-38 * i as f32 }));
            let n = x.len() / QK;
            let (mut want0, mut got0) = (vec![BlockQ8_0::ZERO; n], vec![BlockQ8_0::ZERO; n]);
            crate::quant::quantize_activations_q8_0(&x, &mut want0);
            // SAFETY: the token proves AVX2 (and with it FMA and F16C here).
            unsafe { quantize_q8_0(t, &x, &mut got0) };
            let (mut want1, mut got1) = (vec![BlockQ8_1::ZERO; n], vec![BlockQ8_1::ZERO; n]);
            crate::quant::quantize_activations_q8_1(&x, &mut want1);
            // SAFETY: as above.
            unsafe { quantize_q8_1(t, &x, &mut got1) };
            for b in 0..n {
                assert_eq!(got0[b].qs, want0[b].qs, "Q8_0 block {b}");
                assert_eq!(got0[b].d.to_bits(), want0[b].d.to_bits(), "Q8_0 block {b}");
                assert_eq!(got1[b].qs, want1[b].qs, "Q8_1 block {b}");
                assert_eq!(got1[b].d.to_bits(), want1[b].d.to_bits(), "Q8_1 block {b}");
                assert_eq!(got1[b].s.to_bits(), want1[b].s.to_bits(), "Q8_1 block {b}");
            }
        }

        /// Ties, saturation and the reference's choice of the first element of largest
        /// magnitude, which random inputs almost never reach.
        #[test]
        fn ties_and_the_first_largest_match_the_reference() {
            let Some(t) = Avx2Token::try_new() else {
                eprintln!("skipped: this CPU lacks AVX2");
                return;
            };
            // max = -127/64 makes iscale exactly 64, so (n + 0.5) / 64 scales to a tie.
            let mut ties: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0 + 0.5) / 64.0).collect();
            ties[7] = -127.0 / 64.0;
            ties[200] = 127.0 / 64.0;
            // The positive copy of the largest magnitude comes first here.
            let mut flipped = ties.clone();
            flipped[7] = 127.0 / 64.0;
            flipped[200] = -127.0 / 64.0;
            let spikes: Vec<f32> = (0..256)
                .map(|i| if i % 97 == 3 { -1e30 } else { 1e-30 })
                .collect();
            for x in [ties, flipped, spikes, vec![0.0; 256], vec![-3.5; 256]] {
                let (mut want, mut got) = ([BlockQ8K::ZERO], [BlockQ8K::ZERO]);
                crate::quant::quantize_row_q8k(&x, &mut want);
                // SAFETY: the token proves AVX2.
                unsafe { quantize_q8k(t, &x, &mut got) };
                assert_eq!(got[0].qs, want[0].qs);
                assert_eq!(got[0].bsums, want[0].bsums);
                assert_eq!(got[0].d.to_bits(), want[0].d.to_bits());
            }
        }
    }
}

/// Reference for [`rmsnorm_q8k`](fn@rmsnorm_q8k): the reference RMSNorm, then the reference quantizer.
/// shapes: x, w: (n,); out: (n / 256,)
pub fn reference_rmsnorm_q8k(x: &[f32], w: &[f32], eps: f32, out: &mut [BlockQ8K]) {
    let mut y = vec![0.0; x.len()];
    crate::reference::rmsnorm(x, w, eps, &mut y);
    crate::quant::quantize_row_q8k(&y, out);
}

/// RMSNorm fused with Q8_K quantization for the next matvec: the normalized row is
/// produced 256 values at a time on the stack and quantized at once, never stored.
/// shapes: x, w: (D,); out: (D / 256,)
// Tolerance: the normalized values differ from the f64 reference by RMSNorm's
// rounding (rel 2e-6), which can move a value across a rounding boundary: each
// dequantized value must be within one quant step of the reference's.
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(D = [2048, 4096], dyn),
    reference = reference_rmsnorm_q8k,
    tolerance = quant_steps(1.0),
    test(
        x = rng.f32s(if D % 256 == 0 { D } else { 256 * (1 + D % 5) }),
        w = rng.f32s(x.len()),
        eps = 1e-5,
        out = vec![BlockQ8K::ZERO; x.len() / 256],
    ),
)]
pub fn rmsnorm_q8k<V: Simd, const D: usize>(
    v: V,
    x: &[f32],
    w: &[f32],
    eps: f32,
    out: &mut [BlockQ8K],
) {
    let n = dim::<D>(x.len());
    assert!(w.len() == n && out.len() * QK_K == n, "rmsnorm_q8k: shapes");
    let ss = blocks::dot(v, &x[..n], &x[..n]);
    let scale = 1.0 / (ss / n as f32 + eps).sqrt();
    let mut y = [0.0f32; QK_K];
    for ((xb, wb), ob) in x.chunks_exact(QK_K).zip(w.chunks_exact(QK_K)).zip(out) {
        blocks::scale_mul(v, xb, scale, wb, &mut y);
        quantize_block_q8k(v, &y, ob);
    }
}

/// Every quantizer's registry view.
pub static QUANTIZE_OPS: &[&crate::registry::OpInfo] = &[
    &quantize_q8k::INFO,
    &quantize_q8_0::INFO,
    &quantize_q8_1::INFO,
    &rmsnorm_q8k::INFO,
];
