//! AVX2 and AVX-512 bodies of the k-quant tile kernels (Q4_K and Q6_K rows against Q8_K
//! activations), stamped from one template (`x86_k_tiles!`) like [`super::x86`].
//!
//! Layouts: [`crate::quant::interleaved_k`]. Per super-block the eight rows' quants are
//! decoded 32 weights at a time (eight vectors, four quants of each row per 32-bit
//! lane) and reused for each of the tile's tokens, against the token's activation
//! quants broadcast four at a time. Each lane's integer sums are exact, and the f32
//! accumulation is the reference's ([`crate::reference::quant_dot::fma_q4k`],
//! [`crate::reference::quant_dot::fma_q6k`]) lane by lane, the same roundings and fused
//! multiply-adds in the same order (Q4_K: per pair of groups, so the integer sums are
//! taken a pair at a time): results are bit-identical to the reference.
//!
//! The ISAs differ in the scaled group dot product `acc + sc * sum(u * s)` (per lane):
//! - AVX2: `maddubs` pair sums (i16) are added in i16 as deep as they stay exact, then
//!   `madd_epi16` against the scale duplicated in both i16 halves of the lane adds the
//!   scaled sums into i32: the scale multiply costs nothing extra.
//! - AVX-512 (VNNI, on 256-bit vectors): `vpdpbusd` gives the exact i32 group dot, and
//!   one `vpmulld` applies the scale.
//!
//! The offsets never touch the quants: Q4_K's `imin = sum_g m[g] * bsum32[g]` (a pair of
//! groups at a time) and Q6_K's `32 * sum_g sc[g] * bsums[g]` come from the activations'
//! 16-weight sums (`bsums`, which Q8_K defines as the sums of its quants) with
//! `madd_epi16` on pair-interleaved scales, so Q6_K's quants stay unsigned (0..64) for
//! `maddubs` / `vpdpbusd`: `isum = sum_g sc[g] * (sum q * q8 - 32 * bsums[g])`, the
//! reference's integer exactly.

use std::arch::x86_64::*;

use super::x86::{BlockPrefetch, bcast4, dot4_vnni, f16x8, load32, store8, tiles};
use crate::quant::BlockQ8K;
use crate::quant::interleaved::ROWS;
use crate::quant::interleaved_k::{BlockQ4Kx8, BlockQ6Kx8};

/// Loads 16 bytes from the start of `s`.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn load16<T: Copy>(s: &[T]) -> __m128i {
    assert!(size_of_val(s) >= 16);
    // SAFETY: the first 16 bytes of `s` are in bounds (checked); loadu needs no alignment.
    unsafe { _mm_loadu_si128(s.as_ptr().cast()) }
}

/// The 32 activation quants `q[i..i + 32]` of a Q8_K block.
#[inline(always)]
pub(super) fn q32(q: &[i8; 256], i: usize) -> &[i8; 32] {
    q[i..i + 32].try_into().expect("32 quants")
}

/// The scale of group `2j + P` of each row from the 16 pair-interleaved scale bytes of
/// groups `(2j, 2j + 1)` (`v` byte `2r + p`: row `r`, group `2j + p`), sign-extended and
/// duplicated into both i16 halves of lane `r` (the `madd_epi16` operand of
/// [`gdot_avx2`]). Sign extension is right for Q4_K's 6-bit scales too (0..64).
#[target_feature(enable = "avx2")]
#[inline]
fn scale_avx2<const P: usize>(v: __m128i) -> __m256i {
    let p = P as i8;
    let idx = _mm_setr_epi8(
        p,
        p,
        2 + p,
        2 + p,
        4 + p,
        4 + p,
        6 + p,
        6 + p,
        8 + p,
        8 + p,
        10 + p,
        10 + p,
        12 + p,
        12 + p,
        14 + p,
        14 + p,
    );
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(v, idx))
}

/// As [`scale_avx2`], but one sign-extended i32 scale per lane (the `vpmulld` operand of
/// [`gdot_vnni`]).
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn scale_vnni<const P: usize>(v: __m128i) -> __m256i {
    let p = P as i8;
    let idx = _mm_setr_epi8(
        p,
        2 + p,
        4 + p,
        6 + p,
        8 + p,
        10 + p,
        12 + p,
        14 + p,
        -1,
        -1,
        -1,
        -1,
        -1,
        -1,
        -1,
        -1,
    );
    _mm256_cvtepi8_epi32(_mm_shuffle_epi8(v, idx))
}

/// `acc + sc * sum_{k<K} sum_{i<4} u[k][4l + i] * s[k][4l + i]` in each i32 lane `l`,
/// with AVX2 (`sc` from [`scale_avx2`]; u unsigned, s signed).
///
/// The `maddubs` results (i16, each a sum of two products) are added `D` at a time in
/// i16 before one `madd_epi16` by the scale pairs; callers pick `D` so the i16 sums stay
/// exact: 4-bit weights give pair sums of at most `2 * 15 * 128 = 3840` (D = 8 sums to
/// 30720), 6-bit weights at most `2 * 63 * 128 = 16128` (D = 2 sums to 32256).
#[target_feature(enable = "avx2")]
#[inline]
fn gdot_avx2<const K: usize, const D: usize>(
    acc: __m256i,
    u: &[__m256i; K],
    s: &[__m256i; K],
    sc: __m256i,
) -> __m256i {
    let mut acc = acc;
    for c in 0..K / D {
        let mut p = _mm256_maddubs_epi16(u[c * D], s[c * D]);
        for k in 1..D {
            p = _mm256_add_epi16(p, _mm256_maddubs_epi16(u[c * D + k], s[c * D + k]));
        }
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, sc));
    }
    acc
}

/// [`gdot_avx2`] with VNNI: an exact i32 `vpdpbusd` chain, then one `vpmulld` by the
/// scales of [`scale_vnni`] (`D` is unused).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2")]
#[inline]
fn gdot_vnni<const K: usize, const D: usize>(
    acc: __m256i,
    u: &[__m256i; K],
    s: &[__m256i; K],
    sc: __m256i,
) -> __m256i {
    // Two chains halve the dependency latency of the accumulating `vpdpbusd`s.
    let z = _mm256_setzero_si256();
    let (mut a, mut b) = (z, z);
    for k in (0..K).step_by(2) {
        a = dot4_vnni(a, u[k], s[k]);
        b = dot4_vnni(b, u[k + 1], s[k + 1]);
    }
    _mm256_add_epi32(acc, _mm256_mullo_epi32(_mm256_add_epi32(a, b), sc))
}

/// Reads a tile's loop-carried f32 accumulator, which stays in memory: [`load_acc`] at
/// the start of a block's float steps, [`store_acc`] at their end, both volatile so that
/// LLVM keeps it there (a store-forwarded load and a store per block, cheap beside the
/// integer work). Kept in a register instead, the accumulator tied to a fused
/// multiply-add's destination across the loop led LLVM to schedule the quants loop far
/// worse (the activation broadcasts hoisted and spilled): the Q4_K and Q6_K tiles ran
/// 1.5x slower at four and eight tokens (AVX2, measured); separate multiplies and adds
/// did not do that, FMAs on values local to a block do not either.
#[target_feature(enable = "avx")]
#[inline]
fn load_acc(acc: &__m256) -> __m256 {
    // SAFETY: the pointer comes from a `&__m256`: valid and aligned.
    unsafe { (acc as *const __m256).read_volatile() }
}

/// Writes a tile's loop-carried f32 accumulator (see [`load_acc`]).
#[target_feature(enable = "avx")]
#[inline]
fn store_acc(acc: &mut __m256, v: __m256) {
    // SAFETY: the pointer comes from a `&mut __m256`: valid, aligned and not aliased.
    unsafe { (acc as *mut __m256).write_volatile(v) }
}

/// Stamps the k-quant tile kernels for one ISA: `$gdot` is the scaled group dot,
/// `$scale` the matching scale extraction, `$features` the target features (a superset
/// of AVX2 + FMA + F16C), `$token` the proof type.
macro_rules! x86_k_tiles {
    ($isa:ident, $token:ty, $features:literal, $gdot:ident, $scale:ident, $wide:literal) => {
        /// K-quant tile kernels for this ISA (see the module docs).
        pub mod $isa {
            use super::*;

            /// `N` tokens of Q4_K x Q8_K, in ggml's gemm order or, with `GEMV`, its gemv
            /// order (the block's whole integer sums, one fused multiply-add each).
            /// shapes: w: (nb,); x: (N, nb); out: (N, 8)
            #[target_feature(enable = $features)]
            #[inline]
            fn q4k_n<const N: usize, const GEMV: bool>(
                w: &[BlockQ4Kx8],
                x: &[BlockQ8K],
                out: &mut [f32],
            ) {
                let nb = w.len();
                let m4 = _mm256_set1_epi8(0xF);
                let xs: [&[BlockQ8K]; N] = std::array::from_fn(|n| &x[n * nb..(n + 1) * nb]);
                // ggml's two accumulators (`fma_q4k`) for each (row, token) lane, in
                // memory between blocks (`load_acc`).
                let mut acc = [_mm256_setzero_ps(); N];
                let mut accmin = [_mm256_setzero_ps(); N];
                for (b, wb) in w.iter().enumerate() {
                    let xb: [&BlockQ8K; N] = std::array::from_fn(|n| &xs[n][b]);
                    let ahead = BlockPrefetch::new(wb);
                    let (dw, dmw) = (f16x8(&wb.d), f16x8(&wb.dmin));
                    // fma_q4k's scale products w.d * x.d, rounded once.
                    let d: [__m256; N] =
                        std::array::from_fn(|n| _mm256_mul_ps(dw, _mm256_set1_ps(xb[n].d)));
                    // `acc` in registers for the block's four steps.
                    let mut acc_b: [__m256; N] = std::array::from_fn(|n| load_acc(&acc[n]));
                    // gemv: the block's exact scaled sum, over the four pairs.
                    let mut iblock = [_mm256_setzero_si256(); N];
                    // Chunks 8j..8j+8 hold weights 64j..64j+64: group 2j in the low
                    // nibbles, group 2j+1 in the high ones, pair j of the float order.
                    // Unrolled, so that each quarter's prefetches are at constant offsets.
                    macro_rules! quarter {
                        ($j:literal) => {{
                            let j = $j;
                            // The block's lines ahead a 32nd at a time (at most one line
                            // a part), not in one burst: eight parts a quarter, around
                            // each of its steps. Against sixteen parts (session 25, Zen 2,
                            // thin-LTO builds alternated, `woolly-run bench -p 0 -n 128
                            // -t 2`): TinyLlama tg128 37.26 -> 38.00 t/s (4 rounds, faster
                            // in each).
                            ahead.part::<32, { 8 * $j }>();
                            // The pair's exact scaled sums, per token.
                            let mut isum = [_mm256_setzero_si256(); N];
                            let sv = load16(&wb.scales[16 * j..]);
                            // Loaded again for the high nibbles (an L1 hit) rather than
                            // kept: AVX2 has sixteen registers for quants, scales and
                            // accumulators.
                            let q = || -> [__m256i; 8] {
                                std::array::from_fn(|i| load32(&wb.qs[32 * (8 * j + i)..]))
                            };
                            let lo = q().map(|v| _mm256_and_si256(v, m4));
                            ahead.part::<32, { 8 * $j + 1 }>();
                            let sc = $scale::<0>(sv);
                            ahead.part::<32, { 8 * $j + 2 }>();
                            for n in 0..N {
                                let xq = q32(&xb[n].qs, 64 * j);
                                let a: [__m256i; 8] = std::array::from_fn(|i| bcast4(xq, 4 * i));
                                isum[n] = $gdot::<8, 8>(isum[n], &lo, &a, sc);
                            }
                            ahead.part::<32, { 8 * $j + 3 }>();
                            let hi = q().map(|v| _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4));
                            ahead.part::<32, { 8 * $j + 4 }>();
                            let sc = $scale::<1>(sv);
                            ahead.part::<32, { 8 * $j + 5 }>();
                            for n in 0..N {
                                let xq = q32(&xb[n].qs, 64 * j + 32);
                                let a: [__m256i; 8] = std::array::from_fn(|i| bcast4(xq, 4 * i));
                                isum[n] = $gdot::<8, 8>(isum[n], &hi, &a, sc);
                            }
                            ahead.part::<32, { 8 * $j + 6 }>();
                            for n in 0..N {
                                if GEMV {
                                    iblock[n] = _mm256_add_epi32(iblock[n], isum[n]);
                                } else {
                                    // fma_q4k, pair j: acc = fma(isum, w.d * x.d, acc).
                                    let v = _mm256_cvtepi32_ps(isum[n]);
                                    acc_b[n] = _mm256_fmadd_ps(v, d[n], acc_b[n]);
                                }
                            }
                            ahead.part::<32, { 8 * $j + 7 }>();
                        }};
                    }
                    quarter!(0);
                    quarter!(1);
                    quarter!(2);
                    quarter!(3);
                    if GEMV {
                        // acc = fma(isum, w.d * x.d, acc), once per block.
                        for n in 0..N {
                            let v = _mm256_cvtepi32_ps(iblock[n]);
                            acc_b[n] = _mm256_fmadd_ps(v, d[n], acc_b[n]);
                        }
                    }
                    for n in 0..N {
                        store_acc(&mut acc[n], acc_b[n]);
                    }
                    // Mins as i16 pairs (m[2j], m[2j+1]) per row lane, against the 32-weight
                    // sums bsums[2g] + bsums[2g+1] (|.| <= 4096) paired the same way.
                    let mins: [__m256i; 4] =
                        std::array::from_fn(|j| _mm256_cvtepu8_epi16(load16(&wb.mins[16 * j..])));
                    for n in 0..N {
                        // i32 elements 0, 1, 4, 5 of `h`: the group pairs (0,1) .. (6,7).
                        let bs = load32(&xb[n].bsums);
                        let h = _mm256_hadd_epi16(bs, bs);
                        let pair = |e: i32| _mm256_permutevar8x32_epi32(h, _mm256_set1_epi32(e));
                        // fma_q4k: accmin = fma(imin, w.dmin * x.d, accmin), pair by pair.
                        let dmin = _mm256_mul_ps(dmw, _mm256_set1_ps(xb[n].d));
                        let mut m = load_acc(&accmin[n]);
                        if GEMV {
                            // accmin = fma(imin, w.dmin * x.d, accmin), the block's whole sum.
                            let imin = [0, 1, 4, 5]
                                .into_iter()
                                .enumerate()
                                .map(|(j, e)| _mm256_madd_epi16(mins[j], pair(e)))
                                .fold(_mm256_setzero_si256(), |a, b| _mm256_add_epi32(a, b));
                            m = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin), dmin, m);
                        } else {
                            for (j, e) in [0, 1, 4, 5].into_iter().enumerate() {
                                let imin = _mm256_cvtepi32_ps(_mm256_madd_epi16(mins[j], pair(e)));
                                m = _mm256_fmadd_ps(imin, dmin, m);
                            }
                        }
                        store_acc(&mut accmin[n], m);
                    }
                }
                for n in 0..N {
                    store8(&mut out[n * ROWS..], _mm256_sub_ps(acc[n], accmin[n]));
                }
            }

            /// The 6-bit quants (0..64) of weights `128h + 32Q + 4i..+4` of each row,
            /// `i0 <= i < i0 + 4` (one 16-weight group): `ql` nibbles (low for Q < 2)
            /// with `qh` bits `2Q..2Q+2` on top.
            #[target_feature(enable = $features)]
            #[inline]
            pub(in crate::ops::qtile) fn q6k_quants<const Q: usize>(
                wb: &BlockQ6Kx8,
                h: usize,
                i0: usize,
            ) -> [__m256i; 4] {
                let m4 = _mm256_set1_epi8(0xF);
                let m30 = _mm256_set1_epi8(0x30);
                std::array::from_fn(|i| {
                    let l = load32(&wb.ql[32 * (16 * h + 8 * (Q % 2) + i0 + i)..]);
                    let hb = load32(&wb.qh[32 * (8 * h + i0 + i)..]);
                    let low = if Q < 2 {
                        _mm256_and_si256(l, m4)
                    } else {
                        _mm256_and_si256(_mm256_srli_epi16::<4>(l), m4)
                    };
                    // Bits 2Q..2Q+2 moved to 4..6 (16-bit shifts: the bits crossing
                    // into the neighbouring byte are masked off).
                    let high = match Q {
                        0 => _mm256_slli_epi16::<4>(hb),
                        1 => _mm256_slli_epi16::<2>(hb),
                        2 => hb,
                        _ => _mm256_srli_epi16::<2>(hb),
                    };
                    _mm256_or_si256(low, _mm256_and_si256(high, m30))
                })
            }

            /// `N` tokens of Q6_K x Q8_K.   shapes: w: (nb,); x: (N, nb); out: (N, 8)
            #[target_feature(enable = $features)]
            #[inline]
            fn q6k_n<const N: usize>(w: &[BlockQ6Kx8], x: &[BlockQ8K], out: &mut [f32]) {
                let nb = w.len();
                let xs: [&[BlockQ8K]; N] = std::array::from_fn(|n| &x[n * nb..(n + 1) * nb]);
                // In memory between blocks (`load_acc`).
                let mut sum = [_mm256_setzero_ps(); N];
                for (b, wb) in w.iter().enumerate() {
                    let xb: [&BlockQ8K; N] = std::array::from_fn(|n| &xs[n][b]);
                    let mut isum = [_mm256_setzero_si256(); N];
                    // One 16-weight group g at a time (four vectors, so that AVX2's
                    // sixteen registers hold them, the scales and four accumulators).
                    let mut group = |g: usize, u: [__m256i; 4], sc: __m256i| {
                        for n in 0..N {
                            let xq = q32(&xb[n].qs, 32 * (g / 2));
                            let a: [__m256i; 4] =
                                std::array::from_fn(|i| bcast4(xq, 16 * (g % 2) + 4 * i));
                            isum[n] = $gdot::<4, 2>(isum[n], &u, &a, sc);
                        }
                    };
                    let ahead = BlockPrefetch::new(wb);
                    // Weights 128h + 32q..+32 are groups 2j, 2j+1 with j = 4h + q; unrolled,
                    // so that each group's prefetches are at constant offsets.
                    macro_rules! quarter {
                        ($h:literal, $q:literal) => {{
                            const J: usize = 4 * $h + $q;
                            let sv = load16(&wb.scales[16 * J..]);
                            // About a line ahead per half group: longer bursts were slower.
                            ahead.part::<32, { 4 * J }>();
                            let u = q6k_quants::<$q>(wb, $h, 0);
                            ahead.part::<32, { 4 * J + 1 }>();
                            group(2 * J, u, $scale::<0>(sv));
                            ahead.part::<32, { 4 * J + 2 }>();
                            let u = q6k_quants::<$q>(wb, $h, 4);
                            ahead.part::<32, { 4 * J + 3 }>();
                            group(2 * J + 1, u, $scale::<1>(sv));
                        }};
                    }
                    quarter!(0, 0);
                    quarter!(0, 1);
                    quarter!(0, 2);
                    quarter!(0, 3);
                    quarter!(1, 0);
                    quarter!(1, 1);
                    quarter!(1, 2);
                    quarter!(1, 3);
                    // The -32 offset: 32 * sum_g sc[g] * bsums[g], with the scales as i16
                    // pairs (sc[2j], sc[2j+1]) per row lane against bsums' pair j.
                    let dw = f16x8(&wb.d);
                    for n in 0..N {
                        let bs = load32(&xb[n].bsums);
                        let mut off = _mm256_setzero_si256();
                        for j in 0..8 {
                            let sc = _mm256_cvtepi8_epi16(load16(&wb.scales[16 * j..]));
                            let pair = _mm256_permutevar8x32_epi32(bs, _mm256_set1_epi32(j as i32));
                            off = _mm256_add_epi32(off, _mm256_madd_epi16(sc, pair));
                        }
                        let isum = _mm256_sub_epi32(isum[n], _mm256_slli_epi32::<5>(off));
                        // fma_q6k: fma(isum * w.d, x.d, sum), the product rounded once.
                        let v = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), dw);
                        let s = _mm256_fmadd_ps(v, _mm256_set1_ps(xb[n].d), load_acc(&sum[n]));
                        store_acc(&mut sum[n], s);
                    }
                }
                for (n, s) in sum.into_iter().enumerate() {
                    store8(&mut out[n * ROWS..], s);
                }
            }

            /// Q4_K rows x Q8_K activations, bit-identical to
            /// [`crate::reference::quant_tile::tile_q4k_q8k`].
            /// shapes: w: (nb,); x: (T, nb); out: (T, 8)
            ///
            /// # Safety
            /// Safe to call from code compiled with the same features; elsewhere the
            /// caller must know the CPU has them (the token argument proves it).
            #[target_feature(enable = $features)]
            pub fn tile_q4k_q8k<const T: usize>(
                _: $token,
                w: &[BlockQ4Kx8],
                x: &[BlockQ8K],
                out: &mut [f32],
            ) {
                tiles(w.len(), x, out, (T, $wide), |x, out| {
                    match x.len() / w.len().max(1) {
                        8 => q4k_n::<8, false>(w, x, out),
                        4 => q4k_n::<4, false>(w, x, out),
                        _ => q4k_n::<1, false>(w, x, out),
                    }
                });
            }

            /// Q4_K rows x Q8_K activations in ggml's gemv order, bit-identical to
            /// [`crate::reference::quant_tile::tile_q4k_q8k_gemv`].
            /// shapes: w: (nb,); x: (T, nb); out: (T, 8)
            ///
            /// # Safety
            /// Safe to call from code compiled with the same features; elsewhere the
            /// caller must know the CPU has them (the token argument proves it).
            #[target_feature(enable = $features)]
            pub fn tile_q4k_q8k_gemv<const T: usize>(
                _: $token,
                w: &[BlockQ4Kx8],
                x: &[BlockQ8K],
                out: &mut [f32],
            ) {
                tiles(w.len(), x, out, (T, $wide), |x, out| {
                    match x.len() / w.len().max(1) {
                        8 => q4k_n::<8, true>(w, x, out),
                        4 => q4k_n::<4, true>(w, x, out),
                        _ => q4k_n::<1, true>(w, x, out),
                    }
                });
            }

            /// One token against consecutive Q4_K row groups in ggml's gemv order,
            /// bit-identical to [`crate::reference::quant_tile::rows_q4k_q8k_gemv`].
            /// shapes: w: (groups * nb,); x: (nb,); out: (groups * 8,)
            ///
            /// # Safety
            /// Safe to call from code compiled with the same features; elsewhere the
            /// caller must know the CPU has them (the token argument proves it).
            #[target_feature(enable = $features)]
            pub fn rows_q4k_q8k_gemv(_: $token, w: &[BlockQ4Kx8], x: &[BlockQ8K], out: &mut [f32]) {
                for (wg, o) in crate::reference::quant_tile::group_runs(w, x, out) {
                    q4k_n::<1, true>(wg, x, o);
                }
            }

            /// One token against consecutive Q6_K row groups, bit-identical to
            /// [`crate::reference::quant_tile::rows_q6k_q8k`].
            /// shapes: w: (groups * nb,); x: (nb,); out: (groups * 8,)
            ///
            /// # Safety
            /// Safe to call from code compiled with the same features; elsewhere the
            /// caller must know the CPU has them (the token argument proves it).
            #[target_feature(enable = $features)]
            pub fn rows_q6k_q8k(_: $token, w: &[BlockQ6Kx8], x: &[BlockQ8K], out: &mut [f32]) {
                for (wg, o) in crate::reference::quant_tile::group_runs(w, x, out) {
                    q6k_n::<1>(wg, x, o);
                }
            }

            /// Q6_K rows x Q8_K activations, bit-identical to
            /// [`crate::reference::quant_tile::tile_q6k_q8k`].
            /// shapes: w: (nb,); x: (T, nb); out: (T, 8)
            ///
            /// # Safety
            /// Safe to call from code compiled with the same features; elsewhere the
            /// caller must know the CPU has them (the token argument proves it).
            #[target_feature(enable = $features)]
            pub fn tile_q6k_q8k<const T: usize>(
                _: $token,
                w: &[BlockQ6Kx8],
                x: &[BlockQ8K],
                out: &mut [f32],
            ) {
                tiles(w.len(), x, out, (T, $wide), |x, out| {
                    match x.len() / w.len().max(1) {
                        8 => q6k_n::<8>(w, x, out),
                        4 => q6k_n::<4>(w, x, out),
                        _ => q6k_n::<1>(w, x, out),
                    }
                });
            }
        }
    };
}

x86_k_tiles!(
    avx2,
    crate::isa::Avx2Token,
    "avx2,fma,f16c",
    gdot_avx2,
    scale_avx2,
    4
);
x86_k_tiles!(
    avx512,
    crate::isa::Avx512Token,
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    gdot_vnni,
    scale_vnni,
    8
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::Isa;
    use crate::quant::interleaved::pack_rows;
    use crate::quant::search::pack_scale_min_k4;
    use crate::quant::{Block, BlockQ4K, BlockQ6K};
    use crate::reference::quant_tile as r;

    /// A Q8_K block of all-`q` quants (with consistent `bsums`).
    fn q8k_all(q: i8) -> BlockQ8K {
        let mut x = BlockQ8K::ZERO;
        x.d = 0.5;
        x.qs = [q; 256];
        x.bsums = [16 * i16::from(q); 16];
        x
    }

    /// The bounds the i16 sums and the saturating `maddubs` rely on: largest quants,
    /// largest scales (Q6_K: -128), activations -128 and 127, on every ISA here.
    #[test]
    fn extreme_blocks_are_exact() {
        let mut w4 = BlockQ4K::ZERO;
        w4.d = half::f16::from_f32(0.25);
        w4.dmin = half::f16::from_f32(0.125);
        w4.scales = pack_scale_min_k4(&[63; 8], &[63; 8]);
        w4.qs = [0xFF; 128];
        let mut w6 = BlockQ6K::ZERO;
        w6.d = half::f16::from_f32(0.25);
        w6.ql = [0xFF; 128];
        w6.qh = [0xFF; 64];
        w6.scales = [-128; 16];
        let (p4, p6) = (pack_rows(&[w4; 16], 8), pack_rows(&[w6; 16], 8));
        for q in [-128i8, 127, -1] {
            let x = vec![q8k_all(q); 8];
            let (mut want4, mut want6, mut want4v) = ([0.0f32; 32], [0.0f32; 32], [0.0f32; 32]);
            r::tile_q4k_q8k(&p4, &x, &mut want4);
            r::tile_q4k_q8k_gemv(&p4, &x, &mut want4v);
            r::tile_q6k_q8k(&p6, &x, &mut want6);
            // Both groups of `p4` are the same rows: one tile of four tokens each.
            let mut want_pair = [0.0f32; 32];
            r::tile_q4k_q8k(&p4[..1], &x[..4], &mut want_pair);
            let mut want_pair6 = [0.0f32; 32];
            r::tile_q6k_q8k(&p6[..1], &x[..4], &mut want_pair6);
            for isa in Isa::available() {
                let mut got = [1.0f32; 32];
                super::super::tile_q4k_q8k::select(isa, &[4]).call(&p4, &x, &mut got);
                assert_eq!(got, want4, "{isa:?} q4k, q8 = {q}");
                super::super::tile_q4k_q8k_gemv::select(isa, &[4]).call(&p4, &x, &mut got);
                assert_eq!(got, want4v, "{isa:?} q4k gemv, q8 = {q}");
                super::super::tile_q6k_q8k::select(isa, &[4]).call(&p6, &x, &mut got);
                assert_eq!(got, want6, "{isa:?} q6k, q8 = {q}");
                let (mut got_a, mut got_b) = ([1.0f32; 32], [1.0f32; 32]);
                let pair = super::super::tile2_q4k_q8k::select(isa, &[]);
                let mut sums = [[0i16; 8]; 4];
                crate::quant::q8k_sums32(&x[..4], &mut sums);
                pair.call(&p4, &x[..4], &sums, &mut got_a, &mut got_b);
                assert_eq!(
                    (got_a, got_b),
                    (want_pair, want_pair),
                    "{isa:?} q4k pair, q8 = {q}"
                );
            }
        }
    }
}
