//! AVX2 and AVX-512 bodies of the tile kernels, stamped from one template
//! (`x86_tiles!`) that differs only in the 4-byte lane dot product: AVX2 multiplies
//! with `maddubs` then `madd` by ones, AVX-512 uses VNNI's `vpdpbusd` (on 256-bit
//! vectors: eight rows, one per i32 lane). Both are exact integer sums; everything else,
//! the float code in particular, is the same text in both, so the AVX2 tests check the
//! AVX-512 bodies' float operations too.
//!
//! Q4_1 and Q8_0 follow ggml's x86 float order, as their references
//! ([`crate::reference::quant_dot`]) do, with one row per lane: per token, eight f32
//! accumulators, vector `k` holding each row's accumulator `k`; per block, the exact sum
//! of the four products of weights `4k..4k + 4` (one i32 lane per row: `dot4` of chunk
//! `k` against four broadcast activation quants) is fused into vector `k` by `dw * dx`
//! (`fma_lanes`); at the end `hsum8_rows` adds the eight vectors in `hsum_float_8`'s
//! tree, lane by lane, and Q4_1 adds its `summs` vector, the blocks' `m * s` fused in
//! block order. The fused multiply-adds are elementwise, so each lane is the reference's
//! computation for its row: bit-identical results.
//!
//! The tiles make one pass over a row group's blocks per token (a tile of several
//! tokens makes several passes, the blocks coming from L1 again: a row group of a
//! 4096-column Q4_1 matrix is 20 KiB). A token's nine accumulators fill most of AVX2's
//! sixteen registers already; two tokens per pass, sharing the decoded weights, spilled
//! and ran slower (Zen 2, 1536 x 576, four tokens: Q4_1 106 us against 98 us; Q8_0 the
//! same), and so did two tokens in two passes over the low and high nibbles (107 us).
//! AVX-512 makes the same single-token passes, so that its float code is the code the
//! AVX2 tests run.
//!
//! Q8_0 weights are signed: the lane dot takes `|w|` (unsigned) times `sign(x, w)`,
//! exact for activation quants in -127..=127, which is all Woolly's quantizer writes (a
//! weight byte of -128 is handled: `|-128|` is 128 as an unsigned byte).

use std::arch::x86_64::*;

use crate::quant::interleaved::{BlockQ4_1x8, BlockQ8_0x8, ROWS};
use crate::quant::{BlockQ8_0, BlockQ8_1};

/// Loads 32 bytes from the start of `s`.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn load32<T: Copy>(s: &[T]) -> __m256i {
    assert!(size_of_val(s) >= 32);
    // SAFETY: the first 32 bytes of `s` are in bounds (checked); loadu needs no alignment.
    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
}

/// Eight f16 values as f32 lanes (exact).
#[target_feature(enable = "avx2,f16c")]
#[inline]
pub(super) fn f16x8(v: &[half::f16; ROWS]) -> __m256 {
    // SAFETY: `v` is 16 bytes; loadu needs no alignment.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(v.as_ptr().cast()) })
}

/// Two f16 values as f32 in lanes 0 and 1 (exact): one `vcvtph2ps` for both, where
/// `half`'s scalar conversion would test the CPU's features on every call.
#[target_feature(enable = "avx2,f16c")]
#[inline]
pub(super) fn f16_pair_lanes(a: half::f16, b: half::f16) -> __m128 {
    let bits = i32::from(a.to_bits()) | (i32::from(b.to_bits()) << 16);
    _mm_cvtph_ps(_mm_cvtsi32_si128(bits))
}

/// Two f16 values, each broadcast to eight f32 lanes (exact).
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn f16_pair(a: half::f16, b: half::f16) -> (__m256, __m256) {
    let v = f16_pair_lanes(a, b);
    (
        _mm256_broadcastss_ps(v),
        _mm256_broadcastss_ps(_mm_movehdup_ps(v)),
    )
}

/// How far ahead of the block being multiplied the tile kernels prefetch weights: about
/// eight K-quant blocks of eight rows. Packed matrices are one contiguous run of row
/// groups, so the prefetch also runs ahead into the next row group (and the next call).
/// 12 KiB against the former 6 KiB (session 11, a Xeon, 2 threads, interleaved rounds of
/// `woolly-run bench`): SmolLM2 tg128 346.6 -> 381.4 t/s and eight streams 955 -> 1037,
/// TinyLlama shape tg64 31.7 -> 34.6, pp512 unchanged; 24 KiB was no better, 3 KiB worse.
const PREFETCH_DISTANCE: usize = 12 << 10;

/// Prefetches into L2 (`prefetcht1`) a block's worth of bytes [`PREFETCH_DISTANCE`]
/// past `block`. Not into L1: a single-token product is bound by how many DRAM reads a
/// core keeps in flight, and on a Xeon with 28.7 GB/s of read bandwidth the L1 hint
/// held TinyLlama's decode to 23 t/s where the L2 hint gives 31 (2 threads, `woolly-run
/// bench -p 0 -n 32`, interleaved), with prompt processing and SmolLM2 (whose weights
/// fit in L3) unchanged. Prefetches are hints that never fault, whatever the address
/// (past the end of the matrix included).
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn prefetch_ahead<T>(block: &T) {
    let p = std::ptr::from_ref(block)
        .cast::<i8>()
        .wrapping_add(PREFETCH_DISTANCE);
    for l in (0..size_of::<T>()).step_by(64) {
        _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(l));
    }
}

/// [`prefetch_ahead`] spread over a block's work: the lines that start in the block's
/// bytes [`PREFETCH_DISTANCE`] ahead, requested a few at a time ([`Self::part`]) at
/// `PARTS` steps through the block's work.
///
/// A burst of prefetches fills the core's miss buffers and the loads behind it wait, so
/// the arithmetic stalls instead of overlapping the DRAM reads. On a Zen 2 host (AVX2,
/// session 19), issuing a K-quant block's lines a few at a time through its work rather
/// than all at its start took one thread's tiles, streaming from DRAM
/// (`WOOLLY_BENCH_MATRICES=40 cargo bench -p woolly-benches --bench qtile --
/// "q[46]k_4096x4096_T1/avx2/tile$"`, same hour), from 8.08 to 11.2-11.6 GiB/s (Q4_K, four
/// parts) and from 6.98 to 11.4-11.8 GiB/s (Q6_K, sixteen parts), and TinyLlama's decode
/// at 2 threads (`woolly-run bench -p 0 -n 128 -t 2`, alternated) by 24% and then, with
/// each line requested once, 4.5% more.
///
/// Each line is requested once: those whose start lies in the block's range, found once
/// per block ([`Self::new`]), so that each part is a few prefetches at constant offsets
/// (one instruction each; the parts' numbers are constants). Where the block's size is
/// not a multiple of 64 bytes the range holds one line more or less depending on where
/// it starts, and a missing last line repeats the first instead of branching. Covering
/// whole lines from each part's start instead, with lines requested twice where parts
/// or blocks share them, made Q6_K 20% slower from DRAM; an exact loop with branches
/// cost Q6_K a quarter of its speed from L2. Constant offsets instead of each part
/// finding its lines (session 20, the same host, a standalone loop over 379-538 MB of
/// packed tiles on 2 MiB pages, old and new alternated): Q6_K one thread from DRAM
/// 12.1-13.0 -> 13.4-14.3 GB/s, from L2 both tiles about 5% faster, Q4_K from DRAM
/// unchanged; TinyLlama tg128 at 2 threads 33.0 -> 34.1 t/s (`woolly-run bench -p 0 -n
/// 128 -t 2`, four rounds alternated). Q4_K in sixteen parts rather than four (session
/// 23, the same host, the qtile command above with 16 matrices, alternated): one thread
/// from DRAM 13.32-13.34 -> 13.51-13.68 GiB/s; then Q6_K in 32 parts rather than 16:
/// 14.38-14.58 -> 14.33-15.24 GiB/s (four runs each), TinyLlama tg128 at 2 threads
/// 39.9 -> 40.8 t/s (4 rounds alternated, faster in each).
#[derive(Clone, Copy)]
pub(super) struct BlockPrefetch<T> {
    /// The first line start at or after the block's start plus [`PREFETCH_DISTANCE`].
    first: *const i8,
    /// The block's last line, or `first` where its range holds only `FULL` lines.
    last: *const i8,
    _block: std::marker::PhantomData<T>,
}

impl<T> BlockPrefetch<T> {
    /// Line starts in any range of `size_of::<T>()` bytes, at most.
    const LINES: usize = size_of::<T>().div_ceil(64);
    /// Line starts in any such range, at least: the lines from `first` on that every
    /// block's range holds.
    const FULL: usize = size_of::<T>() / 64;

    /// The lines to prefetch for `block`. Only addresses are formed (wrapping), never
    /// dereferenced: prefetches are hints that never fault, past the end of the matrix
    /// included.
    #[inline(always)]
    pub(super) fn new(block: &T) -> Self {
        let start = std::ptr::from_ref(block).cast::<i8>();
        let ahead = (start as usize).wrapping_add(PREFETCH_DISTANCE);
        let lead = ahead.wrapping_neg() & 63;
        let first = start.wrapping_add(PREFETCH_DISTANCE + lead);
        // The range holds `FULL` line starts from `first` on, and one more where the
        // leading partial line and the tail leave room for it.
        let last = if Self::LINES > Self::FULL && lead + 64 * Self::FULL < size_of::<T>() {
            first.wrapping_add(64 * Self::FULL)
        } else {
            first
        };
        BlockPrefetch {
            first,
            last,
            _block: std::marker::PhantomData,
        }
    }

    /// What the `i`-th prefetch of part `part` of `parts` requests: the line at
    /// `Some(offset)` bytes from `first`, `None` for `last`. Parts take lines
    /// `part * LINES / parts..(part + 1) * LINES / parts`; `None` past a part's end.
    const fn slot(parts: usize, part: usize, i: usize) -> Option<Option<usize>> {
        let (from, to) = (part * Self::LINES / parts, (part + 1) * Self::LINES / parts);
        if from + i >= to {
            None
        } else if from + i < Self::FULL {
            Some(Some(64 * (from + i)))
        } else {
            Some(None)
        }
    }

    /// Prefetches into L2 (`prefetcht1`) part `PART` of `PARTS` of the block's lines
    /// (at most eight; see [`Self::slot`]).
    ///
    /// Each prefetch is an `asm!` block with a constant offset from one register, not
    /// `_mm_prefetch`: the compiler gathers those into one burst at the end of the
    /// block's work, and with computed addresses it kept them in spilled registers.
    #[inline(always)]
    pub(super) fn part<const PARTS: usize, const PART: usize>(self) {
        const {
            assert!(
                Self::LINES.div_ceil(PARTS) <= 8,
                "at most eight lines a part"
            )
        };
        macro_rules! line {
            ($i:literal) => {
                match const { Self::slot(PARTS, PART, $i) } {
                    // SAFETY (both): a prefetch never faults and has no architectural
                    // effect, whatever the address.
                    Some(Some(_)) => unsafe {
                        std::arch::asm!(
                            "prefetcht1 [{p} + {o}]",
                            p = in(reg) self.first,
                            o = const match Self::slot(PARTS, PART, $i) {
                                Some(Some(o)) => o,
                                _ => 0,
                            },
                            options(nostack, preserves_flags, readonly),
                        );
                    },
                    Some(None) => unsafe {
                        std::arch::asm!(
                            "prefetcht1 [{p}]",
                            p = in(reg) self.last,
                            options(nostack, preserves_flags, readonly),
                        );
                    },
                    None => {}
                }
            };
        }
        line!(0);
        line!(1);
        line!(2);
        line!(3);
        line!(4);
        line!(5);
        line!(6);
        line!(7);
    }

    /// The addresses [`Self::part`] requests for every part, in order (for tests).
    #[cfg(test)]
    pub(super) fn addresses(self, parts: usize) -> Vec<usize> {
        (0..parts)
            .flat_map(|part| (0..8).filter_map(move |i| Self::slot(parts, part, i)))
            .map(|slot| match slot {
                Some(o) => self.first as usize + o,
                None => self.last as usize,
            })
            .collect()
    }
}

/// Activation quants `q[i..i + 4]` broadcast to every 32-bit lane.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn bcast4(q: &[i8; 32], i: usize) -> __m256i {
    let b = &q[i..i + 4];
    _mm256_set1_epi32(i32::from_le_bytes([
        b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8,
    ]))
}

/// Stores the eight f32 lanes of `v` to `out[..8]`.
#[target_feature(enable = "avx")]
#[inline]
pub(super) fn store8(out: &mut [f32], v: __m256) {
    assert!(out.len() >= ROWS);
    // SAFETY: `out` has at least 8 floats (checked); storeu needs no alignment.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) }
}

/// `acc + sum_{i<4} u[4l + i] * s[4l + i]` in each i32 lane `l` (u unsigned, s signed),
/// with AVX2. `maddubs` saturates its 16-bit pair sums, which stay exact here because
/// every caller's unsigned operand is at most 128 (nibbles, or `|w|` of an i8), so a pair
/// sum lies in `[-32768, 32512]`.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn dot4_avx2(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(u, s);
    _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// [`dot4_avx2`] with VNNI's `vpdpbusd` (no intermediate rounding or saturation).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2")]
#[inline]
pub(super) fn dot4_vnni(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(acc, u, s)
}

/// `acc + d * p` in each lane, fused (one rounding), `p` converted exactly (|p| <= 2^16):
/// one step of [`crate::reference::quant_dot::fma_blocks`] for eight rows.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn fma_lanes(acc: &mut __m256, d: __m256, p: __m256i) {
    *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), *acc);
}

/// [`crate::reference::quant_dot::hsum8`] of eight rows' accumulators, lane by lane:
/// `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`.
#[target_feature(enable = "avx2")]
#[inline]
fn hsum8_rows(a: &[__m256; 8]) -> __m256 {
    let r: [__m256; 4] = std::array::from_fn(|i| _mm256_add_ps(a[i], a[i + 4]));
    _mm256_add_ps(_mm256_add_ps(r[0], r[2]), _mm256_add_ps(r[1], r[3]))
}

/// Stamps the tile kernels for one ISA: `$dot4` is the lane dot product, `$features`
/// the target features (a superset of AVX2 + FMA + F16C), `$token` the proof type.
macro_rules! x86_tiles {
    ($isa:ident, $token:ty, $features:literal, $dot4:ident) => {
        /// Tile kernels for this ISA (see the module docs).
        pub mod $isa {
            use super::*;

            /// One token of Q4_1 x Q8_1 in ggml's order (see the module docs).
            /// shapes: w: (nb,); x: (nb,); out: (8,)
            #[target_feature(enable = $features)]
            #[inline]
            fn q4_1_1(w: &[BlockQ4_1x8], x: &[BlockQ8_1], out: &mut [f32]) {
                assert_eq!(x.len(), w.len(), "one activation block per weight block");
                let m4 = _mm256_set1_epi8(0xF);
                let z = _mm256_setzero_si256();
                let mut acc = [_mm256_setzero_ps(); 8];
                let mut summs = _mm256_setzero_ps();
                for (wb, xb) in w.iter().zip(x) {
                    prefetch_ahead(wb);
                    let (dx, s) = f16_pair(xb.d, xb.s);
                    summs = _mm256_fmadd_ps(f16x8(&wb.m), s, summs);
                    let d = _mm256_mul_ps(f16x8(&wb.d), dx);
                    for k in 0..4 {
                        // Chunk k: low nibbles are weights 4k..4k+4, high ones 16+4k..20+4k.
                        let q = load32(&wb.qs[32 * k..]);
                        let lo = _mm256_and_si256(q, m4);
                        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                        fma_lanes(&mut acc[k], d, $dot4(z, lo, bcast4(&xb.qs, 4 * k)));
                        fma_lanes(&mut acc[4 + k], d, $dot4(z, hi, bcast4(&xb.qs, 16 + 4 * k)));
                    }
                }
                store8(out, _mm256_add_ps(hsum8_rows(&acc), summs));
            }

            /// One token of Q8_0 x Q8_0 in ggml's order (see the module docs).
            /// shapes: w: (nb,); x: (nb,); out: (8,)
            #[target_feature(enable = $features)]
            #[inline]
            fn q8_0_1(w: &[BlockQ8_0x8], x: &[BlockQ8_0], out: &mut [f32]) {
                assert_eq!(x.len(), w.len(), "one activation block per weight block");
                let z = _mm256_setzero_si256();
                let mut acc = [_mm256_setzero_ps(); 8];
                for (wb, xb) in w.iter().zip(x) {
                    prefetch_ahead(wb);
                    let dx = _mm256_broadcastss_ps(f16_pair_lanes(xb.d, xb.d));
                    let d = _mm256_mul_ps(f16x8(&wb.d), dx);
                    for (k, acc) in acc.iter_mut().enumerate() {
                        // Chunk k: weights 4k..4k+4 of each row.
                        let q = load32(&wb.qs[32 * k..]);
                        let s = _mm256_sign_epi8(bcast4(&xb.qs, 4 * k), q);
                        fma_lanes(acc, d, $dot4(z, _mm256_abs_epi8(q), s));
                    }
                }
                store8(out, hsum8_rows(&acc));
            }

            /// Q4_1 rows x Q8_1 activations, bit-identical to
            /// [`crate::reference::quant_tile::tile_q4_1_q8_1`].
            /// shapes: w: (nb,); x: (T, nb); out: (T, 8)
            ///
            /// # Safety
            /// Safe to call from code compiled with the same features; elsewhere the
            /// caller must know the CPU has them (the token argument proves it).
            #[target_feature(enable = $features)]
            pub fn tile_q4_1_q8_1<const T: usize>(
                _: $token,
                w: &[BlockQ4_1x8],
                x: &[BlockQ8_1],
                out: &mut [f32],
            ) {
                tiles(w.len(), x, out, (T, 1), |x, out| q4_1_1(w, x, out));
            }

            /// One token against consecutive Q4_1 row groups, bit-identical to
            /// [`crate::reference::quant_tile::rows_q4_1_q8_1`].
            /// shapes: w: (groups * nb,); x: (nb,); out: (groups * 8,)
            ///
            /// # Safety
            /// Safe to call from code compiled with the same features; elsewhere the
            /// caller must know the CPU has them (the token argument proves it).
            #[target_feature(enable = $features)]
            pub fn rows_q4_1_q8_1(_: $token, w: &[BlockQ4_1x8], x: &[BlockQ8_1], out: &mut [f32]) {
                for (wg, o) in crate::reference::quant_tile::group_runs(w, x, out) {
                    q4_1_1(wg, x, o);
                }
            }

            /// One token against consecutive Q8_0 row groups, bit-identical to
            /// [`crate::reference::quant_tile::rows_q8_0_q8_0`].
            /// shapes: w: (groups * nb,); x: (nb,); out: (groups * 8,)
            ///
            /// # Safety
            /// Safe to call from code compiled with the same features; elsewhere the
            /// caller must know the CPU has them (the token argument proves it).
            #[target_feature(enable = $features)]
            pub fn rows_q8_0_q8_0(_: $token, w: &[BlockQ8_0x8], x: &[BlockQ8_0], out: &mut [f32]) {
                for (wg, o) in crate::reference::quant_tile::group_runs(w, x, out) {
                    q8_0_1(wg, x, o);
                }
            }

            /// Q8_0 rows x Q8_0 activations, bit-identical to
            /// [`crate::reference::quant_tile::tile_q8_0_q8_0`].
            /// shapes: w: (nb,); x: (T, nb); out: (T, 8)
            ///
            /// # Safety
            /// Safe to call from code compiled with the same features; elsewhere the
            /// caller must know the CPU has them (the token argument proves it).
            #[target_feature(enable = $features)]
            pub fn tile_q8_0_q8_0<const T: usize>(
                _: $token,
                w: &[BlockQ8_0x8],
                x: &[BlockQ8_0],
                out: &mut [f32],
            ) {
                tiles(w.len(), x, out, (T, 1), |x, out| q8_0_1(w, x, out));
            }
        }
    };
}

/// Checks the shapes of a tile call (`t` = the specialized token count, 0 for any) and
/// runs `f` on groups of `wide` tokens (the body's widest: for the K-quants 8 with
/// AVX-512's 32 registers, 4 with AVX2's 16), then of four, then on single tokens.
/// shapes: x: (n_tok, nb); out: (n_tok, 8)
#[inline(always)]
pub(super) fn tiles<X>(
    nb: usize,
    x: &[X],
    out: &mut [f32],
    (t, wide): (usize, usize),
    mut f: impl FnMut(&[X], &mut [f32]),
) {
    let n_tok = out.len() / ROWS;
    assert!(
        t == 0 || t == n_tok,
        "tile specialized for {t} tokens called with {n_tok}"
    );
    assert_eq!(out.len(), n_tok * ROWS, "out holds whole tokens");
    assert_eq!(x.len(), n_tok * nb, "x holds n_tok rows of nb blocks");
    if nb == 0 {
        out.fill(0.0);
        return;
    }
    let (mut x, mut out) = (x, out);
    for width in [wide, 4, 1] {
        let n = n_tok_of(out) / width * width;
        let (xw, xr) = x.split_at(n * nb);
        let (ow, or) = out.split_at_mut(n * ROWS);
        for (x, o) in xw
            .chunks_exact(width * nb)
            .zip(ow.chunks_exact_mut(width * ROWS))
        {
            f(x, o);
        }
        (x, out) = (xr, or);
    }
}

/// Tokens in a tile's output.
#[inline(always)]
fn n_tok_of(out: &[f32]) -> usize {
    out.len() / ROWS
}

x86_tiles!(avx2, crate::isa::Avx2Token, "avx2,fma,f16c", dot4_avx2);
x86_tiles!(
    avx512,
    crate::isa::Avx512Token,
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    dot4_vnni
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line that starts in a block's bytes [`PREFETCH_DISTANCE`] ahead is requested
    /// once, whatever the block's alignment, and nothing else is, but the first line
    /// again where the block's range holds one line fewer.
    fn covers_each_line_once<const SIZE: usize>(parts: usize) {
        let buf = vec![0u8; 2 * SIZE + 128];
        for shift in 0..128 {
            // SAFETY: `shift + SIZE <= buf.len()`, and `[u8; SIZE]` has alignment 1.
            let block = unsafe { &*buf.as_ptr().add(shift).cast::<[u8; SIZE]>() };
            let ahead = block.as_ptr() as usize + PREFETCH_DISTANCE;
            let want: Vec<usize> = (ahead..ahead + SIZE).filter(|a| a % 64 == 0).collect();
            let pf = BlockPrefetch::new(block);
            let got = pf.addresses(parts);
            assert_eq!(got.len(), SIZE.div_ceil(64), "size {SIZE}, shift {shift}");
            let mut once = got.clone();
            once.sort_unstable();
            once.dedup();
            assert_eq!(once, want, "size {SIZE}, shift {shift}, {parts} parts");
            if want.len() < got.len() {
                assert_eq!(got.iter().filter(|&&a| a == want[0]).count(), 2);
            }
        }
    }

    #[test]
    fn block_prefetch_covers_each_line_once() {
        covers_each_line_once::<1184>(16);
        covers_each_line_once::<1680>(32);
        covers_each_line_once::<1152>(4);
        covers_each_line_once::<64>(1);
        covers_each_line_once::<100>(2);
    }
}
