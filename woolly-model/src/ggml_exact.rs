//! The ggml-exact mode (`WOOLLY_GGML_EXACT=1`): ggml's x86 arithmetic (the AVX-512
//! VNNI build of llama.cpp 0.3.36 / ggml 0.25.3, GCC contracting to FMA, flash attention
//! off) reproduced in scalar Rust for every op of a Llama forward pass, **including the
//! choices ggml makes by batch shape**, so that Woolly's logits equal llama.cpp's bit for
//! bit on the conformance pack (tested in `tests/conformance.rs`, run so by `cargo
//! xtask ci`). Each function was checked against llama.cpp's own intermediate tensors,
//! dumped through its eval callback.
//!
//! Woolly's default arithmetic is ggml's too, in its fast kernels, wherever ggml's does
//! not depend on the batch: activations quantized with `127 / amax` and ties to even;
//! the legacy dots' 8-lane FMA order; RMSNorm's sum in f64; RoPE with FMAs; `exp` as
//! ggml's `ggml_v_expf` in softmax and SiLU; attention in tinyBLAS's 16-lane order with
//! Q and the softmax weights rounded to f16. Where ggml's order depends on the batch
//! (attention for a single token, Q4_K in its repacked gemm (groups of four tokens) or
//! gemv order, Q6_K in its per-lane or tiled (8+ tokens) order), the default takes one
//! order for every batch so that a token's result never depends on its batch. This mode
//! reproduces the batch-dependent choices too: a diagnostic, not a fast path (scalar,
//! slow: `attend_f16`, `vec_dot_q4k_q8k`, [`TILED_MIN`]).

use half::f16;
use woolly_kernels::quant::{BlockQ4_1, BlockQ8_0, BlockQ8_1};

/// Whether the ggml-exact mode is on (`WOOLLY_GGML_EXACT` set, and not `0`).
pub fn on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("WOOLLY_GGML_EXACT").is_some_and(|v| v != "0"))
}

/// Weight types whose matmul this module reproduces.
pub fn covers(ty: woolly_kernels::GgmlType) -> bool {
    use woolly_kernels::GgmlType as T;
    matches!(ty, T::Q4_1 | T::Q8_0 | T::Q4K | T::Q6K)
}

/// `hsum_float_8`: ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)).
#[inline(always)]
fn hsum8(a: [f32; 8]) -> f32 {
    let r = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// GCC's `_mm512_reduce_add_ps` tree over 16 lanes.
#[inline(always)]
pub fn reduce16(v: [f32; 16]) -> f32 {
    let t3: [f32; 8] = std::array::from_fn(|i| v[8 + i] + v[i]);
    let t6: [f32; 4] = std::array::from_fn(|i| t3[4 + i] + t3[i]);
    (t6[0] + t6[2]) + (t6[1] + t6[3])
}

/// x86 `ggml_vec_dot_q4_1_q8_1` (AVX2 path): per block 8 exact sums of 4 products, FMA'd
/// into 8 lanes by `d_w * d_x`; `hsum_float_8`; plus the offsets' sum, FMA-contracted.
pub fn vec_dot_q4_1_q8_1(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (w, x) in w.iter().zip(x) {
        summs = w.m.to_f32().mul_add(x.s.to_f32(), summs);
        let d = w.d.to_f32() * x.d.to_f32();
        for (k, a) in acc.iter_mut().enumerate() {
            let mut p = 0i32;
            for j in 4 * k..4 * k + 4 {
                let q = if j < 16 {
                    w.qs[j] & 0xF
                } else {
                    w.qs[j - 16] >> 4
                };
                p += i32::from(q) * i32::from(x.qs[j]);
            }
            *a = d.mul_add(p as f32, *a);
        }
    }
    hsum8(acc) + summs
}

/// x86 `ggml_vec_dot_q8_0_q8_0` (AVX2 path; tinyBLAS_Q0_AVX computes the same).
pub fn vec_dot_q8_0_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    let mut acc = [0f32; 8];
    for (w, x) in w.iter().zip(x) {
        let d = w.d.to_f32() * x.d.to_f32();
        for (k, a) in acc.iter_mut().enumerate() {
            let p: i32 = (4 * k..4 * k + 4)
                .map(|j| i32::from(w.qs[j]) * i32::from(x.qs[j]))
                .sum();
            *a = d.mul_add(p as f32, *a);
        }
    }
    hsum8(acc)
}

/// `ggml_v_expf` (AVX-512 variant), one lane.
#[inline(always)]
pub fn v_expf(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(0x4b40_0000);
    let z = x.mul_add(c(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    (f64::from(j) * 2f64.powi(n as i32)) as f32
}

/// `ggml_vec_dot_f16` (AVX-512): chunks of 16 into 4 accumulators by chunk % 4, reduced
/// (a0+a2)+(a1+a3) then `reduce16`; products of f16 values are exact in f32. `a.len()` is
/// a multiple of 16 (zero padding changes nothing).
#[inline(always)]
fn dot_f16_vec(a: impl Fn(usize) -> f32, b: impl Fn(usize) -> f32, n: usize) -> f32 {
    let mut acc = [[0f32; 16]; 4];
    for i in 0..n.div_ceil(16) * 16 {
        let (c, l) = (i / 16, i % 16);
        let (x, y) = if i < n { (a(i), b(i)) } else { (0.0, 0.0) };
        acc[c % 4][l] = x.mul_add(y, acc[c % 4][l]);
    }
    let x: [f32; 16] = std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
    reduce16(x)
}

/// tinyBLAS (llamafile_sgemm, f16 x f16, AVX-512): one 16-lane accumulator, `reduce16`.
#[inline(always)]
fn dot_f16_tiny(a: impl Fn(usize) -> f32, b: impl Fn(usize) -> f32, n: usize) -> f32 {
    let mut acc = [0f32; 16];
    for i in 0..n {
        acc[i % 16] = a(i).mul_add(b(i), acc[i % 16]);
    }
    reduce16(acc)
}

/// Non-flash attention of the query heads `q (n_q, hd)` sharing KV head `kv_head`, as
/// ggml computes it: Q rounded to f16, `K.Q` by tinyBLAS (one 16-lane FMA accumulator over
/// dims, `reduce16`), times `1/sqrt(hd)`; soft_max with `v_expf` summed per 16 positions
/// (`reduce16`) in f64, times `(f32)(1/sum)`; weights rounded to f16; `V^T.P` by tinyBLAS
/// (lanes by position % 16). Keys are Woolly's transposed blocks of `k_block` positions.
#[expect(clippy::too_many_arguments)]
pub fn attend_f16(
    q: &[f32],
    k: &[f16],
    vals: &[f16],
    n_kv_head: usize,
    kv_head: usize,
    hd: usize,
    k_block: usize,
    scores: &mut [f32],
    out: &mut [f32],
    single: bool,
) {
    // llamafile_sgemm takes products of >= 2 tokens; a batch of one token runs
    // ggml_vec_dot_f16.
    let dot = |a: &dyn Fn(usize) -> f32, b: &dyn Fn(usize) -> f32, n: usize| {
        if single {
            dot_f16_vec(a, b, n)
        } else {
            dot_f16_tiny(a, b, n)
        }
    };
    let n_pos = vals.len() / (n_kv_head * hd);
    let scale = 1.0 / (hd as f32).sqrt();
    let kb = hd * k_block;
    for ((qh, oh), w) in q
        .chunks_exact(hd)
        .zip(out.chunks_exact_mut(hd))
        .zip(scores.chunks_exact_mut(n_pos))
    {
        let qf: Vec<f32> = qh.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
        for (p, wp) in w.iter_mut().enumerate() {
            let blk = &k[((p / k_block) * n_kv_head + kv_head) * kb..][..kb];
            let kd = |d: usize| blk[d * k_block + p % k_block].to_f32();
            *wp = dot(&kd, &|d| qf[d], hd) * scale;
        }
        let max = w.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for s in w.iter_mut() {
            *s = v_expf(*s - max);
        }
        let mut sum = 0f64;
        for ch in w.chunks(16) {
            let mut v = [0f32; 16];
            v[..ch.len()].copy_from_slice(ch);
            sum += f64::from(reduce16(v));
        }
        let inv = (1.0 / sum) as f32;
        for s in w.iter_mut() {
            *s = f16::from_f32(*s * inv).to_f32();
        }
        for (d, o) in oh.iter_mut().enumerate() {
            let x = |p: usize| vals[(p * n_kv_head + kv_head) * hd + d].to_f32();
            *o = dot(&x, &|p| w[p], n_pos);
        }
    }
}

/// Q4_K x Q8_K as ggml's x86 repacked q4_K_8x8 gemv/gemm compute one output: per
/// super-block the exact integer sums (scaled quants, and mins x bsums), FMA'd into two
/// f32 accumulators by `d_w * d_x` and `dmin_w * d_x`; the result is their difference.
/// `gemm`: tokens in whole groups of 4 (q4_K_8x8 gemm FMAs per 64 weights, not per 256).
pub fn vec_dot_q4k_q8k(
    w: &[woolly_kernels::quant::BlockQ4K],
    x: &[woolly_kernels::quant::BlockQ8K],
    gemm: bool,
) -> f32 {
    let (mut acc, mut accmin) = (0f32, 0f32);
    for (w, x) in w.iter().zip(x) {
        let (mut isum, mut imin) = (0i32, 0i32);
        for g in 0..8 {
            let (gsum, gmin) = woolly_kernels::reference::quant_dot::q4k_group_sums(w, x, g);
            isum += gsum;
            imin += gmin;
            if gemm && g % 2 == 1 {
                acc = (isum as f32).mul_add(w.d.to_f32() * x.d, acc);
                accmin = (imin as f32).mul_add(w.dmin.to_f32() * x.d, accmin);
                (isum, imin) = (0, 0);
            }
        }
        if gemm {
            continue;
        }
        acc = (isum as f32).mul_add(w.d.to_f32() * x.d, acc);
        accmin = (imin as f32).mul_add(w.dmin.to_f32() * x.d, accmin);
    }
    acc - accmin
}

/// x86 `ggml_vec_dot_q6_K_q8_K` (AVX2): lane k of 8 sums the scaled products of elements
/// with `i % 32 / 4 == k`; lanes FMA'd by `d_x * d_w` per super-block; `hsum_float_8`.
pub fn vec_dot_q6k_q8k(
    w: &[woolly_kernels::quant::BlockQ6K],
    x: &[woolly_kernels::quant::BlockQ8K],
) -> f32 {
    use woolly_kernels::reference::quant_dot::q6k_quant;
    let mut acc = [0f32; 8];
    for (w, x) in w.iter().zip(x) {
        let d = x.d * w.d.to_f32();
        // ggml 0.25.3: unsigned codes in the lanes, the -32 offset taken out per lane
        // afterwards from the bsums (lane k: sub-blocks 2k and 2k+1).
        let mut lanes = [0i32; 8];
        for i in 0..256 {
            let p = i32::from(q6k_quant(w, i)) * i32::from(x.qs[i]);
            lanes[i % 32 / 4] += i32::from(w.scales[i / 16]) * p;
        }
        for (k, l) in lanes.iter_mut().enumerate() {
            let sub = i32::from(x.bsums[2 * k]) * i32::from(w.scales[2 * k])
                + i32::from(x.bsums[2 * k + 1]) * i32::from(w.scales[2 * k + 1]);
            *l -= sub << 5;
        }
        for k in 0..8 {
            acc[k] = d.mul_add(lanes[k] as f32, acc[k]);
        }
    }
    hsum8(acc)
}

/// ggml's "tiled" mul_mat (ggml-cpu/tiled, AVX-512 VNNI microkernel) for Q6_K, taken for
/// batches of at least [`TILED_MIN`] tokens: per 256-weight slab the exact integer
/// `sum_s sc[s] * (raw_s - 32 * bsum_s)`, times `d_w` in f32, then `buf += r * d_x`.
pub fn vec_dot_q6k_q8k_tiled(
    w: &[woolly_kernels::quant::BlockQ6K],
    x: &[woolly_kernels::quant::BlockQ8K],
) -> f32 {
    use woolly_kernels::reference::quant_dot::q6k_quant;
    let mut buf = 0f32;
    for (w, x) in w.iter().zip(x) {
        let mut s1 = 0i32;
        for s in 0..16 {
            let raw: i32 = (16 * s..16 * s + 16)
                .map(|i| i32::from(q6k_quant(w, i)) * i32::from(x.qs[i]))
                .sum();
            s1 += i32::from(w.scales[s]) * (raw - 32 * i32::from(x.bsums[s]));
        }
        let r = s1 as f32 * w.d.to_f32();
        // GCC contracts the epilogue `buf + r * d_x` (generic vector ops) to an FMA
        // (measured: unfused does not reproduce llama.cpp).
        buf = r.mul_add(x.d, buf);
    }
    buf
}

/// Batches from which ggml's mul_mat takes the tiled path (types it supports, not
/// repacked): measured 6 tokens -> vec_dot, 14 and 37 -> tiled; 8 per the source.
pub const TILED_MIN: usize = 8;
