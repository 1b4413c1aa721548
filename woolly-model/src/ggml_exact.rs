//! The ggml-exact mode (`WOOLLY_GGML_EXACT=1`): ggml's x86 arithmetic (the AVX-512
//! VNNI build of llama.cpp 0.3.36 / ggml 0.25.3, GCC contracting to FMA, flash attention
//! off) reproduced in scalar Rust for every op of a Llama forward pass, **including the
//! choices ggml makes by batch shape**, so that Woolly's logits equal llama.cpp's bit for
//! bit on the conformance pack (tested in `tests/conformance.rs`, run so by `cargo
//! xtask ci`). Each function was checked against llama.cpp's own intermediate tensors,
//! dumped through its eval callback.
//!
//! Woolly's default arithmetic is ggml's too, in its fast kernels: activations quantized
//! with `127 / amax` and ties to even; the legacy dots' 8-lane FMA order; Q4_K in the
//! repacked kernels' gemm order for whole groups of four of a sequence's tokens and
//! their gemv order for the rest, a decoded token among them
//! ([`woolly_kernels::Q4kOrder`], chosen in `forward.rs` as ggml chooses); Q6_K in its
//! tiled order; RMSNorm's sum in f64; RoPE with FMAs; `exp` as ggml's `ggml_v_expf` in
//! softmax and SiLU; attention in tinyBLAS's 16-lane order with Q and the softmax weights
//! rounded to f16, and in `ggml_vec_dot_f16`'s order for a token alone in its sequence's
//! part of a batch. Where ggml's choice depends on the whole batch (attention for a
//! batch of one token, Q6_K in its per-lane order below [`TILED_MIN`] tokens), the
//! default chooses per sequence or takes one order, so that a token's result does not
//! depend on the other sequences in its batch. This mode reproduces the whole-batch
//! choices: a diagnostic, not a fast path (scalar, slow: `attend_f16`,
//! `vec_dot_q6k_q8k`).

use half::f16;
use woolly_kernels::reference::quant_dot::hsum8;
use woolly_kernels::reference::reduce16;

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
pub fn exp(op: &str) -> bool {
    std::env::var("WOOLLY_EXP_OPS")
        .map(|v| v.contains(op))
        .unwrap_or(true)
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

/// Batches from which ggml's mul_mat takes the tiled path for Q6_K (Woolly's default
/// order, [`woolly_kernels::reference::quant_dot::vec_dot_q6k_q8k`]; types it supports,
/// not repacked): measured 6 tokens -> vec_dot, 14 and 37 -> tiled; 8 per the source.
pub const TILED_MIN: usize = 8;
