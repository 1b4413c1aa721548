//! References for the tile kernels over row-interleaved weights
//! ([`crate::quant::interleaved`]): eight weight rows against a few activation rows.
//!
//! Written as the obvious thing: unpack the eight rows and take each (token, row) dot
//! product with the reference dot of [`super::quant_dot`]. A fast tile kernel keeps one
//! row per lane and combines blocks in the same order, so it must agree **bit for bit**.

use crate::quant::interleaved::{BlockQ4_1x8, BlockQ8_0x8, Interleave, ROWS};
use crate::quant::interleaved_k::{BlockQ4Kx8, BlockQ6Kx8};
use crate::quant::{
    BlockQ4_1, BlockQ4K, BlockQ6K, BlockQ8_0, BlockQ8_0Unsigned, BlockQ8_1, BlockQ8K,
};

use super::quant_dot as qd;

/// `out[t * 8 + r] = dot(row r, token t)` with `dot` the reference dot of the format.
/// shapes: w: (nb,) interleaved blocks of 8 rows; x: (n_tok, nb); out: (n_tok, 8)
pub fn tile<B: Interleave, X>(w: &[B::X8], x: &[X], out: &mut [f32], dot: fn(&[B], &[X]) -> f32) {
    let nb = w.len();
    let n_tok = out.len() / ROWS;
    assert_eq!(out.len(), n_tok * ROWS, "out holds whole tokens");
    assert_eq!(x.len(), n_tok * nb, "x holds n_tok rows of nb blocks");
    let unpacked: Vec<[B; ROWS]> = w.iter().map(B::unpack).collect();
    for r in 0..ROWS {
        let row: Vec<B> = unpacked.iter().map(|b| b[r]).collect();
        for t in 0..n_tok {
            out[t * ROWS + r] = dot(&row, &x[t * nb..(t + 1) * nb]);
        }
    }
}

/// Q4_1 rows (interleaved) against Q8_1 activations; see [`tile`].
/// shapes: w: (nb,); x: (n_tok, nb); out: (n_tok, 8)
pub fn tile_q4_1_q8_1(w: &[BlockQ4_1x8], x: &[BlockQ8_1], out: &mut [f32]) {
    tile::<BlockQ4_1, _>(w, x, out, qd::vec_dot_q4_1_q8_1);
}

/// Q8_0 rows (interleaved) against Q8_0 activations; see [`tile`].
/// shapes: w: (nb,); x: (n_tok, nb); out: (n_tok, 8)
pub fn tile_q8_0_q8_0(w: &[BlockQ8_0x8], x: &[BlockQ8_0], out: &mut [f32]) {
    tile::<BlockQ8_0, _>(w, x, out, qd::vec_dot_q8_0_q8_0);
}

/// Q4_K rows (interleaved) against Q8_K activations; see [`tile`].
/// shapes: w: (nb,) super-blocks of 8 rows; x: (n_tok, nb); out: (n_tok, 8)
pub fn tile_q4k_q8k(w: &[BlockQ4Kx8], x: &[BlockQ8K], out: &mut [f32]) {
    tile::<BlockQ4K, _>(w, x, out, qd::vec_dot_q4k_q8k);
}

/// Q4_K rows (interleaved) against Q8_K activations in ggml's gemv order
/// ([`qd::vec_dot_q4k_q8k_gemv`]); see [`tile`].
/// shapes: w: (nb,) super-blocks of 8 rows; x: (n_tok, nb); out: (n_tok, 8)
pub fn tile_q4k_q8k_gemv(w: &[BlockQ4Kx8], x: &[BlockQ8K], out: &mut [f32]) {
    tile::<BlockQ4K, _>(w, x, out, qd::vec_dot_q4k_q8k_gemv);
}

/// Two consecutive row groups of Q4_K (`w` holds group `a`'s `nb` super-blocks, then
/// group `b`'s) against Q8_K activations: [`tile_q4k_q8k`] of each group. `xs` holds
/// each activation block's sums of 32 quants ([`crate::quant::q8k_sums32`]); the
/// reference checks it against `x`.
/// shapes: w: (2 * nb,); x, xs: (n_tok, nb); out_a, out_b: (n_tok, 8)
pub fn tile2_q4k_q8k(
    w: &[BlockQ4Kx8],
    x: &[BlockQ8K],
    xs: &[[i16; 8]],
    out_a: &mut [f32],
    out_b: &mut [f32],
) {
    let mut want = vec![[0i16; 8]; x.len()];
    crate::quant::q8k_sums32(x, &mut want);
    assert_eq!(xs, want, "xs holds the sums of x's runs of 32 quants");
    let (wa, wb) = w.split_at(w.len() / 2);
    tile_q4k_q8k(wa, x, out_a);
    tile_q4k_q8k(wb, x, out_b);
}

/// Q6_K rows (interleaved) against Q8_K activations; see [`tile`].
/// shapes: w: (nb,) super-blocks of 8 rows; x: (n_tok, nb); out: (n_tok, 8)
pub fn tile_q6k_q8k(w: &[BlockQ6Kx8], x: &[BlockQ8K], out: &mut [f32]) {
    tile::<BlockQ6K, _>(w, x, out, qd::vec_dot_q6k_q8k);
}

/// One token against consecutive row groups of Q4_K (`w` holds each group's `nb =
/// x.len()` super-blocks in turn) in ggml's gemv order: [`tile_q4k_q8k_gemv`] of each
/// group, group `g` into `out[8g..8g + 8]`.
/// shapes: w: (groups * nb,); x: (nb,); out: (groups * 8,)
pub fn rows_q4k_q8k_gemv(w: &[BlockQ4Kx8], x: &[BlockQ8K], out: &mut [f32]) {
    each_group(w, x, out, tile_q4k_q8k_gemv)
}

/// One token against consecutive row groups of Q4_1: [`tile_q4_1_q8_1`] of each group,
/// as [`rows_q4k_q8k_gemv`].
/// shapes: w: (groups * nb,); x: (nb,); out: (groups * 8,)
pub fn rows_q4_1_q8_1(w: &[BlockQ4_1x8], x: &[BlockQ8_1], out: &mut [f32]) {
    each_group(w, x, out, tile_q4_1_q8_1)
}

/// One token against consecutive row groups of Q8_0: [`tile_q8_0_q8_0`] of each group,
/// as [`rows_q4k_q8k_gemv`].
/// shapes: w: (groups * nb,); x: (nb,); out: (groups * 8,)
pub fn rows_q8_0_q8_0(w: &[BlockQ8_0x8], x: &[BlockQ8_0], out: &mut [f32]) {
    each_group(w, x, out, tile_q8_0_q8_0)
}

/// One token against consecutive row groups of Q6_K: [`tile_q6k_q8k`] of each group,
/// as [`rows_q4k_q8k_gemv`].
/// shapes: w: (groups * nb,); x: (nb,); out: (groups * 8,)
pub fn rows_q6k_q8k(w: &[BlockQ6Kx8], x: &[BlockQ8K], out: &mut [f32]) {
    each_group(w, x, out, tile_q6k_q8k)
}

/// `tile` on each row group of `w` (`x.len()` blocks each), one token, into the group's
/// eight outputs.
fn each_group<W, X>(w: &[W], x: &[X], out: &mut [f32], tile: fn(&[W], &[X], &mut [f32])) {
    for (wg, o) in group_runs(w, x, out) {
        tile(wg, x, o);
    }
}

/// Each row group's blocks of `w` (`x.len()` of them) with its eight outputs.
///
/// # Panics
/// When `x` is empty or the lengths disagree.
pub fn group_runs<'a, W, X>(
    w: &'a [W],
    x: &[X],
    out: &'a mut [f32],
) -> impl Iterator<Item = (&'a [W], &'a mut [f32])> {
    let nb = x.len();
    assert!(nb > 0, "one token of activation blocks");
    assert_eq!(w.len() * 8, out.len() * nb, "eight outputs a row group");
    w.chunks_exact(nb).zip(out.chunks_exact_mut(8))
}

/// Two consecutive row groups of Q6_K (`w` holds group `a`'s `nb` super-blocks, then
/// group `b`'s) against Q8_K activations: [`tile_q6k_q8k`] of each group.
/// shapes: w: (2 * nb,); x: (n_tok, nb); out_a, out_b: (n_tok, 8)
pub fn tile2_q6k_q8k(w: &[BlockQ6Kx8], x: &[BlockQ8K], out_a: &mut [f32], out_b: &mut [f32]) {
    let (wa, wb) = w.split_at(w.len() / 2);
    tile_q6k_q8k(wa, x, out_a);
    tile_q6k_q8k(wb, x, out_b);
}

/// Two consecutive row groups of Q4_1 (`w` holds group `a`'s `nb` blocks, then group
/// `b`'s) against Q8_1 activations: [`tile_q4_1_q8_1`] of each group. `xf` holds each
/// activation block's `d` and `s` as f32 ([`crate::quant::q8_1_scales_f32`]); the
/// reference checks it against `x`.
/// shapes: w: (2 * nb,); x, xf: (n_tok, nb); out_a, out_b: (n_tok, 8)
pub fn tile2_q4_1_q8_1(
    w: &[BlockQ4_1x8],
    x: &[BlockQ8_1],
    xf: &[[f32; 2]],
    out_a: &mut [f32],
    out_b: &mut [f32],
) {
    let mut want = vec![[0.0; 2]; x.len()];
    crate::quant::q8_1_scales_f32(x, &mut want);
    assert_eq!(xf, want, "xf holds x's scales");
    let (wa, wb) = w.split_at(w.len() / 2);
    tile_q4_1_q8_1(wa, x, out_a);
    tile_q4_1_q8_1(wb, x, out_b);
}

/// Two consecutive row groups of Q8_0 (`w` holds group `a`'s `nb` blocks, then group
/// `b`'s) against Q8_0 activations: [`tile_q8_0_q8_0`] of each group. `xu` holds the
/// activation blocks made unsigned ([`crate::quant::q8_0_unsigned`]); the reference
/// checks it against `x`.
/// shapes: w: (2 * nb,); x, xu: (n_tok, nb); out_a, out_b: (n_tok, 8)
pub fn tile2_q8_0_q8_0(
    w: &[BlockQ8_0x8],
    x: &[BlockQ8_0],
    xu: &[BlockQ8_0Unsigned],
    out_a: &mut [f32],
    out_b: &mut [f32],
) {
    let mut want = vec![BlockQ8_0Unsigned::ZERO; x.len()];
    crate::quant::q8_0_unsigned(x, &mut want);
    assert_eq!(xu, want, "xu holds x made unsigned");
    let (wa, wb) = w.split_at(w.len() / 2);
    tile_q8_0_q8_0(wa, x, out_a);
    tile_q8_0_q8_0(wb, x, out_b);
}
