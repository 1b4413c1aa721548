//! Quantized dot products against 8-bit activations, and the activation quantizers.
//!
//! Pairs follow ggml's `vec_dot_type`: k-quants against Q8_K; Q4_0, Q5_0 and Q8_0 against
//! Q8_0; Q4_1 and Q5_1 against Q8_1. Every variant computes each block's exact integer
//! sums and combines them with the reference's f32 operations in the reference's order
//! (`combine_*`, `fma_q4k`, `fma_q6k`...), so it agrees with
//! [`crate::reference::quant_dot`] **bit for bit** (`tolerance = exact()`;
//! see that module). The scalar variant compiles the portable body; AVX2, AVX-512, NEON
//! and NEON + dotprod plug in hand-written bodies (`override(...)`) for Q4_K, Q6_K and
//! every legacy format (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0). AVX-512 uses VNNI's `vpdpbusd` for
//! the legacy formats; `neon` multiplies with `vmull_s8` + `vpadalq_s16` and
//! `neon_dotprod` with `sdot` (inline assembly, its intrinsic being unstable), sharing
//! the unpacking in `neon.rs`.
//!
//! Q8_0 x Q8_0 on x86 uses `maddubs(|a|, sign(b, a))`, exact for quants in -127..=127;
//! ggml's quantizers never write -128, and a weight byte of -128 would give a result
//! that differs from the reference (never undefined behaviour). The NEON bodies are exact
//! for any bytes.

use woolly_kernels_macros::kernel;

use crate::quant::{
    BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, BlockQ8_1, BlockQ8K,
};
use crate::reference::quant_dot as r;
use crate::simd::Simd;

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "aarch64")]
pub mod neon;
#[cfg(target_arch = "aarch64")]
pub mod neon_dotprod;

/// All eight (scale, min) pairs of a Q4_K/Q5_K block at once, with ggml's mask trick
/// (the unpacking its SIMD paths use). Equal to [`crate::quant::get_scale_min_k4`] for
/// every group (tested on every byte pattern below).
#[inline(always)]
pub fn scales_mins_k4(q: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let u0 = u32::from_le_bytes([q[0], q[1], q[2], q[3]]);
    let u1 = u32::from_le_bytes([q[4], q[5], q[6], q[7]]);
    let u2 = u32::from_le_bytes([q[8], q[9], q[10], q[11]]);
    let sc_lo = u0 & KMASK1;
    let sc_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let m_lo = u1 & KMASK1;
    let m_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    let join = |lo: u32, hi: u32| (u64::from(lo) | (u64::from(hi) << 32)).to_le_bytes();
    (join(sc_lo, sc_hi), join(m_lo, m_hi))
}

/// Q4_K weights . Q8_K activations (see [`r::vec_dot_q4k_q8k`]).
/// shapes: w, x: (n_blocks,) of 256 weights
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::vec_dot_q4k_q8k,
    tolerance = exact(),
    override(
        avx2 = avx2::vec_dot_q4k_q8k,
        avx512 = avx512::vec_dot_q4k_q8k,
        neon = neon::vec_dot_q4k_q8k,
        neon_dotprod = neon_dotprod::vec_dot_q4k_q8k,
    ),
    test(w = { let n = rng.range(1, 17); rng.q4k(n) }, x = rng.q8k(w.len())),
)]
pub fn vec_dot_q4k_q8k<V: Simd>(v: V, w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    let _ = v;
    r::vec_dot_q4k_q8k(w, x)
}

/// Q4_K weights . Q8_K activations in ggml's gemv order (see
/// [`r::vec_dot_q4k_q8k_gemv`]).
/// shapes: w, x: (n_blocks,) of 256 weights
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::vec_dot_q4k_q8k_gemv,
    tolerance = exact(),
    override(
        avx2 = avx2::vec_dot_q4k_q8k_gemv,
        avx512 = avx512::vec_dot_q4k_q8k_gemv,
        neon = neon::vec_dot_q4k_q8k_gemv,
        neon_dotprod = neon_dotprod::vec_dot_q4k_q8k_gemv,
    ),
    test(w = { let n = rng.range(1, 17); rng.q4k(n) }, x = rng.q8k(w.len())),
)]
pub fn vec_dot_q4k_q8k_gemv<V: Simd>(v: V, w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    let _ = v;
    r::vec_dot_q4k_q8k_gemv(w, x)
}

/// Q6_K weights . Q8_K activations (see [`r::vec_dot_q6k_q8k`]).
/// shapes: w, x: (n_blocks,) of 256 weights
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::vec_dot_q6k_q8k,
    tolerance = exact(),
    override(
        avx2 = avx2::vec_dot_q6k_q8k,
        avx512 = avx512::vec_dot_q6k_q8k,
        neon = neon::vec_dot_q6k_q8k,
        neon_dotprod = neon_dotprod::vec_dot_q6k_q8k,
    ),
    test(w = { let n = rng.range(1, 17); rng.q6k(n) }, x = rng.q8k(w.len())),
)]
pub fn vec_dot_q6k_q8k<V: Simd>(v: V, w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    let _ = v;
    r::vec_dot_q6k_q8k(w, x)
}

/// Q8_0 weights . Q8_0 activations.             shapes: w, x: (n_blocks,) of 32 weights
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::vec_dot_q8_0_q8_0,
    tolerance = exact(),
    override(
        avx2 = avx2::vec_dot_q8_0_q8_0,
        avx512 = avx512::vec_dot_q8_0_q8_0,
        neon = neon::vec_dot_q8_0_q8_0,
        neon_dotprod = neon_dotprod::vec_dot_q8_0_q8_0,
    ),
    test(w = { let n = rng.range(1, 70); rng.q8_0(n) }, x = rng.q8_0_act(w.len())),
)]
pub fn vec_dot_q8_0_q8_0<V: Simd>(v: V, w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    let _ = v;
    r::vec_dot_q8_0_q8_0(w, x)
}

/// Q4_0 weights . Q8_0 activations.             shapes: w, x: (n_blocks,) of 32 weights
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::vec_dot_q4_0_q8_0,
    tolerance = exact(),
    override(
        avx2 = avx2::vec_dot_q4_0_q8_0,
        avx512 = avx512::vec_dot_q4_0_q8_0,
        neon = neon::vec_dot_q4_0_q8_0,
        neon_dotprod = neon_dotprod::vec_dot_q4_0_q8_0,
    ),
    test(w = { let n = rng.range(1, 70); rng.q4_0(n) }, x = rng.q8_0_act(w.len())),
)]
pub fn vec_dot_q4_0_q8_0<V: Simd>(v: V, w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    let _ = v;
    r::vec_dot_q4_0_q8_0(w, x)
}

/// Q5_0 weights . Q8_0 activations.             shapes: w, x: (n_blocks,) of 32 weights
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::vec_dot_q5_0_q8_0,
    tolerance = exact(),
    override(
        avx2 = avx2::vec_dot_q5_0_q8_0,
        avx512 = avx512::vec_dot_q5_0_q8_0,
        neon = neon::vec_dot_q5_0_q8_0,
        neon_dotprod = neon_dotprod::vec_dot_q5_0_q8_0,
    ),
    test(w = { let n = rng.range(1, 70); rng.q5_0(n) }, x = rng.q8_0_act(w.len())),
)]
pub fn vec_dot_q5_0_q8_0<V: Simd>(v: V, w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
    let _ = v;
    r::vec_dot_q5_0_q8_0(w, x)
}

/// Q4_1 weights . Q8_1 activations.             shapes: w, x: (n_blocks,) of 32 weights
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::vec_dot_q4_1_q8_1,
    tolerance = exact(),
    override(
        avx2 = avx2::vec_dot_q4_1_q8_1_x8,
        avx512 = avx512::vec_dot_q4_1_q8_1,
        neon = neon::vec_dot_q4_1_q8_1,
        neon_dotprod = neon_dotprod::vec_dot_q4_1_q8_1,
    ),
    test(w = { let n = rng.range(1, 70); rng.q4_1(n) }, x = rng.q8_1_act(w.len())),
)]
pub fn vec_dot_q4_1_q8_1<V: Simd>(v: V, w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    let _ = v;
    r::vec_dot_q4_1_q8_1(w, x)
}

/// Q5_1 weights . Q8_1 activations.             shapes: w, x: (n_blocks,) of 32 weights
#[kernel(
    isa(scalar, avx2, avx512, neon, neon_dotprod),
    reference = r::vec_dot_q5_1_q8_1,
    tolerance = exact(),
    override(
        avx2 = avx2::vec_dot_q5_1_q8_1,
        avx512 = avx512::vec_dot_q5_1_q8_1,
        neon = neon::vec_dot_q5_1_q8_1,
        neon_dotprod = neon_dotprod::vec_dot_q5_1_q8_1,
    ),
    test(w = { let n = rng.range(1, 70); rng.q5_1(n) }, x = rng.q8_1_act(w.len())),
)]
pub fn vec_dot_q5_1_q8_1<V: Simd>(v: V, w: &[BlockQ5_1], x: &[BlockQ8_1]) -> f32 {
    let _ = v;
    r::vec_dot_q5_1_q8_1(w, x)
}

/// Every quantized dot's registry view.
pub static QDOT_OPS: &[&crate::registry::OpInfo] = &[
    &vec_dot_q4k_q8k::INFO,
    &vec_dot_q4k_q8k_gemv::INFO,
    &vec_dot_q6k_q8k::INFO,
    &vec_dot_q8_0_q8_0::INFO,
    &vec_dot_q4_0_q8_0::INFO,
    &vec_dot_q5_0_q8_0::INFO,
    &vec_dot_q4_1_q8_1::INFO,
    &vec_dot_q5_1_q8_1::INFO,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::get_scale_min_k4;
    use crate::testing::TestRng;

    #[test]
    fn scales_mins_k4_matches_the_shared_unpacking() {
        let mut rng = TestRng::new(3);
        for _ in 0..10_000 {
            let q: [u8; 12] = std::array::from_fn(|_| rng.next_u64() as u8);
            let (sc, m) = scales_mins_k4(&q);
            for j in 0..8 {
                assert_eq!((sc[j], m[j]), get_scale_min_k4(j, &q), "{q:?} group {j}");
            }
        }
    }
}
