//! AVX-512 bodies of the two-group tiles
//! ([`super::tile2_q4k_q8k`](fn@super::tile2_q4k_q8k),
//! [`super::tile2_q6k_q8k`](fn@super::tile2_q6k_q8k),
//! [`super::tile2_q4_1_q8_1`](fn@super::tile2_q4_1_q8_1),
//! [`super::tile2_q8_0_q8_0`](fn@super::tile2_q8_0_q8_0)):
//! two eight-row groups `a` and `b` side by side in 512-bit vectors, lanes 0..8 the rows
//! of `a` and 8..16 those of `b`. Each half is assembled from the eight-row layout with
//! one `vinserti64x4` per quant vector, reused for every token of the tile; then one
//! broadcast of four activation quants and one `vpdpbusd` serve sixteen rows, twice the
//! work per instruction of the 256-bit bodies. Lane by lane they compute what the
//! eight-row bodies ([`super::x86`], [`super::x86_k`]) compute, in the same order:
//! bit-identical to the references. Q4_1 and Q8_0 are the exception: their entries run
//! the eight-row tile on each group in turn (see `pair_by_groups`).

use std::arch::x86_64::*;

use super::x86::{f16x8, load32, prefetch_ahead, store8};
use super::x86_k::{avx512, load16, q32, scale_vnni};
use crate::quant::interleaved::{BlockQ4_1x8, BlockQ8_0x8, ROWS};
use crate::quant::interleaved_k::{BlockQ4Kx8, BlockQ6Kx8};
use crate::quant::{BlockQ8_0, BlockQ8_0Unsigned, BlockQ8_1, BlockQ8K};

/// Stamps the public entry of a two-group tile: the token argument, the split of `w`
/// into the two groups and the token split of [`pair_tiles`] around `$body`, the
/// `N`-token body. With `$xp: $p` after the body, the entry also takes a slice prepared
/// from the activations once per product, one element per activation block, split by
/// token with them and passed to the body after `x`.
macro_rules! pair_entry {
    ($(#[$doc:meta])* $name:ident, $w:ty, $x:ty, $body:ident $(, $xp:ident: $p:ty)?) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// Safe to call from code compiled with the same features; elsewhere the caller
        /// must know the CPU has them (the token argument proves it).
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        pub fn $name(
            _: crate::isa::Avx512Token,
            w: &[$w],
            x: &[$x],
            $($xp: &[$p],)?
            out_a: &mut [f32],
            out_b: &mut [f32],
        ) {
            assert!(w.len().is_multiple_of(2), "two groups of blocks");
            $(assert_eq!($xp.len(), x.len(), "one prepared element per activation block");)?
            let (wa, wb) = w.split_at(w.len() / 2);
            pair_tiles(wa.len(), x, out_a, out_b, |r, oa, ob| {
                $(let $xp = &$xp[r.clone()];)?
                let x = &x[r];
                match x.len() / wa.len() {
                    8 => $body::<8>(wa, wb, x, $($xp,)? oa, ob),
                    4 => $body::<4>(wa, wb, x, $($xp,)? oa, ob),
                    _ => $body::<1>(wa, wb, x, $($xp,)? oa, ob),
                }
            });
        }
    };
}

/// `lo` in lanes 0..8, `hi` in lanes 8..16.
#[target_feature(enable = "avx512f,avx2")]
#[inline]
fn join(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// [`join`] for f32 lanes.
#[target_feature(enable = "avx512f,avx2")]
#[inline]
fn join_ps(lo: __m256, hi: __m256) -> __m512 {
    _mm512_castsi512_ps(join(_mm256_castps_si256(lo), _mm256_castps_si256(hi)))
}

/// Activation quants `q[i..i + 4]` broadcast to all sixteen 32-bit lanes.
#[target_feature(enable = "avx512f,avx2")]
#[inline]
fn bcast4_16(q: &[i8; 32], i: usize) -> __m512i {
    let b = &q[i..i + 4];
    _mm512_set1_epi32(i32::from_le_bytes([
        b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8,
    ]))
}

/// `s[i]` and `s[i + 1]` as one i32 broadcast to all sixteen lanes (a `vpbroadcastd`
/// from memory, which LLVM folds into the instruction that reads it).
#[target_feature(enable = "avx512f,avx2")]
#[inline]
fn bcast_i16_pair(s: &[i16], i: usize) -> __m512i {
    let (lo, hi) = (s[i] as u16 as u32, s[i + 1] as u16 as u32);
    _mm512_set1_epi32((lo | hi << 16) as i32)
}

/// `acc + sc * sum_k dot4(u[k], xq[i0 + 4k..i0 + 4k + 4])` per lane ([`gdot_vnni`]
/// on sixteen lanes, with the activations broadcast here).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
#[inline]
fn gdot16<const K: usize>(
    acc: __m512i,
    u: &[__m512i; K],
    xq: &[i8; 32],
    i0: usize,
    sc: __m512i,
) -> __m512i {
    let z = _mm512_setzero_si512();
    let (mut a, mut b) = (z, z);
    for k in (0..K).step_by(2) {
        a = _mm512_dpbusd_epi32(a, u[k], bcast4_16(xq, i0 + 4 * k));
        b = _mm512_dpbusd_epi32(b, u[k + 1], bcast4_16(xq, i0 + 4 * k + 4));
    }
    _mm512_add_epi32(acc, _mm512_mullo_epi32(_mm512_add_epi32(a, b), sc))
}

/// `N` tokens of both groups; `sums` holds each activation block's sums of 32 quants.
/// shapes: wa, wb: (nb,); x, sums: (N, nb); oa, ob: (N, 8)
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn q4k_pair_n<const N: usize>(
    wa: &[BlockQ4Kx8],
    wb: &[BlockQ4Kx8],
    x: &[BlockQ8K],
    sums: &[[i16; 8]],
    oa: &mut [f32],
    ob: &mut [f32],
) {
    let nb = wa.len();
    let m4 = _mm512_set1_epi8(0xF);
    assert_eq!(sums.len(), x.len(), "sums for each activation block");
    let xs: [&[BlockQ8K]; N] = std::array::from_fn(|n| &x[n * nb..(n + 1) * nb]);
    let ss: [&[[i16; 8]]; N] = std::array::from_fn(|n| &sums[n * nb..(n + 1) * nb]);
    // ggml's two accumulators (`fma_q4k`) per (row, token) lane, as in the eight-row body.
    let mut acc = [_mm512_setzero_ps(); N];
    let mut accmin = [_mm512_setzero_ps(); N];
    for (b, (ba, bb)) in wa.iter().zip(wb).enumerate() {
        prefetch_ahead(ba);
        prefetch_ahead(bb);
        let xb: [&BlockQ8K; N] = std::array::from_fn(|n| &xs[n][b]);
        let dw = join_ps(f16x8(&ba.d), f16x8(&bb.d));
        let dmw = join_ps(f16x8(&ba.dmin), f16x8(&bb.dmin));
        // fma_q4k's scale products w.d * x.d, rounded once.
        let d: [__m512; N] = std::array::from_fn(|n| _mm512_mul_ps(dw, _mm512_set1_ps(xb[n].d)));
        // Chunk j: groups 2j and 2j + 1, pair j of the float order.
        for j in 0..4 {
            // The pair's exact scaled sums, per token.
            let mut isum = [_mm512_setzero_si512(); N];
            let (sa, sb) = (load16(&ba.scales[16 * j..]), load16(&bb.scales[16 * j..]));
            // Loaded again for the high nibbles (L1 hits), as in the eight-row body.
            let q = || -> [__m512i; 8] {
                std::array::from_fn(|i| {
                    let c = 32 * (8 * j + i);
                    join(load32(&ba.qs[c..]), load32(&bb.qs[c..]))
                })
            };
            let lo = q().map(|v| _mm512_and_si512(v, m4));
            let sc = join(scale_vnni::<0>(sa), scale_vnni::<0>(sb));
            for n in 0..N {
                isum[n] = gdot16(isum[n], &lo, q32(&xb[n].qs, 64 * j), 0, sc);
            }
            let hi = q().map(|v| _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4));
            let sc = join(scale_vnni::<1>(sa), scale_vnni::<1>(sb));
            for n in 0..N {
                isum[n] = gdot16(isum[n], &hi, q32(&xb[n].qs, 64 * j + 32), 0, sc);
            }
            // fma_q4k, pair j: acc = fma(isum, w.d * x.d, acc).
            for n in 0..N {
                acc[n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[n]), d[n], acc[n]);
            }
        }
        // Mins as i16 pairs per row lane, against the 32-weight activation sums, as
        // in the eight-row body.
        let mins: [__m512i; 4] = std::array::from_fn(|j| {
            join(
                _mm256_cvtepu8_epi16(load16(&ba.mins[16 * j..])),
                _mm256_cvtepu8_epi16(load16(&bb.mins[16 * j..])),
            )
        });
        for n in 0..N {
            // Sub-blocks 2j and 2j + 1: their mins against their sums (a broadcast from
            // memory), the pair's exact `imin`; then fma_q4k: accmin = fma(imin,
            // w.dmin * x.d, accmin), pair by pair.
            let s = &ss[n][b];
            let dmin = _mm512_mul_ps(dmw, _mm512_set1_ps(xb[n].d));
            for (j, m) in mins.iter().enumerate() {
                let imin = _mm512_madd_epi16(*m, bcast_i16_pair(s, 2 * j));
                accmin[n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(imin), dmin, accmin[n]);
            }
        }
    }
    let sum: [__m512; N] = std::array::from_fn(|n| _mm512_sub_ps(acc[n], accmin[n]));
    store_halves(&sum, oa, ob);
}

/// `N` tokens of both Q6_K groups.   shapes: wa, wb: (nb,); x: (N, nb); oa, ob: (N, 8)
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn q6k_pair_n<const N: usize>(
    wa: &[BlockQ6Kx8],
    wb: &[BlockQ6Kx8],
    x: &[BlockQ8K],
    oa: &mut [f32],
    ob: &mut [f32],
) {
    let nb = wa.len();
    let xs: [&[BlockQ8K]; N] = std::array::from_fn(|n| &x[n * nb..(n + 1) * nb]);
    let mut sum = [_mm512_setzero_ps(); N];
    for (b, (ba, bb)) in wa.iter().zip(wb).enumerate() {
        prefetch_ahead(ba);
        prefetch_ahead(bb);
        let xb: [&BlockQ8K; N] = std::array::from_fn(|n| &xs[n][b]);
        let mut isum = [_mm512_setzero_si512(); N];
        // One 16-weight group g of both row groups at a time.
        let mut group = |g: usize, ua: [__m256i; 4], ub: [__m256i; 4], sc: __m512i| {
            let u: [__m512i; 4] = std::array::from_fn(|i| join(ua[i], ub[i]));
            for n in 0..N {
                let xq = q32(&xb[n].qs, 32 * (g / 2));
                isum[n] = gdot16(isum[n], &u, xq, 16 * (g % 2), sc);
            }
        };
        // Weights 128h + 32q..+32 are groups 2j, 2j+1 with j = 4h + q.
        for h in 0..2 {
            macro_rules! quarter {
                ($q:literal) => {{
                    let j = 4 * h + $q;
                    let sa = load16(&ba.scales[16 * j..]);
                    let sb = load16(&bb.scales[16 * j..]);
                    let sc0 = join(scale_vnni::<0>(sa), scale_vnni::<0>(sb));
                    let sc1 = join(scale_vnni::<1>(sa), scale_vnni::<1>(sb));
                    let (qa, qb) = (
                        avx512::q6k_quants::<$q>(ba, h, 0),
                        avx512::q6k_quants::<$q>(bb, h, 0),
                    );
                    group(2 * j, qa, qb, sc0);
                    let (qa, qb) = (
                        avx512::q6k_quants::<$q>(ba, h, 4),
                        avx512::q6k_quants::<$q>(bb, h, 4),
                    );
                    group(2 * j + 1, qa, qb, sc1);
                }};
            }
            quarter!(0);
            quarter!(1);
            quarter!(2);
            quarter!(3);
        }
        // The -32 offset, as in the eight-row body: 32 * sum_g sc[g] * bsums[g].
        let scs: [__m512i; 8] = std::array::from_fn(|j| {
            join(
                _mm256_cvtepi8_epi16(load16(&ba.scales[16 * j..])),
                _mm256_cvtepi8_epi16(load16(&bb.scales[16 * j..])),
            )
        });
        let dw = join_ps(f16x8(&ba.d), f16x8(&bb.d));
        for n in 0..N {
            // Each pair of 16-quant sums broadcast straight from memory into
            // `vpdpwssd` (i16 pairs multiplied and added to i32 lanes, exact here as in
            // `madd` + `add`): no shuffles on the port the dot products need.
            let mut off = _mm512_setzero_si512();
            for (j, sc) in scs.iter().enumerate() {
                off = _mm512_dpwssd_epi32(off, *sc, bcast_i16_pair(&xb[n].bsums, 2 * j));
            }
            let isum = _mm512_sub_epi32(isum[n], _mm512_slli_epi32::<5>(off));
            // fma_q6k: fma(isum * w.d, x.d, sum), the product rounded once.
            let v = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), dw);
            sum[n] = _mm512_fmadd_ps(v, _mm512_set1_ps(xb[n].d), sum[n]);
        }
    }
    store_halves(&sum, oa, ob);
}

/// Stores lanes 0..8 of each token's vector to `oa`, lanes 8..16 to `ob`.
#[target_feature(enable = "avx512f,avx2")]
#[inline]
fn store_halves<const N: usize>(sum: &[__m512; N], oa: &mut [f32], ob: &mut [f32]) {
    for (n, s) in sum.iter().enumerate() {
        let halves = _mm512_castps_si512(*s);
        let lo = _mm512_castsi512_si256(halves);
        let hi = _mm512_extracti64x4_epi64::<1>(halves);
        store8(&mut oa[n * ROWS..], _mm256_castsi256_ps(lo));
        store8(&mut ob[n * ROWS..], _mm256_castsi256_ps(hi));
    }
}

/// Runs `f(tokens, out_a, out_b)` over the tokens of a two-group call in tiles of 8,
/// 4 and 1 tokens, after checking the shapes (`nb` super-blocks per group).
#[inline(always)]
fn pair_tiles<X>(
    nb: usize,
    x: &[X],
    out_a: &mut [f32],
    out_b: &mut [f32],
    mut f: impl FnMut(std::ops::Range<usize>, &mut [f32], &mut [f32]),
) {
    assert_eq!(out_a.len(), out_b.len(), "outputs of one shape");
    let n_tok = out_a.len() / ROWS;
    assert_eq!(out_a.len(), n_tok * ROWS, "out holds whole tokens");
    assert_eq!(x.len(), n_tok * nb, "x holds n_tok rows of nb blocks");
    if nb == 0 {
        out_a.fill(0.0);
        out_b.fill(0.0);
        return;
    }
    let mut t = 0;
    for width in [8, 4, 1] {
        while n_tok - t >= width {
            let oa = &mut out_a[t * ROWS..(t + width) * ROWS];
            let ob = &mut out_b[t * ROWS..(t + width) * ROWS];
            f(t * nb..(t + width) * nb, oa, ob);
            t += width;
        }
    }
}

pair_entry!(
    /// Two consecutive Q6_K row groups x Q8_K activations, bit-identical to
    /// [`crate::reference::quant_tile::tile2_q6k_q8k`].
    /// shapes: w: (2 * nb,); x: (T, nb); out_a, out_b: (T, 8)
    tile2_q6k_q8k,
    BlockQ6Kx8,
    BlockQ8K,
    q6k_pair_n
);

pair_entry!(
    /// Two consecutive Q4_K row groups x Q8_K activations, bit-identical to
    /// [`crate::reference::quant_tile::tile2_q4k_q8k`]; `xs` holds each activation
    /// block's sums of 32 quants ([`crate::quant::q8k_sums32`]).
    /// shapes: w: (2 * nb,); x, xs: (T, nb); out_a, out_b: (T, 8)
    tile2_q4k_q8k,
    BlockQ4Kx8,
    BlockQ8K,
    q4k_pair_n,
    xs: [i16; 8]
);

/// Stamps a two-group entry of a legacy format that runs the eight-row AVX-512 tile
/// (`$tile`, [`super::x86`]) on each group in turn, the prepared slice `$xp` unread.
///
/// Q4_1 and Q8_0 keep ggml's x86 float order ([`crate::reference::quant_dot`]): nine
/// accumulators per token and eight rows, which as sixteen-row 512-bit vectors would be
/// float code that only an AVX-512 host could test. The eight-row tile's float code is
/// the AVX2 tile's, which every x86 host tests, and its integers (`vpdpbusd`) are exact,
/// so this is bit-identical to the reference by construction.
macro_rules! pair_by_groups {
    ($(#[$doc:meta])* $name:ident, $w:ty, $x:ty, $tile:path, $xp:ident: $p:ty) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// Safe to call from code compiled with the same features; elsewhere the caller
        /// must know the CPU has them (the token argument proves it).
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        pub fn $name(
            t: crate::isa::Avx512Token,
            w: &[$w],
            x: &[$x],
            $xp: &[$p],
            out_a: &mut [f32],
            out_b: &mut [f32],
        ) {
            assert!(w.len().is_multiple_of(2), "two groups of blocks");
            assert_eq!($xp.len(), x.len(), "one prepared element per activation block");
            let (wa, wb) = w.split_at(w.len() / 2);
            $tile(t, wa, x, out_a);
            $tile(t, wb, x, out_b);
        }
    };
}

pair_by_groups!(
    /// Two consecutive Q4_1 row groups x Q8_1 activations, bit-identical to
    /// [`crate::reference::quant_tile::tile2_q4_1_q8_1`]: the eight-row tile on each
    /// group (see `pair_by_groups`). `xf` (each activation block's `d` and `s` as f32,
    /// [`crate::quant::q8_1_scales_f32`]) is not read.
    /// shapes: w: (2 * nb,); x, xf: (T, nb); out_a, out_b: (T, 8)
    tile2_q4_1_q8_1,
    BlockQ4_1x8,
    BlockQ8_1,
    super::x86::avx512::tile_q4_1_q8_1::<0>,
    xf: [f32; 2]
);

pair_by_groups!(
    /// Two consecutive Q8_0 row groups x Q8_0 activations, bit-identical to
    /// [`crate::reference::quant_tile::tile2_q8_0_q8_0`] for activation quants in
    /// -127..=127: the eight-row tile on each group (see `pair_by_groups`). `xu` (the
    /// activation blocks made unsigned, [`crate::quant::q8_0_unsigned`]) is not read.
    /// shapes: w: (2 * nb,); x, xu: (T, nb); out_a, out_b: (T, 8)
    tile2_q8_0_q8_0,
    BlockQ8_0x8,
    BlockQ8_0,
    super::x86::avx512::tile_q8_0_q8_0::<0>,
    xu: BlockQ8_0Unsigned
);

#[cfg(test)]
mod tests {
    use crate::isa::Isa;
    use crate::quant::interleaved::pack_rows;
    use crate::quant::{Block, BlockQ8_0, BlockQ8_0Unsigned, q8_0_unsigned};
    use crate::reference::quant_tile as r;

    /// Weight bytes at both extremes (-128, which the quantizers never write, and 127)
    /// against activation quants at both ends of what they write (-127..=127) give the
    /// reference's integers (the eight-row tiles' `|w| * sign(x, w)` is exact there).
    #[test]
    fn q8_0_pair_is_exact_at_the_byte_extremes() {
        for (wq, xq) in [(-128i8, -127i8), (-128, 127), (127, -127), (127, 127)] {
            let mut w = BlockQ8_0::ZERO;
            w.d = half::f16::from_f32(0.5);
            w.qs = [wq; 32];
            let mut x = BlockQ8_0::ZERO;
            x.d = half::f16::from_f32(0.25);
            x.qs = [xq; 32];
            let p = pack_rows(&[w; 16], 8);
            let xs = vec![x; 5];
            let mut xu = vec![BlockQ8_0Unsigned::ZERO; 5];
            q8_0_unsigned(&xs, &mut xu);
            let (mut want_a, mut want_b) = ([0.0f32; 40], [0.0f32; 40]);
            r::tile2_q8_0_q8_0(&p, &xs, &xu, &mut want_a, &mut want_b);
            for isa in Isa::available() {
                let (mut a, mut b) = ([1.0f32; 40], [1.0f32; 40]);
                let pair = super::super::tile2_q8_0_q8_0::select(isa, &[]);
                pair.call(&p, &xs, &xu, &mut a, &mut b);
                assert_eq!((a, b), (want_a, want_b), "{isa:?}, w = {wq}, x = {xq}");
            }
        }
    }
}
