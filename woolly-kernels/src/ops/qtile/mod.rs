//! Tile kernels: eight row-interleaved weight rows ([`crate::quant::interleaved`],
//! [`crate::quant::interleaved_k`]) against
//! `T` activation rows, the inner loop of both token generation (`T = 1`) and prompt
//! processing (`T = 4`: each weight block is decoded once for four tokens).
//!
//! Every output lane is one (row, token) dot product, combined block by block in the
//! order and with the f32 operations of [`crate::reference::quant_dot`], so each variant
//! agrees with [`crate::reference::quant_tile`] **bit for bit** (`tolerance = exact()`),
//! and a token's result does not depend on the tile it was computed in (DECISIONS.md,
//! "Determinism across batching").
//!
//! Tile shapes are the kernel dimension `T` (tokens per call): `T = 1` and `T = 4` are
//! specialized (the loops over tokens unroll), `dyn_` takes any count. The scalar and
//! NEON variants run the reference; AVX2 and AVX-512 (VNNI) have hand-written bodies.

use woolly_kernels_macros::kernel;

use crate::quant::interleaved::{BlockQ4_1x8, BlockQ8_0x8};
use crate::quant::interleaved_k::{BlockQ4Kx8, BlockQ6Kx8};
use crate::quant::{BlockQ8_0, BlockQ8_0Unsigned, BlockQ8_1, BlockQ8K};
use crate::reference::quant_tile as r;
use crate::simd::Simd;

#[cfg(target_arch = "x86_64")]
pub mod x86;
#[cfg(target_arch = "x86_64")]
pub mod x86_k;
#[cfg(target_arch = "x86_64")]
pub mod x86_pair;

/// Q4_1 rows x Q8_1 activations: `out[t * 8 + r] = dot(row r, token t)`.
/// shapes: w: (nb,) blocks of 8 rows; x: (T, nb); out: (T, 8)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(T = [1, 4], dyn),
    reference = r::tile_q4_1_q8_1,
    tolerance = exact(),
    override(avx2 = x86::avx2::tile_q4_1_q8_1, avx512 = x86::avx512::tile_q4_1_q8_1),
    test(
        w = { let nb = rng.range(1, 40); rng.q4_1x8(nb) },
        x = { let t = if T == 0 { rng.range(1, 11) } else { T }; rng.q8_1_act(t * w.len()) },
        out = rng.f32s(x.len() / w.len() * 8),
    ),
)]
pub fn tile_q4_1_q8_1<V: Simd, const T: usize>(
    v: V,
    w: &[BlockQ4_1x8],
    x: &[BlockQ8_1],
    out: &mut [f32],
) {
    let _ = v;
    crate::dim::<T>(out.len() / 8);
    r::tile_q4_1_q8_1(w, x, out)
}

/// Q8_0 rows x Q8_0 activations: `out[t * 8 + r] = dot(row r, token t)`.
/// shapes: w: (nb,) blocks of 8 rows; x: (T, nb); out: (T, 8)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(T = [1, 4], dyn),
    reference = r::tile_q8_0_q8_0,
    tolerance = exact(),
    override(avx2 = x86::avx2::tile_q8_0_q8_0, avx512 = x86::avx512::tile_q8_0_q8_0),
    test(
        w = { let nb = rng.range(1, 40); rng.q8_0x8(nb) },
        x = { let t = if T == 0 { rng.range(1, 11) } else { T }; rng.q8_0_act(t * w.len()) },
        out = rng.f32s(x.len() / w.len() * 8),
    ),
)]
pub fn tile_q8_0_q8_0<V: Simd, const T: usize>(
    v: V,
    w: &[BlockQ8_0x8],
    x: &[BlockQ8_0],
    out: &mut [f32],
) {
    let _ = v;
    crate::dim::<T>(out.len() / 8);
    r::tile_q8_0_q8_0(w, x, out)
}

/// Q4_K rows x Q8_K activations: `out[t * 8 + r] = dot(row r, token t)`.
/// shapes: w: (nb,) super-blocks of 8 rows; x: (T, nb); out: (T, 8)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(T = [1, 4], dyn),
    reference = r::tile_q4k_q8k,
    tolerance = exact(),
    override(avx2 = x86_k::avx2::tile_q4k_q8k, avx512 = x86_k::avx512::tile_q4k_q8k),
    test(
        w = { let nb = rng.range(1, 6); rng.q4kx8(nb) },
        x = { let t = if T == 0 { rng.range(1, 11) } else { T }; rng.q8k(t * w.len()) },
        out = rng.f32s(x.len() / w.len() * 8),
    ),
)]
pub fn tile_q4k_q8k<V: Simd, const T: usize>(
    v: V,
    w: &[BlockQ4Kx8],
    x: &[BlockQ8K],
    out: &mut [f32],
) {
    let _ = v;
    crate::dim::<T>(out.len() / 8);
    r::tile_q4k_q8k(w, x, out)
}

/// Q4_K rows x Q8_K activations in ggml's gemv order, the order of its repacked kernels
/// for the tokens left over from whole groups of four (a single decoded token among
/// them): `out[t * 8 + r] = dot(row r, token t)`. [`tile_q4k_q8k`](fn@tile_q4k_q8k) is
/// the gemm order.
/// shapes: w: (nb,) super-blocks of 8 rows; x: (T, nb); out: (T, 8)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(T = [1, 4], dyn),
    reference = r::tile_q4k_q8k_gemv,
    tolerance = exact(),
    override(
        avx2 = x86_k::avx2::tile_q4k_q8k_gemv,
        avx512 = x86_k::avx512::tile_q4k_q8k_gemv
    ),
    test(
        w = { let nb = rng.range(1, 6); rng.q4kx8(nb) },
        x = { let t = if T == 0 { rng.range(1, 11) } else { T }; rng.q8k(t * w.len()) },
        out = rng.f32s(x.len() / w.len() * 8),
    ),
)]
pub fn tile_q4k_q8k_gemv<V: Simd, const T: usize>(
    v: V,
    w: &[BlockQ4Kx8],
    x: &[BlockQ8K],
    out: &mut [f32],
) {
    let _ = v;
    crate::dim::<T>(out.len() / 8);
    r::tile_q4k_q8k_gemv(w, x, out)
}

/// One token against consecutive Q4_1 row groups, as
/// [`rows_q4k_q8k_gemv`](fn@rows_q4k_q8k_gemv) for [`tile_q4_1_q8_1`](fn@tile_q4_1_q8_1).
/// shapes: w: (groups * nb,); x: (nb,); out: (groups * 8,)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::rows_q4_1_q8_1,
    tolerance = exact(),
    override(avx2 = x86::avx2::rows_q4_1_q8_1, avx512 = x86::avx512::rows_q4_1_q8_1),
    test(
        w = { let nb = rng.range(1, 40); rng.q4_1x8(3 * nb) },
        x = rng.q8_1_act(w.len() / 3),
        out = rng.f32s(3 * 8),
    ),
)]
pub fn rows_q4_1_q8_1<V: Simd>(v: V, w: &[BlockQ4_1x8], x: &[BlockQ8_1], out: &mut [f32]) {
    let _ = v;
    r::rows_q4_1_q8_1(w, x, out)
}

/// One token against consecutive Q8_0 row groups, as
/// [`rows_q4k_q8k_gemv`](fn@rows_q4k_q8k_gemv) for [`tile_q8_0_q8_0`](fn@tile_q8_0_q8_0).
/// shapes: w: (groups * nb,); x: (nb,); out: (groups * 8,)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::rows_q8_0_q8_0,
    tolerance = exact(),
    override(avx2 = x86::avx2::rows_q8_0_q8_0, avx512 = x86::avx512::rows_q8_0_q8_0),
    test(
        w = { let nb = rng.range(1, 40); rng.q8_0x8(3 * nb) },
        x = rng.q8_0_act(w.len() / 3),
        out = rng.f32s(3 * 8),
    ),
)]
pub fn rows_q8_0_q8_0<V: Simd>(v: V, w: &[BlockQ8_0x8], x: &[BlockQ8_0], out: &mut [f32]) {
    let _ = v;
    r::rows_q8_0_q8_0(w, x, out)
}

/// One token against consecutive Q4_K row groups in ggml's gemv order, group `g` into
/// `out[8g..8g + 8]`: what [`tile_q4k_q8k_gemv`](fn@tile_q4k_q8k_gemv) writes for each
/// group, in one call. Token generation's products go through it a run of groups at a
/// time, where a call per group of eight rows cost some 4% of the decode in dispatch
/// and slicing.
/// shapes: w: (groups * nb,); x: (nb,); out: (groups * 8,)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::rows_q4k_q8k_gemv,
    tolerance = exact(),
    override(
        avx2 = x86_k::avx2::rows_q4k_q8k_gemv,
        avx512 = x86_k::avx512::rows_q4k_q8k_gemv
    ),
    test(
        w = { let nb = rng.range(1, 6); rng.q4kx8(3 * nb) },
        x = rng.q8k(w.len() / 3),
        out = rng.f32s(3 * 8),
    ),
)]
pub fn rows_q4k_q8k_gemv<V: Simd>(v: V, w: &[BlockQ4Kx8], x: &[BlockQ8K], out: &mut [f32]) {
    let _ = v;
    r::rows_q4k_q8k_gemv(w, x, out)
}

/// One token against consecutive Q6_K row groups, as
/// [`rows_q4k_q8k_gemv`](fn@rows_q4k_q8k_gemv) for [`tile_q6k_q8k`](fn@tile_q6k_q8k).
/// shapes: w: (groups * nb,); x: (nb,); out: (groups * 8,)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::rows_q6k_q8k,
    tolerance = exact(),
    override(avx2 = x86_k::avx2::rows_q6k_q8k, avx512 = x86_k::avx512::rows_q6k_q8k),
    test(
        w = { let nb = rng.range(1, 6); rng.q6kx8(3 * nb) },
        x = rng.q8k(w.len() / 3),
        out = rng.f32s(3 * 8),
    ),
)]
pub fn rows_q6k_q8k<V: Simd>(v: V, w: &[BlockQ6Kx8], x: &[BlockQ8K], out: &mut [f32]) {
    let _ = v;
    r::rows_q6k_q8k(w, x, out)
}

/// Two consecutive row groups of Q4_K (16 rows: `w` holds group a's super-blocks, then
/// group b's) x Q8_K activations, into `out_a` and `out_b` as
/// [`tile_q4k_q8k`](fn@tile_q4k_q8k) would write them. AVX-512 runs both groups in one
/// 512-bit vector per step (one i32 lane per row), so each broadcast activation and each
/// `vpdpbusd` serves 16 rows instead of 8;
/// other ISAs run the reference, and dispatch only uses this kernel on AVX-512
/// ([`crate::dispatch::Tiles::q4k_pair`]). `xs` holds each activation block's sums of
/// 32 quants ([`crate::quant::q8k_sums32`]), which the mins weigh, made once per
/// product instead of once per block and pair of row groups.
/// shapes: w: (2 * nb,); x, xs: (T, nb); out_a, out_b: (T, 8)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::tile2_q4k_q8k,
    tolerance = exact(),
    override(avx512 = x86_pair::tile2_q4k_q8k),
    test(
        w = { let nb = rng.range(1, 6); rng.q4kx8(2 * nb) },
        x = { let t = rng.range(1, 20); rng.q8k(t * w.len() / 2) },
        xs = {
            let mut xs = vec![[0i16; 8]; x.len()];
            crate::quant::q8k_sums32(&x, &mut xs);
            xs
        },
        out_a = rng.f32s(x.len() / (w.len() / 2) * 8),
        out_b = rng.f32s(out_a.len()),
    ),
)]
pub fn tile2_q4k_q8k<V: Simd>(
    v: V,
    w: &[BlockQ4Kx8],
    x: &[BlockQ8K],
    xs: &[[i16; 8]],
    out_a: &mut [f32],
    out_b: &mut [f32],
) {
    let _ = v;
    r::tile2_q4k_q8k(w, x, xs, out_a, out_b)
}

/// Q6_K rows x Q8_K activations: `out[t * 8 + r] = dot(row r, token t)`.
/// shapes: w: (nb,) super-blocks of 8 rows; x: (T, nb); out: (T, 8)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    dims(T = [1, 4], dyn),
    reference = r::tile_q6k_q8k,
    tolerance = exact(),
    override(avx2 = x86_k::avx2::tile_q6k_q8k, avx512 = x86_k::avx512::tile_q6k_q8k),
    test(
        w = { let nb = rng.range(1, 6); rng.q6kx8(nb) },
        x = { let t = if T == 0 { rng.range(1, 11) } else { T }; rng.q8k(t * w.len()) },
        out = rng.f32s(x.len() / w.len() * 8),
    ),
)]
pub fn tile_q6k_q8k<V: Simd, const T: usize>(
    v: V,
    w: &[BlockQ6Kx8],
    x: &[BlockQ8K],
    out: &mut [f32],
) {
    let _ = v;
    crate::dim::<T>(out.len() / 8);
    r::tile_q6k_q8k(w, x, out)
}

/// [`tile2_q4k_q8k`](fn@tile2_q4k_q8k) for Q6_K: two consecutive row groups, one 512-bit vector of
/// sixteen rows per step on AVX-512 ([`crate::dispatch::Tiles::q6k_pair`]).
/// shapes: w: (2 * nb,); x: (T, nb); out_a, out_b: (T, 8)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::tile2_q6k_q8k,
    tolerance = exact(),
    override(avx512 = x86_pair::tile2_q6k_q8k),
    test(
        w = { let nb = rng.range(1, 6); rng.q6kx8(2 * nb) },
        x = { let t = rng.range(1, 20); rng.q8k(t * w.len() / 2) },
        out_a = rng.f32s(x.len() / (w.len() / 2) * 8),
        out_b = rng.f32s(out_a.len()),
    ),
)]
pub fn tile2_q6k_q8k<V: Simd>(
    v: V,
    w: &[BlockQ6Kx8],
    x: &[BlockQ8K],
    out_a: &mut [f32],
    out_b: &mut [f32],
) {
    let _ = v;
    r::tile2_q6k_q8k(w, x, out_a, out_b)
}

/// [`tile2_q4k_q8k`](fn@tile2_q4k_q8k) for Q4_1: two consecutive row groups
/// ([`crate::dispatch::Tiles::q4_1_pair`]). On AVX-512 it runs the eight-row tile on each
/// group, which keeps ggml's float order in code the AVX2 tests check
/// (`x86_pair::pair_by_groups`), and does not read `xf`, each activation block's `d` and
/// `s` as f32 ([`crate::quant::q8_1_scales_f32`]).
/// shapes: w: (2 * nb,); x, xf: (T, nb); out_a, out_b: (T, 8)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::tile2_q4_1_q8_1,
    tolerance = exact(),
    override(avx512 = x86_pair::tile2_q4_1_q8_1),
    test(
        w = { let nb = rng.range(1, 40); rng.q4_1x8(2 * nb) },
        x = { let t = rng.range(1, 20); rng.q8_1_act(t * w.len() / 2) },
        xf = {
            let mut xf = vec![[0.0f32; 2]; x.len()];
            crate::quant::q8_1_scales_f32(&x, &mut xf);
            xf
        },
        out_a = rng.f32s(x.len() / (w.len() / 2) * 8),
        out_b = rng.f32s(out_a.len()),
    ),
)]
pub fn tile2_q4_1_q8_1<V: Simd>(
    v: V,
    w: &[BlockQ4_1x8],
    x: &[BlockQ8_1],
    xf: &[[f32; 2]],
    out_a: &mut [f32],
    out_b: &mut [f32],
) {
    let _ = v;
    r::tile2_q4_1_q8_1(w, x, xf, out_a, out_b)
}

/// [`tile2_q4k_q8k`](fn@tile2_q4k_q8k) for Q8_0: two consecutive row groups
/// ([`crate::dispatch::Tiles::q8_0_pair`]). On AVX-512 it runs the eight-row tile on each
/// group, as [`tile2_q4_1_q8_1`](fn@tile2_q4_1_q8_1) does, and does not read `xu`, the
/// activation blocks made unsigned ([`crate::quant::q8_0_unsigned`]).
/// shapes: w: (2 * nb,); x, xu: (T, nb); out_a, out_b: (T, 8)
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::tile2_q8_0_q8_0,
    tolerance = exact(),
    override(avx512 = x86_pair::tile2_q8_0_q8_0),
    test(
        w = { let nb = rng.range(1, 40); rng.q8_0x8(2 * nb) },
        x = { let t = rng.range(1, 20); rng.q8_0_act(t * w.len() / 2) },
        xu = {
            let mut xu = vec![crate::quant::BlockQ8_0Unsigned::ZERO; x.len()];
            crate::quant::q8_0_unsigned(&x, &mut xu);
            xu
        },
        out_a = rng.f32s(x.len() / (w.len() / 2) * 8),
        out_b = rng.f32s(out_a.len()),
    ),
)]
pub fn tile2_q8_0_q8_0<V: Simd>(
    v: V,
    w: &[BlockQ8_0x8],
    x: &[BlockQ8_0],
    xu: &[BlockQ8_0Unsigned],
    out_a: &mut [f32],
    out_b: &mut [f32],
) {
    let _ = v;
    r::tile2_q8_0_q8_0(w, x, xu, out_a, out_b)
}

/// Every tile kernel's registry view.
pub static QTILE_OPS: &[&crate::registry::OpInfo] = &[
    &tile_q4_1_q8_1::INFO,
    &tile_q8_0_q8_0::INFO,
    &tile_q4k_q8k::INFO,
    &tile_q4k_q8k_gemv::INFO,
    &tile_q6k_q8k::INFO,
    &tile2_q4k_q8k::INFO,
    &tile2_q6k_q8k::INFO,
    &tile2_q4_1_q8_1::INFO,
    &tile2_q8_0_q8_0::INFO,
];
